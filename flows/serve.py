"""`onboarding-flows`: serve every deployment with its schedule, or run one flow once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Annotated

import typer

from tracker.journeys.orchestration import use_prefect_environment

app = typer.Typer(help="The tracker's Prefect flows.", no_args_is_help=True)


def _refuse_unless_ready() -> None:
    from tracker.admin.auth import ProductionNotReady, check_production

    try:
        check_production()  # production: a proper secret and no demo sign-ins, or no start
    except ProductionNotReady as exc:
        typer.echo(f"Refusing to start: {exc}", err=True)
        raise typer.Exit(2) from None


TaskLimit = Annotated[
    int,
    typer.Option(
        "--task-limit",
        help="How many case advances (background tasks) this process runs at once.",
    ),
]


@app.command()
def serve(
    limit: Annotated[int, typer.Option(help="How many flow runs this process runs at once.")] = 4,
    task_limit: TaskLimit = 10,
) -> None:
    """Serve all deployments (sweep, delivery, digest, reports, FIT, batch advance) and the
    per-case advance task, until stopped.

    One process for one machine. With several machines, register the deployments in a work
    pool once (`deploy`) and start as many `worker` and `tasks` processes as needed instead.
    """
    _refuse_unless_ready()
    use_prefect_environment()
    from flows.deployments import deployments
    from flows.serving import serve_all

    built = deployments()  # built here: inside the event loop they would be coroutines
    typer.echo(
        f"Serving {len(built)} deployments and the advance task ({task_limit} at once); "
        "Ctrl-C stops."
    )
    asyncio.run(serve_all(built, limit=limit, task_limit=task_limit))


@app.command()
def tasks(
    task_limit: TaskLimit = 10,
    status_port: Annotated[
        int | None,
        typer.Option(help="Serve the worker's status (GET /status) on 127.0.0.1 at this port."),
    ] = None,
) -> None:
    """Run the per-case advance task (a Prefect task worker) until stopped.

    Start as many as the office needs, on any machine that reaches the database and the
    Prefect server: each queued advance goes to one of them. `serve` runs one itself.
    """
    _refuse_unless_ready()
    use_prefect_environment()
    from flows.serving import serve_tasks

    typer.echo(f"Serving the advance task ({task_limit} at once); Ctrl-C stops.")
    asyncio.run(serve_tasks(task_limit=task_limit, status_port=status_port))


PoolOption = Annotated[
    str | None,
    typer.Option("--pool", help="The work pool (default: ONBOARDING_WORK_POOL, 'onboarding')."),
]


@app.command()
def deploy(pool: PoolOption = None) -> None:
    """Register every deployment with its schedule in a process work pool (created if missing).

    Run once per release; then `onboarding-flows worker` processes, on any number of
    machines, run the flow runs. Safe to run again.
    """
    from tracker.config import get_settings

    use_prefect_environment()
    from flows.deployments import deploy_to_work_pool

    name = pool or get_settings().work_pool
    ids = deploy_to_work_pool(name)
    typer.echo(f"Registered {len(ids)} deployments in work pool {name!r}.")


@app.command()
def worker(
    pool: PoolOption = None,
    limit: Annotated[
        int | None,
        typer.Option(help="Flow runs at once (default: ONBOARDING_WORKER_LIMIT, 4)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name (default: generated).")] = None,
    healthcheck: Annotated[
        bool,
        typer.Option(help="Serve /health on PREFECT_WORKER_WEBSERVER_HOST:PORT (for containers)."),
    ] = False,
) -> None:
    """Take flow runs from the work pool and run each in a process of its own, until stopped.

    Start as many as needed, on one machine or many: each flow run goes to one worker, and
    the work inside (outbox messages, cases awaiting their advance) is claimed row by row.
    """
    _refuse_unless_ready()
    from tracker.config import get_settings

    use_prefect_environment()
    from prefect.workers.process import ProcessWorker

    settings = get_settings()

    async def run() -> None:
        async with ProcessWorker(
            work_pool_name=pool or settings.work_pool,
            name=name,
            limit=limit or settings.worker_limit,
        ) as process_worker:
            await process_worker.start(with_healthcheck=healthcheck)

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the worker has stopped its runs
        asyncio.run(run())


@app.command("sweep")
def run_sweep(day: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None) -> None:
    """Run the clock sweep once, now, in this process."""
    use_prefect_environment()
    from flows.clocks import clock_sweep

    typer.echo(json.dumps(asyncio.run(clock_sweep(day=day)), default=str))


@app.command("deliver")
def run_delivery(limit: int = 100) -> None:
    """Deliver the outbox once, now, in this process."""
    use_prefect_environment()
    from flows.delivery import deliver_outbox

    typer.echo(json.dumps(asyncio.run(deliver_outbox(limit=limit))))


@app.command("fit")
def run_fit(day: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None) -> None:
    """Run the FIT@THGA daily run (reminders, feedback, warnings) once, now."""
    use_prefect_environment()
    from flows.fit import fit_daily

    typer.echo(json.dumps(fit_daily(day=day), default=str))


@app.command("report")
def run_report(
    kind: Annotated[str, typer.Argument(help="monthly or fit")] = "monthly",
    period: Annotated[str | None, typer.Option(help="YYYY-MM or YYYY (default: the last)")] = None,
) -> None:
    """Issue (generate and keep) a report once, now, like the schedule does."""
    use_prefect_environment()
    from flows.reports import issue_report

    typer.echo(json.dumps(issue_report(kind=kind, period=period), default=str))


@app.command("retention")
def run_retention(day: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None) -> None:
    """Anonymise the people due for retention once, now, like the schedule does."""
    use_prefect_environment()
    from flows.privacy import retention

    typer.echo(json.dumps(retention(day=day), default=str))


def main() -> None:  # pragma: no cover - console entry point
    app()
