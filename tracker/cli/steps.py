"""`onboarding step`: move a step through its life cycle."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from tracker.cli.common import (
    AsUser,
    Reason,
    Version,
    Wait,
    change,
    friendly,
    out,
    report_step,
    safe,
)

step_app = typer.Typer(help="Move a step through its life cycle.", no_args_is_help=True)


@step_app.command("start")
def step_start(user: AsUser, reference: str, step: str, expected_version: Version = None) -> None:
    """Mark work on an open step as begun."""
    from tracker.journeys.steps import start_step

    change(user, start_step, reference=reference, step_key=step, expected_version=expected_version)
    out.print(f"{safe(reference.upper())}: {safe(step)} in progress.")


@step_app.command("resume")
def step_resume(user: AsUser, reference: str, step: str, expected_version: Version = None) -> None:
    """Resume a blocked step."""
    step_start(user, reference, step, expected_version)


@step_app.command("complete")
def step_complete(
    user: AsUser,
    reference: str,
    step: str,
    outcome: Annotated[
        str | None, typer.Option(help="e.g. full/partial/none for recognition.")
    ] = None,
    on: Annotated[
        str | None, typer.Option(help="The day it happened (YYYY-MM-DD), default today.")
    ] = None,
    expected_version: Version = None,
    wait: Wait = False,
) -> None:
    """Record a step as done; the steps it unlocks open and are handed on."""
    from tracker.journeys.steps import complete_step

    with friendly():
        day = date.fromisoformat(on) if on else None
    change(
        user,
        complete_step,
        reference=reference,
        step_key=step,
        outcome=outcome,
        on=day,
        expected_version=expected_version,
    )
    report_step(reference, step, "done", wait=wait)


@step_app.command("block")
def step_block(
    user: AsUser, reference: str, step: str, reason: Reason, expected_version: Version = None
) -> None:
    """Block a step with a reason, e.g. documents missing."""
    from tracker.journeys.steps import block_step

    change(
        user,
        block_step,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    out.print(f"{safe(reference.upper())}: {safe(step)} blocked.")


@step_app.command("skip")
def step_skip(
    user: AsUser,
    reference: str,
    step: str,
    reason: Reason,
    expected_version: Version = None,
    wait: Wait = False,
) -> None:
    """Skip a step that does not apply, with a reason."""
    from tracker.journeys.steps import skip_step

    change(
        user,
        skip_step,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    report_step(reference, step, "skipped", wait=wait)
