"""What opens next: the one rule that opens ready steps, hands them on, closes a finished case."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Collection, Container, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Select, Table, Text, bindparam, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from tracker import audit
from tracker.access import Actor, require_case_manager
from tracker.bulk import among, chunks, insert_returning_ids
from tracker.clocks import utcnow
from tracker.db import Database
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    FINISHED_STEP_STATES,
    CaseStatus,
    HandoffState,
    StepState,
)
from tracker.errors import InvalidTransition
from tracker.journeys.dues import MOVE_DUES, clock_facts, redate
from tracker.journeys.offers import (
    HOLD_CONSENT_MISSING,
    NewHandoff,
    consented_org_ids_many,
    handoff_announcement,
)
from tracker.messages.outbox import OutboxItem, enqueue_many
from tracker.models import Case, Handoff, Newcomer, Organisation, Step
from tracker.records import lock_cases

_CASES = cast(Table, Case.__table__)
_HANDOFFS = cast(Table, Handoff.__table__)
_STEPS = cast(Table, Step.__table__)


@dataclass
class AdvanceResult:
    """What one advance did; empty lists mean the case was already up to date."""

    reference: str
    opened: list[str] = field(default_factory=list)
    offered: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    closed: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.opened or self.offered or self.held or self.closed)


def advance_cases(
    session: Session, *, actor: Actor, references: Sequence[str], now: datetime | None = None
) -> list[AdvanceResult]:
    """Open what has become possible and close what is finished, for many cases in this
    transaction; safe to run any number of times. One result per case, in order.

    This is the one rule of what happens next: the background task after a change
    (``tracker.journeys.background``), the batch flow, an import and the clock sweep all call
    it, with one case or many. Set-wise: the cases are locked and read with only the columns
    the rule needs, planned in memory, and written with a statement per kind of change (steps
    opened, due dates moved, cases settled, handoffs, audit events, messages), whatever the
    number of cases. An unknown reference raises NotFoundError (its position in
    ``error.item``)."""
    require_case_manager(actor, "advance cases")
    now = now or utcnow()
    refs = list(dict.fromkeys(r.strip().upper() for r in references))
    session.flush()  # the rules read the database: what this transaction changed must be there
    plans = _load(session, refs)
    _plan(session, plans, now)
    results = _write(session, actor=actor, plans=plans, now=now)
    by_ref = {r.reference: r for r in results}
    return [by_ref[ref] for ref in refs]


def advance_case(
    session: Session, *, actor: Actor, reference: str, now: datetime | None = None
) -> AdvanceResult:
    """``advance_cases`` for one case."""
    (result,) = advance_cases(session, actor=actor, references=[reference], now=now)
    return result


# Cases advanced per transaction by bulk work (an import's new cases, the batch flow): enough
# that a statement's cost is shared, few enough that a failure retries little.
ADVANCE_BATCH = 200


@dataclass
class BatchOutcome:
    """What ``advance_in_batches`` did: cases advanced, steps opened, cases closed, failures."""

    advanced: int = 0
    opened: int = 0
    closed: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # reference -> error


# Transactions of an advance in flight at once on PostgreSQL: while one batch waits for the
# server, the next is read and planned (the 2 of a small server's cores; SQLite serialises its
# writers, so there one goes at a time).
ADVANCE_WORKERS = 2


def advance_in_batches(
    db: Database,
    *,
    actor: Actor,
    references: Sequence[str],
    size: int | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
) -> BatchOutcome:
    """Advance many cases, one transaction per ``size`` of them (``advance_cases``).

    A batch that fails is rolled back and advanced again case by case, so that one bad case
    holds up only itself; it is reported in ``failed`` and keeps its request for the clock
    sweep. ``progress`` is told of the cases each batch took, in this thread. ``size``
    defaults to ``ADVANCE_BATCH``; ``workers`` (batches in flight at once, each in its own
    transaction and connection) to ``ADVANCE_WORKERS`` on PostgreSQL and 1 on SQLite. The
    batches hold different cases, so they never wait for each other's locks."""
    outcome = BatchOutcome()
    refs = list(references)
    size = size or ADVANCE_BATCH
    batches = [refs[i : i + size] for i in range(0, len(refs), size)]
    workers = workers or (1 if db.is_sqlite else ADVANCE_WORKERS)

    def one(batch: list[str]) -> tuple[list[AdvanceResult], dict[str, str]]:
        try:
            with db.transaction() as session:
                return advance_cases(session, actor=actor, references=batch), {}
        except Exception:  # find the case(s) that failed; the others go through
            results: list[AdvanceResult] = []
            failed: dict[str, str] = {}
            for reference in batch:
                try:
                    with db.transaction() as session:
                        results += advance_cases(session, actor=actor, references=[reference])
                except Exception as exc:
                    failed[reference] = f"{type(exc).__name__}: {exc}"[:500]
            return results, failed

    def tally(batch: list[str], results: list[AdvanceResult], failed: dict[str, str]) -> None:
        outcome.failed.update(failed)
        outcome.advanced += len(results)
        outcome.opened += sum(len(r.opened) for r in results)
        outcome.closed += sum(int(r.closed) for r in results)
        if progress is not None:
            progress(len(batch))

    if workers <= 1 or len(batches) <= 1:
        for batch in batches:
            tally(batch, *one(batch))
        return outcome
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="advance") as pool:
        # At most a few batches ahead: the references wait, not their rows.
        pending: deque[tuple[list[str], Future[Any]]] = deque()
        for batch in batches:
            pending.append((batch, pool.submit(one, batch)))
            if len(pending) >= 2 * workers:
                done_batch, future = pending.popleft()
                tally(done_batch, *future.result())
        while pending:
            done_batch, future = pending.popleft()
            tally(done_batch, *future.result())
    return outcome


def cases_awaiting_advance(
    session: Session, *, older_than: datetime, limit: int = 500
) -> list[str]:
    """References of open cases whose advance was requested before ``older_than`` and not done."""
    return list(session.scalars(_awaiting_advance(older_than, limit)))


def _awaiting_advance(older_than: datetime, limit: int) -> Select[str]:
    """Open cases whose advance was asked for before ``older_than``, longest waiting first."""
    return (
        select(Case.reference)
        .where(Case.advance_requested_at < older_than, Case.status == CaseStatus.open)
        .order_by(Case.advance_requested_at)
        .limit(limit)
    )


@dataclass
class CatchUp:
    """What one claim of cases awaiting their advance did."""

    advanced: list[AdvanceResult] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # reference -> error

    @property
    def claimed(self) -> int:
        return len(self.advanced) + len(self.failed)


def advance_awaiting(
    session: Session,
    *,
    actor: Actor,
    older_than: datetime,
    limit: int = 25,
    skip: Collection[str] = (),
    now: datetime | None = None,
) -> CatchUp:
    """Claim up to ``limit`` open cases whose advance was requested before ``older_than`` and
    advance them, all in this transaction.

    The claim is the row lock, taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: cases
    another worker is advancing (or a person is changing) right now are passed over, not
    waited for, so sweeps in several workers share the backlog instead of queueing on the same
    rows. The advance clears each request before the locks are released, so no later claim
    takes a case again. SQLite serialises its writers (``BEGIN IMMEDIATE``), so there the
    claim is the query alone. A case that fails is rolled back on its own (a savepoint) and
    reported; pass it in ``skip`` so that the caller's next claim leaves it out.

    The claim is advanced set-wise (``advance_cases``); only if that fails is it advanced
    again case by case, each in its own savepoint, to find the case that fails.
    """
    require_case_manager(actor, "advance cases")
    stmt = _awaiting_advance(older_than, limit).with_for_update(skip_locked=True)
    if skip:
        stmt = stmt.where(Case.reference.not_in(list(skip)))
    outcome = CatchUp()
    claimed = session.scalars(stmt).all()
    if not claimed:
        return outcome
    try:
        with session.begin_nested():
            outcome.advanced = advance_cases(session, actor=actor, references=claimed, now=now)
        return outcome
    except (OperationalError, InterfaceError):
        raise  # the connection is gone: nothing more can be done in this transaction
    except Exception:  # find the case(s) that failed below; the others go through
        pass
    for reference in claimed:
        try:
            with session.begin_nested():
                outcome.advanced.append(
                    advance_case(session, actor=actor, reference=reference, now=now)
                )
        except (OperationalError, InterfaceError):
            raise
        except Exception as exc:  # one bad case must not hold up the others
            outcome.failed[reference] = f"{type(exc).__name__}: {exc}"[:500]
    return outcome


@dataclass
class _StepRow:
    """A step as far as the advance goes; changed in memory, then written set-wise."""

    id: int
    key: str
    state: StepState
    needs: list[str]
    owner_org_id: int
    opened_at: datetime | None
    done_at: datetime | None
    clock_started_at: datetime | None
    service_days: int | None
    legal_basis: str | None
    legal_days: int | None
    legal_months: int | None
    service_due: Any
    legal_due: Any
    due_date: Any
    case_id: int


# A step's prerequisites are read as their JSON text and decoded once per distinct list: the
# steps of a pathway repeat a few dozen lists across all its cases. A CAST, so that psycopg
# does not decode each one on its own (0.7 s per 10,000 cases on PostgreSQL).
_STEP_COLUMNS = [
    sql_cast(_STEPS.c.needs, Text).label("needs") if f.name == "needs" else _STEPS.c[f.name]
    for f in fields(_StepRow)
]


@lru_cache(maxsize=4096)
def _decoded_needs(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _needs(text: Any) -> list[str]:
    return list(_decoded_needs(text)) if isinstance(text, str) else list(text or ())


@dataclass
class _Owner:
    """A step's owner, as far as handing steps on goes."""

    id: int
    key: str
    receives_handoffs: bool
    active: bool


@dataclass
class _Plan:
    """One case's advance: the case as read, its steps, and what the advance changes."""

    case: Any  # the row of the case's columns
    steps: list[_StepRow] = field(default_factory=list)
    facts: Any = None  # the newcomer's dates
    owners: dict[int, _Owner] = field(default_factory=dict)
    opened: list[_StepRow] = field(default_factory=list)
    dues_moved: list[_StepRow] = field(default_factory=list)
    handoffs: list[dict[str, Any]] = field(default_factory=list)
    next_due: Any = None
    closed: bool = False


def prerequisites_met(needs: Iterable[str], finished: Container[str]) -> bool:
    """What opens next, the heart of the tracker: a step may open once every step it needs is
    finished (done, or skipped as not applicable). The advance and the demo both ask this."""
    return all(n in finished for n in needs)


def steps_to_open(steps: Iterable[Any]) -> list[Any]:
    """The pending steps (of one case) whose prerequisites are all finished."""
    steps = list(steps)
    finished = {s.key for s in steps if s.state in FINISHED_STEP_STATES}
    return [
        s for s in steps if s.state == StepState.pending and prerequisites_met(s.needs, finished)
    ]


# The reads, built once (a statement's construction costs more than its run for one case).
# Each step with what the rule asks of its owner and of the newcomer's dates: one read where
# three were (the organisations are few and their rows cached by the database).
_STEPS_OF = (
    select(
        *_STEP_COLUMNS,
        Organisation.key.label("owner_key"),
        Organisation.receives_handoffs,
        Organisation.active,
        Newcomer.arrival_date,
        Newcomer.permit_expiry,
        Newcomer.move_in_date,
    )
    .join(Organisation, Organisation.id == Step.owner_org_id)
    .join(Case, Case.id == Step.case_id)
    .join(Newcomer, Newcomer.id == Case.newcomer_id)
    .where(among(Step.case_id, "ids"))
    .order_by(Step.case_id, Step.position)
)
_STEP_FIELDS = len(_STEP_COLUMNS)
# The dates of a newcomer whose case has no steps (no step row brought them).
_DATES_OF = select(
    Newcomer.id, Newcomer.arrival_date, Newcomer.permit_expiry, Newcomer.move_in_date
).where(among(Newcomer.id, "ids"))
_HANDED_OFF = (
    select(Handoff.step_id)
    .where(
        among(Handoff.step_id, "ids"),
        Handoff.state.in_(ACTIVE_HANDOFF_STATES),
    )
    .limit(1)
)


def _load(session: Session, refs: list[str]) -> list[_Plan]:
    """The cases (locked, in the order of their ids), their steps and their newcomers' dates,
    as plain rows (no objects: the session is not asked to track what only the rule reads)."""
    conn = session.connection()
    cases = lock_cases(session, refs)
    plans = {row.id: _Plan(row) for row in cases.values()}
    ids = sorted(plans)
    for chunk in chunks(ids):
        for found in conn.execute(_STEPS_OF, {"ids": chunk}):
            row: Any = found
            step = _StepRow(*tuple(row)[:_STEP_FIELDS])  # the first columns are the fields
            step.needs = _needs(step.needs)
            plan = plans[row.case_id]
            plan.steps.append(step)
            plan.facts = row
            plan.owners[step.owner_org_id] = _Owner(
                step.owner_org_id, row.owner_key, row.receives_handoffs, row.active
            )
    stepless = sorted({p.case.newcomer_id for p in plans.values() if p.facts is None})
    if stepless:
        dates = {row.id: row for row in conn.execute(_DATES_OF, {"ids": stepless})}
        for plan in plans.values():
            if plan.facts is None:
                plan.facts = dates[plan.case.newcomer_id]
    return [plans[cases[ref].id] for ref in refs]


def _plan(session: Session, plans: list[_Plan], now: datetime) -> None:
    """Open the ready steps, hand them on, move the due dates, close finished cases."""
    for plan in plans:
        if plan.case.status != CaseStatus.open:
            continue
        for step in steps_to_open(plan.steps):
            step.state = StepState.open
            step.opened_at = now
            plan.opened.append(step)
    orgs = _organisations(plans)
    receiving = [
        (plan, step)
        for plan in plans
        for step in plan.opened
        if orgs[step.owner_org_id].receives_handoffs and orgs[step.owner_org_id].active
    ]
    if receiving:
        _refuse_handed_off(session, receiving)
        consented = consented_org_ids_many(
            session, {plan.case.newcomer_id for plan, _ in receiving}
        )
    for plan, step in receiving:
        ok = step.owner_org_id in consented.get(plan.case.newcomer_id, ())
        plan.handoffs.append(
            {
                "case_id": plan.case.id,
                "step_id": step.id,
                "organisation_id": step.owner_org_id,
                "state": (HandoffState.offered if ok else HandoffState.held).value,
                "hold_reason": None if ok else HOLD_CONSENT_MISSING,
                "created_at": now,
                "offered_at": now if ok else None,
            }
        )
    for plan in plans:
        if plan.case.status != CaseStatus.open:
            continue
        moved, plan.next_due = redate(plan.steps, clock_facts(plan.facts, plan.steps))
        opened = {step.id for step in plan.opened}
        # (an opened step is written with its dues)
        plan.dues_moved = [step for step in moved if step.id not in opened]
        plan.closed = bool(plan.steps) and all(s.state in FINISHED_STEP_STATES for s in plan.steps)


def _refuse_handed_off(session: Session, receiving: list[tuple[_Plan, _StepRow]]) -> None:
    """A step about to be handed on must not have an active handoff already."""
    step_ids = [step.id for _, step in receiving]
    for chunk in chunks(step_ids):
        taken = session.connection().scalar(_HANDED_OFF, {"ids": chunk})
        if taken is not None:
            plan, step = next((p, s) for p, s in receiving if s.id == taken)
            raise InvalidTransition(
                "Step {step} of {reference} is already handed off.",
                step=step.key,
                reference=plan.case.reference,
            )


def _organisations(plans: list[_Plan]) -> dict[int, _Owner]:
    """The owners of the steps of these cases, by id."""
    return {owner.id: owner for plan in plans for owner in plan.owners.values()}


_OPEN_STEP = MOVE_DUES.values(state=StepState.open.value, opened_at=bindparam("b_opened_at"))
_SETTLE_CASE = (
    update(_CASES)
    .where(_CASES.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        closed_at=bindparam("b_closed_at"),
        next_due=bindparam("b_next_due"),
        advance_requested_at=None,
        version=_CASES.c.version + 1,
    )
)


def _write(
    session: Session, *, actor: Actor, plans: list[_Plan], now: datetime
) -> list[AdvanceResult]:
    """Write what the plans changed, a statement per kind, and say what each case's did."""
    conn = session.connection()

    def dues(step: _StepRow) -> dict[str, Any]:
        return {
            "b_id": step.id,
            "b_service_due": step.service_due,
            "b_legal_due": step.legal_due,
            "b_due_date": step.due_date,
        }

    opened = [{**dues(s), "b_opened_at": now} for p in plans for s in p.opened]
    if opened:
        conn.execute(_OPEN_STEP, opened)
    moved = [dues(s) for p in plans for s in p.dues_moved]
    if moved:
        conn.execute(MOVE_DUES, moved)
    settled = [
        {
            "b_id": p.case.id,
            "b_status": str(CaseStatus.closed if p.closed else p.case.status),
            "b_closed_at": now if p.closed else p.case.closed_at,
            "b_next_due": p.next_due if p.case.status == CaseStatus.open else p.case.next_due,
        }
        for p in plans
        if p.opened
        or p.closed
        or p.case.advance_requested_at is not None
        or (p.case.status == CaseStatus.open and p.next_due != p.case.next_due)
    ]
    if settled:
        conn.execute(_SETTLE_CASE, settled)
    rows = [h for p in plans for h in p.handoffs]
    handoff_ids = insert_returning_ids(
        conn,
        _HANDOFFS,
        [{**h, "created_by_id": actor.user_id, "version": 1} for h in rows],
        key="step_id",  # a step is handed on once per advance
    )
    for handoff, handoff_id in zip(rows, handoff_ids, strict=True):
        handoff["id"] = handoff_id
    entries: list[audit.Entry] = []
    messages: list[OutboxItem] = []
    orgs = _organisations(plans)
    results = [_record(p, orgs, now, entries, messages) for p in plans]
    audit.record_entries(session, actor=actor, now=now, entries=entries)
    enqueue_many(session, now=now, messages=messages)
    _forget(session, plans)
    return results


def _record(
    plan: _Plan,
    orgs: dict[int, Any],
    now: datetime,
    entries: list[audit.Entry],
    messages: list[OutboxItem],
) -> AdvanceResult:
    """What one case's advance records and sends, in the order its timeline shows it."""
    case = plan.case
    result = AdvanceResult(reference=case.reference)
    by_step = {h["step_id"]: h for h in plan.handoffs}
    for step in plan.opened:
        owner = orgs[step.owner_org_id]
        result.opened.append(step.key)
        entries.append(
            audit.Entry(
                "step.opened", "step", step.id, case.id, {"step": step.key, "owner": owner.key}
            )
        )
        handoff = by_step.get(step.id)
        if handoff is None:
            continue
        state = HandoffState(handoff["state"])
        entry, message = handoff_announcement(
            NewHandoff(
                handoff_id=handoff["id"],
                state=state,
                case_id=case.id,
                reference=case.reference,
                case_manager_id=case.case_manager_id,
                step_key=step.key,
                organisation_id=owner.id,
                organisation_key=owner.key,
                created_at=now,
                offered_at=handoff["offered_at"],
            ),
            now,
        )
        entries.append(entry)
        if message is not None:
            messages.append(message)
        (result.offered if state == HandoffState.offered else result.held).append(handoff["id"])
    if plan.closed:
        result.closed = True
        entries.append(audit.Entry("case.closed", "case", case.id, case.id))
        if case.case_manager_id:
            messages.append(
                OutboxItem(
                    key=f"case_closed:{case.id}",
                    kind="case_closed",
                    case_id=case.id,
                    recipient_user_id=case.case_manager_id,
                    context={"reference": case.reference},
                )
            )
    return result


def _forget(session: Session, plans: list[_Plan]) -> None:
    """Objects of these cases the session holds are out of date now: expire them, so that they
    are read again when next used."""
    held = session.identity_map
    if not held:  # bulk work holds nothing
        return
    keys: list[Any] = [identity_key(Case, p.case.id) for p in plans]
    keys += [identity_key(Step, s.id) for p in plans for s in p.steps]
    for key in keys:
        obj = held.get(key)
        if obj is not None:
            session.expire(obj)
