"""Clocks that never sleep: the scheduled sweep, the catch-up of missed advances, the digest."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from prefect import flow, task

from flows._common import database, day_or_today, note_failure
from tracker.access import system_actor
from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.journeys.advance import advance_awaiting
from tracker.journeys.orchestration import close_stale_advance_runs
from tracker.journeys.sweep import sweep_clocks, sweep_handoffs
from tracker.messages.digest import build_digests

SWEEP = system_actor("sweep")


@task(task_run_name="catch up missed advances")
def catch_up(claim: int = 25) -> dict[str, int]:
    """Advance cases whose advance was requested but never ran (e.g. while Prefect was down).

    Small claims, one transaction each: sweeps running in other workers at the same time
    take other cases (``advance_awaiting`` skips locked rows), and a failing case is left out
    of this run's later claims instead of being retried in a loop.
    """
    from prefect import get_run_logger

    grace = timedelta(seconds=get_settings().catch_up_grace_seconds)
    totals = {"cases": 0, "opened": 0, "failed": 0}
    failed: dict[str, str] = {}
    while True:
        with database().transaction() as session:
            outcome = advance_awaiting(
                session, actor=SWEEP, older_than=utcnow() - grace, limit=claim, skip=failed
            )
        for reference, error in outcome.failed.items():
            get_run_logger().error("advancing %s failed: %s", reference, error)
        failed.update(outcome.failed)
        totals["cases"] += len(outcome.advanced)
        totals["opened"] += sum(len(r.opened) for r in outcome.advanced)
        totals["failed"] += len(outcome.failed)
        if outcome.claimed < claim:
            return totals


@task(task_run_name="clock batch after step {after_step_id}")
def clock_batch(today: date, after_step_id: int, limit: int) -> dict[str, Any]:
    """Remind and escalate for one batch of steps that are due soon or overdue."""
    with database().transaction() as session:
        batch = sweep_clocks(
            session, today=today, now=utcnow(), after_step_id=after_step_id, limit=limit
        )
    return {
        "reminders": batch.reminders,
        "escalations": batch.escalations,
        "next_cursor": batch.next_cursor,
    }


@task(task_run_name="unanswered handoffs")
def unanswered_handoffs(limit: int = 2000) -> int:
    """Escalate handoffs a partner has left unanswered too long, in batches."""
    total = 0
    while True:
        with database().transaction() as session:
            escalated = sweep_handoffs(session, now=utcnow(), limit=limit)
        total += escalated
        if escalated < limit:
            return total


@task(task_run_name="close stale advance runs")
def stale_advance_runs() -> int | None:
    """Advance task runs a stopped worker or a restarted server left unfinished, marked as
    Crashed in Prefect (after catch_up has advanced their cases)."""
    return close_stale_advance_runs()


@flow(name="clock-sweep", flow_run_name="clock sweep {day}", on_failure=[note_failure])
async def clock_sweep(day: str | None = None, batch_size: int = 2000) -> dict[str, Any]:
    """Catch up missed advances, then flag due-soon and overdue steps, each message once.

    ``day`` (YYYY-MM-DD) fixes "today" for tests and re-runs; by default it is the local date.
    """
    today = day_or_today(day)
    caught_up = catch_up()
    totals = {"reminders": 0, "escalations": 0}
    cursor: int | None = 0
    while cursor is not None:
        batch = clock_batch(today, cursor, batch_size)
        totals["reminders"] += batch["reminders"]
        totals["escalations"] += batch["escalations"]
        cursor = batch["next_cursor"]
    unanswered = unanswered_handoffs()
    return {
        "day": today.isoformat(),
        "caught_up": caught_up,
        **totals,
        "unanswered": unanswered,
        "stale_advance_runs": stale_advance_runs(),
    }


@task(task_run_name="queue partner digests for {today}")
def queue_digests(today: date) -> list[str]:
    """Queue one digest per partner whose queue is not empty."""
    with database().transaction() as session:
        return build_digests(session, day=today, now=utcnow())


@flow(name="partner-digest", flow_run_name="partner digest {day}", on_failure=[note_failure])
async def partner_digest(day: str | None = None) -> dict[str, Any]:
    """The daily digest of each partner's queue, queued for delivery through the outbox."""
    today = day_or_today(day)
    queued = queue_digests(today)
    return {"day": today.isoformat(), "digests": len(queued)}
