"""Newcomers and cases: registering, opening a journey, and advancing it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, bindparam, inspect, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.util import identity_key

from tracker import audit, clocks
from tracker.access import Actor, require_case_manager
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    ACTIVE_STEP_STATES,
    FINISHED_STEP_STATES,
    CaseStatus,
    HandoffState,
    Role,
    StepState,
)
from tracker.errors import InvalidTransition, NotFoundError, PathwayError, ValidationFailed
from tracker.models import Case, Consent, Handoff, Newcomer, Organisation, Step
from tracker.outbox import enqueue
from tracker.pathway import PathwayRegistry, get_registry, profile_for
from tracker.schemas import NewcomerIn, NewcomerUpdate
from tracker.services._base import check_version, get_case, get_user, new_reference, utcnow

HOLD_CONSENT_MISSING = "consent_missing"
HOLD_CONSENT_REVOKED = "consent_revoked"


@dataclass
class AdvanceResult:
    """What one advance did; empty lists mean the case was already up to date."""

    reference: str
    opened: list[str] = field(default_factory=list)
    offered: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    closed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.offered or self.held or self.closed)


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
            f"family_name together with given_name is too long ({len(data.match_key)} "
            f"characters once case-folded for the duplicate check, at most {limit})."
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
        raise NotFoundError(f"No newcomer with id {newcomer_id}.")
    with session.no_autoflush:
        already = session.scalar(
            select(Case.reference).where(
                Case.newcomer_id == newcomer_id, Case.status == CaseStatus.open
            )
        )
    if already:
        raise InvalidTransition(f"This newcomer already has an open case, {already}.")
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
            raise ValidationFailed(f"{case_manager!r} is not an active case manager.")
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
                f"{pathway.key}.v{pathway.version}: owner {ps.owner!r} of step {ps.id!r} "
                "is not an organisation in this database"
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


def request_advance(case: Case, now: datetime) -> None:
    """Note that a change may have unlocked steps; the advance (or the sweep) takes it from here."""
    if case.advance_requested_at is None:
        case.advance_requested_at = now


def ready_steps(session: Session, *, reference: str) -> list[str]:
    """The pending steps whose prerequisites are all finished (a read; opens nothing)."""
    case = get_case(session, reference, for_update=False)
    if case.status != CaseStatus.open:
        return []
    return [s.key for s in _ready(case)]


def advance_case(
    session: Session, *, actor: Actor, reference: str, now: datetime | None = None
) -> AdvanceResult:
    """Open what has become possible and close what is finished; safe to run any number of times.

    This is the one rule of what happens next. A Prefect run carries it out step by step
    (`open_ready_step` per step, then `settle_case`); without Prefect it runs here in one go.
    """
    require_case_manager(actor, "advance cases")
    case = get_case(session, reference)
    return advance(session, actor=actor, case=case, now=now or utcnow())


def open_ready_step(
    session: Session, *, actor: Actor, reference: str, step_key: str, now: datetime | None = None
) -> AdvanceResult:
    """Open one step if it is still pending and ready, and hand it on; otherwise do nothing."""
    require_case_manager(actor, "advance cases")
    case = get_case(session, reference)
    plan = _plan_advance(
        session, actor=actor, case=case, now=now or utcnow(), only={step_key}, settle=False
    )
    session.flush()
    return _record_advance(session, actor=actor, case=case, plan=plan, now=now or utcnow())


def settle_case(
    session: Session, *, actor: Actor, reference: str, now: datetime | None = None
) -> AdvanceResult:
    """Close a case whose steps are all finished, and clear its advance request when done."""
    require_case_manager(actor, "advance cases")
    case = get_case(session, reference)
    plan = _plan_advance(session, actor=actor, case=case, now=now or utcnow(), only=set())
    session.flush()
    return _record_advance(session, actor=actor, case=case, plan=plan, now=now or utcnow())


def cases_awaiting_advance(
    session: Session, *, older_than: datetime, limit: int = 500
) -> list[str]:
    """References of open cases whose advance was requested before ``older_than`` and not done."""
    return list(session.scalars(_awaiting_advance(older_than, limit)))


def _awaiting_advance(older_than: datetime, limit: int) -> Select[str]:
    """Open cases whose advance was asked for before ``older_than``, longest waiting first."""
    return (
        select(Case.reference)
        .where(Case.advance_requested_at < older_than, Case.status == CaseStatus.open)
        .order_by(Case.advance_requested_at)
        .limit(limit)
    )


@dataclass
class CatchUp:
    """What one claim of cases awaiting their advance did."""

    advanced: list[AdvanceResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # reference -> error

    @property
    def claimed(self) -> int:
        return len(self.advanced) + len(self.failed)


def advance_awaiting(
    session: Session,
    *,
    actor: Actor,
    older_than: datetime,
    limit: int = 25,
    skip: Collection[str] = (),
    now: datetime | None = None,
) -> CatchUp:
    """Claim up to ``limit`` open cases whose advance was requested before ``older_than`` and
    advance them, all in this transaction.

    The claim is the row lock, taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: cases
    another worker is advancing (or a person is changing) right now are passed over, not
    waited for, so sweeps in several workers share the backlog instead of queueing on the same
    rows. The advance clears each request before the locks are released, so no later claim
    takes a case again. SQLite serialises its writers (``BEGIN IMMEDIATE``), so there the
    claim is the query alone. A case that fails is rolled back on its own (a savepoint) and
    reported; pass it in ``skip`` so that the caller's next claim leaves it out.
    """
    require_case_manager(actor, "advance cases")
    stmt = _awaiting_advance(older_than, limit).with_for_update(skip_locked=True)
    if skip:
        stmt = stmt.where(Case.reference.not_in(list(skip)))
    outcome = CatchUp()
    for reference in session.scalars(stmt).all():
        try:
            with session.begin_nested():
                outcome.advanced.append(
                    advance_case(session, actor=actor, reference=reference, now=now)
                )
        except (OperationalError, InterfaceError):
            raise  # the connection is gone: nothing more can be done in this transaction
        except Exception as exc:  # one bad case must not hold up the others
            outcome.failed[reference] = f"{type(exc).__name__}: {exc}"[:500]
    return outcome


# What the clocks need of a step; read as plain rows when a change loaded only its own step.
_CLOCK_COLUMNS = (
    Step.id,
    Step.key,
    Step.state,
    Step.done_at,
    Step.opened_at,
    Step.clock_started_at,
    Step.service_days,
    Step.legal_basis,
    Step.legal_days,
    Step.legal_months,
    Step.service_due,
    Step.legal_due,
    Step.due_date,
)
_CLOCK_STEPS = (
    select(*_CLOCK_COLUMNS).where(Step.case_id == bindparam("case_id")).order_by(Step.position)
)


def _clock_steps(case: Case) -> Sequence[Any]:
    """The case's steps as far as its clocks go: the loaded steps as they are, or else the
    columns above in one light query, with any step this session holds (and may have changed
    without flushing) standing in for its row."""
    session = object_session(case)
    if session is None or "steps" not in inspect(case).unloaded:
        return case.steps
    with session.no_autoflush:
        rows = session.execute(_CLOCK_STEPS, {"case_id": case.id}).all()
    held = session.identity_map
    return [held.get(identity_key(Step, row.id)) or row for row in rows]


def facts_for(case: Case) -> dict[str, date | datetime | None]:
    return _facts(case.newcomer, _clock_steps(case))


def _facts(newcomer: Newcomer, steps: Sequence[Any]) -> dict[str, date | datetime | None]:
    facts: dict[str, date | datetime | None] = {
        "arrival": newcomer.arrival_date,
        "permit_expiry": newcomer.permit_expiry,
        "move_in": newcomer.move_in_date,
    }
    for step in steps:
        if step.state == StepState.done:
            facts[f"done:{step.key}"] = step.done_at
            if step.key == "housing" and facts["move_in"] is None:
                facts["move_in"] = step.done_at
    return facts


def refresh_dues(case: Case) -> None:
    """Recompute each active step's due dates, and the case's next due date, from stored facts."""
    session = object_session(case)
    steps = _clock_steps(case)
    facts = _facts(case.newcomer, steps)
    active_dues = []
    for step in steps:
        if step.state not in ACTIVE_STEP_STATES:
            continue
        own = {**facts, "opened": step.opened_at, "started": step.clock_started_at}
        service = clocks.service_due(opened=step.opened_at, days=step.service_days)
        legal = clocks.legal_due(
            basis=step.legal_basis, days=step.legal_days, months=step.legal_months, facts=own
        )
        earliest = clocks.earliest(service, legal)
        # Assign only on change so an unchanged step keeps its version.
        if (step.service_due, step.legal_due, step.due_date) != (service, legal, earliest):
            if not isinstance(step, Step) and session is not None:  # a row: change the step
                step = session.get_one(Step, step.id)
            step.service_due, step.legal_due, step.due_date = service, legal, earliest
        active_dues.append(earliest)
    next_due = clocks.earliest(*active_dues)
    if case.next_due != next_due:
        case.next_due = next_due


@dataclass
class _Plan:
    """What an advance changed in memory, to be recorded once the rows have ids."""

    opened: list[Step] = field(default_factory=list)
    handoffs: list[Handoff] = field(default_factory=list)
    closed: bool = False


def consented_org_ids(session: Session, newcomer_id: int | None) -> set[int]:
    """The organisations the newcomer currently lets the Welcome Office share the case with."""
    if newcomer_id is None:
        return set()
    # Consents are flushed when given; pending steps and audit rows need not be flushed first.
    with session.no_autoflush:
        return set(
            session.scalars(
                select(Consent.organisation_id).where(
                    Consent.newcomer_id == newcomer_id,
                    Consent.purpose == "case_sharing",
                    Consent.revoked_at.is_(None),
                )
            )
        )


def _ready(case: Case) -> list[Step]:
    finished = {s.key for s in case.steps if s.state in FINISHED_STEP_STATES}
    return [
        s
        for s in case.steps
        if s.state == StepState.pending and all(n in finished for n in s.needs)
    ]


def _plan_advance(
    session: Session,
    *,
    actor: Actor,
    case: Case,
    now: datetime,
    only: set[str] | None = None,
    settle: bool = True,
) -> _Plan:
    """Open ready steps (all, or those named in ``only``) and, when settling, close or clear."""
    plan = _Plan()
    if case.status != CaseStatus.open:
        if case.advance_requested_at is not None:
            case.advance_requested_at = None
        return plan
    for step in _ready(case):
        if only is None or step.key in only:
            step.state = StepState.open
            step.opened_at = now
            plan.opened.append(step)
    receiving = [s for s in plan.opened if s.owner.receives_handoffs and s.owner.active]
    if receiving:
        consented = consented_org_ids(session, case.newcomer_id or case.newcomer.id)
        for step in receiving:
            plan.handoffs.append(
                _new_handoff(step=step, org=step.owner, consented=consented, actor=actor, now=now)
            )
    refresh_dues(case)
    if not settle:
        return plan
    if case.steps and all(s.state in FINISHED_STEP_STATES for s in case.steps):
        case.status = CaseStatus.closed
        case.closed_at = now
        plan.closed = True
    if not _ready(case) and case.advance_requested_at is not None:
        case.advance_requested_at = None
    return plan


def _record_advance(
    session: Session, *, actor: Actor, case: Case, plan: _Plan, now: datetime
) -> AdvanceResult:
    result = AdvanceResult(reference=case.reference)
    by_step = {h.step.id: h for h in plan.handoffs}
    for step in plan.opened:
        result.opened.append(step.key)
        audit.record(
            session,
            actor=actor,
            action="step.opened",
            entity_type="step",
            entity_id=step.id,
            case_id=case.id,
            now=now,
            details={"step": step.key, "owner": step.owner.key},
        )
        handoff = by_step.get(step.id)
        if handoff is not None:
            _announce_handoff(session, actor=actor, step=step, handoff=handoff, now=now)
            (result.offered if handoff.state == HandoffState.offered else result.held).append(
                handoff.id
            )
    if plan.closed:
        result.closed = True
        audit.record(
            session,
            actor=actor,
            action="case.closed",
            entity_type="case",
            entity_id=case.id,
            case_id=case.id,
            now=now,
        )
        if case.case_manager_id:
            enqueue(
                session,
                key=f"case_closed:{case.id}",
                kind="case_closed",
                now=now,
                case_id=case.id,
                recipient_user_id=case.case_manager_id,
                context={"reference": case.reference},
            )
    return result


def advance(session: Session, *, actor: Actor, case: Case, now: datetime) -> AdvanceResult:
    """Open the pending steps whose prerequisites are finished, hand them on, close a finished case.

    Idempotent: a step opens only on its pending -> open transition, so a second run finds
    nothing to do and records and sends nothing.
    """
    plan = _plan_advance(session, actor=actor, case=case, now=now)
    session.flush()  # ids for the audit trail and the outbox keys
    return _record_advance(session, actor=actor, case=case, plan=plan, now=now)


def _new_handoff(
    *, step: Step, org: Organisation, consented: set[int], actor: Actor, now: datetime
) -> Handoff:
    if any(h.state in ACTIVE_HANDOFF_STATES for h in step.handoffs):
        raise InvalidTransition(f"Step {step.key} of {step.case.reference} is already handed off.")
    ok = org.id in consented
    handoff = Handoff(
        case=step.case,
        organisation=org,
        state=HandoffState.offered if ok else HandoffState.held,
        hold_reason=None if ok else HOLD_CONSENT_MISSING,
        created_at=now,
        offered_at=now if ok else None,
        created_by_id=actor.user_id,
    )
    step.handoffs.append(handoff)
    return handoff


def _announce_handoff(
    session: Session, *, actor: Actor, step: Step, handoff: Handoff, now: datetime
) -> None:
    case = step.case
    org = handoff.organisation
    details = {"step": step.key, "organisation": org.key}
    if handoff.state == HandoffState.offered:
        audit.record(
            session,
            actor=actor,
            action="handoff.offered",
            entity_type="handoff",
            entity_id=handoff.id,
            case_id=case.id,
            now=now,
            details=details,
        )
        notify_offer(session, handoff=handoff, step=step, now=now)
        return
    audit.record(
        session,
        actor=actor,
        action="handoff.held",
        entity_type="handoff",
        entity_id=handoff.id,
        case_id=case.id,
        now=now,
        reason=HOLD_CONSENT_MISSING,
        details=details,
    )
    if case.case_manager_id:
        enqueue(
            session,
            key=f"handoff_held:{handoff.id}",
            kind="handoff_held",
            now=now,
            case_id=case.id,
            recipient_user_id=case.case_manager_id,
            context={"reference": case.reference, "step": step.key, "organisation": org.key},
        )


def create_handoff(
    session: Session, *, actor: Actor, step: Step, org: Organisation, now: datetime
) -> Handoff:
    """Hand a step to an organisation's queue, or hold it while consent is missing."""
    consented = consented_org_ids(session, step.case.newcomer_id)
    handoff = _new_handoff(step=step, org=org, consented=consented, actor=actor, now=now)
    session.flush()
    _announce_handoff(session, actor=actor, step=step, handoff=handoff, now=now)
    return handoff


def notify_offer(session: Session, *, handoff: Handoff, step: Step, now: datetime) -> None:
    """Tell the organisation a step is in its queue. A handoff offered again (after consent was
    revoked and given anew) is a new offer, so the key carries the offer time."""
    offered = handoff.offered_at or now
    key = f"handoff_offered:{handoff.id}"
    if offered != handoff.created_at:
        key += f":{offered.astimezone(UTC):%Y%m%dT%H%M%S}"
    enqueue(
        session,
        key=key,
        kind="handoff_offered",
        now=now,
        case_id=handoff.case_id,
        recipient_org_id=handoff.organisation_id,
        context={"reference": step.case.reference, "step": step.key, "handoff_id": handoff.id},
    )


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
        raise ValidationFailed(f"{case_manager!r} is not an active case manager.")
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


def start_clock(step: Step, now: datetime) -> None:
    """Work (re)starts with a complete file: a clock counting from "started" begins now."""
    step.clock_started_at = now


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
        raise InvalidTransition(f"Case {case.reference} is already {case.status}.")
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
