"""Small builders shared by the tests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import Any

import pytest
from sqlalchemy import event, select, text

from tracker.access import Actor
from tracker.config import get_settings
from tracker.db import Database
from tracker.enums import ConsentMethod, OutboxStatus, Purpose
from tracker.journeys.advance import advance_case
from tracker.journeys.cases import open_case, register_newcomer
from tracker.journeys.consent import give_consent
from tracker.messages.senders import Sender
from tracker.models import OutboxMessage
from tracker.schemas import NewcomerIn

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


@dataclass(frozen=True)
class DeliveryRun:
    """What a delivery run did with the messages it claimed, read back from the outbox."""

    sent: int = 0  # marked sent
    retried: int = 0  # failed for now: pending again, after a backoff
    failed: int = 0  # refused for good, or out of attempts: parked


def deliver(
    db: Database,
    *,
    sender: Sender,
    now: datetime,
    limit: int = 100,
    max_attempts: int | None = None,
) -> DeliveryRun:
    """Deliver the outbox as the delivery flow (flows/delivery.py) does, through its own tasks:
    claim a chunk, send it over one connection, record the results, chunk after chunk up to
    ``limit`` messages. The database, the clock, the sender and the attempts allowed are the
    test's. Left out is the flow's second chance within a run (Prefect's retries of a message
    refused for now; tests/test_flows.py covers them): every failure here reaches the outbox's
    own backoff, which is what the tests that call this watch."""
    import flows.delivery as flow

    claimed: list[int] = []
    recorded: Counter[str] = Counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flow, "database", lambda: db)
        patch.setattr(flow, "utcnow", lambda: now)
        patch.setattr(flow, "default_sender", lambda: sender)
        if max_attempts is not None:
            patch.setenv("ONBOARDING_DELIVERY_MAX_ATTEMPTS", str(max_attempts))
        get_settings.cache_clear()
        try:
            while len(claimed) < limit:
                batch = flow.claim.fn(min(flow.CLAIM_CHUNK, limit - len(claimed)))
                if not batch:
                    break
                claimed += [message.id for message in batch]
                failures = flow.send_batch.fn(batch, len(batch))
                outcomes = [(m.id, *failures.get(m.id, (None, False))) for m in batch]
                recorded.update(flow.record.fn(outcomes, len(outcomes)))
        finally:
            get_settings.cache_clear()
    with db.read() as s:
        states = Counter(
            s.scalars(select(OutboxMessage.status).where(OutboxMessage.id.in_(claimed)))
        )
    run = DeliveryRun(
        sent=states[OutboxStatus.sent],
        retried=states[OutboxStatus.pending],
        failed=states[OutboxStatus.failed],
    )
    # What the flow's record task reported is what the outbox holds.
    assert (recorded["sent"], recorded["failed"]) == (run.sent, run.retried + run.failed)
    return run


class LockWait:
    """Tells a test that a writer on ``db`` is waiting for a lock another transaction holds, so
    that the holder stays open until the overlap is certain instead of for a guessed while.

    PostgreSQL: a backend of the database waits for a lock (``pg_stat_activity``). SQLite: a
    writer has asked for the write lock (``BEGIN IMMEDIATE``) and not got it yet; while another
    transaction holds that lock it cannot. Use it as a context manager around the threads."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._asking = 0  # SQLite: BEGIN IMMEDIATEs started and not yet through
        self._changed = threading.Condition()

    def __enter__(self) -> LockWait:
        if self._db.is_sqlite:
            event.listen(self._db.writer, "before_cursor_execute", self._before)
            event.listen(self._db.writer, "after_cursor_execute", self._after)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._db.is_sqlite:
            event.remove(self._db.writer, "before_cursor_execute", self._before)
            event.remove(self._db.writer, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement == "BEGIN IMMEDIATE":
            with self._changed:
                self._asking += 1
                self._changed.notify_all()

    def _after(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement == "BEGIN IMMEDIATE":
            with self._changed:
                self._asking -= 1

    def wait(self, timeout: float = 30) -> bool:
        """Whether, within ``timeout`` seconds, some writer waits for a lock."""
        if self._db.is_sqlite:
            with self._changed:
                return self._changed.wait_for(lambda: self._asking > 0, timeout)
        deadline = time.monotonic() + timeout
        with self._db.writer.connect() as conn:
            while time.monotonic() < deadline:
                waiting = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
                conn.rollback()  # a fresh snapshot of the statistics for the next look
                if waiting:
                    return True
                time.sleep(0.01)
        return False


def advance_task(reference: str) -> Any:
    """Run the per-case advance task once in this process, as a task worker runs it: a real
    Prefect task run whose ``case:`` tag names the case. Returns its final state."""
    from prefect import tags

    from tracker.journeys.background import advance
    from tracker.journeys.orchestration import case_tag

    with tags(case_tag(reference)):
        return advance(return_state=True)


def queued_advances(reference: str | None = None, *, scheduled_only: bool = True) -> list[Any]:
    """The advance task runs Prefect holds (for one case, or all), oldest first."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterState,
        TaskRunFilterStateType,
        TaskRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import TaskRunSort

    from tracker.journeys.orchestration import case_tag

    kwargs: dict[str, Any] = {"name": TaskRunFilterName(like_="advance")}
    if reference is not None:
        kwargs["tags"] = TaskRunFilterTags(all_=[case_tag(reference)])
    if scheduled_only:
        kwargs["state"] = TaskRunFilterState(
            type=TaskRunFilterStateType(any_=[StateType.SCHEDULED])
        )

    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                task_run_filter=TaskRunFilter(**kwargs), sort=TaskRunSort.EXPECTED_START_TIME_ASC
            )

    return asyncio.run(read())


_HANDED_OVER: set[Any] = set()


def run_queued_advances(reference: str | None = None) -> int:
    """Hand the queued advance runs (of one case, or all) to the advance task worker the
    serving process builds, in this process; returns how many ran. Under the test harness
    nothing else takes them: no worker subscribes to the server's queue.

    The harness records no task run states (its task run recorder is off), so a run that ran
    still reads as Scheduled: each is handed over once, as the server's queue would."""
    import asyncio

    from flows.serving import advance_worker

    queued = [run for run in queued_advances(reference) if run.id not in _HANDED_OVER]
    _HANDED_OVER.update(run.id for run in queued)

    async def run() -> None:
        worker = advance_worker(limit=1)
        for task_run in queued:
            await worker.execute_task_run(task_run)

    asyncio.run(run())
    return len(queued)
