"""`onboarding user`: users and their roles (admin)."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.admin import queries as admin_queries
from tracker.cli.common import (
    AsUser,
    Json,
    change,
    friendly,
    out,
    print_json,
    read,
    safe,
    table,
)
from tracker.db import get_database
from tracker.enums import Role

user_app = typer.Typer(help="Users and their roles (admin).", no_args_is_help=True)


@user_app.command("list")
def user_list(user: AsUser, as_json: Json = False) -> None:
    """All users with role and organisation."""
    rows = read(user, admin_queries.users)
    if as_json:
        print_json(rows)
        return
    cells = [
        (u.username, u.display_name, u.role, u.organisation, "yes" if u.active else "no")
        for u in rows
    ]
    out.print(
        table("username", "name", "role", "organisation", "active", rows=cells, title="Users")
    )


@user_app.command("add")
def user_add(
    user: AsUser,
    username: str,
    display_name: Annotated[str, typer.Option(help="Full name.")],
    role: Annotated[Role, typer.Option()],
    organisation: Annotated[str | None, typer.Option(help="Organisation key.")] = None,
    email: Annotated[str | None, typer.Option()] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="ONBOARDING_NEW_PASSWORD",
            help="Initial password (or set ONBOARDING_NEW_PASSWORD).",
        ),
    ] = None,
) -> None:
    """Add a user with a role; the password is stored only as an Argon2 hash."""
    from tracker.admin.passwords import hash_password
    from tracker.admin.users import add_user

    with friendly():
        hashed = hash_password(password) if password else None
    change(
        user,
        add_user,
        username=username,
        display_name=display_name,
        role=role,
        organisation=organisation,
        email=email,
        password_hash=hashed,
    )
    out.print(f"Added user {safe(username.lower())} ({role.value}).")


@user_app.command("rename")
def user_rename(
    user: AsUser,
    username: str,
    display_name: Annotated[str, typer.Option(help="The name screens show, e.g. the full name.")],
) -> None:
    """Change the name screens show for a user; the username (the sign-in) stays."""
    from tracker.admin.users import clean_display_name, rename_user

    change(user, rename_user, username=username, display_name=display_name)
    shown = clean_display_name(display_name)
    out.print(f"{safe(username.lower())} is now shown as {safe(repr(shown))}.")


@user_app.command("bootstrap")
def user_bootstrap(
    username: str,
    display_name: Annotated[str, typer.Option(help="Full name.")],
    email: Annotated[str | None, typer.Option()] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="ONBOARDING_NEW_PASSWORD",
            help="The password (or set ONBOARDING_NEW_PASSWORD; asked for if neither).",
        ),
    ] = None,
) -> None:
    """Create the first administrator of a new installation (only while there is none)."""
    from tracker.admin.passwords import hash_password
    from tracker.admin.users import bootstrap_admin

    if not password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with friendly():
        hashed = hash_password(password)
        with get_database().transaction() as session:
            bootstrap_admin(
                session,
                username=username,
                display_name=display_name,
                email=email,
                password_hash=hashed,
            )
    out.print(f"Added administrator {safe(username.lower())}; sign in and add the other users.")
