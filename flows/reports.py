"""Reports on a schedule: last month's outcomes report, last year's FIT@THGA report."""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger, task

from flows._common import database, note_failure
from tracker import clocks
from tracker.reporting import reports
from tracker.reporting.archive import store_reports

ACTOR = reports.reporting_actor()


@task(task_run_name="already kept? {kind} {period}")
def already_kept(kind: str, period: str) -> bool:
    with database().read() as session:
        return bool(reports.stored_reports(session, actor=ACTOR, kind=kind, period=period))


@task(task_run_name="render {kind} {period}")
def render_report(kind: str, period: str, today: date) -> list[reports.ReportFile]:
    """Read the figures once and render every language and format (outside a transaction)."""
    with database().read() as session:
        data = reports.figures(session, actor=ACTOR, kind=kind, period=period, today=today)
    return reports.render_all(data, kind=kind, period=period)


@task(task_run_name="keep {kind} {period}")
def keep_report(kind: str, period: str, files: list[reports.ReportFile], replace: bool) -> int:
    with database().transaction() as session:
        return len(store_reports(session, actor=ACTOR, files=files, replace=replace))


@flow(name="issue-report", flow_run_name="{kind} report {period}", on_failure=[note_failure])
def issue_report(
    kind: str = "monthly", period: str | None = None, replace: bool = False
) -> dict[str, Any]:
    """Generate and keep a report (HTML and PDF per language, CSV).

    Safe to run twice: a period already kept is left as issued unless ``replace``.
    """
    if kind not in reports.REPORT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(reports.REPORT_KINDS)}")
    today = clocks.local_today()
    period = period or reports.last_complete_period(kind, today)
    reports.parse_period(kind, period)  # a bad period fails before any work
    if not replace and already_kept(kind, period):
        get_run_logger().info("%s report %s is already kept; nothing to do", kind, period)
        return {"kind": kind, "period": period, "kept": 0, "skipped": True}
    files = render_report(kind, period, today)
    kept = keep_report(kind, period, files, replace)
    get_run_logger().info("kept %d files of the %s report %s", kept, kind, period)
    return {"kind": kind, "period": period, "kept": kept, "skipped": False}
