"""Reports: figures against an independent count, every format, every language, kept and scoped."""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select, update

from tests.helpers import advance, start_case
from tests.test_outcomes import (
    AS_OF,
    World,
    assert_protected,
    check_backlog,
    check_cohorts,
    check_distribution,
    check_fit,
    utc_day,
)
from tracker import fit as programme
from tracker.enums import FitChannel, StepState
from tracker.errors import PermissionDenied, ValidationFailed
from tracker.journeys.steps import complete_step
from tracker.models import AuditEvent, Organisation, StoredReport
from tracker.reporting import caseload, figures, fit, journeys, reports, suppression
from tracker.reporting.archive import store_reports

MONTH = (2026, 10)
PERIOD = "2026-10"


@pytest.fixture
def demo(db: Any) -> World:
    from tracker.demo.load import load_demo

    load_demo(db, people=300, seed=5, as_of=AS_OF)
    return World(db)


def in_month(moment: datetime | None, year: int, month: int) -> bool:
    if moment is None:
        return False
    day = utc_day(moment)
    return (day.year, day.month) == (year, month)


def month_start_end(year: int, month: int) -> tuple[date, date]:
    start = date(year, month, 1)
    end = date(year + (month == 12), month % 12 + 1, 1)
    return start, end


# --- The monthly figures against an independent count ----------------------------------------


def check_caseload(w: World, fig: figures.MonthActivity, year: int, month: int) -> None:
    start, end = month_start_end(year, month)
    raw: dict[str, Counter[str]] = defaultdict(Counter)
    for c in w.cases.values():
        opened = utc_day(c.opened_at)
        ended = utc_day(c.closed_at) if c.closed_at else None
        if opened >= end or (ended is not None and ended < start):
            continue
        r = raw[c.pathway_key]
        r["active"] += 1
        r["opened"] += opened >= start
        if ended is not None and ended < end:
            r[str(c.status)] += 1
    assert {r.pathway for r in fig.caseload} >= set(raw)
    for row in fig.caseload:
        c = raw[row.pathway]
        flows = {k: c[k] for k in ("opened", "closed", "cancelled")}
        assert_protected(row.model_dump(include=set(flows)), flows)
        # Stocks are rounded to 5 (1-4 hidden): exact stocks in consecutive reports would
        # give a hidden flow away by subtraction.
        stocks = {"active": c["active"], "open_at_end": c["active"] - c["closed"] - c["cancelled"]}
        for key, value in stocks.items():
            shown = getattr(row, key)
            if 0 < value < suppression.MIN_CELL:
                assert shown is None
            else:
                assert shown % 5 == 0 and abs(shown - value) <= 2, (key, shown, value)
    assert any(r.active for r in fig.caseload)


def test_consecutive_monthly_reports_give_no_hidden_flow_away(db, actors, demo):
    """The end of one month is the start of the next: the stocks published for both are
    rounded, so "opened" hidden in one month cannot be worked out from the month before."""
    lead = actors["lead.schmidt"]
    with db.read() as s:
        months = [figures.month_activity(s, actor=lead, year=2026, month=m) for m in range(1, 11)]
    opened = Counter(
        (c.pathway_key, utc_day(c.opened_at).year, utc_day(c.opened_at).month)
        for c in demo.cases.values()
    )
    hidden = 0
    for before, after in itertools.pairwise(months):
        for prev, row in zip(before.caseload, after.caseload, strict=True):
            assert prev.pathway == row.pathway
            for stock in (prev.open_at_end, row.active, row.open_at_end):
                assert stock is None or stock % 5 == 0
            if row.opened is None and prev.open_at_end is not None and row.active is not None:
                hidden += 1
                truth = opened[(row.pathway, after.year, after.month)]
                assert 0 < truth < suppression.MIN_CELL
                # What a reader can work out from the two rounded stocks (each off by at most
                # 2): an interval of nine values around the truth, not the truth itself.
                guess = row.active - prev.open_at_end
                assert guess - 4 <= truth <= guess + 4
    assert hidden, "300 people should leave some month with a hidden number of new cases"


def check_handoff_flow(w: World, fig: figures.MonthActivity, year: int, month: int) -> None:
    raw: dict[int, Counter[str]] = defaultdict(Counter)
    for h in w.handoffs:
        if in_month(h.offered_at, year, month):
            raw[h.organisation_id]["offered"] += 1
        if in_month(h.closed_at, year, month) and str(h.state) in (
            "completed",
            "declined",
            "returned",
        ):
            raw[h.organisation_id][str(h.state)] += 1
    by_key = {o.key: o.id for o in w.orgs}
    assert any(raw.values())
    for row in fig.handoffs:
        counts = {
            k: raw[by_key[row.organisation]][k]
            for k in ("offered", "completed", "declined", "returned")
        }
        assert_protected(row.model_dump(include=set(counts)), counts)


def check_month_legal(w: World, fig: journeys.LegalClock, year: int, month: int) -> None:
    raw: dict[str, Counter[str]] = defaultdict(Counter)
    for st in w.steps:
        if st.state != StepState.done or st.legal_due is None:
            continue
        if not in_month(st.done_at, year, month):
            continue
        raw[st.key]["finished"] += 1
        raw[st.key]["within" if utc_day(st.done_at) <= st.legal_due else "late"] += 1
    assert raw, "the demo month should finish steps with a legal clock"
    rows = {r.step: r for r in fig.steps}
    assert set(raw) <= set(rows)
    for key, row in rows.items():
        counts = {k: raw[key][k] for k in ("finished", "within", "late")}
        assert_protected(
            row.model_dump(include=set(counts)), counts, [("finished", "within", "late")]
        )
        assert not row.open and not row.open_overdue  # a month's finished steps only


def check_month_time(w: World, fig: journeys.TimeTo, milestone: str, year: int, month: int) -> bool:
    """A month's "time to" figure against the days counted here. True when it has a histogram."""
    values = []
    for st in w.steps:
        if st.key == milestone and st.state == StepState.done and in_month(st.done_at, year, month):
            case = w.cases[st.case_id]
            arrival = w.newcomers[case.newcomer_id].arrival_date or utc_day(case.opened_at)
            values.append((utc_day(st.done_at) - arrival).days)
    return check_distribution(fig, milestone, values)


def test_monthly_figures_match_an_independent_count(db, actors, demo):
    lead = actors["lead.schmidt"]
    histograms = 0
    for year, month in (MONTH, (2025, 6), (2024, 12)):
        with db.read() as s:
            figs = figures.month_figures(s, actor=lead, year=year, month=month, today=AS_OF)
        check_caseload(demo, figs.activity, year, month)
        check_handoff_flow(demo, figs.activity, year, month)
        check_month_legal(demo, figs.within_legal_clock, year, month)
        for m, t in figs.time_to.items():
            histograms += check_month_time(demo, t, m, year, month)
        check_backlog(demo, figs.partner_backlog)
        with db.read() as s:
            exact = caseload.cohorts(s, actor=lead)
        check_cohorts(demo, exact)
        for rounded, row in zip(figs.cohorts.cohorts, exact.cohorts, strict=True):
            for key in ("opened", "open", "closed", "cancelled"):
                value = getattr(row, key)
                shown = getattr(rounded, key)
                assert (
                    (shown is None)
                    if value is None
                    else (shown == suppression.round_to_base(value))
                )
        assert figs.activity.start == date(year, month, 1)
    assert histograms, "some month should reach a milestone often enough for a histogram"


# Days from FIT enrolment to the first day of work of the students ``fit_jobs`` adds.
FIT_JOB_DAYS = (31, 36, 42, 47, 53, 58)


def student_who_starts_a_job(db: Any, cm: Any, *, i: int, days_to_job: int) -> None:
    """A student's journey through the services: the steps before FIT, the enrolment, the
    residence title, then the job (the case's step, and the programme's record of it)."""
    opened = datetime(2025, 2, 3 + i, 9, tzinfo=UTC)
    ref = start_case(
        db,
        cm,
        now=opened,
        consent_to=[],
        purpose="study",
        nationality="VN",
        given_name=f"Student{i}",
        family_name="Arbeitsstart",
    )

    def done(step_key: str, at: datetime) -> None:
        with db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key=step_key, now=at)
        advance(db, cm, ref, now=at)

    for step_key, days in (
        ("housing", 1),
        ("registration", 5),
        ("health_insurance", 8),
        ("bank_account", 8),
    ):
        done(step_key, opened + timedelta(days=days))
    enrolled = opened + timedelta(days=12)
    with db.transaction() as s:
        participant_id = programme.enrol(
            s,
            actor=cm,
            reference=ref,
            channel=FitChannel.orientation_week,
            study_programme="Geotechnik",
            semester=2,
            now=enrolled,
        ).id
    advance(db, cm, ref, now=enrolled)
    done("residence_title", opened + timedelta(days=20))
    job = enrolled + timedelta(days=days_to_job)
    done("job_entry", job)
    with db.transaction() as s:
        programme.record_job_entry(
            s,
            actor=cm,
            participant_id=participant_id,
            employer="Ruhr AG",
            started_on=job.date(),
            in_region=True,
            now=job,
        )


@pytest.fixture
def fit_jobs(db: Any, actors: Any, demo: World) -> World:
    """The demo, plus students enrolled in FIT in 2025 who then started a job: the demo's own
    2025 enrolments have found none by AS_OF, which would leave time-to-job without data."""
    for i, days in enumerate(FIT_JOB_DAYS):
        student_who_starts_a_job(db, actors["cm.mueller"], i=i, days_to_job=days)
    return World(db)


def test_fit_year_figures_match_an_independent_count(db, actors, fit_jobs):
    w = fit_jobs
    lead = actors["lead.schmidt"]
    with db.read() as s:
        figs = fit.fit_year_figures(s, actor=lead, year=2025, today=AS_OF)
    check_fit(w, figs.panel, 2025)
    per_quarter: Counter[int] = Counter()
    to_job = []
    for st in w.steps:
        if st.key != "fit_enrollment" or st.state != StepState.done:
            continue
        day = utc_day(st.done_at)
        if day.year != 2025:
            continue
        per_quarter[(day.month - 1) // 3 + 1] += 1
        job = w.step_by_case_key.get((st.case_id, "job_entry"))
        if job is not None and job.state == StepState.done:
            to_job.append(max((utc_day(job.done_at) - day).days, 0))
    counts = {
        "participants": sum(per_quarter.values()),
        **{f"q{q}": per_quarter[q] for q in range(1, 5)},
    }
    shown = {
        "participants": figs.panel.participants,
        **{f"q{r.quarter}": r.participants for r in figs.quarters},
    }
    assert_protected(shown, counts, [("participants", "q1", "q2", "q3", "q4")])
    # The students the fixture added are counted, with the days planned for them.
    assert Counter(FIT_JOB_DAYS) <= Counter(to_job)
    assert check_distribution(figs.enrolment_to_job, "job_entry", to_job)
    assert any(b.count for b in figs.enrolment_to_job.histogram), "a bin of five or more"
    # One definition of "employed" everywhere: nothing to subtract between the two.
    assert figs.panel.employed_so_far == figs.enrolment_to_job.count == len(to_job)
    assert [p.year for p in figs.follow_up] == [2024, 2023]
    check_fit(w, figs.follow_up[0], 2024)


def test_the_fit_participants_are_the_same_in_every_format(db, actors, demo):
    lead = actors["lead.schmidt"]
    with db.read() as s:
        data = reports.figures(s, actor=lead, kind="fit", period="2024", today=AS_OF)
    n = sum(
        1
        for st in demo.steps
        if st.key == "fit_enrollment"
        and st.state == StepState.done
        and utc_day(st.done_at).year == 2024
    )
    assert n >= suppression.MIN_CELL
    assert data.panel.participants == n
    as_json = reports.render(data, kind="fit", period="2024", fmt="json")
    import json

    assert json.loads(as_json.content)["figures"]["panel"]["participants"] == n
    rows = parse_csv(reports.render(data, kind="fit", period="2024", fmt="csv").content)
    assert ("fit_indicators", "participants", "count", str(n)) in rows
    html = reports.render(data, kind="fit", period="2024", fmt="html", language="de")
    assert f">{n}<" in html.content.decode()


# --- Formats ----------------------------------------------------------------------------------


def parse_csv(content: bytes) -> list[tuple[str, str, str, str]]:
    assert content.startswith("\ufeff".encode())  # spreadsheet programs read umlauts right
    reader = csv.DictReader(io.StringIO(content.decode("utf-8-sig")))
    assert tuple(reader.fieldnames or ()) == reports.CSV_COLUMNS
    return [(r["section"], r["row"], r["measure"], r["value"]) for r in reader]


def test_csv_holds_every_shown_figure_and_marks_what_is_suppressed(db, actors, demo):
    lead = actors["lead.schmidt"]
    with db.read() as s:
        data = figures.month_figures(s, actor=lead, year=MONTH[0], month=MONTH[1], today=AS_OF)
    content = reports.render(data, kind="monthly", period=PERIOD, fmt="csv").content
    reader = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    values = {(r["section"], r["row"], r["measure"]): r for r in reader}
    for row in data.activity.caseload:
        for field in ("active", "opened", "closed", "open_at_end"):
            got = values[("caseload", row.pathway, field)]
            expected = getattr(row, field)
            assert got["value"] == ("" if expected is None else str(expected))
            assert got["suppressed"] == ("true" if expected is None else "false")
    for row in data.partner_backlog.partners:
        got = values[("partner_backlog", row.organisation, "total")]
        assert got["value"] == ("" if row.total is None else str(row.total))
    assert all(r["report"] == "monthly" and r["period"] == PERIOD for r in reader)
    assert any(r["suppressed"] == "true" for r in reader), "300 people leave small cells"


def test_html_report_is_self_contained_and_shows_the_figures(db, actors, demo):
    lead = actors["lead.schmidt"]
    with db.read() as s:
        data = figures.month_figures(s, actor=lead, year=MONTH[0], month=MONTH[1], today=AS_OF)
    for language in reports.report_languages("monthly"):
        html = reports.render(
            data, kind="monthly", period=PERIOD, fmt="html", language=language
        ).content.decode()
        assert f'<html lang="{language}"' in html
        assert "<svg" in html  # charts are drawn into the file
        # Nothing to fetch: no scripts, stylesheets, images or fonts from anywhere.
        assert not re.search(r"<(script|link|img|iframe)\b", html)
        assert not re.search(r"(src|href)\s*=", html)
        assert not re.search(r"url\(\s*['\"]?https?:", html)
        for url in re.findall(r"https?://[^\s\"'<>)]+", html):
            assert url.startswith("http://www.w3.org/"), url  # SVG namespaces only
        first = next(r for r in data.activity.caseload if r.active is not None)
        assert f">{first.active}<" in html
    german = reports.render(data, kind="monthly", period=PERIOD, fmt="html", language="de")
    assert "Monatsbericht Oktober 2026" in german.content.decode()
    english = reports.render(data, kind="monthly", period=PERIOD, fmt="html", language="en")
    assert "Monthly report October 2026" in english.content.decode()


def test_pdf_report_prints_the_figures_on_a4_pages(db, actors, demo):
    lead = actors["lead.schmidt"]
    with db.read() as s:
        data = fit.fit_year_figures(s, actor=lead, year=2024, today=AS_OF)
    pdf = reports.render(data, kind="fit", period="2024", fmt="pdf", language="de")
    assert pdf.content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf.content))
    assert len(reader.pages) >= 1
    width, height = (float(x) for x in reader.pages[0].mediabox.upper_right)
    assert abs(width - 595.3) < 1 and abs(height - 841.9) < 1  # A4 in points
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert "FIT@THGA-Jahresbericht 2024" in text
    assert str(data.panel.participants) in text
    assert "Seite 1" in text


def test_injection_in_data_stays_inert_in_html_charts_and_csv(db, actors, demo):
    hostile = "<script>alert(1)</script>{{ 7*7 }}&amp;"
    with db.transaction() as s:
        s.execute(update(Organisation).where(Organisation.key == "ihk-mr").values(name=hostile))
    lead = actors["lead.schmidt"]
    with db.read() as s:
        data = figures.month_figures(s, actor=lead, year=MONTH[0], month=MONTH[1], today=AS_OF)
    assert any(r.organisation_name == hostile for r in data.partner_backlog.partners)
    html = reports.render(data, kind="monthly", period=PERIOD, fmt="html").content.decode()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}&amp;amp;" in html
    assert "49" not in re.findall(r"alert\(1\)&lt;/script&gt;(\S*)", html)[0]
    rows = parse_csv(reports.render(data, kind="monthly", period=PERIOD, fmt="csv").content)
    assert ("partner_backlog", "ihk-mr", "total") in {r[:3] for r in rows}


def test_reports_are_for_leadership_and_admins_only(db, actors, demo):
    for username in ("cm.mueller", "ihk.hoffmann"):
        who = actors[username]
        with db.read() as s, pytest.raises(PermissionDenied):
            reports.generate(s, actor=who, kind="monthly", period=PERIOD, today=AS_OF)
        with db.read() as s, pytest.raises(PermissionDenied):
            reports.stored_reports(s, actor=who)
        with db.transaction() as s, pytest.raises(PermissionDenied):
            store_reports(s, actor=who, files=[])
    with db.read() as s:
        reports.generate(s, actor=actors["admin"], kind="fit", period="2024", fmt="json")


@pytest.mark.parametrize(
    ("kind", "period"),
    [
        ("monthly", "2026-13"),
        ("monthly", "2026"),
        ("monthly", "9999-12"),
        ("fit", "24"),
        ("fit", "1066"),
        ("weekly", "2026-01"),
    ],
)
def test_a_bad_period_or_kind_is_refused_clearly(db, actors, kind, period):
    with db.read() as s, pytest.raises(ValidationFailed) as err:
        reports.generate(s, actor=actors["lead.schmidt"], kind=kind, period=period)
    assert period in str(err.value) or kind in str(err.value)


# --- Kept reports -----------------------------------------------------------------------------


def test_kept_reports_are_stored_once_and_replaced_only_on_request(db, actors, demo):
    lead = actors["lead.schmidt"]
    with db.read() as s:
        data = reports.figures(s, actor=lead, kind="fit", period="2024", today=AS_OF)
    files = reports.render_all(data, kind="fit", period="2024", formats=("html", "csv"))
    assert {(f.format, f.language) for f in files} == {("html", "de"), ("html", "en"), ("csv", "")}
    with db.transaction() as s:
        assert len(store_reports(s, actor=lead, files=files)) == 3
    with db.transaction() as s:
        assert store_reports(s, actor=lead, files=files) == []  # a re-run keeps the issued one
    with db.transaction() as s:
        assert len(store_reports(s, actor=lead, files=files[:1], replace=True)) == 1
    with db.read() as s:
        kept = reports.stored_reports(s, actor=lead)
        assert len(kept) == 3
        html_de = next(k for k in kept if k.format == "html" and k.language == "de")
        assert (
            reports.stored_report(s, actor=lead, report_id=html_de.id).content == files[0].content
        )
        actions = Counter(
            s.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "report"))
        )
        assert s.scalar(select(func.count()).select_from(StoredReport)) == 3
    assert actions == {"report.stored": 3, "report.replaced": 1}
    assert html_de.file_name == "fit-jahresbericht-2024-de.html"


def test_cli_writes_each_format_and_refuses_partners(db, actors, demo, cli, tmp_path):
    code, _out, err = cli(
        "report",
        "monthly",
        "--as",
        "lead.schmidt",
        "--month",
        PERIOD,
        "-f",
        "csv",
        "-o",
        str(tmp_path),
    )
    assert code == 0, err
    written = tmp_path / "monatsbericht-2026-10.csv"
    assert parse_csv(written.read_bytes())
    code, _out, err = cli(
        "report",
        "fit",
        "--as",
        "lead.schmidt",
        "--year",
        "2024",
        "-f",
        "pdf",
        "-o",
        str(tmp_path / "fit.pdf"),
        "--archive",
    )
    assert code == 0, err
    assert "Kept 5 files" in err
    assert (tmp_path / "fit.pdf").read_bytes().startswith(b"%PDF-")
    code, out, err = cli("report", "list", "--as", "lead.schmidt", "--json")
    assert code == 0, err
    assert out.count('"kind": "fit"') == 5
    code, _out, err = cli("report", "fit", "--as", "ihk.hoffmann", "--year", "2024")
    assert code == 1
    assert "leadership" in err
    code, _out, err = cli("report", "monthly", "--as", "lead.schmidt", "--month", "2026-13")
    assert code == 1 and "2026-10" in err
    code, out, err = cli(
        "report", "fit", "--as", "lead.schmidt", "--year", "2024", "-f", "json", "-o", "-"
    )
    assert code == 0, err
    assert '"participants": ' in out


def test_monthly_json_and_csv_publish_no_open_step_counts(db, actors, demo):
    """A month's legal-clock figures count finished steps; zeros for open ones would be false."""
    import json

    lead = actors["lead.schmidt"]
    with db.read() as s:
        data = figures.month_figures(s, actor=lead, year=MONTH[0], month=MONTH[1], today=AS_OF)
    payload = json.loads(reports.render(data, kind="monthly", period=PERIOD, fmt="json").content)
    steps = payload["figures"]["within_legal_clock"]["steps"]
    assert steps and all("open" not in r and "open_overdue" not in r for r in steps)
    rows = parse_csv(reports.render(data, kind="monthly", period=PERIOD, fmt="csv").content)
    assert not [r for r in rows if r[0] == "legal_clock" and r[2] in ("open", "open_overdue")]
    assert [r for r in rows if r[0] == "legal_clock" and r[2] == "finished"]
