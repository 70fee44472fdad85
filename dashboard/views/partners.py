"""Progress per partner: every partner's open handoffs, how old they are, how many are overdue,
and how punctually it completed handoffs lately. Case managers see exact figures and open a
partner's queue with a click; leadership sees small cells hidden."""

from __future__ import annotations

import streamlit as st
from babel.numbers import format_percent

from dashboard.common import _, database, go, require_actor, show_flash
from dashboard.formatting import date_text, locale, number_text
from dashboard.lists import picked
from tracker.clocks import local_today
from tracker.reporting.partners import ON_TIME_DAYS, PartnerProgressRow, partner_progress

actor = require_actor("case_manager", "admin", "leadership")
show_flash()
st.title(_("Partners"))

TABLE = "partners_table"
with database().read() as session:
    progress = partner_progress(session, actor=actor, today=local_today())
rows = sorted(progress.partners, key=lambda r: r.organisation_name.casefold())


def count(value: int | None) -> str:
    return number_text(value)  # None (hidden) is "–"


def days(value: float | None) -> str:
    return number_text(value, decimals=0) if value is not None else "–"


def share(row: PartnerProgressRow) -> str:
    if row.on_time_share is None:
        return "–" if row.completed != 0 else ""
    return format_percent(row.on_time_share, locale=locale())


st.caption(
    _(
        "Open handoffs are offered (new) or accepted (in progress) now; their age counts from "
        "the offer. On time: of the handoffs completed in the last {days} days (since {since}), "
        "the share completed by the step's due date."
    ).format(days=number_text(ON_TIME_DAYS), since=date_text(progress.since))
)
columns = {
    "name": _("Partner"),
    "offered": _("New"),
    "accepted": _("In progress"),
    "open": _("Open handoffs"),
    "overdue": _("Overdue"),
    "median": _("Median age (days)"),
    "oldest": _("Oldest (days)"),
    "completed": _("Completed lately"),
    "on_time": _("On time"),
}
event = st.dataframe(
    [
        {
            columns["name"]: r.organisation_name,
            columns["offered"]: count(r.offered),
            columns["accepted"]: count(r.accepted),
            columns["open"]: count(r.open),
            columns["overdue"]: count(r.overdue),
            columns["median"]: days(r.age_median_days),
            columns["oldest"]: days(r.age_oldest_days),
            columns["completed"]: count(r.completed),
            columns["on_time"]: share(r),
        }
        for r in rows
    ],
    hide_index=True,
    width="stretch",
    height=38 + 35 * len(rows),  # every partner at once
    column_config={
        # What fits 1366 px beside the sidebar without scrolling sideways (about 860 px).
        columns["name"]: st.column_config.TextColumn(width=215),
        **{
            columns[k]: st.column_config.TextColumn(width=w, alignment="right")
            for k, w in (
                ("offered", 55),
                ("accepted", 105),
                ("open", 65),
                ("overdue", 80),
                ("median", 100),
                ("oldest", 100),
                ("completed", 75),
                ("on_time", 65),
            )
        },
    },
    key=TABLE,
    on_select="rerun" if actor.manages_cases else "ignore",
    selection_mode="single-row",
)
if progress.suppressed:
    st.caption(
        _(
            "–: fewer than 5 handoffs, or hidden so that such a number cannot be worked out "
            "from the others. Median and oldest age are shown from 20 open handoffs on."
        )
    )
if actor.manages_cases:
    st.caption(_("Click a partner to open its queue."))
    for key in picked(TABLE, event, [r.organisation for r in rows]):
        st.session_state.pop(TABLE, None)
        st.session_state["queue_org"] = key
        go("queue")
