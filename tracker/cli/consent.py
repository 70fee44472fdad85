"""`onboarding consent`: record and revoke consent to share a case with a partner."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.cli.common import (
    AsUser,
    Wait,
    change,
    follow_up,
    out,
    safe,
)
from tracker.enums import ConsentMethod

consent_app = typer.Typer(
    help="Record consent to share a case with a partner.", no_args_is_help=True
)


@consent_app.command("give")
def consent_give(
    user: AsUser,
    reference: str,
    organisation: str,
    method: Annotated[
        ConsentMethod, typer.Option(help="How consent was given.")
    ] = ConsentMethod.signed_form,
    language: Annotated[str, typer.Option(help="Language of the notice shown.")] = "de",
    wait: Wait = False,
) -> None:
    """Record the newcomer's consent to share the case with an organisation."""
    from tracker.journeys.consent import give_consent

    change(
        user,
        give_consent,
        reference=reference,
        organisation=organisation,
        method=method,
        notice_language=language,
    )
    consent = f"{safe(reference.upper())}: consent for {safe(organisation)}"
    out.print(f"{consent} recorded; held handoffs released.")
    follow_up(reference, wait=wait, quiet=True)


@consent_app.command("revoke")
def consent_revoke(user: AsUser, reference: str, organisation: str, wait: Wait = False) -> None:
    """Record that the newcomer withdrew consent; sharing stops at once."""
    from tracker.journeys.consent import revoke_consent

    change(user, revoke_consent, reference=reference, organisation=organisation)
    consent = f"{safe(reference.upper())}: consent for {safe(organisation)}"
    out.print(f"{consent} revoked; its handoffs are held.")
    follow_up(reference, wait=wait, quiet=True)
