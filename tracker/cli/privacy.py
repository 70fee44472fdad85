"""The person's rights: `onboarding export` (Art. 15), `erase` and `erasures` (Art. 17),
`access-log` and `retention`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.common import (
    AsUser,
    Json,
    actor_named,
    change,
    err,
    friendly,
    out,
    print_json,
    read,
    safe,
    table,
    write_file,
)
from tracker.db import get_database


def export_person_data(
    user: AsUser,
    reference: str,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="json (complete, machine-readable), html or pdf.")
    ] = "json",
    language: Annotated[str, typer.Option("--language", "-l", help="de or en (html, pdf).")] = "de",
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="A file, a folder, or - for standard output."),
    ] = None,
) -> None:
    """Everything held about the person behind a case (Art. 15 GDPR); the export is logged."""
    from tracker.privacy.erasure import export_person
    from tracker.privacy.export import render_export

    data = change(user, export_person, reference=reference)
    with friendly():
        file = render_export(data, fmt=fmt, language=language)
    write_file(file.content, file.name, output)


def erase_person_data(
    user: AsUser,
    reference: str,
    confirm: Annotated[
        str | None,
        typer.Option(help="The case reference again, to confirm without being asked."),
    ] = None,
) -> None:
    """Erase everything held about the person behind a case (Art. 17 GDPR; admins).

    Cannot be undone. Only a tombstone without personal data stays in the audit trail."""
    from tracker.privacy.erasure import erase_person

    if confirm is None:
        err.print(
            f"[bold red]Erasing {safe(reference)}[/] removes the person, all their cases, "
            "messages, FIT@THGA records, access log and history. This cannot be undone."
        )
        confirm = typer.prompt("Type the case reference again to confirm")
    from tracker.journeys.orchestration import forget_case_runs

    removal = change(user, erase_person, reference=reference, confirm=confirm)
    counts = ", ".join(f"{name} {n}" for name, n in removal.removed.items() if n)
    out.print(f"Erased {safe(removal.reference)}: {counts}. Tombstone {removal.erasure_ids}.")
    runs = forget_case_runs(removal.reference)
    if runs is None:
        err.print(
            "[yellow]Prefect was not reachable:[/] its run history still names the case "
            f"reference (no personal data); run `onboarding erasures {removal.reference} "
            "--forget-runs` once it is back."
        )
    elif runs:
        out.print(f"Removed {runs} runs of the case from Prefect's history.")


def erasure_check(
    user: AsUser,
    reference: str,
    forget_runs: Annotated[
        bool,
        typer.Option(help="Also delete the erased case's runs from Prefect's history."),
    ] = False,
    as_json: Json = False,
) -> None:
    """Was the person behind this case reference erased or anonymised? (admins)"""
    from tracker.journeys.orchestration import forget_case_runs, uses_prefect
    from tracker.privacy.queries import erasures_for

    rows = [
        {"id": e.id, "erased_at": e.erased_at, "erased_by": e.erased_by, "basis": e.basis}
        for e in read(user, erasures_for, reference=reference)
    ]
    if forget_runs and rows and not uses_prefect():
        err.print("No runs to forget: inline mode starts none.")
    elif forget_runs and rows:
        runs = forget_case_runs(reference)
        err.print("Prefect is not reachable." if runs is None else f"Removed {runs} runs.")
    if as_json:
        print_json(rows)
    elif not rows:
        out.print(f"No erasure recorded for {safe(reference)}.")
    for row in [] if as_json else rows:
        out.print(f"Tombstone {row['id']}: {safe(row['basis'])} on {safe(row['erased_at'])}.")


def access_log_show(user: AsUser, reference: str, as_json: Json = False) -> None:
    """Who has viewed the person behind a case, newest first."""
    from tracker.privacy.queries import access_history

    rows = read(user, access_history, reference=reference)
    if as_json:
        print_json(rows)
        return
    cells = [(row.occurred_at, row.actor, row.organisation, row.purpose) for row in rows]
    out.print(table("When", "Who", "Organisation", "What", rows=cells))


def retention_run(
    user: AsUser,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count who is due.")] = False,
    as_json: Json = False,
) -> None:
    """Anonymise the people whose cases all ended more than ONBOARDING_RETENTION_MONTHS ago
    (what the scheduled retention flow does; admins)."""
    from tracker.access import require_admin
    from tracker.clocks import utcnow
    from tracker.privacy.retention import RETENTION_BATCH, anonymise_expired, count_expired

    with friendly():
        require_admin(actor_named(user), "run the retention")
    now = utcnow()
    if dry_run:
        with get_database().read() as session:
            due = count_expired(session, now=now)
        print_json({"due": due}) if as_json else out.print(f"{due} people are due.")
        return
    done = 0
    while batch := change(user, anonymise_expired, now=now, limit=RETENTION_BATCH):
        done += len(batch)
    print_json({"anonymised": done}) if as_json else out.print(f"Anonymised {done} people.")
