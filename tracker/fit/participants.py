"""FIT@THGA participants: enrolment (the case's FIT step), status and leaving, the job after."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor, partner_may_see_case
from tracker.clocks import utcnow
from tracker.enums import FitChannel, FitStatus, StepState
from tracker.errors import InvalidTransition, NotFoundError, PermissionDenied, ValidationFailed
from tracker.fit.common import (
    FIT_STEP,
    clean_text,
    get_participant,
    record_event,
    require_programme_staff,
)
from tracker.fit.offers import OPEN_REGISTRATION, drop_registration
from tracker.models import Case, FitOffer, FitParticipant, FitRegistration, Step
from tracker.records import check_version

# Statuses that end the programme for a student before (or instead of) graduating.
LEFT = (FitStatus.dropped_out, FitStatus.withdrawn)


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
    from tracker.journeys.steps import complete_step

    require_programme_staff(actor, "enrol students")
    now = now or utcnow()
    enrolled_on = enrolled_on or clocks.local_today(now)
    if not 1 <= semester <= 20:
        raise ValidationFailed("semester must be between 1 and 20.")
    case = session.scalar(select(Case).where(Case.reference == reference))
    if case is None or not (
        actor.manages_cases
        or partner_may_see_case(session, actor, case_id=case.id, newcomer_id=case.newcomer_id)
    ):
        # A case not handed to the partner (or no longer shared with it) sounds like none.
        raise NotFoundError(
            "No case {reference}.",
            reference=reference,
        )
    step = session.scalar(select(Step).where(Step.case_id == case.id, Step.key == FIT_STEP))
    if step is None:
        raise InvalidTransition(
            "Case {reference} has no FIT@THGA step (only students do).",
            reference=reference,
        )
    if session.scalar(
        select(FitParticipant.id).where(FitParticipant.newcomer_id == case.newcomer_id)
    ):
        raise InvalidTransition(
            "The student of {reference} is already in FIT@THGA.",
            reference=reference,
        )
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
        study_programme=clean_text(study_programme, "study programme"),
        semester=semester,
        status=FitStatus.enrolled,
        created_at=now,
    )
    session.add(participant)
    session.flush()
    record_event(
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
    participant = get_participant(session, participant_id, actor=actor)
    check_version(participant, expected_version, f"FIT participant {participant_id}")
    status = FitStatus(status)
    if status == participant.status:
        raise InvalidTransition(
            "The participant is already {status}.",
            status=status,
        )
    if on < participant.enrolled_on:
        raise ValidationFailed("The date lies before the enrolment in FIT.")
    participant.status = status
    participant.graduated_on = on if status == FitStatus.graduated else None
    participant.left_on = on if status in LEFT else None
    freed = 0
    if status in LEFT:
        upcoming = session.scalars(
            select(FitRegistration)
            .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
            .where(
                FitRegistration.participant_id == participant.id,
                FitRegistration.status.in_(OPEN_REGISTRATION),
                FitOffer.starts_at > now,
            )
        ).all()
        for registration in upcoming:
            drop_registration(
                session,
                actor=actor,
                registration=registration,
                reason="left the programme",
                now=now,
            )
            freed += 1
    record_event(
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
    participant = get_participant(session, participant_id, actor=actor)
    if started_on > clocks.local_today(now) + timedelta(days=366):
        raise ValidationFailed("The job start lies more than a year ahead.")
    participant.job_employer = clean_text(employer, "employer")
    participant.job_started_on = started_on
    participant.job_in_region = in_region
    record_event(
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
