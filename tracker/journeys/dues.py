"""A case's due dates, recomputed from stored facts after every change, and its advance request."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, inspect, select, update
from sqlalchemy.orm import object_session
from sqlalchemy.orm.util import identity_key

from tracker import clocks
from tracker.enums import (
    ACTIVE_STEP_STATES,
    StepState,
)
from tracker.models import Case, Newcomer, Step


def request_advance(case: Case, now: datetime) -> None:
    """Note that a change may have unlocked steps; the advance (or the sweep) takes it from here."""
    if case.advance_requested_at is None:
        case.advance_requested_at = now


# What the clocks need of a step; read as plain rows when a change loaded only its own step.
_CLOCK_COLUMNS = (
    Step.id,
    Step.key,
    Step.state,
    Step.done_at,
    Step.opened_at,
    Step.clock_started_at,
    Step.service_days,
    Step.legal_basis,
    Step.legal_days,
    Step.legal_months,
    Step.service_due,
    Step.legal_due,
    Step.due_date,
)


_CLOCK_STEPS = (
    select(*_CLOCK_COLUMNS).where(Step.case_id == bindparam("case_id")).order_by(Step.position)
)


def _clock_steps(case: Case) -> Sequence[Any]:
    """The case's steps as far as its clocks go: the loaded steps as they are, or else the
    columns above in one light query, with any step this session holds (and may have changed
    without flushing) standing in for its row."""
    session = object_session(case)
    if session is None or "steps" not in inspect(case).unloaded:
        return case.steps
    with session.no_autoflush:
        rows = session.execute(_CLOCK_STEPS, {"case_id": case.id}).all()
    held = session.identity_map
    return [held.get(identity_key(Step, row.id)) or row for row in rows]


def facts_for(case: Case) -> dict[str, date | datetime | None]:
    return clock_facts(case.newcomer, _clock_steps(case))


def clock_facts(
    newcomer: Newcomer | Any, steps: Sequence[Any]
) -> dict[str, date | datetime | None]:
    """What the legal clocks count from: the newcomer's dates and the case's done steps (any
    objects with the attributes of a newcomer and of steps)."""
    facts: dict[str, date | datetime | None] = {
        "arrival": newcomer.arrival_date,
        "permit_expiry": newcomer.permit_expiry,
        "move_in": newcomer.move_in_date,
    }
    for step in steps:
        if step.state == StepState.done:
            facts[f"done:{step.key}"] = step.done_at
            if step.key == "housing" and facts["move_in"] is None:
                facts["move_in"] = step.done_at
    return facts


def refresh_dues(case: Case) -> None:
    """Recompute each active step's due dates, and the case's next due date, from stored facts."""
    session = object_session(case)
    steps = _clock_steps(case)
    facts = clock_facts(case.newcomer, steps)
    active_dues = []
    for step in steps:
        if step.state not in ACTIVE_STEP_STATES:
            continue
        service, legal, earliest = due_dates(step, facts)
        # Assign only on change so an unchanged step keeps its version.
        if (step.service_due, step.legal_due, step.due_date) != (service, legal, earliest):
            if not isinstance(step, Step) and session is not None:  # a row: change the step
                step = session.get_one(Step, step.id)
            step.service_due, step.legal_due, step.due_date = service, legal, earliest
        active_dues.append(earliest)
    next_due = clocks.earliest(*active_dues)
    if case.next_due != next_due:
        case.next_due = next_due


def redate(steps: Sequence[Any], facts: dict[str, date | datetime | None]) -> tuple[list[Any], Any]:
    """Recompute each active step's due dates in place (any objects with the attributes of a
    step, e.g. plain rows read by the set-wise services); returns the steps whose dates moved
    and the case's next due date."""
    moved = []
    dues = []
    for step in steps:
        if step.state not in ACTIVE_STEP_STATES:
            continue
        due = due_dates(step, facts)
        if (step.service_due, step.legal_due, step.due_date) != due:
            step.service_due, step.legal_due, step.due_date = due
            moved.append(step)
        dues.append(due[2])
    return moved, clocks.earliest(*dues)


def due_dates(step: Step | Any, facts: dict[str, date | datetime | None]) -> tuple[Any, Any, Any]:
    """An active step's service due date, legal due date and the earlier of the two."""
    return _due_dates(
        step.opened_at,
        step.clock_started_at,
        step.service_days,
        step.legal_basis,
        step.legal_days,
        step.legal_months,
        facts,
    )


def row_due_dates(
    row: Mapping[str, Any], facts: dict[str, date | datetime | None]
) -> tuple[Any, Any, Any]:
    """``due_dates`` of a step given as its columns by name (the demo's rows)."""
    return _due_dates(
        row["opened_at"],
        row["clock_started_at"],
        row["service_days"],
        row["legal_basis"],
        row["legal_days"],
        row["legal_months"],
        facts,
    )


def _due_dates(
    opened_at: datetime | None,
    clock_started_at: datetime | None,
    service_days: int | None,
    legal_basis: str | None,
    legal_days: int | None,
    legal_months: int | None,
    facts: dict[str, date | datetime | None],
) -> tuple[Any, Any, Any]:
    own = {**facts, "opened": opened_at, "started": clock_started_at}
    service = clocks.service_due(opened=opened_at, days=service_days)
    legal = clocks.legal_due(basis=legal_basis, days=legal_days, months=legal_months, facts=own)
    return service, legal, clocks.earliest(service, legal)


def start_clock(step: Step, now: datetime) -> None:
    """Work (re)starts with a complete file: a clock counting from "started" begins now."""
    step.clock_started_at = now


# A step's due dates moved (the advance and a completion write them set-wise, by step id).
_STEPS = cast(Table, Step.__table__)
MOVE_DUES = (
    update(_STEPS)
    .where(_STEPS.c.id == bindparam("b_id"))
    .values(
        service_due=bindparam("b_service_due"),
        legal_due=bindparam("b_legal_due"),
        due_date=bindparam("b_due_date"),
        version=_STEPS.c.version + 1,
    )
)
