"""Newcomers and cases: registering, opening a journey, correcting facts, reassigning, ending."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import Actor, require_case_manager
from tracker.bulk import BulkWriter, chunks, insert_returning_ids
from tracker.clocks import utcnow
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    FINISHED_STEP_STATES,
    CaseStatus,
    HandoffState,
    Role,
    StepState,
)
from tracker.errors import (
    InvalidTransition,
    NotFoundError,
    PathwayError,
    TrackerError,
    ValidationFailed,
)
from tracker.journeys.dues import refresh_dues
from tracker.messages.outbox import OutboxItem, enqueue_many
from tracker.models import Case, Newcomer, Organisation, Step, User
from tracker.pathway import Pathway, PathwayRegistry, get_registry, profile_for
from tracker.records import check_version, get_case, get_user, new_references
from tracker.schemas import NewcomerIn, NewcomerUpdate

_NEWCOMERS = cast(Table, Newcomer.__table__)
_CASES = cast(Table, Case.__table__)
_STEPS = cast(Table, Step.__table__)


@contextmanager
def _item(position: int) -> Iterator[None]:
    """Mark an error raised for one item of a batch with its position, so that the caller (the
    import) can name the line it came from."""
    try:
        yield
    except TrackerError as exc:
        exc.item = position  # type: ignore[attr-defined]
        raise


def register_newcomers(
    session: Session, *, actor: Actor, people: Sequence[NewcomerIn], now: datetime | None = None
) -> list[int]:
    """Record new people, in order; returns their ids. The caller decides whether to open cases.

    One permission check, one multi-row INSERT … RETURNING and one audit statement for the whole
    batch; registering one person is a batch of one (``register_newcomer``). An error names the
    item it is about in ``error.item``, and nothing of the batch is written."""
    require_case_manager(actor, "register newcomers")
    now = now or utcnow()
    # Case-folding can lengthen a name ("ß" -> "ss"); the duplicate check keeps the folded form.
    limit = _NEWCOMERS.c.match_key.type.length  # type: ignore[attr-defined]
    for position, data in enumerate(people):
        if len(data.match_key) > limit:
            with _item(position):
                raise ValidationFailed(
                    "family_name together with given_name is too long ({length} characters "
                    "once case-folded for the duplicate check, at most {limit}).",
                    length=len(data.match_key),
                    limit=limit,
                )
    if not people:
        return []
    rows = [_newcomer_row(data, now) for data in people]
    ids = insert_returning_ids(session.connection(), _NEWCOMERS, rows, key="match_key")
    audit.record_many(
        session,
        actor=actor,
        action="newcomer.registered",
        entity_type="newcomer",
        now=now,
        events=(
            (
                newcomer_id,
                None,
                {"profile": profile_for(eu_citizen=row["eu_citizen"], purpose=data.purpose)},
            )
            for newcomer_id, row, data in zip(ids, rows, people, strict=True)
        ),
    )
    return ids


def register_newcomer(
    session: Session, *, actor: Actor, data: NewcomerIn, now: datetime | None = None
) -> Newcomer:
    """Record one new person: ``register_newcomers`` with a batch of one."""
    (newcomer_id,) = register_newcomers(session, actor=actor, people=[data], now=now)
    return session.get_one(Newcomer, newcomer_id)


def _newcomer_row(data: NewcomerIn, now: datetime) -> dict[str, Any]:
    return {
        "given_name": data.given_name,
        "family_name": data.family_name,
        "birth_date": data.birth_date,
        "nationality": data.nationality,
        "eu_citizen": bool(data.eu_citizen),
        "purpose": data.purpose,
        "accelerated_procedure": data.accelerated_procedure,
        "email": data.email,
        "phone": data.phone,
        "preferred_language": data.preferred_language,
        "first_contact_date": data.first_contact_date or clocks.local_today(now),
        "arrival_date": data.arrival_date,
        "move_in_date": data.move_in_date,
        "permit_expiry": data.permit_expiry,
        "match_key": data.match_key,
        "created_at": now,
        "anonymised_at": None,
        "version": 1,
    }


@dataclass(frozen=True)
class CaseOpening:
    """One case to open: for whom, with which case manager (a username; else the actor, if a
    case manager) and on which pathway (else the one the newcomer's profile chooses)."""

    newcomer_id: int
    case_manager: str | None = None
    pathway_key: str | None = None


def open_cases(
    session: Session,
    *,
    actor: Actor,
    openings: Sequence[CaseOpening],
    now: datetime | None = None,
    registry: PathwayRegistry | None = None,
) -> list[tuple[int, str]]:
    """Start newcomers' journeys, each on the latest version of the pathway their profile
    chooses; returns each new case's id and reference, in order.

    The whole batch is checked first (the newcomers exist and have no open case, the case
    managers are active), then written set-wise: one INSERT … RETURNING for the cases, one for
    their steps, one for the audit events and one for the welcome messages. Opening one case is
    a batch of one (``open_case``). An error names its item in ``error.item``; nothing of the
    batch is written. The first steps open in the advance that follows
    (``advance_requested_at``)."""
    require_case_manager(actor, "open cases")
    now = now or utcnow()
    registry = registry or get_registry()
    if not openings:
        return []
    ids = [o.newcomer_id for o in openings]
    people = {
        row.id: row
        for chunk in chunks(sorted(set(ids)))
        for row in session.execute(
            select(
                Newcomer.id,
                Newcomer.eu_citizen,
                Newcomer.purpose,
                Newcomer.accelerated_procedure,
                Newcomer.preferred_language,
            ).where(Newcomer.id.in_(chunk))
        )
    }
    with session.no_autoflush:
        already = {
            newcomer_id: reference
            for chunk in chunks(sorted(people))
            for newcomer_id, reference in session.execute(
                select(Case.newcomer_id, Case.reference).where(
                    Case.newcomer_id.in_(chunk), Case.status == CaseStatus.open
                )
            )
        }
    managers = _case_managers(session, {o.case_manager for o in openings if o.case_manager})
    default_manager = actor.user_id if actor.role == Role.case_manager else None
    orgs = _organisations(session)
    references = new_references(session, len(openings))
    cases: list[dict[str, Any]] = []
    plans = []
    for position, (opening, reference) in enumerate(zip(openings, references, strict=True)):
        with _item(position):
            person = people.get(opening.newcomer_id)
            if person is None:
                raise NotFoundError("No newcomer with id {newcomer}.", newcomer=opening.newcomer_id)
            if opening.newcomer_id in already:
                raise InvalidTransition(
                    "This newcomer already has an open case, {reference}.",
                    reference=already[opening.newcomer_id],
                )
            already[opening.newcomer_id] = reference  # twice in one batch is refused too
            if opening.pathway_key:
                pathway = registry.get(opening.pathway_key)
            else:
                pathway = registry.for_profile(
                    profile_for(eu_citizen=person.eu_citizen, purpose=person.purpose)
                )
            manager_id = default_manager
            if opening.case_manager:
                manager_id = managers[opening.case_manager]
            steps = _step_rows(pathway, orgs, accelerated=person.accelerated_procedure)
        cases.append(
            {
                "reference": reference,
                "newcomer_id": person.id,
                "pathway_key": pathway.key,
                "pathway_version": pathway.version,
                "case_manager_id": manager_id,
                "status": CaseStatus.open,
                "opened_at": now,
                "closed_at": None,
                "next_due": None,
                "advance_requested_at": now,
                "version": 1,
            }
        )
        plans.append((person, pathway, steps))
    case_ids = insert_returning_ids(session.connection(), _CASES, cases, key="reference")
    step_rows = [
        {**step, "case_id": case_id}
        for case_id, (_, _, steps) in zip(case_ids, plans, strict=True)
        for step in steps
    ]
    BulkWriter().insert(session.connection(), _STEPS, step_rows)
    audit.record_many(
        session,
        actor=actor,
        action="case.opened",
        entity_type="case",
        now=now,
        events=(
            (case_id, case_id, {"pathway": pathway.key, "version": pathway.version})
            for case_id, (_, pathway, _) in zip(case_ids, plans, strict=True)
        ),
    )
    enqueue_many(
        session,
        now=now,
        messages=[
            OutboxItem(
                key=f"welcome:{case_id}",
                kind="welcome",
                case_id=case_id,
                recipient_newcomer_id=person.id,
                language=person.preferred_language,
                context={"reference": case["reference"]},
            )
            for case_id, case, (person, _, _) in zip(case_ids, cases, plans, strict=True)
        ],
    )
    return list(zip(case_ids, references, strict=True))


def open_case(
    session: Session,
    *,
    actor: Actor,
    newcomer_id: int,
    case_manager: str | None = None,
    pathway_key: str | None = None,
    now: datetime | None = None,
    registry: PathwayRegistry | None = None,
) -> Case:
    """Start one newcomer's journey: ``open_cases`` with a batch of one."""
    ((case_id, _),) = open_cases(
        session,
        actor=actor,
        openings=[CaseOpening(newcomer_id, case_manager, pathway_key)],
        now=now,
        registry=registry,
    )
    return session.get_one(Case, case_id)


def _step_rows(
    pathway: Pathway, orgs: dict[str, Organisation], *, accelerated: bool
) -> list[dict[str, Any]]:
    """A new case's steps as rows: the pathway's steps as they are today, all pending."""
    rows = []
    for position, ps in enumerate(pathway.steps):
        org = orgs.get(ps.owner)
        if org is None:
            raise PathwayError(
                "{pathway}.v{version}: owner '{owner}' of step '{step}' is not an "
                "organisation in this database",
                pathway=pathway.key,
                version=pathway.version,
                owner=ps.owner,
                step=ps.id,
            )
        clock = ps.legal_clock
        legal_days, legal_months = clock.length(accelerated=accelerated) if clock else (None, None)
        rows.append(
            {
                "key": ps.id,
                "position": position,
                "needs": list(ps.needs),
                "owner_org_id": org.id,
                "state": StepState.pending.value,
                "service_days": ps.service_days,
                "legal_basis": clock.basis if clock else None,
                "legal_days": legal_days,
                "legal_months": legal_months,
                "legal_reference": clock.reference if clock else None,
            }
        )
    return rows


def _case_managers(session: Session, usernames: set[str]) -> dict[str, int]:
    """The ids of these case managers; refuses a name that is not an active case manager."""
    found = {
        user.username: user
        for chunk in chunks(sorted(usernames))
        for user in session.execute(
            select(User.username, User.id, User.role, User.active).where(User.username.in_(chunk))
        )
    }
    for username in sorted(usernames):
        user = found.get(username)
        if user is None:
            raise NotFoundError("No user called '{username}'.", username=username)
        if user.role != Role.case_manager or not user.active:
            raise ValidationFailed("'{username}' is not an active case manager.", username=username)
    return {name: user.id for name, user in found.items()}


def _organisations(session: Session) -> dict[str, Organisation]:
    """All organisations by key, read once per transaction (a bulk import opens many cases)."""
    cached = session.info.get("organisations")
    if cached is None:
        cached = {o.key: o for o in session.scalars(select(Organisation))}
        session.info["organisations"] = cached
    return cached


def update_newcomer(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    changes: NewcomerUpdate,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Newcomer:
    """Correct or add facts (move-in, permit expiry ...); clocks that count from them follow."""
    require_case_manager(actor, "change a newcomer's facts")
    now = now or utcnow()
    case = get_case(session, reference)
    newcomer = case.newcomer
    check_version(newcomer, expected_version, f"The record of case {case.reference}")
    changed = []
    for name, value in changes.model_dump(exclude_unset=True).items():
        if getattr(newcomer, name) != value:
            setattr(newcomer, name, value)
            changed.append(name)
    if not changed:
        return newcomer
    if (
        {"arrival_date", "move_in_date"} & set(changed)
        and newcomer.arrival_date
        and newcomer.move_in_date
        and newcomer.move_in_date < newcomer.arrival_date
    ):
        raise ValidationFailed("The move-in date lies before the arrival date.")
    if "accelerated_procedure" in changed:
        _rederive_clock_lengths(case)
    refresh_dues(case)
    audit.record(
        session,
        actor=actor,
        action="newcomer.updated",
        entity_type="newcomer",
        entity_id=newcomer.id,
        case_id=case.id,
        now=now,
        details={"fields": changed},
    )
    session.flush()
    return newcomer


def reassign_case(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    case_manager: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Case:
    """Give a case to another case manager."""
    require_case_manager(actor, "reassign cases")
    now = now or utcnow()
    case = get_case(session, reference)
    check_version(case, expected_version, f"Case {case.reference}")
    manager = get_user(session, case_manager)
    if manager.role != Role.case_manager or not manager.active:
        raise ValidationFailed(
            "'{username}' is not an active case manager.",
            username=case_manager,
        )
    if case.case_manager_id == manager.id:
        return case
    previous = case.case_manager_id
    case.case_manager_id = manager.id
    audit.record(
        session,
        actor=actor,
        action="case.reassigned",
        entity_type="case",
        entity_id=case.id,
        case_id=case.id,
        now=now,
        details={"from_user_id": previous, "to_user_id": manager.id},
    )
    session.flush()
    return case


def record_flow_failure(
    session: Session,
    *,
    actor: Actor,
    flow: str,
    run_name: str,
    reference: str | None,
    message: str,
    now: datetime | None = None,
) -> None:
    """Leave an audit event for a failed or crashed flow run, on its case's timeline if any."""
    case_id = None
    if reference:
        case_id = session.scalar(select(Case.id).where(Case.reference == reference.upper()))
    audit.record(
        session,
        actor=actor,
        action="flow.failed",
        entity_type="flow",
        entity_id=None,
        case_id=case_id,
        now=now or utcnow(),
        reason=message or None,
        details={"flow": flow, "run": run_name},
    )


def _rederive_clock_lengths(case: Case) -> None:
    """The accelerated procedure shortens some clocks: take the lengths from the case's pathway."""
    pathway = get_registry().get(case.pathway_key, case.pathway_version)
    for step in case.steps:
        if step.state in FINISHED_STEP_STATES:
            continue
        clock = pathway.step(step.key).legal_clock if step.key in pathway.step_ids else None
        if clock is None:
            continue
        days, months = clock.length(accelerated=case.newcomer.accelerated_procedure)
        if (step.legal_days, step.legal_months) != (days, months):
            step.legal_days, step.legal_months = days, months


def cancel_case(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    reason: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Case:
    """End a journey early (the newcomer moved away, withdrew ...); partners' offers are withdrawn.

    The newcomer can get a new case later: only one case per person may be open at a time.
    """
    require_case_manager(actor, "cancel cases")
    now = now or utcnow()
    text = " ".join((reason or "").split())
    if not text:
        raise ValidationFailed("Say why the case is cancelled: a reason is required.")
    case = get_case(session, reference)
    check_version(case, expected_version, f"Case {case.reference}")
    if case.status != CaseStatus.open:
        raise InvalidTransition(
            "Case {reference} is already {status}.",
            reference=case.reference,
            status=case.status,
        )
    case.status = CaseStatus.cancelled
    case.closed_at = now
    case.advance_requested_at = None
    case.next_due = None
    withdrawn = []
    for step in case.steps:
        for handoff in step.handoffs:
            if handoff.state in ACTIVE_HANDOFF_STATES:
                handoff.state = HandoffState.withdrawn
                handoff.reason = "case_cancelled"
                handoff.closed_at = now
                withdrawn.append(handoff.id)
    audit.record(
        session,
        actor=actor,
        action="case.cancelled",
        entity_type="case",
        entity_id=case.id,
        case_id=case.id,
        now=now,
        reason=text,
        details={"withdrawn_handoffs": withdrawn},
    )
    session.flush()
    return case
