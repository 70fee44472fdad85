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
    """Advance cases one transaction each; one bad case is logged and counted, not fatal.

    Returns how many were advanced, how many steps opened and cases closed, and failures.
    """
    from prefect import get_run_logger

    from tracker.journeys.advance import advance_case

    counts = {"advanced": 0, "opened": 0, "closed": 0, "failed": 0}
    for reference in references:
        try:
            with database().transaction() as session:
                result = advance_case(session, actor=actor, reference=reference)
        except Exception:  # one bad case must not stop the others
            get_run_logger().exception("advancing %s failed", reference)
            counts["failed"] += 1
            continue
        counts["advanced"] += 1
        counts["opened"] += len(result.opened)
        counts["closed"] += int(result.closed)
    return counts


def day_or_today(day: str | None) -> date:
    """The day a flow run is for: the one it was given (ISO), or the office's today."""
    return date.fromisoformat(day) if day else clocks.local_today()
