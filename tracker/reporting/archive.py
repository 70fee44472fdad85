"""Keeping issued reports: the scheduled flow and the CLI store what they generated.

Rendering (seconds for a PDF) happens before and outside the transaction; storing is one short
transaction with its audit event. A report holds aggregates only, so storing it stores no
personal data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor
from tracker.clocks import utcnow
from tracker.enums import Role
from tracker.errors import PermissionDenied
from tracker.models import StoredReport
from tracker.reporting.reports import ReportFile


def _require_reports(actor: Actor, what: str) -> None:
    if actor.role not in (Role.leadership, Role.admin):
        raise PermissionDenied(
            "Only leadership and administrators may {what}.",
            what=what,
        )


def store_reports(
    session: Session,
    *,
    actor: Actor,
    files: Sequence[ReportFile],
    replace: bool = False,
    now: datetime | None = None,
) -> list[StoredReport]:
    """Keep the files; one already kept for the same report, period, language and format is
    left as issued unless ``replace`` (a re-run of the schedule changes nothing)."""
    _require_reports(actor, "store reports")
    now = now or utcnow()
    stored = []
    for file in files:
        existing = session.scalar(
            select(StoredReport).where(
                StoredReport.kind == file.kind,
                StoredReport.period == file.period,
                StoredReport.language == file.language,
                StoredReport.format == file.format,
            )
        )
        if existing is not None and not replace:
            continue
        digest = hashlib.sha256(file.content).hexdigest()
        if existing is None:
            row = StoredReport(
                kind=file.kind, period=file.period, language=file.language, format=file.format
            )
            session.add(row)
        else:
            row = existing
        row.generated_at = now
        row.generated_by = actor.username
        row.sha256 = digest
        row.size = len(file.content)
        row.content = file.content
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="report.replaced" if existing is not None else "report.stored",
            entity_type="report",
            entity_id=row.id,
            now=now,
            details={
                "kind": file.kind,
                "period": file.period,
                "language": file.language,
                "format": file.format,
                "sha256": digest,
            },
        )
        stored.append(row)
    return stored
