"""FIT@THGA: enrolment, offers with places and a waiting list, attendance, company contacts,
jobs and their day limit, permits, and what became of the participants.

Programme staff are THGA's partner agents (and case managers and admins). Every change is one
service call, one transaction, an audit event, and any messages in the outbox; the scheduled
``fit-daily`` flow only asks these functions what is due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.orm import Session

from tracker import audit, clocks, outbox
from tracker.access import Actor
from tracker.config import get_settings
from tracker.enums import (
    JOBS_NOT_COUNTED,
    PLACE_HOLDING,
    ContactKind,
    FitChannel,
    FitStatus,
    JobKind,
    OfferKind,
    OfferStatus,
    PermitKind,
    RegistrationStatus,
    Role,
    StepState,
)
from tracker.errors import InvalidTransition, NotFoundError, PermissionDenied, ValidationFailed
from tracker.models import (
    Case,
    FitContact,
    FitJob,
    FitOffer,
    FitParticipant,
    FitPermit,
    FitRegistration,
    FitWorkDay,
    Newcomer,
    Step,
)
from tracker.services._base import check_version, utcnow

PROGRAMME_ORG = "thga"
FIT_STEP = "fit_enrollment"
# §16b(3) AufenthG: 140 full or 280 half working days per calendar year.
DAY_LIMIT = 140
JOB_SEARCH_MONTHS = 18  # §20 AufenthG


def require_programme_staff(actor: Actor, what: str) -> None:
    """THGA's own staff run the programme; case managers and admins may help."""
    if actor.manages_cases:
        return
    if actor.role == Role.partner_agent and actor.organisation_key == PROGRAMME_ORG:
        return
    raise PermissionDenied(f"Only FIT@THGA programme staff may {what}.")


def _participant(session: Session, participant_id: int, *, lock: bool = False) -> FitParticipant:
    stmt = select(FitParticipant).where(FitParticipant.id == participant_id)
    if lock:
        stmt = stmt.with_for_update()
    found = session.scalar(stmt)
    if found is None:
        raise NotFoundError(f"No FIT participant {participant_id}.")
    return found


def _offer(session: Session, offer_id: int, *, lock: bool = False) -> FitOffer:
    stmt = select(FitOffer).where(FitOffer.id == offer_id)
    if lock:
        # The offer row is the lock every registration for it takes: two people racing for the
        # last place are served one after the other (SQLite serialises all writers anyway).
        stmt = stmt.with_for_update()
    found = session.scalar(stmt)
    if found is None:
        raise NotFoundError(f"No FIT offer {offer_id}.")
    return found


def _text(value: str, field: str, *, limit: int = 200) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise ValidationFailed(f"{field} is required.")
    if len(text) > limit:
        raise ValidationFailed(f"{field} is longer than {limit} characters.")
    return text


def _record(
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: int,
    now: datetime,
    *,
    case_id: int | None = None,
    reason: str | None = None,
    **details: object,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type=entity,
        entity_id=entity_id,
        case_id=case_id,
        now=now,
        reason=reason,
        details=dict(details),
    )


# --- Enrolment and outcomes -------------------------------------------------------------------


def enrol(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    channel: FitChannel,
    study_programme: str,
    semester: int,
    enrolled_on: date | None = None,
    now: datetime | None = None,
) -> FitParticipant:
    """Enrol the student of a case in FIT: the record, and the case's FIT step as done."""
    from tracker.services.steps import complete_step

    require_programme_staff(actor, "enrol students")
    now = now or utcnow()
    enrolled_on = enrolled_on or clocks.local_today(now)
    if not 1 <= semester <= 20:
        raise ValidationFailed("semester must be between 1 and 20.")
    case = session.scalar(select(Case).where(Case.reference == reference))
    if case is None:
        raise NotFoundError(f"No case {reference}.")
    step = session.scalar(select(Step).where(Step.case_id == case.id, Step.key == FIT_STEP))
    if step is None:
        raise InvalidTransition(f"Case {reference} has no FIT@THGA step (only students do).")
    if session.scalar(
        select(FitParticipant.id).where(FitParticipant.newcomer_id == case.newcomer_id)
    ):
        raise InvalidTransition(f"The student of {reference} is already in FIT@THGA.")
    if step.state != StepState.done:
        # The step service checks that a THGA agent holds the accepted handoff with consent.
        complete_step(
            session, actor=actor, reference=reference, step_key=FIT_STEP, on=enrolled_on, now=now
        )
    elif not actor.manages_cases:
        raise PermissionDenied("The FIT step of this case is already done; ask the case manager.")
    participant = FitParticipant(
        newcomer_id=case.newcomer_id,
        case_id=case.id,
        enrolled_on=enrolled_on,
        channel=FitChannel(channel),
        study_programme=_text(study_programme, "study programme"),
        semester=semester,
        status=FitStatus.enrolled,
        created_at=now,
    )
    session.add(participant)
    session.flush()
    _record(
        session,
        actor,
        "fit.enrolled",
        "fit_participant",
        participant.id,
        now,
        case_id=case.id,
        channel=str(channel),
        semester=semester,
    )
    return participant


def change_status(
    session: Session,
    *,
    actor: Actor,
    participant_id: int,
    status: FitStatus,
    on: date | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> FitParticipant:
    """Graduated, dropped out or withdrawn (or back to enrolled, to correct a mistake).

    Leaving the programme frees the places the student held on offers still to come."""
    require_programme_staff(actor, "record a student's status")
    now = now or utcnow()
    on = on or clocks.local_today(now)
    participant = _participant(session, participant_id)
    check_version(participant, expected_version, f"FIT participant {participant_id}")
    status = FitStatus(status)
    if status == participant.status:
        raise InvalidTransition(f"The participant is already {status}.")
    if on < participant.enrolled_on:
        raise ValidationFailed("The date lies before the enrolment in FIT.")
    participant.status = status
    participant.graduated_on = on if status == FitStatus.graduated else None
    participant.left_on = on if status in (FitStatus.dropped_out, FitStatus.withdrawn) else None
    freed = 0
    if status in (FitStatus.dropped_out, FitStatus.withdrawn):
        upcoming = session.scalars(
            select(FitRegistration)
            .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
            .where(
                FitRegistration.participant_id == participant.id,
                FitRegistration.status.in_(
                    [RegistrationStatus.registered, RegistrationStatus.waitlisted]
                ),
                FitOffer.starts_at > now,
            )
        ).all()
        for registration in upcoming:
            _cancel(session, actor, registration, now, reason="left the programme")
            freed += 1
    _record(
        session,
        actor,
        f"fit.{status}",
        "fit_participant",
        participant.id,
        now,
        case_id=participant.case_id,
        on=on.isoformat(),
        registrations_cancelled=freed,
    )
    return participant


def record_job_entry(
    session: Session,
    *,
    actor: Actor,
    participant_id: int,
    employer: str,
    started_on: date,
    in_region: bool,
    now: datetime | None = None,
) -> FitParticipant:
    """The job a participant started (after or instead of studying): employer and date."""
    require_programme_staff(actor, "record a job entry")
    now = now or utcnow()
    participant = _participant(session, participant_id)
    if started_on > clocks.local_today(now) + timedelta(days=366):
        raise ValidationFailed("The job start lies more than a year ahead.")
    participant.job_employer = _text(employer, "employer")
    participant.job_started_on = started_on
    participant.job_in_region = in_region
    _record(
        session,
        actor,
        "fit.job_entry",
        "fit_participant",
        participant.id,
        now,
        case_id=participant.case_id,
        started_on=started_on.isoformat(),
        in_region=in_region,
    )
    return participant


# --- Offers, places and the waiting list -------------------------------------------------------


def create_offer(
    session: Session,
    *,
    actor: Actor,
    kind: OfferKind,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    place: str,
    capacity: int,
    company: str | None = None,
    now: datetime | None = None,
) -> FitOffer:
    require_programme_staff(actor, "plan offers")
    now = now or utcnow()
    if ends_at <= starts_at:
        raise ValidationFailed("An offer must end after it starts.")
    if not 1 <= capacity <= 10_000:
        raise ValidationFailed("capacity must be between 1 and 10,000 places.")
    offer = FitOffer(
        kind=OfferKind(kind),
        title=_text(title, "title"),
        starts_at=starts_at,
        ends_at=ends_at,
        place=_text(place, "place"),
        company=_text(company, "company") if company and company.strip() else None,
        capacity=capacity,
        status=OfferStatus.planned,
        created_at=now,
    )
    session.add(offer)
    session.flush()
    _record(
        session,
        actor,
        "fit.offer_created",
        "fit_offer",
        offer.id,
        now,
        kind=str(kind),
        capacity=capacity,
    )
    return offer


def _taken(session: Session, offer_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(FitRegistration)
            .where(
                FitRegistration.offer_id == offer_id,
                FitRegistration.status.in_([s.value for s in PLACE_HOLDING]),
            )
        )
        or 0
    )


def _waiting(session: Session, offer_id: int) -> list[FitRegistration]:
    return list(
        session.scalars(
            select(FitRegistration)
            .where(
                FitRegistration.offer_id == offer_id,
                FitRegistration.status == RegistrationStatus.waitlisted,
            )
            .order_by(FitRegistration.registered_at, FitRegistration.id)
        )
    )


def _promote(session: Session, actor: Actor, offer: FitOffer, now: datetime) -> list[int]:
    """Give free places to the waiting list in the order people registered."""
    free = offer.capacity - _taken(session, offer.id)
    promoted: list[int] = []
    for registration in _waiting(session, offer.id):
        if len(promoted) >= free:
            break
        participant = session.get(FitParticipant, registration.participant_id)
        if participant is None or participant.status != FitStatus.enrolled:
            continue  # no longer studying: the next in line gets the place
        registration.status = RegistrationStatus.registered
        registration.placed_at = now
        registration.updated_at = now
        promoted.append(registration.id)
        _record(
            session,
            actor,
            "fit.moved_up",
            "fit_registration",
            registration.id,
            now,
            case_id=participant.case_id,
            offer_id=offer.id,
        )
        _to_student(
            session,
            participant,
            key=f"fit_place:{registration.id}:{now.date().isoformat()}",
            kind="fit_place_freed",
            context=_offer_context(offer),
            now=now,
        )
    return promoted


def _language(session: Session, participant: FitParticipant) -> str:
    return (
        session.scalar(
            select(Newcomer.preferred_language).where(Newcomer.id == participant.newcomer_id)
        )
        or "de"
    )


def _offer_context(offer: FitOffer) -> dict[str, object]:
    # What the student needs to come: no other participant, nobody's data.
    return {
        "offer_title": offer.title,
        "offer_kind": str(offer.kind),
        "starts_at": offer.starts_at.isoformat(),
        "ends_at": offer.ends_at.isoformat(),
        "place": offer.place,
    }


def change_capacity(
    session: Session,
    *,
    actor: Actor,
    offer_id: int,
    capacity: int,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> FitOffer:
    """More places move the waiting list up; fewer never take a place anyone already has."""
    require_programme_staff(actor, "change offers")
    now = now or utcnow()
    offer = _offer(session, offer_id, lock=True)
    check_version(offer, expected_version, f"Offer {offer_id}")
    taken = _taken(session, offer.id)
    if capacity < taken:
        raise ValidationFailed(
            f"{taken} people already have a place; the capacity cannot go below that."
        )
    before = offer.capacity
    offer.capacity = capacity
    promoted = _promote(session, actor, offer, now)
    _record(
        session,
        actor,
        "fit.capacity_changed",
        "fit_offer",
        offer.id,
        now,
        before=before,
        after=capacity,
        moved_up=len(promoted),
    )
    return offer


def cancel_offer(
    session: Session, *, actor: Actor, offer_id: int, reason: str, now: datetime | None = None
) -> FitOffer:
    require_programme_staff(actor, "cancel offers")
    now = now or utcnow()
    offer = _offer(session, offer_id, lock=True)
    if offer.status != OfferStatus.planned:
        raise InvalidTransition(
            f"The offer is {offer.status}; only a planned one can be cancelled."
        )
    offer.status = OfferStatus.cancelled
    for registration in session.scalars(
        select(FitRegistration).where(
            FitRegistration.offer_id == offer.id,
            FitRegistration.status.in_(
                [RegistrationStatus.registered, RegistrationStatus.waitlisted]
            ),
        )
    ):
        registration.status = RegistrationStatus.cancelled
        registration.updated_at = now
    _record(
        session,
        actor,
        "fit.offer_cancelled",
        "fit_offer",
        offer.id,
        now,
        reason=_text(reason, "reason", limit=500),
    )
    return offer


def register(
    session: Session,
    *,
    actor: Actor,
    offer_id: int,
    participant_id: int,
    now: datetime | None = None,
) -> FitRegistration:
    """A place if one is free, otherwise the end of the waiting list. Never oversold."""
    require_programme_staff(actor, "register students")
    now = now or utcnow()
    offer = _offer(session, offer_id, lock=True)
    participant = _participant(session, participant_id)
    if participant.status != FitStatus.enrolled:
        raise InvalidTransition(
            f"The participant is {participant.status}, no longer enrolled: "
            "only enrolled students can register."
        )
    if offer.status != OfferStatus.planned:
        raise InvalidTransition(f"The offer is {offer.status}; registration is closed.")
    if offer.starts_at <= now:
        raise InvalidTransition("The offer has already started; registration is closed.")
    existing = session.scalar(
        select(FitRegistration).where(
            FitRegistration.offer_id == offer.id, FitRegistration.participant_id == participant.id
        )
    )
    if existing is not None and existing.status != RegistrationStatus.cancelled:
        raise InvalidTransition(f"The participant is already {existing.status} for this offer.")
    has_place = _taken(session, offer.id) < offer.capacity
    status = RegistrationStatus.registered if has_place else RegistrationStatus.waitlisted
    if existing is None:
        registration = FitRegistration(offer_id=offer.id, participant_id=participant.id)
        session.add(registration)
    else:
        registration = existing  # registering again after cancelling: to the back of the line
    registration.status = status
    registration.registered_at = now
    registration.placed_at = now if has_place else None
    registration.updated_at = now
    session.flush()
    _record(
        session,
        actor,
        f"fit.{status}",
        "fit_registration",
        registration.id,
        now,
        case_id=participant.case_id,
        offer_id=offer.id,
    )
    return registration


def _cancel(
    session: Session, actor: Actor, registration: FitRegistration, now: datetime, *, reason: str
) -> None:
    had_place = registration.status == RegistrationStatus.registered
    registration.status = RegistrationStatus.cancelled
    registration.updated_at = now
    participant = session.get(FitParticipant, registration.participant_id)
    _record(
        session,
        actor,
        "fit.registration_cancelled",
        "fit_registration",
        registration.id,
        now,
        case_id=participant.case_id if participant else None,
        reason=reason,
        offer_id=registration.offer_id,
    )
    if had_place:
        session.flush()
        _promote(session, actor, _offer(session, registration.offer_id), now)


def cancel_registration(
    session: Session,
    *,
    actor: Actor,
    registration_id: int,
    reason: str = "cancelled by the student",
    now: datetime | None = None,
) -> FitRegistration:
    """Give a place (or a waiting-list turn) back; the next on the waiting list moves up."""
    require_programme_staff(actor, "cancel registrations")
    now = now or utcnow()
    registration = session.get(FitRegistration, registration_id)
    if registration is None:
        raise NotFoundError(f"No registration {registration_id}.")
    _offer(session, registration.offer_id, lock=True)
    session.refresh(registration)
    if registration.status not in (RegistrationStatus.registered, RegistrationStatus.waitlisted):
        raise InvalidTransition(f"The registration is {registration.status}; nothing to cancel.")
    _cancel(session, actor, registration, now, reason=_text(reason, "reason", limit=500))
    return registration


def record_attendance(
    session: Session,
    *,
    actor: Actor,
    offer_id: int,
    attended: Iterable[int],
    walk_ins: Iterable[int] = (),
    now: datetime | None = None,
) -> FitOffer:
    """After the offer: who came (participant ids); the others with a place did not show.

    ``walk_ins`` are participants who came without a place (a job fair is open to all): they
    are recorded as attended. Marks the offer as held. Can be corrected by calling it again."""
    require_programme_staff(actor, "record attendance")
    now = now or utcnow()
    offer = _offer(session, offer_id, lock=True)
    if offer.status == OfferStatus.cancelled:
        raise InvalidTransition("The offer was cancelled; nobody attended it.")
    if offer.starts_at > now:
        raise InvalidTransition("Attendance can be recorded once the offer has started.")
    came = set(attended)
    holders = {
        r.participant_id: r
        for r in session.scalars(
            select(FitRegistration).where(
                FitRegistration.offer_id == offer.id,
                FitRegistration.status.in_([s.value for s in PLACE_HOLDING]),
            )
        )
    }
    unknown = came - set(holders)
    if unknown:
        raise ValidationFailed(
            f"Participants {sorted(unknown)} had no place on this offer; "
            "record them as walk-ins or register them first."
        )
    for participant_id in set(walk_ins) - set(holders):
        participant = _participant(session, participant_id)
        existing = session.scalar(
            select(FitRegistration).where(
                FitRegistration.offer_id == offer.id,
                FitRegistration.participant_id == participant.id,
            )
        )
        registration = existing or FitRegistration(
            offer_id=offer.id, participant_id=participant.id, registered_at=now
        )
        registration.status = RegistrationStatus.attended
        registration.placed_at = registration.placed_at or now
        registration.updated_at = now
        session.add(registration)
        _record(
            session,
            actor,
            "fit.walk_in",
            "fit_participant",
            participant.id,
            now,
            case_id=participant.case_id,
            offer_id=offer.id,
        )
    for participant_id, registration in holders.items():
        status = (
            RegistrationStatus.attended if participant_id in came else RegistrationStatus.no_show
        )
        if registration.status != status:
            registration.status = status
            registration.updated_at = now
    offer.status = OfferStatus.held
    _record(
        session,
        actor,
        "fit.attendance",
        "fit_offer",
        offer.id,
        now,
        attended=len(came),
        no_show=len(holders) - len(came),
    )
    return offer


# --- Company contacts, jobs and the day limit ---------------------------------------------------


def add_contact(
    session: Session,
    *,
    actor: Actor,
    participant_id: int,
    company: str,
    kind: ContactKind,
    contact_on: date,
    offer_id: int | None = None,
    now: datetime | None = None,
) -> FitContact:
    require_programme_staff(actor, "record company contacts")
    now = now or utcnow()
    participant = _participant(session, participant_id)
    if contact_on > clocks.local_today(now):
        raise ValidationFailed("A contact cannot lie in the future.")
    if offer_id is not None:
        _offer(session, offer_id)
    contact = FitContact(
        participant_id=participant.id,
        company=_text(company, "company"),
        kind=ContactKind(kind),
        contact_on=contact_on,
        offer_id=offer_id,
        created_at=now,
    )
    session.add(contact)
    session.flush()
    _record(
        session,
        actor,
        "fit.contact",
        "fit_contact",
        contact.id,
        now,
        case_id=participant.case_id,
        kind=str(kind),
    )
    return contact


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
    participant = _participant(session, participant_id)
    if ends_on is not None and ends_on < starts_on:
        raise ValidationFailed("A job cannot end before it starts.")
    if offer_id is not None:
        _offer(session, offer_id)  # a placement names an offer that exists
    job = FitJob(
        participant_id=participant.id,
        employer=_text(employer, "employer"),
        kind=JobKind(kind),
        starts_on=starts_on,
        ends_on=ends_on,
        in_region=in_region,
        offer_id=offer_id,
        created_at=now,
    )
    session.add(job)
    session.flush()
    _record(
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


def day_counts(
    session: Session, *, year: int, participant_ids: Sequence[int] | None = None
) -> dict[int, DayCount]:
    """The same count for many participants in one query (those with days in ``year``)."""
    stmt = (
        # 1 for a half day, 0 for a full one: the minimum is 0 if any job that day was full.
        select(FitJob.participant_id, FitWorkDay.day, func.min(cast(FitWorkDay.half, Integer)))
        .join(FitJob, FitWorkDay.job_id == FitJob.id)
        .where(
            FitJob.kind.not_in([k.value for k in JOBS_NOT_COUNTED]),
            FitWorkDay.day >= date(year, 1, 1),
            FitWorkDay.day <= date(year, 12, 31),
        )
        .group_by(FitJob.participant_id, FitWorkDay.day)
    )
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
    job = session.get(FitJob, job_id)
    if job is None:
        raise NotFoundError(f"No job {job_id}.")
    if not days:
        raise ValidationFailed("Name at least one day.")
    for day in days:
        if day < job.starts_on or (job.ends_on is not None and day > job.ends_on):
            raise ValidationFailed(f"{day.isoformat()} lies outside the job's dates.")
        if day > clocks.local_today(now):
            raise ValidationFailed(f"{day.isoformat()} lies in the future.")
    known = set(
        session.scalars(
            select(FitWorkDay.day).where(FitWorkDay.job_id == job.id, FitWorkDay.day.in_(days))
        )
    )
    if known:
        listed = ", ".join(sorted(d.isoformat() for d in known))
        raise ValidationFailed(f"Already recorded for this job: {listed}.")
    for day in sorted(set(days)):
        session.add(FitWorkDay(job_id=job.id, day=day, half=half))
    session.flush()
    participant = _participant(session, job.participant_id)
    _record(
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
    job = session.get(FitJob, job_id)
    if job is None:
        raise NotFoundError(f"No job {job_id}.")
    rows = list(
        session.scalars(
            select(FitWorkDay).where(FitWorkDay.job_id == job.id, FitWorkDay.day.in_(days))
        )
    )
    missing = set(days) - {r.day for r in rows}
    if missing:
        listed = ", ".join(sorted(d.isoformat() for d in missing))
        raise ValidationFailed(f"Not recorded for this job: {listed}.")
    for row in rows:
        session.delete(row)
    participant = _participant(session, job.participant_id)
    _record(
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
    queued = _to_student(
        session,
        participant,
        key=f"fit_days:{participant.id}:{count.year}:{level}",
        kind="fit_day_limit",
        context=context,
        now=now,
    )
    manager_id = session.scalar(select(Case.case_manager_id).where(Case.id == participant.case_id))
    if manager_id is not None:
        outbox.enqueue(
            session,
            key=f"fit_days_cm:{participant.id}:{count.year}:{level}",
            kind="fit_day_limit_manager",
            case_id=participant.case_id,
            recipient_user_id=manager_id,
            context={**context, "reference": _reference(session, participant)},
            now=now,
        )
    return queued


def _reference(session: Session, participant: FitParticipant) -> str:
    return str(session.scalar(select(Case.reference).where(Case.id == participant.case_id)))


# --- Permits -------------------------------------------------------------------------------------


def add_permit(
    session: Session,
    *,
    actor: Actor,
    participant_id: int,
    kind: PermitKind,
    valid_from: date,
    valid_until: date | None,
    now: datetime | None = None,
) -> FitPermit:
    """Record a permit; a job-search permit (§20) runs at most 18 months."""
    require_programme_staff(actor, "record permits")
    now = now or utcnow()
    participant = _participant(session, participant_id)
    kind = PermitKind(kind)
    if valid_until is not None and valid_until < valid_from:
        raise ValidationFailed("A permit cannot end before it starts.")
    if kind == PermitKind.job_search:
        if valid_until is None:
            raise ValidationFailed("A job-search permit (§20) has an end date.")
        latest = clocks.add_months(valid_from, JOB_SEARCH_MONTHS)
        if valid_until > latest:
            raise ValidationFailed(
                f"A job-search permit (§20) runs at most {JOB_SEARCH_MONTHS} months: "
                f"until {latest.isoformat()} at the latest."
            )
    permit = FitPermit(
        participant_id=participant.id,
        kind=kind,
        valid_from=valid_from,
        valid_until=valid_until,
        created_at=now,
    )
    session.add(permit)
    session.flush()
    _record(
        session,
        actor,
        "fit.permit",
        "fit_permit",
        permit.id,
        now,
        case_id=participant.case_id,
        kind=str(kind),
        valid_until=valid_until.isoformat() if valid_until else None,
    )
    return permit


# --- What the daily flow sends ------------------------------------------------------------------


@dataclass(frozen=True)
class DailyResult:
    reminders: int
    feedback_requests: int
    permit_warnings: int


def _to_student(
    session: Session,
    participant: FitParticipant,
    *,
    key: str,
    kind: str,
    context: dict[str, object],
    now: datetime,
    language: str | None = None,
) -> bool:
    """Queue one message to the student (once per key); True if it was queued now."""
    queued = outbox.enqueue(
        session,
        key=key,
        kind=kind,
        case_id=participant.case_id,
        recipient_newcomer_id=participant.newcomer_id,
        language=language or _language(session, participant),
        context=context,
        now=now,
    )
    return queued is not None


def send_daily(session: Session, *, today: date, now: datetime | None = None) -> DailyResult:
    """Reminders for tomorrow's offers, feedback requests for yesterday's, permit warnings.

    Each message has a key of its own (registration, or permit and end date), so running the
    day twice sends nothing twice."""
    now = now or utcnow()
    zone = ZoneInfo(get_settings().timezone)
    day_start = datetime.combine(today, datetime.min.time(), tzinfo=zone)

    def registrations(*conds: Any) -> Any:
        # The student's language comes along, rather than one query per message.
        return session.execute(
            select(FitRegistration, FitOffer, FitParticipant, Newcomer.preferred_language)
            .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
            .join(FitParticipant, FitRegistration.participant_id == FitParticipant.id)
            .join(Newcomer, FitParticipant.newcomer_id == Newcomer.id)
            .where(*conds)
        )

    reminders = feedback = permits = 0
    for registration, offer, participant, language in registrations(
        FitOffer.starts_at >= day_start + timedelta(days=1),
        FitOffer.starts_at < day_start + timedelta(days=2),
        FitOffer.status == OfferStatus.planned,
        FitRegistration.status == RegistrationStatus.registered,
    ):
        reminders += _to_student(
            session,
            participant,
            key=f"fit_reminder:{registration.id}:{offer.starts_at.date().isoformat()}",
            kind="fit_offer_reminder",
            context=_offer_context(offer),
            language=language,
            now=now,
        )
    for registration, offer, participant, language in registrations(
        FitOffer.ends_at >= day_start - timedelta(days=1),
        FitOffer.ends_at < day_start,
        FitOffer.status != OfferStatus.cancelled,
        FitRegistration.status.in_([RegistrationStatus.registered, RegistrationStatus.attended]),
    ):
        feedback += _to_student(
            session,
            participant,
            key=f"fit_feedback:{registration.id}",
            kind="fit_feedback",
            context=_offer_context(offer),
            language=language,
            now=now,
        )
    horizon = today + timedelta(days=get_settings().fit_permit_warning_days)
    later = FitPermit.__table__.alias("later")
    # A newer permit of a later kind (or the same kind, extended) makes the warning moot.
    followed = (
        select(later.c.id)
        .where(
            later.c.participant_id == FitPermit.participant_id,
            later.c.id != FitPermit.id,
            later.c.valid_from > FitPermit.valid_from,
        )
        .exists()
    )
    for permit, participant, language in session.execute(
        select(FitPermit, FitParticipant, Newcomer.preferred_language)
        .join(FitParticipant, FitPermit.participant_id == FitParticipant.id)
        .join(Newcomer, FitParticipant.newcomer_id == Newcomer.id)
        .where(
            # A student who left the programme is no longer the programme's to remind.
            FitParticipant.status.in_([FitStatus.enrolled, FitStatus.graduated]),
            FitPermit.valid_until.is_not(None),
            FitPermit.valid_until >= today,
            FitPermit.valid_until <= horizon,
            ~followed,
        )
    ):
        assert permit.valid_until is not None
        permits += _to_student(
            session,
            participant,
            key=f"fit_permit:{permit.id}:{permit.valid_until.isoformat()}",
            kind="fit_permit_ending",
            context={
                "permit": str(permit.kind),
                "valid_until": permit.valid_until.isoformat(),
                "days_left": (permit.valid_until - today).days,
            },
            language=language,
            now=now,
        )
    return DailyResult(reminders=reminders, feedback_requests=feedback, permit_warnings=permits)
