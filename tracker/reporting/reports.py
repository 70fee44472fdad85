"""Reports for leadership and funders: the monthly outcomes report and the FIT@THGA year.

A report is aggregates only (the figures of :mod:`tracker.reporting.figures`, small cells already
suppressed there), rendered through the one sandboxed Jinja2 environment into HTML, printed to
PDF by WeasyPrint, or written as CSV / JSON for further analysis. Charts are inline SVG, so a
report opens offline and prints the same anywhere.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, get_args

from babel.numbers import format_percent
from jinja2 import TemplateNotFound
from markupsafe import Markup
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.config import get_settings
from tracker.enums import Role
from tracker.errors import NotFoundError, PermissionDenied, ValidationFailed
from tracker.messages.pdf import html_to_pdf
from tracker.messages.rendering import (
    FALLBACK_LANGUAGE,
    TEMPLATES_DIR,
    TemplateMissing,
    get_environment,
    template_languages,
    text_direction,
)
from tracker.models import StoredReport
from tracker.pathway import get_registry
from tracker.reporting import charts as report_charts
from tracker.reporting.figures import MonthFigures, month_figures
from tracker.reporting.fit import FitYearFigures, fit_year_figures
from tracker.reporting.suppression import MIN_CELL, MIN_FOR_STATISTICS

ReportKind = Literal["monthly", "fit"]
ReportFormat = Literal["html", "pdf", "csv", "json"]
REPORT_KINDS: tuple[str, ...] = get_args(ReportKind)
REPORT_FORMATS: tuple[str, ...] = get_args(ReportFormat)
MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
FIRST_YEAR, LAST_YEAR = 2000, 2100
_YEAR = re.compile(r"^(\d{4})$")


@dataclass(frozen=True)
class ReportFile:
    """One generated report, ready to save or download."""

    kind: str
    period: str  # "2026-10" for a month, "2024" for a year
    language: str
    format: str
    content: bytes

    @property
    def file_name(self) -> str:
        return file_name(self.kind, self.period, self.language, self.format)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (= + - @, or a tab or CR first) gets
    a leading apostrophe, so a typed-in name such as "=HYPERLINK(...)" stays text (OWASP)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def file_name(kind: str, period: str, language: str, fmt: str) -> str:
    """What a report file is called, e.g. monatsbericht-2026-10-de.pdf (CSV/JSON: no language)."""
    name = "monatsbericht" if kind == "monthly" else "fit-jahresbericht"
    suffix = f"-{language}" if fmt in ("html", "pdf") else ""
    return f"{name}-{period}{suffix}.{fmt}"


def report_languages(kind: str) -> list[str]:
    """Languages a report has a template for (a translator adds one by adding a file)."""
    return template_languages("reports", kind)


def parse_period(kind: str, period: str) -> tuple[int, int | None]:
    """``2026-10`` for a monthly report, ``2024`` for the FIT year; a clear error otherwise."""
    if kind == "monthly":
        m = _MONTH.match(period)
        if not m or not 1 <= int(m[2]) <= 12 or not FIRST_YEAR <= int(m[1]) <= LAST_YEAR:
            raise ValidationFailed(
                "A monthly report needs a month like 2026-10, not '{period}'.",
                period=period,
            )
        return int(m[1]), int(m[2])
    if kind == "fit":
        y = _YEAR.match(period)
        if not y or not FIRST_YEAR <= int(y[1]) <= LAST_YEAR:
            raise ValidationFailed(
                "The FIT report needs a year like 2024, not '{period}'.",
                period=period,
            )
        return int(y[1]), None
    raise ValidationFailed(
        "Unknown report '{kind}'; choose one of {kinds}.",
        kind=kind,
        kinds=", ".join(REPORT_KINDS),
    )


def previous_month(today: date) -> str:
    """The last complete month before ``today``, as ``YYYY-MM`` (what the schedule reports)."""
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def last_complete_period(kind: str, today: date) -> str:
    """The period a scheduled report covers: the month before for monthly, the year before
    for FIT@THGA."""
    if kind == "monthly":
        return previous_month(today)
    return f"{today.year - 1:04d}"


def figures(
    session: Session, *, actor: Actor, kind: str, period: str, today: date | None = None
) -> MonthFigures | FitYearFigures:
    """The report's figures (leadership and admins only: the outcome queries check)."""
    year, month = parse_period(kind, period)
    today = today or clocks.local_today()
    if kind == "monthly":
        assert month is not None
        return month_figures(session, actor=actor, year=year, month=month, today=today)
    return fit_year_figures(session, actor=actor, year=year, today=today)


def generate(
    session: Session,
    *,
    actor: Actor,
    kind: str,
    period: str,
    fmt: str = "html",
    language: str = FALLBACK_LANGUAGE,
    today: date | None = None,
    generated_at: datetime | None = None,
) -> ReportFile:
    """Read the figures and render the report in one format."""
    if fmt not in REPORT_FORMATS:
        raise ValidationFailed(
            "Unknown format '{fmt}'; choose one of {formats}.",
            fmt=fmt,
            formats=", ".join(REPORT_FORMATS),
        )
    data = figures(session, actor=actor, kind=kind, period=period, today=today)
    return render(
        data, kind=kind, period=period, fmt=fmt, language=language, generated_at=generated_at
    )


def render(
    data: MonthFigures | FitYearFigures,
    *,
    kind: str,
    period: str,
    fmt: str,
    language: str = FALLBACK_LANGUAGE,
    generated_at: datetime | None = None,
) -> ReportFile:
    """Render figures already read (one read can serve several formats)."""
    generated_at = generated_at or clocks.utcnow()
    if fmt == "csv":
        return ReportFile(kind, period, "", fmt, to_csv(data, kind=kind, period=period))
    if fmt == "json":
        payload = {
            "report": kind,
            "period": period,
            "generated_at": generated_at.isoformat(timespec="seconds"),
            "min_cell": MIN_CELL,
            "figures": data.model_dump(mode="json", exclude=_JSON_EXCLUDE.get(kind)),
        }
        text = json.dumps(payload, ensure_ascii=False, indent=2) + "\n"
        return ReportFile(kind, period, "", fmt, text.encode("utf-8"))
    lang = language if language in report_languages(kind) else FALLBACK_LANGUAGE
    html = to_html(data, kind=kind, period=period, language=lang, generated_at=generated_at)
    if fmt == "html":
        return ReportFile(kind, period, lang, fmt, html.encode("utf-8"))
    return ReportFile(kind, period, lang, fmt, html_to_pdf(html))


# A month's legal-clock figures count finished steps only: no open ones to report.
_MONTH_LEGAL_EXCLUDE = {"open", "open_overdue"}
_JSON_EXCLUDE: dict[str, Any] = {
    "monthly": {"within_legal_clock": {"steps": {"__all__": _MONTH_LEGAL_EXCLUDE}}}
}


# --- HTML ------------------------------------------------------------------------------------


def to_html(
    data: BaseModel, *, kind: str, period: str, language: str, generated_at: datetime
) -> str:
    name = f"reports/{kind}.{language}.html"
    try:
        template = get_environment().get_template(name)
    except TemplateNotFound as exc:
        raise TemplateMissing(
            "No report template {name} under {folder}.",
            name=name,
            folder=TEMPLATES_DIR,
        ) from exc
    registry = get_registry()

    def pathway_title(key: str) -> str:
        for (k, _), p in sorted(registry.pathways.items(), reverse=True):
            if k == key:
                return p.title.de if language == "de" else p.title.en
        return key

    def percent(value: float | None) -> str:
        return "–" if value is None else format_percent(value, locale=language)

    direction = text_direction(language)
    context: dict[str, Any] = {
        "f": data,
        "dir": direction,
        "rtl": direction == "rtl",
        # The office's name inside a CSS string (the page footer): quoted for CSS, not HTML.
        "office_css": css_string(get_settings().office_name),
        "period": period,
        "generated_at": generated_at,
        "min_cell": MIN_CELL,
        "min_statistics": MIN_FOR_STATISTICS,
        "pathway_title": pathway_title,
        "percent": percent,
        "bars": report_charts.bars,
        "histogram": report_charts.histogram,
        "stacked": report_charts.stacked,
    }
    return template.render({**context, "lang": language})


def css_string(text: str) -> Markup:
    """A quoted CSS string: letters and digits as they are, everything else as a hex escape,
    so no character of the text can end the string, the rule or the style element."""
    body = "".join(c if c.isalnum() or c in " .,-" else f"\\{ord(c):x} " for c in text)
    return Markup(f'"{body}"')


# --- CSV -------------------------------------------------------------------------------------

CSV_COLUMNS = ("report", "period", "section", "row", "measure", "value", "suppressed")


def _sections(data: BaseModel) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """(section, the field naming each row, rows) for every table of the report."""
    if isinstance(data, MonthFigures):
        return [
            ("caseload", "pathway", [r.model_dump() for r in data.activity.caseload]),
            ("handoffs_in_month", "organisation", [r.model_dump() for r in data.activity.handoffs]),
            (
                "legal_clock",
                "step",
                [r.model_dump(exclude=_MONTH_LEGAL_EXCLUDE) for r in data.within_legal_clock.steps],
            ),
            (
                "time_from_arrival",
                "milestone",
                [t.summary_row() for t in data.time_to.values()],
            ),
            (
                "time_to_job_histogram",
                "label",
                [b.model_dump() for b in data.time_to["job_entry"].histogram],
            ),
            (
                "partner_backlog",
                "organisation",
                [r.model_dump() for r in data.partner_backlog.partners],
            ),
            (
                "cohorts",
                "cohort",
                [
                    {"cohort": f"{r.year}/{r.pathway}", **r.model_dump()}
                    for r in data.cohorts.cohorts
                ],
            ),
        ]
    if isinstance(data, FitYearFigures):
        return [
            ("fit_indicators", "indicator", data.panel.rows()),
            ("enrolments_by_quarter", "quarter", [r.model_dump() for r in data.quarters]),
            ("enrolment_to_job", "milestone", [data.enrolment_to_job.summary_row()]),
            *[(f"follow_up_{panel.year}", "indicator", panel.rows()) for panel in data.follow_up],
            ("offers", "kind", [r.model_dump() for r in data.programme.offers]),
            (
                "programme",
                "indicator",
                [r for r in data.programme.rows() if r["section"] == "programme"],
            ),
            (
                "enrolment_to_job_histogram",
                "label",
                [b.model_dump() for b in data.enrolment_to_job.histogram],
            ),
        ]
    raise TypeError(type(data).__name__)  # pragma: no cover


# Fields that describe a row rather than measure it; they are not written as measures.
_DESCRIPTIVE = {
    "suppressed",
    "year",
    "month",
    "pathway",
    "organisation",
    "organisation_name",
    "step",
    "legal_reference",
    "milestone",
    "label",
    "cohort",
    "indicator",
    "area",
    "base",
    "today",
    "quarter",
    "bin_start",
    "bin_end",
    "bin_days",
    "section",
    "kind",
}


def to_csv(data: BaseModel, *, kind: str, period: str) -> bytes:
    """Long format: one measure a line. A suppressed count is empty with ``suppressed=true``.

    UTF-8 with a byte-order mark, so spreadsheet programs show umlauts right."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for section, key, rows in _sections(data):
        for row in rows:
            label = str(row.get(key))
            for measure, value in row.items():
                if measure in _DESCRIPTIVE or measure == key:
                    continue
                hidden = value is None and row.get("suppressed", False)
                writer.writerow(
                    [
                        kind,
                        period,
                        section,
                        label,
                        measure,
                        "" if value is None else value,
                        "true" if hidden else "false",
                    ]
                )
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# --- Issued reports --------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredReportInfo:
    id: int
    kind: str
    period: str
    language: str
    format: str
    generated_at: datetime
    generated_by: str
    size: int
    sha256: str
    file_name: str


def _require_reports(actor: Actor) -> None:
    if actor.role not in (Role.leadership, Role.admin):
        raise PermissionDenied("Reports are for leadership and administrators only.")


def stored_reports(
    session: Session,
    *,
    actor: Actor,
    kind: str | None = None,
    period: str | None = None,
    limit: int = 200,
) -> list[StoredReportInfo]:
    """The issued reports (of one report and period if named), newest period first, without
    their content."""
    _require_reports(actor)
    filters = [
        *([StoredReport.kind == kind] if kind else []),
        *([StoredReport.period == period] if period else []),
    ]
    rows = session.scalars(
        select(StoredReport)
        .where(*filters)
        .order_by(
            StoredReport.period.desc(),
            StoredReport.kind,
            StoredReport.format,
            StoredReport.language,
        )
        .limit(limit)
    )
    return [
        StoredReportInfo(
            id=r.id,
            kind=r.kind,
            period=r.period,
            language=r.language,
            format=r.format,
            generated_at=r.generated_at,
            generated_by=r.generated_by,
            size=r.size,
            sha256=r.sha256,
            file_name=file_name(r.kind, r.period, r.language, r.format),
        )
        for r in rows
    ]


def stored_report(session: Session, *, actor: Actor, report_id: int) -> ReportFile:
    """One issued report with its content."""
    _require_reports(actor)
    row = session.get(StoredReport, report_id)
    if row is None:
        raise NotFoundError(
            "No stored report {report}.",
            report=report_id,
        )
    return ReportFile(row.kind, row.period, row.language, row.format, row.content)


def reporting_actor() -> Actor:
    """Who the scheduled report flow acts as: leadership rights, aggregates only."""
    return Actor(username="system:reports", role=Role.leadership)


def render_all(
    data: MonthFigures | FitYearFigures,
    *,
    kind: str,
    period: str,
    languages: Sequence[str] | None = None,
    formats: Sequence[str] = ("html", "pdf", "csv"),
    generated_at: datetime | None = None,
) -> list[ReportFile]:
    """Every requested format (HTML and PDF in every language) from one read of the figures."""
    generated_at = generated_at or clocks.utcnow()
    langs = list(languages or report_languages(kind))
    files = []
    for lang in langs if {"html", "pdf"} & set(formats) else []:
        # One HTML per language serves the HTML file and the PDF.
        html = to_html(data, kind=kind, period=period, language=lang, generated_at=generated_at)
        if "html" in formats:
            files.append(ReportFile(kind, period, lang, "html", html.encode("utf-8")))
        if "pdf" in formats:
            files.append(ReportFile(kind, period, lang, "pdf", html_to_pdf(html)))
    for fmt in formats:
        if fmt not in ("html", "pdf"):
            files.append(render(data, kind=kind, period=period, fmt=fmt, generated_at=generated_at))
    return files
