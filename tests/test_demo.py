"""Demo data: reproducible, consistent with the services' rules, and continuable through them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import extract, func, insert, select, text

from tracker import fit
from tracker.bulk import BulkWriter
from tracker.clocks import add_months, local_today
from tracker.db import Database
from tracker.demo import load as demo_load
from tracker.demo.load import load_demo
from tracker.demo.story import CRAFTS_DECLINE
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    FINISHED_STEP_STATES,
    JOBS_NOT_COUNTED,
    PLACE_HOLDING,
    CaseStatus,
    FitStatus,
    JobKind,
    OfferKind,
    OfferStatus,
    PermitKind,
    RegistrationStatus,
    StepState,
)
from tracker.errors import ValidationFailed
from tracker.fit import DAY_LIMIT, JOB_SEARCH_MONTHS
from tracker.journeys import queries
from tracker.journeys.handoffs import accept_handoff, complete_handoff
from tracker.migrate import upgrade
from tracker.models import (
    AuditEvent,
    Case,
    Consent,
    FitJob,
    FitOffer,
    FitParticipant,
    FitPermit,
    FitRegistration,
    FitWorkDay,
    Handoff,
    Newcomer,
    Organisation,
    OutboxMessage,
    Step,
)
from tracker.schemas import NewcomerIn

AS_OF = date(2026, 11, 20)


def _sqlite(tmp_path: Path, name: str) -> Database:
    url = f"sqlite:///{tmp_path / name}.db"
    upgrade(url)
    return Database(url)


def _fingerprint(db: Database) -> list[tuple]:
    with db.read() as s:
        return list(
            s.execute(
                select(
                    Case.reference,
                    Newcomer.family_name,
                    Newcomer.given_name,
                    Step.key,
                    Step.state,
                    Step.done_at,
                )
                .join(Newcomer, Case.newcomer_id == Newcomer.id)
                .join(Step, Step.case_id == Case.id)
                .order_by(Case.id, Step.position)
            ).all()
        )


def _fit_done_in_2024(db: Database) -> int:
    with db.read() as s:
        return s.scalar(
            select(func.count())
            .select_from(Step)
            .where(
                Step.key == "fit_enrollment",
                Step.state == StepState.done,
                extract("year", Step.done_at) == 2024,
            )
        )


def test_the_same_seed_and_day_give_the_same_data(tmp_path):
    prints = []
    for name in ("a", "b"):
        db = _sqlite(tmp_path, name)
        load_demo(db, people=150, seed=7, as_of=AS_OF)
        prints.append(_fingerprint(db))
        db.dispose()
    assert prints[0] == prints[1]
    assert len(prints[0]) > 1000
    other = _sqlite(tmp_path, "c")
    load_demo(other, people=150, seed=8, as_of=AS_OF)
    assert _fingerprint(other) != prints[0]


def _people(db: Database) -> list[tuple]:
    with db.read() as s:
        return list(
            s.execute(
                select(
                    Case.reference,
                    Newcomer.given_name,
                    Newcomer.family_name,
                    Newcomer.birth_date,
                    Newcomer.first_contact_date,
                )
                .join(Newcomer, Case.newcomer_id == Newcomer.id)
                .order_by(Case.id)
            ).all()
        )


def _without_ids(details: dict) -> list[tuple]:
    return sorted((k, v) for k, v in details.items() if k != "handoff_id")


def _history(db: Database, until: datetime, skip: set[str]) -> tuple[list[tuple], list[tuple]]:
    """Audit trail and step dates before ``until``, without row ids (they follow the cut)."""

    def before(moment: datetime | None) -> datetime | None:
        return moment if moment is not None and moment < until else None

    with db.read() as s:
        events = [
            (ref, at, actor, action, etype, reason, _without_ids(details))
            for ref, at, actor, action, etype, reason, details in s.execute(
                select(
                    Case.reference,
                    AuditEvent.occurred_at,
                    AuditEvent.actor,
                    AuditEvent.action,
                    AuditEvent.entity_type,
                    AuditEvent.reason,
                    AuditEvent.details,
                )
                .join(Case, AuditEvent.case_id == Case.id)
                .where(AuditEvent.occurred_at < until)
            )
            if ref not in skip
        ]
        steps = [
            (ref, key, before(opened), before(started), before(done))
            for ref, key, opened, started, done in s.execute(
                select(Case.reference, Step.key, Step.opened_at, Step.started_at, Step.done_at)
                .join(Case, Step.case_id == Case.id)
                .order_by(Case.id, Step.position)
            )
            if ref not in skip
        ]
    return sorted(events, key=repr), steps


def test_a_later_day_shows_the_same_people_further_along(tmp_path):
    day, next_day = AS_OF, AS_OF + timedelta(days=1)
    earlier, later = _sqlite(tmp_path, "day"), _sqlite(tmp_path, "next")
    load_demo(earlier, people=300, seed=21, as_of=day)
    load_demo(later, people=300, seed=21, as_of=next_day)
    people, later_people = _people(earlier), _people(later)
    # The same newcomers: names, birth dates and references.
    assert [p[:4] for p in people] == [p[:4] for p in later_people]
    # The only first contact a later cut-off may move is one drawn for that very day.
    moved = {p[0] for p, q in zip(people, later_people, strict=True) if p[4] != q[4]}
    assert all(q[4] == next_day for q in later_people if q[0] in moved)
    assert len(moved) <= 3
    end_of_day = datetime(next_day.year, next_day.month, next_day.day, tzinfo=UTC)
    events, steps = _history(earlier, end_of_day, moved)
    later_events, later_steps = _history(later, end_of_day, moved)
    assert len(events) > 5000
    assert events == later_events
    assert steps == later_steps
    # ... and the later day did go on.
    assert _history(later, end_of_day + timedelta(days=1), moved)[0] != events
    with pytest.raises(ValidationFailed):
        load_demo(_sqlite(tmp_path, "early"), people=5, seed=21, as_of=date(2023, 12, 31))


def test_demo_histories_obey_the_life_cycle_rules(empty_db):
    counts = load_demo(empty_db, people=400, seed=11, as_of=AS_OF, batch_size=150)
    assert counts["newcomers"] == 400
    with empty_db.read() as s:
        steps = s.execute(
            select(
                Step.case_id,
                Step.key,
                Step.state,
                Step.needs,
                Step.opened_at,
                Step.service_due,
                Step.legal_due,
                Step.due_date,
            )
        ).all()
        cases = dict(s.execute(select(Case.id, Case.status)).all())
        next_due = dict(s.execute(select(Case.id, Case.next_due)).all())
        handoffs = s.execute(select(Handoff.step_id, Handoff.state)).all()
        step_state = dict(s.execute(select(Step.id, Step.state)).all())
        opened_events = Counter(
            s.scalars(select(AuditEvent.case_id).where(AuditEvent.action == "case.opened"))
        )
        profiles = Counter(s.scalars(select(Case.pathway_key)))
        advance_requested = s.scalar(
            select(func.count()).select_from(Case).where(Case.advance_requested_at.is_not(None))
        )
    by_case: dict[int, dict[str, str]] = {}
    for case_id, key, state, *_ in steps:
        by_case.setdefault(case_id, {})[key] = state
    for case_id, key, state, needs, opened_at, service_due, legal_due, due_date in steps:
        finished = {k for k, st in by_case[case_id].items() if st in FINISHED_STEP_STATES}
        if state == StepState.pending:
            assert opened_at is None
        else:
            assert set(needs) <= finished, (case_id, key, needs)
            assert opened_at is not None
        if state in ("open", "in_progress", "blocked"):
            present = [d for d in (service_due, legal_due) if d is not None]
            assert due_date == (min(present) if present else None)
    earliest: dict[int, date] = {}
    for case_id, _key, state, *_rest, due_date in steps:
        if state in ("open", "in_progress", "blocked") and due_date is not None:
            earliest[case_id] = min(due_date, earliest.get(case_id, due_date))
    assert next_due == {case_id: earliest.get(case_id) for case_id in cases}
    for case_id, status in cases.items():
        all_done = all(st in FINISHED_STEP_STATES for st in by_case[case_id].values())
        assert (status == CaseStatus.closed) == all_done
        assert opened_events[case_id] == 1
    active = Counter(step_id for step_id, st in handoffs if st in ACTIVE_HANDOFF_STATES)
    assert max(active.values()) == 1
    for step_id in active:
        assert step_state[step_id] in ("open", "in_progress", "blocked")
    assert _fit_done_in_2024(empty_db) == 108
    assert set(profiles) == {"skilled_worker", "student", "eu_citizen"}
    assert set(cases.values()) == {CaseStatus.open, CaseStatus.closed}
    assert advance_requested == 0


def test_demo_facts_are_consistent_and_clocks_plausible(empty_db):
    load_demo(empty_db, people=400, seed=11, as_of=AS_OF)
    with empty_db.read() as s:
        newcomers = s.scalars(select(Newcomer)).all()
        rows = s.execute(
            select(Step, Case.pathway_key, Newcomer)
            .join(Case, Step.case_id == Case.id)
            .join(Newcomer, Case.newcomer_id == Newcomer.id)
        ).all()
        for n in newcomers:
            # The facts pass the same validation as a newcomer registered by hand.
            data = NewcomerIn(
                given_name=n.given_name,
                family_name=n.family_name,
                birth_date=n.birth_date,
                nationality=n.nationality,
                purpose=n.purpose,
                accelerated_procedure=n.accelerated_procedure,
                email=n.email,
                phone=n.phone,
                preferred_language=n.preferred_language,
                first_contact_date=n.first_contact_date,
                arrival_date=n.arrival_date,
                move_in_date=n.move_in_date,
                permit_expiry=n.permit_expiry,
            )
            assert data.eu_citizen == n.eu_citizen
            assert data.match_key == n.match_key
            assert date(2024, 1, 1) <= n.first_contact_date <= AS_OF
            if n.move_in_date is not None:
                assert n.arrival_date is not None and n.move_in_date >= n.arrival_date
        s.expunge_all()  # keep the loaded rows readable after the read ends
    assert min(n.first_contact_date for n in newcomers).year == 2024
    assert max(n.first_contact_date for n in newcomers).year == 2026

    registrations = [st for st, *_ in rows if st.key == "registration" and st.state == "done"]
    on_time = sum(local_today(st.done_at) <= st.legal_due for st in registrations) / len(
        registrations
    )
    assert 0.70 <= on_time <= 0.95, on_time

    # A student's entry visa is valid long enough for most to apply for the residence title.
    titles = [
        (st, n)
        for st, profile, n in rows
        if profile == "student" and st.key == "residence_title" and st.opened_at
    ]
    in_time = sum(local_today(st.opened_at) <= n.permit_expiry for st, n in titles) / len(titles)
    assert len(titles) > 50 and in_time >= 0.9, in_time

    restarted = 0
    for st, _profile, n in rows:
        # Every step that started has its clock start: the start, or the resumption after a block.
        assert (st.started_at is None) == (st.clock_started_at is None), (st.key, st.state)
        if st.clock_started_at is not None:
            assert st.clock_started_at >= st.started_at
            restarted += st.clock_started_at > st.started_at
        if st.key != "recognition" or st.state == "pending":
            continue
        # Recognition: 3 calendar months (2 accelerated) from a complete file (§6, §14a BQFG).
        assert (st.legal_days, st.legal_months) == (None, 2 if n.accelerated_procedure else 3)
        if st.clock_started_at is None:
            assert st.legal_due is None
        else:
            assert st.legal_due == add_months(local_today(st.clock_started_at), st.legal_months)
    assert restarted > 0


def test_declined_handoffs_go_to_the_right_partner_with_their_messages(empty_db):
    load_demo(empty_db, people=400, seed=11, as_of=AS_OF)
    with empty_db.read() as s:
        org_key = dict(s.execute(select(Organisation.id, Organisation.key)).all())
        handoffs = s.scalars(select(Handoff).order_by(Handoff.id)).all()
        owner = dict(s.execute(select(Step.id, Step.owner_org_id)).all())
        manager = dict(s.execute(select(Case.id, Case.case_manager_id)).all())
        newcomer = dict(s.execute(select(Case.id, Case.newcomer_id)).all())
        outbox = {
            m.idempotency_key: (m.kind, m.recipient_org_id, m.recipient_user_id)
            for m in s.scalars(select(OutboxMessage))
        }
        consents = {
            (c.newcomer_id, c.organisation_id): c.given_at for c in s.scalars(select(Consent))
        }
        s.expunge_all()  # keep the loaded rows readable after the read ends
    by_step: dict[int, list[Handoff]] = {}
    for h in handoffs:
        by_step.setdefault(h.step_id, []).append(h)
        if h.offered_at is not None:
            # Offered only with consent, and the partner was told (key as notify_offer makes it).
            assert consents[(newcomer[h.case_id], h.organisation_id)] <= h.offered_at
            key = f"handoff_offered:{h.id}"
            if h.offered_at != h.created_at:
                key += f":{h.offered_at:%Y%m%dT%H%M%S}"
            assert outbox[key] == ("handoff_offered", h.organisation_id, None)
        if h.hold_reason or (h.offered_at and h.offered_at != h.created_at):
            assert outbox[f"handoff_held:{h.id}"] == ("handoff_held", None, manager[h.case_id])
    crafts = 0
    for step_id, chain in by_step.items():
        for first, again in pairwise(chain):
            assert first.state == "declined"
            assert outbox[f"handoff_declined:{first.id}"] == (
                "handoff_declined",
                None,
                manager[first.case_id],
            )
            if first.reason == CRAFTS_DECLINE:
                crafts += 1
                assert org_key[again.organisation_id] == "hwk-do"
            else:
                assert again.organisation_id == first.organisation_id
        assert owner[step_id] == chain[-1].organisation_id
    assert crafts > 0


def test_loading_twice_adds_new_people_and_tops_up_the_fit_cohort(empty_db):
    load_demo(empty_db, people=200, seed=5, as_of=AS_OF)
    first = _fit_done_in_2024(empty_db)
    assert 0 < first < 108
    load_demo(empty_db, people=400, seed=5, as_of=AS_OF)
    assert _fit_done_in_2024(empty_db) == 108
    load_demo(empty_db, people=150, seed=5, as_of=AS_OF)
    assert _fit_done_in_2024(empty_db) == 108
    with empty_db.read() as s:
        keys = s.scalars(select(Newcomer.match_key)).all()
        references = s.scalars(select(Case.reference)).all()
    assert len(keys) == 750
    assert len(set(references)) == 750
    assert len(set(keys)) > 740  # new people, not copies of the first load


def test_a_demo_case_can_be_carried_on_through_the_services(db, actors):
    load_demo(db, people=120, seed=3, as_of=AS_OF)
    stadt = actors["stadt.weber"]
    with db.read() as s:
        queue = queries.partner_queue(s, actor=stadt, limit=500)
    assert queue, "the demo should leave work in the Bürgerbüro's queue"
    item = next(i for i in queue if i.step_state != "blocked")
    if item.state == "offered":
        with db.transaction() as s:
            accept_handoff(s, actor=stadt, reference=item.reference, step_key=item.step)
    with db.transaction() as s:
        complete_handoff(s, actor=stadt, reference=item.reference, step_key=item.step)
    with db.read() as s:
        view = queries.case_view(s, actor=actors["cm.mueller"], reference=item.reference)
    assert next(st for st in view.steps if st.key == item.step).state == "done"


# --- FIT@THGA ------------------------------------------------------------------------------------

FIT_END = datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=UTC) + timedelta(days=1)
THGA_PROGRAMMES = {
    "Geoingenieurwesen und Nachbergbau",
    "Maschinenbau",
    "Elektro- und Informationstechnik",
    "Angewandte Materialwissenschaften",
    "Wirtschaftsingenieurwesen",
    "Vermessung und Geoinformatik",
    "Rohstoffingenieurwesen",
}


def _fit_steps(s, key: str) -> dict[int, datetime]:
    """Newcomer id -> when their step ``key`` was done."""
    return dict(
        s.execute(
            select(Case.newcomer_id, Step.done_at)
            .join(Step, Step.case_id == Case.id)
            .where(Step.key == key, Step.state == StepState.done)
        ).all()
    )


def test_every_student_with_the_fit_step_done_is_a_participant_108_of_them_in_2024(empty_db):
    load_demo(empty_db, people=400, seed=11, as_of=AS_OF)
    with empty_db.read() as s:
        people = s.scalars(select(FitParticipant).order_by(FitParticipant.id)).all()
        enrolled = _fit_steps(s, "fit_enrollment")
        started = _fit_steps(s, "job_entry")
        case_of = dict(s.execute(select(Case.newcomer_id, Case.id)).all())
        permits = s.scalars(select(FitPermit)).all()
        enrol_events = Counter(
            s.scalars(select(AuditEvent.case_id).where(AuditEvent.action == "fit.enrolled"))
        )
        s.expunge_all()
    assert sum(p.enrolled_on.year == 2024 for p in people) == 108
    assert {p.newcomer_id for p in people} == set(enrolled)  # every one, and no one else
    by_id = {p.id: p for p in people}
    for p in people:
        assert p.enrolled_on == enrolled[p.newcomer_id].date()
        assert p.case_id == case_of[p.newcomer_id]
        assert enrol_events[p.case_id] == 1
        assert p.study_programme in THGA_PROGRAMMES and 1 <= p.semester <= 20
        # The job entry is the case's job_entry step: the same day, or none yet.
        job_day = started.get(p.newcomer_id)
        assert p.job_started_on == (job_day.date() if job_day else None)
        assert (p.job_employer is None) == (p.job_started_on is None)
        assert (p.job_in_region is None) == (p.job_started_on is None)
        assert (p.graduated_on is not None) == (p.status == FitStatus.graduated)
        assert (p.left_on is not None) == (p.status in (FitStatus.dropped_out, FitStatus.withdrawn))
        for day in (p.graduated_on, p.left_on):
            assert day is None or p.enrolled_on <= day <= AS_OF
    statuses = Counter(p.status for p in people)
    assert statuses[FitStatus.graduated] > 30 and statuses[FitStatus.enrolled] > 10
    assert 1 <= statuses[FitStatus.dropped_out] <= 0.1 * len(people)
    assert len({p.channel for p in people}) >= 5
    assert len({p.study_programme for p in people}) == len(THGA_PROGRAMMES)

    kinds = Counter(permit.kind for permit in permits)
    assert kinds[PermitKind.student] > 50 and kinds[PermitKind.job_search] > 10
    for permit in permits:
        assert permit.created_at < FIT_END
        assert permit.valid_until is None or permit.valid_until >= permit.valid_from
        if permit.kind == PermitKind.job_search:
            # §20: after graduating, at most 18 months.
            owner = by_id[permit.participant_id]
            assert owner.graduated_on is not None and permit.valid_from > owner.graduated_on
            assert permit.valid_until <= add_months(permit.valid_from, JOB_SEARCH_MONTHS)


def test_demo_offers_are_never_oversold_and_attended_only_once_they_took_place(empty_db):
    load_demo(empty_db, people=400, seed=11, as_of=AS_OF)
    with empty_db.read() as s:
        offers = {o.id: o for o in s.scalars(select(FitOffer))}
        regs = s.scalars(select(FitRegistration)).all()
        enrolled_at = dict(s.execute(select(FitParticipant.id, FitParticipant.created_at)).all())
        leaving = {p.id: p.graduated_on or p.left_on for p in s.scalars(select(FitParticipant))}
        messages = s.scalars(select(OutboxMessage).where(OutboxMessage.kind.like("fit_%"))).all()
        s.expunge_all()
    # Every kind in every year of the programme calendar, planned with places and times.
    for year in (2024, 2025, 2026):
        kinds = {o.kind for o in offers.values() if o.starts_at.year == year}
        assert kinds == set(OfferKind), year
    for o in offers.values():
        assert o.capacity >= 1 and o.ends_at > o.starts_at and o.created_at < o.starts_at
        past = o.ends_at < FIT_END
        assert o.status == (
            OfferStatus.cancelled if o.status == OfferStatus.cancelled else
            OfferStatus.held if past else OfferStatus.planned
        )  # fmt: skip
    taken = Counter(r.offer_id for r in regs if r.status in PLACE_HOLDING)
    assert all(taken[oid] <= o.capacity for oid, o in offers.items())
    assert any(taken[oid] == o.capacity for oid, o in offers.items())  # some were full
    statuses = Counter(r.status for r in regs)
    assert statuses[RegistrationStatus.waitlisted] > 0
    assert statuses[RegistrationStatus.attended] > statuses[RegistrationStatus.no_show] > 0
    for r in regs:
        offer = offers[r.offer_id]
        # Registered while enrolled in FIT, before the offer started and before the cut.
        assert enrolled_at[r.participant_id] <= r.registered_at < offer.starts_at
        left = leaving[r.participant_id]
        assert left is None or r.registered_at.date() <= left
        assert r.registered_at <= r.updated_at < FIT_END
        if r.status in (RegistrationStatus.attended, RegistrationStatus.no_show):
            assert offer.status == OfferStatus.held and offer.starts_at < FIT_END
        if offer.status == OfferStatus.held:
            assert r.status not in (RegistrationStatus.registered,)
        if r.status in PLACE_HOLDING:
            assert r.placed_at is not None and r.registered_at <= r.placed_at
        if offer.status == OfferStatus.cancelled:
            assert r.status == RegistrationStatus.cancelled
    # Messages to students carry the offer, never anyone else's data.
    by_kind = Counter(m.kind for m in messages)
    assert by_kind["fit_offer_reminder"] > 0 and by_kind["fit_feedback"] > 0
    for m in messages:
        if m.kind in ("fit_offer_reminder", "fit_feedback", "fit_place_freed"):
            assert set(m.context) == {"offer_title", "offer_kind", "starts_at", "ends_at", "place"}
        assert "reference" not in m.context or m.kind == "fit_day_limit_manager"
        assert m.created_at < FIT_END
        if m.kind == "fit_place_freed":
            # Keyed by the office's day, as promote_waiting keys it (not the day in UTC).
            assert m.idempotency_key.endswith(f":{local_today(m.created_at).isoformat()}")
    keys = [m.idempotency_key for m in messages]
    assert len(keys) == len(set(keys))


def test_demo_working_days_stay_within_the_limit_unless_warned_over_it(empty_db):
    load_demo(empty_db, people=400, seed=11, as_of=AS_OF)
    with empty_db.read() as s:
        jobs = {j.id: j for j in s.scalars(select(FitJob))}
        days = s.execute(select(FitWorkDay.job_id, FitWorkDay.day, FitWorkDay.half)).all()
        warned = set(
            s.scalars(
                select(OutboxMessage.idempotency_key).where(OutboxMessage.kind == "fit_day_limit")
            )
        )
        managers = set(
            s.scalars(
                select(OutboxMessage.idempotency_key).where(
                    OutboxMessage.kind == "fit_day_limit_manager"
                )
            )
        )
        s.expunge_all()
    assert {j.kind for j in jobs.values()} >= {
        JobKind.working_student,
        JobKind.mandatory_internship,
        JobKind.university_assistant,
    }
    per_day: dict[tuple[int, date], bool] = {}
    for job_id, day, half in days:
        job = jobs[job_id]
        assert job.starts_on <= day <= (job.ends_on or day) and day <= AS_OF
        assert day.weekday() < 5
        if job.kind in JOBS_NOT_COUNTED:
            continue
        key = (job.participant_id, day)
        per_day[key] = per_day.get(key, True) and half  # full if any job that day was full
    used: Counter[tuple[int, int]] = Counter()
    for (participant, day), half in per_day.items():
        used[(participant, day.year)] += 0.5 if half else 1
    assert used, "no working student in the demo"
    near = 0
    for (participant, year), total in used.items():
        over = f"fit_days:{participant}:{year}:over" in warned
        if total > DAY_LIMIT:
            assert over, (participant, year, total)  # deliberately over: and warned
        assert over == (total > DAY_LIMIT)
        if total >= DAY_LIMIT - 20:
            assert f"fit_days:{participant}:{year}:near" in warned or over
            near += 1
        else:
            assert f"fit_days:{participant}:{year}:near" not in warned
    assert near >= 1  # a few close to the limit
    assert {k.replace("fit_days:", "fit_days_cm:") for k in warned} == managers


def test_the_same_seed_gives_the_same_fit_programme(tmp_path):
    def fingerprint(db: Database) -> list[tuple]:
        with db.read() as s:
            return [
                *s.execute(
                    select(
                        Case.reference,
                        FitParticipant.study_programme,
                        FitParticipant.status,
                        FitParticipant.graduated_on,
                        FitParticipant.job_started_on,
                    )
                    .join(Case, FitParticipant.case_id == Case.id)
                    .order_by(FitParticipant.id)
                ).all(),
                *s.execute(
                    select(Case.reference, FitOffer.title, FitRegistration.status)
                    .join(FitParticipant, FitRegistration.participant_id == FitParticipant.id)
                    .join(Case, FitParticipant.case_id == Case.id)
                    .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
                    .order_by(FitRegistration.id)
                ).all(),
                *s.execute(select(FitWorkDay.day, FitWorkDay.half).order_by(FitWorkDay.id)).all(),
            ]

    prints = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        db = _sqlite(tmp_path, name)
        load_demo(db, people=150, seed=seed, as_of=AS_OF)
        prints.append(fingerprint(db))
        db.dispose()
    assert prints[0] == prints[1]
    assert len(prints[0]) > 200
    assert prints[2] != prints[0]


def test_demo_fit_participants_can_be_carried_on_through_the_services(db, actors):
    load_demo(db, people=400, seed=3, as_of=AS_OF)
    thga = actors["thga.nowak"]
    now = FIT_END + timedelta(hours=8)
    with db.read() as s:
        offer = s.scalars(
            select(FitOffer)
            .where(FitOffer.status == OfferStatus.planned, FitOffer.starts_at > now)
            .order_by(FitOffer.starts_at)
        ).first()
        assert offer is not None, "the demo should leave offers to come"
        taken = s.scalar(
            select(func.count())
            .select_from(FitRegistration)
            .where(
                FitRegistration.offer_id == offer.id,
                FitRegistration.status.in_([st.value for st in PLACE_HOLDING]),
            )
        )
        already = set(
            s.scalars(
                select(FitRegistration.participant_id).where(FitRegistration.offer_id == offer.id)
            )
        )
        free = [
            p
            for p in s.scalars(
                select(FitParticipant.id).where(FitParticipant.status == FitStatus.enrolled)
            )
            if p not in already
        ]
        offer_id, capacity = offer.id, offer.capacity
    assert free, "the demo should have students still enrolled"
    with db.transaction() as s:
        reg = fit.register(s, actor=thga, offer_id=offer_id, participant_id=free[0], now=now)
    expected = RegistrationStatus.registered if taken < capacity else RegistrationStatus.waitlisted
    assert reg.status == expected
    with db.transaction() as s:
        count = fit.day_count(s, participant_id=free[0], year=AS_OF.year)
    assert count.used <= DAY_LIMIT


def _stored(db: Database, table: str, ids: tuple[int, int]) -> list[dict]:
    """The rows as the database holds them (raw values, no column types), without id and key."""
    with db.writer.connect() as conn:
        rows = conn.execute(
            text(f"SELECT * FROM {table} WHERE id IN ({ids[0]}, {ids[1]}) ORDER BY id")
        )
        return [{k: v for k, v in row.items() if k not in ("id", "key")} for row in rows.mappings()]


def test_the_bulk_writer_stores_values_exactly_as_the_orm_types_do(db):
    """tracker.bulk converts values itself: they must read back the same, byte for byte."""
    berlin = ZoneInfo("Europe/Berlin")
    event = {
        "occurred_at": datetime(2024, 3, 31, 1, 30, 5, 120, tzinfo=berlin),
        "actor_id": None,
        "actor": "system:test",
        "action": "test.bulk",
        "case_id": 1,
        "entity_type": "step",
        "entity_id": 7,
        "reason": "Übersetzung fehlt / ünïcode",
        "details": {"step": "visa", "used": 1.0, "days": 1, "half": True, "none": None},
    }
    step = {
        "case_id": 1,
        "key": "visa",
        "position": 0,
        "needs": ["job_offer", "recognition"],
        "owner_org_id": 1,
        "state": "open",
        "opened_at": datetime(2024, 1, 2, 8, 15, tzinfo=UTC),
        "started_at": None,
        "done_at": datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        "service_days": 30,
        "legal_basis": None,
        "legal_days": None,
        "legal_months": 3,
        "clock_started_at": None,
        "legal_reference": None,
        "service_due": date(2024, 2, 1),
        "legal_due": None,
        "due_date": date(2024, 2, 1),
        "blocked_reason": None,
        "skip_reason": None,
        "outcome": None,
        "version": 1,
    }
    with db.transaction() as s:
        s.execute(
            insert(Newcomer),
            [
                {
                    "id": 1,
                    "given_name": "Ada",
                    "family_name": "Lovelace",
                    "birth_date": date(1990, 12, 10),
                    "eu_citizen": False,
                    "purpose": "work",
                    "accelerated_procedure": True,
                    "match_key": "lovelace|ada|1990-12-10",
                    "created_at": datetime(2024, 1, 2, 8, tzinfo=UTC),
                }
            ],
        )
        s.execute(
            insert(Case),
            [
                {
                    "id": 1,
                    "reference": "WO-TEST-0001",
                    "newcomer_id": 1,
                    "pathway_key": "skilled_worker",
                    "pathway_version": 1,
                    "opened_at": datetime(2024, 1, 2, 8, tzinfo=UTC),
                }
            ],
        )
    tables = {"audit_events": (AuditEvent, event), "steps": (Step, step)}
    ids = {"audit_events": (1001, 1002), "steps": (2001, 2002)}
    for name, (model, row) in tables.items():
        with db.transaction() as s:
            s.execute(insert(model), [{**row, "id": ids[name][0]}])
        with db.transaction() as s:
            again = {**row, "id": ids[name][1], "key": "housing"} if name == "steps" else row
            BulkWriter().insert(s.connection(), model.__table__, [{**again, "id": ids[name][1]}])
        orm, bulk = _stored(db, name, ids[name])
        assert orm == bulk, name


def test_drawing_in_a_second_process_gives_the_same_rows(tmp_path, monkeypatch):
    """Large loads draw the journeys in a forked process: the same rows as drawn in one."""
    if not demo_load.can_fork():
        pytest.skip("no fork on this platform: large loads draw in one process")
    prints = []
    for name, parallel_from in (("one", 10**9), ("two", 1)):
        monkeypatch.setattr(demo_load, "PARALLEL_FROM", parallel_from)
        db = _sqlite(tmp_path, name)
        counts = load_demo(db, people=150, seed=7, as_of=AS_OF, batch_size=40)
        with db.writer.connect() as conn:
            rows = {
                table: conn.execute(text(f"SELECT * FROM {table} ORDER BY id")).all()
                for table in counts
            }
        rows["audit_events"] = [r for r in rows["audit_events"] if r.action != "demo.loaded"]
        prints.append((counts, rows))
        db.dispose()
    assert prints[0] == prints[1]
    assert prints[0][0]["fit_participants"] > 0
