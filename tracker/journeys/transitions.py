"""The step and handoff life cycle as data: from which states each action may be taken.

The services in ``steps`` and ``handoffs`` refuse an action outside these states (they check
the same tables); screens ask ``available_actions`` which actions to offer, so a form never shows
a button that can only fail. Who may act at all (role, consent, the receiving organisation) is
the services' business and is checked there; this only says what a state allows.
"""

from __future__ import annotations

from tracker.access import Actor
from tracker.enums import ACTIVE_STEP_STATES, HandoffState, StepState

# The step states a step action starts from.
STARTABLE = (StepState.open,)
RESUMABLE = (StepState.blocked,)
WORKABLE = (StepState.open, StepState.in_progress)  # complete or block
SKIPPABLE = (StepState.pending, StepState.open, StepState.in_progress, StepState.blocked)
OFFERABLE = tuple(s for s in StepState if s in ACTIVE_STEP_STATES)

# The handoff state a handoff action answers (``None``: the step has no active handoff).
ANSWERABLE = (HandoffState.offered,)  # accept or decline
HELD_BY_PARTNER = (HandoffState.accepted,)  # complete or return
WITHDRAWABLE = (HandoffState.offered, HandoffState.held)
# A step is handed (again) unless a partner has accepted it: an unanswered or held offer is
# re-routed, an accepted one must be returned first.
REROUTABLE = (None, HandoffState.offered, HandoffState.held)

# What a case manager may do with a step, in the order a form lists them.
CASE_MANAGER_ACTIONS = ("complete", "start", "resume", "block", "skip", "offer", "withdraw")
# What the receiving partner does with a handoff.
PARTNER_ACTIONS = ("accept", "decline", "complete", "return")

_STEP_RULES: dict[str, tuple[StepState, ...]] = {
    "complete": WORKABLE,
    "start": STARTABLE,
    "resume": RESUMABLE,
    "block": WORKABLE,
    "skip": SKIPPABLE,
    "offer": OFFERABLE,
    "withdraw": OFFERABLE,
}
_HANDOFF_RULES: dict[str, tuple[HandoffState | None, ...]] = {
    "offer": REROUTABLE,
    "withdraw": WITHDRAWABLE,
}
_ANY_STEP = tuple(StepState)
_PARTNER_RULES: dict[str, tuple[tuple[HandoffState, ...], tuple[StepState, ...]]] = {
    "accept": (ANSWERABLE, _ANY_STEP),
    "decline": (ANSWERABLE, _ANY_STEP),
    "complete": (HELD_BY_PARTNER, WORKABLE),
    "return": (HELD_BY_PARTNER, _ANY_STEP),
}


def available_actions(
    actor: Actor,
    *,
    step_state: str,
    handoff_state: str | None,
    case_open: bool = True,
) -> list[str]:
    """The actions that apply to a step in this state, for this kind of actor.

    For a case manager (or administrator) ``handoff_state`` is the step's active handoff; for a
    partner, its own organisation's (a partner answers handoffs: accept, decline, complete,
    return). A closed or cancelled case offers nothing."""
    if not case_open:
        return []
    step = StepState(step_state)
    handoff = HandoffState(handoff_state) if handoff_state else None
    if actor.manages_cases:
        return [
            action
            for action in CASE_MANAGER_ACTIONS
            if step in _STEP_RULES[action]
            and (action not in _HANDOFF_RULES or handoff in _HANDOFF_RULES[action])
        ]
    if actor.is_partner and handoff is not None:
        return [
            action
            for action in PARTNER_ACTIONS
            if handoff in _PARTNER_RULES[action][0] and step in _PARTNER_RULES[action][1]
        ]
    return []
