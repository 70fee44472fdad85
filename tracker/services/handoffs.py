"""The handoff life cycle between the case manager and a partner organisation's queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, has_consent, require_case_manager
from tracker.enums import HandoffState, Role, StepState
from tracker.errors import InvalidTransition, PermissionDenied, ValidationFailed
from tracker.models import Handoff, Step
from tracker.outbox import enqueue
from tracker.services._base import check_version, get_org, get_step, utcnow
from tracker.services.cases import create_handoff, refresh_dues, start_clock
from tracker.services.steps import _reason, active_handoff, finish_step


def _current(step: Step, *states: HandoffState) -> Handoff:
    handoff = active_handoff(step)
    if handoff is None or handoff.state not in states:
        now_state = handoff.state if handoff else "not handed off"
        wanted = " or ".join(states)
        raise InvalidTransition(
            f"Step {step.key} of {step.case.reference} has no {wanted} handoff (it is {now_state})."
        )
    return handoff


def _require_receiver(session: Session, actor: Actor, handoff: Handoff, verb: str) -> None:
    """Only the receiving organisation's agents (or an admin) answer a handoff."""
    if actor.role == Role.admin:
        return
    if actor.role != Role.partner_agent or actor.organisation_id != handoff.organisation_id:
        raise PermissionDenied(f"Only {handoff.organisation.name} may {verb} this handoff.")
    if not has_consent(
        session, newcomer_id=handoff.step.case.newcomer_id, organisation_id=handoff.organisation_id
    ):
        raise PermissionDenied("The newcomer has not consented to share this case with you.")


def _answerable(
    session: Session, actor: Actor, step: Step, verb: str, *states: HandoffState
) -> Handoff:
    """The step's handoff in one of ``states``, for its receiver only.

    Who may answer is checked before the handoff's state: a partner that is not the receiver,
    or no longer has the newcomer's consent, is refused without learning what became of it."""
    current = active_handoff(step)
    if current is not None:
        _require_receiver(session, actor, current, verb)
    return _current(step, *states)


def _notify_manager(session: Session, *, handoff: Handoff, kind: str, now: datetime) -> None:
    case = handoff.step.case
    if case.case_manager_id:
        enqueue(
            session,
            key=f"{kind}:{handoff.id}",
            kind=kind,
            now=now,
            case_id=case.id,
            recipient_user_id=case.case_manager_id,
            context={
                "reference": case.reference,
                "step": handoff.step.key,
                "organisation": handoff.organisation.key,
            },
        )


def _audit(
    session: Session,
    actor: Actor,
    handoff: Handoff,
    action: str,
    now: datetime,
    reason: str | None = None,
) -> None:
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="handoff",
        entity_id=handoff.id,
        case_id=handoff.case_id,
        now=now,
        reason=reason,
        details={"step": handoff.step.key, "organisation": handoff.organisation.key},
    )


def offer_handoff(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    organisation: str | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Handoff:
    """Hand a step (again) to a partner: after a decline or return, or to another organisation."""
    require_case_manager(actor, "hand off steps")
    now = now or utcnow()
    step = get_step(session, reference, step_key)
    check_version(step, expected_version, f"Step {step_key} of {step.case.reference}")
    if step.state not in (StepState.open, StepState.in_progress, StepState.blocked):
        raise InvalidTransition(
            f"Step {step.key} is {step.state}; only an open step can be handed off."
        )
    org = get_org(session, organisation) if organisation else step.owner
    if not org.active:
        raise ValidationFailed(f"{org.name} is deactivated and cannot receive handoffs.")
    if not org.receives_handoffs:
        raise ValidationFailed(
            f"{org.name} does not work a queue in the tracker; follow this step up yourself."
        )
    current = active_handoff(step)
    if current is not None:
        if current.state == HandoffState.accepted:
            raise InvalidTransition(
                f"{current.organisation.name} has accepted step {step.key}; it must return the "
                "step before it can be handed to someone else."
            )
        # An unanswered or held offer is re-routed: the old one is withdrawn, visibly.
        _withdraw(session, actor, current, f"rerouted_to:{org.key}", now)
    previous_owner = step.owner.key
    if step.owner_org_id != org.id:
        step.owner = org
    if step.state == StepState.in_progress:
        step.state = StepState.open
    handoff = create_handoff(session, actor=actor, step=step, org=org, now=now)
    if previous_owner != org.key:
        audit.record(
            session,
            actor=actor,
            action="step.owner_changed",
            entity_type="step",
            entity_id=step.id,
            case_id=step.case_id,
            now=now,
            details={"step": step.key, "from": previous_owner, "to": org.key},
        )
    return handoff


def _withdraw(session: Session, actor: Actor, handoff: Handoff, reason: str, now: datetime) -> None:
    handoff.state = HandoffState.withdrawn
    handoff.reason = reason
    handoff.closed_at = now
    _audit(session, actor, handoff, "handoff.withdrawn", now, reason=reason)


def withdraw_handoff(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    reason: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Handoff:
    """Take back an offered or held handoff (the step returns to the case manager's own list)."""
    require_case_manager(actor, "withdraw handoffs")
    now = now or utcnow()
    text = _reason(reason, "withdrawn")
    step = get_step(session, reference, step_key)
    handoff = _current(step, HandoffState.offered, HandoffState.held)
    check_version(handoff, expected_version, f"The handoff of {step.key} for {step.case.reference}")
    _withdraw(session, actor, handoff, text, now)
    session.flush()
    return handoff


def accept_handoff(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Handoff:
    """The partner takes the step on; its work has started."""
    now = now or utcnow()
    step = get_step(session, reference, step_key, actor=actor)
    handoff = _answerable(session, actor, step, "accept", HandoffState.offered)
    check_version(handoff, expected_version, f"The handoff of {step.key} for {step.case.reference}")
    handoff.state = HandoffState.accepted
    handoff.accepted_at = now
    handoff.accepted_by_id = actor.user_id
    if step.state == StepState.open:
        step.state = StepState.in_progress
    if step.started_at is None:
        step.started_at = now
    start_clock(step, now)
    refresh_dues(step.case)
    _audit(session, actor, handoff, "handoff.accepted", now)
    session.flush()
    return handoff


def decline_handoff(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    reason: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Handoff:
    """The partner cannot take the step; it goes back to the case manager's queue."""
    now = now or utcnow()
    text = _reason(reason, "declined")
    step = get_step(session, reference, step_key, actor=actor)
    handoff = _answerable(session, actor, step, "decline", HandoffState.offered)
    check_version(handoff, expected_version, f"The handoff of {step.key} for {step.case.reference}")
    handoff.state = HandoffState.declined
    handoff.reason = text
    handoff.closed_at = now
    _audit(session, actor, handoff, "handoff.declined", now, reason=text)
    _notify_manager(session, handoff=handoff, kind="handoff_declined", now=now)
    session.flush()
    return handoff


def return_handoff(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    reason: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Handoff:
    """The partner gives an accepted step back, e.g. because the file turned out incomplete."""
    now = now or utcnow()
    text = _reason(reason, "returned")
    step = get_step(session, reference, step_key, actor=actor)
    handoff = _answerable(session, actor, step, "return", HandoffState.accepted)
    check_version(handoff, expected_version, f"The handoff of {step.key} for {step.case.reference}")
    handoff.state = HandoffState.returned
    handoff.reason = text
    handoff.closed_at = now
    if step.state in (StepState.in_progress, StepState.blocked):
        step.state = StepState.open
        step.blocked_reason = None
    _audit(session, actor, handoff, "handoff.returned", now, reason=text)
    _notify_manager(session, handoff=handoff, kind="handoff_returned", now=now)
    session.flush()
    return handoff


def complete_handoff(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    outcome: str | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Step:
    """The partner finished the step: it is done, and the advance opens what it unlocks."""
    step = get_step(session, reference, step_key, actor=actor)
    handoff = _answerable(session, actor, step, "complete", HandoffState.accepted)
    check_version(handoff, expected_version, f"The handoff of {step.key} for {step.case.reference}")
    return finish_step(session, actor=actor, step=step, outcome=outcome, now=now)
