"""What every flow shares: the database (reached at call time, never captured) and failure notes."""

from __future__ import annotations

from typing import Any

from tracker.access import system_actor
from tracker.db import Database, get_database


def database() -> Database:
    # Looked up on every call: `flow.serve()` pickles flow functions, and an engine captured
    # in a closure cannot be pickled ("cannot pickle weakref").
    return get_database()


def note_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """On-failure hook: leave an audit event, so a failed run is visible in the case timeline."""
    from tracker.services.cases import record_flow_failure

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
