"""Retention: every night, anonymise the people whose cases all ended long enough ago.

The flow only asks the service for one batch at a time (one transaction each); a person is
locked and checked again inside the service, so a second run, a re-run after a crash, or two
workers at once anonymise nobody twice and skip nobody.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, task

from flows._common import database, note_failure
from tracker import clocks
from tracker.access import system_actor
from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.journeys.orchestration import forget_case_runs
from tracker.privacy.retention import RETENTION_BATCH, anonymise_expired

ACTOR = system_actor("retention")


@task(task_run_name="anonymise batch {number}")
def anonymise_batch(now: datetime, limit: int, number: int) -> int:
    """Anonymise up to ``limit`` people who are due; returns how many were."""
    with database().transaction() as session:
        done = anonymise_expired(session, actor=ACTOR, now=now, limit=limit)
    # The old references name runs in Prefect's history; best effort, after the commit.
    for removal in done:
        forget_case_runs(removal.reference)
    return len(done)


@flow(name="retention", flow_run_name="retention {day}", on_failure=[note_failure])
def retention(day: str | None = None, batch_size: int = RETENTION_BATCH) -> dict[str, Any]:
    """Anonymise everyone due on ``day`` (YYYY-MM-DD, default today) in batches."""
    now = datetime.fromisoformat(day).replace(tzinfo=UTC) if day else utcnow()
    total = batches = 0
    while True:
        batches += 1
        done = anonymise_batch(now, batch_size, batches)
        total += done
        if done < batch_size:
            break
    return {
        "day": clocks.local_today(now).isoformat(),
        "retention_months": get_settings().retention_months,
        "anonymised": total,
        "batches": batches,
    }
