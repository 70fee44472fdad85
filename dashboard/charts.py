"""Altair charts drawn from plain data: the journey map, the pathway diagrams, the figures' bars.

One meaning per colour across the dashboard (ux.md): done green, open blue, overdue red, not yet
grey; a good result is green, never red. Every chart names its colours in a legend or labels its
marks directly, and a shape or a label says what the colour says (no meaning by colour alone).
A figure hidden by small-cell suppression (``None``) is drawn as "–", never left out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import altair as alt

# One palette for the dashboard and the PDF reports (tracker/reporting/palette.py).
from tracker.reporting.palette import (  # noqa: F401 (the chart tests read them here)
    AGES,
    BLOCKED,
    CATEGORIES,
    DONE,
    HIDDEN,
    IN_PROGRESS,
    NEUTRAL,
    NO_RESULT,
    NOT_YET,
    OPEN,
    OUTLINE,
    OVERDUE,
    PARTIAL,
    SKIPPED,
)

STATES = ["done", "in_progress", "open", "blocked", "overdue", "pending", "skipped"]
STATE_COLOURS = {
    "done": DONE,
    "in_progress": IN_PROGRESS,
    "open": OPEN,
    "blocked": BLOCKED,
    "overdue": OVERDUE,
    "pending": NOT_YET,
    "skipped": SKIPPED,
}
STATE_SHAPES = {
    "done": "circle",
    "in_progress": "diamond",
    "open": "square",
    "blocked": "triangle-down",
    "overdue": "triangle-up",
    "pending": "circle",
    "skipped": "cross",
}
# Outcomes of a step (the pathway catalogue's words): good ones green, others neutral.
OUTCOME_COLOURS = {
    "full": DONE,
    "approved": DONE,
    "granted": DONE,
    "issued": DONE,
    "started": DONE,
    "probation_passed": DONE,
    "partial": PARTIAL,
    "fiktionsbescheinigung": PARTIAL,
    "none": NO_RESULT,
    "refused": NO_RESULT,
    "ended_early": NO_RESULT,
    "not_recorded": SKIPPED,
}
DASH = "–"
TEXT = "#333333"  # axis labels, titles and legends: Vega's default grey is too pale
ROW = 28  # px per bar


def finish(chart: alt.LayerChart, height: int) -> alt.LayerChart:
    """The chart's height (axes and legend included: Streamlit fits the whole chart into it)
    and readable text."""
    return (
        chart.properties(height=height)
        .configure_axis(labelColor=TEXT, titleColor=TEXT, labelFontSize=12, titleFontSize=12)
        .configure_legend(labelColor=TEXT, titleColor=TEXT, labelFontSize=12, titleFontSize=12)
        .configure_text(color=TEXT)
    )


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


def _wrapped(text: str, columns: int) -> str:
    """A label broken into lines that fit its column (about 6 px a character at 11 px)."""
    width = max(12, min(26, 130 // max(columns, 1) + 2))
    lines = textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=True)
    return "\n".join(lines[:4])


def journey_map(
    steps: Sequence[dict[str, Any]],
    *,
    state_label: Mapping[str, str] | None = None,
    legend_title: str = "",
) -> alt.LayerChart:
    """Steps as nodes in prerequisite order, with lines from what they need and their titles
    below, wrapped to fit. Coloured and shaped by state, with a legend, when ``state_label``
    names the states (a step that is due and late shows as "overdue"); a pathway diagram
    (no ``state_label``) draws every step alike.

    ``steps``: dicts with key, title, state, owner, due, needs and, optionally, due_status.
    """
    depth = _levels(steps)
    columns = max(depth.values(), default=0) + 1
    titles = {s["key"]: s["title"] for s in steps}  # the tooltip names what a step needs
    rows: dict[int, int] = {}
    nodes = []
    for step in steps:
        column = depth[step["key"]]
        row = rows.get(column, 0)
        rows[column] = row + 1
        shown = step["state"]
        if step.get("due_status") == "overdue" and shown in ("open", "in_progress", "blocked"):
            shown = "overdue"
        nodes.append(
            {
                "title": step["title"],
                "label": _wrapped(step["title"], columns),
                "owner": step.get("owner") or "",
                "due": step.get("due") or "",
                "x": column,
                "y": row,
                "shown": shown,
                "state_label": (state_label or {}).get(shown, shown),
                "needs_text": ", ".join(titles.get(n, n) for n in step["needs"]),
            }
        )
        nodes[-1]["aria"] = ": ".join(
            t for t in (step["title"], nodes[-1]["state_label"] if state_label else "") if t
        )
    where = {s["key"]: (n["x"], n["y"]) for s, n in zip(steps, nodes, strict=True)}
    edges = [
        {
            "x": where[need][0],
            "y": where[need][1],
            "x2": where[s["key"]][0],
            "y2": where[s["key"]][1],
        }
        for s in steps
        for need in s["needs"]
        if need in where
    ]
    height_rows = max(rows.values(), default=1)
    x = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[-0.5, columns - 0.5]))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[height_rows - 0.45, -0.35]))
    lines = (
        alt.Chart(alt.Data(values=edges))
        .mark_rule(color="#9a9a9a", strokeWidth=1.5, aria=False)
        .encode(x=x, y=y, x2="x2:Q", y2="y2:Q")
    )
    tooltip = [alt.Tooltip("title:N"), alt.Tooltip("owner:N"), alt.Tooltip("due:N")]
    base = alt.Chart(alt.Data(values=nodes))
    if state_label:
        present = [s for s in STATES if any(n["shown"] == s for n in nodes)]
        domain = [state_label.get(s, s) for s in present]
        legend = alt.Legend(
            orient="bottom",
            title=legend_title or None,
            labelLimit=0,
            symbolSize=200,  # big enough that the fill, not the outline, shows the colour
            symbolStrokeWidth=0.5,
        )
        points = base.mark_point(size=420, filled=True, opacity=1, stroke=OUTLINE).encode(
            x=x,
            y=y,
            color=alt.Color(
                "state_label:N",
                scale=alt.Scale(domain=domain, range=[STATE_COLOURS[s] for s in present]),
                legend=legend,
            ),
            shape=alt.Shape(
                "state_label:N",
                scale=alt.Scale(domain=domain, range=[STATE_SHAPES[s] for s in present]),
                legend=legend,
            ),
            tooltip=[alt.Tooltip("state_label:N"), *tooltip],
            description=alt.Description("aria:N"),
        )
    else:
        points = base.mark_circle(size=420, opacity=1, color=NEUTRAL).encode(
            x=x,
            y=y,
            tooltip=[*tooltip, alt.Tooltip("needs_text:N")],
            description=alt.Description("aria:N"),
        )
    # A white halo under each title keeps it readable where a line runs behind it.
    # The map is named as a whole (Streamlit's alt) and its steps are the table below it: the
    # lines and titles are not read out one by one (aria=False), the steps are, with a label.
    text = {"dy": 18, "baseline": "top", "fontSize": 11, "lineBreak": "\n", "aria": False}
    halo = base.mark_text(**text, stroke="white", strokeWidth=4, strokeJoin="round").encode(
        x=x, y=y, text="label:N"
    )
    labels = base.mark_text(**text).encode(x=x, y=y, text="label:N")
    lines_per_label = max((n["label"].count("\n") + 1 for n in nodes), default=1)
    height = height_rows * (52 + 14 * lines_per_label) + (60 if state_label else 10)
    return finish(lines + points + halo + labels, height)


# -- figures ------------------------------------------------------------------------------------


def _count_text(value: int | float | None, fmt: Callable[[Any], str]) -> str:
    return DASH if value is None else fmt(value)


def stacked_bars(
    rows: Sequence[Mapping[str, Any]],
    *,
    parts: Sequence[tuple[str, str, str]],
    category_title: str = "",
    value_title: str,
    legend_title: str = "",
    hidden_label: str,
    fmt: Callable[[Any], str] = str,
) -> alt.LayerChart:
    """One horizontal bar per row (``row["label"]``) stacked from its parts, with its total
    written at the end. ``parts``: (field, label, colour) in drawing order; ``row["total"]`` is
    what the parts add up to. A part hidden by suppression (None) joins a pale "hidden" piece of
    the bar (the total less the shown parts: no single hidden count can be read from it); a row
    whose total is hidden has no bar and reads "–". Every row keeps its line."""
    segments = []
    ends = []
    order = {label: i for i, (_field, label, _colour) in enumerate(parts)}
    for row in rows:
        total = row["total"]
        if total is not None:
            known = 0
            for field, label, _colour in parts:
                value = row.get(field)
                if value:
                    segments.append({"label": row["label"], "part": label, "n": value})
                    known += value
            if total - known > 0:
                segments.append({"label": row["label"], "part": hidden_label, "n": total - known})
        ends.append({"label": row["label"], "n": total or 0, "text": _count_text(total, fmt)})
    for segment in segments:
        segment["order"] = order.get(segment["part"], len(order))
        segment["text"] = fmt(segment["n"])
    present = [p for p in parts if any(s["part"] == p[1] for s in segments)]
    domain = [label for _f, label, _c in present]
    colours = [colour for _f, _l, colour in present]
    if any(s["part"] == hidden_label for s in segments):
        domain.append(hidden_label)
        colours.append(HIDDEN)
    y = alt.Y(
        "label:N",
        sort=[row["label"] for row in rows],
        title=category_title or None,
        axis=alt.Axis(labelLimit=0, labelFontSize=12),
    )
    bars = (
        alt.Chart(alt.Data(values=segments))
        # (an empty layer's mark group would be an unnamed graphic for screen readers)
        .mark_bar(stroke=OUTLINE, strokeWidth=0.8, aria=bool(segments))
        .encode(
            strokeDash=alt.condition(
                alt.datum.part == hidden_label, alt.value([3, 2]), alt.value([1, 0])
            ),
            y=y,
            x=alt.X(
                "n:Q", stack="zero", title=value_title, axis=alt.Axis(tickMinStep=1, format="d")
            ),
            color=alt.Color(
                "part:N",
                scale=alt.Scale(domain=domain, range=colours),
                legend=alt.Legend(orient="bottom", title=legend_title or None, labelLimit=0),
            ),
            order=alt.Order("order:Q"),
            tooltip=[
                alt.Tooltip("label:N", title=category_title or " "),
                alt.Tooltip("part:N", title=legend_title or " "),
                alt.Tooltip("text:N", title=value_title),
            ],
        )
    )
    totals = (
        alt.Chart(alt.Data(values=ends))
        .mark_text(align="left", dx=4, fontSize=12, fontWeight="bold", aria=False)
        .encode(y=y, x=alt.X("n:Q"), text="text:N")
    )
    return finish(bars + totals, ROW * len(rows) + 100)


def labelled_bars(
    rows: Sequence[Mapping[str, Any]],
    *,
    value_title: str,
    colour: str | Mapping[str, str],
    percent: bool = False,
    fmt: Callable[[Any], str] = str,
) -> alt.LayerChart:
    """One horizontal bar per row (``row["label"]``, ``row["value"]``, optionally ``row["key"]``
    choosing the colour from a mapping), its value written at the end, "–" where hidden."""
    data = [
        {
            "label": r["label"],
            "value": r["value"] or 0,
            "text": _count_text(r["value"], fmt),
            "colour": colour if isinstance(colour, str) else colour.get(r.get("key", ""), OPEN),
        }
        for r in rows
    ]
    y = alt.Y(
        "label:N",
        sort=[r["label"] for r in rows],
        title=None,
        axis=alt.Axis(labelLimit=0, labelFontSize=12),
    )
    x = alt.X(
        "value:Q",
        title=value_title,
        axis=alt.Axis(format="%") if percent else alt.Axis(tickMinStep=1, format="d"),
        scale=alt.Scale(domain=[0, 1]) if percent else alt.Undefined,
    )
    base = alt.Chart(alt.Data(values=data)).encode(y=y, x=x)
    bars = base.mark_bar(stroke=OUTLINE, strokeWidth=0.5).encode(
        color=alt.Color("colour:N", scale=None),
        tooltip=[alt.Tooltip("label:N", title=" "), alt.Tooltip("text:N", title=value_title)],
    )
    text = base.mark_text(align="left", dx=4, fontSize=12, fontWeight="bold", aria=False).encode(
        text="text:N"
    )
    return finish(bars + text, ROW * len(rows) + 70)


def histogram(
    bins: Sequence[Mapping[str, Any]],
    *,
    x_title: str,
    y_title: str,
    colour: str = OPEN,
) -> alt.LayerChart:
    """Counts per bin (bin_start, bin_end, label, count); a hidden bin reads "–" on the axis."""
    data = [
        {
            **dict(b),
            "n": b["count"] or 0,
            "middle": (b["bin_start"] + b["bin_end"]) / 2,
            "text": DASH if b["count"] is None else "",
        }
        for b in bins
    ]
    domain = [bins[0]["bin_start"], bins[-1]["bin_end"]] if bins else [0, 1]
    x = alt.X("bin_start:Q", bin="binned", title=x_title, scale=alt.Scale(domain=domain))
    base = alt.Chart(alt.Data(values=data))
    bars = base.mark_bar(color=colour).encode(
        x=x,
        x2="bin_end:Q",
        y=alt.Y("n:Q", title=y_title, axis=alt.Axis(tickMinStep=1, format="d")),
        tooltip=[alt.Tooltip("label:N", title=x_title), alt.Tooltip("n:Q", title=y_title)],
    )
    dashes = base.mark_text(
        baseline="bottom", dy=-2, fontSize=13, fontWeight="bold", aria=False
    ).encode(x=alt.X("middle:Q", scale=alt.Scale(domain=domain)), y=alt.datum(0), text="text:N")
    return finish(bars + dashes, 300)
