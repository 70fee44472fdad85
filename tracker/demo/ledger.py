"""The demo's rows being written: ids taken in order, audit events and outbox messages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tracker.enums import OutboxStatus


@dataclass
class Ids:
    """Next free primary key per table, so related rows can be written in one batch."""

    next: dict[str, int] = field(default_factory=dict)

    def take(self, table: str) -> int:
        value = self.next[table]
        self.next[table] = value + 1
        return value


class Ledger:
    """Rows per table, with the audit events and messages the services would have written.

    Ids are taken from ``ids`` in the order rows are made, so that the same draws give the
    same ids whichever process draws them."""

    def __init__(
        self, ids: Ids, users: dict[str, int], tables: Iterable[str], *, end: datetime
    ) -> None:
        self.ids = ids
        self.users = users  # username -> user id, for an event's actor
        self.end = end  # the cut: nothing written happens at or after it
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}

    def event(
        self,
        when: datetime,
        actor: str,
        action: str,
        etype: str,
        eid: int | None,
        case_id: int | None,
        reason: str | None = None,
        **details: Any,
    ) -> None:
        self.rows["audit_events"].append(
            {
                "id": self.ids.take("audit_events"),
                "occurred_at": when,
                "actor_id": self.users.get(actor),
                "actor": actor,
                "action": action,
                "case_id": case_id,
                "entity_type": etype,
                "entity_id": eid,
                "reason": reason,
                "details": details,
            }
        )

    def message(
        self,
        key: str,
        kind: str,
        when: datetime,
        *,
        case_id: int,
        context: dict[str, Any],
        language: str = "de",
        org: int | None = None,
        user: int | None = None,
        newcomer: int | None = None,
    ) -> None:
        """A message as the outbox holds it: sent a minute after it was queued, or still
        waiting if that minute is not over by the cut."""
        sent_at = when + timedelta(minutes=1)
        sent = sent_at < self.end
        self.rows["outbox"].append(
            {
                "id": self.ids.take("outbox"),
                "idempotency_key": key,
                "kind": kind,
                "case_id": case_id,
                "recipient_org_id": org,
                "recipient_user_id": user,
                "recipient_newcomer_id": newcomer,
                "language": language,
                "context": context,
                "status": (OutboxStatus.sent if sent else OutboxStatus.pending).value,
                "attempts": 1 if sent else 0,
                "last_error": None,
                "created_at": when,
                "next_attempt_at": when,
                "sent_at": sent_at if sent else None,
            }
        )
