"""The step life cycle: start, complete, block, resume and skip, each one audited change."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, has_consent
from tracker.clocks import utcnow
from tracker.enums import ACTIVE_HANDOFF_STATES, HandoffState, Role, StepState
from tracker.errors import InvalidTransition, PermissionDenied, ValidationFailed
from tracker.journeys.completion import Completed, Completion, complete_step, complete_steps
from tracker.journeys.dues import refresh_dues, request_advance, start_clock
from tracker.journeys.transitions import RESUMABLE, SKIPPABLE, STARTABLE, WORKABLE
from tracker.models import Handoff, Step
from tracker.records import check_version, get_step

__all__ = [
    "Completed",
    "Completion",
    "block_step",
    "complete_step",
    "complete_steps",
    "skip_step",
    "start_step",
]


def active_handoff(step: Step) -> Handoff | None:
    for handoff in step.handoffs:
        if handoff.state in ACTIVE_HANDOFF_STATES:
            return handoff
    return None


def require_step_actor(session: Session, actor: Actor, step: Step, verb: str) -> None:
    """Case managers work every step; a partner only a step its organisation accepted."""
    if actor.manages_cases:
        return
    if actor.role == Role.partner_agent:
        handoff = active_handoff(step)
        if (
            handoff is not None
            and handoff.state == HandoffState.accepted
            and handoff.organisation_id == actor.organisation_id
            and has_consent(
                session, newcomer_id=step.case.newcomer_id, organisation_id=handoff.organisation_id
            )
        ):
            return
        raise PermissionDenied(
            "You may only {verb} steps your organisation has accepted; step {step} of "
            "{reference} is not one of them.",
            verb=verb,
            step=step.key,
            reference=step.case.reference,
        )
    raise PermissionDenied(
        "{role} may not {verb} steps.",
        role=actor.role,
        verb=verb,
    )


def required_reason(reason: str | None, verb: str) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise ValidationFailed(
            "Say why the step is {state}: a reason is required.",
            state=verb,
        )
    if len(text) > 2000:
        raise ValidationFailed("The reason is too long (2,000 characters at most).")
    return text


def _load(
    session: Session,
    actor: Actor,
    reference: str,
    step_key: str,
    expected_version: int | None,
    verb: str,
) -> Step:
    """The step, once the actor may work on it (before its version or state is told)."""
    if not (actor.manages_cases or actor.is_partner):
        raise PermissionDenied(
            "{role} may not {verb} steps.",
            role=actor.role,
            verb=verb,
        )
    step = get_step(session, reference, step_key, actor=actor)
    require_step_actor(session, actor, step, verb)
    check_version(step, expected_version, f"Step {step_key} of {step.case.reference}")
    return step


def start_step(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Step:
    """Mark work on an open step as begun, or resume a blocked one."""
    now = now or utcnow()
    step = _load(session, actor, reference, step_key, expected_version, "start")
    if step.state not in (*STARTABLE, *RESUMABLE):
        raise InvalidTransition(
            "Step {step} is {state}; only an open or blocked step can be started.",
            step=step.key,
            state=step.state,
        )
    resumed = step.state in RESUMABLE
    step.state = StepState.in_progress
    step.blocked_reason = None
    if step.started_at is None:
        step.started_at = now
    # Starting, or resuming after a block such as "documents missing", means the file is
    # complete now: a legal clock that counts from the start counts from here (§6 BQFG).
    start_clock(step, now)
    refresh_dues(step.case)
    audit.record(
        session,
        actor=actor,
        action="step.resumed" if resumed else "step.started",
        entity_type="step",
        entity_id=step.id,
        case_id=step.case_id,
        now=now,
        details={"step": step.key},
    )
    session.flush()
    return step


def block_step(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    reason: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Step:
    """Mark a step as waiting, with a stated reason (e.g. documents missing).

    Legal clocks keep running while a step is blocked, so reminders and escalations go on; a
    clock that counts from the start of work restarts when the step is resumed.
    """
    now = now or utcnow()
    text = required_reason(reason, "blocked")
    step = _load(session, actor, reference, step_key, expected_version, "block")
    if step.state not in WORKABLE:
        raise InvalidTransition(
            "Step {step} is {state}; only an open or in-progress step can be blocked.",
            step=step.key,
            state=step.state,
        )
    step.state = StepState.blocked
    step.blocked_reason = text
    audit.record(
        session,
        actor=actor,
        action="step.blocked",
        entity_type="step",
        entity_id=step.id,
        case_id=step.case_id,
        now=now,
        reason=text,
        details={"step": step.key},
    )
    session.flush()
    return step


def skip_step(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    reason: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Step:
    """Waive a step that does not apply (e.g. no entitlement to an integration course)."""
    now = now or utcnow()
    text = required_reason(reason, "skipped")
    if not actor.manages_cases:
        raise PermissionDenied("Only case managers may skip steps.")
    step = _load(session, actor, reference, step_key, expected_version, "skip")
    if step.state not in SKIPPABLE:
        raise InvalidTransition(
            "Step {step} is already {state}.",
            step=step.key,
            state=step.state,
        )
    step.state = StepState.skipped
    step.skip_reason = text
    step.blocked_reason = None
    step.done_at = now
    handoff = active_handoff(step)
    if handoff is not None:
        handoff.state = HandoffState.withdrawn
        handoff.reason = "step_skipped"
        handoff.closed_at = now
    audit.record(
        session,
        actor=actor,
        action="step.skipped",
        entity_type="step",
        entity_id=step.id,
        case_id=step.case_id,
        now=now,
        reason=text,
        details={"step": step.key, "handoff_id": handoff.id if handoff else None},
    )
    request_advance(step.case, now)
    refresh_dues(step.case)
    session.flush()
    return step
