"""Organisations: the partners an administrator adds, renames and deactivates."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, require_admin
from tracker.clocks import utcnow
from tracker.enums import HandoffState, OrgKind, Role
from tracker.errors import ValidationFailed
from tracker.models import Handoff, Organisation
from tracker.pathway import PathwayRegistry, get_registry
from tracker.records import check_version, get_org

SETUP = Actor(username="system:setup", role=Role.admin)


def seed_organisations(
    session: Session, *, registry: PathwayRegistry | None = None, now: datetime | None = None
) -> list[str]:
    """Add the reference organisations that are missing; never touches existing ones."""
    now = now or utcnow()
    registry = registry or get_registry()
    existing = set(session.scalars(select(Organisation.key)))
    added = []
    for seed in registry.organisations:
        if seed.key in existing:
            continue
        org = Organisation(
            key=seed.key,
            name=seed.name,
            kind=seed.kind,
            receives_handoffs=seed.receives_handoffs,
            active=True,
        )
        session.add(org)
        session.flush()
        session.info.pop("organisations", None)
        audit.record(
            session,
            actor=SETUP,
            action="organisation.added",
            entity_type="organisation",
            entity_id=org.id,
            now=now,
            details={"key": seed.key},
        )
        added.append(seed.key)
    return added


def add_organisation(
    session: Session,
    *,
    actor: Actor,
    key: str,
    name: str,
    kind: OrgKind = OrgKind.network,
    receives_handoffs: bool = True,
    email: str | None = None,
    now: datetime | None = None,
) -> Organisation:
    require_admin(actor, "add organisations")
    now = now or utcnow()
    key = key.strip().lower()
    if not key or not all(c.isalnum() or c == "-" for c in key) or len(key) > 40:
        raise ValidationFailed(
            "An organisation key is up to 40 lowercase letters, digits or dashes."
        )
    if session.scalar(select(Organisation.id).where(Organisation.key == key)):
        raise ValidationFailed(
            "An organisation with key '{key}' exists already.",
            key=key,
        )
    org = Organisation(
        key=key,
        name=name.strip(),
        kind=kind,
        receives_handoffs=receives_handoffs,
        email=email,
        active=True,
    )
    session.add(org)
    session.flush()
    session.info.pop("organisations", None)
    audit.record(
        session,
        actor=actor,
        action="organisation.added",
        entity_type="organisation",
        entity_id=org.id,
        now=now,
        details={"key": key},
    )
    return org


def update_organisation(
    session: Session,
    *,
    actor: Actor,
    key: str,
    name: str | None = None,
    active: bool | None = None,
    email: str | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Organisation:
    """Rename, (de)activate or change the address of an organisation."""
    require_admin(actor, "change organisations")
    now = now or utcnow()
    org = get_org(session, key)
    check_version(org, expected_version, f"Organisation {key}")
    changed = []
    if name is not None and name.strip() and name.strip() != org.name:
        org.name = name.strip()
        changed.append("name")
    withdrawn: list[int] = []
    if active is not None and active != org.active:
        org.active = active
        changed.append("active")
        if not active:
            withdrawn = _withdraw_open_offers(session, actor=actor, org=org, now=now)
    if email is not None and email != org.email:
        org.email = email or None
        changed.append("email")
    if changed:
        audit.record(
            session,
            actor=actor,
            action="organisation.updated",
            entity_type="organisation",
            entity_id=org.id,
            now=now,
            details={
                "key": key,
                "fields": changed,
                "active": org.active,
                "withdrawn_handoffs": withdrawn,
            },
        )
        session.flush()
    return org


def _withdraw_open_offers(
    session: Session, *, actor: Actor, org: Organisation, now: datetime
) -> list[int]:
    """A deactivated organisation gets no new work: its unanswered and held offers go back to
    the case managers (accepted work stays with it until returned or completed)."""
    offers = session.scalars(
        select(Handoff).where(
            Handoff.organisation_id == org.id,
            Handoff.state.in_((HandoffState.offered, HandoffState.held)),
        )
    ).all()
    for handoff in offers:
        handoff.state = HandoffState.withdrawn
        handoff.reason = "organisation_deactivated"
        handoff.closed_at = now
        audit.record(
            session,
            actor=actor,
            action="handoff.withdrawn",
            entity_type="handoff",
            entity_id=handoff.id,
            case_id=handoff.case_id,
            now=now,
            reason="organisation_deactivated",
            details={"organisation": org.key},
        )
    return [h.id for h in offers]
