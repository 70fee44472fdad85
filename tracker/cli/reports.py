"""`onboarding report`: reports for leadership and funders, rendered or kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tracker.cli.common import (
    AsUser,
    Json,
    actor_named,
    err,
    friendly,
    out,
    print_json,
    read,
    table,
    write_file,
)
from tracker.db import get_database
from tracker.errors import TrackerError

report_app = typer.Typer(
    help="Reports for leadership and funders (aggregates only; leadership and admins).",
    no_args_is_help=True,
)


ReportFormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="html, pdf, csv or json.", case_sensitive=False)
]
ReportLanguage = Annotated[
    str, typer.Option("--language", "-l", help="Language of HTML and PDF (de, en, ...).")
]
ReportOut = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Write to this file or folder (default: the report's name here)."
    ),
]
Archive = Annotated[
    bool,
    typer.Option(
        "--archive",
        help="Also keep every format and language in the database, like the scheduled flow "
        "(replacing a kept one of the same period).",
    ),
]


def _report(
    as_user: str,
    *,
    kind: str,
    period: str,
    fmt: str,
    language: str,
    output: Path | None,
    archive: bool,
) -> None:
    from tracker.reporting import reports
    from tracker.reporting.archive import store_reports

    fmt = fmt.lower()
    with friendly():
        actor = actor_named(as_user)
        if fmt not in reports.REPORT_FORMATS:
            raise TrackerError(
                "Unknown format '{fmt}'; choose one of {formats}.",
                fmt=fmt,
                formats=", ".join(reports.REPORT_FORMATS),
            )
        # Read once, render outside any transaction (a PDF takes seconds), store briefly.
        with get_database().read() as session:
            data = reports.figures(session, actor=actor, kind=kind, period=period)
        if archive:
            files = reports.render_all(data, kind=kind, period=period)
            with get_database().transaction() as session:
                kept = store_reports(session, actor=actor, files=files, replace=True)
            err.print(f"Kept {len(kept)} files of the report in the database.")
            wanted = [f for f in files if f.format == fmt and f.language in ("", language)]
        else:
            wanted = []
        file = (
            wanted[0]
            if wanted
            else reports.render(data, kind=kind, period=period, fmt=fmt, language=language)
        )
    write_file(file.content, file.file_name, output)


@report_app.command("monthly")
def report_monthly(
    as_user: AsUser,
    month: Annotated[
        str | None,
        typer.Option("--month", "-m", help="YYYY-MM; default: the last complete month."),
    ] = None,
    fmt: ReportFormatOpt = "html",
    language: ReportLanguage = "de",
    output: ReportOut = None,
    archive: Archive = False,
) -> None:
    """The monthly outcomes report: caseload, legal deadlines, time to work, partner queues."""
    from tracker import clocks
    from tracker.reporting.reports import previous_month

    period = month or previous_month(clocks.local_today())
    _report(
        as_user,
        kind="monthly",
        period=period,
        fmt=fmt,
        language=language,
        output=output,
        archive=archive,
    )


@report_app.command("fit")
def report_fit(
    as_user: AsUser,
    year: Annotated[int, typer.Option("--year", "-y", help="The programme year, e.g. 2024.")],
    fmt: ReportFormatOpt = "html",
    language: ReportLanguage = "de",
    output: ReportOut = None,
    archive: Archive = False,
) -> None:
    """The yearly FIT@THGA programme report: participants, employment, time to work."""
    _report(
        as_user,
        kind="fit",
        period=f"{year:04d}",
        fmt=fmt,
        language=language,
        output=output,
        archive=archive,
    )


@report_app.command("list")
def report_list(as_user: AsUser, as_json: Json = False) -> None:
    """The reports kept in the database (from the schedule or --archive)."""
    from dataclasses import asdict

    from tracker.reporting.reports import stored_reports

    rows = read(as_user, stored_reports)
    if as_json:
        print_json([asdict(r) for r in rows])
        return
    columns = ("id", "report", "period", "language", "format", "size", "generated", "by")
    cells = [
        (
            r.id,
            r.kind,
            r.period,
            r.language or "–",
            r.format,
            f"{r.size:,}",
            r.generated_at,
            r.generated_by,
        )
        for r in rows
    ]
    out.print(table(*columns, rows=cells))


@report_app.command("get")
def report_get(
    as_user: AsUser,
    report_id: Annotated[int, typer.Argument(help="The id from `onboarding report list`.")],
    output: ReportOut = None,
) -> None:
    """Write a kept report to a file."""
    from tracker.reporting.reports import stored_report

    file = read(as_user, stored_report, report_id=report_id)
    write_file(file.content, file.file_name, output)
