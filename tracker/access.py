"""Who may do what: scope is enforced here, below every screen, CLI command and flow."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from tracker.enums import HandoffState, Role
from tracker.errors import NotFoundError, PermissionDenied
from tracker.models import Consent, Handoff, Organisation, User

# Handoff states in which the receiving organisation may see the case.
VISIBLE_TO_PARTNER = (HandoffState.offered, HandoffState.accepted, HandoffState.completed)


@dataclass(frozen=True)
class Actor:
    """The person (or scheduled job) on whose behalf a query or change runs."""

    username: str
    role: Role
    user_id: int | None = None
    organisation_id: int | None = None
    organisation_key: str | None = None

    @property
    def is_system(self) -> bool:
        return self.user_id is None

    @property
    def manages_cases(self) -> bool:
        return self.role in (Role.case_manager, Role.admin)

    @property
    def is_partner(self) -> bool:
        return self.role == Role.partner_agent


def system_actor(job: str) -> Actor:
    """The actor for scheduled work (sweeps, flows); it acts with case-manager rights."""
    return Actor(username=f"system:{job}", role=Role.case_manager)


def actor_for(session: Session, username: str) -> Actor:
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise NotFoundError(f"No user called {username!r}.")
    if not user.active:
        raise PermissionDenied(f"User {username!r} is deactivated.")
    org_key = None
    if user.organisation_id is not None:
        org_key = session.get_one(Organisation, user.organisation_id).key
    return Actor(
        username=user.username,
        role=Role(user.role),
        user_id=user.id,
        organisation_id=user.organisation_id,
        organisation_key=org_key,
    )


def require_case_manager(actor: Actor, what: str) -> None:
    if not actor.manages_cases:
        raise PermissionDenied(f"Only case managers may {what}; {actor.username} is {actor.role}.")


def require_admin(actor: Actor, what: str) -> None:
    if actor.role != Role.admin:
        raise PermissionDenied(f"Only administrators may {what}.")


def require_person_access(actor: Actor) -> None:
    """Leadership sees aggregates only; no person-level read is open to it."""
    if actor.role == Role.leadership:
        raise PermissionDenied("Leadership sees aggregate figures only, not individual cases.")


# A consent that counts: to share the case, and not revoked.
CURRENT_CONSENT = (Consent.purpose == "case_sharing", Consent.revoked_at.is_(None))


def has_consent_clause(newcomer_id_col, organisation_id_col):  # type: ignore[no-untyped-def]
    """SQL condition: the newcomer currently consents to sharing with the organisation."""
    return exists().where(
        Consent.newcomer_id == newcomer_id_col,
        Consent.organisation_id == organisation_id_col,
        *CURRENT_CONSENT,
    )


def has_consent(session: Session, *, newcomer_id: int, organisation_id: int) -> bool:
    return bool(session.scalar(select(has_consent_clause(newcomer_id, organisation_id))))


def partner_may_see_case(session: Session, actor: Actor, *, case_id: int, newcomer_id: int) -> bool:
    """A partner sees a case only if it was handed to its organisation and consent stands."""
    if actor.organisation_id is None:
        return False
    handed = session.scalar(
        select(
            exists().where(
                Handoff.case_id == case_id,
                Handoff.organisation_id == actor.organisation_id,
                Handoff.state.in_(VISIBLE_TO_PARTNER),
            )
        )
    )
    return bool(handed) and has_consent(
        session, newcomer_id=newcomer_id, organisation_id=actor.organisation_id
    )


def require_partner_org(actor: Actor, organisation_id: int, what: str) -> None:
    if actor.is_partner and actor.organisation_id != organisation_id:
        raise PermissionDenied(f"You may only {what} for your own organisation.")
    if not actor.is_partner and not actor.manages_cases:
        raise PermissionDenied(f"{actor.role} may not {what}.")
