"""The step and handoff life cycle as a state machine, explored by hypothesis against the services.

Every rule is one real service call in one ``db.transaction()``, made by a plausible actor (the
case manager, the partner holding the step, now and then somebody else). A refused call (any
``TrackerError``) is fine, but must leave the case exactly as it was. After every call the case is
read back and checked:

* no impossible state (see :func:`impossible_states`): a finished step without its date, a pending
  step with a handoff, two active handoffs on one step, a handoff offered or accepted without the
  newcomer's current consent, a step at work whose prerequisites are not finished, a case with
  unfinished business that nobody will advance ...;
* no lost update: a row that changed has a higher version, versions never go down, and a change
  made against an old version (the "stale edit" rule) is refused with ``ConcurrentEditError``
  and changes nothing;
* no audit gap: a call that changed the case added audit events for it, one that did not added
  none, and the case's audit trail never shrinks.

One database per backend serves every example; each example opens a fresh case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import NOW
from tests.helpers import newcomer
from tracker.access import Actor, actor_for
from tracker.db import Database
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    ACTIVE_STEP_STATES,
    FINISHED_STEP_STATES,
    CaseStatus,
    ConsentMethod,
    HandoffState,
    StepState,
)
from tracker.errors import ConcurrentEditError, TrackerError
from tracker.journeys.advance import advance_case
from tracker.journeys.cases import open_case, reassign_case, register_newcomer
from tracker.journeys.consent import give_consent, revoke_consent
from tracker.journeys.handoffs import (
    accept_handoff,
    complete_handoff,
    decline_handoff,
    offer_handoff,
    return_handoff,
    withdraw_handoff,
)
from tracker.journeys.offers import HOLD_CONSENT_MISSING, HOLD_CONSENT_REVOKED
from tracker.journeys.steps import block_step, complete_step, skip_step, start_step
from tracker.models import AuditEvent, Case, Consent, Handoff, OutboxMessage, Step

SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,  # the same examples on every run and in CI
    database=None,  # no example database: nothing carried over between runs
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

PARTNERS = {  # organisation -> one of its agents
    "ihk-mr": "ihk.hoffmann",
    "afa-bochum": "afa.becker",
    "hwk-do": "hwk.wagner",
    "vbw": "vbw.schulz",
    "stadt-bochum": "stadt.weber",
    "thga": "thga.nowak",
}
MANAGERS = ("cm.mueller", "cm.yilmaz")
OTHERS = ("admin", "lead.schmidt")
EVERYONE = (*MANAGERS, *PARTNERS.values(), *OTHERS)
STEP_KEYS = (
    "recognition",
    "job_offer",
    "visa",
    "housing",
    "registration",
    "tax_id",
    "bank_account",
    "health_insurance",
    "residence_title",
    "integration_course",
    "job_entry",
)
REASONS = ("Unterlagen fehlen", "Nicht zuständig", "   ")  # the last one is refused
CLOSED_HANDOFF_STATES = frozenset(set(HandoffState) - ACTIVE_HANDOFF_STATES)

# (backend, rule, "ok" | "refused" | "skipped"): printed at the end of the module.
OPERATIONS: Counter[tuple[str, str, str]] = Counter()


# --- What the case looks like in the database ---------------------------------------------------


@dataclass(frozen=True)
class StepRow:
    id: int
    state: str
    owner: int
    needs: tuple[str, ...]
    opened_at: datetime | None
    started_at: datetime | None
    done_at: datetime | None
    clock_started_at: datetime | None
    blocked_reason: str | None
    skip_reason: str | None
    outcome: str | None
    due_date: date | None
    service_due: date | None
    legal_due: date | None
    version: int


@dataclass(frozen=True)
class HandoffRow:
    step: str
    organisation: int
    state: str
    hold_reason: str | None
    reason: str | None
    offered_at: datetime | None
    accepted_at: datetime | None
    accepted_by_id: int | None
    closed_at: datetime | None
    version: int


@dataclass(frozen=True)
class ConsentRow:
    organisation: int
    revoked: bool
    version: int


@dataclass(frozen=True)
class CaseRow:
    status: str
    manager_id: int | None
    closed_at: datetime | None
    next_due: date | None
    advance_requested: bool
    version: int


@dataclass(frozen=True)
class Snapshot:
    case: CaseRow
    steps: dict[str, StepRow]
    handoffs: dict[int, HandoffRow]
    consents: dict[int, ConsentRow]
    audit: int
    outbox: int

    def consenting(self) -> set[int]:
        return {c.organisation for c in self.consents.values() if not c.revoked}

    def active_handoff(self, step: str) -> tuple[int, HandoffRow] | None:
        found = [
            (i, h)
            for i, h in self.handoffs.items()
            if h.step == step and h.state in ACTIVE_HANDOFF_STATES
        ]
        return found[-1] if found else None

    def meaning(self) -> tuple[Any, ...]:
        """What the audit trail must account for: states, owners, reasons, manager, consent.
        Due dates, versions and the advance request are bookkeeping derived from these."""
        return (
            (self.case.status, self.case.manager_id),
            tuple(
                (k, s.state, s.owner, s.blocked_reason, s.skip_reason, s.outcome)
                for k, s in sorted(self.steps.items())
            ),
            tuple(
                (i, h.step, h.organisation, h.state, h.hold_reason, h.reason)
                for i, h in sorted(self.handoffs.items())
            ),
            tuple(sorted((i, c.organisation, c.revoked) for i, c in self.consents.items())),
        )


def _columns(cls: type, model: type, **renamed: Any) -> list[Any]:
    """The model's columns for the dataclass's fields, labelled with the field names."""
    return [renamed.get(f.name, getattr(model, f.name, None)).label(f.name) for f in fields(cls)]


STEP_COLUMNS = _columns(StepRow, Step, owner=Step.owner_org_id)
HANDOFF_COLUMNS = _columns(HandoffRow, Handoff, step=Step.key, organisation=Handoff.organisation_id)
CASE_COLUMNS = [
    Case.status,
    Case.case_manager_id,
    Case.closed_at,
    Case.next_due,
    Case.advance_requested_at.is_not(None),
    Case.version,
]


def read_case(db: Database, case_id: int, newcomer_id: int) -> Snapshot:
    """The case as the database holds it now (plain rows, read in one short transaction)."""
    audit = (
        select(func.count()).select_from(AuditEvent).where(AuditEvent.case_id == case_id)
    ).scalar_subquery()
    outbox = (
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.case_id == case_id)
    ).scalar_subquery()
    with db.reader.connect() as conn:
        *case, n_audit, n_outbox = conn.execute(
            select(*CASE_COLUMNS, audit, outbox).where(Case.id == case_id)
        ).one()
        steps = conn.execute(
            select(Step.key.label("key"), *STEP_COLUMNS).where(Step.case_id == case_id)
        ).all()
        handoffs = conn.execute(
            select(Handoff.id, *HANDOFF_COLUMNS)
            .join(Step, Handoff.step_id == Step.id)
            .where(Handoff.case_id == case_id)
        ).all()
        consents = conn.execute(
            select(Consent.id, Consent.organisation_id, Consent.revoked_at, Consent.version).where(
                Consent.newcomer_id == newcomer_id
            )
        ).all()
    return Snapshot(
        case=CaseRow(*case),
        steps={
            r.key: StepRow(
                **{f.name: getattr(r, f.name) for f in fields(StepRow) if f.name != "needs"},
                needs=tuple(r.needs),
            )
            for r in steps
        },
        handoffs={
            r.id: HandoffRow(**{k: v for k, v in r._asdict().items() if k != "id"})
            for r in handoffs
        },
        consents={
            r.id: ConsentRow(r.organisation_id, r.revoked_at is not None, r.version)
            for r in consents
        },
        audit=n_audit,
        outbox=n_outbox,
    )


def impossible_states(snap: Snapshot) -> list[str]:
    """Everything that must never be true of a case, however it got there."""
    problems = []
    consenting = snap.consenting()
    finished = {k for k, s in snap.steps.items() if s.state in FINISHED_STEP_STATES}
    for key, s in snap.steps.items():
        mine = [h for h in snap.handoffs.values() if h.step == key]
        active = [h for h in mine if h.state in ACTIVE_HANDOFF_STATES]
        if s.state == StepState.done and (s.done_at is None or s.opened_at is None):
            problems.append(f"{key} is done without done_at/opened_at")
        if s.state == StepState.skipped and (s.done_at is None or not s.skip_reason):
            problems.append(f"{key} is skipped without a date or reason")
        if (s.state == StepState.blocked) != (s.blocked_reason is not None):
            problems.append(f"{key} is {s.state} with blocked_reason {s.blocked_reason!r}")
        if s.state == StepState.in_progress and s.started_at is None:
            problems.append(f"{key} is in progress but never started")
        if s.state == StepState.pending and (mine or s.opened_at is not None):
            problems.append(f"{key} is pending but was opened or handed off")
        if s.state in (*ACTIVE_STEP_STATES, StepState.done) and not set(s.needs) <= finished:
            problems.append(f"{key} is {s.state} before its prerequisites {s.needs} finished")
        if len(active) > 1:
            problems.append(f"{key} has {len(active)} active handoffs")
        if active and s.state not in ACTIVE_STEP_STATES:
            problems.append(f"{key} is {s.state} with an active handoff")
        if any(h.state == HandoffState.accepted for h in active) and s.state not in (
            StepState.in_progress,
            StepState.blocked,
        ):
            problems.append(f"{key} is {s.state} although a partner accepted it")
    for i, h in snap.handoffs.items():
        where = f"handoff {i} ({h.step}, {h.state})"
        visible = h.state in (HandoffState.offered, HandoffState.accepted)
        if visible and h.organisation not in consenting:
            problems.append(f"{where}: the organisation has no current consent")
        if h.state == HandoffState.held:
            if h.organisation in consenting:
                problems.append(f"{where}: held although consent is on file")
            if h.hold_reason not in (HOLD_CONSENT_MISSING, HOLD_CONSENT_REVOKED):
                problems.append(f"{where}: held for {h.hold_reason!r}")
        if h.state == HandoffState.offered and h.offered_at is None:
            problems.append(f"{where}: offered without offered_at")
        if h.state == HandoffState.accepted and h.accepted_at is None:
            problems.append(f"{where}: accepted without accepted_at")
        if (h.state in CLOSED_HANDOFF_STATES) != (h.closed_at is not None):
            problems.append(f"{where}: closed_at is {h.closed_at}")
        answered = (HandoffState.declined, HandoffState.returned, HandoffState.withdrawn)
        if h.state in answered and not h.reason:
            problems.append(f"{where}: no reason")
    current = Counter(c.organisation for c in snap.consents.values() if not c.revoked)
    if any(n > 1 for n in current.values()):
        problems.append(f"two current consents for one organisation: {current}")
    all_finished = all(s.state in FINISHED_STEP_STATES for s in snap.steps.values())
    ready = [
        k
        for k, s in snap.steps.items()
        if s.state == StepState.pending and set(s.needs) <= finished
    ]
    if snap.case.status == CaseStatus.closed:
        if not all_finished or snap.case.closed_at is None:
            problems.append("the case is closed with unfinished steps or no closed_at")
    elif (ready or all_finished) and not snap.case.advance_requested:
        problems.append(f"ready steps {ready} (or a finished case) but no advance requested")
    if snap.audit < 1:
        problems.append("a case without an audit trail")
    return problems


def changed_rows(before: Snapshot, after: Snapshot) -> list[str]:
    """Rows whose data changed while their version did not (or whose version went down)."""
    lost = []
    pairs: list[tuple[str, Any, Any]] = [("case", before.case, after.case)]
    pairs += [(f"step {k}", s, after.steps[k]) for k, s in before.steps.items()]
    pairs += [(f"handoff {i}", h, after.handoffs.get(i)) for i, h in before.handoffs.items()]
    pairs += [(f"consent {i}", c, after.consents.get(i)) for i, c in before.consents.items()]
    for name, old, new in pairs:
        if new is None:
            lost.append(f"{name} disappeared")
        elif new.version < old.version:
            lost.append(f"{name}: version went down {old.version} -> {new.version}")
        elif new != old and new.version == old.version:
            lost.append(f"{name} changed without a new version")
    return lost


# --- The machine -------------------------------------------------------------------------------


def some_step(*states: str) -> Callable[[Any], bool]:
    """A rule's precondition: the case has a step in one of ``states`` (so that the rule mostly
    makes sense; it still picks an unfitting step now and then, to be refused)."""
    return lambda self: (
        self.snap is not None and any(s.state in states for s in self.snap.steps.values())
    )


def some_handoff(*states: str) -> Callable[[Any], bool]:
    return lambda self: (
        self.snap is not None and any(h.state in states for h in self.snap.handoffs.values())
    )


class CaseLifecycle(RuleBasedStateMachine):
    """One case per example; the class is bound to a database and its actors by
    :func:`machine_for`."""

    db: Database
    actors: dict[str, Actor]
    backend: str
    serial: Iterator[int]

    def __init__(self) -> None:
        super().__init__()
        self.reference = ""
        self.case_id = self.newcomer_id = 0
        self.snap: Snapshot | None = None
        self.seen: dict[tuple[str, Any], set[int]] = {}
        self.minutes = 0

    # -- helpers --

    def tick(self) -> datetime:
        """The time of the next call: a minute after the last one."""
        self.minutes += 1
        return NOW + timedelta(minutes=self.minutes)

    def read(self) -> Snapshot:
        return read_case(self.db, self.case_id, self.newcomer_id)

    def actor(self, username: str) -> Actor:
        return self.actors[username]

    def remember(self, snap: Snapshot) -> None:
        self.seen.setdefault(("case", None), set()).add(snap.case.version)
        for key, s in snap.steps.items():
            self.seen.setdefault(("step", key), set()).add(s.version)
        for i, h in snap.handoffs.items():
            self.seen.setdefault(("handoff", i), set()).add(h.version)

    def attempt(
        self,
        name: str,
        call: Callable[[Session], Any],
        *,
        stale: bool = False,
    ) -> tuple[bool, Any]:
        """Make one service call; check what it did (or that a refusal did nothing)."""
        before = self.snap
        assert before is not None
        try:
            with self.db.transaction() as s:
                result = call(s)
        except TrackerError as exc:
            after = self.read()
            OPERATIONS[self.backend, name, "refused"] += 1
            assert after == before, f"{name} was refused ({exc}) but changed the case"
            if stale:
                assert isinstance(exc, ConcurrentEditError), f"stale {name}: {exc!r}"
            else:
                # Callers here pass no version or the current one: never a conflict.
                assert not isinstance(exc, ConcurrentEditError), f"{name}: {exc}"
            return False, exc
        after = self.read()
        OPERATIONS[self.backend, name, "ok"] += 1
        assert not stale, f"{name} against an old version went through"
        assert after.audit >= before.audit, "the audit trail shrank"
        lost = changed_rows(before, after)
        assert not lost, f"{name}: {lost}"
        if after.meaning() != before.meaning():
            assert after.audit > before.audit, f"{name} changed the case without an audit event"
        else:
            assert after.audit == before.audit, f"{name} changed nothing but was audited"
        self.snap = after
        self.remember(after)
        return True, result

    def has_stale_version(self) -> bool:
        """Something was read at a version that is no longer current."""
        if self.snap is None:
            return False
        current = {("case", None): self.snap.case.version}
        current.update({("step", k): s.version for k, s in self.snap.steps.items()})
        current.update({("handoff", i): h.version for i, h in self.snap.handoffs.items()})
        return any(min(self.seen.get(k, {v})) < v for k, v in current.items())

    def skipped(self, name: str) -> None:
        OPERATIONS[self.backend, name, "skipped"] += 1

    def pick_step(self, data: st.DataObject, *states: str, handoff: tuple[str, ...] = ()) -> str:
        """Mostly a step where the call makes sense, sometimes any step (to be refused)."""
        snap = self.snap
        assert snap is not None

        def fits(key: str) -> bool:
            if states and snap.steps[key].state not in states:
                return False
            if not handoff:
                return True
            active = snap.active_handoff(key)
            return active is not None and active[1].state in handoff

        fitting = sorted(k for k in snap.steps if fits(k))
        if fitting and data.draw(st.integers(0, 9), label="sensible") < 8:
            return data.draw(st.sampled_from(fitting), label="step")
        return data.draw(st.sampled_from(STEP_KEYS), label="step")

    def receiver(self, step: str) -> str | None:
        assert self.snap is not None
        active = self.snap.active_handoff(step)
        if active is None:
            return None
        org_id = active[1].organisation
        return next((u for u, a in self.actors.items() if a.organisation_id == org_id), None)

    def pick_worker(self, data: st.DataObject, step: str) -> Actor:
        """Who works a step: the partner that accepted it, the case manager, now and then anyone."""
        assert self.snap is not None
        roll = data.draw(st.integers(0, 9), label="who")
        active = self.snap.active_handoff(step)
        holder = self.receiver(step)
        accepted = active is not None and active[1].state == HandoffState.accepted
        if holder is not None and accepted and roll < 4:
            return self.actor(holder)
        if roll < 8:
            return self.actor(data.draw(st.sampled_from(MANAGERS), label="manager"))
        return self.actor(data.draw(st.sampled_from(EVERYONE), label="anybody"))

    def pick_manager(self, data: st.DataObject) -> Actor:
        """Mostly a case manager (routing, consent, the case), now and then anyone."""
        if data.draw(st.integers(0, 9), label="who") < 8:
            return self.actor(data.draw(st.sampled_from(MANAGERS), label="manager"))
        return self.actor(data.draw(st.sampled_from(EVERYONE), label="anybody"))

    def pick_receiver(self, data: st.DataObject, step: str) -> Actor:
        """Who answers a handoff: mostly its receiving organisation, now and then anyone."""
        holder = self.receiver(step)
        if holder is not None and data.draw(st.integers(0, 9), label="who") < 8:
            return self.actor(holder)
        return self.actor(data.draw(st.sampled_from(EVERYONE), label="anybody"))

    def version_of(self, data: st.DataObject, current: int) -> int | None:
        """Callers either pass no version or the one they just read."""
        return current if data.draw(st.booleans(), label="with_version") else None

    def step_row(self, key: str) -> StepRow:
        assert self.snap is not None
        return self.snap.steps[key]

    # -- a fresh case per example --

    @initialize(
        consent_to=st.one_of(
            st.just(frozenset(PARTNERS)), st.frozensets(st.sampled_from(sorted(PARTNERS)))
        ),
        warm_up=st.sampled_from(["fresh", "recognition accepted", "visa done"]),
    )
    def open_a_case(self, consent_to: frozenset[str], warm_up: str) -> None:
        """A fresh case, in one transaction: registered, opened, consent recorded, advanced;
        then, to start from further along, IHK's offer accepted, or the first three steps done
        (the partners accepting and the case manager completing; the next step is offered)."""
        cm = self.actor("cm.mueller")
        with self.db.transaction() as s:
            person = register_newcomer(
                s, actor=cm, data=newcomer(given_name=f"Example{next(self.serial)}"), now=NOW
            )
            case = open_case(s, actor=cm, newcomer_id=person.id, now=NOW)
            ref = case.reference
            for org in sorted(consent_to):
                give_consent(
                    s,
                    actor=cm,
                    reference=ref,
                    organisation=org,
                    method=ConsentMethod.online_form,
                    notice_language="en",
                    now=NOW,
                )
            advance_case(s, actor=cm, reference=ref, now=NOW)
            if warm_up == "visa done":
                for key in ("recognition", "job_offer", "visa"):
                    self._accept_offer(s, ref, key)
                    step = complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)
                    advance_case(s, actor=cm, reference=ref, now=NOW)
                    assert step.state == StepState.done
            if warm_up == "recognition accepted":
                self._accept_offer(s, ref, "recognition")
            self.reference, self.case_id, self.newcomer_id = ref, case.id, person.id
        self.snap = self.read()
        self.remember(self.snap)
        OPERATIONS[self.backend, f"open_case ({warm_up})", "ok"] += 1

    def _accept_offer(self, s: Session, reference: str, key: str) -> None:
        step = s.scalars(
            select(Step).join(Case).where(Case.reference == reference, Step.key == key)
        ).one()
        for handoff in step.handoffs:
            if handoff.state == HandoffState.offered:
                partner = self.actor(PARTNERS[handoff.organisation.key])
                accept_handoff(s, actor=partner, reference=reference, step_key=key, now=NOW)

    # -- steps --

    @rule(data=st.data())
    @precondition(some_step(StepState.open))
    def start(self, data: st.DataObject) -> None:
        key = self.pick_step(data, StepState.open)
        who = self.pick_worker(data, key)
        v = self.version_of(data, self.step_row(key).version)
        ok, _ = self.attempt(
            "start_step",
            lambda s: start_step(
                s,
                actor=who,
                reference=self.reference,
                step_key=key,
                expected_version=v,
                now=self.tick(),
            ),
        )
        if ok:
            row = self.step_row(key)
            assert row.state == StepState.in_progress and row.blocked_reason is None

    @rule(data=st.data())
    @precondition(some_step(StepState.blocked))
    def resume(self, data: st.DataObject) -> None:
        key = self.pick_step(data, StepState.blocked)
        who = self.pick_worker(data, key)
        before = self.step_row(key)
        ok, _ = self.attempt(
            "resume_step",
            lambda s: start_step(
                s, actor=who, reference=self.reference, step_key=key, now=self.tick()
            ),
        )
        if ok:
            row = self.step_row(key)
            assert row.state == StepState.in_progress and row.version > before.version
            assert row.clock_started_at is not None

    @rule(data=st.data(), outcome=st.sampled_from([None, None, None, "maybe"]))
    @precondition(some_step(StepState.open, StepState.in_progress))
    def complete(self, data: st.DataObject, outcome: str | None) -> None:
        key = self.pick_step(data, StepState.open, StepState.in_progress)
        who = self.pick_worker(data, key)
        before = self.step_row(key)
        v = self.version_of(data, before.version)
        ok, _ = self.attempt(
            "complete_step",
            lambda s: complete_step(
                s,
                actor=who,
                reference=self.reference,
                step_key=key,
                outcome=outcome,
                expected_version=v,
                now=self.tick(),
            ),
        )
        if ok:
            row = self.step_row(key)
            assert row.state == StepState.done and row.version > before.version
            assert self.snap is not None and self.snap.active_handoff(key) is None

    @rule(data=st.data(), reason=st.sampled_from(REASONS))
    @precondition(some_step(StepState.open, StepState.in_progress))
    def block(self, data: st.DataObject, reason: str) -> None:
        key = self.pick_step(data, StepState.open, StepState.in_progress)
        who = self.pick_worker(data, key)
        before = self.step_row(key)
        ok, _ = self.attempt(
            "block_step",
            lambda s: block_step(
                s, actor=who, reference=self.reference, step_key=key, reason=reason, now=self.tick()
            ),
        )
        if ok:
            row = self.step_row(key)
            assert (row.state, row.blocked_reason) == (StepState.blocked, reason.strip())
            assert row.version > before.version

    @rule(data=st.data(), reason=st.sampled_from(REASONS))
    def skip(self, data: st.DataObject, reason: str) -> None:
        key = self.pick_step(data, StepState.pending, *ACTIVE_STEP_STATES)
        who = self.pick_manager(data)
        before = self.step_row(key)
        v = self.version_of(data, before.version)
        ok, _ = self.attempt(
            "skip_step",
            lambda s: skip_step(
                s,
                actor=who,
                reference=self.reference,
                step_key=key,
                reason=reason,
                expected_version=v,
                now=self.tick(),
            ),
        )
        if ok:
            row = self.step_row(key)
            assert row.state == StepState.skipped and row.version > before.version

    # -- handoffs --

    @rule(data=st.data(), org=st.sampled_from([*sorted(PARTNERS), "employer"]))
    @precondition(some_step(*ACTIVE_STEP_STATES))
    def offer(self, data: st.DataObject, org: str) -> None:
        key = self.pick_step(data, *ACTIVE_STEP_STATES)
        who = self.pick_manager(data)
        assert self.snap is not None
        previous = self.snap.active_handoff(key)
        v = self.version_of(data, self.step_row(key).version)
        ok, _ = self.attempt(
            "offer_handoff",
            lambda s: offer_handoff(
                s,
                actor=who,
                reference=self.reference,
                step_key=key,
                organisation=org,
                expected_version=v,
                now=self.tick(),
            ),
        )
        if ok:
            current = self.snap.active_handoff(key)
            assert current is not None
            assert previous is None or current[0] != previous[0]
            assert current[1].state in (HandoffState.offered, HandoffState.held)
            if previous is not None:
                assert self.snap.handoffs[previous[0]].state == HandoffState.withdrawn
                assert self.snap.handoffs[previous[0]].version > previous[1].version

    def _answer(
        self,
        data: st.DataObject,
        name: str,
        wanted: HandoffState,
        call: Callable[..., Any],
        result_state: HandoffState,
        **kwargs: Any,
    ) -> None:
        key = self.pick_step(data, *ACTIVE_STEP_STATES, handoff=(wanted,))
        who = self.pick_receiver(data, key)
        assert self.snap is not None
        active = self.snap.active_handoff(key)
        v = self.version_of(data, active[1].version) if active else None
        ok, _ = self.attempt(
            name,
            lambda s: call(
                s,
                actor=who,
                reference=self.reference,
                step_key=key,
                expected_version=v,
                now=self.tick(),
                **kwargs,
            ),
        )
        if ok:
            assert active is not None
            handoff = self.snap.handoffs[active[0]]
            assert handoff.state == result_state and handoff.version > active[1].version

    @rule(data=st.data())
    @precondition(some_handoff(HandoffState.offered))
    def accept(self, data: st.DataObject) -> None:
        self._answer(
            data, "accept_handoff", HandoffState.offered, accept_handoff, HandoffState.accepted
        )

    @rule(data=st.data(), reason=st.sampled_from(REASONS))
    @precondition(some_handoff(HandoffState.offered))
    def decline(self, data: st.DataObject, reason: str) -> None:
        self._answer(
            data,
            "decline_handoff",
            HandoffState.offered,
            decline_handoff,
            HandoffState.declined,
            reason=reason,
        )

    @rule(data=st.data(), reason=st.sampled_from(REASONS))
    @precondition(some_handoff(HandoffState.accepted))
    def give_back(self, data: st.DataObject, reason: str) -> None:
        self._answer(
            data,
            "return_handoff",
            HandoffState.accepted,
            return_handoff,
            HandoffState.returned,
            reason=reason,
        )

    @rule(data=st.data())
    @precondition(some_handoff(HandoffState.accepted))
    def finish(self, data: st.DataObject) -> None:
        self._answer(
            data,
            "complete_handoff",
            HandoffState.accepted,
            complete_handoff,
            HandoffState.completed,
        )

    @rule(data=st.data(), reason=st.sampled_from(REASONS))
    @precondition(some_handoff(HandoffState.offered, HandoffState.held))
    def withdraw(self, data: st.DataObject, reason: str) -> None:
        withdrawable = (HandoffState.offered, HandoffState.held)
        key = self.pick_step(data, *ACTIVE_STEP_STATES, handoff=withdrawable)
        who = self.pick_manager(data)
        assert self.snap is not None
        active = self.snap.active_handoff(key)
        v = self.version_of(data, active[1].version) if active else None
        ok, _ = self.attempt(
            "withdraw_handoff",
            lambda s: withdraw_handoff(
                s,
                actor=who,
                reference=self.reference,
                step_key=key,
                reason=reason,
                expected_version=v,
                now=self.tick(),
            ),
        )
        if ok:
            assert active is not None
            assert self.snap.handoffs[active[0]].state == HandoffState.withdrawn
            assert self.snap.active_handoff(key) is None

    # -- consent, the case manager, the advance --

    @rule(data=st.data(), org=st.sampled_from(sorted(PARTNERS)))
    def consent(self, data: st.DataObject, org: str) -> None:
        who = self.pick_manager(data)
        org_id = self.actor(PARTNERS[org]).organisation_id
        ok, _ = self.attempt(
            "give_consent",
            lambda s: give_consent(
                s,
                actor=who,
                reference=self.reference,
                organisation=org,
                method=ConsentMethod.signed_form,
                notice_language="de",
                now=self.tick(),
            ),
        )
        if ok:
            assert self.snap is not None and org_id in self.snap.consenting()

    @rule(data=st.data(), org=st.sampled_from(sorted(PARTNERS)))
    def revoke(self, data: st.DataObject, org: str) -> None:
        who = self.pick_manager(data)
        org_id = self.actor(PARTNERS[org]).organisation_id
        ok, _ = self.attempt(
            "revoke_consent",
            lambda s: revoke_consent(
                s, actor=who, reference=self.reference, organisation=org, now=self.tick()
            ),
        )
        if ok:
            assert self.snap is not None and org_id not in self.snap.consenting()
            assert not any(
                h.organisation == org_id
                and h.state in (HandoffState.offered, HandoffState.accepted)
                for h in self.snap.handoffs.values()
            )

    @rule(data=st.data(), to=st.sampled_from([*MANAGERS, "ihk.hoffmann"]))
    def reassign(self, data: st.DataObject, to: str) -> None:
        who = self.pick_manager(data)
        assert self.snap is not None
        before = self.snap.case
        v = self.version_of(data, before.version)
        ok, _ = self.attempt(
            "reassign_case",
            lambda s: reassign_case(
                s,
                actor=who,
                reference=self.reference,
                case_manager=to,
                expected_version=v,
                now=self.tick(),
            ),
        )
        if ok:
            after = self.snap.case
            assert after.manager_id == self.actor(to).user_id
            assert (after.version > before.version) == (after.manager_id != before.manager_id)

    @rule()
    @precondition(lambda self: self.snap is not None and self.snap.case.advance_requested)
    def advance(self) -> None:
        """What the Prefect run (or the sweep) does once a change asked for an advance."""
        ok, result = self.attempt(
            "advance_case",
            lambda s: advance_case(
                s, actor=self.actor("cm.mueller"), reference=self.reference, now=self.tick()
            ),
        )
        assert ok, result
        assert self.snap is not None
        for key in result.opened:
            assert self.step_row(key).state == StepState.open
        # Nothing ready is left behind, and nothing is left to ask for.
        assert not self.snap.case.advance_requested
        finished = {k for k, s in self.snap.steps.items() if s.state in FINISHED_STEP_STATES}
        assert not [
            k
            for k, s in self.snap.steps.items()
            if s.state == StepState.pending and set(s.needs) <= finished
        ]

    # -- the stale edit --

    @rule(data=st.data())
    @precondition(lambda self: self.has_stale_version())
    def stale_edit(self, data: st.DataObject) -> None:
        """A change made from an old read: refused with ConcurrentEditError, nothing changes."""
        snap = self.snap
        assert snap is not None
        cm = self.actor("cm.mueller")
        ref = self.reference

        def older(kind: str, ident: Any, current: int) -> int | None:
            seen = [v for v in self.seen.get((kind, ident), ()) if v < current]
            return max(seen) if seen else None

        # (what, the stale version, the edit made with it)
        candidates: list[tuple[str, int, Callable[[Session, int], Any]]] = []
        for key, row in sorted(snap.steps.items()):
            old = older("step", key, row.version)
            if old is None:
                continue
            candidates += [
                (
                    f"complete {key}",
                    old,
                    lambda s, v, k=key: complete_step(
                        s, actor=cm, reference=ref, step_key=k, expected_version=v
                    ),
                ),
                (
                    f"start {key}",
                    old,
                    lambda s, v, k=key: start_step(
                        s, actor=cm, reference=ref, step_key=k, expected_version=v
                    ),
                ),
                (
                    f"block {key}",
                    old,
                    lambda s, v, k=key: block_step(
                        s, actor=cm, reference=ref, step_key=k, reason="x", expected_version=v
                    ),
                ),
                (
                    f"skip {key}",
                    old,
                    lambda s, v, k=key: skip_step(
                        s, actor=cm, reference=ref, step_key=k, reason="x", expected_version=v
                    ),
                ),
                (
                    f"offer {key}",
                    old,
                    lambda s, v, k=key: offer_handoff(
                        s, actor=cm, reference=ref, step_key=k, expected_version=v
                    ),
                ),
            ]
        for i, h in sorted(snap.handoffs.items()):
            old = older("handoff", i, h.version)
            if old is None or h.state not in ACTIVE_HANDOFF_STATES:
                continue
            holder = self.receiver(h.step)
            if h.state == HandoffState.offered and holder is not None:
                candidates.append(
                    (
                        f"accept handoff {i}",
                        old,
                        lambda s, v, k=h.step, a=self.actor(holder): accept_handoff(
                            s, actor=a, reference=ref, step_key=k, expected_version=v
                        ),
                    )
                )
            if h.state in (HandoffState.offered, HandoffState.held):
                candidates.append(
                    (
                        f"withdraw handoff {i}",
                        old,
                        lambda s, v, k=h.step: withdraw_handoff(
                            s, actor=cm, reference=ref, step_key=k, reason="x", expected_version=v
                        ),
                    )
                )
        old = older("case", None, snap.case.version)
        if old is not None:
            candidates.append(
                (
                    "reassign case",
                    old,
                    lambda s, v: reassign_case(
                        s, actor=cm, reference=ref, case_manager="cm.yilmaz", expected_version=v
                    ),
                )
            )
        if not candidates:
            self.skipped("stale_edit")
            return
        _what, old, edit = data.draw(st.sampled_from(candidates), label="stale")
        self.attempt("stale_edit", lambda s: edit(s, old), stale=True)

    # -- checked after every step --

    @invariant()
    def nothing_impossible(self) -> None:
        if self.snap is None:
            return
        # self.snap was read back from the database after the last call.
        assert impossible_states(self.snap) == []


def machine_for(db: Database, backend: str) -> type[CaseLifecycle]:
    with db.read() as s:
        actors = {u: actor_for(s, u) for u in EVERYONE}
    counter = iter(range(1, 1_000_000))
    return type(
        f"CaseLifecycle_{backend}",
        (CaseLifecycle,),
        {"db": db, "actors": actors, "backend": backend, "serial": counter},
    )


@pytest.fixture(scope="module", autouse=True)
def _print_operations(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module: how many service calls the machine made, done and refused, per rule."""
    yield
    if not OPERATIONS:
        return
    lines = []
    for backend in sorted({b for b, _, _ in OPERATIONS}):
        mine = {(r, o): n for (b, r, o), n in OPERATIONS.items() if b == backend}
        ok = sum(n for (_, o), n in mine.items() if o == "ok")
        refused = sum(n for (_, o), n in mine.items() if o == "refused")
        lines.append(
            f"state machine on {backend}: {ok + refused} service calls, {ok} done, "
            f"{refused} refused (of them {mine.get(('stale_edit', 'refused'), 0)} stale edits)"
        )
        lines.append(
            "  done/refused: "
            + ", ".join(
                f"{r} {mine.get((r, 'ok'), 0)}/{mine.get((r, 'refused'), 0)}"
                for r in sorted({r for r, _ in mine})
            )
        )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n" + "\n".join(lines))


def test_the_step_and_handoff_life_cycle_holds_under_any_sequence_of_calls(
    db: Database,
) -> None:
    backend = "sqlite" if db.is_sqlite else "postgresql"
    run_state_machine_as_test(machine_for(db, backend), settings=SETTINGS)
