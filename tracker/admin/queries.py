"""Reads of the reference data: organisations and users, as plain rows."""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.access import (
    Actor,
)
from tracker.enums import (
    Role,
)
from tracker.errors import PermissionDenied
from tracker.models import Organisation, User


class OrganisationRow(BaseModel):
    key: str
    name: str
    kind: str
    receives_handoffs: bool
    active: bool
    version: int


class UserRow(BaseModel):
    username: str
    display_name: str
    role: str
    organisation: str | None
    active: bool


class StaffName(BaseModel):
    """How a member of staff is named on screens: the full name and the organisation."""

    username: str
    display_name: str
    organisation_name: str | None


def organisations(session: Session, *, include_inactive: bool = True) -> list[OrganisationRow]:
    stmt = select(Organisation).order_by(Organisation.kind, Organisation.key)
    if not include_inactive:
        stmt = stmt.where(Organisation.active.is_(True))
    return [
        OrganisationRow(
            key=o.key,
            name=o.name,
            kind=o.kind,
            receives_handoffs=o.receives_handoffs,
            active=o.active,
            version=o.version,
        )
        for o in session.scalars(stmt)
    ]


def users(session: Session, *, actor: Actor) -> list[UserRow]:
    if actor.role not in (Role.admin, Role.case_manager):
        raise PermissionDenied("Only administrators and case managers may list users.")
    rows = session.execute(
        select(User, Organisation.key)
        .outerjoin(Organisation, User.organisation_id == Organisation.id)
        .order_by(User.role, User.username)
    )
    return [
        UserRow(
            username=u.username,
            display_name=u.display_name,
            role=u.role,
            organisation=key,
            active=u.active,
        )
        for u, key in rows
    ]


def staff_names(session: Session, *, actor: Actor) -> dict[str, StaffName]:
    """Every account's display name and organisation, by username: what a screen shows where a
    user name is stored (a case's manager, a timeline's actor, who viewed a person). Staff
    names are no newcomer's data: every role and job may read them (``actor`` is who asks)."""
    rows = session.execute(
        select(User.username, User.display_name, Organisation.name).outerjoin(
            Organisation, User.organisation_id == Organisation.id
        )
    )
    return {
        username: StaffName(
            username=username,
            display_name=display_name.strip() or username,
            organisation_name=organisation,
        )
        for username, display_name, organisation in rows
    }
