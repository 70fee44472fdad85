"""The one helper every change records itself through; the timeline users see is this table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from tracker.access import Actor
from tracker.bulk import BulkWriter
from tracker.models import AuditEvent


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: int | None,
    now: datetime,
    case_id: int | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. Details hold ids, keys and states only, never names."""
    event = AuditEvent(
        occurred_at=now,
        actor_id=actor.user_id,
        actor=actor.username,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        case_id=case_id,
        reason=reason,
        details=details or {},
    )
    session.add(event)
    return event


class Entry(NamedTuple):
    """One audit event as data, for ``record_entries``: what ``record`` takes, but the actor
    and the moment, which a batch shares."""

    action: str
    entity_type: str
    entity_id: int | None
    case_id: int | None = None
    details: dict[str, Any] | None = None
    reason: str | None = None


def record_entries(
    session: Session, *, actor: Actor, now: datetime, entries: Iterable[Entry]
) -> int:
    """Append many events in one statement, in the order given; returns how many.

    The same rows ``record`` writes, for batches (an import's thousands of registrations, an
    advance of many cases, the sweep's reminders): one COPY (PostgreSQL) or executemany
    (SQLite) through ``tracker.bulk`` instead of a session object each, whose inserts SQLite
    runs one by one to hand each its id. The session is flushed first, so that events it
    holds keep their place before these in the timeline."""
    rows = [
        {
            "occurred_at": now,
            "actor_id": actor.user_id,
            "actor": actor.username,
            "action": e.action,
            "entity_type": e.entity_type,
            "entity_id": e.entity_id,
            "case_id": e.case_id,
            "reason": e.reason,
            "details": e.details or {},
        }
        for e in entries
    ]
    if rows:
        session.flush()
        BulkWriter().insert(session.connection(), cast(Table, AuditEvent.__table__), rows)
    return len(rows)


def record_many(
    session: Session,
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    now: datetime,
    events: Iterable[tuple[int | None, int | None, dict[str, Any]]],
) -> int:
    """Append many events of one kind: (entity id, case id, details) each; see
    ``record_entries``. Returns the number of events written."""
    return record_entries(
        session,
        actor=actor,
        now=now,
        entries=(
            Entry(action, entity_type, entity_id, case_id, details)
            for entity_id, case_id, details in events
        ),
    )


def data_version(session: Session) -> str:
    """A mark that changes whenever the tracker's data changes: the latest audit event.

    Every change writes its audit event in its own transaction, so a cache of figures keyed by
    this mark (and a ttl) shows a change on the next read after it commits, from whichever
    process made it. The event's time is part of the mark: an erasure deletes the person's
    events, and SQLite may hand its own event an id that an earlier, deleted one had."""
    latest = session.execute(
        select(AuditEvent.id, AuditEvent.occurred_at).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    return "empty" if latest is None else f"{latest.id}@{latest.occurred_at.isoformat()}"
