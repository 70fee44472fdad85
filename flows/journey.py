"""Advancing many cases at once as a Prefect flow (imports, catch-up, bulk changes).

One case's advance after a change is a background task, not a flow run: see
``tracker.journeys.background``, served by ``onboarding-flows serve`` and ``tasks``.
"""

from __future__ import annotations

from prefect import flow, task

from flows._common import advance_each
from tracker.access import system_actor

ACTOR = system_actor("advance")


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
