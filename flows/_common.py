"""What every flow shares: the database (reached at call time, never captured) and failure notes."""

from __future__ import annotations

from datetime import date
from typing import Any

from tracker import clocks
from tracker.access import Actor, system_actor
from tracker.db import Database, get_database


def database() -> Database:
    # Looked up on every call: `flow.serve()` pickles flow functions, and an engine captured
    # in a closure cannot be pickled ("cannot pickle weakref").
    return get_database()


def note_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """On-failure hook: leave an audit event, so a failed run is visible in the case timeline."""
    from tracker.journeys.cases import record_flow_failure

    params = dict(getattr(flow_run, "parameters", {}) or {})
    reference = params.get("reference")
    message = str(getattr(state, "message", "") or "")[:500]
    try:
        with database().transaction() as session:
            record_flow_failure(
                session,
                actor=system_actor(flow.name),
                flow=flow.name,
                run_name=str(getattr(flow_run, "name", "")),
                reference=reference if isinstance(reference, str) else None,
                message=message,
            )
    except Exception:  # the hook must never mask the original failure
        pass


def advance_each(references: list[str], *, actor: Actor) -> dict[str, int]:
    """Advance cases in batches (``advance_in_batches``); one bad case is logged and counted,
    not fatal, and holds up only itself.

    Returns how many were advanced, how many steps opened and cases closed, and failures.
    """
    from prefect import get_run_logger

    from tracker.journeys.advance import advance_in_batches

    done = advance_in_batches(database(), actor=actor, references=references)
    for reference, error in done.failed.items():
        get_run_logger().error("advancing %s failed: %s", reference, error)
    return {
        "advanced": done.advanced,
        "opened": done.opened,
        "closed": done.closed,
        "failed": len(done.failed),
    }


def day_or_today(day: str | None) -> date:
    """The day a flow run is for: the one it was given (ISO), or the office's today."""
    return date.fromisoformat(day) if day else clocks.local_today()
