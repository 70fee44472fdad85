"""`onboarding db`: create and migrate the tracker database."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.cli.common import (
    Json,
    friendly,
    out,
    print_json,
    safe,
    safe_url,
)
from tracker.db import get_database

db_app = typer.Typer(help="Create and migrate the tracker database.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    seed: Annotated[
        bool, typer.Option(help="Add the reference organisations that are missing.")
    ] = True,
) -> None:
    """Create or migrate the database to the newest schema (Alembic)."""
    from tracker.admin.organisations import seed_organisations
    from tracker.migrate import upgrade

    database = get_database()
    with friendly():
        upgrade(database.url)
        added: list[str] = []
        if seed:
            with database.transaction() as session:
                added = seed_organisations(session)
    out.print(f"Database ready: [bold]{safe(safe_url(database.url))}[/]")
    if added:
        out.print(f"Added {len(added)} organisations: {safe(', '.join(added))}")


@db_app.command("current")
def db_current(as_json: Json = False) -> None:
    """Show the schema revision of the database and the newest one available."""
    from tracker.migrate import current_revision, head_revision

    database = get_database()
    with friendly():
        info = {
            "database": safe_url(database.url),
            "current": current_revision(database.writer),
            "newest": head_revision(database.url),
        }
    if as_json:
        print_json(info)
        return
    out.print(f"database: {safe(info['database'])}")
    out.print(f"current:  {info['current'] or '(empty)'}")
    out.print(f"newest:   {info['newest']}")
