"""Outcomes for leadership: aggregates only, small cells hidden, every figure also as CSV."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

import altair as alt
import streamlit as st

from dashboard.common import _, require_actor
from tracker import outcomes
from tracker.access import actor_for
from tracker.clocks import local_today
from tracker.config import get_settings
from tracker.reports import spreadsheet_safe

actor = require_actor("leadership", "admin")
st.title(_("Outcomes"))
st.caption(_("Aggregates only. Groups of fewer than 5 people are not shown (–)."))

today = local_today()
cols = st.columns([1, 1, 3])
year = cols[0].selectbox(_("Year"), list(range(today.year, 2023, -1)), key="outcomes_year")
pathway = cols[1].selectbox(
    _("Profile"),
    ["", "skilled_worker", "student", "eu_citizen"],
    format_func=lambda k: _("all") if not k else _(k),
    key="outcomes_pathway",
)


@st.cache_data(ttl=300, show_spinner=_("Counting …"))
def figures(username: str, url: str, year: int, pathway: str, today: date) -> outcomes.YearFigures:
    # Aggregates over the whole database change slowly: five minutes old is fresh enough.
    from dashboard.common import _database

    with _database(url).read() as session:
        who = actor_for(session, username)
        return outcomes.year_figures(
            session, actor=who, year=year, today=today, pathway=pathway or None
        )


data = figures(actor.username, get_settings().resolved_database_url, year, pathway, today)


def csv_button(rows: list[dict[str, Any]], name: str) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{k: spreadsheet_safe(v) for k, v in row.items()} for row in rows])
    st.download_button(
        _("Download CSV"),
        buffer.getvalue().encode("utf-8"),
        file_name=f"{name}-{year}.csv",
        mime="text/csv",
        key=f"csv_{name}",
    )


def shown(value: Any) -> Any:
    return "–" if value is None else value


o = data.overview
m = st.columns(6)
m[0].metric(_("Open cases"), shown(o.open_cases))
m[1].metric(
    _("Cases overdue"), shown(o.cases_overdue), help=_("Open cases with at least one overdue step")
)
m[2].metric(_("Overdue steps"), shown(o.overdue_steps))
m[3].metric(_("Steps due soon"), shown(o.due_soon_steps))
m[4].metric(_("Closed this year"), shown(o.closed_this_year))
m[5].metric(_("New this year"), shown(o.newcomers_this_year))
csv_button(o.rows(), "overview")

st.subheader(_("Funnel by stage"))
funnel_rows = [
    {"step": _(r.step), "status": _(label), "cases": value}
    for r in data.funnel.steps
    for label, value in (
        ("done", r.done),
        ("active", r.active),
        ("skipped", r.skipped),
        ("not reached", r.not_reached),
    )
    if value
]
st.altair_chart(
    alt.Chart(alt.Data(values=funnel_rows))
    .mark_bar()
    .encode(
        y=alt.Y("step:N", sort=None, title=None),
        x=alt.X("cases:Q", title=_("cases")),
        color=alt.Color("status:N", title=None),
        tooltip=["step:N", "status:N", "cases:Q"],
    ),
    width="stretch",
)
csv_button(data.funnel.rows(), "funnel")

st.subheader(_("Time from arrival"))
titles = {
    "registration": _("to registration"),
    "residence_title": _("to residence title"),
    "job_entry": _("to job start"),
}
time_cols = st.columns(3)
for column, (milestone, figure) in zip(time_cols, data.time_to.items(), strict=False):
    with column:
        st.markdown(f"**{titles.get(milestone, milestone)}**")
        st.caption(
            _("median {m} days · middle half {a}–{b} days · n = {n}").format(
                m=shown(figure.median),
                a=shown(figure.p25),
                b=shown(figure.p75),
                n=shown(figure.count),
            )
        )
        bars = [b.model_dump() for b in figure.histogram if b.count]
        if not bars:
            st.info(_("Too few people to show a distribution."))
        else:
            # The axis spans every bin, also the hidden (small) ones, so the shape stays true.
            domain = [figure.histogram[0].bin_start, figure.histogram[-1].bin_end]
            st.altair_chart(
                alt.Chart(alt.Data(values=bars))
                .mark_bar()
                .encode(
                    x=alt.X(
                        "bin_start:Q", bin="binned", title=_("days"), scale=alt.Scale(domain=domain)
                    ),
                    x2="bin_end:Q",
                    y=alt.Y("count:Q", title=_("people"), axis=alt.Axis(tickMinStep=1)),
                    tooltip=["label:N", "count:Q"],
                ),
                width="stretch",
            )
        csv_button(figure.rows(), f"time-to-{milestone}")

st.subheader(_("Finished inside the legal clock"))
legal = [
    {"step": _(r.step), "share": r.share_within, "law": r.legal_reference or ""}
    for r in data.within_legal_clock.steps
    if r.share_within is not None
]
st.altair_chart(
    alt.Chart(alt.Data(values=legal))
    .mark_bar()
    .encode(
        x=alt.X(
            "share:Q",
            axis=alt.Axis(format="%"),
            scale=alt.Scale(domain=[0, 1]),
            title=_("share on time"),
        ),
        y=alt.Y("step:N", title=None),
        tooltip=["step:N", alt.Tooltip("share:Q", format=".0%"), "law:N"],
    ),
    width="stretch",
)
csv_button(data.within_legal_clock.rows(), "legal-clock")

st.subheader(_("Backlog and handoff age per partner"))
backlog = [
    {"partner": r.organisation_name, "age": label, "handoffs": value}
    for r in data.partner_backlog.partners
    for label, value in (
        ("0–7", r.age_0_7),
        ("8–14", r.age_8_14),
        ("15–30", r.age_15_30),
        (">30", r.age_over_30),
    )
    if value
]
st.altair_chart(
    alt.Chart(alt.Data(values=backlog))
    .mark_bar()
    .encode(
        y=alt.Y("partner:N", title=None, axis=alt.Axis(labelLimit=320)),
        x=alt.X("handoffs:Q", title=_("open handoffs"), axis=alt.Axis(tickMinStep=1, format="d")),
        color=alt.Color("age:N", title=_("days waiting"), sort=["0–7", "8–14", "15–30", ">30"]),
        tooltip=["partner:N", "age:N", "handoffs:Q"],
    ),
    width="stretch",
)
csv_button(data.partner_backlog.rows(), "partner-backlog")

left, right = st.columns(2)
with left:
    st.subheader(_("Cohorts by year and profile"))
    cohort_rows = [
        {"year": str(r.year), "profile": _(r.pathway), "cases": r.opened}
        for r in data.cohorts.cohorts
        if r.opened
    ]
    st.altair_chart(
        alt.Chart(alt.Data(values=cohort_rows))
        .mark_bar()
        .encode(
            x=alt.X("year:N", title=None),
            y=alt.Y("cases:Q", title=_("cases opened")),
            color=alt.Color("profile:N", title=None),
            xOffset="profile:N",
            tooltip=["year:N", "profile:N", "cases:Q"],
        ),
        width="stretch",
    )
    csv_button(data.cohorts.rows(), "cohorts")
with right:
    st.subheader(_("Recognition outcomes"))
    rec = [
        {"outcome": _(r.outcome), "count": r.count}
        for r in data.recognition_outcomes.outcomes
        if r.count
    ]
    st.altair_chart(
        alt.Chart(alt.Data(values=rec))
        .mark_arc(innerRadius=40)
        .encode(
            theta="count:Q",
            color=alt.Color("outcome:N", title=None),
            tooltip=["outcome:N", "count:Q"],
        ),
        width="stretch",
    )
    csv_button(data.recognition_outcomes.rows(), "recognition")

st.subheader(_("FIT@THGA"))
fit = data.fit_panel
f = st.columns(4)
f[0].metric(_("Participants"), shown(fit.participants))
f[1].metric(_("Employed within 12 months"), shown(fit.employed_12m))
f[2].metric(_("Employed within 18 months"), shown(fit.employed_18m))
f[3].metric(_("Case still open"), shown(fit.case_open))
csv_button(fit.rows(), "fit")
programme = data.fit_programme
g = st.columns(5)
g[0].metric(_("Offers held"), sum(r.offers_held for r in programme.offers))
g[1].metric(_("Reached by offers"), shown(programme.participants_reached))
g[2].metric(_("Company contacts"), shown(programme.company_contacts))
g[3].metric(_("Graduations"), shown(programme.graduated))
g[4].metric(_("Job entries"), shown(programme.job_entries))
st.dataframe(
    [
        {
            _("Kind of offer"): _(r.kind),
            _("Offers"): r.offers_held,
            _("Places"): r.places,
            _("Attendances"): shown(r.attended),
            _("Did not come"): shown(r.no_show),
        }
        for r in programme.offers
    ],
    hide_index=True,
    width="stretch",
)
rows = programme.rows()
csv_button([r for r in rows if r["section"] == "offers"], "fit_offers")
csv_button([r for r in rows if r["section"] == "programme"], "fit_programme")
