"""Handing a step to a partner's queue, or holding it while the newcomer's consent is missing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import CURRENT_CONSENT, Actor
from tracker.bulk import among
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    HandoffState,
)
from tracker.errors import InvalidTransition
from tracker.messages.outbox import OutboxItem, enqueue_many
from tracker.models import Consent, Handoff, Organisation, Step

HOLD_CONSENT_MISSING = "consent_missing"


HOLD_CONSENT_REVOKED = "consent_revoked"


def consented_org_ids(session: Session, newcomer_id: int | None) -> set[int]:
    """The organisations the newcomer currently lets the Welcome Office share the case with."""
    if newcomer_id is None:
        return set()
    return consented_org_ids_many(session, {newcomer_id}).get(newcomer_id, set())


def consented_org_ids_many(session: Session, newcomer_ids: Iterable[int]) -> dict[int, set[int]]:
    """``consented_org_ids`` for many newcomers: one query per 500 of them."""
    wanted = sorted(newcomer_ids)
    out: dict[int, set[int]] = {}
    # Consents are flushed when given; pending steps and audit rows need not be flushed first.
    conn = session.connection()
    for i in range(0, len(wanted), 500):
        for newcomer_id, organisation_id in conn.execute(_CONSENTED, {"ids": wanted[i : i + 500]}):
            out.setdefault(newcomer_id, set()).add(organisation_id)
    return out


_CONSENTED = select(Consent.newcomer_id, Consent.organisation_id).where(
    among(Consent.newcomer_id, "ids"), *CURRENT_CONSENT
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


@dataclass(frozen=True)
class NewHandoff:
    """What announcing a new handoff needs to know, as plain values (the advance writes its
    handoffs set-wise and has no objects for them)."""

    handoff_id: int
    state: HandoffState
    case_id: int
    reference: str
    case_manager_id: int | None
    step_key: str
    organisation_id: int
    organisation_key: str
    created_at: datetime
    offered_at: datetime | None

    @classmethod
    def of(cls, step: Step, handoff: Handoff) -> NewHandoff:
        return cls(
            handoff_id=handoff.id,
            state=handoff.state,
            case_id=step.case.id,
            reference=step.case.reference,
            case_manager_id=step.case.case_manager_id,
            step_key=step.key,
            organisation_id=handoff.organisation_id,
            organisation_key=handoff.organisation.key,
            created_at=handoff.created_at,
            offered_at=handoff.offered_at,
        )


def handoff_announcement(new: NewHandoff, now: datetime) -> tuple[audit.Entry, OutboxItem | None]:
    """What a new handoff records and sends: an offer is announced to the partner; a held one is
    recorded with its reason, and its case manager told (if the case has one)."""
    details = {"step": new.step_key, "organisation": new.organisation_key}
    if new.state == HandoffState.offered:
        return (
            audit.Entry("handoff.offered", "handoff", new.handoff_id, new.case_id, details),
            _offer_message(new, now),
        )
    entry = audit.Entry(
        "handoff.held", "handoff", new.handoff_id, new.case_id, details, reason=HOLD_CONSENT_MISSING
    )
    if not new.case_manager_id:
        return entry, None
    return entry, OutboxItem(
        key=f"handoff_held:{new.handoff_id}",
        kind="handoff_held",
        case_id=new.case_id,
        recipient_user_id=new.case_manager_id,
        context={"reference": new.reference, **details},
    )


def announce_handoff(
    session: Session, *, actor: Actor, step: Step, handoff: Handoff, now: datetime
) -> None:
    """Record and send what a new handoff calls for (``handoff_announcement``)."""
    entry, message = handoff_announcement(NewHandoff.of(step, handoff), now)
    audit.record_entries(session, actor=actor, now=now, entries=[entry])
    if message is not None:
        enqueue_many(session, now=now, messages=[message])


def create_handoff(
    session: Session, *, actor: Actor, step: Step, org: Organisation, now: datetime
) -> Handoff:
    """Hand a step to an organisation's queue, or hold it while consent is missing."""
    consented = consented_org_ids(session, step.case.newcomer_id)
    handoff = new_handoff(step=step, org=org, consented=consented, actor=actor, now=now)
    session.flush()
    announce_handoff(session, actor=actor, step=step, handoff=handoff, now=now)
    return handoff


def _offer_message(new: NewHandoff, now: datetime) -> OutboxItem:
    """The message that tells the organisation a step is in its queue (once per offer, see
    ``offer_key``)."""
    return OutboxItem(
        key=offer_key(new.handoff_id, new.created_at, new.offered_at or now),
        kind="handoff_offered",
        case_id=new.case_id,
        recipient_org_id=new.organisation_id,
        context={"reference": new.reference, "step": new.step_key, "handoff_id": new.handoff_id},
    )


def notify_offer(session: Session, *, handoff: Handoff, step: Step, now: datetime) -> None:
    """Queue the message of this offer to its organisation."""
    enqueue_many(session, now=now, messages=[_offer_message(NewHandoff.of(step, handoff), now)])


def offer_key(handoff_id: int, created_at: datetime, offered_at: datetime) -> str:
    """The outbox key of an offer. A handoff offered later than it was created (released once
    consent came, or offered again after consent was revoked and given anew) is a new offer,
    so its key carries the offer time."""
    key = f"handoff_offered:{handoff_id}"
    if offered_at != created_at:
        key += f":{offered_at.astimezone(UTC):%Y%m%dT%H%M%S}"
    return key
