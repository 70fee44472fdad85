"""The handoff life cycle between the case manager and a partner organisation's queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import Actor, has_consent, require_case_manager
from tracker.clocks import utcnow
from tracker.enums import HandoffState, Role, StepState
from tracker.errors import N_, InvalidTransition, PermissionDenied, ValidationFailed
from tracker.journeys.completion import Completed, Completion, NotTheHolder, complete_steps
from tracker.journeys.dues import refresh_dues, start_clock
from tracker.journeys.offers import create_handoff
from tracker.journeys.steps import active_handoff, required_reason
from tracker.journeys.transitions import (
    ANSWERABLE,
    HELD_BY_PARTNER,
    OFFERABLE,
    REROUTABLE,
    WITHDRAWABLE,
)
from tracker.messages.outbox import enqueue
from tracker.models import Handoff, Step
from tracker.records import check_version, get_org, get_step


def _current(step: Step, *states: HandoffState, actor: Actor | None = None) -> Handoff:
    handoff = active_handoff(step)
    if handoff is not None and handoff.state in states:
        return handoff
    if handoff is None:
        done = _completed_for(step, actor)
        if done is not None:
            raise InvalidTransition(
                "Step {step} of {reference} was already completed by {organisation} on "
                "{day:%d.%m.%Y}: there is no {wanted_state} handoff left to act on.",
                step=step.key,
                reference=step.case.reference,
                organisation=done.organisation.name,
                day=clocks.local_today(done.closed_at),
                wanted_state=states,
            )
        raise InvalidTransition(
            "Step {step} of {reference} has no {wanted_state} handoff (it is not handed off).",
            step=step.key,
            reference=step.case.reference,
            wanted_state=states,
        )
    raise InvalidTransition(
        "Step {step} of {reference} has no {wanted_state} handoff (it is {state}).",
        step=step.key,
        reference=step.case.reference,
        wanted_state=states,
        state=handoff.state,
    )


def _completed_for(step: Step, actor: Actor | None) -> Handoff | None:
    """The step's last handoff if it was completed and the actor may know of it: the case
    manager, or the organisation that completed it (another partner learns nothing of it)."""
    last = max(step.handoffs, key=lambda h: h.id, default=None)
    if last is None or last.state != HandoffState.completed or last.closed_at is None:
        return None
    if (
        actor is not None
        and not actor.manages_cases
        and actor.organisation_id != last.organisation_id
    ):
        return None
    return last


def _require_receiver(session: Session, actor: Actor, handoff: Handoff, verb: str) -> None:
    """Only the receiving organisation's agents (or an admin) answer a handoff."""
    if actor.role == Role.admin:
        return
    if actor.role != Role.partner_agent or actor.organisation_id != handoff.organisation_id:
        raise PermissionDenied(
            "Only {organisation} may {verb} this handoff.",
            organisation=handoff.organisation.name,
            verb=verb,
        )
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
    return _current(step, *states, actor=actor)


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
    if step.state not in OFFERABLE:
        raise InvalidTransition(
            "Step {step} is {state}; only an open step can be handed off.",
            step=step.key,
            state=step.state,
        )
    org = get_org(session, organisation) if organisation else step.owner
    if not org.active:
        raise ValidationFailed(
            "{organisation} is deactivated and cannot receive handoffs.",
            organisation=org.name,
        )
    if not org.receives_handoffs:
        raise ValidationFailed(
            "{organisation} does not work a queue in the tracker; follow this step up yourself.",
            organisation=org.name,
        )
    current = active_handoff(step)
    if current is not None:
        if current.state not in REROUTABLE:
            raise InvalidTransition(
                "{organisation} has accepted step {step}; it must return the step before it "
                "can be handed to someone else.",
                organisation=current.organisation.name,
                step=step.key,
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
    text = required_reason(reason, "withdrawn")
    step = get_step(session, reference, step_key)
    handoff = _current(step, *WITHDRAWABLE)
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
    handoff = _answerable(session, actor, step, "accept", *ANSWERABLE)
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
    return _send_back(
        session,
        actor=actor,
        reference=reference,
        step_key=step_key,
        reason=reason,
        expected_version=expected_version,
        now=now or utcnow(),
        answered=ANSWERABLE,
        to=HandoffState.declined,
    )


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
    return _send_back(
        session,
        actor=actor,
        reference=reference,
        step_key=step_key,
        reason=reason,
        expected_version=expected_version,
        now=now or utcnow(),
        answered=HELD_BY_PARTNER,
        to=HandoffState.returned,
    )


# What sending a step back is called, by the state it ends in: (verb, past tense).
_SENT_BACK = {
    HandoffState.declined: (N_("decline"), "declined"),
    HandoffState.returned: (N_("return"), "returned"),
}


def _send_back(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    reason: str,
    expected_version: int | None,
    now: datetime,
    answered: tuple[HandoffState, ...],
    to: HandoffState,
) -> Handoff:
    """Decline an offered or return an accepted handoff: the step goes back to the case
    manager's queue with the partner's reason, and the case manager is told."""
    verb, done = _SENT_BACK[to]
    text = required_reason(reason, done)
    step = get_step(session, reference, step_key, actor=actor)
    handoff = _answerable(session, actor, step, verb, *answered)
    check_version(handoff, expected_version, f"The handoff of {step.key} for {step.case.reference}")
    handoff.state = to
    handoff.reason = text
    handoff.closed_at = now
    if to == HandoffState.returned and step.state in (StepState.in_progress, StepState.blocked):
        # The partner had been working it: the step is open again for whoever takes it next.
        step.state = StepState.open
        step.blocked_reason = None
    _audit(session, actor, handoff, f"handoff.{done}", now, reason=text)
    _notify_manager(session, handoff=handoff, kind=f"handoff_{done}", now=now)
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
) -> Completed:
    """The partner finished the step: it is done, and the advance opens what it unlocks.

    The completion's one path (``complete_steps``) checks that the actor holds the accepted
    handoff; if not, the step is loaded here to say why, as every handoff action says it."""
    try:
        (completed,) = complete_steps(
            session,
            actor=actor,
            items=[Completion(reference, step_key, outcome, None, expected_version)],
            now=now,
            by="holder",
        )
    except NotTheHolder:
        step = get_step(session, reference, step_key, actor=actor)
        _answerable(session, actor, step, "complete", *HELD_BY_PARTNER)
        raise InvalidTransition(  # noqa: B904 (the refusal is the answer, not the lookup)
            "Step {step} of {reference} has no accepted handoff of yours to complete.",
            step=step_key,
            reference=reference,
        )
    return completed
