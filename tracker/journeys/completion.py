"""Recording steps as done: the one path of a completion, for one step or a batch.

A completion is the commonest change there is (a case manager ticks a step off, a partner
finishes a handoff, FIT@THGA enrols a student), so it is written lean: the cases are locked and
their steps read as plain rows with only the columns the rules need, every item is checked, and
the changes are written with a statement per kind (steps done, handoffs closed, move-in dates,
due dates, cases, audit events), whatever the number of items. No object is loaded for the
session to track, and objects the session already holds of these rows are expired, so whoever
reads them next reads what was written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, NamedTuple, cast

from sqlalchemy import Table, and_, bindparam, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from tracker import audit, clocks
from tracker.access import CURRENT_CONSENT, Actor, partner_may_see_case
from tracker.bulk import among, chunks
from tracker.clocks import moment, utcnow
from tracker.enums import ACTIVE_HANDOFF_STATES, HandoffState, Role, StepState
from tracker.errors import InvalidTransition, NotFoundError, PermissionDenied, ValidationFailed
from tracker.journeys.dues import MOVE_DUES, clock_facts, redate
from tracker.journeys.transitions import HELD_BY_PARTNER, WORKABLE
from tracker.models import Case, Consent, Handoff, Newcomer, Step
from tracker.pathway import get_registry
from tracker.records import check_version, lock_cases

_CASES = cast(Table, Case.__table__)
_HANDOFFS = cast(Table, Handoff.__table__)
_NEWCOMERS = cast(Table, Newcomer.__table__)
_STEPS = cast(Table, Step.__table__)


class Completion(NamedTuple):
    """One step to record as done, as ``complete_steps`` takes it. ``expected_version`` is the
    step's version as the person saw it (the handoff's, when a partner completes a handoff)."""

    reference: str
    step_key: str
    outcome: str | None = None
    on: date | None = None
    expected_version: int | None = None


class Completed(NamedTuple):
    """A step recorded as done: its case, key, id, new version and state, and its handoff."""

    reference: str
    key: str
    id: int
    version: int
    state: StepState
    handoff_id: int | None


@dataclass
class _Held:
    """A step's active handoff, as far as a completion goes."""

    id: int
    state: HandoffState
    organisation_id: int
    version: int


@dataclass
class _StepRow:
    """A step as far as its completion and its case's clocks go."""

    id: int
    key: str
    state: StepState
    done_at: datetime | None
    opened_at: datetime | None
    clock_started_at: datetime | None
    service_days: int | None
    legal_basis: str | None
    legal_days: int | None
    legal_months: int | None
    service_due: Any
    legal_due: Any
    due_date: Any
    version: int
    started_at: datetime | None
    case_id: int
    handoff: _Held | None = None


@dataclass
class _CaseRow:
    """A case as far as the completion of its steps goes: the row, its steps, its dates."""

    id: int
    reference: str
    newcomer_id: int
    next_due: Any
    advance_requested_at: datetime | None
    facts: Any = None  # the newcomer's arrival, permit expiry and move-in dates
    steps: list[_StepRow] = field(default_factory=list)

    def step(self, key: str) -> _StepRow | None:
        return next((s for s in self.steps if s.key == key), None)


@dataclass
class _Done:
    """One completion, checked: the step, when it was done, and how its handoff closes."""

    case: _CaseRow
    step: _StepRow
    outcome: str | None
    done_at: datetime
    handoff: _Held | None
    handoff_state: HandoffState | None = None


class NotTheHolder(Exception):
    """``complete_steps(by="holder")``: the actor does not hold this step's accepted handoff
    (or may not see it). Raised before anything is written; the handoff service says why."""


# --- reading ------------------------------------------------------------------------------------

# Each step with its active handoff (a step has one at most) and the newcomer's dates, read
# after the lock is held, so on PostgreSQL they are what the change before ours left.
_STEPS_OF = (
    select(
        *(_STEPS.c[name] for name in list(_StepRow.__dataclass_fields__)[:-1]),
        Handoff.id.label("handoff_id"),
        Handoff.state.label("handoff_state"),
        Handoff.organisation_id.label("handoff_org"),
        Handoff.version.label("handoff_version"),
        Newcomer.arrival_date,
        Newcomer.permit_expiry,
        Newcomer.move_in_date,
    )
    .join(Case, Case.id == Step.case_id)
    .join(Newcomer, Newcomer.id == Case.newcomer_id)
    .outerjoin(Handoff, and_(Handoff.step_id == Step.id, Handoff.state.in_(ACTIVE_HANDOFF_STATES)))
    .where(among(Step.case_id, "ids"))
    .order_by(Step.case_id, Step.position, Handoff.id)
)
_CONSENTED = select(Consent.newcomer_id).where(
    among(Consent.newcomer_id, "ids"),
    Consent.organisation_id == bindparam("org"),
    *CURRENT_CONSENT,
)
_STEP_FIELDS = len(_StepRow.__dataclass_fields__) - 1


def _load(session: Session, refs: list[str]) -> dict[str, _CaseRow]:
    """The cases, locked in the order of their ids, with their steps and dates as rows."""
    conn = session.connection()
    cases = {
        ref: _CaseRow(row.id, ref, row.newcomer_id, row.next_due, row.advance_requested_at)
        for ref, row in lock_cases(session, refs).items()
    }
    by_id = {case.id: case for case in cases.values()}
    for ids in chunks(sorted(by_id)):
        for found in conn.execute(_STEPS_OF, {"ids": ids}):
            row: Any = found
            case = by_id[row.case_id]
            if case.steps and case.steps[-1].id == row.id:
                continue  # a second active handoff (never, by the rules): the first counts
            step = _StepRow(*tuple(row)[:_STEP_FIELDS])
            if row.handoff_id is not None:
                step.handoff = _Held(
                    row.handoff_id, row.handoff_state, row.handoff_org, row.handoff_version
                )
            case.steps.append(step)
            case.facts = row
    return cases


def _consented(
    session: Session, organisation_id: int | None, cases: Iterable[_CaseRow]
) -> set[int]:
    """The newcomers of these cases who consent to sharing with the organisation."""
    if organisation_id is None:
        return set()
    ids = sorted({case.newcomer_id for case in cases})
    found: set[int] = set()
    for chunk in chunks(ids):
        found.update(
            session.connection().scalars(_CONSENTED, {"ids": chunk, "org": organisation_id})
        )
    return found


# --- checking -----------------------------------------------------------------------------------


def complete_steps(
    session: Session,
    *,
    actor: Actor,
    items: Sequence[Completion],
    now: datetime | None = None,
    by: Literal["step", "holder"] = "step",
) -> list[Completed]:
    """Record steps as done (each optionally on an earlier day), all in this transaction; the
    advance opens what they unlock. One result per item, in order.

    ``by="step"`` (``complete_step``): a case manager completes any step, a partner only one its
    organisation accepted, with the newcomer's consent; ``expected_version`` is the step's.
    ``by="holder"`` (``complete_handoff``): the receiver of the step's accepted handoff (or an
    administrator) completes it; ``expected_version`` is the handoff's, and anyone else gets
    ``NotTheHolder``, for the handoff service to say why.

    The first item that is refused raises before anything is written."""
    if by == "step" and not (actor.manages_cases or actor.is_partner):
        raise PermissionDenied(
            "{role} may not {verb} steps.",
            role=actor.role,
            verb="complete",
        )
    now = now or utcnow()
    session.flush()  # what this transaction changed through objects must be in the rows read
    refs = [item.reference.strip().upper() for item in items]
    cases = _load(session, list(dict.fromkeys(refs)))
    consented = (
        _consented(session, actor.organisation_id, cases.values()) if actor.is_partner else set()
    )
    done: list[_Done] = []
    for ref, item in zip(refs, items, strict=True):
        case = cases[ref]
        step = case.step(item.step_key)
        holds = (
            step is not None
            and step.handoff is not None
            and step.handoff.state in HELD_BY_PARTNER
            and (
                (actor.role == Role.admin and by == "holder")
                or (
                    actor.is_partner
                    and step.handoff.organisation_id == actor.organisation_id
                    and case.newcomer_id in consented
                )
            )
        )
        if by == "holder":
            if step is None or not holds:
                raise NotTheHolder(ref, item.step_key)
            label = f"The handoff of {step.key} for {ref}"
            check_version(cast(_Held, step.handoff), item.expected_version, label)
        else:
            if actor.is_partner and not holds and not _partner_sees(session, actor, case):
                # A case never handed to the partner sounds like none: a write reveals no more
                # than a read.
                raise NotFoundError("No case with reference '{reference}'.", reference=ref)
            if step is None:
                raise NotFoundError(
                    "Case {reference} has no step '{step}' (it has: {keys}).",
                    reference=ref,
                    step=item.step_key,
                    keys=", ".join(s.key for s in case.steps),
                )
            if actor.is_partner and not holds:
                raise PermissionDenied(
                    "You may only {verb} steps your organisation has accepted; step {step} of "
                    "{reference} is not one of them.",
                    verb="complete",
                    step=step.key,
                    reference=ref,
                )
            check_version(step, item.expected_version, f"Step {step.key} of {ref}")
        done.append(_checked(actor, case, step, item.outcome, item.on, now))
    _write(session, actor, done, now)
    return [
        Completed(
            d.case.reference,
            d.step.key,
            d.step.id,
            d.step.version,
            d.step.state,
            d.handoff.id if d.handoff else None,
        )
        for d in done
    ]


def complete_step(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    step_key: str,
    outcome: str | None = None,
    on: date | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Completed:
    """Record a step as done (optionally on an earlier day); the advance opens what it unlocks.
    ``complete_steps`` with one item."""
    (completed,) = complete_steps(
        session,
        actor=actor,
        items=[Completion(reference, step_key, outcome, on, expected_version)],
        now=now,
    )
    return completed


def _partner_sees(session: Session, actor: Actor, case: _CaseRow) -> bool:
    return partner_may_see_case(session, actor, case_id=case.id, newcomer_id=case.newcomer_id)


def _checked(
    actor: Actor,
    case: _CaseRow,
    step: _StepRow,
    outcome: str | None,
    on: date | None,
    now: datetime,
) -> _Done:
    """A completion the step's state and catalogue allow, changed in memory (so that a second
    item of the same step in one batch finds it done)."""
    if step.state not in WORKABLE:
        if step.state == StepState.blocked:
            raise InvalidTransition(
                "Step {step} is blocked; only an open or in-progress step can be completed. "
                "Resume it first.",
                step=step.key,
            )
        raise InvalidTransition(
            "Step {step} is {state}; only an open or in-progress step can be completed.",
            step=step.key,
            state=step.state,
        )
    entry = get_registry().catalogue.get(step.key)
    allowed = entry.outcomes if entry else []
    if outcome is not None and allowed and outcome not in allowed:
        raise ValidationFailed(
            "'{outcome}' is not an outcome of step {step}; use one of {outcomes}.",
            outcome=outcome,
            step=step.key,
            outcomes=", ".join(allowed),
        )
    # A date before the step opened is allowed: the newcomer may have had a flat already.
    done_at = moment(on, now)
    handoff, closes_as = step.handoff, None
    if handoff is not None:
        by_holder = actor.is_partner or handoff.state == HandoffState.accepted
        closes_as = HandoffState.completed if by_holder else HandoffState.withdrawn
    done = _Done(case, step, outcome, done_at, handoff, closes_as)
    step.state = StepState.done
    step.done_at = done_at
    if step.started_at is None:
        step.started_at = min(done_at, now)
    step.version += 1
    step.handoff = None
    return done


# --- writing ------------------------------------------------------------------------------------

_STEP_DONE = (
    update(_STEPS)
    .where(_STEPS.c.id == bindparam("b_id"))
    .values(
        state=StepState.done.value,
        done_at=bindparam("b_done_at"),
        outcome=bindparam("b_outcome"),
        started_at=bindparam("b_started_at"),
        version=_STEPS.c.version + 1,
    )
)
_HANDOFF_CLOSED = (
    update(_HANDOFFS)
    .where(_HANDOFFS.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        closed_at=bindparam("b_closed_at"),
        reason=func.coalesce(
            bindparam("b_reason", type_=_HANDOFFS.c.reason.type), _HANDOFFS.c.reason
        ),
        version=_HANDOFFS.c.version + 1,
    )
)
_MOVED_IN = (
    update(_NEWCOMERS)
    .where(_NEWCOMERS.c.id == bindparam("b_id"), _NEWCOMERS.c.move_in_date.is_(None))
    .values(move_in_date=bindparam("b_day"), version=_NEWCOMERS.c.version + 1)
)
_CASE_TOUCHED = (
    update(_CASES)
    .where(_CASES.c.id == bindparam("b_id"))
    .values(
        next_due=bindparam("b_next_due"),
        advance_requested_at=func.coalesce(
            _CASES.c.advance_requested_at,
            bindparam("b_now", type_=_CASES.c.advance_requested_at.type),
        ),
        version=_CASES.c.version + 1,
    )
)


def _write(session: Session, actor: Actor, done: list[_Done], now: datetime) -> None:
    """Write the checked completions, a statement per kind of change, and expire what the
    session holds of the rows changed."""
    if not done:
        return
    conn = session.connection()
    conn.execute(
        _STEP_DONE,
        [
            {
                "b_id": d.step.id,
                "b_done_at": d.done_at,
                "b_outcome": d.outcome,
                "b_started_at": d.step.started_at,
            }
            for d in done
        ],
    )
    closed = [
        {
            "b_id": d.handoff.id,
            "b_state": cast(HandoffState, d.handoff_state).value,
            "b_closed_at": now,
            "b_reason": (
                None if d.handoff_state == HandoffState.completed else "completed_elsewhere"
            ),
        }
        for d in done
        if d.handoff is not None
    ]
    if closed:
        conn.execute(_HANDOFF_CLOSED, closed)
    moved_in = {
        d.case.newcomer_id: clocks.local_today(d.done_at)
        for d in done
        if d.step.key == "housing" and d.case.facts.move_in_date is None
    }
    if moved_in:
        conn.execute(_MOVED_IN, [{"b_id": i, "b_day": day} for i, day in moved_in.items()])
    cases = list({d.case.id: d.case for d in done}.values())
    moved, touched = _dues(cases, moved_in)
    if moved:
        conn.execute(MOVE_DUES, moved)
    if touched:
        conn.execute(_CASE_TOUCHED, [{**t, "b_now": now} for t in touched])
    audit.record_entries(
        session,
        actor=actor,
        now=now,
        entries=[
            audit.Entry(
                "step.completed",
                "step",
                d.step.id,
                d.case.id,
                {
                    "step": d.step.key,
                    "outcome": d.outcome,
                    "done_on": clocks.local_today(d.done_at).isoformat(),
                    "handoff_id": d.handoff.id if d.handoff else None,
                },
            )
            for d in done
        ],
    )
    _forget(session, done)


def _dues(
    cases: list[_CaseRow], moved_in: dict[int, date]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each active step's due dates recomputed from the facts as they are now (the steps just
    done among them), the steps whose dates moved, and each case's next due date."""
    moved: list[dict[str, Any]] = []
    touched: list[dict[str, Any]] = []
    for case in cases:
        facts = clock_facts(case.facts, case.steps)
        if case.newcomer_id in moved_in:
            facts["move_in"] = moved_in[case.newcomer_id]
        redated, next_due = redate(case.steps, facts)
        for step in redated:
            step.version += 1
            moved.append(
                {
                    "b_id": step.id,
                    "b_service_due": step.service_due,
                    "b_legal_due": step.legal_due,
                    "b_due_date": step.due_date,
                }
            )
        # As the objects did it: the case row changes (and its version) only if the advance
        # was not asked for already or the next due date moved.
        if case.advance_requested_at is None or next_due != case.next_due:
            touched.append({"b_id": case.id, "b_next_due": next_due})
    return moved, touched


def _forget(session: Session, done: list[_Done]) -> None:
    """Objects the session holds of the rows written are out of date now: expire them, so that
    they are read again when next used."""
    held = session.identity_map
    if not held:
        return
    keys: list[Any] = []
    for d in done:
        keys += [identity_key(Case, d.case.id), identity_key(Newcomer, d.case.newcomer_id)]
        keys += [identity_key(Step, s.id) for s in d.case.steps]
        if d.handoff is not None:
            keys.append(identity_key(Handoff, d.handoff.id))
    for key in keys:
        obj = held.get(key)
        if obj is not None:
            session.expire(obj)
