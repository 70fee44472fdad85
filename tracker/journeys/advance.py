"""What opens next: the one rule that opens ready steps, hands them on, closes a finished case."""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, require_case_manager
from tracker.clocks import utcnow
from tracker.enums import (
    FINISHED_STEP_STATES,
    CaseStatus,
    HandoffState,
    StepState,
)
from tracker.journeys.dues import refresh_dues
from tracker.journeys.offers import announce_handoff, consented_org_ids, new_handoff
from tracker.messages.outbox import enqueue
from tracker.models import Case, Handoff, Step
from tracker.records import get_case


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


def advance_case(
    session: Session, *, actor: Actor, reference: str, now: datetime | None = None
) -> AdvanceResult:
    """Open what has become possible and close what is finished; safe to run any number of times.

    This is the one rule of what happens next, in one transaction: the background task after
    a change (``tracker.journeys.background``), the batch flow and the clock sweep all call it.
    """
    require_case_manager(actor, "advance cases")
    case = get_case(session, reference)
    return advance(session, actor=actor, case=case, now=now or utcnow())


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


@dataclass
class _Plan:
    """What an advance changed in memory, to be recorded once the rows have ids."""

    opened: list[Step] = field(default_factory=list)
    handoffs: list[Handoff] = field(default_factory=list)
    closed: bool = False


def prerequisites_met(needs: Iterable[str], finished: Container[str]) -> bool:
    """What opens next, the heart of the tracker: a step may open once every step it needs is
    finished (done, or skipped as not applicable). The advance and the demo both ask this."""
    return all(n in finished for n in needs)


def steps_to_open(case: Case) -> list[Step]:
    """The case's pending steps whose prerequisites are all finished."""
    finished = {s.key for s in case.steps if s.state in FINISHED_STEP_STATES}
    return [
        s
        for s in case.steps
        if s.state == StepState.pending and prerequisites_met(s.needs, finished)
    ]


def _plan_advance(
    session: Session,
    *,
    actor: Actor,
    case: Case,
    now: datetime,
) -> _Plan:
    """Open the ready steps, hand them on, and close the case or clear its request."""
    plan = _Plan()
    if case.status != CaseStatus.open:
        if case.advance_requested_at is not None:
            case.advance_requested_at = None
        return plan
    for step in steps_to_open(case):
        step.state = StepState.open
        step.opened_at = now
        plan.opened.append(step)
    receiving = [s for s in plan.opened if s.owner.receives_handoffs and s.owner.active]
    if receiving:
        consented = consented_org_ids(session, case.newcomer_id or case.newcomer.id)
        for step in receiving:
            plan.handoffs.append(
                new_handoff(step=step, org=step.owner, consented=consented, actor=actor, now=now)
            )
    refresh_dues(case)
    if case.steps and all(s.state in FINISHED_STEP_STATES for s in case.steps):
        case.status = CaseStatus.closed
        case.closed_at = now
        plan.closed = True
    if case.advance_requested_at is not None:  # everything ready is open: request answered
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
            announce_handoff(session, actor=actor, step=step, handoff=handoff, now=now)
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
