"""Writing messages to the outbox inside the transaction of the change that causes them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from tracker.bulk import BulkWriter, among, chunks
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
) -> bool:
    """Queue a message once per idempotency key (``enqueue_many`` with one); a second call with
    the same key does nothing. Returns whether it was queued."""
    item = OutboxItem(
        key=key,
        kind=kind,
        case_id=case_id,
        recipient_org_id=recipient_org_id,
        recipient_user_id=recipient_user_id,
        recipient_newcomer_id=recipient_newcomer_id,
        language=language,
        context=context or {},
    )
    return enqueue_many(session, now=now, messages=[item]) == 1


@dataclass(frozen=True)
class OutboxItem:
    """One message for ``enqueue_many``: the arguments ``enqueue`` takes, as data."""

    key: str
    kind: str
    case_id: int | None = None
    recipient_org_id: int | None = None
    recipient_user_id: int | None = None
    recipient_newcomer_id: int | None = None
    language: str = "de"
    context: dict[str, Any] = field(default_factory=dict)


_QUEUED = select(OutboxMessage.idempotency_key).where(among(OutboxMessage.idempotency_key, "keys"))


def queued_keys(session: Session, keys: Sequence[str]) -> set[str]:
    """The idempotency keys among ``keys`` that the outbox holds already."""
    conn = session.connection()
    return {key for chunk in chunks(keys) for key in conn.scalars(_QUEUED, {"keys": chunk})}


def enqueue_many(session: Session, *, now: datetime, messages: Sequence[OutboxItem]) -> int:
    """Queue many messages, each once per idempotency key, as ``enqueue`` does one: the keys
    already queued are looked up in one query per 500 and the rest written in one statement
    (COPY on PostgreSQL). The session is flushed first (the rows a message points to are
    written before it). Returns how many were queued."""
    if not messages:
        return 0
    session.flush()
    seen = queued_keys(session, [m.key for m in messages])
    rows = []
    for m in messages:
        if m.key in seen:
            continue
        seen.add(m.key)
        rows.append(
            {
                "idempotency_key": m.key,
                "kind": m.kind,
                "case_id": m.case_id,
                "recipient_org_id": m.recipient_org_id,
                "recipient_user_id": m.recipient_user_id,
                "recipient_newcomer_id": m.recipient_newcomer_id,
                "language": m.language,
                "context": m.context,
                "created_at": now,
                "next_attempt_at": now,
            }
        )
    if rows:
        BulkWriter().insert(session.connection(), cast(Table, OutboxMessage.__table__), rows)
    return len(rows)
