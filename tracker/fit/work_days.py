"""FIT@THGA jobs while studying and their working days against the yearly limit (§16b(3))."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Integer, Select, cast, func, select
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor, partner_sees_participant
from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.enums import JOBS_NOT_COUNTED, JobKind
from tracker.errors import NotFoundError, ValidationFailed
from tracker.fit.common import (
    clean_text,
    get_offer,
    get_participant,
    record_event,
    require_programme_staff,
    to_student,
)
from tracker.messages import outbox
from tracker.models import Case, FitJob, FitParticipant, FitWorkDay

# §16b(3) AufenthG: 140 full or 280 half working days per calendar year.
DAY_LIMIT = 140


@dataclass(frozen=True)
class DayCount:
    """Working days in one calendar year that count against the limit."""

    year: int
    full: int
    half: int
    limit: int = DAY_LIMIT

    @property
    def used(self) -> float:
        """In full days: two half days are one."""
        return self.full + self.half / 2

    @property
    def remaining(self) -> float:
        return self.limit - self.used

    @property
    def warning(self) -> bool:
        return self.used >= self.limit - get_settings().fit_day_warning_margin

    @property
    def over(self) -> bool:
        return self.used > self.limit


def day_count(session: Session, *, participant_id: int, year: int) -> DayCount:
    """Days worked in ``year`` in jobs that count (not mandatory internships, not assistant
    jobs). A day worked in two counting jobs counts once, as a full day if either was full."""
    return day_counts(session, year=year, participant_ids=[participant_id]).get(
        participant_id, DayCount(year=year, full=0, half=0)
    )


def counted_days(year: int) -> Select[int, date, int]:
    """Each participant's days in ``year`` that count against the limit, one row per day:
    (participant id, day, 1 for a half day or 0 for a full one). A day worked in two counting
    jobs is one row, full if either was (the minimum)."""
    return (
        select(
            FitJob.participant_id,
            FitWorkDay.day,
            func.min(cast(FitWorkDay.half, Integer)).label("half"),
        )
        .join(FitJob, FitWorkDay.job_id == FitJob.id)
        .where(
            FitJob.kind.not_in([k.value for k in JOBS_NOT_COUNTED]),
            FitWorkDay.day >= date(year, 1, 1),
            FitWorkDay.day <= date(year, 12, 31),
        )
        .group_by(FitJob.participant_id, FitWorkDay.day)
    )


def day_counts(
    session: Session, *, year: int, participant_ids: Sequence[int] | None = None
) -> dict[int, DayCount]:
    """The same count for many participants in one query (those with days in ``year``)."""
    stmt = counted_days(year)
    if participant_ids is not None:
        stmt = stmt.where(FitJob.participant_id.in_(list(participant_ids)))
    full: dict[int, int] = {}
    half: dict[int, int] = {}
    for pid, _day, is_half in session.execute(stmt):
        target = half if is_half else full
        target[pid] = target.get(pid, 0) + 1
    return {
        pid: DayCount(year=year, full=full.get(pid, 0), half=half.get(pid, 0))
        for pid in set(full) | set(half)
    }


def participant_ids_with_days(
    session: Session, *, actor: Actor, year: int, after_id: int = 0, limit: int = 500
) -> list[int]:
    """Ids of the participants the actor may see with working days recorded in ``year``, in
    id order from ``after_id`` on (one page)."""
    return list(
        session.scalars(
            select(FitJob.participant_id)
            .join(FitWorkDay, FitWorkDay.job_id == FitJob.id)
            .join(FitParticipant, FitJob.participant_id == FitParticipant.id)
            .where(
                FitJob.participant_id > after_id,
                FitWorkDay.day >= date(year, 1, 1),
                FitWorkDay.day <= date(year, 12, 31),
                partner_sees_participant(actor),
            )
            .group_by(FitJob.participant_id)
            .order_by(FitJob.participant_id)
            .limit(limit)
        )
    )


def add_job(
    session: Session,
    *,
    actor: Actor,
    participant_id: int,
    employer: str,
    kind: JobKind,
    starts_on: date,
    ends_on: date | None = None,
    in_region: bool = True,
    offer_id: int | None = None,
    now: datetime | None = None,
) -> FitJob:
    """A job while studying (a working-student job, an internship, an assistant job)."""
    require_programme_staff(actor, "record jobs")
    now = now or utcnow()
    participant = get_participant(session, participant_id, actor=actor)
    if ends_on is not None and ends_on < starts_on:
        raise ValidationFailed("A job cannot end before it starts.")
    if offer_id is not None:
        get_offer(session, offer_id)  # a placement names an offer that exists
    job = FitJob(
        participant_id=participant.id,
        employer=clean_text(employer, "employer"),
        kind=JobKind(kind),
        starts_on=starts_on,
        ends_on=ends_on,
        in_region=in_region,
        offer_id=offer_id,
        created_at=now,
    )
    session.add(job)
    session.flush()
    record_event(
        session,
        actor,
        "fit.job",
        "fit_job",
        job.id,
        now,
        case_id=participant.case_id,
        kind=str(kind),
        counts=JobKind(kind) not in JOBS_NOT_COUNTED,
    )
    return job


def get_job(session: Session, job_id: int, *, actor: Actor) -> tuple[FitJob, FitParticipant]:
    """A job and its participant, if the actor may see the participant (else: no such job)."""
    found = session.execute(
        select(FitJob, FitParticipant)
        .join(FitParticipant, FitJob.participant_id == FitParticipant.id)
        .where(FitJob.id == job_id, partner_sees_participant(actor))
    ).one_or_none()
    if found is None:
        raise NotFoundError(
            "No job {job}.",
            job=job_id,
        )
    job, participant = found
    return job, participant


def record_work_days(
    session: Session,
    *,
    actor: Actor,
    job_id: int,
    days: Sequence[date],
    half: bool = False,
    now: datetime | None = None,
) -> DayCount | None:
    """Record days worked in a job; returns the year's count for the last day's year.

    Approaching the limit (within ``fit_day_warning_margin`` days) or passing it queues a
    warning to the student and a note to the case manager, once per year and level."""
    require_programme_staff(actor, "record working days")
    now = now or utcnow()
    job, participant = get_job(session, job_id, actor=actor)
    if not days:
        raise ValidationFailed("Name at least one day.")
    today = clocks.local_today(now)
    for day in days:
        if day < job.starts_on or (job.ends_on is not None and day > job.ends_on):
            raise ValidationFailed(
                "{day} lies outside the job's dates.",
                day=day,
            )
        if day > today:
            raise ValidationFailed(
                "{day} lies in the future.",
                day=day,
            )
    known = set(
        session.scalars(
            select(FitWorkDay.day).where(FitWorkDay.job_id == job.id, FitWorkDay.day.in_(days))
        )
    )
    if known:
        listed = ", ".join(sorted(d.isoformat() for d in known))
        raise ValidationFailed(
            "Already recorded for this job: {days}.",
            days=listed,
        )
    for day in sorted(set(days)):
        session.add(FitWorkDay(job_id=job.id, day=day, half=half))
    session.flush()
    record_event(
        session,
        actor,
        "fit.work_days",
        "fit_job",
        job.id,
        now,
        case_id=participant.case_id,
        days=len(set(days)),
        half=half,
    )
    if job.kind in JOBS_NOT_COUNTED:
        return None
    count = None
    for year in sorted({d.year for d in days}):
        count = day_count(session, participant_id=participant.id, year=year)
        warn_day_limit(session, participant=participant, count=count, now=now)
    return count


def remove_work_days(
    session: Session,
    *,
    actor: Actor,
    job_id: int,
    days: Sequence[date],
    now: datetime | None = None,
) -> int:
    """Correct a mistake: take recorded days off a job (the audit trail keeps that it happened)."""
    require_programme_staff(actor, "correct working days")
    now = now or utcnow()
    job, participant = get_job(session, job_id, actor=actor)
    rows = list(
        session.scalars(
            select(FitWorkDay).where(FitWorkDay.job_id == job.id, FitWorkDay.day.in_(days))
        )
    )
    missing = set(days) - {r.day for r in rows}
    if missing:
        listed = ", ".join(sorted(d.isoformat() for d in missing))
        raise ValidationFailed(
            "Not recorded for this job: {days}.",
            days=listed,
        )
    for row in rows:
        session.delete(row)
    record_event(
        session,
        actor,
        "fit.work_days_removed",
        "fit_job",
        job.id,
        now,
        case_id=participant.case_id,
        days=[d.isoformat() for d in sorted(days)],
    )
    return len(rows)


def warn_day_limit(
    session: Session, *, participant: FitParticipant, count: DayCount, now: datetime
) -> bool:
    """Queue the day-limit warning for this year and level if it is due (once each).

    Returns whether a warning to the student was queued now (False if already sent)."""
    if not count.warning:
        return False
    level = "over" if count.over else "near"
    context = {
        "year": count.year,
        "used": count.used,
        "limit": count.limit,
        "remaining": max(count.remaining, 0),
        "level": level,
    }
    queued = to_student(
        session,
        participant,
        key=f"fit_days:{participant.id}:{count.year}:{level}",
        kind="fit_day_limit",
        context=context,
        now=now,
    )
    manager_id, reference = session.execute(
        select(Case.case_manager_id, Case.reference).where(Case.id == participant.case_id)
    ).one()
    if manager_id is not None:
        outbox.enqueue(
            session,
            key=f"fit_days_cm:{participant.id}:{count.year}:{level}",
            kind="fit_day_limit_manager",
            case_id=participant.case_id,
            recipient_user_id=manager_id,
            context={**context, "reference": reference},
            now=now,
        )
    return queued


@dataclass(frozen=True)
class DayLimitCheck:
    """One page of the daily re-check: how many were checked, how many warnings to students
    were queued now, and where the next page starts (None after the last)."""

    checked: int
    queued: int
    next_cursor: int | None


def check_day_limits(
    session: Session,
    *,
    actor: Actor,
    year: int,
    after_id: int = 0,
    limit: int = 500,
    now: datetime | None = None,
) -> DayLimitCheck:
    """Re-check one page of participants with working days in ``year`` and queue the warnings
    now due.

    Recording days already warns; this catches days that came in another way and a changed
    warning margin. A warning queued on an earlier run is not queued (nor counted) again."""
    require_programme_staff(actor, "check working days")
    now = now or utcnow()
    ids = participant_ids_with_days(session, actor=actor, year=year, after_id=after_id, limit=limit)
    counts = day_counts(session, year=year, participant_ids=ids)
    # Days only in jobs that do not count leave a participant out of ``counts``: none used.
    none = DayCount(year=year, full=0, half=0)
    queued = 0
    for participant in session.scalars(
        select(FitParticipant).where(FitParticipant.id.in_(ids)).order_by(FitParticipant.id)
    ):
        queued += warn_day_limit(
            session, participant=participant, count=counts.get(participant.id, none), now=now
        )
    return DayLimitCheck(
        checked=len(ids),
        queued=queued,
        next_cursor=ids[-1] if len(ids) == limit else None,
    )
