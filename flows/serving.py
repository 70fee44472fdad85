"""Long-lived serving: the deployments' runner and the advance task's worker, in one event loop.

``prefect.serve`` runs its own event loop and ``prefect.task_worker.serve`` exits the process
on SIGTERM, leaving its task runs ``Running`` for good. Here both run side by side in one loop
with one shutdown: on SIGTERM or Ctrl-C the runner stops polling and the task worker finishes
the advances it holds (each is one short transaction) before the process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment
    from prefect.task_worker import TaskWorker


def advance_worker(*, limit: int) -> TaskWorker:
    """A task worker for the advance task (call it inside a running event loop).

    ``TaskWorker`` switches result persistence on for every task it serves, so each run would
    leave a result file behind for good. The advance's result is never read (the database holds
    what it did), so it is served exactly as defined: no result, no cache, nothing on disk."""
    from prefect.cache_policies import NO_CACHE
    from prefect.task_worker import TaskWorker

    from tracker.journeys.background import advance

    worker = TaskWorker(advance, limit=limit)
    worker.tasks = [
        t.with_options(persist_result=False, cache_policy=NO_CACHE) for t in worker.tasks
    ]
    return worker


async def _until_stopped(*jobs: Any) -> None:
    """Start the jobs and wait until a signal arrives or one of them ends on its own."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([stopping, *jobs], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()


def _quiet_signals(*servers: Any) -> None:
    """Runner and TaskWorker each install a SIGTERM handler when they start (the last one
    wins, and the task worker's exits at once): make both a no-op, ours is the loop's."""
    for server in servers:
        server.handle_sigterm = lambda *_: None


async def serve_all(
    deployments: Sequence[RunnerDeployment], *, limit: int, task_limit: int
) -> None:
    """Serve the deployments and the advance task until SIGTERM or Ctrl-C."""
    from prefect.runner import Runner

    runner = Runner(limit=limit)
    for deployment in deployments:
        # typed as "sync or coroutine"; inside the loop it is a coroutine
        await cast(Awaitable[Any], runner.add_deployment(deployment))
    worker = advance_worker(limit=task_limit)
    _quiet_signals(runner, worker)
    serving = asyncio.create_task(runner.start())
    working = asyncio.create_task(worker.astart())
    await _until_stopped(serving, working)
    with contextlib.suppress(Exception):
        await runner.astop()
    working.cancel()  # closes the subscription; advances already running finish first
    await asyncio.gather(serving, working, return_exceptions=True)


async def serve_tasks(*, task_limit: int, status_port: int | None = None) -> None:
    """Serve the advance task alone until SIGTERM or Ctrl-C; with ``status_port``, Prefect's
    task worker status (``GET /status``) on 127.0.0.1 at that port, for a container's health
    check."""
    worker = advance_worker(limit=task_limit)
    _quiet_signals(worker)
    jobs = [asyncio.create_task(worker.astart())]
    status = None
    if status_port is not None:
        import uvicorn
        from prefect.task_worker import create_status_server

        status = uvicorn.Server(
            uvicorn.Config(
                app=create_status_server(worker),
                host="127.0.0.1",
                port=status_port,
                access_log=False,
                log_level="warning",
            )
        )
        jobs.append(asyncio.create_task(status.serve()))
    await _until_stopped(*jobs)
    if status is not None:
        status.should_exit = True
    jobs[0].cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
