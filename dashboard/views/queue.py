"""A partner's handoff queue: offered and accepted steps, most urgent first, with only the
fields each step needs; accept, decline, complete or return them."""

from __future__ import annotations

import streamlit as st

from dashboard.common import (
    _,
    change,
    database,
    due_text,
    follow_up,
    remember_versions,
    require_actor,
    seen_versions,
    show_flash,
    state_text,
    step_title,
)
from tracker import queries, services
from tracker.enums import HandoffState
from tracker.pathway import get_registry

actor = require_actor("partner_agent", "case_manager", "admin")
show_flash()
catalogue = get_registry().catalogue
prev_versions = seen_versions("queue")
prev_states = dict(st.session_state.get("seen:queue-states", {}))

pending = st.session_state.pop("queue_pending", None)
if pending and actor.is_partner:
    # After an action the screen shows what is true now, not what was seen before the click.
    st.session_state.pop("seen:queue-states", None)
    prev_states = {}
    kind, reference, step, kwargs, version = pending
    fn = {
        "accept": services.accept_handoff,
        "decline": services.decline_handoff,
        "complete": services.complete_handoff,
        "return": services.return_handoff,
    }[kind]
    if change(fn, reference=reference, step_key=step, expected_version=version, **kwargs):
        follow_up(reference)
        st.rerun()

if actor.is_partner:
    organisation = actor.organisation_key
    st.title(_("Our queue"))
else:
    with database().read() as session:
        orgs = [o for o in queries.organisations(session) if o.receives_handoffs]
    organisation = st.selectbox(
        _("Partner"),
        [o.key for o in orgs],
        format_func=lambda k: next(o.name for o in orgs if o.key == k),
        key="queue_org",
    )
    st.title(_("Partner queue"))

due = st.radio(
    _("Show"),
    ["", "overdue", "due_soon"],
    format_func=lambda k: {"": _("all"), "overdue": _("overdue"), "due_soon": _("due soon")}[k],
    horizontal=True,
    key="queue_due",
)
with database().read() as session:
    items = queries.partner_queue(
        session,
        actor=actor,
        organisation=organisation,
        states=(HandoffState.offered, HandoffState.accepted),
        due=due or None,
        limit=200,
    )


counts = {
    "offered": sum(i.state == "offered" for i in items),
    "accepted": sum(i.state == "accepted" for i in items),
    "overdue": sum(i.due_status == "overdue" for i in items),
}
m = st.columns(3)
m[0].metric(_("New (offered)"), counts["offered"])
m[1].metric(_("In progress (accepted)"), counts["accepted"])
m[2].metric(_("Overdue"), counts["overdue"])

field_names = sorted({f for i in items for f in i.newcomer})
st.dataframe(
    [
        {
            _("Reference"): i.reference,
            _("Step"): step_title(i.step),
            _("State"): state_text(i.state),
            _("Waiting (days)"): i.age_days,
            _("Due"): due_text(i.due_status, i.due_date),
            _("Legal deadline"): f"{i.legal_due or ''} {i.legal_reference or ''}".strip(),
            **{_(f): "" if i.newcomer.get(f) is None else str(i.newcomer[f]) for f in field_names},
        }
        for i in items
    ],
    hide_index=True,
    width="stretch",
    key="queue_table",
)
remember_versions("queue", {f"{i.reference}/{i.step}": i.handoff_version for i in items})
st.session_state["seen:queue-states"] = {f"{i.reference}/{i.step}": i.state for i in items}

if not items:
    st.info(_("Nothing in the queue."))
elif actor.is_partner:
    st.subheader(_("Work a handoff"))
    keys = [f"{i.reference}/{i.step}" for i in items]
    chosen = st.selectbox(
        _("Handoff"),
        keys,
        format_func=lambda k: f"{k.split('/')[0]} – {step_title(k.split('/')[1])}",
        key="queue_item",
    )
    item = items[keys.index(chosen)]
    reason = st.text_input(_("Reason (for decline or return)"), key="queue_reason")
    outcomes = catalogue[item.step].outcomes if item.step in catalogue else []
    outcome = st.selectbox(
        _("Outcome"),
        ["", *outcomes],
        format_func=lambda o: _(o) if o else "–",
        key="queue_outcome",
    )
    cols = st.columns(4)
    clicked = None
    # Buttons for the state the person saw: if it changed meanwhile, the click is refused with
    # a message instead of silently doing nothing.
    if prev_states.get(chosen, item.state) == "offered":
        if cols[0].button(_("Accept"), key="queue_accept"):
            clicked = ("accept", {})
        if cols[1].button(_("Decline"), key="queue_decline"):
            clicked = ("decline", {"reason": reason})
    else:
        if cols[0].button(_("Complete"), key="queue_complete"):
            clicked = ("complete", {"outcome": outcome or None})
        if cols[1].button(_("Return"), key="queue_return"):
            clicked = ("return", {"reason": reason})
    if clicked:
        kind, kwargs = clicked
        st.session_state["queue_pending"] = (
            kind,
            item.reference,
            item.step,
            kwargs,
            prev_versions.get(chosen),
        )
        st.rerun()
