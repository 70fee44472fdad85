"""Small builders shared by the tests."""

from __future__ import annotations

from datetime import date, datetime

from tracker.access import Actor
from tracker.db import Database
from tracker.enums import ConsentMethod, Purpose
from tracker.schemas import NewcomerIn
from tracker.services import advance_case, give_consent, open_case, register_newcomer

PARTNERS = ["stadt-bochum", "ihk-mr", "afa-bochum", "vbw", "akafoe", "thga", "hwk-do"]


def newcomer(**overrides: object) -> NewcomerIn:
    data: dict[str, object] = {
        "given_name": "Priya",
        "family_name": "Raman",
        "birth_date": date(1994, 5, 17),
        "nationality": "IN",
        "purpose": Purpose.work,
        "preferred_language": "en",
        "permit_expiry": date(2026, 9, 30),
    }
    data.update(overrides)
    return NewcomerIn.model_validate(data)


def start_case(
    db: Database,
    manager: Actor,
    *,
    now: datetime,
    consent_to: list[str] | None = None,
    **overrides: object,
) -> str:
    """Register a newcomer, open the case, record consent for the given partners, advance it."""
    consent_to = PARTNERS if consent_to is None else consent_to
    with db.transaction() as s:
        person = register_newcomer(s, actor=manager, data=newcomer(**overrides), now=now)
        case = open_case(s, actor=manager, newcomer_id=person.id, now=now)
        reference = case.reference
    for org in consent_to:
        with db.transaction() as s:
            give_consent(
                s,
                actor=manager,
                reference=reference,
                organisation=org,
                method=ConsentMethod.signed_form,
                notice_language="en",
                now=now,
            )
    advance(db, manager, reference, now=now)
    return reference


def advance(db: Database, actor: Actor, reference: str, *, now: datetime) -> None:
    """What the Prefect run (or the inline mode) does after a change: advance the case."""
    with db.transaction() as s:
        advance_case(s, actor=actor, reference=reference, now=now)
