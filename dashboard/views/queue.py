"""A partner's handoff queue (tracker.access.PARTNER_QUEUE_STATES: offered and accepted steps,
with current consent), most urgent first, with only the fields each step needs: new offers to
accept (several at once) or decline apart from the work in progress, which is completed or
returned. Case managers look at any partner's queue and open a case from it."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from dashboard.common import (
    _,
    change,
    choose,
    database,
    due_text,
    error_text,
    follow_up,
    plain,
    remember_versions,
    require_actor,
    seen_versions,
    show_flash,
    step_title,
)
from dashboard.formatting import date_text, fact_text, number_text
from dashboard.lists import clear_selection, open_case, page_window, pager, picked
from tracker.admin import queries as admin_queries
from tracker.enums import HandoffState
from tracker.errors import ConcurrentEditError, TrackerError
from tracker.journeys import handoffs, queries
from tracker.pathway import get_registry

actor = require_actor("partner_agent", "case_manager", "admin")
show_flash()
catalogue = get_registry().catalogue
prev_versions = seen_versions("queue")

NEW, WORK = "queue_new", "queue_work"
FORM = "queue_form:"  # the prefix of every widget that belongs to one handoff's form
SERVICES = {
    "accept": handoffs.accept_handoff,
    "decline": handoffs.decline_handoff,
    "complete": handoffs.complete_handoff,
    "return": handoffs.return_handoff,
}


def item_key(item: queries.QueueItem) -> str:
    return f"{item.reference}/{item.step}"


def form_key(item: queries.QueueItem, field: str) -> str:
    """A widget of one handoff's form, as it was shown: another person, step or version is
    another widget, so nothing chosen for one handoff is ever offered for the next."""
    return f"{FORM}{field}:{item.reference}:{item.step}:{item.handoff_version}"


def forget_forms() -> None:
    for key in [k for k in st.session_state if str(k).startswith(FORM)]:
        del st.session_state[key]


pending = st.session_state.pop("queue_pending", None)
if pending and actor.is_partner:
    # Carried out before anything is drawn, so the lists can forget their selection and the
    # forms their values: after an action nothing is chosen until the person chooses again.
    clear_selection(NEW)
    clear_selection(WORK)
    forget_forms()
    if len(pending) == 1 and pending[0][0] != "accept":
        kind, reference, step, kwargs, version = pending[0]
        if change(
            SERVICES[kind], reference=reference, step_key=step, expected_version=version, **kwargs
        ):
            follow_up(reference)
            st.rerun()
    else:
        # Offers accepted in one go: one service call and one transaction each, so one that
        # fails (taken meanwhile, consent revoked) leaves the others accepted.
        done, failed = [], []
        for kind, reference, step, kwargs, version in pending:
            try:
                with database().transaction() as session:
                    SERVICES[kind](
                        session,
                        actor=actor,
                        reference=reference,
                        step_key=step,
                        expected_version=version,
                        **kwargs,
                    )
            except ConcurrentEditError:
                failed.append(
                    (reference, step, _("someone changed it meanwhile; reload and try again"))
                )
            except TrackerError as exc:
                failed.append((reference, step, error_text(exc)))
            else:
                done.append(reference)
        st.cache_data.clear()
        for reference in done:
            follow_up(reference)
        if done:
            st.session_state["flash"] = (
                "success",
                _("{n} of {total} offers accepted.").format(
                    n=number_text(len(done)), total=number_text(len(pending))
                ),
            )
        if failed:
            st.session_state["queue_failed"] = failed
        st.rerun()

if actor.is_partner:
    organisation = actor.organisation_key
    st.title(_("Our queue"))
else:
    with database().read() as session:
        orgs = [o for o in admin_queries.organisations(session) if o.receives_handoffs]
    st.title(_("Partner queue"))
    organisation = st.selectbox(
        _("Partner"),
        [o.key for o in orgs],
        format_func=lambda k: next(o.name for o in orgs if o.key == k),
        key="queue_org",
        placeholder=choose(),
    )

for reference, step, message in st.session_state.pop("queue_failed", []):
    st.error(
        _("Not accepted: {reference} · {step}: {message}").format(
            reference=reference, step=step_title(step), message=plain(message)
        )
    )

search_col, due_col = st.columns([2, 1], vertical_alignment="bottom")
search = search_col.text_input(
    _("Search name or reference"), key="queue_search", placeholder=_("Name or case number")
).strip()
due = due_col.radio(
    _("Show"),
    ["", "overdue", "due_soon"],
    format_func=lambda k: {"": _("all"), "overdue": _("overdue"), "due_soon": _("due soon")}[k],
    horizontal=True,
    key="queue_due",
)
filters = {"organisation": organisation, "due": due or None, "search": search or None}
with database().read() as session:
    totals = queries.partner_queue_counts(session, actor=actor, organisation=organisation)
    found = (
        queries.partner_queue_counts(session, actor=actor, **filters) if search or due else totals
    )

m = st.columns(3)
m[0].metric(_("New (offered)"), number_text(totals["offered"]))
m[1].metric(_("In progress (accepted)"), number_text(totals["accepted"]))
m[2].metric(_("Overdue"), number_text(totals["overdue"]))

names = {"given_name", "family_name"}


def name_of(item: queries.QueueItem) -> str:
    return f"{item.newcomer.get('given_name', '')} {item.newcomer.get('family_name', '')}".strip()


def details(item: queries.QueueItem) -> str:
    """The other facts this step needs, in one column (a column each would not fit)."""
    return " · ".join(
        f"{_(f)}: {fact_text(f, v)}"
        for f, v in item.newcomer.items()
        if f not in names and v not in (None, "")
    )


@dataclass(frozen=True)
class Chosen:
    """A handoff selected in a list, as the list showed it; ``item`` is None when it is no
    longer in the list (someone else answered it meanwhile): acting on it is then refused by
    the service, with the reason."""

    reference: str
    step: str
    name: str
    item: queries.QueueItem | None


def draw(key: str, state: HandoffState, total: int, *, multi: bool) -> list[Chosen]:
    """One of the two lists, paged; returns the handoffs selected in it."""
    offset, limit = page_window(key, total, filters=tuple(sorted(filters.items())))
    with database().read() as session:
        items = queries.partner_queue(
            session, actor=actor, states=(state,), **filters, limit=limit, offset=offset
        )
    names_before = dict(st.session_state.get(f"{key}:names", {}))
    if not items:
        st.caption(_("None match.") if search or due else _("None right now."))
        # What was selected before the list emptied (a colleague answered it meanwhile) is
        # still what the click meant: acting on it is refused with the reason.
        gone = picked(key, st.session_state.get(key), [])
        st.session_state[f"{key}:names"] = {}
        return [Chosen(*k.split("/", 1), name=names_before.get(k, ""), item=None) for k in gone]
    waited = _("Waiting (days)") if state == HandoffState.offered else _("Accepted on")
    event = st.dataframe(
        [
            {
                _("Name"): name_of(i),
                _("Step"): step_title(i.step),
                _("Due"): due_text(i.due_status, i.due_date),
                _("Legal deadline"): f"{date_text(i.legal_due)} {i.legal_reference or ''}".strip(),
                waited: (number_text(i.age_days) if i.age_days is not None else "")
                if state == HandoffState.offered
                else date_text(i.accepted_at),
                _("Reference"): i.reference,
            }
            for i in items
        ],
        hide_index=True,
        width="stretch",
        column_config={
            # What fits 1366 px beside the sidebar without scrolling sideways (about 860 px);
            # the facts the step needs are shown with the handoff once it is clicked.
            _("Name"): st.column_config.TextColumn(width=160),
            _("Step"): st.column_config.TextColumn(width=170),
            _("Due"): st.column_config.TextColumn(width=145),
            _("Legal deadline"): st.column_config.TextColumn(width=165),
            waited: st.column_config.TextColumn(width=100),
            _("Reference"): st.column_config.TextColumn(width=110),
        },
        key=key,
        on_select="rerun",
        selection_mode="multi-row" if multi else "single-row",
    )
    pager(key, total, len(items))
    by_key = {item_key(i): i for i in items}
    chosen = picked(key, event, list(by_key))
    st.session_state[f"{key}:names"] = {k: name_of(i) for k, i in by_key.items()}
    shown = {k: i.handoff_version for k, i in by_key.items()}
    remember_versions("queue", {**seen_versions("queue"), **shown})
    return [
        Chosen(
            *k.split("/", 1),
            name=name_of(by_key[k]) if k in by_key else names_before.get(k, ""),
            item=by_key.get(k),
        )
        for k in chosen
    ]


def submit(*actions: tuple[str, Chosen, dict[str, object]]) -> None:
    st.session_state["queue_pending"] = [
        (kind, c.reference, c.step, kwargs, prev_versions.get(f"{c.reference}/{c.step}"))
        for kind, c, kwargs in actions
    ]
    st.rerun()


# The versions of the handoffs on screen are remembered afresh each run (see draw).
remember_versions("queue", {})

st.subheader(_("New offers"))
offers = draw(NEW, HandoffState.offered, found["offered"], multi=actor.is_partner)
if offers and not actor.is_partner:
    open_case(offers[0].reference, table=NEW)
elif offers:
    st.caption(
        _("{n} selected: {names}").format(
            n=number_text(len(offers)), names=plain(", ".join(c.name for c in offers))
        )
    )
    if len(offers) == 1 and offers[0].item is not None and details(offers[0].item):
        st.caption(plain(details(offers[0].item)))
    act = st.columns([2, 1, 1])
    if act[0].button(
        _("Accept {n} selected").format(n=number_text(len(offers))),
        key="queue_accept",
        type="primary",
        width="stretch",
    ):
        submit(*(("accept", i, {}) for i in offers))
    if len(offers) == 1 and offers[0].item is not None:
        offer = offers[0].item
        if act[1].button(_("Open case"), key="queue_open_offer", width="stretch"):
            open_case(offer.reference, table=NEW)
        with st.form(form_key(offer, "decline"), border=False):
            reason = st.text_input(
                _("Reason (for decline)"),
                key=form_key(offer, "decline_reason"),
                placeholder=_("Why your organisation cannot take this step"),
            )
            if st.form_submit_button(_("Decline"), key="queue_decline"):
                submit(("decline", offers[0], {"reason": reason}))
elif actor.is_partner and found["offered"]:
    st.caption(_("Select one or more offers to accept them; one to decline it."))

st.subheader(_("In progress"))
work = draw(WORK, HandoffState.accepted, found["accepted"], multi=False)
if work and not actor.is_partner:
    open_case(work[0].reference, table=WORK)
elif work and work[0].item is None:
    st.caption(_("This handoff is no longer in progress here."))
elif work:
    chosen, item = work[0], work[0].item
    assert item is not None  # (the branch above)
    with st.container(border=True):
        st.markdown(
            f"**{_('Complete or return')}:** {plain(name_of(item))} · {step_title(item.step)}"
        )
        if details(item):
            st.caption(plain(details(item)))
        outcomes = catalogue[item.step].outcomes if item.step in catalogue else []
        outcome = None
        if outcomes:
            outcome = st.selectbox(
                _("Outcome"),
                outcomes,
                index=None,
                format_func=_,
                placeholder=choose(),
                key=form_key(item, "outcome"),
            )
        reason = st.text_input(
            _("Reason (for return)"),
            key=form_key(item, "return_reason"),
            placeholder=_("Why the step goes back to the case manager"),
        )
        buttons = st.columns([1, 1, 1, 3])
        if buttons[0].button(_("Complete"), key="queue_complete", type="primary"):
            if outcomes and outcome is None:
                st.warning(_("Choose the outcome first."))
            else:
                submit(("complete", chosen, {"outcome": outcome}))
        if buttons[1].button(_("Return"), key="queue_return"):
            submit(("return", chosen, {"reason": reason}))
        if buttons[2].button(_("Open case"), key="queue_open_work"):
            open_case(item.reference, table=WORK)
elif actor.is_partner and found["accepted"]:
    st.caption(_("Click a row to complete or return it."))
