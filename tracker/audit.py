"""The one helper every change records itself through; the timeline users see is this table."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

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
        **_who_what_when(actor, action, entity_type, now),
        entity_id=entity_id,
        case_id=case_id,
        reason=reason,
        details=details or {},
    )
    session.add(event)
    return event


def _who_what_when(actor: Actor, action: str, entity_type: str, now: datetime) -> dict[str, Any]:
    """The columns an event shares with every other event of its kind at that moment, as
    ``record`` and ``record_many`` write them."""
    return {
        "occurred_at": now,
        "actor_id": actor.user_id,
        "actor": actor.username,
        "action": action,
        "entity_type": entity_type,
    }


def record_many(
    session: Session,
    *,
    actor: Actor,
    action: str,
    entity_type: str,
    now: datetime,
    events: Iterable[tuple[int | None, int | None, dict[str, Any]]],
) -> int:
    """Append many events of one kind in one statement: (entity id, case id, details) each.

    The same rows ``record`` writes, for the sweep's thousands of reminders and escalations:
    one COPY (PostgreSQL) or executemany (SQLite) through ``tracker.bulk`` instead of a session
    object each, whose inserts SQLite runs one by one to hand each its id, and whose multi-row
    VALUES statements psycopg parses anew for every page. Returns the number of events written."""
    common = _who_what_when(actor, action, entity_type, now)
    rows = [
        {**common, "entity_id": entity_id, "case_id": case_id, "reason": None, "details": details}
        for entity_id, case_id, details in events
    ]
    if rows:
        BulkWriter().insert(session.connection(), cast(Table, AuditEvent.__table__), rows)
    return len(rows)


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
