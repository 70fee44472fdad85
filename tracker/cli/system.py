"""`onboarding demo`, `serve`, `run` and `status`: set up, start and look at an installation."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from tracker import __version__
from tracker.cli.common import (
    Json,
    Phase,
    err,
    friendly,
    literal,
    out,
    print_json,
    safe,
    safe_url,
    table,
)
from tracker.config import get_settings
from tracker.db import get_database
from tracker.journeys import queries


def demo(
    people: Annotated[int, typer.Option(min=1, help="How many newcomers to create.")] = 2000,
    seed: Annotated[
        int,
        typer.Option(
            help="Random seed: the same seed gives the same people; "
            "the day only decides how far along they are."
        ),
    ] = 2025,
    as_of: Annotated[
        str | None, typer.Option(help="Pretend today is this day (YYYY-MM-DD).")
    ] = None,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if newcomers exist.")
    ] = False,
    logins: Annotated[
        bool,
        typer.Option(
            "--logins/--no-logins",
            help="List the demo sign-ins at the end (`make run` leaves that to `onboarding run`).",
        ),
    ] = True,
) -> None:
    """Load realistic demo data: partners, users for every role, newcomers at every stage."""
    import time

    if get_settings().environment == "production":
        err.print(
            "[bold red]Error:[/] ONBOARDING_ENVIRONMENT=production: demo data (and its sign-ins "
            "with a published password) is refused; load it on a development machine."
        )
        raise typer.Exit(1)

    from tracker.demo.load import load_demo
    from tracker.migrate import upgrade

    database = get_database()
    with friendly():
        upgrade(database.url)
        if if_empty:
            with database.read() as session:
                existing = queries.count_newcomers(session)
            if existing:
                out.print(f"Demo data not loaded: the database already holds {existing} newcomers.")
                if logins:
                    _print_logins()
                return
        day = date.fromisoformat(as_of) if as_of else None
        started = time.perf_counter()
        with Phase("Demo newcomers", people) as phase:
            counts = load_demo(
                database, people=people, seed=seed, as_of=day, progress=phase.advance
            )
        took = time.perf_counter() - started
    rows = sum(counts.values())
    out.print(
        f"Loaded {counts['newcomers']} newcomers ({rows:,} rows with their histories) "
        f"in {took:.1f} s."
    )
    if logins:
        _print_logins()


def _print_logins() -> None:
    from tracker.demo.people import DEMO_PASSWORD, DEMO_USERS

    cells = [(username, role.value, org, DEMO_PASSWORD) for username, _, role, org in DEMO_USERS]
    columns = ("user", "role", "organisation", "password")
    out.print(table(*columns, rows=cells, title="Demo sign-ins (demo data only)"))


def serve_flows(
    limit: Annotated[int, typer.Option(help="How many flow runs to run at once.")] = 4,
) -> None:
    """Serve the Prefect deployments with their schedules and the per-case advance task (runs
    `onboarding-flows serve`)."""
    import subprocess

    from tracker.cli.launcher import child_environment

    # A separate process: the CLI starts flows through Prefect, it never imports flow code.
    command = [
        str(Path(sys.executable).parent / "onboarding-flows"),
        "serve",
        "--limit",
        str(limit),
    ]
    raise typer.Exit(subprocess.call(command, env=child_environment()))


def run_all(
    dashboard: Annotated[bool, typer.Option(help="Also start the Streamlit dashboard.")] = True,
) -> None:
    """Start the local Prefect server, the flows and the dashboard; stop them with Ctrl-C."""
    from tracker.cli.launcher import run

    if get_settings().environment != "production":
        _print_logins()
    code = run(say=lambda line: out.print(literal(line)), with_dashboard=dashboard)
    raise typer.Exit(code)


def status(as_json: Json = False) -> None:
    """Where the data lives, what it holds, and how to start."""
    from tracker.migrate import current_revision, head_revision

    database = get_database()
    counts = {}
    with friendly():
        revision = current_revision(database.writer)
        if revision is not None:
            with database.read() as session:
                counts = queries.database_counts(session)
    if as_json:
        print_json(
            {
                "version": __version__,
                "database": safe_url(database.url),
                "schema": revision,
                "schema_newest": head_revision(database.url),
                **counts,
            }
        )
        return
    out.print(f"[bold]onboarding {__version__}[/] – {safe(get_settings().office_name)}")
    out.print(f"database: {safe(safe_url(database.url))}")
    if revision is None:
        out.print("The database is empty: run [bold]onboarding db upgrade[/].")
        return
    cases = ", ".join(f"{n} {s} cases" for s, n in sorted(counts["cases"].items()))
    out.print(f"schema {revision}; {counts['newcomers']} newcomers; {cases}")
    out.print(
        "\nTry:\n"
        "  onboarding case list --as cm.mueller --due overdue\n"
        "  onboarding queue --as stadt.weber\n"
        "  onboarding case show <REFERENCE> --as cm.mueller\n"
        "  onboarding step complete <REFERENCE> registration --as cm.mueller\n"
        "  onboarding --help"
    )
