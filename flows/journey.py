"""A newcomer's journey as Prefect runs: a short reconcile run per event, one task per step."""

from __future__ import annotations

from typing import Any

from prefect import flow, task

from flows._common import advance_each, database, note_failure
from tracker.access import system_actor
from tracker.services import open_ready_step, ready_steps, settle_case

ACTOR = system_actor("advance")


@task(task_run_name="find ready steps · {reference}")
def find_ready_steps(reference: str) -> list[str]:
    """The pending steps of a case whose prerequisites are finished."""
    with database().read() as session:
        return ready_steps(session, reference=reference)


@task(task_run_name="open {step_key} · {reference}")
def open_step(reference: str, step_key: str) -> dict[str, Any]:
    """Open one step and hand it to its owner's queue (a no-op if that already happened)."""
    with database().transaction() as session:
        result = open_ready_step(session, actor=ACTOR, reference=reference, step_key=step_key)
    return {"opened": result.opened, "offered": result.offered, "held": result.held}


@task(task_run_name="settle · {reference}")
def settle(reference: str) -> dict[str, Any]:
    """Close the case if every step is finished, and clear its advance request."""
    with database().transaction() as session:
        result = settle_case(session, actor=ACTOR, reference=reference)
    return {"closed": result.closed}


@flow(
    name="advance-journey",
    flow_run_name="advance {reference}",
    on_failure=[note_failure],
    on_crashed=[note_failure],
)
async def advance_journey(reference: str) -> dict[str, Any]:
    """Reconcile one case with its pathway: open what is ready, hand it on, close when done.

    Started by an event (a case opened, a step done, a handoff answered, consent changed). It
    reads the database each time instead of waiting inside a long-running flow, so re-running it
    after a crash repeats nothing: each step opens only on its pending -> open transition.
    """
    ready = find_ready_steps(reference)
    opened = [open_step(reference, key) for key in ready]
    settled = settle(reference)
    return {
        "reference": reference,
        "opened": [k for o in opened for k in o["opened"]],
        "closed": settled["closed"],
    }


@task(task_run_name="advance {count} cases")
def advance_batch(references: list[str], count: int) -> dict[str, int]:
    """Advance a batch of cases, one transaction each (imports, catch-up, migrations)."""
    done = advance_each(references, actor=ACTOR)
    return {
        "cases": len(references),
        "opened": done["opened"],
        "closed": done["closed"],
        "failed": done["failed"],
    }


def _batch_run_name() -> str:
    from prefect.runtime import flow_run

    return f"advance {len(flow_run.parameters.get('references') or [])} cases"


@flow(name="advance-cases", flow_run_name=_batch_run_name)
async def advance_cases(references: list[str]) -> dict[str, int]:
    """Advance many cases in batches: bulk work never becomes one flow run per case."""
    totals = {"cases": 0, "opened": 0, "closed": 0, "failed": 0}
    for start in range(0, len(references), 100):
        chunk = references[start : start + 100]
        for key, value in advance_batch(chunk, len(chunk)).items():
            totals[key] += value
    return totals
