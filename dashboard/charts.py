"""Altair charts drawn from plain data: the journey map and the pathway diagrams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt

STATE_COLOURS = {
    "pending": "#c8c8c8",
    "open": "#4c78a8",
    "in_progress": "#f2a541",
    "blocked": "#d62728",
    "done": "#2ca02c",
    "skipped": "#98df8a",
}


def _levels(steps: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Depth of each step in the prerequisite graph: the column it is drawn in."""
    needs = {s["key"]: list(s["needs"]) for s in steps}
    depth: dict[str, int] = {}

    def level(key: str) -> int:
        if key not in depth:
            depth[key] = 1 + max((level(n) for n in needs.get(key, []) if n in needs), default=-1)
        return depth[key]

    for key in needs:
        level(key)
    return depth


def journey_map(steps: Sequence[dict[str, Any]], *, state_label: dict[str, str]) -> alt.LayerChart:
    """Steps as nodes in prerequisite order, coloured by state, with arrows from what they need.

    ``steps``: dicts with key, title, state, owner, due, needs.
    """
    depth = _levels(steps)
    rows: dict[int, int] = {}
    nodes = []
    for step in steps:
        column = depth[step["key"]]
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes.append(
            {
                **step,
                "x": column,
                "y": row,
                "state_label": state_label.get(step["state"], step["state"]),
                "needs_text": ", ".join(step["needs"]),
            }
        )
    where = {n["key"]: (n["x"], n["y"]) for n in nodes}
    edges = [
        {"x": where[need][0], "y": where[need][1], "x2": n["x"], "y2": n["y"]}
        for n in nodes
        for need in n["needs"]
        if need in where
    ]
    x = alt.X(
        "x:Q", axis=None, scale=alt.Scale(domain=[-0.5, max(depth.values(), default=0) + 0.5])
    )
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[max(rows.values(), default=1) - 0.5, -0.5]))
    lines = (
        alt.Chart(alt.Data(values=edges))
        .mark_rule(color="#999", strokeWidth=1.5)
        .encode(x=x, y=y, x2="x2:Q", y2="y2:Q")
    )
    colour = alt.Color(
        "state:N",
        scale=alt.Scale(domain=list(STATE_COLOURS), range=list(STATE_COLOURS.values())),
        legend=None,
    )
    points = (
        alt.Chart(alt.Data(values=nodes))
        .mark_circle(size=900, opacity=1)
        .encode(
            x=x,
            y=y,
            color=colour,
            tooltip=[
                alt.Tooltip("title:N"),
                alt.Tooltip("state_label:N"),
                alt.Tooltip("owner:N"),
                alt.Tooltip("due:N"),
                alt.Tooltip("needs_text:N"),
            ],
        )
    )
    labels = (
        alt.Chart(alt.Data(values=nodes))
        .mark_text(dy=26, fontSize=11)
        .encode(x=x, y=y, text="title:N")
    )
    height = 90 * max(rows.values(), default=1) + 40
    return (lines + points + labels).properties(height=height)
