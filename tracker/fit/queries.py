"""FIT@THGA reads for the staff page, the CLI and the daily flow: programme staff only, plain data.

Changes go through the package's service modules; this module only reads. Every function is
keyword-only ``(session, *, actor, ...)`` and checks first that the actor may run the programme
(THGA's agents, case managers, admins): scope is enforced here, not on the screen. A THGA agent
sees a participant only while the student consents to sharing with THGA
(:func:`tracker.fit.common.partner_sees_participant`): in lists, in an offer's registrations and
in day counts; a single participant it may not see is reported as missing.

Programme counts here are exact: staff see their own participants by name. Leadership sees the
same figures as aggregates with small cells suppressed, in
:func:`tracker.reporting.fit.fit_programme`; both count by the same definitions (see
:func:`programme_counts`). The counts and the offers' place counts name nobody, so they count
every participant, as the places on an offer are taken whoever took them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from tracker import clocks
from tracker.access import Actor, partner_sees_participant
from tracker.config import get_settings
from tracker.enums import PLACE_HOLDING, FitStatus, JobKind, OfferStatus, RegistrationStatus
from tracker.fit.common import get_participant, require_programme_staff
from tracker.fit.work_days import (
    DAY_LIMIT,
    DayCount,
    counted_days,
    day_count,
    participant_ids_with_days,
)
from tracker.fit.work_days import day_counts as fit_day_counts
from tracker.models import (
    Case,
    FitContact,
    FitJob,
    FitOffer,
    FitParticipant,
    FitRegistration,
    FitWorkDay,
    Newcomer,
)
from tracker.privacy import access_log

FIRST_YEAR = 2024  # the year choice goes back at least this far (the programme's reports do)
# Jobs while studying that the programme counts as working-student jobs (leadership's figure
# too): not mandatory internships, not assistant jobs at the university.
STUDENT_JOB_KINDS = (JobKind.working_student, JobKind.voluntary_internship, JobKind.other)


class DayCountView(BaseModel):
    participant_id: int
    year: int
    full: int
    half: int
    used: float
    limit: int
    remaining: float
    warning: bool
    over: bool


class ParticipantRow(BaseModel):
    id: int
    version: int
    reference: str
    given_name: str
    family_name: str
    enrolled_on: date
    channel: str
    study_programme: str
    semester: int
    status: str
    graduated_on: date | None
    left_on: date | None  # dropped out or withdrawn on
    job_employer: str | None
    job_started_on: date | None
    job_in_region: bool | None

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"

    @property
    def ended_on(self) -> date | None:
        """Graduated, dropped out or withdrawn on."""
        return self.graduated_on or self.left_on


class OfferRow(BaseModel):
    id: int
    version: int
    kind: str
    title: str
    starts_at: datetime
    ends_at: datetime
    place: str
    company: str | None
    capacity: int
    status: str
    places_taken: int  # registered, attended or no-show: the places handed out
    waitlisted: int
    attended: int


class RegistrationRow(BaseModel):
    id: int
    participant_id: int
    reference: str
    given_name: str
    family_name: str
    status: str
    registered_at: datetime
    placed_at: datetime | None

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"


class JobRow(BaseModel):
    id: int
    participant_id: int
    employer: str
    kind: str
    starts_on: date
    ends_on: date | None
    in_region: bool
    offer_id: int | None  # the placement offer it came from, if any
    full_days: int  # recorded in all years
    half_days: int


class ProgrammeCounts(BaseModel):
    """What the programme did in one calendar year (Bochum dates), exact counts.

    The definitions are those of leadership's :func:`tracker.reporting.fit.fit_programme`; the names
    of the fields it shares with it are its names."""

    year: int
    enrolled: int  # participants enrolled in the year
    offers_held: int  # held offers starting in the year
    attended: int  # attendances at them (a person at two offers counts twice)
    no_show: int
    company_contacts: int  # contacts recorded in the year
    working_student_jobs: int  # jobs of STUDENT_JOB_KINDS that began in the year
    graduated: int  # status graduated, graduated in the year
    dropped_out: int  # status dropped_out, left in the year
    job_entries: int  # participants who started a job (after studying) in the year


def _zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def _year_bounds(year: int) -> tuple[datetime, datetime]:
    """The calendar year in Bochum, as aware timestamps: an offer starting at 00:30 on
    1 January belongs to that year."""
    zone = _zone()
    return datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)


def _day_view(participant_id: int, count: DayCount) -> DayCountView:
    return DayCountView(
        participant_id=participant_id,
        year=count.year,
        full=count.full,
        half=count.half,
        used=count.used,
        limit=count.limit,
        remaining=count.remaining,
        warning=count.warning,
        over=count.over,
    )


# --- The programme ------------------------------------------------------------------------------


def programme_years(session: Session, *, actor: Actor) -> list[int]:
    """The years to choose from, the latest first: from the programme's first year with data
    (2024 at the latest) to this year, or a later one with offers already planned."""
    require_programme_staff(actor, "see the programme")
    first = session.scalar(
        select(func.min(FitParticipant.enrolled_on)).where(partner_sees_participant(actor))
    )
    first_offer, last_offer = session.execute(
        select(func.min(FitOffer.starts_at), func.max(FitOffer.starts_at))
    ).one()
    zone = _zone()
    years = {clocks.local_today(clocks.utcnow()).year, FIRST_YEAR}
    if first is not None:
        years.add(first.year)
    years.update(d.astimezone(zone).year for d in (first_offer, last_offer) if d is not None)
    return list(range(max(years), min(years) - 1, -1))


def programme_counts(session: Session, *, actor: Actor, year: int) -> ProgrammeCounts:
    """The programme's figures for ``year``, exact (for staff; leadership's are suppressed).

    A partner's figures count only the participants it may see: a student who stopped sharing
    with THGA leaves its totals too, or a total one higher than the list would give them away.
    """
    require_programme_staff(actor, "see the programme figures")
    seen = partner_sees_participant(actor)
    # People's rows (contacts, jobs, places) count through their participant.
    through = select(FitParticipant.id).where(seen)
    first, last = date(year, 1, 1), date(year, 12, 31)
    start, end = _year_bounds(year)
    held = and_(
        FitOffer.status == OfferStatus.held, FitOffer.starts_at >= start, FitOffer.starts_at < end
    )
    attendance = {
        str(status): int(n)
        for status, n in session.execute(
            select(FitRegistration.status, func.count())
            .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
            .where(
                held,
                FitRegistration.status.in_(
                    [RegistrationStatus.attended.value, RegistrationStatus.no_show.value]
                ),
                FitRegistration.participant_id.in_(through),
            )
            .group_by(FitRegistration.status)
        )
    }

    def count(model: Any, *conds: ColumnElement[bool]) -> int:
        return int(session.scalar(select(func.count()).select_from(model).where(*conds)) or 0)

    return ProgrammeCounts(
        year=year,
        enrolled=count(FitParticipant, seen, FitParticipant.enrolled_on.between(first, last)),
        offers_held=count(FitOffer, held),
        attended=attendance.get(RegistrationStatus.attended.value, 0),
        no_show=attendance.get(RegistrationStatus.no_show.value, 0),
        company_contacts=count(
            FitContact,
            FitContact.participant_id.in_(through),
            FitContact.contact_on.between(first, last),
        ),
        working_student_jobs=count(
            FitJob,
            FitJob.participant_id.in_(through),
            FitJob.starts_on.between(first, last),
            FitJob.kind.in_([k.value for k in STUDENT_JOB_KINDS]),
        ),
        graduated=count(
            FitParticipant,
            seen,
            FitParticipant.status == FitStatus.graduated,
            FitParticipant.graduated_on.between(first, last),
        ),
        dropped_out=count(
            FitParticipant,
            seen,
            FitParticipant.status == FitStatus.dropped_out,
            FitParticipant.left_on.between(first, last),
        ),
        job_entries=count(FitParticipant, seen, FitParticipant.job_started_on.between(first, last)),
    )


# --- Participants -------------------------------------------------------------------------------


def _participant_filters(
    actor: Actor,
    year: int | None,
    status: str | None,
    search: str | None,
    ids: Sequence[int] | None = None,
) -> list[ColumnElement[bool]]:
    """What a participant list and its count share: scope, enrolment year, status, search.
    A search word must be part of the case reference or of the name ("ewa now" finds Ewa
    Nowak); a partner's word with a digit matches references only (no birth dates)."""
    where: list[ColumnElement[bool]] = [partner_sees_participant(actor)]
    if year is not None:
        where += [
            FitParticipant.enrolled_on >= date(year, 1, 1),
            FitParticipant.enrolled_on <= date(year, 12, 31),
        ]
    if status is not None:
        where.append(FitParticipant.status == status)
    if ids is not None:
        where.append(FitParticipant.id.in_(list(ids)))
    for word in (search or "").casefold().split():
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        options = [Case.reference.ilike(pattern, escape="\\")]
        # The match key is "family|given|birth date", already case-folded.
        if actor.manages_cases or not any(c.isdigit() or c == "|" for c in word):
            options.append(Newcomer.match_key.like(pattern, escape="\\"))
        where.append(or_(*options))
    return where


def participants(
    session: Session,
    *,
    actor: Actor,
    year: int | None = None,
    status: str | None = None,
    order: Literal["enrolment", "name"] = "enrolment",
    search: str | None = None,
    ids: Sequence[int] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[ParticipantRow]:
    """The programme's participants: those enrolled in ``year`` (all if None), of one
    ``status``, matching ``search``, or with these ``ids`` if given; by enrolment or by name
    (family name, given name); ``limit`` rows from ``offset`` on (all if None)."""
    require_programme_staff(actor, "see the participants")
    stmt = (
        select(FitParticipant, Case.reference, Newcomer.given_name, Newcomer.family_name)
        .join(Case, FitParticipant.case_id == Case.id)
        .join(Newcomer, FitParticipant.newcomer_id == Newcomer.id)
        .where(*_participant_filters(actor, year, status, search, ids))
    )
    if order == "name":
        stmt = stmt.order_by(Newcomer.family_name, Newcomer.given_name, FitParticipant.id)
    else:
        stmt = stmt.order_by(FitParticipant.enrolled_on, FitParticipant.id)
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    rows = session.execute(stmt).all()
    access_log.note(session, actor, [p.case_id for p, *_ in rows], "fit")
    return [
        ParticipantRow(
            id=p.id,
            version=p.version,
            reference=reference,
            given_name=given,
            family_name=family,
            enrolled_on=p.enrolled_on,
            channel=str(p.channel),
            study_programme=p.study_programme,
            semester=p.semester,
            status=str(p.status),
            graduated_on=p.graduated_on,
            left_on=p.left_on,
            job_employer=p.job_employer,
            job_started_on=p.job_started_on,
            job_in_region=p.job_in_region,
        )
        for p, reference, given, family in rows
    ]


def count_participants(
    session: Session,
    *,
    actor: Actor,
    year: int | None = None,
    status: str | None = None,
    search: str | None = None,
) -> int:
    """How many participants ``participants`` lists with the same filters, in all."""
    require_programme_staff(actor, "see the participants")
    stmt = (
        select(func.count())
        .select_from(FitParticipant)
        .where(*_participant_filters(actor, year, status, search))
    )
    if search:  # the search looks at the reference and the name
        stmt = stmt.join(Case, FitParticipant.case_id == Case.id).join(
            Newcomer, FitParticipant.newcomer_id == Newcomer.id
        )
    return int(session.scalar(stmt) or 0)


def day_counts(
    session: Session, *, actor: Actor, year: int, participant_ids: Sequence[int] | None = None
) -> dict[int, DayCountView]:
    """Every participant's days worked in ``year`` that count against the limit, by id; only
    those of ``participant_ids`` if given (a page of the list)."""
    require_programme_staff(actor, "see working days")
    ids = None if participant_ids is None else list(participant_ids)
    counted = fit_day_counts(session, year=year, participant_ids=ids)
    none = DayCount(year=year, full=0, half=0)
    visible = select(FitParticipant.id).where(partner_sees_participant(actor))
    if ids is not None:
        visible = visible.where(FitParticipant.id.in_(ids))
    return {
        pid: _day_view(pid, counted.get(pid, none))
        for pid in session.scalars(visible.order_by(FitParticipant.id))
    }


def day_limit_warnings(session: Session, *, actor: Actor, year: int) -> dict[int, DayCountView]:
    """The participants whose days in ``year`` are near or over the limit (``DayCount.warning``)
    with their counts, by id. Counted in the database, so thousands of participants are not read
    to find a few; ids and counts only (``participants(ids=...)`` names them), so a screen may
    cache it like the programme's counts."""
    require_programme_staff(actor, "see working days")
    per_day = counted_days(year).subquery()
    full = func.sum(1 - per_day.c.half)
    half = func.sum(per_day.c.half)
    # In half days, to stay in whole numbers: used >= limit - margin.
    margin = get_settings().fit_day_warning_margin
    rows = session.execute(
        select(per_day.c.participant_id, full, half)
        .join(FitParticipant, per_day.c.participant_id == FitParticipant.id)
        .where(partner_sees_participant(actor))
        .group_by(per_day.c.participant_id)
        .having(2 * full + half >= 2 * (DAY_LIMIT - margin))
        .order_by(per_day.c.participant_id)
    ).all()
    return {
        pid: _day_view(pid, DayCount(year=year, full=int(f), half=int(h))) for pid, f, h in rows
    }


def jobs(session: Session, *, actor: Actor, participant_id: int) -> list[JobRow]:
    """A participant's jobs while studying, the latest first, with the days recorded for each
    (all years)."""
    require_programme_staff(actor, "see jobs")
    get_participant(session, participant_id, actor=actor)
    days: dict[int, tuple[int, int]] = {}
    for job_id, half, n in session.execute(
        select(FitWorkDay.job_id, FitWorkDay.half, func.count())
        .join(FitJob, FitWorkDay.job_id == FitJob.id)
        .where(FitJob.participant_id == participant_id)
        .group_by(FitWorkDay.job_id, FitWorkDay.half)
    ):
        full_days, half_days = days.get(job_id, (0, 0))
        days[job_id] = (full_days, half_days + n) if half else (full_days + n, half_days)
    return [
        JobRow(
            id=j.id,
            participant_id=j.participant_id,
            employer=j.employer,
            kind=str(j.kind),
            starts_on=j.starts_on,
            ends_on=j.ends_on,
            in_region=j.in_region,
            offer_id=j.offer_id,
            full_days=days.get(j.id, (0, 0))[0],
            half_days=days.get(j.id, (0, 0))[1],
        )
        for j in session.scalars(
            select(FitJob)
            .where(FitJob.participant_id == participant_id)
            .order_by(FitJob.starts_on.desc(), FitJob.id)
        )
    ]


def work_day_count(
    session: Session, *, actor: Actor, participant_id: int, year: int
) -> DayCountView:
    """Days worked in ``year`` that count against the limit (§16b(3) AufenthG)."""
    require_programme_staff(actor, "see working days")
    get_participant(session, participant_id, actor=actor)
    return _day_view(participant_id, day_count(session, participant_id=participant_id, year=year))


def participants_with_work_days(
    session: Session, *, actor: Actor, year: int, after_id: int = 0, limit: int = 500
) -> list[int]:
    """Ids of participants with working days recorded in ``year``, in id order from
    ``after_id`` on (one page for the daily re-check of the day limit)."""
    require_programme_staff(actor, "check working days")
    return participant_ids_with_days(
        session, actor=actor, year=year, after_id=after_id, limit=limit
    )


# --- Offers -------------------------------------------------------------------------------------


def offers(
    session: Session, *, actor: Actor, year: int | None = None, latest_first: bool = False
) -> list[OfferRow]:
    """The offers (starting in ``year`` in Bochum, all if None) with their places: taken,
    waiting, attended (counts, no names); by start, the latest first if asked."""
    require_programme_staff(actor, "see the offers")
    status = FitRegistration.status
    counts = (
        select(
            FitRegistration.offer_id.label("offer_id"),
            func.sum(case((status.in_([s.value for s in PLACE_HOLDING]), 1), else_=0)).label(
                "taken"
            ),
            func.sum(case((status == RegistrationStatus.waitlisted.value, 1), else_=0)).label(
                "waiting"
            ),
            func.sum(case((status == RegistrationStatus.attended.value, 1), else_=0)).label(
                "attended"
            ),
        )
        .group_by(FitRegistration.offer_id)
        .subquery()
    )
    stmt = (
        select(FitOffer, counts.c.taken, counts.c.waiting, counts.c.attended)
        .outerjoin(counts, counts.c.offer_id == FitOffer.id)
        .order_by(
            FitOffer.starts_at.desc() if latest_first else FitOffer.starts_at,
            FitOffer.id,
        )
    )
    if year is not None:
        start, end = _year_bounds(year)
        stmt = stmt.where(FitOffer.starts_at >= start, FitOffer.starts_at < end)
    return [
        OfferRow(
            id=o.id,
            version=o.version,
            kind=str(o.kind),
            title=o.title,
            starts_at=o.starts_at,
            ends_at=o.ends_at,
            place=o.place,
            company=o.company,
            capacity=o.capacity,
            status=str(o.status),
            places_taken=int(taken or 0),
            waitlisted=int(waiting or 0),
            attended=int(attended or 0),
        )
        for o, taken, waiting, attended in session.execute(stmt)
    ]


def registrations(session: Session, *, actor: Actor, offer_id: int) -> list[RegistrationRow]:
    """An offer's registrations in the order people registered (the waiting list's order),
    of the participants the actor may see."""
    require_programme_staff(actor, "see registrations")
    rows = session.execute(
        select(FitRegistration, Newcomer.given_name, Newcomer.family_name, Case.reference, Case.id)
        .join(FitParticipant, FitRegistration.participant_id == FitParticipant.id)
        .join(Newcomer, FitParticipant.newcomer_id == Newcomer.id)
        .join(Case, FitParticipant.case_id == Case.id)
        .where(FitRegistration.offer_id == offer_id, partner_sees_participant(actor))
        .order_by(FitRegistration.registered_at, FitRegistration.id)
    ).all()
    access_log.note(session, actor, [case_id for *_, case_id in rows], "fit")
    return [
        RegistrationRow(
            id=r.id,
            participant_id=r.participant_id,
            reference=reference,
            given_name=given,
            family_name=family,
            status=str(r.status),
            registered_at=r.registered_at,
            placed_at=r.placed_at,
        )
        for r, given, family, reference, _case_id in rows
    ]
