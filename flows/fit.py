"""FIT@THGA every morning: reminders, feedback requests, permit and working-day warnings.

The flow only asks the services what is due; every message has an idempotency key of its own
(registration, permit and end date, participant-year-level), so a second run on the same day,
or a re-run after a crash, queues nothing twice.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, task
from sqlalchemy import func, select

from flows._common import database, note_failure
from tracker import clocks, fit_queries
from tracker.access import system_actor
from tracker.models import FitParticipant, OutboxMessage
from tracker.services._base import utcnow
from tracker.services.fit import day_count, send_daily, warn_day_limit

ACTOR = system_actor("fit-daily")


def _today(day: str | None) -> date:
    return date.fromisoformat(day) if day else clocks.local_today()


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
    """Re-check one page of participants with working days in ``year`` (one transaction).

    Recording days already warns; this catches days that came in another way and a changed
    warning margin. Returns how many warnings were queued now (not those queued before)."""
    with database().transaction() as session:
        ids = fit_queries.participants_with_work_days(
            session, actor=ACTOR, year=year, after_id=after_id, limit=limit
        )
        now = utcnow()
        cases = []
        for participant_id in ids:
            participant = session.get_one(FitParticipant, participant_id)
            count = day_count(session, participant_id=participant_id, year=year)
            warn_day_limit(session, participant=participant, count=count, now=now)
            cases.append(participant.case_id)
        # warn_day_limit says whether a warning is due, not whether it was queued just now
        # (its key may exist from an earlier run): the rows stamped with this batch's time are.
        queued = session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.case_id.in_(cases),
                OutboxMessage.kind == "fit_day_limit",
                OutboxMessage.created_at == now,
            )
        )
    return {
        "checked": len(ids),
        "queued": int(queued or 0),
        "next_cursor": ids[-1] if len(ids) == limit else None,
    }


@flow(name="fit-daily", flow_run_name="fit daily {day}", on_failure=[note_failure])
def fit_daily(day: str | None = None, batch_size: int = 500) -> dict[str, Any]:
    """The FIT@THGA morning run; ``day`` (YYYY-MM-DD) fixes "today" for tests and re-runs.

    Safe to run twice: what was queued once is not queued again.
    """
    today = _today(day)
    totals: dict[str, Any] = {"day": today.isoformat(), **daily_messages(today)}
    checked = queued = 0
    cursor: int | None = 0
    while cursor is not None:
        batch = day_limit_batch(today.year, cursor, batch_size)
        checked += batch["checked"]
        queued += batch["queued"]
        cursor = batch["next_cursor"]
    return {**totals, "day_limit_checked": checked, "day_limit_warnings": queued}
