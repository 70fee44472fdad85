"""Leadership outcome figures: checked against independent counts, suppressed, and scoped."""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import NOW
from tests.helpers import advance, start_case
from tracker.clocks import add_months, local_today
from tracker.config import get_settings
from tracker.demo.load import load_demo
from tracker.enums import ACTIVE_STEP_STATES, CaseStatus, Purpose, StepState
from tracker.errors import PermissionDenied, ValidationFailed
from tracker.journeys.steps import complete_step
from tracker.models import Case, Handoff, Newcomer, Organisation, Step
from tracker.reporting import caseload, figures, fit, journeys, partners, suppression

AS_OF = date(2026, 11, 20)
YEAR = 2025
MILESTONES = ("registration", "residence_title", "job_entry")
ACTIVE = {s.value for s in ACTIVE_STEP_STATES}


# --- An independent reading of the same data: every row loaded and counted in Python ---------


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


class World:
    """All rows of the demo database, loaded through the ORM and counted here in Python."""

    def __init__(self, db: Any) -> None:
        with db.read() as s:
            self.cases = {c.id: c for c in s.scalars(select(Case))}
            self.newcomers = {n.id: n for n in s.scalars(select(Newcomer))}
            self.steps = list(s.scalars(select(Step)))
            self.handoffs = list(s.scalars(select(Handoff)))
            self.orgs = list(s.scalars(select(Organisation).order_by(Organisation.key)))
            s.expunge_all()  # keep the loaded values when the read session rolls back
        self.step_by_case_key = {(st.case_id, st.key): st for st in self.steps}

    def in_cohort(self, case: Case, year: int | None, pathway: str | None = None) -> bool:
        return (year is None or utc_day(case.opened_at).year == year) and (
            pathway is None or case.pathway_key == pathway
        )

    def cohort_steps(self, year: int | None, pathway: str | None = None) -> list[Step]:
        return [st for st in self.steps if self.in_cohort(self.cases[st.case_id], year, pathway)]

    def arrival_days(self, milestone: str, year: int | None, pathway: str | None) -> list[int]:
        days = []
        for st in self.cohort_steps(year, pathway):
            if st.key == milestone and st.state == StepState.done:
                case = self.cases[st.case_id]
                start = self.newcomers[case.newcomer_id].arrival_date or utc_day(case.opened_at)
                days.append((utc_day(st.done_at) - start).days)
        return days


def assert_protected(
    shown: dict[str, int | None], raw: dict[str, int], equations: Iterable[Sequence[str]] = ()
) -> None:
    """Shown counts are exact; 1-4 is never shown; no hidden count follows by subtraction."""
    eqs = [tuple(e) for e in equations]  # a total first, then its parts

    def small(key: str) -> bool:
        return 0 < raw[key] < suppression.MIN_CELL

    for key, value in shown.items():
        if value is not None:
            assert value == raw[key], (key, shown, raw)
        if small(key):
            assert value is None, (key, shown, raw)
    for eq in eqs:
        hidden = [k for k in eq if shown[k] is None]
        assert len(hidden) != 1, (eq, shown, raw)
        if small(eq[0]):  # a breakdown of a small group shows nothing, not even zeros
            assert hidden == list(eq), (eq, shown, raw)
    for key, value in shown.items():
        if value is None and not small(key):
            # Hidden although not small: as part of a small group, or as the partner of
            # another hidden cell that subtraction would otherwise reveal.
            assert any(
                key in eq and (small(eq[0]) or sum(shown[k] is None for k in eq) >= 2) for eq in eqs
            ), key


def with_complement(
    shown: dict[str, int | None], raw: dict[str, int], name: str, total: str, part: str
) -> tuple[str, str, str]:
    """Add the count a reader can work out as ``total - part`` (shown only if both are)."""
    raw[name] = raw[total] - raw[part]
    known = shown[total] is not None and shown[part] is not None
    shown[name] = raw[name] if known else None
    return (total, part, name)


def exact_quantiles(values: list[int]) -> dict[str, float]:
    """The documented definition: statistics.quantiles(method="inclusive")."""
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    deciles = statistics.quantiles(values, n=10, method="inclusive")
    return {
        "p25": quartiles[0],
        "median": quartiles[1],
        "p75": quartiles[2],
        "p90": deciles[8],
    }


@pytest.fixture
def demo(db: Any) -> World:
    load_demo(db, people=300, seed=5, as_of=AS_OF)
    return World(db)


# --- Figures against the independent count ----------------------------------------------------


def test_every_figure_matches_an_independent_count(db, actors, demo):
    lead = actors["lead.schmidt"]
    w = demo
    with db.read() as s:
        figs = figures.year_figures(s, actor=lead, year=YEAR, today=AS_OF)
        # The page-level call and the single figures agree.
        assert figs.funnel == journeys.funnel(s, actor=lead, year=YEAR)
        assert figs.within_legal_clock == journeys.within_legal_clock(
            s, actor=lead, year=YEAR, today=AS_OF
        )
        assert figs.recognition_outcomes == journeys.recognition_outcomes(s, actor=lead, year=YEAR)
        for m in MILESTONES:
            assert figs.time_to[m] == journeys.time_to(s, actor=lead, milestone=m, year=YEAR)
        student_funnel = journeys.funnel(s, actor=lead, year=YEAR, pathway="student")
        # year_figures runs its scans on two connections at once; the single figures each
        # read their own in this session.
        student = figures.year_figures(s, actor=lead, year=YEAR, today=AS_OF, pathway="student")
        assert student.funnel == student_funnel
        assert student.within_legal_clock == journeys.within_legal_clock(
            s, actor=lead, year=YEAR, pathway="student", today=AS_OF
        )
        for m in MILESTONES:
            assert student.time_to[m] == journeys.time_to(
                s, actor=lead, milestone=m, year=YEAR, pathway="student"
            )
        all_years_time = journeys.time_to(s, actor=lead, milestone="registration")
        fit_2024 = fit.fit_panel(s, actor=lead, year=2024, today=AS_OF)

    check_funnel(w, figs.funnel, YEAR, None)
    check_funnel(w, student_funnel, YEAR, "student")
    # Student pathway order, not the catalogue's.
    assert [r.step for r in student_funnel.steps][:3] == [
        "housing",
        "registration",
        "health_insurance",
    ]
    for m in MILESTONES:
        check_time_to(w, figs.time_to[m], m, YEAR, None)
    check_time_to(w, all_years_time, "registration", None, None)
    check_legal(w, figs.within_legal_clock, YEAR)
    check_backlog(w, figs.partner_backlog)
    check_cohorts(w, figs.cohorts)
    check_recognition(w, figs.recognition_outcomes, YEAR)
    check_fit(w, figs.fit_panel, YEAR)
    check_fit(w, fit_2024, 2024)
    check_overview(w, figs.overview)


def check_funnel(w: World, fig: journeys.Funnel, year: int, pathway: str | None) -> None:
    by_key: dict[str, Counter[str]] = defaultdict(Counter)
    for st in w.cohort_steps(year, pathway):
        by_key[st.key]["active" if st.state in ACTIVE else str(st.state)] += 1
    assert {r.step for r in fig.steps} == set(by_key)
    assert [r.position for r in fig.steps] == list(range(len(fig.steps)))
    for row in fig.steps:
        c = by_key[row.step]
        raw = {
            "cases": sum(c.values()),
            "reached": c["active"] + c["done"] + c["skipped"],
            "not_reached": c["pending"],
            "active": c["active"],
            "done": c["done"],
            "skipped": c["skipped"],
        }
        shown = row.model_dump(include=set(raw))
        assert_protected(
            shown,
            raw,
            [
                ("cases", "not_reached", "active", "done", "skipped"),
                ("cases", "reached", "not_reached"),
            ],
        )
        assert row.suppressed == any(v is None for v in shown.values())
    assert any(r.suppressed for r in fig.steps), "300 people should leave some small cells"
    assert any(r.done for r in fig.steps)


def check_time_to(
    w: World, fig: journeys.TimeTo, milestone: str, year: int | None, pathway: str | None
) -> None:
    values = w.arrival_days(milestone, year, pathway)
    assert len(values) >= suppression.MIN_CELL, "the demo should give enough for a distribution"
    assert check_distribution(fig, milestone, values)


def check_distribution(fig: journeys.TimeTo, milestone: str, values: list[int]) -> bool:
    """A "time to" figure against the days it describes. True when it has a histogram."""
    values = sorted(values)
    width = journeys.BIN_DAYS[milestone]
    assert fig.bin_days == width
    if len(values) < suppression.MIN_CELL:
        # No count, statistic or histogram that would show where the few values lie.
        assert fig.count == (None if values else 0)
        assert fig.p25 is fig.median is fig.p75 is fig.p90 is fig.mean is None
        assert fig.histogram == []
        assert fig.suppressed == bool(values)
        return False
    assert fig.count == len(values)
    few = len(values) < suppression.MIN_FOR_STATISTICS
    if few:
        # Too few for statistics that would give individual values away.
        assert fig.p25 is fig.median is fig.p75 is fig.p90 is fig.mean is None
    else:
        assert fig.model_dump(include={"p25", "median", "p75", "p90"}) == exact_quantiles(values)
        assert fig.median == statistics.median(values)
        assert fig.mean == round(statistics.mean(values), 1)
    raw = Counter((v // width) * width for v in values)
    bins = {b.bin_start: b for b in fig.histogram}
    # Contiguous bins from 0 (or below, should a value be negative) to the largest value.
    assert list(bins) == list(range(min(0, min(raw)), max(values) + 1, width))
    assert all(b.bin_end == b.bin_start + width for b in fig.histogram)
    shown = {f"b{s}": b.count for s, b in bins.items()}
    raw_counts = {f"b{s}": raw.get(s, 0) for s in bins}
    assert_protected(
        {"count": fig.count, **shown},
        {"count": len(values), **raw_counts},
        [("count", *shown)],
    )
    # Histogram total = count: shown bins plus the hidden ones add up to it.
    assert sum(raw_counts.values()) == fig.count
    assert (
        sum(b.count or 0 for b in fig.histogram)
        + sum(raw_counts[f"b{b.bin_start}"] for b in fig.histogram if b.count is None)
        == fig.count
    )
    assert fig.suppressed == (few or any(b.suppressed for b in fig.histogram))
    assert all(b.suppressed == (b.count is None) for b in fig.histogram)
    assert fig.rows()[0].keys() >= {"milestone", "bin_start", "bin_end", "count", "suppressed"}
    assert fig.summary_row()["count"] == fig.count
    return True


def check_legal(w: World, fig: journeys.LegalClock, year: int) -> None:
    raw: dict[str, Counter[str]] = defaultdict(Counter)
    for st in w.cohort_steps(year):
        if st.legal_due is None:
            continue
        if st.state == StepState.done:
            raw[st.key]["finished"] += 1
            raw[st.key]["within" if utc_day(st.done_at) <= st.legal_due else "late"] += 1
        elif st.state in ACTIVE:
            raw[st.key]["open"] += 1
            raw[st.key]["open_overdue"] += st.legal_due < AS_OF
    keys = [r.step for r in fig.steps]
    assert set(raw) <= set(keys)
    assert {"registration", "recognition", "job_offer", "residence_title"} <= set(keys)
    for row in fig.steps:
        c = raw[row.step]
        counts = {k: c[k] for k in ("finished", "within", "late", "open", "open_overdue")}
        shown = row.model_dump(include=set(counts))
        in_time = with_complement(shown, counts, "in_time", "open", "open_overdue")
        assert_protected(shown, counts, [("finished", "within", "late"), in_time])
        if row.within is not None and row.finished:
            assert row.share_within == round(c["within"] / c["finished"], 4)
        else:
            assert row.share_within is None
        assert row.legal_reference
    registration = next(r for r in fig.steps if r.step == "registration")
    assert registration.finished and registration.share_within is not None


def check_backlog(w: World, fig: partners.PartnerBacklog) -> None:
    steps = {st.id: st for st in w.steps}
    ages: dict[int, list[int]] = defaultdict(list)
    raw: dict[int, Counter[str]] = defaultdict(Counter)
    for h in w.handoffs:
        if h.state not in ("offered", "accepted"):
            continue
        age = (AS_OF - utc_day(h.offered_at or h.created_at)).days
        ages[h.organisation_id].append(age)
        c = raw[h.organisation_id]
        c[str(h.state)] += 1
        c["total"] += 1
        due = steps[h.step_id].due_date
        c["overdue"] += due is not None and due < AS_OF
        bucket = next(
            name
            for name, low, high in partners.AGE_BUCKETS
            if age >= low and (high is None or age <= high)
        )
        c[bucket] += 1
    receiving = [o for o in w.orgs if o.receives_handoffs and (o.active or o.id in raw)]
    assert [r.organisation for r in fig.partners] == [o.key for o in receiving]
    buckets = [b[0] for b in partners.AGE_BUCKETS]
    busy = 0
    for org, row in zip(receiving, fig.partners, strict=True):
        c = raw[org.id]
        counts = {k: c[k] for k in ("offered", "accepted", "total", "overdue", *buckets)}
        shown = row.model_dump(include=set(counts))
        not_overdue = with_complement(shown, counts, "not_overdue", "total", "overdue")
        assert_protected(
            shown, counts, [("total", "offered", "accepted"), ("total", *buckets), not_overdue]
        )
        if row.total:
            busy += 1
        if row.total and row.total >= suppression.MIN_FOR_STATISTICS:
            assert row.age_median_days == statistics.median(ages[org.id])
        else:
            # A median of a few handoffs is one handoff's age.
            assert row.age_median_days is None
    assert busy, "some partner should have a queue in the demo"


def check_cohorts(w: World, fig: caseload.Cohorts) -> None:
    raw: dict[tuple[int, str], Counter[str]] = defaultdict(Counter)
    to_close: dict[tuple[int, str], list[int]] = defaultdict(list)
    for case in w.cases.values():
        key = (utc_day(case.opened_at).year, case.pathway_key)
        raw[key][str(case.status)] += 1
        raw[key]["opened"] += 1
        if case.status == CaseStatus.closed:
            to_close[key].append((utc_day(case.closed_at) - utc_day(case.opened_at)).days)
    assert {(r.year, r.pathway) for r in fig.cohorts} == set(raw)
    for row in fig.cohorts:
        c = raw[(row.year, row.pathway)]
        counts = {k: c[k] for k in ("opened", "open", "closed", "cancelled")}
        shown = row.model_dump(include=set(counts))
        assert_protected(shown, counts, [("opened", "open", "closed", "cancelled")])
        if row.closed and row.closed >= suppression.MIN_FOR_STATISTICS:
            assert row.median_days_to_close == statistics.median(to_close[(row.year, row.pathway)])
        else:
            assert row.median_days_to_close is None
        assert row.suppressed == any(v is None for v in shown.values())


def check_recognition(w: World, fig: journeys.RecognitionOutcomes, year: int) -> None:
    raw = Counter(
        st.outcome
        for st in w.cohort_steps(year)
        if st.key == "recognition" and st.state == StepState.done
    )
    decided = sum(raw.values())
    assert set(raw) <= {"full", "partial", "none"}
    assert [r.outcome for r in fig.outcomes] == ["full", "partial", "none"]
    shown = {"decided": fig.decided, **{r.outcome: r.count for r in fig.outcomes}}
    counts = {"decided": decided, **{k: raw[k] for k in ("full", "partial", "none")}}
    assert_protected(shown, counts, [("decided", "full", "partial", "none")])
    assert fig.decided == decided
    for r in fig.outcomes:
        assert r.share == (round(raw[r.outcome] / decided, 4) if r.count is not None else None)


def check_fit(w: World, fig: fit.FitPanel, year: int) -> None:
    raw: Counter[str] = Counter()
    for st in w.steps:
        if st.key != "fit_enrollment" or st.state != StepState.done:
            continue
        start = utc_day(st.done_at)
        if start.year != year:
            continue
        raw["participants"] += 1
        job = w.step_by_case_key.get((st.case_id, "job_entry"))
        job_day = utc_day(job.done_at) if job and job.state == StepState.done else None
        raw["employed_so_far"] += job_day is not None
        for months in (12, 18):
            if add_months(start, months) <= AS_OF:
                raw[f"followed_{months}m"] += 1
                raw[f"employed_{months}m"] += bool(job_day and job_day <= add_months(start, months))
        raw[f"case_{w.cases[st.case_id].status}"] += 1
    fields = (
        "participants",
        "followed_12m",
        "employed_12m",
        "followed_18m",
        "employed_18m",
        "employed_so_far",
        "case_open",
        "case_closed",
        "case_cancelled",
    )
    counts = {k: raw[k] for k in fields}
    assert counts["participants"] >= suppression.MIN_CELL
    shown = fig.model_dump(include=set(fields))
    assert_protected(
        shown,
        counts,
        [
            ("participants", "case_open", "case_closed", "case_cancelled"),
            with_complement(shown, counts, "not_followed_12m", "participants", "followed_12m"),
            with_complement(shown, counts, "not_followed_18m", "participants", "followed_18m"),
            with_complement(shown, counts, "not_employed", "participants", "employed_so_far"),
            with_complement(shown, counts, "not_employed_12m", "followed_12m", "employed_12m"),
            with_complement(shown, counts, "not_employed_18m", "followed_18m", "employed_18m"),
        ],
    )
    assert fig.participants == counts["participants"]
    for months in (12, 18):
        share = getattr(fig, f"share_employed_{months}m")
        if shown[f"employed_{months}m"] is not None and shown[f"followed_{months}m"]:
            assert share == round(counts[f"employed_{months}m"] / counts[f"followed_{months}m"], 4)
        else:
            assert share is None
    rows = {r["indicator"]: r for r in fig.rows()}
    assert rows["participants"]["area"] == "access"
    assert rows["employed_12m"]["base"] == "followed_12m"
    assert all(rows[k]["count"] == getattr(fig, k) for k in fields)


def check_overview(w: World, fig: caseload.Overview) -> None:
    soon = AS_OF + timedelta(days=get_settings().due_soon_days)
    active = [st for st in w.steps if st.state in ACTIVE and st.due_date is not None]
    cases = list(w.cases.values())
    raw = {
        "open_cases": sum(c.status == CaseStatus.open for c in cases),
        "cases_overdue": sum(
            c.status == CaseStatus.open and c.next_due is not None and c.next_due < AS_OF
            for c in cases
        ),
        "overdue_steps": sum(st.due_date < AS_OF for st in active),
        "due_soon_steps": sum(AS_OF <= st.due_date <= soon for st in active),
        "closed_this_year": sum(
            c.status == CaseStatus.closed and utc_day(c.closed_at).year == AS_OF.year for c in cases
        ),
        "newcomers_this_year": len(
            {c.newcomer_id for c in cases if utc_day(c.opened_at).year == AS_OF.year}
        ),
    }
    shown = fig.model_dump(include=set(raw))
    assert_protected(shown, raw)
    assert raw["open_cases"] >= suppression.MIN_CELL and fig.open_cases == raw["open_cases"]
    assert [r["figure"] for r in fig.rows()] == list(raw)


# --- No personal data, and CSV-friendly rows -------------------------------------------------


def test_results_hold_no_reference_and_no_name(db, actors, demo):
    with db.read() as s:
        figs = figures.year_figures(s, actor=actors["admin"], year=YEAR, today=AS_OF)
        singles = [
            journeys.funnel(s, actor=actors["admin"]),
            journeys.time_to(s, actor=actors["admin"], milestone="job_entry", pathway="student"),
            fit.fit_panel(s, actor=actors["admin"], year=2024, today=AS_OF),
        ]
    text = figs.model_dump_json() + "".join(f.model_dump_json() for f in singles)
    assert "WO-" not in text
    names = {n.family_name for n in demo.newcomers.values()}
    names |= {n.given_name for n in demo.newcomers.values()}
    found = [n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)]
    assert not found
    # Every figure is a list of flat rows, ready for a CSV writer.
    all_rows = [
        figs.overview.rows(),
        figs.funnel.rows(),
        *(t.rows() for t in figs.time_to.values()),
        [t.summary_row() for t in figs.time_to.values()],
        figs.within_legal_clock.rows(),
        figs.partner_backlog.rows(),
        figs.cohorts.rows(),
        figs.recognition_outcomes.rows(),
        figs.fit_panel.rows(),
    ]
    for rows in all_rows:
        assert rows
        assert len({tuple(r) for r in rows}) == 1, "one set of columns per figure"
        for row in rows:
            assert all(v is None or isinstance(v, str | int | float | date) for v in row.values())


# --- Small cells ------------------------------------------------------------------------------


def _journey(db: Any, cm: Any, *, n: int, days: Sequence[int], **facts: Any) -> None:
    """n newcomers whose registration is done ``days[i]`` days after arriving on Feb 1."""
    arrival = date(2026, 2, 1)
    for i in range(n):
        ref = start_case(
            db,
            cm,
            now=NOW,
            consent_to=[],
            family_name=f"Testperson{i}",
            arrival_date=arrival,
            move_in_date=arrival + timedelta(days=3),
            **facts,
        )
        for key, on in (("housing", arrival + timedelta(days=3)), ("registration", None)):
            with db.transaction() as s:
                complete_step(
                    s,
                    actor=cm,
                    reference=ref,
                    step_key=key,
                    on=on or arrival + timedelta(days=days[i]),
                    now=NOW,
                )
            advance(db, cm, ref, now=NOW)


def test_cells_of_one_to_four_people_are_suppressed_and_five_are_shown(db, actors):
    cm, lead = actors["cm.mueller"], actors["lead.schmidt"]
    # Three EU citizens (a small cell) and six students (shown), all opened in 2026.
    _journey(db, cm, n=3, days=[8, 9, 10], nationality="PL")
    _journey(db, cm, n=6, days=[8, 9, 10, 11, 12, 13], nationality="IN", purpose=Purpose.study)
    today = local_today(NOW)
    with db.read() as s:
        few = journeys.time_to(s, actor=lead, milestone="registration", pathway="eu_citizen")
        six = journeys.time_to(s, actor=lead, milestone="registration", pathway="student")
        cohorts = {r.pathway: r for r in caseload.cohorts(s, actor=lead).cohorts}
        eu_funnel = journeys.funnel(s, actor=lead, year=2026, pathway="eu_citizen")
        student_funnel = journeys.funnel(s, actor=lead, year=2026, pathway="student")
        eu_clock = journeys.within_legal_clock(s, actor=lead, pathway="eu_citizen", today=today)
        st_clock = journeys.within_legal_clock(s, actor=lead, pathway="student", today=today)
        view = caseload.overview(s, actor=lead, today=today)
        backlog = {
            r.organisation: r for r in partners.partner_backlog(s, actor=lead, today=today).partners
        }
        nobody = journeys.time_to(s, actor=lead, milestone="job_entry", year=2026)
        panel = fit.fit_panel(s, actor=lead, year=2026, today=today)

    # Three people: no count, no statistic, no histogram, and the flag says why.
    assert few.count is None and few.suppressed
    assert few.p25 is few.median is few.p75 is few.p90 is few.mean is None
    assert few.histogram == []
    # Six people in one week's bin: count and histogram shown (with the empty bin before it),
    # but no percentiles or mean: with so few people they would be individual values.
    assert six.count == 6 and six.suppressed
    assert six.median is None and six.mean is None
    assert [(b.bin_start, b.count) for b in six.histogram] == [(0, 0), (7, 6)]
    # Nobody: zero is shown (it reveals no one) and is not a suppressed cell.
    assert nobody.count == 0 and not nobody.suppressed and nobody.median is None

    eu, students = cohorts["eu_citizen"], cohorts["student"]
    # Three people: not even the zeros of their breakdown are shown.
    assert (eu.opened, eu.open, eu.closed, eu.cancelled, eu.suppressed) == (None,) * 4 + (True,)
    assert (students.opened, students.open, students.suppressed) == (6, 6, False)

    assert all(r.cases is None and r.suppressed for r in eu_funnel.steps)
    registration = next(r for r in student_funnel.steps if r.step == "registration")
    assert (registration.cases, registration.done, registration.not_reached) == (6, 6, 0)
    assert not registration.suppressed
    # The next steps opened for all six: in progress is a cell of six, shown.
    health = next(r for r in student_funnel.steps if r.step == "health_insurance")
    assert (health.active, health.suppressed) == (6, False)

    eu_reg = next(r for r in eu_clock.steps if r.step == "registration")
    assert eu_reg.finished is None and eu_reg.share_within is None and eu_reg.suppressed
    st_reg = next(r for r in st_clock.steps if r.step == "registration")
    assert (st_reg.finished, st_reg.within, st_reg.late, st_reg.share_within) == (6, 6, 0, 1.0)

    assert (view.open_cases, view.newcomers_this_year) == (9, 9)
    # No partner holds an offer (no consent was given): zeros, nothing suppressed.
    assert all(r.total == 0 and not r.suppressed for r in backlog.values())
    assert panel.participants == 0 and not panel.suppressed


def test_a_partner_queue_large_enough_shows_its_true_median_age(db, actors):
    """From MIN_FOR_STATISTICS handoffs on, a queue's median age is published: the demo has
    no partner queue that long, so here one partner holds twenty offers of known ages."""
    cm = actors["cm.mueller"]
    ages = [7 * k for k in range(suppression.MIN_FOR_STATISTICS)]
    for i, age in enumerate(ages):
        offered = datetime.combine(AS_OF - timedelta(days=age), time(9), tzinfo=UTC)
        # A skilled worker's first steps open at once; with consent only to the IHK, its
        # recognition step is offered to the IHK the day the case opens.
        start_case(db, cm, now=offered, consent_to=["ihk-mr"], family_name=f"Wartend{i}")
    with db.read() as s:
        fig = partners.partner_backlog(s, actor=actors["lead.schmidt"], today=AS_OF)
    check_backlog(World(db), fig)
    ihk = next(r for r in fig.partners if r.organisation == "ihk-mr")
    assert (ihk.offered, ihk.total) == (20, 20)
    assert ihk.age_median_days == 66.5  # the middle two of 0, 7, ..., 133 days: 63 and 70


# --- Scope ------------------------------------------------------------------------------------

CALLS: dict[str, Callable[..., Any]] = {
    "funnel": lambda s, a: journeys.funnel(s, actor=a, year=2026),
    "time_to": lambda s, a: journeys.time_to(s, actor=a, milestone="registration"),
    "within_legal_clock": lambda s, a: journeys.within_legal_clock(s, actor=a, today=AS_OF),
    "partner_backlog": lambda s, a: partners.partner_backlog(s, actor=a, today=AS_OF),
    "cohorts": lambda s, a: caseload.cohorts(s, actor=a),
    "recognition_outcomes": lambda s, a: journeys.recognition_outcomes(s, actor=a),
    "fit_panel": lambda s, a: fit.fit_panel(s, actor=a, year=2026, today=AS_OF),
    "overview": lambda s, a: caseload.overview(s, actor=a, today=AS_OF),
    "year_figures": lambda s, a: figures.year_figures(s, actor=a, year=2026, today=AS_OF),
}


def test_only_leadership_and_admin_get_outcome_figures(db, actors):
    with db.read() as s:
        for name, call in CALLS.items():
            for username in ("stadt.weber", "thga.nowak", "cm.mueller", "cm.yilmaz"):
                with pytest.raises(PermissionDenied):
                    call(s, actors[username])
            for username in ("lead.schmidt", "admin"):
                assert call(s, actors[username]) is not None, name


def test_unknown_pathway_or_milestone_is_refused(db, actors):
    lead = actors["lead.schmidt"]
    with db.read() as s:
        with pytest.raises(ValidationFailed):
            journeys.funnel(s, actor=lead, pathway="astronaut")
        with pytest.raises(ValidationFailed):
            journeys.time_to(s, actor=lead, milestone="visa")  # type: ignore[arg-type]


def test_side_by_side_runs_jobs_on_two_connections_at_once_and_raises_their_errors(db):
    import threading
    import time

    from sqlalchemy import text

    both = threading.Barrier(2, timeout=20)  # broken unless the two jobs run at the same time
    connections = {}

    def job(name: str) -> Callable[[Any], Any]:
        def run(session: Any) -> Any:
            connections[name] = id(session.connection().connection.dbapi_connection)
            both.wait()
            return session.scalar(text("SELECT 1"))

        return run

    with db.read() as s:
        found = figures.side_by_side(s, {"a": job("a"), "b": job("b")})
    assert found == {"a": 1, "b": 1}
    assert connections["a"] != connections["b"]

    ran = []

    def fails(_session: Any) -> None:
        raise ValidationFailed("broken figure")

    def later(_session: Any) -> None:
        time.sleep(0.01)  # far longer than the failing job takes to stop the queue
        ran.append("later")

    with db.read() as s, pytest.raises(ValidationFailed, match="broken figure"):
        figures.side_by_side(s, {"fails": fails, **{f"later{i}": later for i in range(50)}})
    assert len(ran) < 50  # the remaining jobs were dropped, not run after the error


def test_side_by_side_on_a_session_bound_to_one_connection_runs_the_jobs_in_turn(db):
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    with db.reader.connect() as conn, Session(bind=conn) as s:
        used = set()

        def job(session: Any) -> Any:
            used.add(id(session))
            return session.scalar(text("SELECT 2"))

        assert figures.side_by_side(s, {"a": job, "b": job}) == {"a": 2, "b": 2}
        assert used == {id(s)}  # one connection is never shared between two threads
