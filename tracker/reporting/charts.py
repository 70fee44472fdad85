"""Charts drawn into reports as inline SVG (Altair + vl-convert), so a report opens offline.

The template supplies every word (titles, labels): these functions only draw. vl-convert runs
Vega in an embedded JavaScript engine; it loads nothing from the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import vl_convert as vlc
from markupsafe import Markup

from tracker.reporting import palette

FONT = "DejaVu Sans"


def _svg(chart: alt.TopLevelMixin) -> Markup:
    spec = chart.configure(font=FONT, background="white").configure_view(stroke=None).to_dict()
    svg = vlc.vegalite_to_svg(spec)
    # The SVG comes from Vega's renderer, which escapes every text it draws.
    return Markup(svg)


def _rows(data: Sequence[Any]) -> list[dict[str, Any]]:
    return [dict(r) if not hasattr(r, "model_dump") else r.model_dump() for r in data]


def bars(
    data: Sequence[Any],
    *,
    label: str,
    value: str,
    label_title: str = "",
    value_title: str = "",
    percent: bool = False,
    width: int = 460,
    colour: str = palette.OPEN,
) -> Markup:
    """Horizontal bars, one per row; rows whose value is None (suppressed) are left out."""
    rows = [r for r in _rows(data) if r.get(value) is not None]
    if not rows:
        return Markup("")
    axis = alt.Axis(format=".0%") if percent else alt.Axis(format="d", tickMinStep=1)
    base = alt.Chart(alt.Data(values=rows)).encode(
        y=alt.Y(f"{label}:N", sort=None, title=label_title, axis=alt.Axis(labelLimit=320)),
        x=alt.X(
            f"{value}:Q",
            title=value_title,
            axis=axis,
            scale=alt.Scale(domain=[0, 1]) if percent else alt.Undefined,
        ),
    )
    text = base.mark_text(align="left", dx=3, fontSize=10).encode(
        text=alt.Text(f"{value}:Q", format=".0%" if percent else "d")
    )
    chart = (base.mark_bar(color=colour) + text).properties(width=width, height=22 * len(rows))
    return _svg(chart)


def histogram(
    data: Sequence[Any],
    *,
    start: str = "bin_start",
    end: str = "bin_end",
    count: str = "count",
    x_title: str = "",
    y_title: str = "",
    width: int = 460,
) -> Markup:
    """Columns over day ranges. The axis spans every bin, so a suppressed bin (None) is a
    visible gap where it lies, not a range that silently disappears."""
    every = _rows(data)
    rows = [r for r in every if r.get(count) is not None]
    if not rows:
        return Markup("")
    domain = [min(r[start] for r in every), max(r[end] for r in every)]
    chart = (
        alt.Chart(alt.Data(values=rows))
        .mark_bar(color=palette.AGES[1], stroke="white", strokeWidth=0.5)
        .encode(
            x=alt.X(
                f"{start}:Q",
                bin="binned",
                title=x_title,
                scale=alt.Scale(domain=domain, nice=False),
            ),
            x2=f"{end}:Q",
            y=alt.Y(f"{count}:Q", title=y_title, axis=alt.Axis(format="d", tickMinStep=1)),
        )
        .properties(width=width, height=160)
    )
    return _svg(chart)


def _parts_colours(count: int) -> list[str]:
    """Colours for the parts of a stacked bar: ages of waiting work are shades of blue, darker
    the older, as on the dashboard (never red: a long wait is not overdue by itself)."""
    return palette.AGES[:count] if count <= len(palette.AGES) else palette.CATEGORIES[:count]


def stacked(
    data: Sequence[Any],
    *,
    label: str,
    parts: Sequence[tuple[str, str]],
    label_title: str = "",
    value_title: str = "",
    width: int = 420,
) -> Markup:
    """Horizontal stacked bars: ``parts`` are (field, legend text) in stacking order.

    A row with any suppressed part is left out whole, so no hidden part can be read off
    the length of the bar."""
    long = []
    for r in _rows(data):
        if any(r.get(field) is None for field, _ in parts):
            continue
        for order, (field, legend) in enumerate(parts):
            long.append({"label": r[label], "part": legend, "order": order, "n": r[field]})
    if not long:
        return Markup("")
    legends = [legend for _, legend in parts]
    chart = (
        alt.Chart(alt.Data(values=long))
        .mark_bar()
        .encode(
            y=alt.Y("label:N", sort=None, title=label_title, axis=alt.Axis(labelLimit=320)),
            x=alt.X("n:Q", stack="zero", title=value_title, axis=alt.Axis(format="d")),
            color=alt.Color(
                "part:N",
                sort=legends,
                scale=alt.Scale(domain=legends, range=_parts_colours(len(legends))),
                legend=alt.Legend(title=None, orient="bottom", columns=len(legends)),
            ),
            order=alt.Order("order:Q"),
        )
        .properties(width=width, height=22 * len({x["label"] for x in long}))
    )
    return _svg(chart)
