"""Loading records for a change: by reference, locked, and checked against the version read."""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from typing import Any, Protocol, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session, contains_eager, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from tracker.access import Actor, partner_may_see_case
from tracker.bulk import among, chunks
from tracker.errors import ConcurrentEditError, NotFoundError
from tracker.models import Case, Handoff, Newcomer, Organisation, Step, User

REFERENCE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read aloud on the phone


class _Versioned(Protocol):
    version: int


def check_version(obj: _Versioned, expected: int | None, label: str) -> None:
    """Refuse a change made against an old read of the record."""
    if expected is not None and obj.version != expected:
        raise ConcurrentEditError(
            "{label} was changed by someone else since you loaded it (you saw version "
            "{expected}, it is now version {current}). Reload it and try again.",
            label=label,
            expected=expected,
            current=obj.version,
        )


def random_reference(rng: random.Random | None = None) -> str:
    """A case reference that says nothing about the person, e.g. WO-7K3M-Q9XA."""
    pick = (rng or secrets.SystemRandom()).choice
    body = "".join(pick(REFERENCE_ALPHABET) for _ in range(8))
    return f"WO-{body[:4]}-{body[4:]}"


def new_reference(session: Session) -> str:
    (reference,) = new_references(session, 1)
    return reference


def new_references(session: Session, count: int) -> list[str]:
    """``count`` case references that no case has yet, all different; one query per 500 (a
    collision among 32^8 references is rare, and is drawn again)."""
    references: list[str] = []
    taken: set[str] = set()
    with session.no_autoflush:
        while len(references) < count:
            drawn = {random_reference() for _ in range(min(count - len(references), 500))}
            drawn -= taken
            taken |= drawn
            used = set(session.scalars(select(Case.reference).where(Case.reference.in_(drawn))))
            references.extend(sorted(drawn - used))
    return references[:count]


def get_case(session: Session, reference: str, *, for_update: bool = True) -> Case:
    """Load a case with its steps for a change.

    The case row is locked (``FOR UPDATE`` on PostgreSQL; SQLite's writers are serialised by
    ``BEGIN IMMEDIATE`` already), so two changes to one case run one after the other and the
    second sees what the first did. Without it, two partners finishing the two prerequisites of
    a step at the same moment could each miss the other's work, and the step would never open.
    """
    stmt = (
        select(Case)
        .where(Case.reference == reference.strip().upper())
        .options(selectinload(Case.steps).selectinload(Step.handoffs))
    )
    if for_update:
        stmt = stmt.with_for_update(of=Case)
    case = session.scalars(stmt).one_or_none()
    if case is None:
        raise NotFoundError(
            "No case with reference '{reference}'.",
            reference=reference,
        )
    return case


# The statements of the hot path, built once (building and keying a statement costs more
# than running it on a small table); the values are bound per call.
_LOCK_CASE = select(Case).where(Case.reference == bindparam("reference")).with_for_update()


_STEP_FOR_CHANGE = (
    select(Step, Newcomer)
    .join(Newcomer, Newcomer.id == bindparam("newcomer_id"))
    .outerjoin(Step.handoffs)
    .where(Step.case_id == bindparam("case_id"), Step.key == bindparam("key"))
    .options(contains_eager(Step.handoffs))
    .order_by(Handoff.id)
)


# The cases of a set-wise change (the advance, a batch of completions), locked in the order of
# their ids, so two batches never wait on each other crosswise; their columns as plain rows.
_LOCK_CASES = (
    select(
        Case.id,
        Case.reference,
        Case.status,
        Case.closed_at,
        Case.newcomer_id,
        Case.case_manager_id,
        Case.next_due,
        Case.advance_requested_at,
    )
    .where(among(Case.reference, "refs"))
    .order_by(Case.id)
    .with_for_update(of=cast(Table, Case.__table__))
)


def lock_cases(session: Session, references: Sequence[str]) -> dict[str, Any]:
    """The rows of these cases (references as stored: upper case), locked as in ``get_case``,
    by reference. An unknown reference raises NotFoundError, its position in ``error.item``."""
    conn = session.connection()
    found: dict[str, Any] = {}
    for chunk in chunks(references):
        found.update((row.reference, row) for row in conn.execute(_LOCK_CASES, {"refs": chunk}))
    for position, reference in enumerate(references):
        if reference not in found:
            error = NotFoundError("No case with reference '{reference}'.", reference=reference)
            error.item = position  # type: ignore[attr-defined]
            raise error
    return found


def lock_case(session: Session, reference: str) -> Case:
    """The case row alone, locked for a change (see ``get_case``); its steps load on demand."""
    case = session.scalars(_LOCK_CASE, {"reference": reference.strip().upper()}).one_or_none()
    if case is None:
        raise NotFoundError(
            "No case with reference '{reference}'.",
            reference=reference,
        )
    return case


def get_step(
    session: Session, reference: str, step_key: str, *, actor: Actor | None = None
) -> Step:
    """Load one step of a case for a change. A partner ``actor`` that was never handed the
    case (or lost the newcomer's consent) gets the same answer as for a missing case: a write
    reveals no more than a read.

    The case row is locked first, as in ``get_case``; the step, its handoffs and the newcomer
    are read by a second statement, after the lock is held, so on PostgreSQL they are what the
    change before ours left (a joined row in the locking statement could be older). The case's
    other steps are not loaded: ``refresh_dues`` reads the few columns it needs.
    """
    case = lock_case(session, reference)
    if (
        actor is not None
        and actor.is_partner
        and not partner_may_see_case(session, actor, case_id=case.id, newcomer_id=case.newcomer_id)
    ):
        raise NotFoundError(
            "No case with reference '{reference}'.",
            reference=reference,
        )
    found = (
        session.execute(
            _STEP_FOR_CHANGE,
            {"newcomer_id": case.newcomer_id, "case_id": case.id, "key": step_key},
        )
        .unique()
        .one_or_none()
    )
    if found is not None:
        step, newcomer = found
        # The session holds loaded rows only weakly: link them so none is read again.
        set_committed_value(step, "case", case)
        set_committed_value(case, "newcomer", newcomer)
        return step
    keys = ", ".join(
        session.scalars(select(Step.key).where(Step.case_id == case.id).order_by(Step.position))
    )
    raise NotFoundError(
        "Case {reference} has no step '{step}' (it has: {keys}).",
        reference=case.reference,
        step=step_key,
        keys=keys,
    )


def get_org(session: Session, key: str) -> Organisation:
    org = session.scalars(select(Organisation).where(Organisation.key == key)).one_or_none()
    if org is None:
        raise NotFoundError(
            "No organisation with key '{key}'.",
            key=key,
        )
    return org


def get_user(session: Session, username: str) -> User:
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise NotFoundError(
            "No user called '{username}'.",
            username=username,
        )
    return user
