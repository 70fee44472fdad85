"""Handing a step to a partner's queue, or holding it while the newcomer's consent is missing."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import CURRENT_CONSENT, Actor
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    HandoffState,
)
from tracker.errors import InvalidTransition
from tracker.messages.outbox import enqueue
from tracker.models import Consent, Handoff, Organisation, Step

HOLD_CONSENT_MISSING = "consent_missing"


HOLD_CONSENT_REVOKED = "consent_revoked"


def consented_org_ids(session: Session, newcomer_id: int | None) -> set[int]:
    """The organisations the newcomer currently lets the Welcome Office share the case with."""
    if newcomer_id is None:
        return set()
    # Consents are flushed when given; pending steps and audit rows need not be flushed first.
    with session.no_autoflush:
        return set(
            session.scalars(
                select(Consent.organisation_id).where(
                    Consent.newcomer_id == newcomer_id, *CURRENT_CONSENT
                )
            )
        )


def new_handoff(
    *, step: Step, org: Organisation, consented: set[int], actor: Actor, now: datetime
) -> Handoff:
    if any(h.state in ACTIVE_HANDOFF_STATES for h in step.handoffs):
        raise InvalidTransition(
            "Step {step} of {reference} is already handed off.",
            step=step.key,
            reference=step.case.reference,
        )
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


def announce_handoff(
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
    handoff = new_handoff(step=step, org=org, consented=consented, actor=actor, now=now)
    session.flush()
    announce_handoff(session, actor=actor, step=step, handoff=handoff, now=now)
    return handoff


def notify_offer(session: Session, *, handoff: Handoff, step: Step, now: datetime) -> None:
    """Tell the organisation a step is in its queue (once per offer, see ``offer_key``)."""
    enqueue(
        session,
        key=offer_key(handoff.id, handoff.created_at, handoff.offered_at or now),
        kind="handoff_offered",
        now=now,
        case_id=handoff.case_id,
        recipient_org_id=handoff.organisation_id,
        context={"reference": step.case.reference, "step": step.key, "handoff_id": handoff.id},
    )


def offer_key(handoff_id: int, created_at: datetime, offered_at: datetime) -> str:
    """The outbox key of an offer. A handoff offered later than it was created (released once
    consent came, or offered again after consent was revoked and given anew) is a new offer,
    so its key carries the offer time."""
    key = f"handoff_offered:{handoff_id}"
    if offered_at != created_at:
        key += f":{offered_at.astimezone(UTC):%Y%m%dT%H%M%S}"
    return key
