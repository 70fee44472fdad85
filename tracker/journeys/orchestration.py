"""Asking for a case's advance after a change: as a Prefect background task, or inline.

The CLI and the dashboard call this after their change has committed. One case's advance is
queued as the background task ``tracker.journeys.background.advance`` (``.delay()``), which a
long-lived task worker runs within a fraction of a second; many cases go to the batch
deployment. Nothing here waits for Prefect unless asked to (the CLI's ``--wait``): if Prefect
cannot be reached the change is already saved, and the clock sweep advances the case when it
next runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from tracker.access import system_actor
from tracker.config import get_settings, prefect_environment
from tracker.db import Database, get_database
from tracker.journeys import queries

BATCH_DEPLOYMENT = "advance-cases/advance-cases"
BATCH_SIZE = 500
FINAL_STATES = {"completed", "failed", "crashed", "cancelled"}
MESSAGES = {
    "completed": "Advanced.",
    "failed": "Saved; the advance failed and the clock sweep will retry it.",
    "crashed": "Saved; the advance crashed and the clock sweep will retry it.",
}
QUEUED = "Saved; the next steps are being opened."
CASE_TAG = "case:"


def case_tag(reference: str) -> str:
    """The tag that names a case's advance task runs in Prefect (a reference, never a name)."""
    return f"{CASE_TAG}{reference.strip().upper()}"


def reference_in(tags: Iterable[str]) -> str | None:
    """The case reference carried by a run's tags, if any."""
    return next((t[len(CASE_TAG) :] for t in tags if t.startswith(CASE_TAG)), None)


@dataclass
class AdvanceRequest:
    """What became of a request: completed, scheduled (queued or running), unreachable or failed.

    ``run_ids`` are the Prefect task run (one case) or flow run (a batch) ids."""

    references: list[str]
    mode: str
    state: str
    message: str
    run_ids: list[str] = field(default_factory=list)


def uses_prefect() -> bool:
    """False in inline mode: then there is no Prefect to start runs in, ask or clean up."""
    return get_settings().orchestration != "inline"


def use_prefect_environment() -> None:
    """Point the Prefect client at our server, quietly, before it reads its settings.

    Prefect reads its settings once, when first imported: every function here calls this
    before it imports anything of Prefect's, so that no client in this process ever falls back
    to a throwaway in-process server."""
    for key, value in prefect_environment().items():
        os.environ.setdefault(key, value)


def prefect_reachable(api_url: str, timeout: float = 5.0, *, connect: float = 1.0) -> bool:
    """Whether Prefect's server answers its health check.

    A server that is down refuses the connection at once, and one that is not there lets the
    connect wait pass (``connect``); a server that is up but busy (hundreds of queued advances on
    two cores) may take longer than that to answer, and gets ``timeout`` for its answer."""
    import httpx

    try:
        return (
            httpx.get(
                f"{api_url.rstrip('/')}/health", timeout=httpx.Timeout(timeout, connect=connect)
            ).status_code
            == 200
        )
    except httpx.HTTPError:
        return False


def request_advance(
    references: Sequence[str],
    *,
    wait: float = 0,
    db: Database | None = None,
    progress: Callable[[int], None] | None = None,
) -> AdvanceRequest:
    """Advance these cases now (inline), or queue their advance in Prefect: one background task
    for one case, batch runs for many. ``wait`` > 0 waits that long for one case's task to end
    (the CLI's ``--wait``); otherwise this returns as soon as Prefect has the request.
    Inline, ``progress`` is told of each case advanced."""
    settings = get_settings()
    refs = [r.strip().upper() for r in references]
    if not refs:
        return AdvanceRequest([], settings.orchestration, "completed", "Nothing to advance.")
    db = db or get_database()
    if not uses_prefect():
        from tracker.journeys.advance import advance_in_batches

        done = advance_in_batches(
            db, actor=system_actor("advance"), references=refs, progress=progress
        )
        if done.failed:
            first, error = next(iter(done.failed.items()))
            return AdvanceRequest(
                refs,
                "inline",
                "failed",
                f"Saved; {len(done.failed)} of {len(refs)} cases could not be advanced "
                f"({first}: {error}); the clock sweep will retry them.",
            )
        return AdvanceRequest(refs, "inline", "completed", MESSAGES["completed"])

    use_prefect_environment()
    # A server that accepts connections but never answers would hold Prefect's client for
    # minutes (it retries); one look at /health first bounds that. The dashboard asks from a
    # thread (request_advance_soon), so even the busy server's longer answer holds no screen.
    if not prefect_reachable(settings.prefect_api_url):
        return AdvanceRequest(
            refs,
            "prefect",
            "unreachable",
            f"Saved. Prefect is not reachable at {settings.prefect_api_url}; the clock sweep "
            "will open the next steps when it runs again.",
        )
    try:
        if len(refs) == 1:
            run_ids = [queue_advance(refs[0], db=db)]
            state = (
                wait_for_task_run(run_ids[0], wait, advanced=_advanced(refs[0], db))
                if wait > 0
                else "scheduled"
            )
        else:
            run_ids = _queue_batches(refs)  # bulk work never becomes one run per case
            state = "scheduled"
    except Exception as exc:  # any Prefect failure leaves the change saved
        return AdvanceRequest(
            refs,
            "prefect",
            "failed",
            f"Saved, but the advance could not be queued ({type(exc).__name__}: {exc}); "
            "the clock sweep will open the next steps.",
        )
    return AdvanceRequest(refs, "prefect", state, MESSAGES.get(state, QUEUED), run_ids)


def queue_advance(reference: str, *, db: Database | None = None) -> str:
    """Queue one case's advance as a background task; returns the task run's id.

    The run carries the case in a ``case:`` tag (its only parameter, see
    ``tracker.journeys.background``) and the pathway and partners as tags."""
    use_prefect_environment()
    from prefect import tags

    from tracker.journeys.background import advance

    with (db or get_database()).read() as session:
        labels = queries.case_tags(session, reference=reference)
    with tags(case_tag(reference), *labels):
        future = advance.delay()
    return str(future.task_run_id)


def wait_for_task_run(
    run_id: str,
    timeout: float,
    *,
    advanced: Callable[[], bool] | None = None,
    interval: float = 0.1,
) -> str:
    """Poll a task run until it ends or ``timeout`` passes; its state, lower case.

    ``advanced`` asks the tracker whether the case's advance has run: then the run counts as
    completed even if Prefect has not recorded its end yet (a run's states reach Prefect's
    database through its event pipeline, which lags on a loaded machine). Polling, not
    ``future.wait()``: Prefect's waiter can miss a run that ends before its event subscription
    is up, and then waits out the whole timeout."""
    import httpx

    api = get_settings().prefect_api_url.rstrip("/")
    deadline = time.monotonic() + timeout
    state = "scheduled"
    with httpx.Client(timeout=5) as client:
        while True:
            try:
                response = client.get(f"{api}/task_runs/{run_id}")
                if response.status_code == 200:
                    state = str(response.json().get("state_type") or "SCHEDULED").lower()
            except httpx.HTTPError:
                pass  # asked again until the deadline
            if state not in FINAL_STATES and advanced is not None and advanced():
                state = "completed"
            if state in FINAL_STATES or time.monotonic() >= deadline:
                return state
            time.sleep(interval)


def _advanced(reference: str, db: Database) -> Callable[[], bool]:
    def check() -> bool:
        with db.read() as session:
            return not queries.advance_pending(session, reference=reference)

    return check


def _queue_batches(refs: list[str]) -> list[str]:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    run_ids = []
    for start in range(0, len(refs), BATCH_SIZE):
        chunk = refs[start : start + BATCH_SIZE]
        run = run_deployment(
            BATCH_DEPLOYMENT,
            parameters={"references": chunk},
            flow_run_name=f"advance {len(chunk)} cases",
            tags=["bulk"],
            timeout=0,
            as_subflow=False,
        )
        assert isinstance(run, FlowRun)
        run_ids.append(str(run.id))
    return run_ids


_ASKER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="advance-request")


def request_advance_soon(reference: str, *, db: Database | None = None) -> Future[AdvanceRequest]:
    """Ask for one case's advance without waiting for Prefect at all (the dashboard's save).

    Inline, the advance runs here and now (it is one short transaction). Otherwise a thread
    queues the background task, so that even a Prefect that is slow to answer never holds the
    screen; the screen watches the case for its next steps instead."""
    if not uses_prefect():
        done: Future[AdvanceRequest] = Future()
        done.set_result(request_advance([reference], db=db))
        return done
    return _ASKER.submit(request_advance, [reference], db=db)


def close_stale_advance_runs(*, older_than_minutes: float = 30) -> int | None:
    """Mark advance task runs that never finished as Crashed in Prefect, so its history stays
    true: a run left Running by a worker that died, or left Scheduled by a server restart
    (Prefect keeps its queue of background tasks in memory). Their cases are not waiting on
    them: the clock sweep has advanced every case whose advance was asked for and not done.

    Returns how many runs were marked, or None if Prefect could not be asked; 0 in inline
    mode."""
    if not uses_prefect():
        return 0
    use_prefect_environment()
    from datetime import timedelta

    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import TaskRunSort
    from prefect.states import Crashed

    from tracker.clocks import utcnow

    stale = TaskRunFilter(
        name=TaskRunFilterName(like_="advance"),
        state=TaskRunFilterState(
            type=TaskRunFilterStateType(
                any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
            )
        ),
    )
    cutoff = utcnow() - timedelta(minutes=older_than_minutes)
    marked = 0
    try:
        # Prefect's own client settings: inside the sweep that is the server running the sweep.
        with get_client(sync_client=True, httpx_settings={"timeout": 20}) as c:
            unfinished = c.read_task_runs(
                task_run_filter=stale, sort=TaskRunSort.EXPECTED_START_TIME_ASC, limit=200
            )
            for task_run in unfinished:
                queued_at = task_run.expected_start_time or task_run.created
                if queued_at is None or queued_at > cutoff:
                    break  # oldest first: the rest are younger
                if not any(t.startswith("case:") for t in task_run.tags):
                    continue  # not the tracker's advance task
                c.set_task_run_state(
                    task_run.id,
                    Crashed(
                        message="Not finished by a task worker (a worker stopped or the server "
                        "restarted); the clock sweep advanced the case."
                    ),
                    force=True,
                )
                marked += 1
    except httpx.HTTPError:
        return None
    return marked


def prefect_ui_url() -> str:
    """Where people open the Prefect UI (set, or the API URL without its /api suffix)."""
    settings = get_settings()
    if settings.prefect_ui_url:
        return settings.prefect_ui_url.rstrip("/")
    api = settings.prefect_api_url.rstrip("/")
    return api[: -len("/api")] if api.endswith("/api") else api


def case_runs(reference: str, *, limit: int = 20) -> list[dict[str, str]]:
    """A case's runs in Prefect, newest first (name, state, start, link): its advance task
    runs (tagged ``case:<reference>``) and any flow runs named by it. Empty if Prefect is away
    or in inline mode."""
    if not uses_prefect():
        return []
    import httpx

    api = get_settings().prefect_api_url.rstrip("/")
    ui = prefect_ui_url()
    ref = reference.strip().upper()
    asks = [
        (
            "task_runs",
            "task-run",
            {"task_runs": {"tags": {"all_": [case_tag(ref)]}}, "sort": "EXPECTED_START_TIME_DESC"},
        ),
        (
            "flow_runs",
            "flow-run",
            {"flow_runs": {"name": {"like_": ref}}, "sort": "EXPECTED_START_TIME_DESC"},
        ),
    ]
    found: list[dict[str, str]] = []
    try:
        with httpx.Client(timeout=2) as client:
            for endpoint, page, query in asks:
                response = client.post(f"{api}/{endpoint}/filter", json={**query, "limit": limit})
                response.raise_for_status()
                found += [
                    {
                        "name": run.get("name", ""),
                        "state": run.get("state_name") or run.get("state_type") or "",
                        "start": run.get("start_time") or run.get("expected_start_time") or "",
                        "url": f"{ui}/runs/{page}/{run['id']}",
                    }
                    for run in response.json()
                ]
    except httpx.HTTPError:
        return []
    return sorted(found, key=lambda run: run["start"], reverse=True)[:limit]


def forget_case_runs(reference: str) -> int | None:
    """Delete a case's runs from Prefect's history after an erasure or anonymisation: its
    advance task runs (tagged ``case:<reference>``) and any flow runs named by it.

    Runs carry the case reference (never a name), so what Prefect keeps is pseudonymous;
    after the case is gone the reference must not stay linkable either. The advance task
    writes no parameter or result files, so deleting the runs removes all Prefect holds but
    its event feed, which it expires on its own. Returns how many runs were deleted, or None
    if Prefect could not be reached (the runs then stay until Prefect's own history
    clean-up; nothing else refers to them).

    Through Prefect's own client: it asks a busy server again (a timeout, or 503 while the
    server's database is locked) and gives up at once when nothing answers at all. In inline
    mode no run was ever named by the case: nothing is asked and 0 is returned."""
    if not uses_prefect():
        return 0
    use_prefect_environment()
    import httpx
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        TaskRunFilter,
        TaskRunFilterTags,
    )
    from prefect.exceptions import ObjectNotFound

    ref = reference.strip().upper()
    named = FlowRunFilter(name=FlowRunFilterName(like_=ref))
    tagged = TaskRunFilter(tags=TaskRunFilterTags(all_=[case_tag(ref)]))
    deleted = 0
    try:
        api = get_settings().prefect_api_url
        with SyncPrefectClient(api, httpx_settings={"timeout": 20}) as client:
            while task_runs := client.read_task_runs(task_run_filter=tagged, limit=100):
                for task_run in task_runs:
                    try:
                        client.delete_task_run(task_run.id)
                        deleted += 1
                    except ObjectNotFound:  # gone meanwhile is fine
                        pass
            while flow_runs := client.read_flow_runs(flow_run_filter=named, limit=100):
                for flow_run in flow_runs:
                    try:
                        client.delete_flow_run(flow_run.id)
                        deleted += 1
                    except ObjectNotFound:
                        pass
        return deleted
    except httpx.HTTPError:
        return None
