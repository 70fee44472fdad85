"""FIT@THGA every morning: reminders, feedback requests, permit and working-day warnings.

The flow only asks the services what is due, a page of participants at a time; every message
has an idempotency key of its own (registration, permit and end date, participant-year-level),
so a second run on the same day, or a re-run after a crash, queues nothing twice.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from prefect import flow, task

from flows._common import database, day_or_today, note_failure
from tracker.access import system_actor
from tracker.clocks import utcnow
from tracker.fit.daily import send_daily
from tracker.fit.work_days import check_day_limits

ACTOR = system_actor("fit-daily")


@task(task_run_name="reminders, feedback and permits for {today}")
def daily_messages(today: date) -> dict[str, int]:
    """Everything :func:`send_daily` finds due today, in one transaction."""
    with database().transaction() as session:
        result = send_daily(session, today=today, now=utcnow())
    return {
        "reminders": result.reminders,
        "feedback_requests": result.feedback_requests,
        "permit_warnings": result.permit_warnings,
    }


@task(task_run_name="day limits {year} after participant {after_id}")
def day_limit_batch(year: int, after_id: int, limit: int) -> dict[str, Any]:
    """One page of :func:`check_day_limits` (one transaction)."""
    with database().transaction() as session:
        result = check_day_limits(
            session, actor=ACTOR, year=year, after_id=after_id, limit=limit, now=utcnow()
        )
    return asdict(result)


@flow(name="fit-daily", flow_run_name="fit daily {day}", on_failure=[note_failure])
def fit_daily(day: str | None = None, batch_size: int = 500) -> dict[str, Any]:
    """The FIT@THGA morning run; ``day`` (YYYY-MM-DD) fixes "today" for tests and re-runs.

    Safe to run twice: what was queued once is not queued again.
    """
    today = day_or_today(day)
    totals: dict[str, Any] = {"day": today.isoformat(), **daily_messages(today)}
    checked = queued = 0
    cursor: int | None = 0
    while cursor is not None:
        batch = day_limit_batch(today.year, cursor, batch_size)
        checked += batch["checked"]
        queued += batch["queued"]
        cursor = batch["next_cursor"]
    return {**totals, "day_limit_checked": checked, "day_limit_warnings": queued}
