"""FIT@THGA: enrolment, places and waiting lists (never oversold), the day limit, permits."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.conftest import NOW
from tests.helpers import advance, start_case
from tracker.clocks import local_today
from tracker.enums import (
    FitChannel,
    FitStatus,
    JobKind,
    OfferKind,
    PermitKind,
    RegistrationStatus,
    StepState,
)
from tracker.errors import InvalidTransition, PermissionDenied, ValidationFailed
from tracker.fit.contacts import add_contact
from tracker.fit.daily import send_daily
from tracker.fit.offers import (
    cancel_registration,
    change_capacity,
    create_offer,
    record_attendance,
    register,
)
from tracker.fit.participants import change_status, enrol, record_job_entry
from tracker.fit.permits import add_permit
from tracker.fit.work_days import add_job, day_count, record_work_days, remove_work_days
from tracker.journeys.handoffs import accept_handoff
from tracker.journeys.steps import complete_step
from tracker.models import FitParticipant, FitRegistration, OutboxMessage, Step

LATER = NOW + timedelta(days=30)
TODAY = local_today(NOW)


def statuses(s) -> dict[int, str]:
    return {
        pid: status
        for pid, status in s.execute(select(FitRegistration.participant_id, FitRegistration.status))
    }


def student_with_open_fit_step(db, actors, **facts) -> str:
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, purpose="study", nationality="VN", **facts)
    for key in ("housing", "registration"):
        with db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)
        advance(db, cm, ref, now=NOW)
    with db.read() as s:
        state = s.scalar(
            select(Step.state)
            .join(Step.case)
            .where(Step.key == "fit_enrollment")
            .where(Step.case.has(reference=ref))
        )
    assert state == StepState.open
    return ref


def enrolled(db, actors, n: int = 1, **facts) -> list[int]:
    ids = []
    for i in range(n):
        ref = student_with_open_fit_step(db, actors, given_name=f"Student{i}", **facts)
        with db.transaction() as s:
            p = enrol(
                s,
                actor=actors["cm.mueller"],
                reference=ref,
                channel=FitChannel.orientation_week,
                study_programme="Geotechnik",
                semester=2,
                enrolled_on=TODAY,
                now=NOW,
            )
            ids.append(p.id)
    return ids


def enrolled_by_thga(db, thga, ref: str) -> int:
    """THGA accepts the case's FIT handoff and enrols the student; the participant's id."""
    with db.transaction() as s:
        accept_handoff(s, actor=thga, reference=ref, step_key="fit_enrollment", now=NOW)
    with db.transaction() as s:
        return enrol(
            s,
            actor=thga,
            reference=ref,
            channel=FitChannel.international_office,
            study_programme="Geotechnik",
            semester=1,
            enrolled_on=TODAY,
            now=NOW,
        ).id


def offer(db, actors, capacity: int, *, starts: datetime = LATER) -> int:
    with db.transaction() as s:
        return create_offer(
            s,
            actor=actors["thga.nowak"],
            kind=OfferKind.job_fair,
            title="Karrieretag Ruhr",
            starts_at=starts,
            ends_at=starts + timedelta(hours=4),
            place="THGA Audimax",
            capacity=capacity,
            now=NOW,
        ).id


def test_thga_enrols_a_student_through_the_accepted_handoff(db, actors):
    ref = student_with_open_fit_step(db, actors)
    thga = actors["thga.nowak"]
    with db.transaction() as s, pytest.raises(PermissionDenied):
        enrol(
            s,
            actor=thga,
            reference=ref,
            channel=FitChannel.lecturer,
            study_programme="Maschinenbau",
            semester=1,
            now=NOW,
        )
    pid = enrolled_by_thga(db, thga, ref)
    with db.read() as s:
        assert s.get_one(FitParticipant, pid).status == FitStatus.enrolled
        step = s.scalar(select(Step).where(Step.key == "fit_enrollment"))
        assert step.state == StepState.done
    with db.transaction() as s, pytest.raises(InvalidTransition, match="already in FIT"):
        enrol(
            s,
            actor=actors["cm.mueller"],
            reference=ref,
            channel=FitChannel.other,
            study_programme="x",
            semester=1,
            now=NOW,
        )
    with db.transaction() as s, pytest.raises(PermissionDenied):
        create_offer(
            s,
            actor=actors["vbw.schulz"],
            kind=OfferKind.job_fair,
            title="t",
            starts_at=LATER,
            ends_at=LATER + timedelta(hours=1),
            place="p",
            capacity=3,
            now=NOW,
        )


def test_a_full_offer_puts_people_on_the_waiting_list_and_moves_them_up(db, actors):
    a, b, c, d = enrolled(db, actors, 4)
    thga = actors["thga.nowak"]
    oid = offer(db, actors, capacity=2)
    regs = {}
    for pid in (a, b, c, d):
        with db.transaction() as s:
            r = register(s, actor=thga, offer_id=oid, participant_id=pid, now=NOW)
            regs[pid] = (r.id, r.status)
    assert [regs[p][1] for p in (a, b, c, d)] == [
        "registered",
        "registered",
        "waitlisted",
        "waitlisted",
    ]
    with db.transaction() as s:
        cancel_registration(s, actor=thga, registration_id=regs[a][0], now=NOW)
    with db.read() as s:
        status = statuses(s)
        freed = s.scalars(
            select(OutboxMessage.context).where(OutboxMessage.kind == "fit_place_freed")
        ).all()
    assert status[c] == RegistrationStatus.registered  # the first in line moved up
    assert status[d] == RegistrationStatus.waitlisted
    assert len(freed) == 1 and freed[0]["offer_title"] == "Karrieretag Ruhr"
    # More places move the line up; fewer than are taken are refused.
    with db.transaction() as s:
        change_capacity(s, actor=thga, offer_id=oid, capacity=3, now=NOW)
    with db.read() as s:
        assert s.get(FitRegistration, regs[d][0]).status == RegistrationStatus.registered
    with db.transaction() as s, pytest.raises(ValidationFailed, match="3 people"):
        change_capacity(s, actor=thga, offer_id=oid, capacity=2, now=NOW)
    # Registering again after cancelling goes to the back of the line.
    with db.transaction() as s:
        again = register(s, actor=thga, offer_id=oid, participant_id=a, now=NOW)
        assert again.status == RegistrationStatus.waitlisted


def test_two_registrations_racing_for_the_last_place_never_oversell(db, actors):
    people = enrolled(db, actors, 6)
    thga = actors["thga.nowak"]
    for round_ in range(3):
        oid = offer(db, actors, capacity=1, starts=LATER + timedelta(days=round_))
        barrier = threading.Barrier(len(people))
        errors: list[BaseException] = []

        def go(
            pid: int,
            oid: int = oid,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait(timeout=10)
                with db.transaction() as s:
                    register(s, actor=thga, offer_id=oid, participant_id=pid, now=NOW)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=go, args=(p,)) for p in people]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        with db.read() as s:
            statuses = list(
                s.scalars(select(FitRegistration.status).where(FitRegistration.offer_id == oid))
            )
        assert statuses.count(RegistrationStatus.registered) == 1
        assert statuses.count(RegistrationStatus.waitlisted) == len(people) - 1


def test_a_student_no_longer_enrolled_cannot_register_and_frees_their_places(db, actors):
    a, b = enrolled(db, actors, 2)
    thga = actors["thga.nowak"]
    oid = offer(db, actors, capacity=1)
    with db.transaction() as s:
        register(s, actor=thga, offer_id=oid, participant_id=a, now=NOW)
        register(s, actor=thga, offer_id=oid, participant_id=b, now=NOW)
    with db.transaction() as s:
        change_status(
            s,
            actor=thga,
            participant_id=a,
            status=FitStatus.dropped_out,
            on=TODAY,
            now=NOW,
        )
    with db.read() as s:
        status = statuses(s)
    assert status == {a: RegistrationStatus.cancelled, b: RegistrationStatus.registered}
    with db.transaction() as s, pytest.raises(InvalidTransition, match="no longer enrolled"):
        register(s, actor=thga, offer_id=offer(db, actors, 5), participant_id=a, now=NOW)


def test_attendance_marks_who_came_and_who_did_not(db, actors):
    a, b, c = enrolled(db, actors, 3)
    thga = actors["thga.nowak"]
    oid = offer(db, actors, capacity=2)
    with db.transaction() as s:
        for pid in (a, b, c):
            register(s, actor=thga, offer_id=oid, participant_id=pid, now=NOW)
    with db.transaction() as s, pytest.raises(InvalidTransition, match="once the offer"):
        record_attendance(s, actor=thga, offer_id=oid, attended=[a], now=NOW)
    after = LATER + timedelta(hours=5)
    with db.transaction() as s, pytest.raises(ValidationFailed, match="no place"):
        record_attendance(s, actor=thga, offer_id=oid, attended=[a, c], now=after)
    with db.transaction() as s:
        record_attendance(s, actor=thga, offer_id=oid, attended=[a], now=after)
    with db.read() as s:
        status = statuses(s)
    assert status == {a: "attended", b: "no_show", c: "waitlisted"}


# --- the day limit -----------------------------------------------------------------------------


def weekdays(start: date, n: int) -> list[date]:
    days, day = [], start
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def job(db, actors, pid: int, kind: JobKind, start: date = date(2025, 1, 1)) -> int:
    with db.transaction() as s:
        return add_job(
            s,
            actor=actors["thga.nowak"],
            participant_id=pid,
            employer="Ruhr Tunnelbau GmbH",
            kind=kind,
            starts_on=start,
            now=NOW,
        ).id


def record(db, actors, job_id: int, days: list[date], half: bool = False):
    with db.transaction() as s:
        return record_work_days(
            s, actor=actors["thga.nowak"], job_id=job_id, days=days, half=half, now=NOW
        )


def test_the_day_counter_at_its_boundaries(db, actors):
    (pid,) = enrolled(db, actors)
    work = job(db, actors, pid, JobKind.working_student)
    days = weekdays(date(2025, 1, 2), 260)
    count = record(db, actors, work, days[:119])
    assert (count.full, count.half, count.used, count.warning) == (119, 0, 119, False)
    with db.read() as s:
        assert not s.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "fit_day_limit")
        ).all()
    # Two half days are one full day: 119 + 0.5 = 119.5, still below the warning at 120.
    count = record(db, actors, work, days[119:120], half=True)
    assert count.used == 119.5 and not count.warning
    count = record(db, actors, work, days[120:121], half=True)
    assert count.used == 120 and count.warning and not count.over  # warned before the limit
    count = record(db, actors, work, days[121:141])
    assert count.used == 140 and not count.over and count.remaining == 0
    count = record(db, actors, work, days[141:142], half=True)
    assert count.used == 140.5 and count.over
    with db.read() as s:
        warnings = s.scalars(
            select(OutboxMessage.idempotency_key).where(OutboxMessage.kind == "fit_day_limit")
        ).all()
    assert sorted(warnings) == [f"fit_days:{pid}:2025:near", f"fit_days:{pid}:2025:over"]
    # The next calendar year starts from zero.
    with db.read() as s:
        assert day_count(s, participant_id=pid, year=2026).used == 0


def test_what_does_and_does_not_count_against_the_limit(db, actors):
    (pid,) = enrolled(db, actors)
    counting = job(db, actors, pid, JobKind.working_student)
    internship = job(db, actors, pid, JobKind.voluntary_internship)
    mandatory = job(db, actors, pid, JobKind.mandatory_internship)
    assistant = job(db, actors, pid, JobKind.university_assistant)
    days = weekdays(date(2025, 3, 3), 10)
    record(db, actors, counting, days[:5], half=True)
    assert record(db, actors, mandatory, days) is None  # exempt: no count, no warning
    record(db, actors, assistant, days)
    # A day in two counting jobs counts once, as a full day if either was full.
    count = record(db, actors, internship, days[3:8])
    assert (count.full, count.half) == (5, 3)  # days 3-7 full, days 0-2 half
    assert count.used == 6.5
    with db.transaction() as s, pytest.raises(ValidationFailed, match="Already recorded"):
        record_work_days(s, actor=actors["thga.nowak"], job_id=counting, days=days[:1], now=NOW)
    with db.transaction() as s, pytest.raises(ValidationFailed, match="outside the job"):
        record_work_days(
            s, actor=actors["thga.nowak"], job_id=counting, days=[date(2024, 12, 31)], now=NOW
        )


def test_a_job_search_permit_runs_at_most_18_months_and_is_reminded_before_it_ends(db, actors):
    (pid,) = enrolled(db, actors)
    thga = actors["thga.nowak"]
    with db.transaction() as s, pytest.raises(ValidationFailed, match="18 months"):
        add_permit(
            s,
            actor=thga,
            participant_id=pid,
            kind=PermitKind.job_search,
            valid_from=date(2025, 8, 31),
            valid_until=date(2027, 3, 1),
            now=NOW,
        )
    with db.transaction() as s:
        permit = add_permit(
            s,
            actor=thga,
            participant_id=pid,
            kind=PermitKind.job_search,
            valid_from=date(2025, 8, 31),
            valid_until=date(2027, 2, 28),
            now=NOW,
        )
        assert permit.valid_until == date(2027, 2, 28)
    far = date(2026, 12, 1)
    near = date(2027, 1, 10)
    with db.transaction() as s:
        assert send_daily(s, today=far, now=NOW).permit_warnings == 0
    with db.transaction() as s:
        assert send_daily(s, today=near, now=NOW).permit_warnings == 1
    with db.transaction() as s:
        assert send_daily(s, today=near + timedelta(days=1), now=NOW).permit_warnings == 0
    # A work permit that follows makes the warning moot.
    with db.transaction() as s:
        add_permit(
            s,
            actor=thga,
            participant_id=pid,
            kind=PermitKind.work,
            valid_from=date(2027, 1, 15),
            valid_until=date(2031, 1, 14),
            now=NOW,
        )
        msg = s.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "fit_permit_ending")
        ).one()
        assert msg.context["permit"] == "job_search"


def test_the_daily_run_reminds_a_day_ahead_and_asks_for_feedback_once(db, actors):
    a, b = enrolled(db, actors, 2)
    thga = actors["thga.nowak"]
    starts = datetime(2026, 5, 6, 9, 0, tzinfo=UTC)
    oid = offer(db, actors, capacity=1, starts=starts)
    with db.transaction() as s:
        register(s, actor=thga, offer_id=oid, participant_id=a, now=NOW)
        register(s, actor=thga, offer_id=oid, participant_id=b, now=NOW)  # waiting list
    with db.transaction() as s:
        first = send_daily(s, today=date(2026, 5, 5), now=NOW)
    with db.transaction() as s:
        again = send_daily(s, today=date(2026, 5, 5), now=NOW)
    assert (first.reminders, again.reminders) == (1, 0)  # only the one with a place
    with db.transaction() as s:
        record_attendance(
            s, actor=thga, offer_id=oid, attended=[a], now=starts + timedelta(hours=5)
        )
    with db.transaction() as s:
        after = send_daily(s, today=date(2026, 5, 7), now=NOW)
    assert after.feedback_requests == 1
    with db.read() as s:
        kinds = sorted(
            s.scalars(
                select(OutboxMessage.kind).where(
                    OutboxMessage.kind.in_(["fit_offer_reminder", "fit_feedback"])
                )
            )
        )
    assert kinds == ["fit_feedback", "fit_offer_reminder"]


# --- the programme's figures against an independent count ------------------------------------


def independent_programme(db, year: int) -> dict[str, object]:
    """The same figures counted in Python over every FIT row, loaded through the ORM."""
    from collections import Counter

    from tracker.models import FitContact, FitJob, FitOffer, FitParticipant

    with db.read() as s:
        offers = {o.id: o for o in s.scalars(select(FitOffer))}
        regs = list(s.scalars(select(FitRegistration)))
        contacts = list(s.scalars(select(FitContact)))
        jobs = list(s.scalars(select(FitJob)))
        people = list(s.scalars(select(FitParticipant)))
        s.expunge_all()
    held = {i: o for i, o in offers.items() if o.status == "held" and o.starts_at.year == year}
    per_kind: Counter[tuple[str, str]] = Counter()
    for o in held.values():
        per_kind[(str(o.kind), "offers_held")] += 1
        per_kind[(str(o.kind), "places")] += o.capacity
    for r in regs:
        if r.offer_id in held and r.status in ("attended", "no_show"):
            per_kind[(str(held[r.offer_id].kind), str(r.status))] += 1
    in_year = lambda d: d is not None and d.year == year  # noqa: E731
    return {
        "per_kind": per_kind,
        "participants_reached": len(
            {r.participant_id for r in regs if r.offer_id in held and r.status == "attended"}
        ),
        "company_contacts": sum(in_year(c.contact_on) for c in contacts),
        "companies": len({c.company.lower() for c in contacts if in_year(c.contact_on)}),
        "working_student_jobs": sum(
            in_year(j.starts_on) and j.kind in ("working_student", "voluntary_internship", "other")
            for j in jobs
        ),
        "graduated": sum(p.status == "graduated" and in_year(p.graduated_on) for p in people),
        "job_entries": sum(in_year(p.job_started_on) for p in people),
        "job_entries_in_region": sum(
            in_year(p.job_started_on) and p.job_in_region is True for p in people
        ),
    }


def test_the_programme_figures_match_an_independent_count(db, actors):
    from tracker.enums import ContactKind
    from tracker.reporting import fit as fit_figures

    thga = actors["thga.nowak"]
    people = enrolled(db, actors, 8)
    fair = offer(db, actors, capacity=10)
    seminar = offer(db, actors, capacity=6, starts=LATER + timedelta(days=7))
    with db.transaction() as s:
        for pid in people:
            register(s, actor=thga, offer_id=fair, participant_id=pid, now=NOW)
            register(s, actor=thga, offer_id=seminar, participant_id=pid, now=NOW)
    after = LATER + timedelta(days=8)
    with db.transaction() as s:
        record_attendance(s, actor=thga, offer_id=fair, attended=people[:7], now=after)
        record_attendance(s, actor=thga, offer_id=seminar, attended=people[:5], now=after)
    today = local_today(after)
    with db.transaction() as s:
        for i, pid in enumerate(people):
            add_contact(
                s,
                actor=thga,
                participant_id=pid,
                company=f"Firma {i % 3}",
                kind=ContactKind.job_fair_talk,
                contact_on=today,
                now=after,
            )
            add_job(
                s,
                actor=thga,
                participant_id=pid,
                employer="Bochumer Verein",
                kind=JobKind.working_student,
                starts_on=today,
                now=after,
            )
        for pid in people[:6]:
            change_status(
                s, actor=thga, participant_id=pid, status=FitStatus.graduated, on=today, now=after
            )
            record_job_entry(
                s,
                actor=thga,
                participant_id=pid,
                employer="Ruhr AG",
                started_on=today,
                in_region=pid != people[0],
                now=after,
            )
    year = today.year
    with db.read() as s:
        got = fit_figures.fit_programme(s, actor=actors["lead.schmidt"], year=year)
    want = independent_programme(db, year)
    kinds = {r.kind: r for r in got.offers}
    fair_row = kinds["job_fair"]
    assert fair_row.offers_held == want["per_kind"][("job_fair", "offers_held")] == 2
    assert fair_row.places == want["per_kind"][("job_fair", "places")] == 16
    assert fair_row.attended == want["per_kind"][("job_fair", "attended")] == 12
    assert want["per_kind"][("job_fair", "no_show")] == 2 and fair_row.no_show is None  # 1-4
    for key in (
        "participants_reached",
        "company_contacts",
        "companies",
        "working_student_jobs",
        "graduated",
        "job_entries",
    ):
        assert getattr(got, key) == want[key], key
    assert got.companies == 3
    # 5 of 6 job entries in the region: the one elsewhere is 1, so "in region" is hidden too.
    assert want["job_entries_in_region"] == 5 and got.job_entries_in_region is None
    with db.read() as s, pytest.raises(PermissionDenied):
        fit_figures.fit_programme(s, actor=thga, year=year)


def test_walk_ins_are_recorded_and_mistaken_days_can_be_taken_back(db, actors):
    a, b = enrolled(db, actors, 2)
    thga = actors["thga.nowak"]
    oid = offer(db, actors, capacity=1)
    with db.transaction() as s:
        register(s, actor=thga, offer_id=oid, participant_id=a, now=NOW)
    after = LATER + timedelta(hours=5)
    with db.transaction() as s:
        record_attendance(s, actor=thga, offer_id=oid, attended=[a], walk_ins=[b], now=after)
    with db.read() as s:
        assert statuses(s) == {a: "attended", b: "attended"}
    work = job(db, actors, a, JobKind.working_student)
    days = weekdays(date(2025, 5, 5), 3)
    record(db, actors, work, days)
    with db.transaction() as s:
        assert remove_work_days(s, actor=thga, job_id=work, days=days[:1], now=NOW) == 1
    with db.read() as s:
        assert day_count(s, participant_id=a, year=2025).used == 2
    with db.transaction() as s, pytest.raises(ValidationFailed, match="Not recorded"):
        remove_work_days(s, actor=thga, job_id=work, days=days[:1], now=NOW)


def test_the_waiting_list_skips_someone_no_longer_enrolled_and_fills_the_place(db, actors):
    a, b, c = enrolled(db, actors, 3)
    thga = actors["thga.nowak"]
    oid = offer(db, actors, capacity=1)
    with db.transaction() as s:
        first = register(s, actor=thga, offer_id=oid, participant_id=a, now=NOW).id
        register(s, actor=thga, offer_id=oid, participant_id=b, now=NOW)
        register(s, actor=thga, offer_id=oid, participant_id=c, now=NOW)
    with db.transaction() as s:
        change_status(
            s,
            actor=thga,
            participant_id=b,
            status=FitStatus.graduated,
            on=TODAY,
            now=NOW,
        )
    with db.transaction() as s:
        cancel_registration(s, actor=thga, registration_id=first, now=NOW)
    with db.read() as s:
        assert statuses(s) == {a: "cancelled", b: "waitlisted", c: "registered"}
