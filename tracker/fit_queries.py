"""FIT@THGA reads for the CLI and the daily flow: programme staff only, returning plain data.

Changes go through :mod:`tracker.services.fit`; this module only reads. Every function checks
first that the actor may run the programme (THGA's agents, case managers, admins).
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from tracker.access import Actor
from tracker.config import get_settings
from tracker.enums import PLACE_HOLDING, RegistrationStatus
from tracker.errors import NotFoundError
from tracker.models import (
    Case,
    FitJob,
    FitOffer,
    FitParticipant,
    FitRegistration,
    FitWorkDay,
    Newcomer,
)
from tracker.services.fit import day_count, require_programme_staff


class ParticipantRow(BaseModel):
    id: int
    reference: str
    given_name: str
    family_name: str
    enrolled_on: date
    channel: str
    study_programme: str
    semester: int
    status: str
    graduated_on: date | None
    left_on: date | None
    job_started_on: date | None
    version: int


class OfferRow(BaseModel):
    id: int
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
    version: int


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


def participants(
    session: Session, *, actor: Actor, year: int | None = None, status: str | None = None
) -> list[ParticipantRow]:
    """The programme's participants, by enrolment (of one year if given)."""
    require_programme_staff(actor, "see the participants")
    stmt = (
        select(FitParticipant, Case.reference, Newcomer.given_name, Newcomer.family_name)
        .join(Case, FitParticipant.case_id == Case.id)
        .join(Newcomer, FitParticipant.newcomer_id == Newcomer.id)
        .order_by(FitParticipant.enrolled_on, FitParticipant.id)
    )
    if year is not None:
        stmt = stmt.where(
            FitParticipant.enrolled_on >= date(year, 1, 1),
            FitParticipant.enrolled_on <= date(year, 12, 31),
        )
    if status is not None:
        stmt = stmt.where(FitParticipant.status == status)
    return [
        ParticipantRow(
            id=p.id,
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
            job_started_on=p.job_started_on,
            version=p.version,
        )
        for p, reference, given, family in session.execute(stmt)
    ]


def offers(session: Session, *, actor: Actor, year: int | None = None) -> list[OfferRow]:
    """The offers with their places: taken, waiting, attended (counts, no names)."""
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
        .order_by(FitOffer.starts_at, FitOffer.id)
    )
    if year is not None:
        # The year in Bochum: an offer starting at 00:30 on 1 January belongs to that year.
        zone = ZoneInfo(get_settings().timezone)
        stmt = stmt.where(
            FitOffer.starts_at >= datetime(year, 1, 1, tzinfo=zone),
            FitOffer.starts_at < datetime(year + 1, 1, 1, tzinfo=zone),
        )
    return [
        OfferRow(
            id=o.id,
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
            version=o.version,
        )
        for o, taken, waiting, attended in session.execute(stmt)
    ]


def work_day_count(
    session: Session, *, actor: Actor, participant_id: int, year: int
) -> DayCountView:
    """Days worked in ``year`` that count against the limit (§16b(3) AufenthG)."""
    require_programme_staff(actor, "see working days")
    if session.get(FitParticipant, participant_id) is None:
        raise NotFoundError(f"No FIT participant {participant_id}.")
    count = day_count(session, participant_id=participant_id, year=year)
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


def participants_with_work_days(
    session: Session, *, actor: Actor, year: int, after_id: int = 0, limit: int = 500
) -> list[int]:
    """Ids of participants with working days recorded in ``year``, in id order from
    ``after_id`` on (one page for the daily re-check of the day limit)."""
    require_programme_staff(actor, "check working days")
    return list(
        session.scalars(
            select(FitJob.participant_id)
            .join(FitWorkDay, FitWorkDay.job_id == FitJob.id)
            .where(
                FitJob.participant_id > after_id,
                FitWorkDay.day >= date(year, 1, 1),
                FitWorkDay.day <= date(year, 12, 31),
            )
            .group_by(FitJob.participant_id)
            .order_by(FitJob.participant_id)
            .limit(limit)
        )
    )
