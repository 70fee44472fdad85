"""The reads behind the daily lists: pages and counts, search, the case manager's inbox,
progress per person and per partner, and which actions a step's state allows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.conftest import NOW
from tests.helpers import advance, start_case
from tracker.access import Actor
from tracker.db import Database
from tracker.enums import HandoffState, StepState
from tracker.errors import PermissionDenied, TrackerError
from tracker.journeys import queries
from tracker.journeys.handoffs import (
    accept_handoff,
    complete_handoff,
    decline_handoff,
    offer_handoff,
    return_handoff,
    withdraw_handoff,
)
from tracker.journeys.inbox import needs_me
from tracker.journeys.steps import block_step, complete_step, skip_step, start_step
from tracker.journeys.transitions import available_actions
from tracker.models import Handoff
from tracker.reporting.partners import partner_progress

TODAY = NOW.date()


def _open_cases(db: Database, cm: Actor, n: int, **overrides: Any) -> list[str]:
    return [
        start_case(db, cm, now=NOW, given_name=f"Person{i:02d}", nationality="PL", **overrides)
        for i in range(n)
    ]


def test_a_list_pages_through_every_case_and_counts_them_all(db, actors):
    cm = actors["cm.mueller"]
    refs = _open_cases(db, cm, 7)
    with db.read() as s:
        total = queries.count_cases(s, actor=cm, manager="me", today=TODAY)
        pages = [
            queries.list_cases(s, actor=cm, manager="me", today=TODAY, limit=3, offset=offset)
            for offset in (0, 3, 6)
        ]
    assert total == 7
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(r.reference for p in pages for r in p) == sorted(refs)
    # Another case manager's cases are not counted in "mine".
    with db.read() as s:
        assert queries.count_cases(s, actor=actors["cm.yilmaz"], manager="me") == 0
        assert queries.count_cases(s, actor=actors["cm.yilmaz"], manager=None) == 7


def test_each_case_says_how_many_of_its_steps_are_finished(db, actors):
    cm = actors["cm.mueller"]
    (ref,) = _open_cases(db, cm, 1)
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    advance(db, cm, ref, now=NOW)
    with db.read() as s:
        (row,) = queries.list_cases(s, actor=cm, today=TODAY)
    assert row.steps_total == 6  # the EU citizen's pathway
    assert row.steps_finished == 1
    assert row.active_steps == ["registration"]


def test_search_finds_every_word_in_the_name_or_the_reference(db, actors):
    cm = actors["cm.mueller"]
    ola = start_case(db, cm, now=NOW, given_name="Ola", family_name="Kowalski", nationality="PL")
    start_case(db, cm, now=NOW, given_name="Olaf", family_name="Nowak", nationality="PL")
    start_case(db, cm, now=NOW, given_name="Anna", family_name="Kowalski", nationality="PL")

    def found(search: str) -> list[str]:
        with db.read() as s:
            rows = queries.list_cases(s, actor=cm, search=search)
            assert queries.count_cases(s, actor=cm, search=search) == len(rows)
        return [r.reference for r in rows]

    assert found("ola kowal") == [ola]
    assert found("KOWALSKI OLA") == [ola]
    assert len(found("kowalski")) == 2
    assert found(ola.lower()) == [ola]
    assert found("100%") == []  # a LIKE wildcard is a character like any other
    assert len(found("1994-05")) == 3  # a case manager may search by birth date


def test_a_partners_search_matches_names_and_references_but_never_a_birth_date(db, actors):
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]
    ola = start_case(db, cm, now=NOW, given_name="Ola", family_name="Kowalski", nationality="PL")
    other = start_case(db, cm, now=NOW, given_name="Anna", family_name="Nowak", nationality="PL")

    def found(search: str, actor: Actor = vbw) -> list[str]:
        with db.read() as s:
            items = queries.partner_queue(s, actor=actor, organisation="vbw", search=search)
            counts = queries.partner_queue_counts(s, actor=actor, organisation="vbw", search=search)
        assert counts["offered"] + counts["accepted"] == len(items)
        return [i.reference for i in items]

    assert sorted(found("")) == sorted([ola, other])
    assert found("kowalski ola") == [ola]
    assert found(other) == [other]
    # Housing is VBW's step; its fields do not include the birth date, so no search may probe it.
    assert found("1994") == []
    assert found("1994", actor=cm) != []


def test_queue_counts_say_what_is_new_in_progress_and_overdue_over_all_pages(db, actors):
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]
    refs = _open_cases(db, cm, 4)
    with db.transaction() as s:
        accept_handoff(s, actor=vbw, reference=refs[0], step_key="housing", now=NOW)
    with db.read() as s:
        counts = queries.partner_queue_counts(s, actor=vbw, today=TODAY)
        late = queries.partner_queue_counts(s, actor=vbw, today=TODAY + timedelta(days=31))
        new = queries.partner_queue(
            s, actor=vbw, states=(HandoffState.offered,), limit=2, offset=2, today=TODAY
        )
    assert counts == {"offered": 3, "accepted": 1, "overdue": 0}
    assert late["overdue"] == 4  # housing's service target is 30 days
    assert len(new) == 1 and new[0].state == "offered"


def _manager_world(db: Database, actors: Any) -> dict[str, str]:
    """One case of cm.mueller's for each kind of thing that waits for him, and one of
    cm.yilmaz's with a declined handoff that is none of cm.mueller's business."""
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]
    refs = {
        "declined": start_case(db, cm, now=NOW, nationality="PL", given_name="Dora"),
        "returned": start_case(db, cm, now=NOW, nationality="PL", given_name="Rita"),
        "held": start_case(db, cm, now=NOW, consent_to=[], given_name="Hana"),
        "blocked": start_case(db, cm, now=NOW, nationality="PL", given_name="Bea"),
        "quiet": start_case(db, cm, now=NOW, nationality="PL", given_name="Quinn"),
        "other": start_case(db, actors["cm.yilmaz"], now=NOW, nationality="PL"),
    }
    with db.transaction() as s:
        decline_handoff(
            s, actor=vbw, reference=refs["declined"], step_key="housing", reason="Kein Bestand"
        )
        decline_handoff(
            s, actor=vbw, reference=refs["other"], step_key="housing", reason="Kein Bestand"
        )
        accept_handoff(s, actor=vbw, reference=refs["returned"], step_key="housing")
    with db.transaction() as s:
        return_handoff(
            s, actor=vbw, reference=refs["returned"], step_key="housing", reason="Akte fehlt"
        )
        block_step(s, actor=cm, reference=refs["blocked"], step_key="housing", reason="Pass fehlt")
    return refs


def test_the_inbox_lists_what_waits_for_the_case_manager_most_pressing_first(db, actors):
    cm = actors["cm.mueller"]
    refs = _manager_world(db, actors)
    with db.read() as s:
        found = needs_me(s, actor=cm, today=TODAY)
    assert [(i.kind, i.reference, i.step) for i in found.items] == [
        ("returned", refs["returned"], "housing"),
        ("declined", refs["declined"], "housing"),
        ("held", refs["held"], "job_offer"),  # due in 21 days
        ("held", refs["held"], "recognition"),  # due in 90 days
        ("blocked", refs["blocked"], "housing"),
    ]
    assert found.counts == {"returned": 1, "declined": 1, "held": 2, "blocked": 1, "overdue": 0}
    assert found.total == 5
    returned = found.items[0]
    assert (returned.reason, returned.organisation_name) == ("Akte fehlt", "VBW Bauen und Wohnen")
    assert returned.given_name == "Rita"
    assert found.items[-1].reason == "Pass fehlt"
    assert refs["other"] not in {i.reference for i in found.items}  # not his case

    # Handed on again, a declined step leaves the inbox; a month later every clock has run out.
    with db.transaction() as s:
        offer_handoff(s, actor=cm, reference=refs["declined"], step_key="housing")
    with db.read() as s:
        later = needs_me(s, actor=cm, today=TODAY + timedelta(days=40))
        page = needs_me(s, actor=cm, today=TODAY + timedelta(days=40), limit=2, offset=3)
        everyone = needs_me(s, actor=actors["admin"], manager=None, today=TODAY)
    assert later.counts["declined"] == 0
    assert later.counts["overdue"] == 5  # housing in four cases, and the job offer
    assert {i.reference for i in later.items if i.kind == "overdue"} == {
        refs["declined"],
        refs["returned"],
        refs["blocked"],
        refs["quiet"],
        refs["held"],
    }
    assert [i.kind for i in page.items] == ["blocked", "overdue"]
    assert later.total == 1 + 2 + 1 + 5
    assert everyone.counts["declined"] == 1  # the admin sees cm.yilmaz's case too


def test_partners_and_leadership_have_no_inbox(db, actors):
    with db.read() as s:
        for who in ("vbw.schulz", "lead.schmidt"):
            with pytest.raises(PermissionDenied):
                needs_me(s, actor=actors[who])


def test_partner_progress_counts_open_handoffs_their_age_and_the_on_time_share(db, actors):
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]
    refs = _open_cases(db, cm, 8)
    # The first two offered ten days earlier (the oldest), five accepted, of which one is
    # completed on time and one late.
    with db.transaction() as s:
        first_two = s.scalars(select(Handoff.id).order_by(Handoff.id).limit(2)).all()
        s.execute(
            update(Handoff)
            .where(Handoff.id.in_(first_two))
            .values(offered_at=NOW - timedelta(days=10))
        )
    for ref in refs[2:7]:
        with db.transaction() as s:
            accept_handoff(s, actor=vbw, reference=ref, step_key="housing", now=NOW)
    with db.transaction() as s:
        complete_handoff(
            s, actor=vbw, reference=refs[5], step_key="housing", now=NOW + timedelta(days=2)
        )
        complete_handoff(
            s, actor=vbw, reference=refs[6], step_key="housing", now=NOW + timedelta(days=45)
        )
    today = TODAY + timedelta(days=45)
    with db.read() as s:
        exact = partner_progress(s, actor=cm, today=today)
        hidden = partner_progress(s, actor=actors["lead.schmidt"], today=today)
    vbw_row = next(r for r in exact.partners if r.organisation == "vbw")
    assert (vbw_row.offered, vbw_row.accepted, vbw_row.open) == (3, 3, 6)
    assert vbw_row.overdue == 6  # housing is due 30 days after it opened
    assert vbw_row.age_oldest_days == 55
    assert vbw_row.age_median_days == 45
    assert (vbw_row.completed, vbw_row.on_time, vbw_row.on_time_share) == (2, 1, 0.5)
    assert not exact.suppressed and not vbw_row.suppressed
    # Leadership: small cells hidden, never dropped; the row is there and says so.
    lead_row = next(r for r in hidden.partners if r.organisation == "vbw")
    assert hidden.suppressed
    assert lead_row.suppressed
    assert lead_row.open == 6 and lead_row.overdue == 6
    assert lead_row.offered is None and lead_row.accepted is None  # 3 and 3
    assert lead_row.completed is None and lead_row.on_time_share is None
    assert lead_row.age_median_days is None  # fewer than 20 handoffs
    with db.read() as s, pytest.raises(PermissionDenied):
        partner_progress(s, actor=vbw, today=today)


# --- Which actions a state allows: what the screens offer is what the services accept --------


def _situations(db: Database, actors: Any) -> dict[str, tuple[str, str]]:
    """A step in each state a form can meet, with each kind of active handoff: name ->
    (case reference, step key)."""
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]

    def eu(**kw: Any) -> str:
        return start_case(db, cm, now=NOW, nationality="PL", **kw)

    found: dict[str, tuple[str, str]] = {
        "open_offered": (eu(), "housing"),
        "pending": (eu(), "registration"),
        "open_held": (eu(consent_to=[]), "housing"),
    }
    ref = eu()
    with db.transaction() as s:
        accept_handoff(s, actor=vbw, reference=ref, step_key="housing")
    found["in_progress_accepted"] = (ref, "housing")
    ref = eu()
    with db.transaction() as s:
        withdraw_handoff(s, actor=cm, reference=ref, step_key="housing", reason="selbst")
    found["open_alone"] = (ref, "housing")
    ref = eu()
    with db.transaction() as s:
        withdraw_handoff(s, actor=cm, reference=ref, step_key="housing", reason="selbst")
    with db.transaction() as s:
        start_step(s, actor=cm, reference=ref, step_key="housing")
    found["in_progress_alone"] = (ref, "housing")
    ref = eu()
    with db.transaction() as s:
        block_step(s, actor=cm, reference=ref, step_key="housing", reason="Pass fehlt")
    found["blocked_offered"] = (ref, "housing")
    ref = eu()
    with db.transaction() as s:
        accept_handoff(s, actor=vbw, reference=ref, step_key="housing")
    with db.transaction() as s:
        block_step(s, actor=vbw, reference=ref, step_key="housing", reason="Pass fehlt")
    found["blocked_accepted"] = (ref, "housing")
    ref = eu()
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing")
    found["done"] = (ref, "housing")
    ref = eu()
    with db.transaction() as s:
        skip_step(s, actor=cm, reference=ref, step_key="housing", reason="hat Wohnung")
    found["skipped"] = (ref, "housing")
    return found


_CASE_MANAGER_CALLS: dict[str, Callable[..., object]] = {
    "complete": lambda s, a, r, k: complete_step(s, actor=a, reference=r, step_key=k),
    "start": lambda s, a, r, k: start_step(s, actor=a, reference=r, step_key=k),
    "resume": lambda s, a, r, k: start_step(s, actor=a, reference=r, step_key=k),
    "block": lambda s, a, r, k: block_step(s, actor=a, reference=r, step_key=k, reason="x"),
    "skip": lambda s, a, r, k: skip_step(s, actor=a, reference=r, step_key=k, reason="x"),
    "offer": lambda s, a, r, k: offer_handoff(s, actor=a, reference=r, step_key=k),
    "withdraw": lambda s, a, r, k: withdraw_handoff(
        s, actor=a, reference=r, step_key=k, reason="x"
    ),
}
_PARTNER_CALLS: dict[str, Callable[..., object]] = {
    "accept": lambda s, a, r, k: accept_handoff(s, actor=a, reference=r, step_key=k),
    "decline": lambda s, a, r, k: decline_handoff(s, actor=a, reference=r, step_key=k, reason="x"),
    "complete": lambda s, a, r, k: complete_handoff(s, actor=a, reference=r, step_key=k),
    "return": lambda s, a, r, k: return_handoff(s, actor=a, reference=r, step_key=k, reason="x"),
}


class _RollBack(Exception):
    pass


def _accepted(db: Database, call: Callable[[Session], object]) -> bool:
    """Whether the service goes through; whatever it did is rolled back."""
    try:
        with db.transaction() as s:
            call(s)
            raise _RollBack
    except _RollBack:
        return True
    except TrackerError:
        return False


def test_a_form_offers_exactly_the_actions_the_services_accept_in_each_state(db, actors):
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]
    situations = _situations(db, actors)
    for name, (ref, key) in situations.items():
        for actor, calls in ((cm, _CASE_MANAGER_CALLS), (vbw, _PARTNER_CALLS)):
            with db.read() as s:
                step = next(
                    st
                    for st in queries.case_view(s, actor=cm, reference=ref).steps
                    if st.key == key
                )
            offered = available_actions(
                actor,
                step_state=step.state,
                handoff_state=step.handoff.state if step.handoff else None,
            )
            for action, call in calls.items():
                accepted = _accepted(db, lambda s, c=call, a=actor, r=ref, k=key: c(s, a, r, k))
                # "start" and "resume" are one service: each is offered in its own state only.
                if action in ("start", "resume") and accepted:
                    wanted = StepState.blocked if action == "resume" else StepState.open
                    accepted = step.state == wanted
                assert (action in offered) == accepted, (name, actor.username, action)
    # A closed case offers nothing.
    assert available_actions(cm, step_state="open", handoff_state=None, case_open=False) == []
