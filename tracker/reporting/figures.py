"""The figures of one page or report, gathered: the leadership page's year and the month.

Each figure is computed with its subject: ``journeys`` (funnel, days to a milestone, legal
clocks, recognition), ``caseload`` (cohorts, a month's cases, the headline numbers),
``partners`` (queues and what moved through them), ``fit`` (FIT@THGA); small cells are
suppressed there, by the rules in ``suppression``. Here they are read together, sharing scans.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from tracker.access import Actor
from tracker.errors import ValidationFailed
from tracker.reporting import caseload, fit, journeys, partners
from tracker.reporting.base import Figure, check_pathway, require_leadership


class YearFigures(BaseModel):
    """Every figure of the leadership page for one year, as the dashboard and reports use it."""

    year: int
    pathway: str | None
    today: date
    overview: caseload.Overview
    funnel: journeys.Funnel
    time_to: dict[str, journeys.TimeTo]  # by milestone
    within_legal_clock: journeys.LegalClock
    partner_backlog: partners.PartnerBacklog
    cohorts: caseload.Cohorts
    recognition_outcomes: journeys.RecognitionOutcomes
    fit_panel: fit.FitPanel
    fit_programme: fit.FitProgramme


class MonthActivity(Figure):
    year: int
    month: int
    start: date  # first day of the month
    end: date  # last day of the month
    caseload: list[caseload.CaseloadRow]
    handoffs: list[partners.HandoffFlowRow]

    def rows(self) -> list[dict[str, Any]]:
        head = {"year": self.year, "month": self.month}
        return [{**head, **r.model_dump()} for r in self.caseload] + [
            {**head, **r.model_dump()} for r in self.handoffs
        ]


class MonthFigures(BaseModel):
    """Everything the monthly outcomes report shows for one month."""

    year: int
    month: int
    today: date  # when the figures were read: the backlog is a snapshot of that day
    activity: MonthActivity
    within_legal_clock: journeys.LegalClock  # steps finished in the month (open steps not counted)
    time_to: dict[str, journeys.TimeTo]  # milestones reached in the month, days from arrival
    partner_backlog: partners.PartnerBacklog
    cohorts: caseload.Cohorts  # rounded to 5: see caseload.rounded_cohorts


def side_by_side(session: Session, jobs: Mapping[str, Callable[[Session], Any]]) -> dict[str, Any]:
    """Run independent read-only ``jobs`` on two connections at once; their results by name.

    This thread works on ``session``, a second one on a session of its own on the same engine;
    each takes the next job in the given order (put the longest first). The database does the
    work of an aggregate, and both SQLite and PostgreSQL run two connections' statements on two
    cores in parallel. Each statement sees committed data as of its start, as PostgreSQL's
    default READ COMMITTED gives one session's statements anyway. An error in a job is raised
    here once both threads have stopped."""
    bind = session.get_bind()
    if not isinstance(bind, Engine):  # a session on one connection: nothing to run beside it
        return {name: job(session) for name, job in jobs.items()}
    queue = list(jobs.items())
    lock = threading.Lock()
    results: dict[str, Any] = {}

    def work(on: Session) -> None:
        while True:
            with lock:
                if not queue:
                    return
                name, job = queue.pop(0)
            try:
                results[name] = job(on)
            except BaseException:
                with lock:
                    queue.clear()  # stop the other thread too
                raise

    with Session(bind=bind) as sibling, ThreadPoolExecutor(1) as pool:
        other = pool.submit(work, sibling)
        try:
            work(session)
        finally:
            try:
                other.result()
            finally:
                sibling.rollback()
    return results


def year_figures(
    session: Session, *, actor: Actor, year: int, today: date, pathway: str | None = None
) -> YearFigures:
    """All figures for one year, reading each table once where figures share a scan.

    The scans are independent: they run two at a time (``side_by_side``); at 100,000
    newcomers that is what keeps the whole leadership page inside a second."""
    require_leadership(actor)
    check_pathway(pathway)
    milestones = list(get_args(journeys.Milestone))
    found = side_by_side(
        session,
        {  # the longest first
            "counts": lambda s: journeys.step_counts(s, year=year, pathway=pathway, today=today),
            "days": lambda s: journeys.arrival_days(
                s, milestones=milestones, year=year, pathway=pathway
            ),
            "cohorts": lambda s: caseload.cohorts(s, actor=actor),
            "partner_backlog": lambda s: partners.partner_backlog(s, actor=actor, today=today),
            "fit_panel": lambda s: fit.fit_panel(s, actor=actor, year=year, today=today),
            "overview": lambda s: caseload.overview(s, actor=actor, today=today),
            "fit_programme": lambda s: fit.fit_programme(s, actor=actor, year=year),
        },
    )
    counts, freqs = found["counts"], found["days"]
    return YearFigures(
        year=year,
        pathway=pathway,
        today=today,
        overview=found["overview"],
        funnel=journeys.build_funnel(counts, year, pathway),
        time_to={m: journeys.build_time_to(freqs[m], m, year, pathway) for m in milestones},
        within_legal_clock=journeys.build_legal(counts, year, pathway, today),
        partner_backlog=found["partner_backlog"],
        cohorts=found["cohorts"],
        recognition_outcomes=journeys.build_recognition(counts, year, pathway),
        fit_panel=found["fit_panel"],
        fit_programme=found["fit_programme"],
    )


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """The month as [start, end) UTC timestamps (the outcome figures count on the UTC calendar)."""
    if not 1 <= month <= 12:
        raise ValidationFailed(
            "month must be between 1 and 12, not {month}.",
            month=month,
        )
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_activity(session: Session, *, actor: Actor, year: int, month: int) -> MonthActivity:
    """Per pathway the caseload of the month, and per partner the handoffs that moved in it."""
    require_leadership(actor)
    start, end = month_bounds(year, month)
    return MonthActivity(
        year=year,
        month=month,
        start=start.date(),
        end=(end - timedelta(days=1)).date(),
        caseload=caseload.month_caseload(session, start=start, end=end),
        handoffs=partners.handoff_flows(session, start=start, end=end),
    )


def month_figures(
    session: Session, *, actor: Actor, year: int, month: int, today: date
) -> MonthFigures:
    """All figures of the monthly outcomes report."""
    require_leadership(actor)
    period = month_bounds(year, month)
    counts = journeys.step_counts(
        session,
        year=None,
        pathway=None,
        today=today,
        keys=journeys.clock_keys(None),
        done_between=period,
    )
    milestones = list(get_args(journeys.Milestone))
    freqs = journeys.arrival_days(
        session, milestones=milestones, year=None, pathway=None, done_between=period
    )
    return MonthFigures(
        year=year,
        month=month,
        today=today,
        activity=month_activity(session, actor=actor, year=year, month=month),
        within_legal_clock=journeys.build_legal(counts, year, None, today),
        time_to={m: journeys.build_time_to(freqs[m], m, year, None) for m in milestones},
        partner_backlog=partners.partner_backlog(session, actor=actor, today=today),
        cohorts=caseload.rounded_cohorts(caseload.cohorts(session, actor=actor)),
    )
