"""`onboarding org`: the partner organisations (admin)."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.admin import queries as admin_queries
from tracker.cli.common import (
    AsUser,
    Json,
    change,
    out,
    print_json,
    safe,
    table,
)
from tracker.db import get_database
from tracker.enums import OrgKind

org_app = typer.Typer(help="Partner organisations (admin).", no_args_is_help=True)


@org_app.command("list")
def org_list(as_json: Json = False) -> None:
    """All organisations, active or not."""
    with get_database().read() as session:
        rows = admin_queries.organisations(session)
    if as_json:
        print_json(rows)
        return
    cells = [
        (o.key, o.name, o.kind, "yes" if o.receives_handoffs else "no", "yes" if o.active else "no")
        for o in rows
    ]
    columns = ("key", "name", "kind", "own queue", "active")
    out.print(table(*columns, rows=cells, title="Organisations"))


@org_app.command("add")
def org_add(
    user: AsUser,
    key: str,
    name: str,
    kind: Annotated[OrgKind, typer.Option()] = OrgKind.network,
    own_queue: Annotated[bool, typer.Option("--own-queue/--no-own-queue")] = True,
    email: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add a partner organisation."""
    from tracker.admin.organisations import add_organisation

    change(
        user,
        add_organisation,
        key=key,
        name=name,
        kind=kind,
        receives_handoffs=own_queue,
        email=email,
    )
    out.print(f"Added organisation {safe(key)}.")


@org_app.command("rename")
def org_rename(user: AsUser, key: str, name: str) -> None:
    """Rename an organisation (its key stays)."""
    from tracker.admin.organisations import update_organisation

    change(user, update_organisation, key=key, name=name)
    out.print(f"Renamed {safe(key)} to {safe(repr(name))}.")


@org_app.command("deactivate")
def org_deactivate(user: AsUser, key: str) -> None:
    """Stop handing new steps to an organisation; its history stays."""
    from tracker.admin.organisations import update_organisation

    change(user, update_organisation, key=key, active=False)
    out.print(f"Deactivated {safe(key)}.")


@org_app.command("activate")
def org_activate(user: AsUser, key: str) -> None:
    """Reactivate an organisation."""
    from tracker.admin.organisations import update_organisation

    change(user, update_organisation, key=key, active=True)
    out.print(f"Activated {safe(key)}.")
