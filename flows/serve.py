"""`onboarding-flows`: serve every deployment with its schedule, or run one flow once."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from tracker.orchestration import use_prefect_environment

app = typer.Typer(help="The tracker's Prefect flows.", no_args_is_help=True)


@app.command()
def serve(
    limit: Annotated[int, typer.Option(help="How many flow runs this process runs at once.")] = 4,
) -> None:
    """Serve all deployments (advance, sweep, delivery, digest, reports, FIT) until stopped."""
    from tracker.auth import ProductionNotReady, check_production

    try:
        check_production()  # production: a proper secret and no demo sign-ins, or no start
    except ProductionNotReady as exc:
        typer.echo(f"Refusing to start: {exc}", err=True)
        raise typer.Exit(2) from None
    use_prefect_environment()
    from prefect import serve as prefect_serve

    from flows.deployments import deployments

    prefect_serve(*deployments(), limit=limit, print_starting_message=True)


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
