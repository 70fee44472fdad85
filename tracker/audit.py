"""The one helper every change records itself through; the timeline users see is this table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tracker.access import Actor
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
        case_id=case_id,
        entity_type=entity_type,
        entity_id=entity_id,
        reason=reason,
        details=details or {},
    )
    session.add(event)
    return event
