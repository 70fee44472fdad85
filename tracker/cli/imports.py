"""`onboarding import`: newcomers from a CSV file, all rows or none."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from tracker.cli.common import (
    AsUser,
    Json,
    Phase,
    actor_named,
    err,
    friendly,
    literal,
    out,
    print_json,
    safe,
)
from tracker.db import get_database


def import_csv(
    user: AsUser,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[bool, typer.Option(help="Check every row, write nothing.")] = False,
    skip_duplicates: Annotated[
        bool, typer.Option(help="Import the rest, list the duplicates.")
    ] = False,
    encoding: Annotated[str | None, typer.Option(help="e.g. latin-1 (default: UTF-8).")] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="Column separator (default: detected).")
    ] = None,
    open_cases: Annotated[bool, typer.Option("--open-cases/--no-open-cases")] = True,
    case_manager: Annotated[
        str | None, typer.Option(help="Case manager for rows without one.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Import newcomers from a CSV file: all rows or none."""
    from tracker.journeys.importer import ImportFailed, import_newcomers

    with friendly():
        actor = actor_named(user)
        try:
            # The rows are written only once every row has passed its checks.
            with Phase("Writing rows", None) as writing, get_database().transaction() as session:
                report = import_newcomers(
                    session,
                    actor=actor,
                    source=path,
                    open_cases=open_cases,
                    skip_duplicates=skip_duplicates,
                    encoding=encoding,
                    delimiter=delimiter,
                    case_manager=case_manager,
                    dry_run=dry_run,
                    progress=writing.advance,
                )
        except ImportFailed as exc:
            if as_json:
                print_json(_report_dict(exc.report))
            else:
                err.print(literal(exc, "bold red"))
            raise typer.Exit(1) from None
    references = [ref for _, ref in report.imported if isinstance(ref, str)]
    request = None
    if references and not dry_run:
        from tracker.journeys.orchestration import request_advance, uses_prefect

        if uses_prefect():  # one batch run per 500 cases, never one run per case
            request = request_advance(references, wait=0)
        else:  # here and now: minutes for a large file, so it says how far it has come
            with Phase("Opening first steps", len(references)) as opening:
                request = request_advance(references, wait=0, progress=opening.advance)
    if as_json:
        print_json({**_report_dict(report), "advance": request.state if request else None})
        return
    verb = "would be imported (dry run)" if dry_run else "imported"
    out.print(f"{report.rows_read} rows read; {len(report.imported)} {verb}.")
    for line, message in report.skipped_duplicates:
        out.print(f"[yellow]skipped line {line}:[/] {safe(message)}")
    if request is not None:
        style = "yellow" if request.state in ("unreachable", "failed") else "default"
        out.print(f"[{style}]{safe(request.message)}[/]")


def _report_dict(report: Any) -> dict[str, Any]:
    if isinstance(report, BaseModel):
        return report.model_dump(mode="json")
    from dataclasses import asdict, is_dataclass

    return asdict(report) if is_dataclass(report) else dict(report)  # type: ignore[arg-type]
