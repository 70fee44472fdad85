"""My cases: filters by stage, pathway and clock, counts at the top, a case opens in one click."""

from __future__ import annotations

import streamlit as st

from dashboard.common import _, database, due_text, go, require_actor, show_flash, step_title
from tracker import queries
from tracker.enums import CaseStatus
from tracker.pathway import get_registry

actor = require_actor("case_manager", "admin")
show_flash()
st.title(_("My cases") if actor.role == "case_manager" else _("Cases"))

registry = get_registry()
catalogue = registry.catalogue


cols = st.columns([1, 1, 1, 1, 1])
scope = cols[0].selectbox(
    _("Whose cases"),
    ["me", "all"],
    format_func=lambda v: _("mine") if v == "me" else _("everyone's"),
    key="cases_scope",
    index=0 if actor.role == "case_manager" else 1,
)
stage = cols[1].selectbox(
    _("Stage (active step)"),
    ["", *catalogue],
    format_func=lambda k: _("all") if not k else step_title(k),
    key="cases_stage",
)
pathway = cols[2].selectbox(
    _("Profile"),
    ["", *sorted({p.key for p in registry.pathways.values()})],
    format_func=lambda k: _("all") if not k else _(k),
    key="cases_pathway",
)
due = cols[3].selectbox(
    _("Clock"),
    ["", "overdue", "due_soon"],
    format_func=lambda k: {"": _("all"), "overdue": _("overdue"), "due_soon": _("due soon")}[k],
    key="cases_due",
)
status = cols[4].selectbox(
    _("Status"),
    ["open", "closed", "cancelled"],
    format_func=lambda k: _(k),
    key="cases_status",
)
attention = st.checkbox(_("Only cases that need me"), key="cases_attention")
search = st.text_input(_("Search name or reference"), key="cases_search")

manager = "me" if scope == "me" else None
with database().read() as session:
    counts = queries.case_counts(session, actor=actor, manager=manager)
    rows = queries.list_cases(
        session,
        actor=actor,
        manager=manager,
        status=CaseStatus(status),
        pathway=pathway or None,
        stage=stage or None,
        due=due or None,
        attention=attention,
        search=search or None,
        limit=200,
    )

m = st.columns(4)
m[0].metric(_("Open cases"), counts["open"])
m[1].metric(_("Overdue"), counts["overdue"])
m[2].metric(_("Due soon"), counts["due_soon"])
m[3].metric(_("Need attention"), counts["attention"])

st.caption(_("{n} cases shown, most urgent first").format(n=len(rows)))
table = [
    {
        _("Reference"): r.reference,
        _("Name"): f"{r.given_name} {r.family_name}",
        _("Profile"): _(r.pathway),
        _("Active steps"): ", ".join(step_title(k) for k in r.active_steps),
        _("Next due"): due_text(r.due_status, r.next_due),
        _("Overdue steps"): r.overdue_steps,
        _("Case manager"): r.case_manager or "",
    }
    for r in rows
]
st.dataframe(table, hide_index=True, width="stretch", key="cases_table")

if rows:
    chosen = st.selectbox(
        _("Open a case"),
        [r.reference for r in rows],
        format_func=lambda ref: next(
            f"{r.reference} – {r.given_name} {r.family_name}" for r in rows if r.reference == ref
        ),
        key="cases_open_ref",
    )
    if st.button(_("Open"), key="cases_open"):
        st.session_state["case"] = chosen
        go("person")
