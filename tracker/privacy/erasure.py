"""Erasure (Art. 17 GDPR): removing a person, keeping a tombstone without personal data."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from typing import cast as cast_type

from sqlalchemy import String, Table, cast, delete, func, or_, select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, require_admin
from tracker.bulk import chunks, insert_returning_ids
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
    subject = [Subject(newcomer_id, references, result)]
    remove_traces(session, subject, mail_dir)
    counts["handoffs"] = delete_rows(session, Handoff, Handoff.case_id.in_(case_ids))
    counts["steps"] = delete_rows(session, Step, Step.case_id.in_(case_ids))
    write_tombstones(session, actor, subject, now)
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


@dataclass
class Subject:
    """One person whose traces go: their cases' references as they were, and the Removal that
    counts what went (per person, also when many are removed at once)."""

    newcomer_id: int
    references: dict[int, str]  # case id -> reference
    result: Removal


def remove_traces(session: Session, people: Sequence[Subject], mail_dir: Path | None) -> None:
    """Messages (and their mail-drop copies), the access log and the consents of ``people``:
    a statement per kind for all of them, each person's counts kept apart."""
    session.flush()
    of_case = {case_id: p for p in people for case_id in p.references}
    of_newcomer = {p.newcomer_id: p for p in people}
    case_ids, newcomer_ids = sorted(of_case), sorted(of_newcomer)
    # Two lookups, each on its own index (an OR of the two would scan the table).
    messages: dict[int, tuple[str, Subject]] = {}
    for chunk in chunks(case_ids):
        for message_id, key, case_id in session.execute(
            select(OutboxMessage.id, OutboxMessage.idempotency_key, OutboxMessage.case_id).where(
                OutboxMessage.case_id.in_(chunk)
            )
        ):
            messages[message_id] = (key, of_case[case_id or 0])
    for chunk in chunks(newcomer_ids):
        for message_id, key, newcomer_id in session.execute(
            select(
                OutboxMessage.id,
                OutboxMessage.idempotency_key,
                OutboxMessage.recipient_newcomer_id,
            ).where(OutboxMessage.recipient_newcomer_id.in_(chunk))
        ):
            messages.setdefault(message_id, (key, of_newcomer[newcomer_id or 0]))
    for chunk in chunks(sorted(messages)):
        delete_rows(session, OutboxMessage, OutboxMessage.id.in_(chunk))
    outbox = Counter(p.newcomer_id for _, p in messages.values())
    access_log = _delete_counted(
        session, AccessLogEntry.case_id, case_ids, lambda case_id: of_case[case_id].newcomer_id
    )
    consents = _delete_counted(session, Consent.newcomer_id, newcomer_ids, lambda n: n)
    folder = mail_dir or get_settings().mail_dir or get_settings().data_dir / "mail"
    for key, person in messages.values():
        path = folder / file_name_for(key)
        if path.exists():
            path.unlink()
            person.result.mail_files.append(path.name)
    blanked = _blank_references_in_digests(session, people, folder)
    for p in people:
        removed = p.result.removed
        removed["outbox"] = outbox[p.newcomer_id]
        removed["access_log"] = access_log[p.newcomer_id]
        removed["consents"] = consents[p.newcomer_id]
        removed["mail_files"] = len(p.result.mail_files)
        removed["references_blanked"] = blanked[p.newcomer_id]


def _delete_counted(
    session: Session, column: Any, ids: Sequence[int], owner: Callable[[int], int]
) -> Counter[int]:
    """Delete the rows whose ``column`` is among ``ids``; how many went per person
    (``owner`` says whose a value of ``column`` is)."""
    counts = Counter[int]()
    model = column.class_
    for chunk in chunks(ids):
        for value, n in session.execute(
            select(column, func.count()).where(column.in_(chunk)).group_by(column)
        ):
            counts[owner(value)] += n
        delete_rows(session, model, column.in_(chunk))
    return counts


def _blank_references_in_digests(
    session: Session, people: Sequence[Subject], folder: Path
) -> Counter[int]:
    """Messages about several cases (the partners' digests) name cases by reference: the
    people's references are blanked there, in the outbox and in the mail drop's copy. Counts
    per person each (reference, message) blanked."""
    of_reference = {ref: p for p in people for ref in p.references.values()}
    blanked = Counter[int]()
    for chunk in chunks(sorted(of_reference), 50):
        for message in session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.case_id.is_(None),  # messages about several cases: digests
                or_(*(cast(OutboxMessage.context, String).contains(ref) for ref in chunk)),
            )
        ):
            path = folder / file_name_for(message.idempotency_key)
            for reference in chunk:
                if reference not in json.dumps(message.context):
                    continue
                message.context = _without(message.context, reference)
                blanked[of_reference[reference].newcomer_id] += 1
                if path.exists():
                    path.write_text(
                        path.read_text(encoding="utf-8").replace(reference, ANONYMISED),
                        encoding="utf-8",
                    )
        session.flush()
    return blanked


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
    session: Session, actor: Actor, people: Sequence[Subject], now: datetime
) -> None:
    """Write a tombstone per case of ``people``, then let the audit events of their cases (and
    about them) go: a statement per kind for all of them."""
    session.flush()
    of_case = {case_id: p for p in people for case_id in p.references}
    newcomer_ids = sorted(p.newcomer_id for p in people)
    # Two conditions, each on its own index (an OR of the two would scan the table).
    events = Counter[int]()
    for chunk in chunks(sorted(of_case)):
        for case_id, n in session.execute(
            select(AuditEvent.case_id, func.count())
            .where(AuditEvent.case_id.in_(chunk))
            .group_by(AuditEvent.case_id)
        ):
            events[of_case[case_id or 0].newcomer_id] += n
    about_newcomer = AuditEvent.entity_type == "newcomer"
    for chunk in chunks(newcomer_ids):
        for newcomer_id, n in session.execute(
            select(AuditEvent.entity_id, func.count())
            .where(about_newcomer, AuditEvent.entity_id.in_(chunk))
            .group_by(AuditEvent.entity_id)
        ):
            events[int(newcomer_id or 0)] += n
    rows = []
    for p in people:
        p.result.removed["audit_events"] = events[p.newcomer_id]
        rows += [
            {
                "erased_at": now,
                "erased_by": actor.username,
                "basis": p.result.basis,
                "case_id": case_id,
                "newcomer_id": p.newcomer_id,
                "reference_hash": reference_hash(reference),
                "removed": dict(p.result.removed),
            }
            for case_id, reference in p.references.items()
        ]
    ids = iter(
        insert_returning_ids(
            session.connection(), cast_type(Table, Erasure.__table__), rows, key="case_id"
        )
    )
    for p in people:
        p.result.erasure_ids += [next(ids) for _ in p.references]
    for chunk in chunks(sorted(of_case)):
        delete_rows(session, AuditEvent, AuditEvent.case_id.in_(chunk))
    for chunk in chunks(newcomer_ids):
        delete_rows(session, AuditEvent, about_newcomer, AuditEvent.entity_id.in_(chunk))


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
