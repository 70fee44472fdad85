"""`onboarding newcomer`: register newcomers and correct their facts."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.cli.common import (
    AsUser,
    Json,
    Version,
    Wait,
    actor_named,
    change,
    follow_up,
    friendly,
    out,
    print_json,
    safe,
)
from tracker.db import get_database
from tracker.enums import Purpose
from tracker.schemas import NewcomerIn, NewcomerUpdate

newcomer_app = typer.Typer(help="Register newcomers and correct their facts.", no_args_is_help=True)


@newcomer_app.command("add")
def newcomer_add(
    user: AsUser,
    given_name: Annotated[str, typer.Option(help="Given name(s), any script.")],
    family_name: Annotated[str, typer.Option(help="Family name(s), any script.")],
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    nationality: Annotated[
        str | None, typer.Option(help="Two-letter country code, e.g. IN.")
    ] = None,
    eu_citizen: Annotated[
        bool | None, typer.Option("--eu/--non-eu", help="Default: from nationality.")
    ] = None,
    purpose: Annotated[Purpose, typer.Option(help="Why the person came.")] = Purpose.work,
    accelerated: Annotated[
        bool, typer.Option(help="Accelerated skilled-worker procedure (§81a).")
    ] = False,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    language: Annotated[
        str, typer.Option(help="Preferred language: de, en, ar, uk, tr ...")
    ] = "de",
    arrival: Annotated[str | None, typer.Option(help="Arrival date YYYY-MM-DD.")] = None,
    move_in: Annotated[str | None, typer.Option(help="Move-in date YYYY-MM-DD.")] = None,
    permit_expiry: Annotated[
        str | None, typer.Option(help="Visa or permit expiry YYYY-MM-DD.")
    ] = None,
    open_case: Annotated[bool, typer.Option("--open-case/--no-open-case")] = True,
    case_manager: Annotated[str | None, typer.Option(help="Case manager (default: you).")] = None,
    as_json: Json = False,
    wait: Wait = False,
) -> None:
    """Register a newcomer and (by default) open their case."""
    from tracker.journeys.cases import open_case as open_case_service
    from tracker.journeys.cases import register_newcomer

    with friendly():
        data = NewcomerIn(
            given_name=given_name,
            family_name=family_name,
            birth_date=birth_date,
            nationality=nationality,
            eu_citizen=eu_citizen,
            purpose=purpose,
            accelerated_procedure=accelerated,
            email=email,
            phone=phone,
            preferred_language=language,
            arrival_date=arrival,
            move_in_date=move_in,
            permit_expiry=permit_expiry,
        )
        actor = actor_named(user)
        with get_database().transaction() as session:
            person = register_newcomer(session, actor=actor, data=data)
            reference = None
            if open_case:
                case = open_case_service(
                    session, actor=actor, newcomer_id=person.id, case_manager=case_manager
                )
                reference = case.reference
            newcomer_id = person.id
    request = follow_up(reference, wait=wait, quiet=True, as_json=as_json) if reference else None
    if as_json:
        print_json(
            {
                "newcomer_id": newcomer_id,
                "reference": reference,
                "advance": request.state if request else None,
            }
        )
        return
    out.print(f"Registered newcomer {newcomer_id}.")
    if reference and request:
        out.print(f"Opened case [bold]{safe(reference)}[/]: onboarding case show {safe(reference)}")


@newcomer_app.command("update")
def newcomer_update(
    user: AsUser,
    reference: str,
    arrival: Annotated[str | None, typer.Option(help="Arrival date YYYY-MM-DD.")] = None,
    move_in: Annotated[str | None, typer.Option(help="Move-in date YYYY-MM-DD.")] = None,
    permit_expiry: Annotated[
        str | None, typer.Option(help="Visa or permit expiry YYYY-MM-DD.")
    ] = None,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    language: Annotated[str | None, typer.Option()] = None,
    expected_version: Version = None,
) -> None:
    """Correct or add a newcomer's facts; the clocks that count from them follow."""
    from tracker.journeys.cases import update_newcomer

    given = {
        "arrival_date": arrival,
        "move_in_date": move_in,
        "permit_expiry": permit_expiry,
        "email": email,
        "phone": phone,
        "preferred_language": language,
    }
    with friendly():
        changes = NewcomerUpdate.model_validate({k: v for k, v in given.items() if v is not None})
    change(
        user,
        update_newcomer,
        reference=reference,
        changes=changes,
        expected_version=expected_version,
    )
    out.print(f"Updated the newcomer of {safe(reference.upper())}.")
