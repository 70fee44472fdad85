"""Newcomers and cases: registering, opening a journey, correcting facts, reassigning, ending."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import Actor, require_case_manager
from tracker.clocks import utcnow
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    FINISHED_STEP_STATES,
    CaseStatus,
    HandoffState,
    Role,
    StepState,
)
from tracker.errors import InvalidTransition, NotFoundError, PathwayError, ValidationFailed
from tracker.journeys.dues import refresh_dues
from tracker.messages.outbox import enqueue
from tracker.models import Case, Newcomer, Organisation, Step
from tracker.pathway import PathwayRegistry, get_registry, profile_for
from tracker.records import check_version, get_case, get_user, new_reference
from tracker.schemas import NewcomerIn, NewcomerUpdate


def register_newcomer(
    session: Session, *, actor: Actor, data: NewcomerIn, now: datetime | None = None
) -> Newcomer:
    """Record a new person; the caller decides whether to open a case right away."""
    require_case_manager(actor, "register newcomers")
    now = now or utcnow()
    # Case-folding can lengthen a name ("ß" -> "ss"); the duplicate check keeps the folded form.
    limit = Newcomer.__table__.c.match_key.type.length  # type: ignore[attr-defined]
    if len(data.match_key) > limit:
        raise ValidationFailed(
            "family_name together with given_name is too long ({length} characters once "
            "case-folded for the duplicate check, at most {limit}).",
            length=len(data.match_key),
            limit=limit,
        )
    newcomer = _newcomer_from(data, now)
    session.add(newcomer)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="newcomer.registered",
        entity_type="newcomer",
        entity_id=newcomer.id,
        now=now,
        details={"profile": profile_for(eu_citizen=newcomer.eu_citizen, purpose=data.purpose)},
    )
    return newcomer


def _newcomer_from(data: NewcomerIn, now: datetime) -> Newcomer:
    return Newcomer(
        given_name=data.given_name,
        family_name=data.family_name,
        birth_date=data.birth_date,
        nationality=data.nationality,
        eu_citizen=bool(data.eu_citizen),
        purpose=data.purpose,
        accelerated_procedure=data.accelerated_procedure,
        email=data.email,
        phone=data.phone,
        preferred_language=data.preferred_language,
        first_contact_date=data.first_contact_date or clocks.local_today(now),
        arrival_date=data.arrival_date,
        move_in_date=data.move_in_date,
        permit_expiry=data.permit_expiry,
        match_key=data.match_key,
        created_at=now,
    )


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
    """Start a newcomer's journey on the latest version of the pathway their profile chooses."""
    require_case_manager(actor, "open cases")
    now = now or utcnow()
    registry = registry or get_registry()
    newcomer = session.get(Newcomer, newcomer_id)
    if newcomer is None:
        raise NotFoundError(
            "No newcomer with id {newcomer}.",
            newcomer=newcomer_id,
        )
    with session.no_autoflush:
        already = session.scalar(
            select(Case.reference).where(
                Case.newcomer_id == newcomer_id, Case.status == CaseStatus.open
            )
        )
    if already:
        raise InvalidTransition(
            "This newcomer already has an open case, {reference}.",
            reference=already,
        )
    if pathway_key:
        pathway = registry.get(pathway_key)
    else:
        pathway = registry.for_profile(
            profile_for(eu_citizen=newcomer.eu_citizen, purpose=newcomer.purpose)
        )

    manager_id = actor.user_id if actor.role == Role.case_manager else None
    if case_manager:
        manager = get_user(session, case_manager)
        if manager.role != Role.case_manager or not manager.active:
            raise ValidationFailed(
                "'{username}' is not an active case manager.",
                username=case_manager,
            )
        manager_id = manager.id

    orgs = _organisations(session)
    case = Case(
        reference=new_reference(session),
        newcomer=newcomer,
        pathway_key=pathway.key,
        pathway_version=pathway.version,
        case_manager_id=manager_id,
        status=CaseStatus.open,
        opened_at=now,
        # The first steps open in the advance that follows (a Prefect run, or inline).
        advance_requested_at=now,
    )
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
        legal_days, legal_months = (
            clock.length(accelerated=newcomer.accelerated_procedure) if clock else (None, None)
        )
        case.steps.append(
            Step(
                key=ps.id,
                position=position,
                needs=list(ps.needs),
                owner=org,
                state=StepState.pending,
                service_days=ps.service_days,
                legal_basis=clock.basis if clock else None,
                legal_days=legal_days,
                legal_months=legal_months,
                legal_reference=clock.reference if clock else None,
                handoffs=[],
            )
        )
    session.add(case)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="case.opened",
        entity_type="case",
        entity_id=case.id,
        case_id=case.id,
        now=now,
        details={"pathway": pathway.key, "version": pathway.version},
    )
    enqueue(
        session,
        key=f"welcome:{case.id}",
        kind="welcome",
        now=now,
        case_id=case.id,
        recipient_newcomer_id=newcomer.id,
        language=newcomer.preferred_language,
        context={"reference": case.reference},
    )
    return case


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
