"""`onboarding case`: open, show, list, cancel and reassign cases."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.common import (
    AsUser,
    Json,
    Reason,
    Version,
    Wait,
    as_text,
    change,
    due_cell,
    err,
    follow_up,
    friendly,
    literal,
    out,
    print_json,
    read,
    safe,
    table,
    write_file,
)
from tracker.enums import CaseStatus
from tracker.journeys import queries

case_app = typer.Typer(
    help="Open, show and list cases (onboarding journeys).", no_args_is_help=True
)


@case_app.command("open")
def case_open(
    user: AsUser,
    newcomer_id: int,
    case_manager: Annotated[str | None, typer.Option(help="Case manager (default: you).")] = None,
    pathway: Annotated[
        str | None, typer.Option(help="Pathway key (default: chosen by profile).")
    ] = None,
    wait: Wait = False,
) -> None:
    """Open a case for a registered newcomer."""
    from tracker.journeys.cases import open_case

    case = change(
        user, open_case, newcomer_id=newcomer_id, case_manager=case_manager, pathway_key=pathway
    )
    out.print(
        f"Opened case [bold]{safe(case.reference)}[/] on pathway "
        f"{safe(case.pathway_key)} v{case.pathway_version}."
    )
    follow_up(case.reference, wait=wait)


@case_app.command("show")
def case_show(user: AsUser, reference: str, as_json: Json = False) -> None:
    """A case: the newcomer, the journey as steps with clocks, and consents."""
    view = read(user, queries.case_view, reference=reference)
    if as_json:
        print_json(view)
        return
    out.print(
        f"[bold]{safe(view.reference)}[/]  {safe(view.pathway)} v{view.pathway_version}  "
        f"status {safe(view.status)}  case manager {safe(view.case_manager)}  "
        f"(version {view.version})"
    )
    out.print(literal(", ".join(f"{k}: {as_text(v)}" for k, v in view.newcomer.items())))
    rows = []
    for st in view.steps:
        note = st.blocked_reason or st.skip_reason or st.outcome or ""
        handoff = "–"
        if st.handoff:
            handoff = st.handoff.state + (
                f" ({st.handoff.hold_reason})" if st.handoff.hold_reason else ""
            )
        elif st.past_handoffs:
            last = st.past_handoffs[-1]
            handoff = f"{last.state}: {last.reason or ''}".strip()
        legal = (
            f"{as_text(st.legal_due)} {st.legal_reference or ''}"
            if st.legal_due
            else (st.legal_reference or "–")
        )
        due = due_cell(st.due_status, st.due_date)
        rows.append((st.key, st.state, st.owner, handoff, due, legal, note, st.version))
    columns = ("step", "state", "owner", "handoff", "due", "legal clock", "note", "v")
    out.print(table(*columns, rows=rows))
    if view.consents:
        given = [f"{c.organisation}{' (revoked)' if c.revoked_at else ''}" for c in view.consents]
        out.print(literal("Consent: " + ", ".join(given)))


@case_app.command("list")
def case_list(
    user: AsUser,
    manager: Annotated[
        str | None, typer.Option(help="Only this case manager's cases ('me' for yours).")
    ] = None,
    status: Annotated[str, typer.Option(help="open, closed, cancelled or all.")] = "open",
    pathway: Annotated[
        str | None, typer.Option(help="skilled_worker, student or eu_citizen.")
    ] = None,
    stage: Annotated[str | None, typer.Option(help="Only cases with this step active.")] = None,
    due: Annotated[str | None, typer.Option(help="overdue or due_soon.")] = None,
    attention: Annotated[bool, typer.Option(help="Only cases needing the case manager.")] = False,
    search: Annotated[str | None, typer.Option(help="Part of a name or reference.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Json = False,
) -> None:
    """List cases sorted by their earliest due date."""
    wanted = None if status == "all" else CaseStatus(status)
    rows = read(
        user,
        queries.list_cases,
        manager=manager,
        status=wanted,
        pathway=pathway,
        stage=stage,
        due=due,
        attention=attention,
        search=search,
        limit=limit,
        offset=offset,
    )
    if as_json:
        print_json(rows)
        return
    columns = ("reference", "name", "pathway", "manager", "active steps", "next due", "overdue")
    cells = [
        (
            r.reference,
            f"{r.given_name} {r.family_name}",
            r.pathway,
            r.case_manager,
            ", ".join(r.active_steps),
            due_cell(r.due_status, r.next_due),
            r.overdue_steps or "",
        )
        for r in rows
    ]
    out.print(table(*columns, rows=cells, title=f"{len(rows)} cases"))


@case_app.command("letter")
def case_letter(
    user: AsUser,
    reference: str,
    language: Annotated[
        str | None, typer.Option(help="de, en or ar (default: the newcomer's).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="html or pdf (printable A4).")
    ] = "html",
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write here (a PDF goes to willkommen-REF.pdf if unset)."),
    ] = None,
) -> None:
    """The newcomer's welcome letter: their checklist, documents and deadlines."""
    from tracker.messages.letters import welcome_letter
    from tracker.messages.pdf import html_to_pdf

    if fmt not in ("html", "pdf"):
        err.print(f"[bold red]Error:[/] Unknown format {safe(repr(fmt))}; choose html or pdf.")
        raise typer.Exit(1)
    html = read(user, welcome_letter, reference=reference, language=language)
    if fmt == "html":
        if output:
            output.write_text(html, encoding="utf-8")
            err.print(f"Written to {safe(output)}")
        else:
            sys.stdout.write(html)
        return
    with friendly():
        pdf = html_to_pdf(html)
    write_file(pdf, f"willkommen-{reference}.pdf", output)


@case_app.command("timeline")
def case_timeline(user: AsUser, reference: str, as_json: Json = False) -> None:
    """The case's history from the audit trail."""
    events = read(user, queries.timeline, reference=reference)
    if as_json:
        print_json(events)
        return
    rows = [(e.occurred_at, e.actor, e.action, e.step or "", e.reason or "") for e in events]
    title = literal(f"Timeline of {reference.upper()}", "table.title")
    out.print(table("when", "who", "what", "step", "why", rows=rows, title=title))


@case_app.command("advance")
def case_advance(user: AsUser, reference: str) -> None:
    """Open whatever has become possible; safe to run any number of times."""
    from tracker.journeys.advance import advance_case

    result = change(user, advance_case, reference=reference)
    out.print(
        f"{safe(result.reference)}: opened {safe(result.opened or 'nothing')}; "
        f"closed: {result.closed}"
    )


@case_app.command("cancel")
def case_cancel(
    user: AsUser, reference: str, reason: Reason, expected_version: Version = None
) -> None:
    """End a journey early, with a reason; open offers to partners are withdrawn."""
    from tracker.journeys.cases import cancel_case

    change(user, cancel_case, reference=reference, reason=reason, expected_version=expected_version)
    out.print(f"{safe(reference.upper())} is cancelled.")


@case_app.command("reassign")
def case_reassign(
    user: AsUser, reference: str, case_manager: str, expected_version: Version = None
) -> None:
    """Give a case to another case manager."""
    from tracker.journeys.cases import reassign_case

    change(
        user,
        reassign_case,
        reference=reference,
        case_manager=case_manager,
        expected_version=expected_version,
    )
    out.print(f"{safe(reference.upper())} is now with {safe(case_manager)}.")
