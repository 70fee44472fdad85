"""Erasure (Art. 17 GDPR): removing a person, keeping a tombstone without personal data."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import String, cast, delete, func, select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, require_admin
from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.enums import OfferStatus, RegistrationStatus
from tracker.errors import ValidationFailed
from tracker.messages.senders import file_name_for
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
from tracker.privacy.export import subject_data
from tracker.records import get_case

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


def reference_hash(reference: str) -> str:
    """A keyed hash of a case reference: the tombstone can be found by the reference, but
    the reference cannot be read back from the tombstone."""
    secret = get_settings().secret_key
    key = secret.get_secret_value().encode() if secret else _DEVELOPMENT_KEY
    return hmac.new(key, reference.strip().upper().encode(), hashlib.sha256).hexdigest()


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
            "To confirm, type the case reference again exactly.",
        )
    case = get_case(session, reference)
    newcomer_id = case.newcomer_id
    case_ids = lock_cases(session, newcomer_id)
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
    counts["fit_work_days"] = delete_rows(session, FitWorkDay, FitWorkDay.job_id.in_(job_ids))
    for model in (FitJob, FitContact, FitRegistration, FitPermit):
        counts[model.__tablename__] = delete_rows(
            session, model, model.participant_id.in_(participant_ids)
        )
    counts["fit_participants"] = delete_rows(
        session, FitParticipant, FitParticipant.newcomer_id == newcomer_id
    )
    remove_traces(session, result, newcomer_id, references, mail_dir)
    counts["handoffs"] = delete_rows(session, Handoff, Handoff.case_id.in_(case_ids))
    counts["steps"] = delete_rows(session, Step, Step.case_id.in_(case_ids))
    write_tombstones(session, actor, result, newcomer_id, references, now)
    counts["cases"] = delete_rows(session, Case, Case.id.in_(case_ids))
    counts["newcomers"] = delete_rows(session, Newcomer, Newcomer.id == newcomer_id)
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


def lock_cases(session: Session, newcomer_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Case.id)
            .where(Case.newcomer_id == newcomer_id)
            .order_by(Case.id)
            .with_for_update()
        )
    )


def delete_rows(session: Session, model: type, *where: object) -> int:
    statement = delete(model).where(*where).execution_options(synchronize_session=False)  # type: ignore[arg-type]
    return rowcount(session.execute(statement))


def rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def remove_traces(
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
    result.removed["outbox"] = sum(
        delete_rows(session, OutboxMessage, where) for where in about_person
    )
    result.removed["access_log"] = delete_rows(
        session, AccessLogEntry, AccessLogEntry.case_id.in_(case_ids)
    )
    result.removed["consents"] = delete_rows(session, Consent, Consent.newcomer_id == newcomer_id)
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


def write_tombstones(
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
    from tracker.fit import promote_waiting

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
        promote_waiting(session, actor, offer, now)
