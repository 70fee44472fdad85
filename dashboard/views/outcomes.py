"""Outcomes for leadership: aggregates only, small cells hidden, every figure also as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date
from typing import Any

import altair as alt
import streamlit as st
from babel.numbers import format_percent

from dashboard import charts
from dashboard.common import _, choose, database, database_at, draw_chart, lang, require_actor
from dashboard.formatting import locale, number_text
from tracker.access import Actor, figure_scope
from tracker.audit import data_version
from tracker.clocks import local_today
from tracker.config import get_settings
from tracker.reporting import figures as outcomes
from tracker.reporting.reports import spreadsheet_safe

actor = require_actor("leadership", "admin")
st.title(_("Outcomes"))
st.caption(_("Aggregates only. Groups of fewer than 5 people are not shown (–)."))

today = local_today()
cols = st.columns([1, 1, 3])
year = cols[0].selectbox(
    _("Year"), list(range(today.year, 2023, -1)), key="outcomes_year", placeholder=choose()
)
pathway = cols[1].selectbox(
    _("Profile"),
    ["", "skilled_worker", "student", "eu_citizen"],
    format_func=lambda k: _("all") if not k else _(k),
    key="outcomes_pathway",
    placeholder=choose(),
)


@st.cache_data(ttl=300, max_entries=100, show_spinner=_("Counting …"))
def figures(
    scope: tuple[str, int | None],
    version: str,
    url: str,
    year: int,
    pathway: str,
    today: date,
    _actor: Actor,
) -> outcomes.YearFigures:
    """The year's figures, read once per scope (what they depend on about the viewer: role and
    organisation, never the person) and data version (the latest change): every leadership
    member shares them, another role never sees them, and a change shows on the next run."""
    with database_at(url).read() as session:
        return outcomes.year_figures(
            session, actor=_actor, year=year, today=today, pathway=pathway or None
        )


with database().read() as session:
    version = data_version(session)
data = figures(
    figure_scope(actor),
    version,
    get_settings().resolved_database_url,
    year,
    pathway,
    today,
    actor,
)
# What every chart of this run is drawn from: the figures' key and the language.
drawn_from = (figure_scope(actor), version, year, pathway, today, lang())


def draw(build: Callable[[], alt.TopLevelMixin], *, name: str) -> None:
    """A chart named for screen readers (``name``, unique on the page), its spec made once per
    figures, language and chart."""
    draw_chart((*drawn_from, name), build, name=name)


def csv_button(rows: list[dict[str, Any]], name: str, what: str) -> None:
    """The figure's rows as a CSV file; the button says which figure (a page holds a dozen)."""
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{k: spreadsheet_safe(v) for k, v in row.items()} for row in rows])
    st.download_button(
        _("Download “{what}” as CSV").format(what=what),
        buffer.getvalue().encode("utf-8"),
        file_name=f"{name}-{year}.csv",
        mime="text/csv",
        key=f"csv_{name}",
    )


def shown(value: Any) -> str:
    """A figure as the language writes it (1.234, 62,0); "–" where it is not shown."""
    return number_text(value)


def chart(build: Callable[[], alt.TopLevelMixin], *, name: str, hidden: bool) -> None:
    """A chart named for screen readers, and under it what "–" and a pale part mean when
    something in it is hidden."""
    draw(build, name=name)
    if hidden:
        st.caption(HIDDEN_NOTE)


HIDDEN_NOTE = _(
    "–: fewer than 5 people, or hidden so that such a number cannot be worked out; "
    "a pale part of a bar holds such numbers together."
)
NOT_SHOWN = _("not shown (small numbers)")

o = data.overview
# Two rows of three: six tiles in one row cut their labels off at 1366 px.
m = [*st.columns(3), *st.columns(3)]
m[0].metric(_("Open cases"), shown(o.open_cases))
m[1].metric(
    _("Cases overdue"), shown(o.cases_overdue), help=_("Open cases with at least one overdue step")
)
m[2].metric(_("Overdue steps"), shown(o.overdue_steps))
m[3].metric(_("Steps due soon"), shown(o.due_soon_steps))
m[4].metric(_("Closed this year"), shown(o.closed_this_year))
m[5].metric(_("New this year"), shown(o.newcomers_this_year))
csv_button(o.rows(), "overview", _("Overview"))

st.subheader(_("Funnel by stage"))
funnel = [
    {
        "label": _(r.step),
        "total": r.cases,
        "done": r.done,
        "active": r.active,
        "skipped": r.skipped,
        "not_reached": r.not_reached,
    }
    for r in data.funnel.steps
]
chart(
    lambda: charts.stacked_bars(
        funnel,
        parts=[
            ("done", _("done"), charts.DONE),
            ("active", _("active"), charts.OPEN),
            ("not_reached", _("not reached"), charts.NOT_YET),
            ("skipped", _("skipped"), charts.SKIPPED),
        ],
        value_title=_("cases"),
        hidden_label=NOT_SHOWN,
        fmt=shown,
    ),
    name=_("Funnel by stage"),
    hidden=any(r.suppressed for r in data.funnel.steps),
)
csv_button(data.funnel.rows(), "funnel", _("Funnel by stage"))

st.subheader(_("Time from arrival"))
titles = {
    "registration": _("to registration"),
    "residence_title": _("to residence title"),
    "job_entry": _("to job start"),
}
time_cols = st.columns(3)
time_hidden = False
for column, (milestone, figure) in zip(time_cols, data.time_to.items(), strict=False):
    with column:
        title = titles.get(milestone, milestone)
        st.markdown(f"**{title}**")
        if figure.median is None:
            st.caption(f"n = {shown(figure.count)}")
        else:
            st.caption(
                _("median {m} days · middle half {a}–{b} days · n = {n}").format(
                    m=shown(figure.median),
                    a=shown(figure.p25),
                    b=shown(figure.p75),
                    n=shown(figure.count),
                )
            )
        if not any(b.count for b in figure.histogram):
            st.info(_("Too few people to show a distribution."))
        else:
            # The axis spans every bin, the hidden (small) ones too ("–"): the shape stays true.
            draw(
                lambda figure=figure: charts.histogram(
                    [b.model_dump() for b in figure.histogram],
                    x_title=_("days"),
                    y_title=_("people"),
                ),
                name=f"{_('Time from arrival')} {title}",
            )
            time_hidden = time_hidden or any(b.count is None for b in figure.histogram)
if time_hidden:
    st.caption(HIDDEN_NOTE)
# Below the columns, where their labels have room.
for milestone, figure in data.time_to.items():
    title = titles.get(milestone, milestone)
    csv_button(figure.rows(), f"time-to-{milestone}", f"{_('Time from arrival')} {title}")

st.subheader(_("Finished inside the legal clock"))
legal = data.within_legal_clock.steps
chart(
    lambda: charts.labelled_bars(
        [
            {
                "label": f"{_(r.step)} ({r.legal_reference})" if r.legal_reference else _(r.step),
                "value": r.share_within,
            }
            for r in legal
        ],
        value_title=_("share on time"),
        colour=charts.DONE,
        percent=True,
        fmt=lambda share: format_percent(share, locale=locale()),
    ),
    name=_("Finished inside the legal clock"),
    hidden=any(r.share_within is None for r in legal),
)
csv_button(data.within_legal_clock.rows(), "legal-clock", _("Finished inside the legal clock"))

st.subheader(_("Backlog and handoff age per partner"))
backlog = data.partner_backlog.partners
chart(
    lambda: charts.stacked_bars(
        [
            {
                "label": r.organisation_name,
                "total": r.total,
                "age_0_7": r.age_0_7,
                "age_8_14": r.age_8_14,
                "age_15_30": r.age_15_30,
                "age_over_30": r.age_over_30,
            }
            for r in backlog
        ],
        parts=[
            ("age_0_7", "0–7", charts.AGES[0]),
            ("age_8_14", "8–14", charts.AGES[1]),
            ("age_15_30", "15–30", charts.AGES[2]),
            ("age_over_30", "> 30", charts.AGES[3]),
        ],
        value_title=_("open handoffs"),
        legend_title=_("days waiting"),
        hidden_label=NOT_SHOWN,
        fmt=shown,
    ),
    name=_("Backlog and handoff age per partner"),
    hidden=any(r.suppressed for r in backlog),
)
csv_button(data.partner_backlog.rows(), "partner-backlog", _("Backlog and handoff age per partner"))

left, right = st.columns(2)
with left:
    st.subheader(_("Cohorts by year and profile"))
    cohorts = data.cohorts.cohorts
    cohort_rows = [
        {
            "year": str(r.year),
            "profile": _(r.pathway),
            "cases": r.opened or 0,
            "text": shown(r.opened),
        }
        for r in cohorts
    ]
    profiles = list(dict.fromkeys(row["profile"] for row in cohort_rows))
    base = alt.Chart(alt.Data(values=cohort_rows)).encode(
        x=alt.X("year:N", title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("profile:N", sort=profiles),
        y=alt.Y("cases:Q", title=_("cases opened"), axis=alt.Axis(tickMinStep=1, format="d")),
    )
    chart(
        lambda: charts.finish(
            base.mark_bar().encode(
                color=alt.Color(
                    "profile:N",
                    title=None,
                    sort=profiles,
                    scale=alt.Scale(domain=profiles, range=charts.CATEGORIES[: len(profiles)]),
                    legend=alt.Legend(orient="bottom", labelLimit=0),
                ),
                tooltip=[
                    alt.Tooltip("year:N", title=_("Year")),
                    alt.Tooltip("profile:N", title=_("Profile")),
                    alt.Tooltip("text:N", title=_("cases opened")),
                ],
            )
            + base.mark_text(baseline="bottom", dy=-2, fontSize=11, aria=False).encode(
                text="text:N"
            ),
            320,
        ),
        name=_("Cohorts by year and profile"),
        hidden=any(r.opened is None for r in cohorts),
    )
    csv_button(data.cohorts.rows(), "cohorts", _("Cohorts by year and profile"))
with right:
    st.subheader(_("Recognition outcomes"))
    outcomes_rows = data.recognition_outcomes.outcomes
    chart(
        lambda: charts.labelled_bars(
            [{"label": _(r.outcome), "value": r.count, "key": r.outcome} for r in outcomes_rows],
            value_title=_("decisions"),
            colour=charts.OUTCOME_COLOURS,
            fmt=shown,
        ),
        name=_("Recognition outcomes"),
        hidden=any(r.count is None for r in outcomes_rows),
    )
    csv_button(data.recognition_outcomes.rows(), "recognition", _("Recognition outcomes"))

st.subheader(_("FIT@THGA"))
fit = data.fit_panel
# Three to a row: four cut "Employed within 12 months" off at 1366 px in German.
f = [*st.columns(3), *st.columns(3)]
f[0].metric(_("Participants"), shown(fit.participants))
f[1].metric(_("Employed within 12 months"), shown(fit.employed_12m))
f[2].metric(_("Employed within 18 months"), shown(fit.employed_18m))
f[3].metric(_("Case still open"), shown(fit.case_open))
programme = data.fit_programme
g = st.columns(5)
g[0].metric(_("Offers held"), shown(sum(r.offers_held for r in programme.offers)))
g[1].metric(_("Reached by offers"), shown(programme.participants_reached))
g[2].metric(_("Company contacts"), shown(programme.company_contacts))
g[3].metric(_("Graduations"), shown(programme.graduated))
g[4].metric(_("Job entries"), shown(programme.job_entries))
# The two rows count different people: side by side they look contradictory without this.
st.caption(
    _(
        "“{within_12}” and “{within_18}” count only the participants who enrolled in {year} "
        "at least 12 or 18 months ago ({n12} and {n18} so far); “{jobs}” counts everyone who "
        "started a job in {year}, whatever year they enrolled."
    ).format(
        within_12=_("Employed within 12 months"),
        within_18=_("Employed within 18 months"),
        jobs=_("Job entries"),
        year=year,
        n12=shown(fit.followed_12m),
        n18=shown(fit.followed_18m),
    )
)
csv_button(fit.rows(), "fit", _("FIT@THGA participants of the year"))
st.markdown(f"**{_('Offers of the year by kind')}**")
st.dataframe(
    [
        {
            _("Kind of offer"): _(r.kind),
            _("Offers"): shown(r.offers_held),
            _("Places"): shown(r.places),
            _("Attendances"): shown(r.attended),
            _("Did not come"): shown(r.no_show),
        }
        for r in programme.offers
    ],
    hide_index=True,
    width="stretch",
    key="outcomes_fit_offers",
)
rows = programme.rows()
csv_button(
    [r for r in rows if r["section"] == "offers"], "fit_offers", _("Offers of the year by kind")
)
csv_button(
    [r for r in rows if r["section"] == "programme"], "fit_programme", _("FIT@THGA programme")
)
