"""What every FIT@THGA service shares: who runs the programme, whom its staff may see, lookups.

Programme staff are THGA's partner agents, helped by case managers and administrators. A THGA
agent sees and acts on a participant only while the student consents to sharing with THGA
(:func:`tracker.access.partner_sees_participant`); case managers and administrators see all.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, partner_sees_participant
from tracker.enums import Role
from tracker.errors import NotFoundError, PermissionDenied, ValidationFailed
from tracker.messages import outbox
from tracker.models import FitOffer, FitParticipant, Newcomer

PROGRAMME_ORG = "thga"
FIT_STEP = "fit_enrollment"


def require_programme_staff(actor: Actor, what: str) -> None:
    """THGA's own staff run the programme; case managers and admins may help."""
    if actor.manages_cases:
        return
    if actor.role == Role.partner_agent and actor.organisation_key == PROGRAMME_ORG:
        return
    raise PermissionDenied(
        "Only FIT@THGA programme staff may {what}.",
        what=what,
    )


def get_participant(session: Session, participant_id: int, *, actor: Actor) -> FitParticipant:
    """The participant, if the actor may see them; one the actor may not see is reported as
    missing, in the same words, so a partner learns nothing about it."""
    found = session.scalar(
        select(FitParticipant).where(
            FitParticipant.id == participant_id, partner_sees_participant(actor)
        )
    )
    if found is None:
        raise NotFoundError(
            "No FIT participant {participant}.",
            participant=participant_id,
        )
    return found


def get_offer(session: Session, offer_id: int, *, lock: bool = False) -> FitOffer:
    stmt = select(FitOffer).where(FitOffer.id == offer_id)
    if lock:
        # The offer row is the lock every registration for it takes: two people racing for the
        # last place are served one after the other (SQLite serialises all writers anyway).
        stmt = stmt.with_for_update()
    found = session.scalar(stmt)
    if found is None:
        raise NotFoundError(
            "No FIT offer {offer}.",
            offer=offer_id,
        )
    return found


def clean_text(value: str, field: str, *, limit: int = 200) -> str:
    """A typed text on one line, required and not too long."""
    text = " ".join((value or "").split())
    if not text:
        raise ValidationFailed(
            "{field} is required.",
            field=field,
        )
    if len(text) > limit:
        raise ValidationFailed(
            "{field} is longer than {limit} characters.",
            field=field,
            limit=limit,
        )
    return text


def record_event(
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
    """The audit event of a FIT change."""
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


def offer_context(offer: FitOffer) -> dict[str, object]:
    """What the student needs to come to an offer: no other participant, nobody's data."""
    return {
        "offer_title": offer.title,
        "offer_kind": str(offer.kind),
        "starts_at": offer.starts_at.isoformat(),
        "ends_at": offer.ends_at.isoformat(),
        "place": offer.place,
    }


def to_student(
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
    if language is None:
        language = (
            session.scalar(
                select(Newcomer.preferred_language).where(Newcomer.id == participant.newcomer_id)
            )
            or "de"
        )
    return outbox.enqueue(
        session,
        key=key,
        kind=kind,
        case_id=participant.case_id,
        recipient_newcomer_id=participant.newcomer_id,
        language=language,
        context=context,
        now=now,
    )
