"""Writing messages to the outbox inside the transaction of the change that causes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.models import OutboxMessage


def enqueue(
    session: Session,
    *,
    key: str,
    kind: str,
    now: datetime,
    case_id: int | None = None,
    recipient_org_id: int | None = None,
    recipient_user_id: int | None = None,
    recipient_newcomer_id: int | None = None,
    language: str = "de",
    context: dict[str, Any] | None = None,
) -> OutboxMessage | None:
    """Queue a message once per idempotency key; a second call with the same key does nothing."""
    pending = [o for o in session.new if isinstance(o, OutboxMessage) and o.idempotency_key == key]
    if pending:
        return None
    # Unflushed messages were checked above; flushing the rest of the change here would
    # write it row by row instead of in one batch.
    with session.no_autoflush:
        if session.scalar(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)):
            return None
    message = OutboxMessage(
        idempotency_key=key,
        kind=kind,
        case_id=case_id,
        recipient_org_id=recipient_org_id,
        recipient_user_id=recipient_user_id,
        recipient_newcomer_id=recipient_newcomer_id,
        language=language,
        context=context or {},
        created_at=now,
        next_attempt_at=now,
    )
    session.add(message)
    return message
