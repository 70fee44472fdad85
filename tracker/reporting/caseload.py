"""Cases in figures: cohorts by year and pathway, a month's caseload, the headline numbers."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel
from sqlalchemy import case, distinct, extract, func, or_, select
from sqlalchemy.orm import Session

from tracker.access import Actor
from tracker.config import get_settings
from tracker.enums import CaseStatus
from tracker.models import Case, Step
from tracker.pathway import get_registry
from tracker.reporting.base import (
    ACTIVE_STEP_VALUES,
    Figure,
    cohort_filter,
    count_if,
    days_between,
    pathway_order,
    require_leadership,
    utc_date,
    year_bounds,
)
from tracker.reporting.suppression import (
    MIN_FOR_STATISTICS,
    any_hidden,
    quantile,
    round_to_base,
    suppress,
)


class CohortRow(BaseModel):
    year: int
    pathway: str
    opened: int | None
    open: int | None
    closed: int | None
    cancelled: int | None
    median_days_to_close: float | None
    suppressed: bool


class Cohorts(Figure):
    cohorts: list[CohortRow]

    def rows(self) -> list[dict[str, Any]]:
        return [r.model_dump() for r in self.cohorts]


class Overview(Figure):
    today: date
    open_cases: int | None
    cases_overdue: int | None  # open cases with at least one overdue step
    overdue_steps: int | None
    due_soon_steps: int | None
    closed_this_year: int | None
    newcomers_this_year: int | None  # newcomers whose case opened this year
    suppressed: bool

    FIGURES: ClassVar[tuple[str, ...]] = (
        "open_cases",
        "cases_overdue",
        "overdue_steps",
        "due_soon_steps",
        "closed_this_year",
        "newcomers_this_year",
    )

    def rows(self) -> list[dict[str, Any]]:
        data = self.model_dump()
        return [
            {"today": self.today, "figure": f, "value": data[f], "suppressed": data[f] is None}
            for f in self.FIGURES
        ]


class CaseloadRow(BaseModel):
    """Cases of one pathway in a month: what moved (exact), and how many (rounded).

    The flows (opened, closed, cancelled) are exact, a count of 1-4 hidden. The stocks
    (accompanied, open at the month's end) are rounded to 5: the open cases at the end of
    one month are the ones carried into the next, so exact stocks in two monthly reports
    would give away a hidden flow by subtraction (and so would the cohort table)."""

    pathway: str
    active: int | None  # open at some time in the month, rounded to 5
    opened: int | None
    closed: int | None
    cancelled: int | None
    open_at_end: int | None  # rounded to 5
    suppressed: bool


def cohorts(session: Session, *, actor: Actor) -> Cohorts:
    """Per year of opening and pathway: opened, still open, closed, cancelled; days to close."""
    require_leadership(actor)
    year = extract("year", utc_date(Case.opened_at))
    days = days_between(utc_date(Case.opened_at), utc_date(Case.closed_at))
    counts: dict[tuple[int, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    closing: dict[tuple[int, str], list[tuple[int, int]]] = defaultdict(list)
    # One pass: the day count is NULL for cases that are not closed, so they form one group.
    stmt = select(year, Case.pathway_key, Case.status, days, func.count()).group_by(
        year, Case.pathway_key, Case.status, days
    )
    for y, pathway, status, d, n in session.execute(stmt):
        counts[(int(y), pathway)][str(status)] += int(n)
        if status == CaseStatus.closed and d is not None:
            closing[(int(y), pathway)].append((int(d), int(n)))
    order = {key: i for i, key in enumerate(sorted({k for k, _ in get_registry().pathways}))}
    rows = []
    for (y, pathway), c in sorted(counts.items(), key=lambda i: (i[0][0], order.get(i[0][1], 99))):
        values = {s.value: c[s.value] for s in CaseStatus}
        values["opened"] = sum(values.values())
        shown = suppress(values, [("opened", *(s.value for s in CaseStatus))])
        freq = sorted(closing[(y, pathway)])
        rows.append(
            CohortRow(
                year=y,
                pathway=pathway,
                opened=shown["opened"],
                open=shown["open"],
                closed=shown["closed"],
                cancelled=shown["cancelled"],
                # A median of a few people is one of them: only from MIN_FOR_STATISTICS on.
                median_days_to_close=(
                    quantile(freq, 2, 4)
                    if shown["closed"] and sum(n for _, n in freq) >= MIN_FOR_STATISTICS
                    else None
                ),
                suppressed=any_hidden(shown),
            )
        )
    return Cohorts(cohorts=rows)


def rounded_cohorts(figure: Cohorts) -> Cohorts:
    """Cohort counts rounded to 5, for snapshots published again and again (the monthly
    report): two exact snapshots a month apart would tell by subtraction what changed."""
    rows = []
    for r in figure.cohorts:
        values = {k: getattr(r, k) for k in ("opened", "open", "closed", "cancelled")}
        shown = {k: None if v is None else round_to_base(v) for k, v in values.items()}
        rows.append(r.model_copy(update={**shown, "suppressed": any_hidden(shown)}))
    return Cohorts(cohorts=rows)


def overview(session: Session, *, actor: Actor, today: date) -> Overview:
    """The headline numbers for the top of the leadership page."""
    require_leadership(actor)
    soon = today + timedelta(days=get_settings().due_soon_days)
    start, end = year_bounds(today.year)
    active = Step.state.in_(ACTIVE_STEP_VALUES)
    open_cases = session.scalar(
        select(func.count()).select_from(Case).where(Case.status == CaseStatus.open)
    )
    # Case.next_due is the earliest due date of a case's active steps (kept by the services).
    cases_overdue = session.scalar(
        select(func.count())
        .select_from(Case)
        .where(Case.status == CaseStatus.open, Case.next_due < today)
    )
    overdue_steps, due_soon_steps = session.execute(
        select(
            func.coalesce(func.sum(case((Step.due_date < today, 1), else_=0)), 0),
            func.coalesce(func.sum(case((Step.due_date >= today, 1), else_=0)), 0),
        ).where(active, Step.due_date <= soon)
    ).one()
    closed = session.scalar(
        select(func.count())
        .select_from(Case)
        .where(Case.status == CaseStatus.closed, Case.closed_at >= start, Case.closed_at < end)
    )
    newcomers = session.scalar(
        select(func.count(distinct(Case.newcomer_id))).where(*cohort_filter(today.year, None))
    )
    shown = suppress(
        {
            "open_cases": int(open_cases or 0),
            "cases_overdue": int(cases_overdue or 0),
            "overdue_steps": int(overdue_steps),
            "due_soon_steps": int(due_soon_steps),
            "closed_this_year": int(closed or 0),
            "newcomers_this_year": int(newcomers or 0),
        }
    )
    return Overview(today=today, suppressed=any_hidden(shown), **shown)


def month_caseload(session: Session, *, start: datetime, end: datetime) -> list[CaseloadRow]:
    """Per pathway, the cases open at some time in [start, end): carried in, opened, ended."""
    ended = Case.closed_at < end
    stmt = (
        select(
            Case.pathway_key,
            count_if(Case.opened_at < start),
            count_if(Case.opened_at >= start),
            count_if(Case.status == CaseStatus.closed, ended),
            count_if(Case.status == CaseStatus.cancelled, ended),
        )
        .where(
            Case.status.in_([s.value for s in CaseStatus]),
            Case.opened_at < end,
            or_(Case.closed_at.is_(None), Case.closed_at >= start),
        )
        .group_by(Case.pathway_key)
    )
    found = {key: [int(x) for x in rest] for key, *rest in session.execute(stmt)}
    caseload = []
    for key in pathway_order(found):
        carried, opened, closed, cancelled = found.get(key, [0, 0, 0, 0])
        flows = suppress({"opened": opened, "closed": closed, "cancelled": cancelled})
        stocks = {
            "active": round_to_base(carried + opened),
            "open_at_end": round_to_base(carried + opened - closed - cancelled),
        }
        caseload.append(
            CaseloadRow(
                pathway=key,
                suppressed=any_hidden(flows) or any_hidden(stocks),
                **flows,
                **stocks,
            )
        )
    return caseload
