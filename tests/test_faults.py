"""Faults: concurrent writers, crashes, and a database that goes away and comes back.

Every scenario runs on SQLite and PostgreSQL unless it cannot (terminating server backends is
PostgreSQL's; a lock held past the busy timeout is SQLite's). Each one ends by counting what
happened: who won, who was refused and with which message, how many audit events and messages
there are, and what was lost, which must be nothing. The counts are printed as ``FAULTS ...``
lines (``pytest -rP`` shows them) and asserted exactly.

Clear messages: a refusal is a ``TrackerError`` whose text says what happened and what to do.
A database that is away raises ``DatabaseUnavailable`` (a ``TrackerError``), so the CLI and the
dashboard print one line instead of a traceback; it says "Nothing was saved" when the failure
came before the commit, and "may or may not have been saved" when the connection broke during
the commit itself, where nobody can know.
"""

from __future__ import annotations

import asyncio
import os
import select as select_module
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tests.conftest import NOW, PG_ADMIN_DSN, Actors
from tests.helpers import PARTNERS, LockWait, advance, advance_task, deliver, start_case
from tracker.access import Actor
from tracker.config import get_settings
from tracker.db import Database, database_unavailable, get_database
from tracker.enums import ConsentMethod, OutboxStatus, StepState
from tracker.errors import (
    ConcurrentEditError,
    DatabaseUnavailable,
    InvalidTransition,
    TrackerError,
)
from tracker.journeys.advance import advance_case
from tracker.journeys.cases import open_case, reassign_case, register_newcomer, update_newcomer
from tracker.journeys.consent import give_consent
from tracker.journeys.steps import block_step, complete_step, start_step
from tracker.messages.outbox import enqueue
from tracker.messages.senders import FileSender, Outgoing
from tracker.models import AuditEvent, Case, Handoff, Newcomer, OutboxMessage, Step
from tracker.schemas import NewcomerIn, NewcomerUpdate

ROOT = Path(__file__).resolve().parents[1]
MANAGERS = ("cm.mueller", "cm.yilmaz")
NOTHING_SAVED = "Nothing was saved"
MAYBE_SAVED = "may or may not have been saved"
PG_ONLY = pytest.mark.parametrize("empty_db", ["postgresql"], indirect=True)
SQLITE_ONLY = pytest.mark.parametrize("empty_db", ["sqlite"], indirect=True)


# --- helpers --------------------------------------------------------------------------------


def backend(db: Database) -> str:
    return "sqlite" if db.is_sqlite else "postgresql"


def figures(scenario: str, db: Database | None, **counts: object) -> None:
    """One quotable line per scenario: ``FAULTS <backend> <scenario>: key=value ...``."""
    where = backend(db) if db is not None else "-"
    print(f"FAULTS {where} {scenario}: " + " ".join(f"{k}={v}" for k, v in counts.items()))


Outcome = tuple[str, str]  # ("ok", "") or (error class name, message)


def together(*jobs: Callable[[], object], timeout: float = 120) -> list[Outcome]:
    """Run each job in its own thread (and so its own session and connection), all released
    at the same moment by a barrier; a refusal is recorded with its message, anything else
    is a crash the test reports."""
    barrier = threading.Barrier(len(jobs))
    outcomes: list[Outcome | None] = [None] * len(jobs)

    def run(index: int, job: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=30)
            job()
            outcomes[index] = ("ok", "")
        except TrackerError as exc:
            outcomes[index] = (type(exc).__name__, str(exc))
        except BaseException as exc:  # reported by the assertion below
            outcomes[index] = ("crash", repr(exc))

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a writer hung"
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(jobs)
    assert not [o for o in done if o[0] == "crash"], done
    return done


def audit_count(db: Database, action: str | None = None, **details: str) -> int:
    stmt = select(func.count()).select_from(AuditEvent)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    for key, value in details.items():
        stmt = stmt.where(AuditEvent.details[key].as_string() == value)
    with db.read() as s:
        return int(s.scalar(stmt) or 0)


def audit_actions(db: Database) -> Counter[str]:
    with db.read() as s:
        return Counter(s.scalars(select(AuditEvent.action)))


def step_row(db: Database, reference: str, key: str) -> tuple[StepState, int]:
    with db.read() as s:
        state, version = s.execute(
            select(Step.state, Step.version)
            .join(Case, Step.case_id == Case.id)
            .where(Case.reference == reference, Step.key == key)
        ).one()
    return StepState(state), version


def case_row(db: Database, reference: str) -> tuple[int | None, int]:
    with db.read() as s:
        manager, version = s.execute(
            select(Case.case_manager_id, Case.version).where(Case.reference == reference)
        ).one()
    return manager, version


def outbox_keys(db: Database) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(OutboxMessage.idempotency_key)))


def handoffs_of(db: Database, reference: str, key: str) -> int:
    with db.read() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(Handoff)
                .join(Step, Handoff.step_id == Step.id)
                .join(Case, Step.case_id == Case.id)
                .where(Case.reference == reference, Step.key == key)
            )
            or 0
        )


def table_counts(db: Database) -> dict[str, int]:
    with db.read() as s:
        return {
            model.__tablename__: int(s.scalar(select(func.count()).select_from(model)) or 0)
            for model in (AuditEvent, Newcomer, Case, Step, Handoff, OutboxMessage)
        }


def terminate_backends(db: Database) -> int:
    """Cut every connection to the test database, as a server restart or failover would;
    waits until each backend has gone. Returns how many were cut."""
    name = make_url(db.url).database
    with psycopg.connect(f"{PG_ADMIN_DSN} dbname={name}", autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) "
            "FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return int(row[0]) if row else 0


def pg_backend_alive(db: Database, pid: int) -> bool:
    name = make_url(db.url).database
    with psycopg.connect(f"{PG_ADMIN_DSN} dbname={name}", autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return bool(row.fetchone()[0])  # type: ignore[index]


def assert_clear(outcome: Outcome, kind: type[TrackerError], *phrases: str) -> None:
    name, message = outcome
    assert name == kind.__name__, outcome
    assert message and "Traceback" not in message and "\n" not in message
    for phrase in phrases:
        assert phrase.lower() in message.lower(), (phrase, message)


# --- 1. concurrency ---------------------------------------------------------------------------


@pytest.mark.parametrize("versioned", [False, True], ids=["latest", "expected-version"])
@pytest.mark.parametrize("writers", [2, 4, 8])
def test_n_people_completing_the_same_step_at_once_one_wins_and_the_next_step_opens_once(
    db: Database, actors: Actors, writers: int, versioned: bool
) -> None:
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    _, version = step_row(db, ref, "housing")
    before = audit_actions(db)

    def complete(actor: Actor) -> None:
        with db.transaction() as s:
            complete_step(
                s,
                actor=actor,
                reference=ref,
                step_key="housing",
                expected_version=version if versioned else None,
                now=NOW,
            )

    outcomes = together(*[partial(complete, actors[MANAGERS[i % 2]]) for i in range(writers)])
    winners = [o for o in outcomes if o[0] == "ok"]
    refused = [o for o in outcomes if o[0] != "ok"]
    assert len(winners) == 1 and len(refused) == writers - 1
    for outcome in refused:
        if versioned:  # the loser's read is stale: told so, with what to do
            assert_clear(outcome, ConcurrentEditError, "changed by someone else", "reload")
        else:  # the loser finds the step done already
            assert_clear(outcome, InvalidTransition, "step housing is done")

    # Every writer's follow-up advance runs at once too: the next step opens exactly once.
    advances = together(
        *[partial(advance, db, actors[MANAGERS[i % 2]], ref, now=NOW) for i in range(writers)]
    )
    assert [o[0] for o in advances] == ["ok"] * writers
    added = audit_actions(db) - before
    assert added["step.completed"] == 1
    assert audit_count(db, "step.opened", step="registration") == 1
    assert step_row(db, ref, "housing")[0] == StepState.done
    assert step_row(db, ref, "registration")[0] == StepState.open
    assert handoffs_of(db, ref, "registration") == 1
    keys = outbox_keys(db)
    assert len(keys) == len(set(keys))
    figures(
        f"same-step writers={writers} {'expected-version' if versioned else 'latest'}",
        db,
        won=len(winners),
        refused=len(refused),
        refusals=dict(Counter(o[0] for o in refused)),
        step_completed_events=added["step.completed"],
        registration_opened=1,
        lost=0,
    )


def _complete_vs_reassign(
    db: Database, actors: Actors, ref: str, *, versioned: bool, first: str | None
) -> tuple[Outcome, Outcome]:
    """One round: cm.yilmaz completes "housing" while cm.mueller hands the case to cm.yilmaz.

    ``first`` forces an order: that writer makes its change and holds its transaction open
    until the other one is seen waiting for its lock. ``None`` releases both by a barrier."""
    cm, cm2 = actors["cm.mueller"], actors["cm.yilmaz"]
    _, case_version = case_row(db, ref)
    _, step_version = step_row(db, ref, "housing")
    written, go = threading.Event(), threading.Event()

    def hold() -> None:
        written.set()
        assert go.wait(30)

    def complete(held: bool = False) -> None:
        with db.transaction() as s:
            complete_step(
                s,
                actor=cm2,
                reference=ref,
                step_key="housing",
                expected_version=step_version if versioned else None,
                now=NOW,
            )
            if held:
                hold()

    def reassign(held: bool = False) -> None:
        with db.transaction() as s:
            reassign_case(
                s,
                actor=cm,
                reference=ref,
                case_manager="cm.yilmaz",
                expected_version=case_version if versioned else None,
                now=NOW,
            )
            if held:
                hold()

    if first is None:
        done, moved = together(complete, reassign)
        return done, moved
    jobs = {"complete": complete, "reassign": reassign}
    results: dict[str, Outcome] = {}

    def run(name: str, held: bool) -> None:
        try:
            jobs[name](held)
            results[name] = ("ok", "")
        except TrackerError as exc:
            results[name] = (type(exc).__name__, str(exc))

    second = "reassign" if first == "complete" else "complete"
    one = threading.Thread(target=run, args=(first, True))
    two = threading.Thread(target=run, args=(second, False))
    with LockWait(db) as lock:
        one.start()
        assert written.wait(30)
        two.start()
        waited = lock.wait(30)
        go.set()
        one.join(30)
        two.join(30)
    assert waited, "the second writer did not wait for the first one's lock"
    return results["complete"], results["reassign"]


@pytest.mark.parametrize("versioned", [False, True], ids=["latest", "expected-version"])
def test_a_step_completed_while_its_case_is_reassigned_keeps_both_or_refuses_one_clearly(
    db: Database, actors: Actors, versioned: bool
) -> None:
    """Both orders forced, then racing rounds. Never a silent overwrite: the step is done
    exactly when the completion succeeded, the case has the new manager exactly when the
    reassignment succeeded, and the audit trail holds exactly the changes that happened."""
    cm, cm2 = actors["cm.mueller"], actors["cm.yilmaz"]
    orders: list[str | None] = ["complete", "reassign"] + [None] * 6
    tally: Counter[str] = Counter()
    for round_no, first in enumerate(orders):
        ref = start_case(db, cm, now=NOW, nationality="PL", given_name=f"Round{round_no}")
        assert case_row(db, ref)[0] == cm.user_id
        before = audit_actions(db)
        done, moved = _complete_vs_reassign(db, actors, ref, versioned=versioned, first=first)
        completed, reassigned = done[0] == "ok", moved[0] == "ok"
        assert completed or reassigned
        refused = [outcome for outcome in (done, moved) if outcome[0] != "ok"]
        assert versioned or not refused, refused  # without versions both changes always apply
        for outcome in refused:
            assert_clear(outcome, ConcurrentEditError, "changed by someone else", "reload")
        if versioned and first == "complete":
            # Completing asked for an advance, which changed the case: the reassignment was
            # made against an old read of it and is refused rather than applied blindly.
            assert (completed, reassigned) == (True, False)
        elif first is not None:
            assert (completed, reassigned) == (True, True)
        assert (step_row(db, ref, "housing")[0] == StepState.done) == completed
        assert (case_row(db, ref)[0] == cm2.user_id) == reassigned
        added = audit_actions(db) - before
        expected = Counter({"step.completed": int(completed), "case.reassigned": int(reassigned)})
        assert added == +expected
        tally[f"complete={done[0]},reassign={moved[0]}"] += 1
    figures(
        f"complete-vs-reassign {'expected-version' if versioned else 'latest'}",
        db,
        rounds=len(orders),
        forced_orders=2,
        racing_rounds=len(orders) - 2,
        writers_per_round=2,
        outcomes=dict(tally),
        silent_overwrites=0,
        lost=0,
    )


THREADS, CHANGES = 8, 25


def test_many_writers_on_different_cases_at_once_lose_no_update(
    db: Database, actors: Actors
) -> None:
    """8 writers x 25 changes: each alternates between its own case (start/block the housing
    step) and one case all of them share (correcting the newcomer's phone number)."""
    cm = actors["cm.mueller"]
    own = [
        start_case(db, cm, now=NOW, nationality="PL", given_name=f"Writer{i}")
        for i in range(THREADS)
    ]
    shared = start_case(db, cm, now=NOW, nationality="PL", given_name="Shared")
    step_versions = [step_row(db, ref, "housing")[1] for ref in own]
    with db.read() as s:
        shared_newcomer = s.scalar(
            select(Newcomer.version).join(Case).where(Case.reference == shared)
        )
    before_total = audit_count(db)
    before = audit_actions(db)
    applied: list[Counter[str]] = [Counter() for _ in range(THREADS)]
    phones: set[str] = set()

    def writer(index: int) -> None:
        actor = actors[MANAGERS[index % 2]]
        for k in range(CHANGES):
            phone = None
            with db.transaction() as s:
                if k % 2 == 1:
                    kind, phone = "shared.update", f"+49 234 {index:02d}{k:03d}"
                    update_newcomer(
                        s, actor=actor, reference=shared, changes=NewcomerUpdate(phone=phone)
                    )
                elif (k // 2) % 2 == 0:
                    kind = "own.start"
                    start_step(s, actor=actor, reference=own[index], step_key="housing")
                else:
                    kind = "own.block"
                    block_step(
                        s,
                        actor=actor,
                        reference=own[index],
                        step_key="housing",
                        reason="documents missing",
                    )
            applied[index][kind] += 1  # counted once committed
            if phone:
                phones.add(phone)

    started = time.perf_counter()
    outcomes = together(*[partial(writer, i) for i in range(THREADS)], timeout=300)
    seconds = time.perf_counter() - started
    assert [o[0] for o in outcomes] == ["ok"] * THREADS
    committed = sum(sum(c.values()) for c in applied)
    shared_updates = sum(c["shared.update"] for c in applied)
    assert committed == THREADS * CHANGES
    added = audit_actions(db) - before
    assert audit_count(db) - before_total == committed
    assert added["newcomer.updated"] == shared_updates == THREADS * (CHANGES // 2)
    starts = sum(c["own.start"] for c in applied)
    blocks = sum(c["own.block"] for c in applied)
    assert added["step.started"] + added["step.resumed"] == starts
    assert added["step.blocked"] == blocks
    # No lost update: every change bumped its row's version once, the last write is one of
    # the written values, and each own case ended in the state its last change left.
    own_changes = CHANGES - CHANGES // 2
    for ref, version in zip(own, step_versions, strict=True):
        state, after = step_row(db, ref, "housing")
        assert after - version == own_changes
        assert state == StepState.in_progress
    with db.read() as s:
        version_after, phone = s.execute(
            select(Newcomer.version, Newcomer.phone).join(Case).where(Case.reference == shared)
        ).one()
    assert version_after - shared_newcomer == shared_updates
    assert phone in phones
    figures(
        "many-writers",
        db,
        writers=THREADS,
        changes_each=CHANGES,
        changes=THREADS * CHANGES,
        committed=committed,
        refused=0,
        audit_events=audit_count(db) - before_total,
        shared_case_updates=shared_updates,
        shared_version_delta=version_after - shared_newcomer,
        lost=0,
        seconds=f"{seconds:.1f}",
    )


# --- 2. crashes -------------------------------------------------------------------------------


class WorkerKilled(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way catches it."""


def test_a_delivery_worker_killed_mid_claim_leaves_the_claim_for_after_the_lease(
    db: Database, actors: Actors, tmp_path: Path
) -> None:
    """tests/test_delivery.py covers a crash between claim and send and between send and mark;
    this is the worker dying half-way through sending a claim. The flow records a claim's
    results once it is sent, so nothing of it is marked: the whole claim comes back once the
    lease runs out and goes out then, the two messages sent before the death under the same
    keys (the file drop keeps one copy of each)."""
    from flows.delivery import CLAIM_CHUNK, lease_for

    cm = actors["cm.mueller"]
    with db.transaction() as s:
        for i in range(5):
            enqueue(
                s,
                key=f"fault:{i}",
                kind="case_closed",
                now=NOW + timedelta(seconds=i),
                recipient_user_id=cm.user_id,
                context={"reference": f"WO-TEST-{i:04d}"},
            )
    drop = FileSender(tmp_path)

    class DiesOnThird:
        def __init__(self) -> None:
            self.calls = 0

        def send(self, message: Outgoing) -> None:
            self.calls += 1
            if self.calls == 3:
                raise WorkerKilled
            drop.send(message)

    claimed_at = NOW + timedelta(minutes=1)
    with pytest.raises(WorkerKilled):
        deliver(db, sender=DiesOnThird(), now=claimed_at)
    with db.read() as s:
        states = Counter(s.scalars(select(OutboxMessage.status)))
    assert states == {OutboxStatus.sending: 5}
    assert len(list(tmp_path.glob("*.json"))) == 2

    lease = timedelta(seconds=lease_for(CLAIM_CHUNK))  # a claim is leased for a whole chunk
    during = deliver(db, sender=drop, now=claimed_at + lease - timedelta(seconds=1))
    after = deliver(db, sender=drop, now=claimed_at + lease)
    again = deliver(db, sender=drop, now=claimed_at + lease + timedelta(hours=1))
    assert (during.sent, after.sent, again.sent) == (0, 5, 0)
    with db.read() as s:
        rows = s.execute(select(OutboxMessage.status, OutboxMessage.attempts)).all()
    assert sorted((str(st), n) for st, n in rows) == [("sent", 2)] * 5
    files = sorted(p.name for p in tmp_path.glob("*.json"))
    assert len(files) == 5 and not list(tmp_path.glob(".tmp-*"))
    figures("delivery-killed-mid-claim", db, messages=5, sent_before_kill=2, copies=5, lost=0)


CHILD = r"""
import sys, time
from sqlalchemy import text
from tests.helpers import newcomer
from tracker.access import actor_for
from tracker.db import Database
from tracker.journeys.cases import register_newcomer
from tracker.journeys.steps import complete_step

url, reference, ghosts = sys.argv[1], sys.argv[2], int(sys.argv[3])
db = Database(url)
with db.read() as s:
    cm = actor_for(s, "cm.mueller")
with db.transaction() as s:
    if db.is_sqlite:
        # A tiny page cache makes SQLite spill the uncommitted pages into the WAL file.
        s.execute(text("PRAGMA cache_size=5"))
        pid = 0
    else:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar()
    complete_step(s, actor=cm, reference=reference, step_key="housing")
    for i in range(ghosts):
        register_newcomer(s, actor=cm, data=newcomer(given_name=f"Ghost{i}"))
    s.flush()
    print(f"written {pid}", flush=True)
    time.sleep(120)
"""


GHOSTS = 300


def _read_line(stream: Any, timeout: float) -> str:
    ready, _, _ = select_module.select([stream], [], [], timeout)
    assert ready, "the child never reported its writes"
    return str(stream.readline().decode().strip())


def test_a_process_killed_mid_transaction_leaves_nothing_and_the_database_works(
    db: Database, actors: Actors, tmp_path: Path
) -> None:
    """A child process writes (a step completed, 300 newcomers, 301 audit events) inside one
    transaction and is killed with SIGKILL before it commits."""
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    before = table_counts(db)
    wal = Path(f"{make_url(db.url).database}-wal") if db.is_sqlite else None
    wal_before = wal.stat().st_size if wal and wal.exists() else 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (tmp_path / "child.err").open("wb") as errors:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, db.url, ref, str(GHOSTS)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
        )
    try:
        line = _read_line(child.stdout, 60)
        assert line.startswith("written"), (tmp_path / "child.err").read_text()
        wal_grew = (wal.stat().st_size - wal_before) if wal else 0
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    backend_pid = int(line.split()[1])
    if not db.is_sqlite:
        # The server notices the closed socket, rolls back and ends the backend.
        deadline = time.monotonic() + 10
        while pg_backend_alive(db, backend_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pg_backend_alive(db, backend_pid)
    else:
        assert wal_grew > 0, "the uncommitted pages never reached the WAL file"

    assert table_counts(db) == before
    assert step_row(db, ref, "housing")[0] == StepState.open
    assert audit_count(db, "step.completed") == 0
    # The database is usable at once: the same change now succeeds, exactly once.
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    if db.is_sqlite:
        with db.read() as s:
            assert s.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    assert audit_count(db, "step.completed") == 1
    assert step_row(db, ref, "housing")[0] == StepState.done
    figures(
        "process-killed-mid-transaction",
        db,
        newcomers_written=GHOSTS,
        audit_events_written=GHOSTS + 1,
        wal_bytes_of_uncommitted_pages=wal_grew if db.is_sqlite else "n/a",
        visible_afterwards=0,
        retry="ok",
        lost=0,
    )


# --- 2. crashes inside flows (Prefect) --------------------------------------------------------


@pytest.fixture
def flow_db(db: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Database]:
    """Point the flows (which find the database through the settings) at the test database."""
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_MAIL_DIR", str(tmp_path / "mail"))
    monkeypatch.setenv("ONBOARDING_CATCH_UP_GRACE_SECONDS", "0")
    get_settings.cache_clear()
    get_database.cache_clear()
    yield db
    get_database.cache_clear()
    get_settings.cache_clear()


def _open_unadvanced(db: Database, manager: Actor, **facts: object) -> str:
    """A skilled worker's case with consent to every partner, not yet advanced (the flow's job)."""
    data = {"given_name": "Amara", "family_name": "Okafor", "nationality": "NG", **facts}
    with db.transaction() as s:
        person = register_newcomer(s, actor=manager, data=NewcomerIn.model_validate(data), now=NOW)
        ref = open_case(s, actor=manager, newcomer_id=person.id, now=NOW).reference
    for org in PARTNERS:
        with db.transaction() as s:
            give_consent(
                s,
                actor=manager,
                reference=ref,
                organisation=org,
                method=ConsentMethod.signed_form,
                notice_language="en",
                now=NOW,
            )
    return ref


def _assert_journey_once(db: Database, ref: str) -> None:
    opened = Counter(e for e in _opened_steps(db, ref) if e in ("recognition", "job_offer"))
    assert opened == {"recognition": 1, "job_offer": 1}
    assert step_row(db, ref, "recognition")[0] == StepState.open
    assert step_row(db, ref, "job_offer")[0] == StepState.open
    assert handoffs_of(db, ref, "recognition") == handoffs_of(db, ref, "job_offer") == 1
    keys = outbox_keys(db)
    assert len(keys) == len(set(keys))
    assert sum(k.startswith("handoff_offered:") for k in keys) == 2


def _opened_steps(db: Database, ref: str) -> list[str]:
    with db.read() as s:
        case_id = s.scalar(select(Case.id).where(Case.reference == ref))
        return [
            e.details["step"]
            for e in s.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "step.opened", AuditEvent.case_id == case_id
                )
            )
        ]


@pytest.mark.usefixtures("prefect_harness")
def test_an_advance_task_crashing_inside_its_transaction_after_writing_leaves_nothing_of_it(
    flow_db: Database, actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The advance task has opened both steps, created the handoffs, queued the messages and
    written the audit events (all flushed) when it crashes: the rollback leaves none of it,
    and the re-runs do it once."""
    import tracker.journeys.background as background

    cm = actors["cm.mueller"]
    ref = _open_unadvanced(flow_db, cm)
    real = background.advance_case
    crashes = Counter()

    def crash_after_writing(session: Any, **kwargs: Any) -> Any:
        result = real(session, **kwargs)
        session.flush()
        if not crashes:
            assert result.opened == ["recognition", "job_offer"] and result.offered  # written
            crashes["advance"] += 1
            raise RuntimeError("worker lost after writing, before the commit")
        return result

    monkeypatch.setattr(background, "advance_case", crash_after_writing)
    assert advance_task(ref).is_failed()
    assert step_row(flow_db, ref, "job_offer")[0] == StepState.pending  # ... and rolled back
    assert handoffs_of(flow_db, ref, "job_offer") == 0
    assert _opened_steps(flow_db, ref) == []
    assert audit_count(flow_db, "flow.failed") == 1
    assert not any(k.startswith("handoff_offered:") for k in outbox_keys(flow_db))

    assert advance_task(ref).is_completed()
    assert advance_task(ref).is_completed()
    _assert_journey_once(flow_db, ref)
    figures("advance-crash-after-writes", flow_db, crashed_runs=1, reruns=2, opened_twice=0)


@pytest.mark.usefixtures("prefect_harness")
def test_the_sweep_crashing_in_its_second_batch_then_rerun_sends_each_escalation_once(
    flow_db: Database, actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.clocks as clocks_flow

    cm = actors["cm.mueller"]
    move_in = date(2026, 2, 1)
    refs = []
    for i in range(3):
        ref = start_case(flow_db, cm, now=NOW, nationality="PL", given_name=f"Sweep{i}")
        with flow_db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key="housing", on=move_in, now=NOW)
        advance(flow_db, cm, ref, now=NOW)
        refs.append(ref)
    day = (move_in + timedelta(days=20)).isoformat()
    real = clocks_flow.sweep_clocks
    calls = Counter()

    def crash_in_second_batch(session: Any, **kwargs: Any) -> Any:
        batch = real(session, **kwargs)
        calls["batches"] += 1
        if calls["batches"] == 2:
            raise RuntimeError("sweep worker lost after queueing its batch")
        return batch

    def escalations() -> tuple[list[str], list[str]]:
        with flow_db.read() as s:
            keys = list(
                s.scalars(
                    select(OutboxMessage.idempotency_key).where(OutboxMessage.kind == "escalation")
                )
            )
            audited = [
                e.details["message_key"]
                for e in s.scalars(
                    select(AuditEvent).where(AuditEvent.action == "clock.escalation")
                )
            ]
        return keys, audited

    monkeypatch.setattr(clocks_flow, "sweep_clocks", crash_in_second_batch)
    state = asyncio.run(clocks_flow.clock_sweep(day=day, batch_size=1, return_state=True))
    assert state.is_failed()
    keys, audited = escalations()
    assert len(keys) == 1 and sorted(audited) == sorted(keys)  # batch 1 kept, batch 2 not

    monkeypatch.setattr(clocks_flow, "sweep_clocks", real)
    rerun = asyncio.run(clocks_flow.clock_sweep(day=day, batch_size=1))
    third = asyncio.run(clocks_flow.clock_sweep(day=day, batch_size=1))
    keys, audited = escalations()
    assert (rerun["escalations"], third["escalations"]) == (2, 0)
    assert len(keys) == len(set(keys)) == 3
    assert sorted(audited) == sorted(keys)
    with flow_db.read() as s:
        escalated = set(
            s.scalars(
                select(OutboxMessage.context["reference"].as_string()).where(
                    OutboxMessage.kind == "escalation"
                )
            )
        )
    assert escalated == set(refs)
    figures("sweep-crash-in-batch-2", flow_db, cases=3, escalations=3, duplicates=0, lost=0)


@pytest.mark.usefixtures("prefect_harness")
def test_a_batch_advance_that_crashes_on_one_case_after_writing_keeps_the_others(
    flow_db: Database, actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch flow advances 5 cases; the 3rd crashes after its advance wrote its rows. The
    batch is rolled back and advanced again case by case: the 3rd is rolled back whole, the
    others are advanced, and the re-run finishes the 3rd."""
    import tracker.journeys.advance as services
    from flows.journey import advance_cases

    cm = actors["cm.mueller"]
    refs = [_open_unadvanced(flow_db, cm, given_name=f"Batch{i}") for i in range(5)]
    real = services.advance_cases
    tried: list[int] = []

    def crash_on_third(session: Any, **kwargs: Any) -> Any:
        result = real(session, **kwargs)
        session.flush()
        tried.append(len(kwargs["references"]))
        if refs[2] in kwargs["references"]:
            raise RuntimeError("lost after writing")
        return result

    monkeypatch.setattr(services, "advance_cases", crash_on_third)
    first = asyncio.run(advance_cases(references=refs))
    assert first == {"cases": 5, "opened": 8, "closed": 0, "failed": 1}
    assert tried == [5, 1, 1, 1, 1, 1]  # the batch, then each case on its own
    assert _opened_steps(flow_db, refs[2]) == []
    assert handoffs_of(flow_db, refs[2], "recognition") == 0
    monkeypatch.setattr(services, "advance_cases", real)
    second = asyncio.run(advance_cases(references=refs))
    assert second == {"cases": 5, "opened": 2, "closed": 0, "failed": 0}
    for ref in refs:
        assert sorted(_opened_steps(flow_db, ref)) == ["job_offer", "recognition"]
    keys = outbox_keys(flow_db)
    assert len(keys) == len(set(keys)) and sum(k.startswith("handoff_offered:") for k in keys) == 10
    figures("batch-advance-crash-on-case-3-of-5", flow_db, opened=10, opened_twice=0, lost=0)


# --- 3. the database goes away and comes back -------------------------------------------------


@PG_ONLY
def test_connections_cut_between_two_calls_the_next_call_works_and_nothing_is_lost(
    db: Database, actors: Actors
) -> None:
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    cut = terminate_backends(db)
    assert cut >= 1  # the pooled connection of the call above
    # pool_pre_ping notices the dead connection and opens a new one: no error at all.
    with db.transaction() as s:
        result = advance_case(s, actor=cm, reference=ref, now=NOW)
    assert result.opened == ["registration"]
    assert step_row(db, ref, "housing")[0] == StepState.done
    assert audit_count(db, "step.completed") == 1
    figures("cut-between-calls", db, connections_cut=cut, errors=0, lost=0)


@PG_ONLY
@pytest.mark.parametrize("where", ["during-work", "at-commit"])
def test_connections_cut_inside_a_transaction_give_a_clear_error_leave_nothing_and_retry_works(
    db: Database, actors: Actors, where: str
) -> None:
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    before = table_counts(db)
    written, go = threading.Event(), threading.Event()
    outcome: list[Outcome] = []

    def change() -> None:
        try:
            with db.transaction() as s:
                complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
                written.set()
                assert go.wait(30)
                if where == "during-work":
                    update_newcomer(
                        s, actor=cm, reference=ref, changes=NewcomerUpdate(phone="+49 1")
                    )
            outcome.append(("ok", ""))
        except TrackerError as exc:
            outcome.append((type(exc).__name__, str(exc)))

    thread = threading.Thread(target=change)
    thread.start()
    assert written.wait(30)
    cut = terminate_backends(db)
    go.set()
    thread.join(30)
    (result,) = outcome
    phrase = NOTHING_SAVED if where == "during-work" else MAYBE_SAVED
    assert_clear(
        result, DatabaseUnavailable, "terminating connection due to administrator command", phrase
    )
    assert table_counts(db) == before  # the transaction left nothing
    assert step_row(db, ref, "housing")[0] == StepState.open
    with db.transaction() as s:  # the retry succeeds, once
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    assert audit_count(db, "step.completed") == 1
    figures(f"cut-inside-transaction {where}", db, connections_cut=cut, message=result[1])


@PG_ONLY
def test_the_cli_says_in_one_line_that_the_connection_broke_while_saving(
    db: Database, actors: Actors, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracker.journeys.steps as services

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    real = services.complete_step

    def cut_mid_change(session: Any, **kwargs: Any) -> Any:
        step = real(session, **kwargs)
        session.flush()
        terminate_backends(db)
        return step

    monkeypatch.setattr(services, "complete_step", cut_mid_change)
    code, out, err = cli("step", "complete", ref, "housing", "--as", "cm.mueller")
    assert code == 1
    assert "Traceback" not in out + err
    assert err.startswith("Error: The connection to the database broke while saving")
    assert len(err.strip().splitlines()) == 1
    assert step_row(db, ref, "housing")[0] == StepState.open
    monkeypatch.setattr(services, "complete_step", real)
    code, out, _ = cli("step", "complete", ref, "housing", "--as", "cm.mueller")
    assert code == 0, out
    assert audit_count(db, "step.completed") == 1
    figures("cli-cut-while-saving", db, stderr=err.strip())


@PG_ONLY
@pytest.mark.usefixtures("prefect_harness")
def test_an_advance_task_whose_connections_are_cut_fails_cleanly_and_the_rerun_does_it_once(
    flow_db: Database, actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tracker.journeys.background as background

    cm = actors["cm.mueller"]
    ref = _open_unadvanced(flow_db, cm)
    real = background.advance_case
    cuts = Counter()

    def cut_while_opening(session: Any, **kwargs: Any) -> Any:
        result = real(session, **kwargs)
        session.flush()
        if not cuts:
            cuts["connections"] += terminate_backends(flow_db)
        return result

    monkeypatch.setattr(background, "advance_case", cut_while_opening)
    state = advance_task(ref)
    assert state.is_failed()
    assert "database" in str(state.message).lower() or "connection" in str(state.message).lower()
    assert step_row(flow_db, ref, "job_offer")[0] == StepState.pending
    assert handoffs_of(flow_db, ref, "job_offer") == 0
    # The failure hook ran with the database back and left its audit event.
    assert audit_count(flow_db, "flow.failed") == 1
    monkeypatch.setattr(background, "advance_case", real)
    assert advance_task(ref).is_completed()
    assert advance_task(ref).is_completed()
    _assert_journey_once(flow_db, ref)
    figures("advance-task-connections-cut", flow_db, connections_cut=cuts["connections"], lost=0)


@PG_ONLY
@pytest.mark.usefixtures("prefect_harness")
def test_a_delivery_flow_whose_connections_are_cut_before_marking_sends_each_message_once(
    flow_db: Database, actors: Actors, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The send went out, then the connection broke while marking it sent: the flow fails,
    the message comes back after its lease, and the file drop holds one copy of each."""
    import flows.delivery as delivery

    cm = actors["cm.mueller"]
    with flow_db.transaction() as s:
        for i in range(3):
            enqueue(
                s,
                key=f"fault-flow:{i}",
                kind="case_closed",
                now=NOW,
                recipient_user_id=cm.user_id,
                context={"reference": f"WO-TEST-{i:04d}"},
            )
    monkeypatch.setattr(delivery, "lease_for", lambda messages: 1)
    real = delivery.mark_sent
    cuts = Counter()

    def cut_while_marking(session: Any, **kwargs: Any) -> Any:
        status = real(session, **kwargs)
        session.flush()
        if not cuts:
            cuts["connections"] += terminate_backends(flow_db)
        return status

    monkeypatch.setattr(delivery, "mark_sent", cut_while_marking)
    state = asyncio.run(delivery.deliver_outbox(return_state=True))
    assert state.is_failed()
    mail = tmp_path / "mail"
    assert len(list(mail.glob("*.json"))) == 3  # all sent, none marked (one record per claim)
    with flow_db.read() as s:
        assert set(s.scalars(select(OutboxMessage.status))) == {OutboxStatus.sending}
    monkeypatch.setattr(delivery, "mark_sent", real)
    # The one-second lease runs out: the flow's clock moves on instead of the test waiting.
    later = delivery.utcnow() + timedelta(seconds=2)
    monkeypatch.setattr(delivery, "utcnow", lambda: later)
    result = asyncio.run(delivery.deliver_outbox())
    assert result == {"sent": 3, "failed": 0}
    with flow_db.read() as s:
        assert set(s.scalars(select(OutboxMessage.status))) == {OutboxStatus.sent}
    assert len(list(mail.glob("*.json"))) == 3
    figures("delivery-flow-connections-cut", flow_db, messages=3, copies=3, duplicates=0, lost=0)


@SQLITE_ONLY
def test_a_sqlite_database_locked_past_the_busy_timeout_gives_a_clear_error_and_retry_works(
    db: Database, actors: Actors
) -> None:
    """SQLite's "database away": another connection holds the write lock longer than the busy
    timeout (30 s in production, 0.3 s here). The writer is told, nothing is half-saved, reads
    go on meanwhile (WAL), and the retry after the lock is gone succeeds."""
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    impatient = Database(db.url)

    @event.listens_for(impatient.writer, "connect")
    def _short_busy_timeout(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=300")

    try:
        with db.transaction() as holder:  # a change that holds the write lock meanwhile
            update_newcomer(
                holder, actor=cm, reference=ref, changes=NewcomerUpdate(phone="+49 2"), now=NOW
            )
            started = time.perf_counter()
            with pytest.raises(DatabaseUnavailable) as caught, impatient.transaction() as s:
                complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
            waited = time.perf_counter() - started
            with impatient.read() as s:  # readers are not blocked
                assert s.scalar(select(func.count()).select_from(Case)) == 1
        message = str(caught.value)
        assert "database is locked" in message and NOTHING_SAVED in message
        assert step_row(db, ref, "housing")[0] == StepState.open
        with impatient.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
        assert audit_count(db, "step.completed") == audit_count(db, "newcomer.updated") == 1
    finally:
        impatient.dispose()
    figures("sqlite-locked", db, waited=f"{waited:.2f}s", message=message)


@pytest.mark.parametrize("kind", ["postgresql-wrong-port", "sqlite-cannot-open"])
def test_an_unreachable_database_gives_one_clear_line_from_a_service_and_the_cli(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tracker.cli.main import app

    if kind == "postgresql-wrong-port":
        import socket

        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/tracker"
        detail = "Connection refused"
    else:
        (tmp_path / "tracker.db").mkdir()  # a folder where the file should be
        url = f"sqlite:///{tmp_path / 'tracker.db'}"
        detail = "unable to open database file"
    away = Database(url)
    try:
        with pytest.raises(DatabaseUnavailable) as caught, away.transaction() as s:
            s.execute(select(Case.id))
        with pytest.raises(DatabaseUnavailable), away.read() as s:
            s.execute(select(Case.id))
    finally:
        away.dispose()
    message = str(caught.value)
    assert detail in message and NOTHING_SAVED in message and "\n" not in message

    monkeypatch.setenv("ONBOARDING_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    get_database.cache_clear()
    try:
        runner = CliRunner()
        printed = {}
        for command in (
            ["case", "list", "--as", "cm.mueller"],
            ["step", "complete", "WO-2345-6789", "housing", "--as", "cm.mueller"],
        ):
            result = runner.invoke(app, command)
            assert result.exit_code == 1
            assert "Traceback" not in result.stdout + result.stderr
            assert result.stderr.startswith("Error: The database is not available")
            assert detail in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
            printed[command[0]] = result.stderr.strip()
    finally:
        get_database.cache_clear()
        get_settings.cache_clear()
    figures(f"unreachable {kind}", None, service=message, cli=printed["step"])


def test_only_a_database_that_is_away_is_reported_as_unavailable(tmp_path: Path) -> None:
    """Conflicts and bugs keep their own errors: a deadlock or a lock wait that gave up is not
    "the database is away", and neither is a database that was never migrated."""

    def wrapped(orig: Exception) -> OperationalError:
        return OperationalError("SELECT 1", {}, orig)

    away = [
        psycopg.OperationalError("connection failed: Connection refused"),
        psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        psycopg.errors.TooManyConnections("sorry, too many clients already"),
    ]
    conflicts = [
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.LockNotAvailable("could not obtain lock"),
    ]
    assert all(isinstance(database_unavailable(wrapped(e)), DatabaseUnavailable) for e in away)
    assert [database_unavailable(wrapped(e)) for e in conflicts] == [None] * len(conflicts)
    assert database_unavailable(ValueError("not a database error")) is None

    never_migrated = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(OperationalError, match="no such table"), never_migrated.read() as s:
            s.execute(select(Case.id))
    finally:
        never_migrated.dispose()


class _PrefectStub:
    """A stand-in Prefect API on a loopback port that answers from a script: each POST or
    DELETE takes the next (status, body) planned for its method, and is noted."""

    def __init__(self, plan: dict[str, list[tuple[int, Any]]]) -> None:
        import http.server
        import json

        self.plan, self.seen = plan, []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stub.seen.append(f"{self.command} {self.path}")
                status, body = stub.plan[self.command].pop(0)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Retry-After", "0")  # Prefect's client waits as told
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_DELETE = _answer

            def do_GET(self) -> None:  # the client's CSRF token: as a server without CSRF
                data = b'{"detail": "CSRF protection is disabled."}'
                self.send_response(422)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api = f"http://127.0.0.1:{self.server.server_port}/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_busy_prefect_server_is_asked_again_and_a_lasting_failure_is_reported(monkeypatch):
    """Erasure removes a case's advance task runs and flow runs through Prefect's API
    (orchestration ``forget_case_runs``, on Prefect's own client): a 503 (the server's
    database locked) is asked again, a run already gone (404) counts as gone, and a server
    that stays busy or does not answer at all is reported as not reachable instead of failing
    the erasure."""
    import uuid

    from tracker.config import get_settings
    from tracker.journeys import orchestration

    def use(api: str) -> None:
        monkeypatch.setenv("ONBOARDING_PREFECT_API_URL", api)
        get_settings.cache_clear()

    task_run = {
        "id": str(uuid.uuid4()),
        "task_key": "advance-0123abcd",
        "dynamic_key": "0",
        "name": "advance WO-AAAA-BBBB",
        "tags": ["case:WO-AAAA-BBBB"],
    }
    run = {"id": str(uuid.uuid4()), "flow_id": str(uuid.uuid4()), "name": "advance WO-AAAA-BBBB"}
    gone = {**run, "id": str(uuid.uuid4())}
    busy = _PrefectStub(
        {
            "POST": [(503, None), (200, [task_run]), (200, []), (200, [run, gone]), (200, [])],
            "DELETE": [
                (204, None),
                (503, None),
                (204, None),
                (404, {"detail": "Flow run not found"}),
            ],
        }
    )
    try:
        use(busy.api)
        assert orchestration.forget_case_runs("wo-aaaa-bbbb") == 2
        assert busy.seen == [
            "POST /api/task_runs/filter",
            "POST /api/task_runs/filter",
            f"DELETE /api/task_runs/{task_run['id']}",
            "POST /api/task_runs/filter",
            "POST /api/flow_runs/filter",
            f"DELETE /api/flow_runs/{run['id']}",
            f"DELETE /api/flow_runs/{run['id']}",
            f"DELETE /api/flow_runs/{gone['id']}",
            "POST /api/flow_runs/filter",
        ]
    finally:
        busy.close()

    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    always_busy = _PrefectStub({"POST": [(503, None)] * 3})
    try:
        use(always_busy.api)
        with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 2}):
            assert orchestration.forget_case_runs("WO-AAAA-BBBB") is None
        assert len(always_busy.seen) == 3  # the first answer and two more tries
    finally:
        always_busy.close()

    use("http://127.0.0.1:9/api")  # nothing listens: reported at once, not retried
    assert orchestration.forget_case_runs("WO-AAAA-BBBB") is None
    get_settings.cache_clear()
