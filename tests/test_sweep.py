"""The clock sweep and the partner digest against a real database, with the day fixed."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select, update

from tests.conftest import NOW
from tests.helpers import LockWait, start_case
from tracker import clocks
from tracker.access import has_consent
from tracker.config import get_settings
from tracker.enums import ACTIVE_STEP_STATES, CaseStatus, DueStatus, HandoffState
from tracker.journeys.advance import advance_case
from tracker.journeys.cases import update_newcomer
from tracker.journeys.consent import revoke_consent
from tracker.journeys.handoffs import accept_handoff
from tracker.journeys.steps import complete_step, skip_step
from tracker.journeys.sweep import SweepBatch, clock_overview, sweep_clocks, sweep_handoffs
from tracker.messages.digest import build_digests
from tracker.models import AuditEvent, Case, Consent, Handoff, Organisation, OutboxMessage, Step
from tracker.schemas import NewcomerUpdate

TODAY = NOW.date()
SOON = get_settings().due_soon_days


def at(day: date) -> datetime:
    return datetime.combine(day, time(6, 0), tzinfo=UTC)


def sweep(db, today: date = TODAY, limit: int = 2000) -> list[SweepBatch]:
    """Run the clock sweep to the end, one transaction per batch as a flow would."""
    batches, cursor = [], 0
    while True:
        with db.transaction() as s:
            batch = sweep_clocks(s, today=today, now=at(today), after_step_id=cursor, limit=limit)
        batches.append(batch)
        if batch.next_cursor is None:
            return batches
        assert batch.next_cursor > cursor
        cursor = batch.next_cursor


def messages(db, kind: str) -> list[OutboxMessage]:
    with db.read() as s:
        rows = list(
            s.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
            )
        )
        s.expunge_all()  # keep them readable after the read session rolls back
        return rows


def step_id(db, reference: str, key: str) -> int:
    with db.read() as s:
        return s.scalars(
            select(Step.id).join(Case).where(Case.reference == reference, Step.key == key)
        ).one()


def org_id(db, key: str) -> int:
    with db.read() as s:
        return s.scalars(select(Organisation.id).where(Organisation.key == key)).one()


def advance(db, actor, reference: str, now: datetime) -> None:
    with db.transaction() as s:
        advance_case(s, actor=actor, reference=reference, now=now)


def complete(db, actor, reference: str, step: str, now: datetime, on: date | None = None) -> None:
    with db.transaction() as s:
        complete_step(s, actor=actor, reference=reference, step_key=step, on=on, now=now)
    advance(db, actor, reference, now)


def eu_case_moved_in(db, manager, moved_in: date, **fields) -> str:
    """An EU citizen who moved in on ``moved_in``: registration is open, due 14 days later."""
    ref = start_case(db, manager, now=NOW, nationality="PL", **fields)
    complete(db, manager, ref, "housing", now=NOW, on=moved_in)
    return ref


def assert_every_message_audited(db) -> None:
    """Each sweep or digest message has exactly one audit event naming its key, and vice versa."""
    actions = {
        "reminder": "clock.reminder",
        "escalation": "clock.escalation",
        "handoff_unanswered": "clock.handoff_unanswered",
        "digest": "digest.queued",
    }
    with db.read() as s:
        sent = Counter(
            (actions[kind], key)
            for kind, key in s.execute(
                select(OutboxMessage.kind, OutboxMessage.idempotency_key).where(
                    OutboxMessage.kind.in_(list(actions))
                )
            )
        )
        audited = Counter(
            (e.action, e.details["message_key"])
            for e in s.scalars(
                select(AuditEvent).where(AuditEvent.action.in_(list(actions.values())))
            )
        )
    assert audited == sent
    assert all(n == 1 for n in sent.values())


def independent_candidates(db, today: date) -> dict[int, DueStatus]:
    """Every step the sweep must look at, worked out in Python from the ORM objects."""
    found = {}
    with db.read() as s:
        for step in s.scalars(select(Step).join(Case).where(Case.status == CaseStatus.open)):
            status = clocks.due_status(
                state=step.state, due=step.due_date, today=today, due_soon_days=SOON
            )
            if status in (DueStatus.overdue, DueStatus.due_soon):
                found[step.id] = status
    return found


def test_an_overdue_registration_is_escalated_exactly_once_however_often_the_sweep_runs(db, actors):
    cm = actors["cm.mueller"]
    ref = eu_case_moved_in(db, cm, moved_in=date(2026, 2, 10))  # §17 BMG: due 24 February
    registration = step_id(db, ref, "registration")

    batches = [b for _ in range(3) for b in sweep(db)]

    assert sum(b.escalations for b in batches) == 1
    (escalation,) = messages(db, "escalation")
    assert escalation.idempotency_key == f"escalation:{registration}:2026-02-24"
    assert escalation.recipient_user_id == cm.user_id
    assert escalation.recipient_org_id is None
    assert escalation.context == {
        "reference": ref,
        "step": "registration",
        "step_state": "open",
        "due_date": "2026-02-24",
        "legal_reference": "§17 BMG",
        "threshold": "overdue",
    }
    assert messages(db, "reminder") == []
    assert_every_message_audited(db)
    with db.read() as s:
        event = s.execute(
            select(AuditEvent.entity_type, AuditEvent.entity_id, AuditEvent.actor).where(
                AuditEvent.action == "clock.escalation"
            )
        ).one()
    assert tuple(event) == ("step", registration, "system:sweep")


def test_a_step_due_in_two_days_reminds_the_partner_holding_it_once(db, actors):
    cm = actors["cm.mueller"]
    ref = eu_case_moved_in(db, cm, moved_in=TODAY - timedelta(days=12))  # due in 2 days

    first, second = sweep(db), sweep(db)

    assert [b.reminders for b in first + second] == [1, 0]
    (reminder,) = messages(db, "reminder")
    assert reminder.recipient_org_id == org_id(db, "stadt-bochum")
    assert reminder.recipient_user_id is None
    assert reminder.context["reference"] == ref
    assert reminder.context["threshold"] == "due_soon"
    assert reminder.context["due_date"] == (TODAY + timedelta(days=2)).isoformat()
    assert messages(db, "escalation") == []
    assert_every_message_audited(db)


def test_without_consent_the_partner_gets_no_reminder_and_the_case_manager_does(db, actors):
    cm = actors["cm.mueller"]
    eu_case_moved_in(db, cm, moved_in=TODAY - timedelta(days=12), consent_to=["vbw"])

    sweep(db)

    (reminder,) = messages(db, "reminder")
    assert reminder.recipient_org_id is None
    assert reminder.recipient_user_id == cm.user_id


def test_steps_the_case_manager_tracks_remind_the_case_manager_and_finished_ones_stay_quiet(
    db, actors
):
    cm = actors["cm.mueller"]
    start = TODAY - timedelta(days=14)
    ref = start_case(db, cm, now=at(start), nationality="PL")
    complete(db, cm, ref, "housing", now=at(start))
    # Registration done twelve days ago: the bank and the insurer (14-day targets) are due in 2.
    complete(db, cm, ref, "registration", now=at(TODAY - timedelta(days=12)))

    batches = sweep(db)

    reminders = messages(db, "reminder")
    assert sorted(m.context["step"] for m in reminders) == ["bank_account", "health_insurance"]
    assert {(m.recipient_user_id, m.recipient_org_id) for m in reminders} == {(cm.user_id, None)}
    # housing and registration are done with due dates in the past: nothing for them.
    assert messages(db, "escalation") == []
    assert sum(b.reminders for b in batches) == 2
    assert_every_message_audited(db)


def test_a_due_date_that_moves_gets_a_fresh_reminder(db, actors):
    cm = actors["cm.mueller"]
    moved_in = TODAY - timedelta(days=12)
    ref = eu_case_moved_in(db, cm, moved_in=moved_in)
    registration = step_id(db, ref, "registration")
    sweep(db)
    with db.transaction() as s:
        update_newcomer(
            s,
            actor=cm,
            reference=ref,
            changes=NewcomerUpdate(move_in_date=moved_in + timedelta(days=1)),
            now=NOW,
        )
    sweep(db)
    sweep(db)

    keys = [m.idempotency_key for m in messages(db, "reminder")]
    assert keys == [
        f"reminder:{registration}:{(TODAY + timedelta(days=2)).isoformat()}",
        f"reminder:{registration}:{(TODAY + timedelta(days=3)).isoformat()}",
    ]
    assert_every_message_audited(db)


def test_pending_finished_and_closed_work_never_gets_a_message(db, actors):
    cm = actors["cm.mueller"]
    later = TODAY + timedelta(days=200)  # every clock of today's cases has run out by then
    # A skilled worker: recognition skipped, job offer open, everything else pending.
    skilled = start_case(db, cm, now=NOW, given_name="Arjun")
    with db.transaction() as s:
        skip_step(
            s,
            actor=cm,
            reference=skilled,
            step_key="recognition",
            reason="Abschluss als vergleichbar gelistet",
            now=NOW,
        )
    advance(db, cm, skilled, NOW)
    # An EU citizen whose whole journey is done, so the case closed.
    closed = start_case(db, cm, now=NOW, nationality="PL", given_name="Ola")
    for step in (
        "housing",
        "registration",
        "tax_id",
        "bank_account",
        "health_insurance",
        "job_entry",
    ):
        complete(db, cm, closed, step, now=NOW)
    # A case stopped with a step still open. No service cancels cases yet, so set it here.
    cancelled = start_case(db, cm, now=NOW, nationality="IT", given_name="Gia")
    with db.transaction() as s:
        s.execute(
            update(Case).where(Case.reference == cancelled).values(status=CaseStatus.cancelled)
        )

    sweep(db, today=later)

    with db.read() as s:
        statuses = dict(s.execute(select(Case.reference, Case.status)).all())
        finished_with_past_due = s.scalar(
            select(Step.id)
            .join(Case)
            .where(Case.reference == closed, Step.due_date < later)
            .limit(1)
        )
    assert statuses[closed] == "closed"
    assert finished_with_past_due is not None  # the closed case's steps still carry due dates
    sent = [(m.context["reference"], m.context["step"]) for m in messages(db, "escalation")]
    assert sent == [(skilled, "job_offer")]
    assert messages(db, "reminder") == []


def test_batches_follow_the_cursor_and_cover_every_candidate_exactly_once(db, actors):
    cm = actors["cm.mueller"]
    for name in ("Asha", "Bilal", "Chen", "Dara"):
        start_case(db, cm, now=NOW, given_name=name)
    # Recognition (90-day target) is due in 2 days, the job offer (21 days) is overdue.
    today = TODAY + timedelta(days=88)
    expected = independent_candidates(db, today)
    assert len(expected) == 8

    batches = sweep(db, today=today, limit=3)

    assert [b.reminders + b.escalations for b in batches] == [3, 3, 2]
    assert batches[-1].next_cursor is None
    sent = messages(db, "reminder") + messages(db, "escalation")
    by_step = Counter(int(m.idempotency_key.split(":")[1]) for m in sent)
    assert by_step == Counter(expected.keys())  # every candidate once
    kinds = {int(m.idempotency_key.split(":")[1]): m.kind for m in sent}
    assert kinds == {
        sid: "escalation" if status == DueStatus.overdue else "reminder"
        for sid, status in expected.items()
    }
    # A limit that divides the candidates exactly ends with one empty batch, and sends nothing new.
    again = sweep(db, today=today, limit=4)
    assert [(b.reminders, b.escalations) for b in again] == [(0, 0)] * 3
    assert again[-1].next_cursor is None
    assert_every_message_audited(db)


def test_two_sweeps_running_at_once_send_and_audit_each_message_once(db, actors):
    """The second sweep runs while the first one's messages are written but not committed:
    it waits for them (the write lock on SQLite, the outbox's unique keys on PostgreSQL) and
    then finds them there."""
    cm = actors["cm.mueller"]
    for name in ("Asha", "Bilal", "Chen"):
        start_case(db, cm, now=NOW, given_name=name)
    today = TODAY + timedelta(days=88)
    first_swept, release = threading.Event(), threading.Event()
    results: dict[str, SweepBatch] = {}

    def first() -> None:
        with db.transaction() as s:
            results["first"] = sweep_clocks(s, today=today, now=at(today))
            first_swept.set()
            # Uncommitted until the second sweep is seen waiting for what this one wrote.
            release.wait(30)

    def second() -> None:
        with db.transaction() as s:
            results["second"] = sweep_clocks(s, today=today, now=at(today))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    with LockWait(db) as lock:
        threads[0].start()
        assert first_swept.wait(30)
        threads[1].start()
        waited = lock.wait(30)
        release.set()
        for t in threads:
            t.join(30)
    assert waited, "the second sweep never waited for the first one's uncommitted messages"

    assert (results["first"].reminders, results["first"].escalations) == (3, 3)
    assert (results["second"].reminders, results["second"].escalations) == (0, 0)
    assert len(messages(db, "reminder") + messages(db, "escalation")) == 6
    assert_every_message_audited(db)


def test_a_case_without_a_case_manager_counts_the_escalation_it_could_not_send(db, actors):
    admin = actors["admin"]  # an administrator opens the case, so nobody manages it
    eu_case_moved_in(db, admin, moved_in=date(2026, 2, 10))

    (batch,) = sweep(db)

    assert (batch.escalations, batch.unassigned) == (0, 1)
    assert messages(db, "escalation") == []


def test_an_unanswered_handoff_escalates_once_after_the_acceptance_period(db, actors):
    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    days = get_settings().handoff_accept_days
    ref = start_case(db, cm, now=NOW)  # recognition to IHK, job offer to the employment agency
    with db.transaction() as s:
        accept_handoff(s, actor=ihk, reference=ref, step_key="recognition", now=NOW)
    start_case(db, cm, now=NOW, consent_to=[], given_name="Held")  # held, never offered

    with db.transaction() as s:
        assert sweep_handoffs(s, now=NOW + timedelta(days=days, seconds=-1)) == 0
    for _ in range(3):
        with db.transaction() as s:
            sweep_handoffs(s, now=NOW + timedelta(days=days))

    (message,) = messages(db, "handoff_unanswered")
    with db.read() as s:
        handoff_id = s.scalars(
            select(Handoff.id).where(Handoff.step_id == step_id(db, ref, "job_offer"))
        ).one()
    assert message.idempotency_key == f"handoff_unanswered:{handoff_id}"
    assert message.recipient_user_id == cm.user_id
    assert message.context["organisation"] == "afa-bochum"
    assert message.context["days_waiting"] == days
    assert_every_message_audited(db)


def test_handoff_escalations_come_in_batches_until_none_are_left(db, actors):
    cm = actors["cm.mueller"]
    for name in ("Asha", "Bilal", "Chen"):
        start_case(db, cm, now=NOW, given_name=name)  # two offered handoffs each
    counts = []
    for _ in range(3):
        with db.transaction() as s:
            counts.append(sweep_handoffs(s, now=NOW + timedelta(days=30), limit=4))
    assert counts == [4, 2, 0]
    assert len(messages(db, "handoff_unanswered")) == 6
    assert_every_message_audited(db)


def independent_queues(db, day: date) -> dict[str, Counter]:
    """Each partner's queue counted from the ORM objects, consent checked row by row."""
    counts: dict[str, Counter] = {}
    with db.read() as s:
        for handoff in s.scalars(select(Handoff)):
            org = handoff.organisation
            if not (org.active and org.receives_handoffs):
                continue
            if handoff.state not in (HandoffState.offered, HandoffState.accepted):
                continue
            if not has_consent(
                s, newcomer_id=handoff.case.newcomer_id, organisation_id=handoff.organisation_id
            ):
                continue
            c = counts.setdefault(org.key, Counter())
            c[str(handoff.state)] += 1
            step = handoff.step
            assert step.state in ACTIVE_STEP_STATES
            c[
                str(
                    clocks.due_status(
                        state=step.state, due=step.due_date, today=day, due_soon_days=SOON
                    )
                )
            ] += 1
    return counts


def test_digests_count_each_partners_queue_without_names_and_go_out_once_a_day(db, actors):
    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    accepted = start_case(db, cm, now=NOW, given_name="Zanele", family_name="Okafor")
    with db.transaction() as s:
        accept_handoff(s, actor=ihk, reference=accepted, step_key="recognition", now=NOW)
    offered = start_case(db, cm, now=NOW, given_name="Yusuf", family_name="Demir")
    revoked = start_case(db, cm, now=NOW, given_name="Xenia", family_name="Petrova")
    with db.transaction() as s:
        revoke_consent(s, actor=cm, reference=revoked, organisation="ihk-mr", now=NOW)
    start_case(db, cm, now=NOW, consent_to=[], given_name="Wanja", family_name="Held")
    eu_case_moved_in(db, cm, moved_in=TODAY - timedelta(days=2), given_name="Vera")
    # A revocation written straight to the table (say by a bulk correction) leaves the handoff
    # offered; the digest must still leave the case out of that partner's digest.
    bypassed = start_case(db, cm, now=NOW, given_name="Ugo", family_name="Bassi")
    with db.transaction() as s:
        newcomer_id = s.scalars(select(Case.newcomer_id).where(Case.reference == bypassed)).one()
        s.execute(
            update(Consent)
            .where(
                Consent.newcomer_id == newcomer_id,
                Consent.organisation_id == org_id(db, "afa-bochum"),
            )
            .values(revoked_at=NOW)
        )
    day = TODAY + timedelta(days=19)  # job offers (21-day target) are due soon by then
    expected = independent_queues(db, day)

    with db.transaction() as s:
        digested = build_digests(s, day=day, now=at(day))

    assert sorted(digested) == sorted(expected) == ["afa-bochum", "ihk-mr", "stadt-bochum"]
    digests = {m.context["organisation"]: m for m in messages(db, "digest")}
    for org, counts in expected.items():
        context = digests[org].context
        assert context["counts"] == {
            "offered": counts["offered"],
            "accepted": counts["accepted"],
            "overdue": counts["overdue"],
            "due_soon": counts["due_soon"],
        }, org
        assert digests[org].recipient_org_id == org_id(db, org)
        assert digests[org].idempotency_key == f"digest:{org}:{day.isoformat()}"
        dues = [(i["due_date"] is None, i["due_date"] or "") for i in context["items"]]
        assert dues == sorted(dues)  # most urgent first, undated last
    ihk_refs = {i["reference"] for i in digests["ihk-mr"].context["items"]}
    assert ihk_refs == {accepted, offered, bypassed}
    afa_refs = {i["reference"] for i in digests["afa-bochum"].context["items"]}
    assert bypassed not in afa_refs and revoked in afa_refs
    assert digests["afa-bochum"].context["counts"]["due_soon"] == 3
    everything = json.dumps([m.context for m in digests.values()])
    for name in ("Zanele", "Okafor", "Yusuf", "Demir", "Xenia", "Vera", "Ugo", "Bassi"):
        assert name not in everything

    with db.transaction() as s:
        assert build_digests(s, day=day, now=at(day) + timedelta(hours=1)) == []
    assert len(messages(db, "digest")) == 3
    with db.transaction() as s:
        next_day = build_digests(s, day=day + timedelta(days=1), now=at(day + timedelta(days=1)))
    assert sorted(next_day) == sorted(digested)
    with db.read() as s:
        events = s.execute(
            select(AuditEvent.case_id, AuditEvent.entity_type).where(
                AuditEvent.action == "digest.queued"
            )
        ).all()
    assert [tuple(e) for e in events] == [(None, "organisation")] * 6
    assert_every_message_audited(db)


def test_a_digest_lists_at_most_the_items_asked_for_and_says_how_many_more(db, actors):
    cm = actors["cm.mueller"]
    for name in ("Asha", "Bilal", "Chen"):
        start_case(db, cm, now=NOW, given_name=name)
    with db.transaction() as s:
        build_digests(s, day=TODAY, now=NOW, items_per_org=2)
    ihk = next(m for m in messages(db, "digest") if m.context["organisation"] == "ihk-mr")
    assert len(ihk.context["items"]) == 2
    assert (ihk.context["total"], ihk.context["more"]) == (3, 1)


def test_the_clock_overview_counts_overdue_and_due_soon_steps_per_organisation(db, actors):
    cm = actors["cm.mueller"]
    for name in ("Asha", "Bilal"):
        start_case(db, cm, now=NOW, given_name=name)
    eu_case_moved_in(db, cm, moved_in=date(2026, 2, 10))
    today = TODAY + timedelta(days=88)
    expected: dict[str, Counter] = {}
    with db.read() as s:
        for step_row in s.scalars(select(Step).join(Case).where(Case.status == CaseStatus.open)):
            status = clocks.due_status(
                state=step_row.state, due=step_row.due_date, today=today, due_soon_days=SOON
            )
            if status in (DueStatus.overdue, DueStatus.due_soon):
                expected.setdefault(step_row.owner.key, Counter())[str(status)] += 1
        overview = clock_overview(s, today=today)
    assert overview["organisations"] == {
        org: {"overdue": c["overdue"], "due_soon": c["due_soon"]} for org, c in expected.items()
    }
    assert overview["total"]["overdue"] == sum(c["overdue"] for c in expected.values()) > 0
    assert overview["total"]["due_soon"] == sum(c["due_soon"] for c in expected.values()) > 0
