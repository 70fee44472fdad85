"""Asking for a case's advance after a change: as a Prefect deployment run, or inline.

The CLI and the dashboard call this after their change has committed. They never import flow
code: a run is created through Prefect's API by deployment name. If Prefect cannot be reached
the change is already saved, and the clock sweep advances the case when it next runs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from tracker import queries
from tracker.access import system_actor
from tracker.config import get_settings, prefect_environment
from tracker.db import Database, get_database

ADVANCE_DEPLOYMENT = "advance-journey/advance-journey"
BATCH_DEPLOYMENT = "advance-cases/advance-cases"
BATCH_SIZE = 500


@dataclass
class AdvanceRequest:
    """What became of a request: completed, running, scheduled, unreachable or failed."""

    references: list[str]
    mode: str
    state: str
    message: str
    flow_run_ids: list[str] = field(default_factory=list)


def use_prefect_environment() -> None:
    """Point the Prefect client at our server, quietly, before it reads its settings."""
    for key, value in prefect_environment().items():
        os.environ.setdefault(key, value)


def prefect_reachable(api_url: str, timeout: float = 2.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def request_advance(
    references: Sequence[str],
    *,
    wait: float | None = None,
    db: Database | None = None,
) -> AdvanceRequest:
    """Advance these cases now (inline) or through a Prefect run per case (a batch run for many)."""
    settings = get_settings()
    refs = [r.strip().upper() for r in references]
    if not refs:
        return AdvanceRequest([], settings.orchestration, "completed", "Nothing to advance.")
    db = db or get_database()
    if settings.orchestration == "inline":
        from tracker.services import advance_case

        actor = system_actor("advance")
        for ref in refs:
            with db.transaction() as session:
                advance_case(session, actor=actor, reference=ref)
        return AdvanceRequest(refs, "inline", "completed", "Advanced.")

    use_prefect_environment()
    if not prefect_reachable(settings.prefect_api_url):
        return AdvanceRequest(
            refs,
            "prefect",
            "unreachable",
            f"Saved. Prefect is not reachable at {settings.prefect_api_url}; the clock sweep "
            "will open the next steps when it runs again.",
        )
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    wait = settings.advance_wait_seconds if wait is None else wait
    run_ids: list[str] = []
    states: list[str] = []
    try:
        if len(refs) == 1:
            with db.read() as session:
                tags = queries.case_tags(session, reference=refs[0])
            run = run_deployment(
                ADVANCE_DEPLOYMENT,
                parameters={"reference": refs[0]},
                flow_run_name=f"advance {refs[0]}",
                tags=tags,
                timeout=wait,
                # Prefect polls every 5 s by default: a click would never return sooner.
                poll_interval=0.5,
                as_subflow=False,
            )
            assert isinstance(run, FlowRun)
            run_ids.append(str(run.id))
            states.append(run.state.type.value.lower() if run.state else "scheduled")
        else:
            # Bulk work never becomes one run per case.
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
                states.append("scheduled")
    except Exception as exc:  # any Prefect failure leaves the change saved
        return AdvanceRequest(
            refs,
            "prefect",
            "failed",
            f"Saved, but the advance could not be started ({type(exc).__name__}: {exc}); "
            "the clock sweep will open the next steps.",
            run_ids,
        )
    state = states[0] if len(set(states)) == 1 else "scheduled"
    messages = {
        "completed": "Advanced.",
        "failed": "Saved; the advance run failed and the clock sweep will retry it.",
        "crashed": "Saved; the advance run crashed and the clock sweep will retry it.",
    }
    message = messages.get(state, "Saved; the next steps are being opened.")
    return AdvanceRequest(refs, "prefect", state, message, run_ids)


def prefect_ui_url() -> str:
    """Where people open the Prefect UI (set, or the API URL without its /api suffix)."""
    settings = get_settings()
    if settings.prefect_ui_url:
        return settings.prefect_ui_url.rstrip("/")
    api = settings.prefect_api_url.rstrip("/")
    return api[: -len("/api")] if api.endswith("/api") else api


def case_runs(reference: str, *, limit: int = 20) -> list[dict[str, str]]:
    """A case's flow runs in Prefect (name, state, start, link); empty if Prefect is away."""
    import httpx

    api = get_settings().prefect_api_url.rstrip("/")
    try:
        response = httpx.post(
            f"{api}/flow_runs/filter",
            json={
                "flow_runs": {"name": {"like_": reference.strip().upper()}},
                "limit": limit,
                "sort": "EXPECTED_START_TIME_DESC",
            },
            timeout=2,
        )
        response.raise_for_status()
    except httpx.HTTPError:
        return []
    ui = prefect_ui_url()
    return [
        {
            "name": run.get("name", ""),
            "state": run.get("state_name") or run.get("state_type") or "",
            "start": run.get("start_time") or run.get("expected_start_time") or "",
            "url": f"{ui}/runs/flow-run/{run['id']}",
        }
        for run in response.json()
    ]


def forget_case_runs(reference: str) -> int | None:
    """Delete a case's flow runs from Prefect's history after an erasure or anonymisation.

    Runs are named by the case reference (never by name), so what Prefect keeps is
    pseudonymous; after the case is gone the reference must not stay linkable either.
    Returns how many runs were deleted, or None if Prefect could not be reached (the runs
    then stay until Prefect's own history clean-up; nothing else refers to them).

    Through Prefect's own client: it asks a busy server again (a timeout, or 503 while the
    server's database is locked) and gives up at once when nothing answers at all."""
    import httpx
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.exceptions import ObjectNotFound

    named = FlowRunFilter(name=FlowRunFilterName(like_=reference.strip().upper()))
    deleted = 0
    try:
        api = get_settings().prefect_api_url
        with SyncPrefectClient(api, httpx_settings={"timeout": 20}) as client:
            while runs := client.read_flow_runs(flow_run_filter=named, limit=100):
                for run in runs:
                    try:
                        client.delete_flow_run(run.id)
                        deleted += 1
                    except ObjectNotFound:  # gone meanwhile is fine
                        pass
        return deleted
    except httpx.HTTPError:
        return None
