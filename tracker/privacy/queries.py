"""Reads about a person's data: who looked at it (the access log) and whether it was erased."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.access import Actor, require_admin, require_case_manager
from tracker.models import (
    AccessLogEntry,
    Case,
    Erasure,
    Organisation,
)
from tracker.privacy.erasure import reference_hash
from tracker.privacy.export import newcomer_id_for


class AccessRow(BaseModel):
    occurred_at: datetime
    actor: str
    organisation: str | None
    purpose: str


def access_history(
    session: Session, *, actor: Actor, reference: str, limit: int = 500
) -> list[AccessRow]:
    """Who viewed the person behind ``reference``, newest first (case managers and admins)."""
    require_case_manager(actor, "see who viewed a person")
    newcomer_id = newcomer_id_for(session, reference)
    case_ids = select(Case.id).where(Case.newcomer_id == newcomer_id)
    return [
        AccessRow(occurred_at=e.occurred_at, actor=e.actor, organisation=org, purpose=e.purpose)
        for e, org in session.execute(
            select(AccessLogEntry, Organisation.name)
            .outerjoin(Organisation, AccessLogEntry.organisation_id == Organisation.id)
            .where(AccessLogEntry.case_id.in_(case_ids))
            .order_by(AccessLogEntry.occurred_at.desc(), AccessLogEntry.id.desc())
            .limit(limit)
        )
    ]


class ErasureRow(BaseModel):
    """A tombstone as the screens and the CLI show it."""

    id: int
    erased_at: datetime
    erased_by: str
    basis: str
    removed: dict[str, int]

    @classmethod
    def of(cls, tombstone: Erasure) -> ErasureRow:
        return cls(
            id=tombstone.id,
            erased_at=tombstone.erased_at,
            erased_by=tombstone.erased_by,
            basis=tombstone.basis,
            removed={k: int(v) for k, v in (tombstone.removed or {}).items()},
        )


def erasures_for(session: Session, *, actor: Actor, reference: str) -> list[ErasureRow]:
    """The tombstones written for a case reference (to answer 'was my data erased?')."""
    require_admin(actor, "look up erasures")
    return [
        ErasureRow.of(t)
        for t in session.scalars(
            select(Erasure)
            .where(Erasure.reference_hash == reference_hash(reference))
            .order_by(Erasure.id)
        )
    ]


def recent_erasures(session: Session, *, actor: Actor, limit: int = 50) -> list[ErasureRow]:
    """The latest tombstones, newest first (admins)."""
    require_admin(actor, "see erasures")
    return [
        ErasureRow.of(t)
        for t in session.scalars(select(Erasure).order_by(Erasure.id.desc()).limit(limit))
    ]
