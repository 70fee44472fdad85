"""Erasure (Art. 17 GDPR) and the retention run: removing people, keeping anonymous figures.

Two ways a person leaves the tracker:

- ``erase_person``: on the person's request. Every row about them is deleted – their cases,
  steps, handoffs, consents, messages (and the mail drop's copies), FIT@THGA records, the
  access log and the audit trail of their cases. What stays is a tombstone without personal
  data (``erasures`` plus one ``person.erased`` audit event). Their cases no longer count in
  the figures of past months.
- ``anonymise_person`` / ``anonymise_expired``: the retention run, for people whose cases all
  ended more than ``retention_months`` ago. What names or describes the person is removed
  (names, contact data, birth date, nationality, free-text reasons, consents, messages, access
  log, audit trail, the case reference); what the leadership figures count stays (pathway,
  step states, dates and outcomes, handoffs, FIT participation), so the figures do not change.

Audit events are append-only; the database refuses to delete one unless a tombstone for its
case exists (migration 0004). So the tombstone is written first, then the events go.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, String, cast, delete, func, or_, select, update
from sqlalchemy import case as when
from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import Actor, require_admin
from tracker.config import get_settings
from tracker.enums import CaseStatus, OfferStatus, RegistrationStatus
from tracker.errors import InvalidTransition, ValidationFailed
from tracker.models import (
    AccessLogEntry,
    AuditEvent,
    Case,
    Consent,
    Erasure,
    FitContact,
    FitJob,
    FitOffer,
    FitParticipant,
    FitPermit,
    FitRegistration,
    FitWorkDay,
    Handoff,
    Newcomer,
    OutboxMessage,
    Step,
)
from tracker.privacy import subject_data
from tracker.senders import file_name_for
from tracker.services._base import get_case, new_reference, utcnow

# Without a configured secret (development only: production refuses to start without one)
# the tombstone hashes use this fixed key.
_DEVELOPMENT_KEY = b"onboarding-tracker-development-key"
ANONYMISED = "–"  # what stands where a name was


@dataclass
class Removal:
    """What one erasure or anonymisation removed, for the tombstone, the CLI and the screen."""

    basis: str
    reference: str
    erasure_ids: list[int] = field(default_factory=list)
    removed: dict[str, int] = field(default_factory=dict)
    mail_files: list[str] = field(default_factory=list)  # mail-drop files deleted


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


def reference_hash(reference: str) -> str:
    """A keyed hash of a case reference: the tombstone can be found by the reference, but
    the reference cannot be read back from the tombstone."""
    secret = get_settings().secret_key
    key = secret.get_secret_value().encode() if secret else _DEVELOPMENT_KEY
    return hmac.new(key, reference.strip().upper().encode(), hashlib.sha256).hexdigest()


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


def export_person(
    session: Session, *, actor: Actor, reference: str, now: datetime | None = None
) -> dict[str, Any]:
    """Everything held about the person (Art. 15), recorded in the audit trail and the
    access log. Case managers and admins."""
    now = now or utcnow()
    data = subject_data(session, actor=actor, reference=reference, now=now)
    case_id = session.scalar(select(Case.id).where(Case.reference == data["export"]["reference"]))
    audit.record(
        session,
        actor=actor,
        action="person.exported",
        entity_type="case",
        entity_id=case_id,
        case_id=case_id,
        now=now,
    )
    session.flush()
    return data


def erase_person(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    confirm: str,
    mail_dir: Path | None = None,
    now: datetime | None = None,
) -> Removal:
    """Erase everything held about the person behind ``reference`` (all their cases).

    ``confirm`` must repeat the reference: erasure cannot be undone. Administrators only.
    """
    require_admin(actor, "erase a person's data")
    now = now or utcnow()
    if confirm.strip().upper() != reference.strip().upper():
        raise ValidationFailed(
            "Zur Bestätigung das Aktenzeichen genau wiederholen. / "
            "To confirm, type the case reference again exactly."
        )
    case = get_case(session, reference)
    newcomer_id = case.newcomer_id
    case_ids = _lock_cases(session, newcomer_id)
    references: dict[int, str] = {
        case_id: ref
        for case_id, ref in session.execute(
            select(Case.id, Case.reference).where(Case.id.in_(case_ids))
        )
    }
    result = Removal(basis="request", reference=case.reference)
    counts = result.removed
    _free_fit_places(session, actor, newcomer_id, now)
    participant_ids = list(
        session.scalars(select(FitParticipant.id).where(FitParticipant.newcomer_id == newcomer_id))
    )
    job_ids = select(FitJob.id).where(FitJob.participant_id.in_(participant_ids))
    counts["fit_work_days"] = _delete(session, FitWorkDay, FitWorkDay.job_id.in_(job_ids))
    for model in (FitJob, FitContact, FitRegistration, FitPermit):
        counts[model.__tablename__] = _delete(
            session, model, model.participant_id.in_(participant_ids)
        )
    counts["fit_participants"] = _delete(
        session, FitParticipant, FitParticipant.newcomer_id == newcomer_id
    )
    _remove_traces(session, result, newcomer_id, references, mail_dir)
    counts["handoffs"] = _delete(session, Handoff, Handoff.case_id.in_(case_ids))
    counts["steps"] = _delete(session, Step, Step.case_id.in_(case_ids))
    _tombstones(session, actor, result, newcomer_id, references, now)
    counts["cases"] = _delete(session, Case, Case.id.in_(case_ids))
    counts["newcomers"] = _delete(session, Newcomer, Newcomer.id == newcomer_id)
    audit.record(
        session,
        actor=actor,
        action="person.erased",
        entity_type="erasure",
        entity_id=result.erasure_ids[0],
        now=now,
        details={"basis": "request", "cases": len(case_ids), "removed": counts},
    )
    session.flush()
    session.expunge_all()  # the loaded case and steps are gone; nothing may flush them back
    return result


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
        raise InvalidTransition(f"No newcomer {newcomer_id}.")
    if newcomer.anonymised_at is not None:
        raise InvalidTransition("This person's data is already anonymised.")
    case_ids = _lock_cases(session, newcomer_id)
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
    counts["steps"] = _rowcount(
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
    counts["handoffs"] = _rowcount(
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
        counts["fit_jobs"] = _rowcount(
            session.execute(
                update(FitJob)
                .where(FitJob.participant_id.in_(participant_ids))
                .values(employer=ANONYMISED)
                .execution_options(synchronize_session=False)
            )
        )
        counts["fit_permits"] = _delete(
            session, FitPermit, FitPermit.participant_id.in_(participant_ids)
        )
    _remove_traces(session, result, newcomer_id, references, mail_dir)
    _tombstones(session, actor, result, newcomer_id, references, now)
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
    day = clocks.add_months(now.date(), -get_settings().retention_months)
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


# --- shared pieces ---------------------------------------------------------------------------


def _lock_cases(session: Session, newcomer_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Case.id)
            .where(Case.newcomer_id == newcomer_id)
            .order_by(Case.id)
            .with_for_update()
        )
    )


def _delete(session: Session, model: type, *where: object) -> int:
    statement = delete(model).where(*where).execution_options(synchronize_session=False)  # type: ignore[arg-type]
    return _rowcount(session.execute(statement))


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _remove_traces(
    session: Session,
    result: Removal,
    newcomer_id: int,
    references: dict[int, str],
    mail_dir: Path | None,
) -> None:
    """Messages (and their mail-drop copies), the access log and the consents."""
    case_ids = list(references)
    # Two statements, each on its own index (an OR of the two would scan the table).
    about_person = (
        OutboxMessage.case_id.in_(case_ids),
        OutboxMessage.recipient_newcomer_id == newcomer_id,
    )
    keys = [
        key
        for where in about_person
        for key in session.scalars(select(OutboxMessage.idempotency_key).where(where))
    ]
    result.removed["outbox"] = sum(_delete(session, OutboxMessage, where) for where in about_person)
    result.removed["access_log"] = _delete(
        session, AccessLogEntry, AccessLogEntry.case_id.in_(case_ids)
    )
    result.removed["consents"] = _delete(session, Consent, Consent.newcomer_id == newcomer_id)
    folder = mail_dir or get_settings().mail_dir or get_settings().data_dir / "mail"
    for key in keys:
        path = folder / file_name_for(key)
        if path.exists():
            path.unlink()
            result.mail_files.append(path.name)
    result.removed["mail_files"] = len(result.mail_files)
    # Messages about several cases (the partners' digests) name cases by reference: the
    # person's references are blanked there, in the outbox and in the mail drop's copy.
    redacted = 0
    for reference in references.values():
        for message in session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.case_id.is_(None),  # messages about several cases: digests
                cast(OutboxMessage.context, String).contains(reference),
            )
        ):
            message.context = _without(message.context, reference)
            redacted += 1
            path = folder / file_name_for(message.idempotency_key)
            if path.exists():
                path.write_text(
                    path.read_text(encoding="utf-8").replace(reference, ANONYMISED),
                    encoding="utf-8",
                )
    result.removed["references_blanked"] = redacted


def _without(value: Any, reference: str) -> Any:
    """``value`` (JSON) with every occurrence of ``reference`` blanked."""
    if isinstance(value, str):
        return value.replace(reference, ANONYMISED)
    if isinstance(value, list):
        return [_without(v, reference) for v in value]
    if isinstance(value, dict):
        return {k: _without(v, reference) for k, v in value.items()}
    return value


def _tombstones(
    session: Session,
    actor: Actor,
    result: Removal,
    newcomer_id: int,
    references: dict[int, str],
    now: datetime,
) -> None:
    """Write the tombstones, then let the audit events of the person's cases go."""
    # Two statements, each on its own index (an OR of the two would scan the table).
    events = (
        AuditEvent.case_id.in_(list(references)),
        (AuditEvent.entity_type == "newcomer") & (AuditEvent.entity_id == newcomer_id),
    )
    result.removed["audit_events"] = sum(
        session.scalar(select(func.count()).select_from(AuditEvent).where(where)) or 0
        for where in events
    )
    for case_id, reference in references.items():
        tombstone = Erasure(
            erased_at=now,
            erased_by=actor.username,
            basis=result.basis,
            case_id=case_id,
            newcomer_id=newcomer_id,
            reference_hash=reference_hash(reference),
            removed=dict(result.removed),
        )
        session.add(tombstone)
        session.flush()
        result.erasure_ids.append(tombstone.id)
    for where in events:
        session.execute(
            delete(AuditEvent).where(where).execution_options(synchronize_session=False)
        )


def _free_fit_places(session: Session, actor: Actor, newcomer_id: int, now: datetime) -> None:
    """An erased student's places on coming offers go to the waiting list."""
    from tracker.services.fit import _promote

    offers: Iterable[FitOffer] = session.scalars(
        select(FitOffer)
        .join(FitRegistration, FitRegistration.offer_id == FitOffer.id)
        .join(FitParticipant, FitRegistration.participant_id == FitParticipant.id)
        .where(
            FitParticipant.newcomer_id == newcomer_id,
            FitRegistration.status == RegistrationStatus.registered,
            FitOffer.status == OfferStatus.planned,
            FitOffer.starts_at > now,
        )
        .with_for_update(of=FitOffer)
    ).all()
    for offer in offers:
        session.execute(
            delete(FitRegistration)
            .where(
                FitRegistration.offer_id == offer.id,
                FitRegistration.participant_id.in_(
                    select(FitParticipant.id).where(FitParticipant.newcomer_id == newcomer_id)
                ),
            )
            .execution_options(synchronize_session=False)
        )
        _promote(session, actor, offer, now)
