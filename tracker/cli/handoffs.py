"""`onboarding handoff` and `onboarding queue`: steps handed to partners, and a partner's queue."""

from __future__ import annotations

from typing import Annotated

import typer

from tracker.access import PARTNER_QUEUE_STATES
from tracker.cli.common import (
    AsUser,
    Json,
    Reason,
    Version,
    Wait,
    as_text,
    change,
    due_cell,
    follow_up,
    out,
    print_json,
    read,
    report_step,
    safe,
    table,
)
from tracker.enums import HandoffState
from tracker.journeys import queries

handoff_app = typer.Typer(help="Hand steps to partners and answer handoffs.", no_args_is_help=True)


@handoff_app.command("offer")
def handoff_offer(
    user: AsUser,
    reference: str,
    step: str,
    to: Annotated[
        str | None, typer.Option("--to", help="Organisation key (default: the step's owner).")
    ] = None,
) -> None:
    """Hand a step to a partner's queue (again, or to another partner)."""
    from tracker.journeys.handoffs import offer_handoff

    handoff = change(user, offer_handoff, reference=reference, step_key=step, organisation=to)
    note = (
        " (held: the newcomer has not consented to sharing yet)"
        if handoff.state == HandoffState.held
        else ""
    )
    out.print(
        f"{safe(reference.upper())}: {safe(step)} handed to {safe(handoff.organisation.key)}{note}."
    )


@handoff_app.command("withdraw")
def handoff_withdraw(
    user: AsUser,
    reference: str,
    step: str,
    reason: Reason,
    expected_version: Version = None,
    wait: Wait = False,
) -> None:
    """Take back an unanswered or held handoff; the step stays with you."""
    from tracker.journeys.handoffs import withdraw_handoff

    change(
        user,
        withdraw_handoff,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    out.print(f"{safe(reference.upper())}: the handoff of {safe(step)} is withdrawn.")
    follow_up(reference, wait=wait, quiet=True)


@handoff_app.command("accept")
def handoff_accept(
    user: AsUser,
    reference: str,
    step: str,
    expected_version: Version = None,
    wait: Wait = False,
) -> None:
    """Take on a step offered to your organisation."""
    from tracker.journeys.handoffs import accept_handoff

    change(
        user, accept_handoff, reference=reference, step_key=step, expected_version=expected_version
    )
    out.print(f"{safe(reference.upper())}: {safe(step)} accepted.")
    follow_up(reference, wait=wait, quiet=True)


@handoff_app.command("decline")
def handoff_decline(
    user: AsUser,
    reference: str,
    step: str,
    reason: Reason,
    expected_version: Version = None,
    wait: Wait = False,
) -> None:
    """Decline an offered step, with a reason; it goes back to the case manager."""
    from tracker.journeys.handoffs import decline_handoff

    change(
        user,
        decline_handoff,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    out.print(f"{safe(reference.upper())}: {safe(step)} declined; the case manager is told.")
    follow_up(reference, wait=wait, quiet=True)


@handoff_app.command("return")
def handoff_return(
    user: AsUser,
    reference: str,
    step: str,
    reason: Reason,
    expected_version: Version = None,
    wait: Wait = False,
) -> None:
    """Give an accepted step back, with a reason."""
    from tracker.journeys.handoffs import return_handoff

    change(
        user,
        return_handoff,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    out.print(f"{safe(reference.upper())}: {safe(step)} returned; the case manager is told.")
    follow_up(reference, wait=wait, quiet=True)


@handoff_app.command("complete")
def handoff_complete(
    user: AsUser,
    reference: str,
    step: str,
    outcome: Annotated[str | None, typer.Option()] = None,
    expected_version: Version = None,
    wait: Wait = False,
) -> None:
    """Finish a step your organisation accepted."""
    from tracker.journeys.handoffs import complete_handoff

    change(
        user,
        complete_handoff,
        reference=reference,
        step_key=step,
        outcome=outcome,
        expected_version=expected_version,
    )
    report_step(reference, step, "done", wait=wait)


def queue(
    user: AsUser,
    organisation: Annotated[
        str | None, typer.Argument(help="Organisation key (partners: their own).")
    ] = None,
    state: Annotated[
        list[HandoffState] | None, typer.Option(help="offered, accepted ... (repeatable)")
    ] = None,
    due: Annotated[str | None, typer.Option(help="overdue or due_soon.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Json = False,
) -> None:
    """A partner organisation's handoff queue, most urgent first."""
    states = tuple(state) if state else PARTNER_QUEUE_STATES
    items = read(
        user,
        queries.partner_queue,
        organisation=organisation,
        states=states,
        due=due,
        limit=limit,
        offset=offset,
    )
    if as_json:
        print_json(items)
        return
    columns = ("reference", "step", "state", "age (days)", "due", "legal clock", "newcomer")
    rows = [
        (
            q.reference,
            q.step,
            q.state,
            q.age_days,
            due_cell(q.due_status, q.due_date),
            f"{as_text(q.legal_due)} {q.legal_reference or ''}" if q.legal_due else "–",
            " ".join(str(q.newcomer.get(k, "")) for k in ("given_name", "family_name")).strip(),
        )
        for q in items
    ]
    out.print(table(*columns, rows=rows, title=f"Queue: {len(items)} handoffs"))
