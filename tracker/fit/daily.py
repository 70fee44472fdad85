"""What FIT@THGA sends each morning: offer reminders, feedback requests, permit warnings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.enums import FitStatus, OfferStatus, RegistrationStatus
from tracker.fit.common import offer_context, to_student
from tracker.models import FitOffer, FitParticipant, FitPermit, FitRegistration, Newcomer


@dataclass(frozen=True)
class DailyResult:
    reminders: int
    feedback_requests: int
    permit_warnings: int


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
        reminders += to_student(
            session,
            participant,
            # The offer's start date in UTC names the reminder: keys already sent stay valid.
            key=f"fit_reminder:{registration.id}:{offer.starts_at.date().isoformat()}",
            kind="fit_offer_reminder",
            context=offer_context(offer),
            language=language,
            now=now,
        )
    for registration, offer, participant, language in registrations(
        FitOffer.ends_at >= day_start - timedelta(days=1),
        FitOffer.ends_at < day_start,
        FitOffer.status != OfferStatus.cancelled,
        FitRegistration.status.in_([RegistrationStatus.registered, RegistrationStatus.attended]),
    ):
        feedback += to_student(
            session,
            participant,
            key=f"fit_feedback:{registration.id}",
            kind="fit_feedback",
            context=offer_context(offer),
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
        permits += to_student(
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
