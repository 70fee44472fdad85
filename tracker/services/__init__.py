"""Every change to the tracker goes through one of these functions, inside one transaction."""

from tracker.services.admin import (
    add_organisation,
    add_user,
    seed_organisations,
    update_organisation,
)
from tracker.services.cases import (
    AdvanceResult,
    advance_awaiting,
    advance_case,
    cancel_case,
    cases_awaiting_advance,
    open_case,
    open_ready_step,
    ready_steps,
    reassign_case,
    register_newcomer,
    settle_case,
    update_newcomer,
)
from tracker.services.consent import give_consent, revoke_consent
from tracker.services.handoffs import (
    accept_handoff,
    complete_handoff,
    decline_handoff,
    offer_handoff,
    return_handoff,
    withdraw_handoff,
)
from tracker.services.steps import block_step, complete_step, skip_step, start_step

__all__ = [
    "AdvanceResult",
    "accept_handoff",
    "add_organisation",
    "add_user",
    "advance_awaiting",
    "advance_case",
    "block_step",
    "cancel_case",
    "cases_awaiting_advance",
    "complete_handoff",
    "complete_step",
    "decline_handoff",
    "give_consent",
    "offer_handoff",
    "open_case",
    "open_ready_step",
    "ready_steps",
    "reassign_case",
    "register_newcomer",
    "return_handoff",
    "revoke_consent",
    "seed_organisations",
    "settle_case",
    "skip_step",
    "start_step",
    "update_newcomer",
    "update_organisation",
    "withdraw_handoff",
]
