"""My cases: what needs me first, then every case by urgency, filtered and searched, 50 a page;
a click on a row opens the case."""

from __future__ import annotations

import streamlit as st

from dashboard.common import _, choose, database, due_text, require_actor, show_flash, step_title
from dashboard.formatting import date_text, number_text, person_text
from dashboard.lists import open_case, page_window, paged, pager, selected_rows
from tracker.enums import CaseStatus
from tracker.journeys import queries
from tracker.journeys.inbox import Inbox, InboxItem, needs_me
from tracker.pathway import get_registry

actor = require_actor("case_manager", "admin")
show_flash()
st.title(_("My cases") if actor.role == "case_manager" else _("Cases"))

registry = get_registry()
catalogue = registry.catalogue

INBOX = "cases_inbox"
TABLE = "cases_table"


def full_name(given: str, family: str) -> str:
    return f"{given} {family}".strip()


def inbox_what(item: InboxItem) -> str:
    """What waits, in words: who sent the step back and why, whose consent is missing."""
    org = item.organisation_name or ""
    what = {
        "returned": _("returned by {organisation}").format(organisation=org),
        "declined": _("declined by {organisation}").format(organisation=org),
        "held": _("held: no consent for {organisation}").format(organisation=org),
        "blocked": _("blocked"),
        "overdue": _("overdue"),
    }[item.kind]
    return f"{what}: {item.reason}" if item.reason else what


def stage_text(row: queries.CaseRow) -> str:
    """Where the case stands, in words: its active steps, or why none is active."""
    if row.status != CaseStatus.open:
        return _(row.status)
    if row.active_steps:
        return ", ".join(step_title(k) for k in row.active_steps)
    return _("waiting for the next step")


scope = st.session_state.get("cases_scope", "me" if actor.role == "case_manager" else "all")
manager = "me" if scope == "me" else None

# --- What needs me ------------------------------------------------------------------------


def inbox_page(offset: int, limit: int) -> Inbox:
    with database().read() as session:
        return needs_me(session, actor=actor, manager=manager, limit=limit, offset=offset)


inbox = paged(INBOX, inbox_page, lambda found: found.total, filters=scope)

st.subheader(_("Needs me"))
if not inbox.total:
    st.caption(_("Nothing waits for you: no step sent back, held, blocked or overdue."))
else:
    st.caption(
        " · ".join(
            f"{label}: {number_text(inbox.counts[kind])}"
            for kind, label in (
                ("returned", _("returned")),
                ("declined", _("declined")),
                ("held", _("held (no consent)")),
                ("blocked", _("blocked")),
                ("overdue", _("overdue")),
            )
            if inbox.counts[kind]
        )
    )
    picked = st.dataframe(
        [
            {
                _("Name"): full_name(i.given_name, i.family_name),
                _("Step"): step_title(i.step),
                _("What"): inbox_what(i),
                _("Due"): date_text(i.due_date),
                _("Reference"): i.reference,
            }
            for i in inbox.items
        ],
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(inbox.items), 320),
        column_config={
            _("Name"): st.column_config.TextColumn(width=170),
            _("Step"): st.column_config.TextColumn(width=250),
            _("What"): st.column_config.TextColumn(width=210),
            _("Due"): st.column_config.TextColumn(width=100),
            _("Reference"): st.column_config.TextColumn(width=115),
        },
        key=INBOX,
        on_select="rerun",
        selection_mode="single-row",
    )
    pager(INBOX, inbox.total, len(inbox.items))
    for row in selected_rows(picked, len(inbox.items)):
        open_case(inbox.items[row].reference, table=INBOX)

# --- Every case ---------------------------------------------------------------------------
st.subheader(_("Cases"))
cols = st.columns([1, 1, 1, 1, 1])
cols[0].selectbox(
    _("Whose cases"),
    ["me", "all"],
    format_func=lambda v: _("mine") if v == "me" else _("everyone's"),
    key="cases_scope",
    index=["me", "all"].index(scope),
    placeholder=choose(),
)
stage = cols[1].selectbox(
    _("Stage (active step)"),
    ["", *catalogue],
    format_func=lambda k: _("all") if not k else step_title(k),
    key="cases_stage",
    placeholder=choose(),
)
pathway = cols[2].selectbox(
    _("Profile"),
    ["", *sorted({p.key for p in registry.pathways.values()})],
    format_func=lambda k: _("all") if not k else _(k),
    key="cases_pathway",
    placeholder=choose(),
)
due = cols[3].selectbox(
    _("Clock"),
    ["", "overdue", "due_soon"],
    format_func=lambda k: {"": _("all"), "overdue": _("overdue"), "due_soon": _("due soon")}[k],
    key="cases_due",
    placeholder=choose(),
)
status = cols[4].selectbox(
    _("Status"),
    ["open", "closed", "cancelled"],
    format_func=lambda k: _(k),
    key="cases_status",
    placeholder=choose(),
)
search_col, attention_col = st.columns([2, 1], vertical_alignment="bottom")
search = search_col.text_input(
    _("Search name or reference"),
    key="cases_search",
    placeholder=_("Name or case number"),
).strip()
attention = attention_col.checkbox(_("Only cases that need me"), key="cases_attention")

filters = {
    "manager": manager,
    "status": CaseStatus(status),
    "pathway": pathway or None,
    "stage": stage or None,
    "due": due or None,
    "attention": attention,
    "search": search or None,
}
with database().read() as session:
    counts = queries.case_counts(session, actor=actor, manager=manager)
    total = queries.count_cases(session, actor=actor, **filters)
offset, limit = page_window(TABLE, total, filters=tuple(sorted(filters.items())))
with database().read() as session:
    rows = queries.list_cases(session, actor=actor, **filters, limit=limit, offset=offset)

m = st.columns(4)
m[0].metric(_("Open cases"), number_text(counts["open"]))
m[1].metric(_("Overdue"), number_text(counts["overdue"]))
m[2].metric(_("Due soon"), number_text(counts["due_soon"]))
m[3].metric(
    _("Need attention"),
    number_text(counts["attention"]),
    help=_("Cases with a step sent back, held or blocked; overdue ones are counted apart."),
)

if not rows:
    st.info(_("No case matches these filters."))
    st.stop()

mine = manager is not None
table = [
    {
        _("Name"): full_name(r.given_name, r.family_name),
        _("Stage"): stage_text(r),
        _("Next due"): due_text(r.due_status, r.next_due),
        _("Progress"): f"{r.steps_finished} / {r.steps_total}",
        _("Profile"): _(r.pathway),
        _("Reference"): r.reference,
        **({} if mine else {_("Case manager"): person_text(r.case_manager, organisation=False)}),
    }
    for r in rows
]
picked = st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={
        # What fits 1366 px beside the sidebar without scrolling sideways (about 860 px).
        _("Name"): st.column_config.TextColumn(width=165 if mine else 155),
        _("Stage"): st.column_config.TextColumn(width=260 if mine else 200),
        _("Next due"): st.column_config.TextColumn(width=150 if mine else 140),
        _("Progress"): st.column_config.TextColumn(
            width=70 if mine else 60, help=_("Steps finished (done or skipped) of all steps")
        ),
        _("Profile"): st.column_config.TextColumn(width=100 if mine else 95),
        _("Reference"): st.column_config.TextColumn(width=110 if mine else 105),
        _("Case manager"): st.column_config.TextColumn(width=110),
    },
    key=TABLE,
    on_select="rerun",
    selection_mode="single-row",
)
pager(TABLE, total, len(rows))
st.caption(_("Most urgent first. Click a row to open the case."))
for row in selected_rows(picked, len(rows)):
    open_case(rows[row].reference, table=TABLE)
