"""Reads of the outbox for administrators: the messages that could not be delivered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.access import Actor, require_admin
from tracker.enums import OutboxStatus
from tracker.models import Case, Organisation, OutboxMessage, User


@dataclass(frozen=True)
class FailedMessage:
    """A parked message as the admin screen shows it: ids and states, no addresses."""

    id: int
    kind: str
    reference: str | None
    recipient: str  # e.g. "organisation:ihk-mr", "user:cm.mueller", "newcomer:42"
    attempts: int
    last_error: str | None
    created_at: datetime


def failed_messages(session: Session, *, actor: Actor, limit: int = 100) -> list[FailedMessage]:
    """The parked messages, newest first, for an administrator to look at and retry."""
    require_admin(actor, "see failed messages")
    rows = session.execute(
        select(OutboxMessage, Case.reference, Organisation.key, User.username)
        .outerjoin(Case, Case.id == OutboxMessage.case_id)
        .outerjoin(Organisation, Organisation.id == OutboxMessage.recipient_org_id)
        .outerjoin(User, User.id == OutboxMessage.recipient_user_id)
        .where(OutboxMessage.status == OutboxStatus.failed)
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .limit(limit)
    ).all()
    result = []
    for message, reference, org_key, username in rows:
        if org_key:
            recipient = f"organisation:{org_key}"
        elif username:
            recipient = f"user:{username}"
        elif message.recipient_newcomer_id:
            recipient = f"newcomer:{message.recipient_newcomer_id}"
        else:
            recipient = "nobody"
        result.append(
            FailedMessage(
                id=message.id,
                kind=message.kind,
                reference=reference,
                recipient=recipient,
                attempts=message.attempts,
                last_error=message.last_error,
                created_at=message.created_at,
            )
        )
    return result
