"""Who may do what: scope is enforced here, below every screen, CLI command and flow."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from sqlalchemy import ColumnElement, Exists, and_, exists, false, select, true
from sqlalchemy.orm import QueryableAttribute, Session

from tracker.enums import HandoffState, Role
from tracker.errors import NotFoundError, PermissionDenied
from tracker.models import Consent, FitParticipant, Handoff, Organisation, User
from tracker.pathway import get_registry

# Partner scope, defined once. A partner organisation's queue is the handoffs it has to
# answer or is working on; it may see a case through those and through what it completed,
# and only while the newcomer's consent to share with it stands (``CURRENT_CONSENT``).
PARTNER_QUEUE_STATES: tuple[HandoffState, ...] = (HandoffState.offered, HandoffState.accepted)
PARTNER_VISIBLE_STATES: tuple[HandoffState, ...] = (*PARTNER_QUEUE_STATES, HandoffState.completed)


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


def figure_scope(actor: Actor) -> tuple[str, int | None]:
    """What an aggregate read may depend on about its actor: the role and the organisation,
    never the person. Screens cache such figures (``tracker.reporting``'s, FIT@THGA's programme
    counts and offers) by it, so one role's or organisation's figures never reach another.

    Reads that name people are not cached by it: they log who looked, person by person."""
    return (str(actor.role), actor.organisation_id)


def system_actor(job: str) -> Actor:
    """The actor for scheduled work (sweeps, flows); it acts with case-manager rights."""
    return Actor(username=f"system:{job}", role=Role.case_manager)


def actor_for(session: Session, username: str) -> Actor:
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise NotFoundError(
            "No user called '{username}'.",
            username=username,
        )
    if not user.active:
        raise PermissionDenied(
            "User '{username}' is deactivated.",
            username=username,
        )
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
        raise PermissionDenied(
            "Only case managers may {what}; {username} is {role}.",
            what=what,
            username=actor.username,
            role=actor.role,
        )


def require_admin(actor: Actor, what: str) -> None:
    if actor.role != Role.admin:
        raise PermissionDenied(
            "Only administrators may {what}.",
            what=what,
        )


def require_person_access(actor: Actor) -> None:
    """Leadership sees aggregates only; no person-level read is open to it."""
    if actor.role == Role.leadership:
        raise PermissionDenied("Leadership sees aggregate figures only, not individual cases.")


# An id in SQL: a column, an expression (a correlated subquery), or a bound value.
IdColumn = ColumnElement[int] | QueryableAttribute[int] | int

# A consent that counts: to share the case, and not revoked.
CURRENT_CONSENT = (Consent.purpose == "case_sharing", Consent.revoked_at.is_(None))


def has_consent_clause(newcomer_id_col: IdColumn, organisation_id_col: IdColumn) -> Exists:
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
                Handoff.state.in_(PARTNER_VISIBLE_STATES),
            )
        )
    )
    return bool(handed) and has_consent(
        session, newcomer_id=newcomer_id, organisation_id=actor.organisation_id
    )


def in_partner_queue(
    newcomer_id_col: IdColumn, states: Iterable[HandoffState] = PARTNER_QUEUE_STATES
) -> ColumnElement[bool]:
    """SQL condition on ``Handoff``: it stands in its organisation's queue (or, with
    ``PARTNER_VISIBLE_STATES``, lets that organisation see the case) and the newcomer, whose
    id is ``newcomer_id_col``, consents to sharing with it."""
    return and_(
        Handoff.state.in_(list(states)),
        has_consent_clause(newcomer_id_col, Handoff.organisation_id),
    )


class _HasHandoffs(Protocol):
    @property
    def handoffs(self) -> Sequence[Handoff]: ...


S = TypeVar("S", bound=_HasHandoffs)


def partner_steps(actor: Actor, steps: Iterable[S]) -> list[S]:
    """The steps of a case (already known to be visible) that were handed to the actor's
    organisation: a partner sees its own steps and nothing of the others'."""
    return [
        s
        for s in steps
        if any(
            h.organisation_id == actor.organisation_id and h.state in PARTNER_VISIBLE_STATES
            for h in s.handoffs
        )
    ]


def partner_fields(step_keys: Iterable[str]) -> set[str]:
    """The newcomer fields a partner may see for these steps (``partner_fields`` in the
    catalogue); a step outside the catalogue shows the name only."""
    catalogue = get_registry().catalogue
    fields: set[str] = set()
    for key in step_keys:
        entry = catalogue.get(key)
        fields.update(entry.partner_fields if entry else ("given_name", "family_name"))
    return fields


def partner_sees_participant(actor: Actor) -> ColumnElement[bool]:
    """SQL condition on ``FitParticipant``: the FIT@THGA participants the actor may see and act
    on. Case managers and administrators see all; a partner agent only while the student
    currently consents to sharing with its organisation.

    No live handoff is asked for: a participant exists because the case's FIT step, which is the
    programme's, was done (by the programme through its handoff, or recorded by the case manager
    for it), so the record is the programme's own; the newcomer's consent is what ends its sight.
    """
    if actor.manages_cases:
        return true()
    if actor.organisation_id is None:
        return false()
    return has_consent_clause(FitParticipant.newcomer_id, actor.organisation_id)
