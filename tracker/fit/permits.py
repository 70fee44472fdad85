"""FIT@THGA permits: student, then job-search (§20, at most 18 months), then work permits."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.clocks import utcnow
from tracker.enums import PermitKind
from tracker.errors import ValidationFailed
from tracker.fit.common import get_participant, record_event, require_programme_staff
from tracker.models import FitPermit

JOB_SEARCH_MONTHS = 18  # §20 AufenthG


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
    participant = get_participant(session, participant_id, actor=actor)
    kind = PermitKind(kind)
    if valid_until is not None and valid_until < valid_from:
        raise ValidationFailed("A permit cannot end before it starts.")
    if kind == PermitKind.job_search:
        if valid_until is None:
            raise ValidationFailed("A job-search permit (§20) has an end date.")
        latest = clocks.add_months(valid_from, JOB_SEARCH_MONTHS)
        if valid_until > latest:
            raise ValidationFailed(
                "A job-search permit (§20) runs at most {months} months: until {latest} at "
                "the latest.",
                months=JOB_SEARCH_MONTHS,
                latest=latest,
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
    record_event(
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
