"""Users: the accounts an administrator keeps, and the first administrator of an installation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, require_admin
from tracker.admin.organisations import SETUP
from tracker.clocks import utcnow
from tracker.enums import Role
from tracker.errors import PermissionDenied, ValidationFailed
from tracker.models import User
from tracker.records import check_version, get_org, get_user

# What screens show for a person of staff (tracker.admin.queries.staff_names); the column holds
# up to 200 characters and the database refuses a blank one (migration 0008).
DISPLAY_NAME_MAX = 200


def clean_display_name(display_name: str) -> str:
    """A display name as stored: single spaces, not blank, not longer than the column."""
    name = " ".join((display_name or "").split())
    if not name or len(name) > DISPLAY_NAME_MAX:
        raise ValidationFailed(
            "A user needs a display name of 1 to {max} characters, usually the full name.",
            max=DISPLAY_NAME_MAX,
        )
    return name


def add_user(
    session: Session,
    *,
    actor: Actor,
    username: str,
    display_name: str,
    role: Role,
    organisation: str | None = None,
    email: str | None = None,
    password_hash: str | None = None,
    now: datetime | None = None,
) -> User:
    require_admin(actor, "add users")
    now = now or utcnow()
    username = username.strip().lower()
    if not username or len(username) > 80:
        raise ValidationFailed("A username is 1 to 80 characters.")
    if session.scalar(select(User.id).where(User.username == username)):
        raise ValidationFailed(
            "A user called '{username}' exists already.",
            username=username,
        )
    name = clean_display_name(display_name)
    org = get_org(session, organisation) if organisation else None
    if role == Role.partner_agent and org is None:
        raise ValidationFailed("A partner agent must belong to an organisation.")
    user = User(
        username=username,
        display_name=name,
        role=role,
        organisation_id=org.id if org else None,
        email=email,
        password_hash=password_hash,
        active=True,
        created_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="user.added",
        entity_type="user",
        entity_id=user.id,
        now=now,
        details={"role": role, "organisation": organisation},
    )
    return user


def bootstrap_admin(
    session: Session,
    *,
    username: str,
    display_name: str,
    password_hash: str,
    email: str | None = None,
    now: datetime | None = None,
) -> User:
    """The first administrator of a fresh installation (no demo data in production).

    Allowed only while no active administrator exists; after that, admins add users."""
    if session.scalar(select(User.id).where(User.role == Role.admin, User.active.is_(True))):
        raise PermissionDenied(
            "An administrator exists already; an administrator adds further users "
            "(onboarding user add)."
        )
    return add_user(
        session,
        actor=SETUP,
        username=username,
        display_name=display_name,
        role=Role.admin,
        email=email,
        password_hash=password_hash,
        now=now,
    )


def rename_user(
    session: Session,
    *,
    actor: Actor,
    username: str,
    display_name: str,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> User:
    """Change the name screens show for a user (the username, and so the sign-in, stays)."""
    require_admin(actor, "rename users")
    now = now or utcnow()
    user = get_user(session, username.strip().lower())
    check_version(user, expected_version, f"User {user.username}")
    name = clean_display_name(display_name)
    if name != user.display_name:
        user.display_name = name
        session.flush()
        # The audit trail holds no names: which field changed is enough.
        audit.record(
            session,
            actor=actor,
            action="user.renamed",
            entity_type="user",
            entity_id=user.id,
            now=now,
            details={"fields": ["display_name"]},
        )
    return user
