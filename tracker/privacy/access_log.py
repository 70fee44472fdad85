"""Who viewed which person: every person-level read notes the cases it showed, and the
transaction boundary (``tracker.db.Database``) writes the notes when the read ends.

A query function cannot write (screens read through sessions that are rolled back), and the
caller must not be trusted to remember; so the query notes the view on its session and the
one place every session passes through writes it. A view that raised before it returned
anything is not logged; a view whose log cannot be written fails instead of passing unlogged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tracker.access import Actor
from tracker.config import get_settings
from tracker.models import AccessLogEntry

# What the person was seen for; shown in the log and in the person's Art. 15 export.
PURPOSES = {
    "case": "the case page",
    "list": "a list of cases",
    "queue": "a partner's queue",
    "timeline": "the case history",
    "export": "an Art. 15 export",
    "fit": "the FIT@THGA programme lists",
}
_KEY = "tracker.access_log"
_CHUNK = 500


@dataclass(frozen=True)
class _View:
    actor: Actor
    case_ids: frozenset[int]
    purpose: str


def note(session: Session, actor: Actor, case_ids: Iterable[int], purpose: str) -> None:
    """Remember that ``actor`` was shown these cases' people; written when the session ends.

    Scheduled jobs (system actors) read to work, not to look at people: they are not logged.
    """
    if purpose not in PURPOSES:
        raise ValueError(f"unknown access purpose {purpose!r}")
    ids = frozenset(case_ids)
    if actor.is_system or not ids:
        return
    session.info.setdefault(_KEY, []).append(_View(actor, ids, purpose))


def take_pending(session: Session) -> list[_View]:
    return list(session.info.pop(_KEY, []))


def fresh_rows(
    session: Session, views: list[_View], *, now: datetime | None = None
) -> list[dict[str, object]]:
    """The log rows these views add: a view repeated inside the window is logged once.

    Only reads, so a screen's read session can check before anything takes a write lock."""
    from tracker.clocks import utcnow

    now = now or utcnow()
    since = now - timedelta(minutes=get_settings().access_log_window_minutes)
    merged: dict[tuple[Actor, str], set[int]] = {}
    for view in views:
        merged.setdefault((view.actor, view.purpose), set()).update(view.case_ids)
    rows: list[dict[str, object]] = []
    for (actor, purpose), ids in merged.items():
        ordered = sorted(ids)
        for start in range(0, len(ordered), _CHUNK):
            chunk = ordered[start : start + _CHUNK]
            seen = set(
                session.scalars(
                    select(AccessLogEntry.case_id).where(
                        AccessLogEntry.actor == actor.username,
                        AccessLogEntry.purpose == purpose,
                        AccessLogEntry.occurred_at >= since,
                        AccessLogEntry.case_id.in_(chunk),
                    )
                )
            )
            rows += [
                {
                    "occurred_at": now,
                    "actor": actor.username,
                    "actor_id": actor.user_id,
                    "organisation_id": actor.organisation_id,
                    "case_id": case_id,
                    "purpose": purpose,
                }
                for case_id in chunk
                if case_id not in seen
            ]
    return rows


def insert_rows(session: Session, rows: list[dict[str, object]]) -> int:
    if rows:
        session.execute(insert(AccessLogEntry), rows)
    return len(rows)


def write(session: Session, views: list[_View], *, now: datetime | None = None) -> int:
    """Append the views to the log (check and insert in one session); returns rows written."""
    return insert_rows(session, fresh_rows(session, views, now=now))
