"""FIT@THGA company contacts: visits, job-fair talks, applications, interviews, mentoring."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.clocks import utcnow
from tracker.enums import ContactKind
from tracker.errors import ValidationFailed
from tracker.fit.common import (
    clean_text,
    get_offer,
    get_participant,
    record_event,
    require_programme_staff,
)
from tracker.models import FitContact


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
    """A contact with a company, on a day up to today (at an offer, if it came from one)."""
    require_programme_staff(actor, "record company contacts")
    now = now or utcnow()
    participant = get_participant(session, participant_id, actor=actor)
    if contact_on > clocks.local_today(now):
        raise ValidationFailed("A contact cannot lie in the future.")
    if offer_id is not None:
        get_offer(session, offer_id)
    contact = FitContact(
        participant_id=participant.id,
        company=clean_text(company, "company"),
        kind=ContactKind(kind),
        contact_on=contact_on,
        offer_id=offer_id,
        created_at=now,
    )
    session.add(contact)
    session.flush()
    record_event(
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
