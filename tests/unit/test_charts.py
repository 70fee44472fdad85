"""The dashboard's charts: one meaning per colour, hidden cells shown as "–", labels that fit."""

from __future__ import annotations

from typing import Any

from dashboard import charts


def _layers(chart: Any) -> list[dict[str, Any]]:
    """The chart's layers, each with its data (a layer without its own shares the chart's)."""
    spec = chart.to_dict()
    return [{"data": spec.get("data"), **layer} for layer in spec["layer"]]


def _values(layer: dict[str, Any]) -> list[dict[str, Any]]:
    return list(layer["data"]["values"])


def test_a_partner_whose_counts_are_hidden_keeps_its_line_and_reads_as_a_dash():
    rows = [
        # 14 open: 5 shown in the first week, the rest hidden (1-4 each, and one more beside)
        {"label": "Agentur", "total": 14, "new": 5, "old": None, "older": None},
        {"label": "THGA", "total": None, "new": None, "old": None, "older": None},
        {"label": "HWK", "total": 0, "new": 0, "old": 0, "older": 0},
    ]
    chart = charts.stacked_bars(
        rows,
        parts=[("new", "0–7", charts.AGES[0]), ("old", "8–14", charts.AGES[1])],
        value_title="open handoffs",
        hidden_label="not shown",
    )
    bars, totals = _layers(chart)
    segments = _values(bars)
    assert {(s["label"], s["part"], s["n"]) for s in segments} == {
        ("Agentur", "0–7", 5),
        ("Agentur", "not shown", 9),  # the bar is as long as the 14 the queue holds
    }
    ends = {e["label"]: e["text"] for e in _values(totals)}
    assert ends == {"Agentur": "14", "THGA": "–", "HWK": "0"}
    # Every partner keeps its line on the axis, in the given order.
    assert bars["encoding"]["y"]["sort"] == ["Agentur", "THGA", "HWK"]
    # The hidden piece has its own pale colour and says so in the legend.
    scale = bars["encoding"]["color"]["scale"]
    assert scale["domain"] == ["0–7", "not shown"]
    assert scale["range"] == [charts.AGES[0], charts.HIDDEN]


def test_bars_write_their_value_and_a_dash_where_it_is_hidden():
    chart = charts.labelled_bars(
        [
            {"label": "Volle Gleichwertigkeit", "value": 12, "key": "full"},
            {"label": "Keine Gleichwertigkeit", "value": None, "key": "none"},
        ],
        value_title="decisions",
        colour=charts.OUTCOME_COLOURS,
    )
    bars, _text = _layers(chart)
    drawn = {v["label"]: (v["text"], v["colour"]) for v in _values(bars)}
    assert drawn == {
        "Volle Gleichwertigkeit": ("12", charts.DONE),
        "Keine Gleichwertigkeit": ("–", charts.NO_RESULT),
    }


def test_one_meaning_per_colour():
    assert charts.STATE_COLOURS["done"] == charts.DONE
    assert charts.STATE_COLOURS["open"] == charts.OPEN
    assert charts.STATE_COLOURS["overdue"] == charts.OVERDUE
    assert charts.STATE_COLOURS["pending"] == charts.NOT_YET
    # Red means overdue and nothing else: no state, outcome or category is red.
    others = {k: v for k, v in charts.STATE_COLOURS.items() if k != "overdue"}
    assert charts.OVERDUE not in {*others.values(), *charts.OUTCOME_COLOURS.values()}
    assert charts.OVERDUE not in charts.CATEGORIES + charts.AGES
    # A good result is green.
    for good in ("full", "approved", "granted", "issued", "probation_passed"):
        assert charts.OUTCOME_COLOURS[good] == charts.DONE


STEPS = [
    {"key": "recognition", "title": "Anerkennung der ausländischen Qualifikation", "needs": []},
    {"key": "job_offer", "title": "Arbeitsplatzangebot und Zustimmung der BA", "needs": []},
    {
        "key": "visa",
        "title": "Beschleunigtes Fachkräfteverfahren / Visum",
        "needs": ["recognition", "job_offer"],
    },
]


def test_the_journey_map_colours_a_late_step_red_and_names_every_state_in_its_legend():
    steps = [
        {**STEPS[0], "state": "in_progress", "due_status": "overdue"},
        {**STEPS[1], "state": "done"},
        {**STEPS[2], "state": "pending"},
    ]
    labels = {"in_progress": "in Bearbeitung", "done": "erledigt", "pending": "ausstehend"}
    labels["overdue"] = "überfällig"
    chart = charts.journey_map(steps, state_label=labels, legend_title="Stand")
    _lines, points, _halo, text = _layers(chart)
    shown = {v["title"]: v["shown"] for v in _values(points)}
    assert shown == {
        STEPS[0]["title"]: "overdue",
        STEPS[1]["title"]: "done",
        STEPS[2]["title"]: "pending",
    }
    colour = points["encoding"]["color"]
    assert colour["legend"]["title"] == "Stand"
    assert dict(zip(colour["scale"]["domain"], colour["scale"]["range"], strict=True)) == {
        "erledigt": charts.DONE,
        "überfällig": charts.OVERDUE,
        "ausstehend": charts.NOT_YET,
    }
    # Long titles are broken into lines that fit their column, whole words kept.
    for node in _values(text):
        assert all(len(line) <= 26 for line in node["label"].split("\n"))
        assert node["label"].replace("\n", " ") == node["title"]


def test_a_pathway_diagram_draws_its_steps_alike_without_a_legend():
    chart = charts.journey_map([{**s, "state": "open"} for s in STEPS])
    _lines, points, _halo, _text = _layers(chart)
    assert "color" not in points["encoding"]
    assert points["mark"]["color"] == charts.NEUTRAL


def test_the_journey_map_names_what_a_step_needs_by_title_not_key():
    chart = charts.journey_map([{**s, "state": "open"} for s in STEPS])
    _lines, points, _halo, _text = _layers(chart)
    needs = {v["title"]: v["needs_text"] for v in _values(points)}
    assert needs[STEPS[2]["title"]] == f"{STEPS[0]['title']}, {STEPS[1]['title']}"


def test_the_pdf_reports_draw_with_the_dashboards_palette():
    """The report's charts use the same colours as the screens: a waiting partner's backlog in
    shades of blue by age, a share in the open blue, and no red for what is not overdue."""
    from tracker.reporting import charts as report_charts
    from tracker.reporting import palette

    backlog = report_charts.stacked(
        [{"org": "VBW", "new": 3, "old": 5}], label="org", parts=[("new", "0–7"), ("old", "8–14")]
    ).lower()
    assert palette.AGES[0].lower() in backlog and palette.AGES[1].lower() in backlog
    assert palette.OVERDUE.lower() not in backlog
    shares = report_charts.bars([{"label": "Bochum", "n": 7}], label="label", value="n").lower()
    assert palette.OPEN.lower() in shares
    assert charts.CATEGORIES is palette.CATEGORIES  # the screens draw from the same palette
