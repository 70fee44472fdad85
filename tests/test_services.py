"""The service layer against a real database: life cycles, consent, scope and locking."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, text

from tests.conftest import NOW
from tests.helpers import advance, newcomer, start_case
from tracker.enums import CaseStatus, ConsentMethod, HandoffState, StepState
from tracker.errors import (
    ConcurrentEditError,
    InvalidTransition,
    NotFoundError,
    PermissionDenied,
    ValidationFailed,
)
from tracker.journeys import queries
from tracker.journeys.advance import advance_case, advance_cases
from tracker.journeys.cases import (
    CaseOpening,
    open_case,
    open_cases,
    reassign_case,
    register_newcomer,
    register_newcomers,
    update_newcomer,
)
from tracker.journeys.consent import give_consent, revoke_consent
from tracker.journeys.handoffs import (
    accept_handoff,
    complete_handoff,
    decline_handoff,
    offer_handoff,
    return_handoff,
)
from tracker.journeys.steps import block_step, complete_step, skip_step, start_step
from tracker.models import AuditEvent, Case, Handoff, OutboxMessage, Step


def step_states(db, manager, reference):
    with db.read() as s:
        view = queries.case_view(s, actor=manager, reference=reference, today=NOW.date())
    return {st.key: st.state for st in view.steps}


def test_opening_a_skilled_worker_case_opens_the_first_steps_and_offers_them(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    states = step_states(db, cm, ref)
    assert states["recognition"] == "open"
    assert states["job_offer"] == "open"
    assert states["visa"] == "pending"
    assert states["registration"] == "pending"
    with db.read() as s:
        queue = queries.partner_queue(s, actor=actors["ihk.hoffmann"], today=NOW.date())
    assert [(q.reference, q.step, q.state) for q in queue] == [(ref, "recognition", "offered")]


def test_the_pathway_is_chosen_by_profile_and_kept_with_its_version(db, actors):
    cm = actors["cm.mueller"]
    student = start_case(db, cm, now=NOW, purpose="study", given_name="Tran")
    eu = start_case(db, cm, now=NOW, nationality="PL", given_name="Ola")
    with db.read() as s:
        s_view = queries.case_view(s, actor=cm, reference=student)
        e_view = queries.case_view(s, actor=cm, reference=eu)
    assert (s_view.pathway, s_view.pathway_version) == ("student", 1)
    assert (e_view.pathway, e_view.profile) == ("eu_citizen", "eu_citizen")
    assert [st.key for st in s_view.steps if st.state == "open"] == ["housing"]
    assert "residence_title" not in [st.key for st in e_view.steps]


def test_a_handoff_without_consent_is_held_with_a_reason_and_released_by_consent(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, consent_to=[])
    with db.read() as s:
        view = queries.case_view(s, actor=cm, reference=ref)
        queue = queries.partner_queue(s, actor=actors["ihk.hoffmann"])
    recognition = next(st for st in view.steps if st.key == "recognition")
    assert recognition.handoff is not None
    assert recognition.handoff.state == "held"
    assert recognition.handoff.hold_reason == "consent_missing"
    assert queue == []
    with db.read() as s:
        attention = queries.list_cases(s, actor=cm, attention=True)
    assert ref in [r.reference for r in attention]

    with db.transaction() as s:
        give_consent(
            s,
            actor=cm,
            reference=ref,
            organisation="ihk-mr",
            method=ConsentMethod.signed_form,
            notice_language="de",
            now=NOW,
        )
    with db.read() as s:
        queue = queries.partner_queue(s, actor=actors["ihk.hoffmann"])
        offers = s.scalars(
            select(OutboxMessage.kind).where(OutboxMessage.kind == "handoff_offered")
        ).all()
    assert [(q.reference, q.state) for q in queue] == [(ref, "offered")]
    assert offers == ["handoff_offered"]


def test_revoking_consent_takes_the_case_out_of_the_partners_sight_at_once(db, actors):
    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s:
        accept_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=NOW)
    with db.transaction() as s:
        revoke_consent(s, actor=cm, reference=ref, organisation="ihk-mr", now=NOW)
    with db.read() as s:
        assert queries.partner_queue(s, actor=ihk) == []
        with pytest.raises(NotFoundError):
            queries.case_view(s, actor=ihk, reference=ref)
    with db.transaction() as s, pytest.raises(NotFoundError):  # as if there were no case
        complete_step(s, actor=ihk, reference=ref, step_key="recognition", now=NOW)


def test_acting_on_a_completed_handoff_says_it_was_completed_and_when(db, actors):
    cm, ihk, afa = actors["cm.mueller"], actors["ihk.hoffmann"], actors["afa.becker"]
    ref = start_case(db, cm, now=NOW)
    done_at = NOW + timedelta(days=3)  # 2026-03-05 in Bochum
    with db.transaction() as s:
        accept_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=NOW)
    with db.transaction() as s:
        complete_handoff(
            s, actor=ihk, reference=ref, step_key="recognition", outcome="full", now=done_at
        )
    for act in (accept_handoff, complete_handoff):
        with db.transaction() as s, pytest.raises(InvalidTransition) as info:
            act(s, actor=ihk, reference=ref, step_key="recognition", now=done_at)
        assert "was already completed by IHK Mittleres Ruhrgebiet on 05.03.2026" in str(info.value)
        assert "not handed off" not in str(info.value)
    # Another partner of the case learns nothing about what became of a step not handed to it.
    with db.transaction() as s, pytest.raises(InvalidTransition) as info:
        accept_handoff(s, actor=afa, reference=ref, step_key="recognition", now=done_at)
    assert "completed" not in str(info.value)


def test_a_full_skilled_worker_journey_closes_the_case(db, actors):
    cm, ihk, afa, vbw, stadt = (
        actors[u] for u in ("cm.mueller", "ihk.hoffmann", "afa.becker", "vbw.schulz", "stadt.weber")
    )
    ref = start_case(db, cm, now=NOW)
    t = NOW

    def partner_done(actor, step, outcome=None):
        nonlocal t
        t += timedelta(days=1)
        with db.transaction() as s:
            accept_handoff(s, actor=actor, reference=ref, step_key=step, now=t)
        with db.transaction() as s:
            complete_handoff(s, actor=actor, reference=ref, step_key=step, outcome=outcome, now=t)
        advance(db, cm, ref, now=t)

    def manager_done(step, outcome=None):
        nonlocal t
        t += timedelta(days=1)
        with db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key=step, outcome=outcome, now=t)
        advance(db, cm, ref, now=t)

    partner_done(ihk, "recognition", "full")
    partner_done(afa, "job_offer", "approved")
    assert step_states(db, cm, ref)["visa"] == "open"
    manager_done("visa", "granted")
    partner_done(vbw, "housing")
    states = step_states(db, cm, ref)
    assert states["registration"] == "open"
    partner_done(stadt, "registration")
    for step in ("tax_id", "bank_account", "health_insurance"):
        manager_done(step)
    partner_done(stadt, "residence_title", "issued")
    with db.transaction() as s:
        skip_step(
            s,
            actor=cm,
            reference=ref,
            step_key="integration_course",
            reason="Kein Anspruch: Hochschulabschluss",
            now=t,
        )
    advance(db, cm, ref, now=t)
    manager_done("job_entry", "started")
    with db.read() as s:
        view = queries.case_view(s, actor=cm, reference=ref)
        events = queries.timeline(s, actor=cm, reference=ref)
    assert view.status == "closed"
    assert view.closed_at is not None
    assert all(st.state in ("done", "skipped") for st in view.steps)
    actions = [e.action for e in events]
    assert actions[0] == "case.opened"
    assert actions[-1] == "case.closed"
    assert actions.count("step.completed") == 10
    assert actions.count("step.skipped") == 1
    assert actions.count("handoff.accepted") == 5


def test_registration_clock_counts_14_days_from_moving_in(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")  # EU path: housing first
    move_in = date(2026, 2, 20)
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", on=move_in, now=NOW)
    advance(db, cm, ref, now=NOW)
    with db.read() as s:
        view = queries.case_view(s, actor=cm, reference=ref, today=date(2026, 3, 6))
    registration = next(st for st in view.steps if st.key == "registration")
    assert registration.legal_due == date(2026, 3, 6)
    assert registration.legal_reference == "§17 BMG"
    assert registration.due_date == date(2026, 3, 6)  # earlier than the 10-day service target
    assert registration.due_status == "due_soon"
    assert view.newcomer["move_in_date"] == move_in
    with db.read() as s:
        (row,) = queries.list_cases(s, actor=cm, today=date(2026, 3, 6))
        assert row.next_due == date(2026, 3, 6)
        later = queries.case_view(s, actor=cm, reference=ref, today=date(2026, 3, 7))
        overdue = queries.list_cases(s, actor=cm, due="overdue", today=date(2026, 3, 7))
    assert next(st for st in later.steps if st.key == "registration").due_status == "overdue"
    assert [r.reference for r in overdue] == [ref]


def test_changing_a_fact_moves_the_clocks_that_count_from_it(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    advance(db, cm, ref, now=NOW)
    from tracker.schemas import NewcomerUpdate

    with db.transaction() as s:
        update_newcomer(
            s,
            actor=cm,
            reference=ref,
            changes=NewcomerUpdate(move_in_date=date(2026, 2, 25)),
            now=NOW,
        )
    with db.read() as s:
        view = queries.case_view(s, actor=cm, reference=ref)
    assert next(st for st in view.steps if st.key == "registration").legal_due == date(2026, 3, 11)


def test_accelerated_procedure_shortens_the_ba_approval_clock(db, actors):
    cm, afa = actors["cm.mueller"], actors["afa.becker"]
    ref = start_case(db, cm, now=NOW, accelerated_procedure=True)
    with db.transaction() as s:
        accept_handoff(s, actor=afa, reference=ref, step_key="job_offer", now=NOW)
    with db.read() as s:
        view = queries.case_view(s, actor=cm, reference=ref)
    job_offer = next(st for st in view.steps if st.key == "job_offer")
    assert job_offer.legal_due == NOW.date() + timedelta(days=7)


def test_decline_and_return_send_the_step_back_to_the_case_manager(db, actors):
    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s, pytest.raises(ValidationFailed):
        decline_handoff(s, actor=ihk, reference=ref, step_key="recognition", reason="  ", now=NOW)
    with db.transaction() as s:
        decline_handoff(
            s,
            actor=ihk,
            reference=ref,
            step_key="recognition",
            reason="Handwerksberuf: bitte HWK",
            now=NOW,
        )
    with db.read() as s:
        attention = queries.list_cases(s, actor=cm, attention=True)
        kinds = s.scalars(select(OutboxMessage.kind)).all()
    assert [r.reference for r in attention] == [ref]
    assert "handoff_declined" in kinds
    with db.transaction() as s:
        offer_handoff(
            s, actor=cm, reference=ref, step_key="recognition", organisation="hwk-do", now=NOW
        )
    with db.transaction() as s:
        accept_handoff(
            s, actor=actors["hwk.wagner"], reference=ref, step_key="recognition", now=NOW
        )
    assert step_states(db, cm, ref)["recognition"] == "in_progress"
    with db.transaction() as s:
        return_handoff(
            s,
            actor=actors["hwk.wagner"],
            reference=ref,
            step_key="recognition",
            reason="Zeugnisübersetzung fehlt",
            now=NOW,
        )
    assert step_states(db, cm, ref)["recognition"] == "open"
    with db.read() as s:
        view = queries.case_view(s, actor=cm, reference=ref)
        attention = queries.list_cases(s, actor=cm, attention=True)
    rec = next(st for st in view.steps if st.key == "recognition")
    assert rec.owner == "hwk-do"
    assert rec.handoff is None
    assert [h.state for h in rec.past_handoffs] == ["declined", "returned"]
    assert [r.reference for r in attention] == [ref]


def test_block_needs_a_reason_and_a_blocked_step_must_be_resumed_before_completion(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s, pytest.raises(ValidationFailed):
        block_step(s, actor=cm, reference=ref, step_key="recognition", reason="", now=NOW)
    with db.transaction() as s:
        block_step(
            s, actor=cm, reference=ref, step_key="recognition", reason="Unterlagen fehlen", now=NOW
        )
    with db.transaction() as s, pytest.raises(InvalidTransition, match="Resume it first"):
        complete_step(s, actor=cm, reference=ref, step_key="recognition", now=NOW)
    with db.transaction() as s:
        start_step(s, actor=cm, reference=ref, step_key="recognition", now=NOW)
    assert step_states(db, cm, ref)["recognition"] == "in_progress"


def test_impossible_transitions_are_refused_and_change_nothing(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    with db.read() as s:
        before = s.scalar(select(func.count()).select_from(AuditEvent))
    with db.transaction() as s, pytest.raises(InvalidTransition):
        complete_step(s, actor=cm, reference=ref, step_key="registration", now=NOW)  # pending
    with db.transaction() as s, pytest.raises(NotFoundError):  # never handed to the city
        accept_handoff(
            s, actor=actors["stadt.weber"], reference=ref, step_key="registration", now=NOW
        )
    with db.transaction() as s, pytest.raises(ValidationFailed, match="not an outcome"):
        complete_step(s, actor=cm, reference=ref, step_key="recognition", outcome="maybe", now=NOW)
    with db.transaction() as s, pytest.raises(NotFoundError, match="no step"):
        complete_step(s, actor=cm, reference=ref, step_key="flying", now=NOW)
    with db.read() as s:
        after = s.scalar(select(func.count()).select_from(AuditEvent))
    assert after == before


def test_every_change_leaves_exactly_its_audit_events(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, consent_to=[])
    with db.read() as s:
        actions = [e.action for e in queries.timeline(s, actor=cm, reference=ref)]
    assert actions == [
        "case.opened",
        "step.opened",
        "handoff.held",
        "step.opened",
        "handoff.held",
    ]


def test_advance_is_idempotent(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    with db.read() as s:
        counts = [
            s.scalar(select(func.count()).select_from(m))
            for m in (AuditEvent, Handoff, OutboxMessage)
        ]
    for _ in range(3):
        with db.transaction() as s:
            result = advance_case(s, actor=cm, reference=ref, now=NOW)
        assert not result.changed
    with db.read() as s:
        again = [
            s.scalar(select(func.count()).select_from(m))
            for m in (AuditEvent, Handoff, OutboxMessage)
        ]
    assert again == counts


def test_a_stale_edit_is_refused_with_a_clear_message(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    with db.read() as s:
        seen = next(
            st
            for st in queries.case_view(s, actor=cm, reference=ref).steps
            if st.key == "recognition"
        )
    with db.transaction() as s:
        block_step(
            s,
            actor=actors["cm.yilmaz"],
            reference=ref,
            step_key="recognition",
            reason="Unterlagen fehlen",
            expected_version=seen.version,
            now=NOW,
        )
    with db.transaction() as s, pytest.raises(ConcurrentEditError, match="changed by someone else"):
        complete_step(
            s,
            actor=cm,
            reference=ref,
            step_key="recognition",
            expected_version=seen.version,
            now=NOW,
        )
    assert step_states(db, cm, ref)["recognition"] == "blocked"


def test_two_people_completing_the_same_step_at_once_never_both_win(db, actors):
    cm, cm2 = actors["cm.mueller"], actors["cm.yilmaz"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    with db.read() as s:
        version = next(
            st for st in queries.case_view(s, actor=cm, reference=ref).steps if st.key == "housing"
        ).version
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def worker(actor):
        try:
            with db.transaction() as s:
                barrier.wait(timeout=10)
                complete_step(
                    s,
                    actor=actor,
                    reference=ref,
                    step_key="housing",
                    expected_version=version,
                    now=NOW,
                )
            outcomes.append("ok")
        except (ConcurrentEditError, InvalidTransition):
            outcomes.append("refused")

    threads = [threading.Thread(target=worker, args=(a,)) for a in (cm, cm2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["ok", "refused"]
    advance(db, cm, ref, now=NOW)
    advance(db, cm2, ref, now=NOW)
    with db.read() as s:
        completed = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "step.completed")
        )
        opened = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.action == "step.opened",
                AuditEvent.details["step"].as_string() == "registration",
            )
        )
    assert completed == 1
    assert opened == 1


def test_scope_partner_sees_only_its_queue_and_only_the_fields_its_step_needs(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, email="priya@example.org", phone="+49 234 1")
    ihk = actors["ihk.hoffmann"]
    with db.read() as s:
        (item,) = queries.partner_queue(s, actor=ihk)
        assert set(item.newcomer) == {"given_name", "family_name", "birth_date", "nationality"}
        with pytest.raises(PermissionDenied):
            queries.partner_queue(s, actor=ihk, organisation="stadt-bochum")
        with pytest.raises(NotFoundError):
            queries.case_view(s, actor=actors["stadt.weber"], reference=ref)
        with pytest.raises(PermissionDenied):
            queries.list_cases(s, actor=ihk)
        with pytest.raises(PermissionDenied):
            queries.timeline(s, actor=ihk, reference=ref)
        with pytest.raises(PermissionDenied):
            queries.case_view(s, actor=actors["lead.schmidt"], reference=ref)
    with db.transaction() as s, pytest.raises(NotFoundError):  # a write reveals no more
        accept_handoff(
            s, actor=actors["stadt.weber"], reference=ref, step_key="recognition", now=NOW
        )
    with db.transaction() as s, pytest.raises(PermissionDenied):
        complete_step(
            s, actor=ihk, reference=ref, step_key="recognition", now=NOW
        )  # not accepted yet
    with db.transaction() as s, pytest.raises(PermissionDenied):
        skip_step(s, actor=ihk, reference=ref, step_key="recognition", reason="x", now=NOW)
    with db.transaction() as s:
        accept_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=NOW)
    with db.read() as s:
        view = queries.case_view(s, actor=ihk, reference=ref)
    assert [st.key for st in view.steps] == ["recognition"]
    assert "email" not in view.newcomer and "phone" not in view.newcomer
    assert view.consents == []


def test_partner_queue_is_sorted_by_urgency(db, actors):
    cm, stadt = actors["cm.mueller"], actors["stadt.weber"]
    refs = []
    for i, move_in in enumerate([date(2026, 2, 25), date(2026, 2, 10), date(2026, 2, 18)]):
        ref = start_case(db, cm, now=NOW, nationality="PL", given_name=f"P{i}")
        with db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key="housing", on=move_in, now=NOW)
        advance(db, cm, ref, now=NOW)
        refs.append(ref)
    with db.read() as s:
        queue = queries.partner_queue(s, actor=stadt, today=NOW.date())
        overdue = queries.partner_queue(s, actor=stadt, due="overdue", today=NOW.date())
    assert [q.reference for q in queue] == [refs[1], refs[2], refs[0]]
    assert [q.due_date for q in queue] == sorted(q.due_date for q in queue)
    assert [q.reference for q in overdue] == [refs[1]]
    assert queue[0].due_status == "overdue"


def test_a_handoff_carries_its_steps_current_due_date_kept_by_the_database(db, actors):
    """The queue orders by a copy of the step's due date on the handoff (migration 0007): it
    is taken when the handoff is made and follows every change of the step's due date, made
    by a service or by any other UPDATE."""
    from tracker.schemas import NewcomerUpdate

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", on=date(2026, 2, 25), now=NOW)
    advance(db, cm, ref, now=NOW)

    def due_and_copy() -> tuple[date | None, date | None]:
        with db.read() as s:
            step_due, copy = s.execute(
                select(Step.due_date, Handoff.step_due_date)
                .join(Handoff, Handoff.step_id == Step.id)
                .where(Step.key == "registration")
            ).one()
        return step_due, copy

    assert due_and_copy() == (date(2026, 3, 11), date(2026, 3, 11))  # 14 days from moving in
    with db.transaction() as s:
        update_newcomer(
            s,
            actor=cm,
            reference=ref,
            changes=NewcomerUpdate(move_in_date=date(2026, 2, 1)),
            now=NOW,
        )
    assert due_and_copy() == (date(2026, 2, 15), date(2026, 2, 15))
    with db.transaction() as s:
        s.execute(
            text("UPDATE steps SET due_date = :d WHERE key = 'registration'"), {"d": "2026-04-01"}
        )
    assert due_and_copy() == (date(2026, 4, 1), date(2026, 4, 1))


def test_one_open_case_per_newcomer_and_reassignment(db, actors):
    cm = actors["cm.mueller"]
    with db.transaction() as s:
        person = register_newcomer(s, actor=cm, data=newcomer(), now=NOW)
        case = open_case(s, actor=cm, newcomer_id=person.id, now=NOW)
        ref, pid = case.reference, person.id
    with db.transaction() as s, pytest.raises(InvalidTransition, match="already has an open case"):
        open_case(s, actor=cm, newcomer_id=pid, now=NOW)
    with db.transaction() as s:
        reassign_case(s, actor=cm, reference=ref, case_manager="cm.yilmaz", now=NOW)
    with db.read() as s:
        mine = queries.list_cases(s, actor=actors["cm.yilmaz"], manager="me")
    assert [r.reference for r in mine] == [ref]
    with db.transaction() as s, pytest.raises(ValidationFailed):
        reassign_case(s, actor=cm, reference=ref, case_manager="ihk.hoffmann", now=NOW)


def test_only_case_managers_register_newcomers(db, actors):
    for username in ("ihk.hoffmann", "lead.schmidt"):
        with db.transaction() as s, pytest.raises(PermissionDenied):
            register_newcomer(s, actor=actors[username], data=newcomer(), now=NOW)


def test_audit_events_cannot_be_changed_even_with_raw_sql(db, actors):
    start_case(db, actors["cm.mueller"], now=NOW)
    with db.writer.connect() as conn:
        with pytest.raises(Exception, match="append-only"):
            conn.execute(text("UPDATE audit_events SET actor = 'mallory'"))
        conn.rollback()
        with pytest.raises(Exception, match="append-only"):
            conn.execute(text("DELETE FROM audit_events"))
        conn.rollback()


def test_list_cases_filters_by_stage_pathway_and_search(db, actors):
    cm = actors["cm.mueller"]
    worker = start_case(db, cm, now=NOW, family_name="Okafor")
    student = start_case(db, cm, now=NOW, purpose="study", family_name="Nguyen")
    with db.read() as s:
        assert [r.reference for r in queries.list_cases(s, actor=cm, stage="housing")] == [student]
        assert [r.reference for r in queries.list_cases(s, actor=cm, pathway="skilled_worker")] == [
            worker
        ]
        assert [r.reference for r in queries.list_cases(s, actor=cm, search="okaf")] == [worker]
        assert queries.list_cases(s, actor=cm, status=CaseStatus.closed) == []
        rows = queries.list_cases(s, actor=cm)
    assert {r.reference for r in rows} == {worker, student}
    assert next(r for r in rows if r.reference == worker).active_steps == [
        "recognition",
        "job_offer",
    ]


def test_skipping_a_prerequisite_opens_what_depends_on_it(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s:
        skip_step(
            s,
            actor=cm,
            reference=ref,
            step_key="recognition",
            reason="Abschluss in anabin als vergleichbar gelistet",
            now=NOW,
        )
    advance(db, cm, ref, now=NOW)
    with db.read() as s:
        h = s.scalars(select(Handoff).join(Step).where(Step.key == "recognition")).one()
        assert h.state == HandoffState.withdrawn
        assert h.reason == "step_skipped"
    assert step_states(db, cm, ref)["visa"] == "pending"  # still needs job_offer
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="job_offer", now=NOW)
    assert step_states(db, cm, ref)["visa"] == "pending"  # until the advance runs
    advance(db, cm, ref, now=NOW)
    assert step_states(db, cm, ref)["visa"] == StepState.open


def test_finishing_both_prerequisites_at_once_then_advancing_twice_opens_the_next_step_once(
    db, actors
):
    cm, ihk, afa = actors["cm.mueller"], actors["ihk.hoffmann"], actors["afa.becker"]
    ref = start_case(db, cm, now=NOW)
    for actor, step in ((ihk, "recognition"), (afa, "job_offer")):
        with db.transaction() as s:
            accept_handoff(s, actor=actor, reference=ref, step_key=step, now=NOW)
    errors: list[BaseException] = []

    def together(*calls):
        barrier = threading.Barrier(len(calls))

        def run(call):
            try:
                with db.transaction() as s:
                    barrier.wait(timeout=10)
                    call(s)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(c,)) for c in calls]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

    together(
        lambda s: complete_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=NOW),
        lambda s: complete_handoff(s, actor=afa, reference=ref, step_key="job_offer", now=NOW),
    )
    # Two advance runs racing (an event-triggered run and the sweep's catch-up, say).
    together(
        lambda s: advance_case(s, actor=cm, reference=ref, now=NOW),
        lambda s: advance_case(s, actor=cm, reference=ref, now=NOW),
    )
    assert errors == []
    assert step_states(db, cm, ref)["visa"] == "open"
    with db.read() as s:
        visa_opened = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.action == "step.opened",
                AuditEvent.details["step"].as_string() == "visa",
            )
        )
    assert visa_opened == 1


def test_a_change_asks_for_an_advance_and_the_advance_settles_the_request(db, actors):
    from tracker.journeys.advance import advance_case, cases_awaiting_advance

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    later = NOW + timedelta(minutes=5)
    with db.read() as s:
        assert cases_awaiting_advance(s, older_than=later) == []
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    with db.read() as s:
        assert cases_awaiting_advance(s, older_than=later) == [ref]
        assert cases_awaiting_advance(s, older_than=NOW) == []  # still inside the grace period
    # Repeating the advance changes nothing: the second finds nothing to open.
    results = []
    for _ in range(2):
        with db.transaction() as s:
            results.append(advance_case(s, actor=cm, reference=ref, now=NOW))
    assert [r.opened for r in results] == [["registration"], []]
    with db.read() as s:
        assert cases_awaiting_advance(s, older_than=later) == []
        opened = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.action == "step.opened",
                AuditEvent.details["step"].as_string() == "registration",
            )
        )
    assert opened == 1
    assert step_states(db, cm, ref)["registration"] == "open"


def _awaiting(db, cm, count: int) -> list[str]:
    """``count`` cases whose advance was asked for (housing done) and has not run."""
    refs = [start_case(db, cm, now=NOW, nationality="PL") for _ in range(count)]
    for ref in refs:
        with db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    return refs


def _opened(db, step_key: str) -> int:
    with db.read() as s:
        return s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.action == "step.opened",
                AuditEvent.details["step"].as_string() == step_key,
            )
        )


def test_the_catch_up_claims_cases_in_small_batches_and_advances_each_once(db, actors):
    from tracker.journeys.advance import advance_awaiting, cases_awaiting_advance

    cm = actors["cm.mueller"]
    refs = _awaiting(db, cm, 5)
    later = NOW + timedelta(minutes=5)
    with db.transaction() as s:
        assert advance_awaiting(s, actor=cm, older_than=NOW, limit=10).claimed == 0  # grace
    claimed: list[str] = []
    while True:
        with db.transaction() as s:
            outcome = advance_awaiting(s, actor=cm, older_than=later, limit=2, now=later)
        assert outcome.failed == {}
        claimed += [r.reference for r in outcome.advanced]
        assert all(r.opened == ["registration"] for r in outcome.advanced)
        if outcome.claimed < 2:
            break
    assert sorted(claimed) == sorted(refs)
    with db.read() as s:
        assert cases_awaiting_advance(s, older_than=later) == []
    assert _opened(db, "registration") == 5
    with pytest.raises(PermissionDenied), db.transaction() as s:
        advance_awaiting(s, actor=actors["ihk.hoffmann"], older_than=later)


def test_a_case_that_fails_to_advance_is_reported_and_the_others_advance(db, actors, monkeypatch):
    from tracker.journeys import advance
    from tracker.journeys.advance import advance_awaiting
    from tracker.journeys.advance import cases_awaiting_advance as awaiting

    cm = actors["cm.mueller"]
    bad, *good = _awaiting(db, cm, 3)
    real = advance.advance_cases
    calls: list[list[str]] = []

    def advance_cases(session, *, references, **kwargs):
        calls.append(sorted(references))
        result = real(session, references=references, **kwargs)
        if bad in references:  # after it wrote: the savepoint must take it all back
            raise RuntimeError("a broken pathway")
        return result

    monkeypatch.setattr(advance, "advance_cases", advance_cases)
    later = NOW + timedelta(minutes=5)
    with db.transaction() as s:
        outcome = advance_awaiting(s, actor=cm, older_than=later, limit=10, now=later)
    assert outcome.failed == {bad: "RuntimeError: a broken pathway"}
    assert sorted(r.reference for r in outcome.advanced) == sorted(good)
    # The claim set-wise first; it failed, so then each case on its own.
    assert calls[0] == sorted([bad, *good])
    assert sorted(calls[1:]) == sorted([r] for r in [bad, *good])
    with db.read() as s:
        assert awaiting(s, older_than=later) == [bad]  # still asked for, nothing half-done
    assert step_states(db, cm, bad)["registration"] == "pending"
    assert _opened(db, "registration") == 2
    with db.transaction() as s:  # the caller leaves it out of its next claims
        assert advance_awaiting(s, actor=cm, older_than=later, skip=[bad]).claimed == 0


def test_a_claim_is_advanced_set_wise(db, actors, monkeypatch):
    """A claim of cases that all go through is one call of ``advance_cases``: the sweep's
    catch-up costs the same dozen statements for one case or a claim of many."""
    from tracker.journeys import advance
    from tracker.journeys.advance import advance_awaiting

    cm = actors["cm.mueller"]
    refs = _awaiting(db, cm, 4)
    real = advance.advance_cases
    calls: list[list[str]] = []

    def advance_cases(session, *, references, **kwargs):
        calls.append(sorted(references))
        return real(session, references=references, **kwargs)

    monkeypatch.setattr(advance, "advance_cases", advance_cases)
    later = NOW + timedelta(minutes=5)
    with db.transaction() as s:
        outcome = advance_awaiting(s, actor=cm, older_than=later, limit=10, now=later)
    assert calls == [sorted(refs)]
    assert sorted(r.reference for r in outcome.advanced) == sorted(refs)
    assert not outcome.failed
    assert _opened(db, "registration") == 4


@pytest.mark.parametrize("empty_db", ["postgresql"], indirect=True)
def test_on_postgresql_a_claim_skips_cases_another_worker_holds(db, actors):
    from tracker.journeys.advance import advance_awaiting
    from tracker.models import Case

    cm = actors["cm.mueller"]
    held, free = _awaiting(db, cm, 2)
    later = NOW + timedelta(minutes=5)
    other = db.writer.connect()
    try:
        trans = other.begin()
        other.execute(select(Case.id).where(Case.reference == held).with_for_update())
        with db.transaction() as s:
            # Waiting for the held row would fail here instead of hanging the test.
            s.execute(text("SET LOCAL lock_timeout = '5s'"))
            outcome = advance_awaiting(s, actor=cm, older_than=later, limit=10, now=later)
        assert [r.reference for r in outcome.advanced] == [free]
        trans.rollback()
    finally:
        other.close()
    with db.transaction() as s:
        outcome = advance_awaiting(s, actor=cm, older_than=later, limit=10, now=later)
    assert [r.reference for r in outcome.advanced] == [held]
    assert _opened(db, "registration") == 2


def test_completing_a_step_takes_a_handful_of_statements_whatever_the_case_holds(db, actors):
    """Completing a step locks the case row and reads just that step (with its handoffs and
    the newcomer) and the clock columns of the others: no statement per step or handoff, so
    the cost stays the same on a long pathway (it once took 10 or 11)."""
    from sqlalchemy import event

    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    ref = start_case(db, cm, now=NOW)  # skilled worker: 11 steps, handoffs offered
    with db.transaction() as s:
        accept_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=NOW)
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE goes through here
            statements.append(statement.split()[0].upper())

    event.listen(db.writer, "before_cursor_execute", count)
    try:
        with db.transaction() as s:
            complete_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=NOW)
        partner = list(statements)
        statements.clear()
        with db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key="job_offer", now=NOW)
        manager = list(statements)
    finally:
        event.remove(db.writer, "before_cursor_execute", count)
    # Lock the case, read its steps (with their active handoffs and the newcomer's dates),
    # update step, handoff and case; the audit event goes to the driver as a batch of one
    # (tracker.bulk), past these events, so it is counted in the table instead.
    assert manager == ["SELECT", "SELECT", "UPDATE", "UPDATE", "UPDATE"], manager
    # A partner's completion adds its consent check.
    assert partner == ["SELECT", "SELECT", "SELECT", "UPDATE", "UPDATE", "UPDATE"], partner
    with db.read() as s:
        events = s.scalars(
            select(AuditEvent.details).where(
                AuditEvent.action == "step.completed",
                AuditEvent.case_id == s.scalar(select(Case.id).where(Case.reference == ref)),
            )
        ).all()
    assert sorted(e["step"] for e in events) == ["job_offer", "recognition"]


def _statements(db, work):
    """The statements ``work`` sends to the database (SQLite's BEGIN left out), by verb."""
    from sqlalchemy import event

    said: list[str] = []

    def count(conn, cursor, statement, *args):
        if not statement.startswith("BEGIN"):
            said.append(statement.split()[0].upper())

    event.listen(db.writer, "before_cursor_execute", count)
    try:
        work()
    finally:
        event.remove(db.writer, "before_cursor_execute", count)
    return said


def _unadvanced_cases(db, cm, count, *, first):
    """Cases opened (with consent to IHK, so that advancing them hands steps on) and not yet
    advanced."""
    refs = []
    with db.transaction() as s:
        for i in range(count):
            person = register_newcomer(
                s, actor=cm, data=newcomer(given_name=f"{first}{i}"), now=NOW
            )
            refs.append(open_case(s, actor=cm, newcomer_id=person.id, now=NOW).reference)
    for ref in refs:
        with db.transaction() as s:
            give_consent(
                s,
                actor=cm,
                reference=ref,
                organisation="ihk-mr",
                method=ConsentMethod.signed_form,
                notice_language="en",
                now=NOW,
            )
    return refs


def test_advancing_many_cases_takes_as_many_statements_as_advancing_one(db, actors):
    """The advance is set-wise: reading the cases, opening their steps, settling them, handing
    steps on, auditing and queueing messages each take a statement (or one per 500 cases),
    so 25 cases cost what one costs, and each gets the same steps, handoffs, events and
    messages as if it were alone."""
    cm = actors["cm.mueller"]
    one = _unadvanced_cases(db, cm, 1, first="Single")
    many = _unadvanced_cases(db, cm, 25, first="Batch")
    done: dict[str, list] = {}

    def run(refs, key):
        def work():
            with db.transaction() as s:
                done[key] = advance_cases(s, actor=cm, references=refs, now=NOW)

        return work

    alone = _statements(db, run(one, "one"))
    together = _statements(db, run(many, "many"))
    assert len(alone) <= 12, alone
    assert together == alone
    assert done["one"][0].opened and done["one"][0].offered
    shape = (tuple(done["one"][0].opened), len(done["one"][0].offered), len(done["one"][0].held))
    assert {(tuple(r.opened), len(r.offered), len(r.held)) for r in done["many"]} == {shape}
    with db.read() as s:
        events = dict(
            s.execute(
                select(AuditEvent.action, func.count())
                .where(AuditEvent.action.in_(["step.opened", "handoff.offered", "handoff.held"]))
                .group_by(AuditEvent.action)
            ).all()
        )
        offers = s.scalar(select(func.count()).where(OutboxMessage.kind == "handoff_offered"))
    assert events["step.opened"] == 26 * len(shape[0])
    assert events.get("handoff.offered", 0) == 26 * shape[1] == offers
    assert events.get("handoff.held", 0) == 26 * shape[2]
    # A second advance finds nothing to do, records nothing and writes nothing but its reads.
    again = _statements(db, run(many, "again"))
    assert not any(r.changed for r in done["again"])
    assert {"INSERT", "UPDATE"}.isdisjoint(again), again


def test_registering_and_opening_a_batch_takes_as_many_statements_as_one(db, actors):
    """Registering people and opening their cases is set-wise too: a batch of 40 sends the
    statements a batch of one sends."""
    cm = actors["cm.mueller"]

    def batch(first, count):
        def work():
            with db.transaction() as s:
                ids = register_newcomers(
                    s,
                    actor=cm,
                    people=[newcomer(given_name=f"{first}{i}") for i in range(count)],
                    now=NOW,
                )
                open_cases(s, actor=cm, openings=[CaseOpening(i) for i in ids], now=NOW)

        return work

    one = _statements(db, batch("Alone", 1))
    forty = _statements(db, batch("Forty", 40))
    assert forty == one, (one, forty)
    assert len(one) <= 12, one
    with db.read() as s:
        steps_per_case = set(
            s.scalars(select(func.count()).select_from(Step).group_by(Step.case_id)).all()
        )
        welcomes = s.scalar(select(func.count()).where(OutboxMessage.kind == "welcome"))
        events = dict(
            s.execute(select(AuditEvent.action, func.count()).group_by(AuditEvent.action)).all()
        )
    assert len(steps_per_case) == 1 and steps_per_case.pop() > 5  # the same pathway, in full
    assert welcomes == 41
    assert events["newcomer.registered"] == events["case.opened"] == 41


def test_a_partner_never_sees_another_organisations_handoffs_or_reasons(db, actors):
    cm, ihk, hwk = actors["cm.mueller"], actors["ihk.hoffmann"], actors["hwk.wagner"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s:
        decline_handoff(
            s,
            actor=ihk,
            reference=ref,
            step_key="recognition",
            reason="IHK-intern: Sachbearbeiter krank",
            now=NOW,
        )
    with db.transaction() as s:
        offer_handoff(
            s, actor=cm, reference=ref, step_key="recognition", organisation="hwk-do", now=NOW
        )
    with db.read() as s:
        seen = queries.case_view(s, actor=hwk, reference=ref)
        full = queries.case_view(s, actor=cm, reference=ref)
    (step,) = seen.steps
    assert step.handoff is not None and step.handoff.organisation == "hwk-do"
    assert step.past_handoffs == []
    assert "IHK-intern" not in seen.model_dump_json()
    rec = next(st for st in full.steps if st.key == "recognition")
    assert [h.reason for h in rec.past_handoffs] == ["IHK-intern: Sachbearbeiter krank"]


def test_an_unanswered_or_held_offer_can_be_rerouted_or_withdrawn_but_accepted_work_cannot(
    db, actors
):
    from tracker.journeys.handoffs import withdraw_handoff

    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    ref = start_case(db, cm, now=NOW, consent_to=["hwk-do", "afa-bochum"])  # IHK: held
    with db.transaction() as s:
        offer_handoff(
            s, actor=cm, reference=ref, step_key="recognition", organisation="hwk-do", now=NOW
        )
    with db.read() as s:
        rec = next(
            st
            for st in queries.case_view(s, actor=cm, reference=ref).steps
            if st.key == "recognition"
        )
        actions = [e.action for e in queries.timeline(s, actor=cm, reference=ref)]
    assert (rec.owner, rec.handoff.state) == ("hwk-do", "offered")
    assert [(h.organisation, h.state, h.reason) for h in rec.past_handoffs] == [
        ("ihk-mr", "withdrawn", "rerouted_to:hwk-do")
    ]
    assert {"handoff.withdrawn", "step.owner_changed"} <= set(actions)
    with db.transaction() as s:
        withdraw_handoff(
            s,
            actor=cm,
            reference=ref,
            step_key="recognition",
            reason="Wir klären das selbst",
            now=NOW,
        )
    with db.read() as s:
        assert ref in [r.reference for r in queries.list_cases(s, actor=cm, attention=True)]
        assert queries.partner_queue(s, actor=actors["hwk.wagner"]) == []
    with db.transaction() as s:
        accept_handoff(s, actor=actors["afa.becker"], reference=ref, step_key="job_offer", now=NOW)
    with db.transaction() as s, pytest.raises(InvalidTransition, match="must return the step"):
        offer_handoff(
            s, actor=cm, reference=ref, step_key="job_offer", organisation="ihk-mr", now=NOW
        )
    del ihk


def test_consent_given_again_offers_the_step_afresh_and_tells_the_partner(db, actors):
    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s:
        accept_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=NOW)
    with db.transaction() as s:
        revoke_consent(s, actor=cm, reference=ref, organisation="ihk-mr", now=NOW)
    assert step_states(db, cm, ref)["recognition"] == "open"
    later = NOW + timedelta(days=2)
    with db.transaction() as s:
        give_consent(
            s,
            actor=cm,
            reference=ref,
            organisation="ihk-mr",
            method=ConsentMethod.email,
            notice_language="en",
            now=later,
        )
    with db.read() as s:
        (item,) = queries.partner_queue(s, actor=ihk)
        offers = s.scalars(
            select(OutboxMessage.idempotency_key).where(
                OutboxMessage.kind == "handoff_offered",
                OutboxMessage.recipient_org_id
                == s.scalar(select(Handoff.organisation_id).where(Handoff.id == item.handoff_id)),
            )
        ).all()
    assert (item.state, item.step_state) == ("offered", "open")
    assert len(offers) == 2 and len(set(offers)) == 2


def test_switching_to_the_accelerated_procedure_shortens_the_running_clocks(db, actors):
    from tracker.schemas import NewcomerUpdate

    cm, afa = actors["cm.mueller"], actors["afa.becker"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s:
        accept_handoff(s, actor=afa, reference=ref, step_key="job_offer", now=NOW)
    with db.transaction() as s:
        update_newcomer(
            s, actor=cm, reference=ref, changes=NewcomerUpdate(accelerated_procedure=True), now=NOW
        )
    with db.read() as s:
        view = queries.case_view(s, actor=cm, reference=ref)
    job_offer = next(st for st in view.steps if st.key == "job_offer")
    assert job_offer.legal_due == NOW.date() + timedelta(days=7)


def test_recognition_counts_three_calendar_months_from_the_complete_file(db, actors):
    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    ref = start_case(db, cm, now=NOW)
    accepted = NOW.replace(month=1, day=31)
    with db.transaction() as s:
        accept_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=accepted)

    def legal_due():
        with db.read() as s:
            view = queries.case_view(s, actor=cm, reference=ref)
        return next(st for st in view.steps if st.key == "recognition").legal_due

    assert legal_due() == date(2026, 4, 30)  # Jan 31 + 3 months: the month's last day
    with db.transaction() as s:
        block_step(
            s,
            actor=ihk,
            reference=ref,
            step_key="recognition",
            reason="Zeugnisübersetzung fehlt",
            now=accepted + timedelta(days=3),
        )
    resumed = accepted + timedelta(days=40)
    with db.transaction() as s:
        start_step(s, actor=ihk, reference=ref, step_key="recognition", now=resumed)
    assert legal_due() == date(2026, 6, 12)  # the clock starts again with the complete file


def test_a_date_that_is_today_in_bochum_is_not_the_future(db, actors):
    from datetime import UTC, datetime

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    just_after_midnight_in_bochum = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # 00:30 on Mar 3
    with db.transaction() as s:
        complete_step(
            s,
            actor=cm,
            reference=ref,
            step_key="housing",
            on=date(2026, 3, 3),
            now=just_after_midnight_in_bochum,
        )
    from tracker.clocks import moment

    with pytest.raises(ValidationFailed, match="future"):
        moment(date(2026, 3, 4), just_after_midnight_in_bochum)


def test_a_cancelled_case_leaves_the_queues_and_the_person_can_start_again(db, actors):
    from tracker.journeys.cases import cancel_case

    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s, pytest.raises(ValidationFailed):
        cancel_case(s, actor=cm, reference=ref, reason=" ", now=NOW)
    with db.transaction() as s:
        case = cancel_case(s, actor=cm, reference=ref, reason="Zurück ins Heimatland", now=NOW)
        newcomer_id = case.newcomer_id
    with db.read() as s:
        assert queries.partner_queue(s, actor=ihk) == []
        assert queries.list_cases(s, actor=cm) == []
        assert [r.reference for r in queries.list_cases(s, actor=cm, status=None)] == [ref]
    with db.transaction() as s:
        again = open_case(s, actor=cm, newcomer_id=newcomer_id, now=NOW)
    assert again.reference != ref


def test_deactivating_an_organisation_returns_its_unanswered_offers(db, actors):
    from tracker.admin.organisations import update_organisation

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s:
        update_organisation(s, actor=actors["admin"], key="ihk-mr", active=False, now=NOW)
    with db.read() as s:
        view = queries.case_view(s, actor=cm, reference=ref)
        attention = queries.list_cases(s, actor=cm, attention=True)
    rec = next(st for st in view.steps if st.key == "recognition")
    assert rec.handoff is None
    assert rec.past_handoffs[-1].reason == "organisation_deactivated"
    assert [r.reference for r in attention] == [ref]


def test_among_selects_what_in_selects_for_lists_of_any_length(db, actors):
    """The prebuilt statements' "column among a list" is IN on SQLite and = ANY(array) on
    PostgreSQL; either way it finds exactly the rows in the list, for none, one or many
    values, and on PostgreSQL its text does not grow with the list."""
    from sqlalchemy.dialects import postgresql

    from tracker.bulk import among
    from tracker.models import Case

    cm = actors["cm.mueller"]
    refs = [start_case(db, cm, now=NOW, nationality=n) for n in ("PL", "IN", "UA")]
    by_ref = select(Case.reference).where(among(Case.reference, "refs"))
    with db.read() as s:
        # Longer than the column (20): compared whole (the array is VARCHAR[], not VARCHAR(20)[]).
        too_long = [f"{refs[0]}-AND-MORE-{i}" for i in range(3)]
        others = [f"WO-NONE-{i:04d}" for i in range(700)]
        for wanted in ([], refs[:1], refs, [*refs[1:], *others], too_long):
            found = set(s.scalars(by_ref, {"refs": wanted}))
            assert found == set(wanted) & set(refs)
            expected = set(s.scalars(select(Case.reference).where(Case.reference.in_(wanted))))
            assert found == expected
    text_of = str(by_ref.compile(dialect=postgresql.dialect()))
    assert "= ANY (%(refs)s::VARCHAR[])" in text_of


def _case_state(db, ref):
    """What a completion leaves of a case, without ids: its steps, handoffs and events."""
    with db.read() as s:
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        steps = [
            (st.key, str(st.state), st.version, st.done_at, st.started_at, st.due_date)
            for st in s.scalars(select(Step).where(Step.case_id == case.id).order_by(Step.id))
        ]
        handoffs = sorted(
            (h.step.key, str(h.state), h.reason, h.closed_at, h.version)
            for h in s.scalars(select(Handoff).where(Handoff.case_id == case.id))
        )
        events = sorted(
            (e.action, e.details.get("step"), e.details.get("done_on"), e.actor)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id))
        )
        return {
            "steps": steps,
            "handoffs": handoffs,
            "events": events,
            "case": (case.next_due, case.advance_requested_at),  # (its version counts changes)
            "move_in": case.newcomer.move_in_date,
        }


def test_a_batch_of_completions_writes_what_each_alone_would_in_as_many_statements(db, actors):
    """complete_steps takes many steps of many cases in one transaction: each case ends as
    if its steps had been completed one by one, and the batch takes the statements of one."""
    from tracker.journeys.steps import Completion

    cm = actors["cm.mueller"]
    refs = [start_case(db, cm, now=NOW, nationality="PL", given_name=f"Batch{i}") for i in range(4)]
    later = NOW + timedelta(hours=1)
    alone, batch = [], []
    for _round in range(3):  # housing first, then what each advance opened
        with db.read() as s:
            keys = s.scalars(
                select(Step.key)
                .join(Case)
                .where(Case.reference == refs[0], Step.state == StepState.open)
                .order_by(Step.position)
            ).all()
        for key in keys:
            alone.append(
                _statements(
                    db, lambda key=key: _complete(db, cm, [Completion(refs[0], key)], later)
                )
            )
        items = [Completion(ref, key) for ref in refs[1:] for key in keys]
        batch.append(_statements(db, lambda items=items: _complete(db, cm, items, later)))
        for ref in refs:
            advance(db, cm, ref, now=later)
    assert len(alone) >= 4  # housing, registration, then two steps or more at once
    expected = _case_state(db, refs[0])
    assert expected["move_in"] is not None
    assert {h[1] for h in expected["handoffs"]} & {"completed", "withdrawn"}
    for ref in refs[1:]:
        assert _case_state(db, ref) == expected
    assert max(map(len, batch)) <= max(map(len, alone)), (batch, alone)


def _complete(db, actor, items, now):
    from tracker.journeys.steps import complete_steps

    with db.transaction() as s:
        return complete_steps(s, actor=actor, items=items, now=now)


def test_a_batch_with_one_refused_completion_writes_none(db, actors):
    from tracker.journeys.steps import Completion

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    before = _case_state(db, ref)
    with pytest.raises(InvalidTransition, match="housing is done"):
        _complete(db, cm, [Completion(ref, "housing"), Completion(ref, "housing")], NOW)
    with pytest.raises(NotFoundError, match="no step 'nothing'"):
        _complete(db, cm, [Completion(ref, "housing"), Completion(ref, "nothing")], NOW)
    assert _case_state(db, ref) == before


@pytest.mark.parametrize("workers", [1, 2])
def test_advancing_in_batches_takes_every_case_once_however_many_run_at_once(db, actors, workers):
    """Bulk advances run batches side by side on PostgreSQL (ADVANCE_WORKERS): each case is
    advanced once, progress is told of every batch in order, a bad reference fails alone."""
    from tracker.journeys.advance import advance_in_batches

    cm = actors["cm.mueller"]
    refs = _unadvanced_cases(db, cm, 7, first=f"Workers{workers}")
    told: list[int] = []
    outcome = advance_in_batches(
        db,
        actor=cm,
        references=[*refs, "WO-XXXX-XXXX"],
        size=2,
        workers=workers,
        progress=told.append,
    )
    assert told == [2, 2, 2, 2]
    assert outcome.advanced == 7
    assert list(outcome.failed) == ["WO-XXXX-XXXX"]
    with db.read() as s:
        cases = s.scalars(select(Case).where(Case.reference.in_(refs))).all()
        assert all(c.advance_requested_at is None for c in cases)
        ids = [c.id for c in cases]
        opened = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "step.opened", AuditEvent.case_id.in_(ids))
        )
        handed = s.execute(
            select(Handoff.step_id, func.count())
            .where(Handoff.case_id.in_(ids))
            .group_by(Handoff.step_id)
        ).all()
    assert opened == outcome.opened >= 7
    assert handed and all(n == 1 for _, n in handed)  # no step handed on twice
