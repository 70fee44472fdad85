"""A case's advance after a change, as a Prefect background task.

The dashboard and the CLI queue it with ``.delay()`` once their change has committed; long-lived
task workers (``onboarding-flows serve`` or ``onboarding-flows tasks``) run it, so nobody waits
for a process to start. It carries out the tracker's one advance rule in one transaction: run
twice, or after a crash half-way, it repeats nothing, and the clock sweep advances any case
whose task was lost.

The task takes no parameters. The case reference travels in a ``case:<reference>`` tag, so
nothing is written to Prefect's parameter storage (which would also hold the caller's Prefect
settings) and the run can be found and deleted by that tag. It is named ``advance <reference>``
and returns nothing that is kept: a reference is all Prefect ever learns about a person.

Both sides must import this very module: Prefect keys background tasks by the function's name
and a hash of its code, so the caller and the workers must run the same revision of it.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tracker.access import system_actor
from tracker.db import get_database
from tracker.journeys.advance import advance_case
from tracker.journeys.cases import record_flow_failure
from tracker.journeys.orchestration import case_tag, reference_in

__all__ = ["ACTOR", "advance", "advance_now", "case_tag", "reference_in"]

ACTOR = system_actor("advance")


def _this_reference() -> str | None:
    from prefect.runtime import task_run

    return reference_in(task_run.tags or [])


def _run_name() -> str:
    return f"advance {_this_reference() or '(no case)'}"


def _note_failure(_task: Any, run: Any, state: Any) -> None:
    """A failed advance leaves an audit event on the case's timeline; the sweep retries it."""
    try:
        with get_database().transaction() as session:
            record_flow_failure(
                session,
                actor=ACTOR,
                flow="advance",
                run_name=str(getattr(run, "name", "")),
                reference=reference_in(getattr(run, "tags", None) or []),
                message=str(getattr(state, "message", "") or "")[:500],
            )
    except Exception:  # the hook must never mask the original failure
        pass


def advance_now(reference: str) -> dict[str, Any]:
    """What the task does: open what is ready, hand it on, close the case when it is done."""
    with get_database().transaction() as session:
        result = advance_case(session, actor=ACTOR, reference=reference)
    return {"reference": result.reference, "opened": result.opened, "closed": result.closed}


@task(
    name="advance",
    task_run_name=_run_name,
    persist_result=False,
    cache_policy=NO_CACHE,
    on_failure=[_note_failure],
)
def advance() -> dict[str, Any]:
    """Reconcile the case named by this run's ``case:`` tag with its pathway."""
    reference = _this_reference()
    if reference is None:
        raise ValueError("An advance run needs a case: tag naming the case.")
    return advance_now(reference)
