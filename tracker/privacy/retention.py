"""Retention: people whose cases all ended long enough ago are anonymised; the figures stay."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy import case as when
from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import Actor
from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.enums import CaseStatus
from tracker.errors import InvalidTransition
from tracker.models import (
    Case,
    FitJob,
    FitParticipant,
    FitPermit,
    Handoff,
    Newcomer,
    Step,
)
from tracker.privacy.erasure import (
    ANONYMISED,
    Removal,
    delete_rows,
    lock_cases,
    remove_traces,
    rowcount,
    write_tombstones,
)
from tracker.records import new_reference


def anonymise_person(
    session: Session,
    *,
    actor: Actor,
    newcomer_id: int,
    mail_dir: Path | None = None,
    now: datetime | None = None,
) -> Removal:
    """Remove what names or describes the person; keep what the figures count."""
    now = now or utcnow()
    newcomer = session.get(Newcomer, newcomer_id, with_for_update=True)
    if newcomer is None:
        raise InvalidTransition(
            "No newcomer {newcomer}.",
            newcomer=newcomer_id,
        )
    if newcomer.anonymised_at is not None:
        raise InvalidTransition("This person's data is already anonymised.")
    case_ids = lock_cases(session, newcomer_id)
    cases = list(session.scalars(select(Case).where(Case.id.in_(case_ids))))
    if any(c.status == CaseStatus.open for c in cases):
        raise InvalidTransition("A person with an open case cannot be anonymised.")
    references = {c.id: c.reference for c in cases}
    result = Removal(basis="retention", reference=cases[0].reference if cases else "")
    counts = result.removed
    for attribute in (
        "birth_date",
        "nationality",
        "email",
        "phone",
        "first_contact_date",
        "move_in_date",
        "permit_expiry",
    ):
        setattr(newcomer, attribute, None)
    newcomer.given_name = ANONYMISED
    newcomer.family_name = ANONYMISED
    newcomer.match_key = ""
    newcomer.anonymised_at = now
    counts["newcomers"] = 1
    for case in cases:
        case.reference = new_reference(session)
    counts["steps"] = rowcount(
        session.execute(
            update(Step)
            .where(
                Step.case_id.in_(case_ids),
                or_(Step.blocked_reason.is_not(None), Step.skip_reason.is_not(None)),
            )
            .values(blocked_reason=None, skip_reason=None)
            .execution_options(synchronize_session=False)
        )
    )
    counts["handoffs"] = rowcount(
        session.execute(
            update(Handoff)
            .where(
                Handoff.case_id.in_(case_ids),
                or_(Handoff.reason.is_not(None), Handoff.hold_reason.is_not(None)),
            )
            .values(reason=None, hold_reason=None)
            .execution_options(synchronize_session=False)
        )
    )
    participant_ids = list(
        session.scalars(select(FitParticipant.id).where(FitParticipant.newcomer_id == newcomer_id))
    )
    if participant_ids:
        session.execute(
            update(FitParticipant)
            .where(FitParticipant.id.in_(participant_ids))
            .values(job_employer=None)
            .execution_options(synchronize_session=False)
        )
        counts["fit_jobs"] = rowcount(
            session.execute(
                update(FitJob)
                .where(FitJob.participant_id.in_(participant_ids))
                .values(employer=ANONYMISED)
                .execution_options(synchronize_session=False)
            )
        )
        counts["fit_permits"] = delete_rows(
            session, FitPermit, FitPermit.participant_id.in_(participant_ids)
        )
    remove_traces(session, result, newcomer_id, references, mail_dir)
    write_tombstones(session, actor, result, newcomer_id, references, now)
    for case_id in case_ids:
        audit.record(
            session,
            actor=actor,
            action="case.anonymised",
            entity_type="case",
            entity_id=case_id,
            case_id=case_id,
            now=now,
            details={"basis": "retention", "removed": counts},
        )
    session.flush()
    return result


def _expired_before(now: datetime) -> Select[int]:
    """People whose cases all ended more than ``retention_months`` ago: one pass over the
    cases grouped by person (no query per person)."""
    day = clocks.add_months(clocks.local_today(now), -get_settings().retention_months)
    cutoff = datetime.combine(day, now.timetz())
    still_open = func.sum(when((Case.status == CaseStatus.open, 1), else_=0))
    return (
        select(Case.newcomer_id)
        .join(Newcomer, Case.newcomer_id == Newcomer.id)
        .where(Newcomer.anonymised_at.is_(None))
        .group_by(Case.newcomer_id)
        .having(still_open == 0, func.max(Case.closed_at) < cutoff)
    )


def expired_newcomers(session: Session, *, now: datetime, limit: int = 100) -> list[int]:
    """People whose cases all ended more than ``retention_months`` ago, oldest first."""
    stmt = _expired_before(now).order_by(func.max(Case.closed_at), Case.newcomer_id)
    return list(session.scalars(stmt.limit(limit)))


def count_expired(session: Session, *, now: datetime) -> int:
    """How many people the retention run would anonymise now (for screens and --dry-run)."""
    return session.scalar(select(func.count()).select_from(_expired_before(now).subquery())) or 0


def anonymise_expired(
    session: Session,
    *,
    actor: Actor,
    now: datetime | None = None,
    limit: int = 100,
    mail_dir: Path | None = None,
) -> list[Removal]:
    """One batch of the retention run: anonymise up to ``limit`` people who are due.

    Safe to run twice and from several workers: each person is locked and checked again, and
    an already anonymised person is not due any more."""
    now = now or utcnow()
    done = []
    for newcomer_id in expired_newcomers(session, now=now, limit=limit):
        try:
            with session.begin_nested():
                done.append(
                    anonymise_person(
                        session, actor=actor, newcomer_id=newcomer_id, mail_dir=mail_dir, now=now
                    )
                )
        except InvalidTransition:
            continue  # anonymised or reopened meanwhile by another worker
    return done
