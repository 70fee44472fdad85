"""Consent to share a case, given per organisation, revocable, documented (Art. 7 GDPR)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import CURRENT_CONSENT, PARTNER_QUEUE_STATES, Actor, require_case_manager
from tracker.clocks import utcnow
from tracker.enums import CaseStatus, ConsentMethod, HandoffState, StepState
from tracker.errors import InvalidTransition, ValidationFailed
from tracker.journeys.offers import HOLD_CONSENT_MISSING, HOLD_CONSENT_REVOKED, notify_offer
from tracker.models import Case, Consent, Handoff, Step
from tracker.records import get_case, get_org
from tracker.schemas import LANGUAGES


def _open_case_id(session: Session, newcomer_id: int) -> int | None:
    return session.scalar(
        select(Case.id).where(Case.newcomer_id == newcomer_id, Case.status == CaseStatus.open)
    )


def give_consent(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    organisation: str,
    method: ConsentMethod,
    notice_language: str,
    now: datetime | None = None,
) -> Consent:
    """Record consent; handoffs held for it go to the organisation's queue at once."""
    require_case_manager(actor, "record consent")
    now = now or utcnow()
    if notice_language not in LANGUAGES:
        raise ValidationFailed(
            "Notice language must be one of {languages}.",
            languages=", ".join(LANGUAGES),
        )
    case = get_case(session, reference)
    org = get_org(session, organisation)
    current = session.scalars(
        select(Consent).where(
            Consent.newcomer_id == case.newcomer_id,
            Consent.organisation_id == org.id,
            *CURRENT_CONSENT,
        )
    ).first()
    if current is not None:
        raise InvalidTransition(
            "Consent for {organisation} is already recorded.",
            organisation=org.name,
        )
    consent = Consent(
        newcomer_id=case.newcomer_id,
        organisation_id=org.id,
        method=method,
        notice_language=notice_language,
        given_at=now,
        recorded_by_id=actor.user_id,
    )
    session.add(consent)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="consent.given",
        entity_type="consent",
        entity_id=consent.id,
        case_id=case.id,
        now=now,
        details={"organisation": org.key, "method": method, "notice_language": notice_language},
    )
    held = session.scalars(
        select(Handoff)
        .join(Step, Handoff.step_id == Step.id)
        .join(Case, Step.case_id == Case.id)
        .where(
            Case.newcomer_id == case.newcomer_id,
            Handoff.organisation_id == org.id,
            Handoff.state == HandoffState.held,
            Handoff.hold_reason.in_((HOLD_CONSENT_MISSING, HOLD_CONSENT_REVOKED)),
        )
    ).all()
    for handoff in held:
        handoff.state = HandoffState.offered
        handoff.hold_reason = None
        handoff.offered_at = now
        audit.record(
            session,
            actor=actor,
            action="handoff.released",
            entity_type="handoff",
            entity_id=handoff.id,
            case_id=handoff.case_id,
            now=now,
            details={"step": handoff.step.key, "organisation": org.key},
        )
        notify_offer(session, handoff=handoff, step=handoff.step, now=now)
    session.flush()
    return consent


def revoke_consent(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    organisation: str,
    now: datetime | None = None,
) -> Consent:
    """Withdraw consent; the organisation loses sight of the case at once, the case goes on."""
    require_case_manager(actor, "record a revocation of consent")
    now = now or utcnow()
    case = get_case(session, reference)
    org = get_org(session, organisation)
    consent = session.scalars(
        select(Consent).where(
            Consent.newcomer_id == case.newcomer_id,
            Consent.organisation_id == org.id,
            *CURRENT_CONSENT,
        )
    ).first()
    if consent is None:
        raise InvalidTransition(
            "There is no consent for {organisation} to revoke.",
            organisation=org.name,
        )
    consent.revoked_at = now
    consent.revoked_by_id = actor.user_id
    audit.record(
        session,
        actor=actor,
        action="consent.revoked",
        entity_type="consent",
        entity_id=consent.id,
        case_id=case.id,
        now=now,
        details={"organisation": org.key},
    )
    active = session.scalars(
        select(Handoff)
        .join(Case, Handoff.case_id == Case.id)
        .where(
            Case.newcomer_id == case.newcomer_id,
            Handoff.organisation_id == org.id,
            Handoff.state.in_(PARTNER_QUEUE_STATES),
        )
    ).all()
    for handoff in active:
        if handoff.state == HandoffState.accepted:
            # Nobody at the organisation may work on it now; when consent returns, the
            # step is offered afresh and must be accepted again.
            handoff.accepted_at = None
            handoff.accepted_by_id = None
            if handoff.step.state == StepState.in_progress:
                handoff.step.state = StepState.open
        handoff.state = HandoffState.held
        handoff.hold_reason = HOLD_CONSENT_REVOKED
        audit.record(
            session,
            actor=actor,
            action="handoff.held",
            entity_type="handoff",
            entity_id=handoff.id,
            case_id=handoff.case_id,
            now=now,
            reason=HOLD_CONSENT_REVOKED,
            details={"step": handoff.step.key, "organisation": org.key},
        )
    session.flush()
    return consent
