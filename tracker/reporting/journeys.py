"""Figures of the cohort's journeys: funnel, days to a milestone, legal clocks, recognition.

The milestones are the Anmeldung (registration), the residence title and the job start; the
legal clocks are the deadlines the law sets for a step (e.g. registration within 14 days).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.enums import StepState
from tracker.errors import ValidationFailed
from tracker.models import Case, Newcomer, Step
from tracker.pathway import get_registry
from tracker.reporting.base import (
    ACTIVE_STEP_VALUES,
    Figure,
    check_pathway,
    cohort_filter,
    days_between,
    require_leadership,
    step_order,
    utc_date,
)
from tracker.reporting.suppression import (
    MIN_CELL,
    MIN_FOR_STATISTICS,
    any_hidden,
    quantile,
    share_of,
    suppress,
)

Milestone = Literal["registration", "residence_title", "job_entry"]
# Histogram bin widths in days: registration runs in weeks, job entry in months.
BIN_DAYS: dict[str, int] = {"registration": 7, "residence_title": 14, "job_entry": 30}
RECOGNITION_OUTCOMES = ("full", "partial", "none")


# --- Result models ---------------------------------------------------------------------------


class FunnelRow(BaseModel):
    step: str
    position: int
    cases: int | None  # cases whose path includes the step
    reached: int | None  # the step came up: active, done or skipped (= cases - not_reached)
    not_reached: int | None  # still pending
    active: int | None  # open, in progress or blocked
    done: int | None
    skipped: int | None
    suppressed: bool


class Funnel(Figure):
    year: int | None
    pathway: str | None
    steps: list[FunnelRow]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"year": self.year, "pathway": self.pathway or "all", **r.model_dump()}
            for r in self.steps
        ]


class HistogramBin(BaseModel):
    bin_start: int  # days, inclusive
    bin_end: int  # days, exclusive (Altair: x="bin_start", x2="bin_end", bin="binned")
    label: str
    count: int | None
    suppressed: bool


class TimeTo(Figure):
    milestone: str
    year: int | None
    pathway: str | None
    bin_days: int
    count: int | None
    p25: float | None
    median: float | None
    p75: float | None
    p90: float | None
    mean: float | None
    suppressed: bool
    histogram: list[HistogramBin]

    def summary_row(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"histogram"})
        data["pathway"] = self.pathway or "all"
        return data

    def rows(self) -> list[dict[str, Any]]:
        head = {"milestone": self.milestone, "year": self.year, "pathway": self.pathway or "all"}
        return [{**head, **b.model_dump()} for b in self.histogram]


class LegalClockRow(BaseModel):
    step: str
    legal_reference: str | None
    finished: int | None  # done, with a legal due date
    within: int | None  # done on or before the legal due date
    late: int | None
    share_within: float | None
    open: int | None  # open, in progress or blocked, with a legal due date
    open_overdue: int | None  # of those, already past it
    suppressed: bool


class LegalClock(Figure):
    year: int | None
    pathway: str | None
    today: date
    steps: list[LegalClockRow]

    def rows(self) -> list[dict[str, Any]]:
        head = {"year": self.year, "pathway": self.pathway or "all", "today": self.today}
        return [{**head, **r.model_dump()} for r in self.steps]


class RecognitionRow(BaseModel):
    outcome: str  # full, partial, none; "not_recorded" for a decision without an outcome
    count: int | None
    share: float | None  # of all recognition decisions in the cohort
    suppressed: bool


class RecognitionOutcomes(Figure):
    year: int | None
    pathway: str | None
    decided: int | None  # recognition steps done: the base of the shares
    outcomes: list[RecognitionRow]

    def rows(self) -> list[dict[str, Any]]:
        head = {"year": self.year, "pathway": self.pathway or "all", "decided": self.decided}
        return [{**head, **r.model_dump()} for r in self.outcomes]


# --- Shared scans ----------------------------------------------------------------------------
#
# Funnel, legal clocks and recognition outcomes all count the steps of one cohort, and the three
# "time to" figures all join the cohort's cases to their newcomers. ``year_figures`` runs each
# scan once for all the figures that need it, and the scans two at a time (``side_by_side``).
# (One pass for both was 13-20 % cheaper in all, but as two they share out over two cores.)


@dataclass(frozen=True)
class StepCount:
    n: int  # steps
    with_clock: int  # ... that carry a legal due date
    within: int  # ... done on or before it
    past_clock: int  # ... still active and already past it


def _step_count_columns(today: date) -> list[Any]:
    """The aggregates of a ``StepCount``: steps, with a legal clock, within it, past it."""
    has_clock = Step.legal_due.is_not(None)
    done = Step.state == StepState.done
    active = Step.state.in_(ACTIVE_STEP_VALUES)
    return [
        func.count(),
        func.sum(case((has_clock, 1), else_=0)),
        func.sum(
            case((and_(has_clock, done, utc_date(Step.done_at) <= Step.legal_due), 1), else_=0)
        ),
        # Aggregated rather than grouped: PostgreSQL does not recognise a grouped
        # expression as the selected one when it carries a bound parameter (today).
        func.sum(case((and_(has_clock, active, Step.legal_due < today), 1), else_=0)),
    ]


def _step_count(n: Any, c: Any, w: Any, p: Any) -> StepCount:
    return StepCount(n=int(n), with_clock=int(c or 0), within=int(w or 0), past_clock=int(p or 0))


def step_counts(
    session: Session,
    *,
    year: int | None,
    pathway: str | None,
    today: date,
    keys: Sequence[str] | None = None,
    done_between: tuple[datetime, datetime] | None = None,
) -> dict[tuple[str, str, str | None], StepCount]:
    """Steps of the cohort by (key, state, outcome); only the given step keys if named.

    With ``done_between`` the steps are not a cohort's but those finished in that period
    (start inclusive, end exclusive), whenever their case opened."""
    stmt = (
        select(Step.key, Step.state, Step.outcome, *_step_count_columns(today))
        .join(Case, Step.case_id == Case.id)
        .where(*cohort_filter(year, pathway))
        .group_by(Step.key, Step.state, Step.outcome)
    )
    if done_between is not None:
        stmt = stmt.where(
            Step.state == StepState.done,
            Step.done_at >= done_between[0],
            Step.done_at < done_between[1],
        )
    if keys is not None:
        stmt = stmt.where(Step.key.in_(list(keys)))
    return {
        (key, str(state), outcome): _step_count(n, c, w, p)
        for key, state, outcome, n, c, w, p in session.execute(stmt)
    }


def arrival_days(
    session: Session,
    *,
    milestones: Sequence[str],
    year: int | None,
    pathway: str | None,
    done_between: tuple[datetime, datetime] | None = None,
) -> dict[str, list[tuple[int, int]]]:
    """Per milestone, the frequency table (days from arrival to done, cases).

    With ``done_between``: the milestones reached in that period, whenever the case opened."""
    days = days_between(
        func.coalesce(Newcomer.arrival_date, utc_date(Case.opened_at)), utc_date(Step.done_at)
    )
    out: dict[str, list[tuple[int, int]]] = {m: [] for m in milestones}
    if done_between is not None:
        period = (
            select(Step.key, days, func.count())
            .join(Case, Step.case_id == Case.id)
            .join(Newcomer, Case.newcomer_id == Newcomer.id)
            .where(
                Step.key.in_(list(milestones)),
                Step.state == StepState.done,
                Step.done_at >= done_between[0],
                Step.done_at < done_between[1],
                *cohort_filter(None, pathway),
            )
            .group_by(Step.key, days)
        )
        for key, d, n in session.execute(period):
            out[key].append((int(d), int(n)))
        return {m: sorted(f) for m, f in out.items()}
    # Percentiles are not portable SQL (SQLite has none), so SQL returns how many cases took
    # each number of days, a few hundred integers at most, and the quantiles come from that.
    # The outer join keeps SQLite walking the cohort's cases and looking up their few steps,
    # rather than walking every done milestone of every year and looking up its case.
    stmt = (
        select(Step.key, days, func.count())
        .select_from(Case)
        .join(Newcomer, Case.newcomer_id == Newcomer.id)
        .outerjoin(
            Step,
            and_(
                Step.case_id == Case.id,
                Step.key.in_(list(milestones)),
                Step.state == StepState.done,
            ),
        )
        .where(*cohort_filter(year, pathway))
        .group_by(Step.key, days)
    )
    for key, d, n in session.execute(stmt):
        if key is not None and d is not None:  # key is None: cases with no milestone done
            out[key].append((int(d), int(n)))
    return {m: sorted(f) for m, f in out.items()}


def clock_keys(pathway: str | None) -> list[str]:
    """Step keys that carry a legal clock in any version of the pathway (or of any pathway)."""
    return sorted(
        {
            s.id
            for (key, _), p in get_registry().pathways.items()
            if pathway is None or key == pathway
            for s in p.steps
            if s.legal_clock
        }
    )


def _legal_references(pathway: str | None) -> dict[str, str]:
    references: dict[str, str] = {}
    for p in get_registry().latest():
        if pathway is None or p.key == pathway:
            for s in p.steps:
                if s.legal_clock:
                    references.setdefault(s.id, s.legal_clock.reference)
    return references


# --- Building the figures from the scans -----------------------------------------------------


def build_funnel(
    counts: Mapping[tuple[str, str, str | None], StepCount],
    year: int | None,
    pathway: str | None,
) -> Funnel:
    by_key: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (key, state, _), c in counts.items():
        by_key[key]["active" if state in ACTIVE_STEP_VALUES else state] += c.n
    rows = []
    for position, key in enumerate(k for k in step_order(pathway, by_key) if k in by_key):
        states = by_key[key]
        values = {
            "active": states["active"],
            "done": states["done"],
            "skipped": states["skipped"],
            "not_reached": states["pending"],
        }
        values["cases"] = sum(values.values())
        values["reached"] = values["cases"] - values["not_reached"]
        shown = suppress(
            values,
            [
                ("cases", "not_reached", "active", "done", "skipped"),
                ("cases", "reached", "not_reached"),
            ],
        )
        rows.append(FunnelRow(step=key, position=position, suppressed=any_hidden(shown), **shown))
    return Funnel(year=year, pathway=pathway, steps=rows)


def build_legal(
    counts: Mapping[tuple[str, str, str | None], StepCount],
    year: int | None,
    pathway: str | None,
    today: date,
) -> LegalClock:
    references = _legal_references(pathway)
    found: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (key, state, _), c in counts.items():
        if state == StepState.done:
            found[key]["finished"] += c.with_clock
            found[key]["within"] += c.within
        elif state in ACTIVE_STEP_VALUES:
            found[key]["open"] += c.with_clock
            found[key]["open_overdue"] += c.past_clock
    rows = []
    for key in step_order(pathway, found):
        f = found.get(key, {})
        if key not in references and not (f.get("finished") or f.get("open")):
            continue
        finished, within = f.get("finished", 0), f.get("within", 0)
        n_open, overdue = f.get("open", 0), f.get("open_overdue", 0)
        shown = suppress(
            {
                "finished": finished,
                "within": within,
                "late": finished - within,
                "open": n_open,
                "open_overdue": overdue,
                "_open_in_time": n_open - overdue,
            },
            [("finished", "within", "late"), ("open", "open_overdue", "_open_in_time")],
        )
        rows.append(
            LegalClockRow(
                step=key,
                legal_reference=references.get(key),
                share_within=share_of(shown["within"], shown["finished"]),
                suppressed=any_hidden(shown),
                **shown,
            )
        )
    return LegalClock(year=year, pathway=pathway, today=today, steps=rows)


def build_recognition(
    counts: Mapping[tuple[str, str, str | None], StepCount],
    year: int | None,
    pathway: str | None,
) -> RecognitionOutcomes:
    found: dict[str, int] = defaultdict(int)
    for (key, state, outcome), c in counts.items():
        if key == "recognition" and state == StepState.done:
            found[outcome if outcome in RECOGNITION_OUTCOMES else "not_recorded"] += c.n
    names = [*RECOGNITION_OUTCOMES, *(["not_recorded"] if found["not_recorded"] else [])]
    shown = suppress(
        {"decided": sum(found.values()), **{n: found[n] for n in names}}, [("decided", *names)]
    )
    rows = [
        RecognitionRow(
            outcome=n,
            count=shown[n],
            share=share_of(shown[n], shown["decided"]),
            suppressed=shown[n] is None,
        )
        for n in names
    ]
    return RecognitionOutcomes(year=year, pathway=pathway, decided=shown["decided"], outcomes=rows)


def build_time_to(
    freq: Sequence[tuple[int, int]], milestone: str, year: int | None, pathway: str | None
) -> TimeTo:
    width = BIN_DAYS[milestone]
    total = sum(n for _, n in freq)
    head = {"milestone": milestone, "year": year, "pathway": pathway, "bin_days": width}
    if total < MIN_CELL:
        # No histogram either: its bins would show where the few values lie.
        hidden = total > 0
        return TimeTo(
            **head,
            count=None if hidden else 0,
            p25=None,
            median=None,
            p75=None,
            p90=None,
            mean=None,
            suppressed=hidden,
            histogram=[],
        )
    lo = min(0, (freq[0][0] // width) * width)
    bins: dict[int, int] = dict.fromkeys(range(lo, freq[-1][0] + 1, width), 0)
    for value, n in freq:
        bins[(value // width) * width] += n
    names = {start: f"b{start}" for start in bins}
    shown = suppress(
        {"count": total, **{names[s]: n for s, n in bins.items()}},
        [("count", *names.values())],
    )
    # An empty bin shown as 0 beside hidden bins would tell where the few people are: once
    # any bin is hidden, empty bins are hidden too.
    any_hidden = any(shown[names[start]] is None for start in bins)
    histogram = [
        HistogramBin(
            bin_start=start,
            bin_end=start + width,
            label=f"{start}–{start + width - 1}",
            count=None if any_hidden and not bins[start] else shown[names[start]],
            suppressed=shown[names[start]] is None or (any_hidden and not bins[start]),
        )
        for start in bins
    ]
    enough = total >= MIN_FOR_STATISTICS
    return TimeTo(
        **head,
        count=total,
        p25=quantile(freq, 1, 4) if enough else None,
        median=quantile(freq, 2, 4) if enough else None,
        p75=quantile(freq, 3, 4) if enough else None,
        p90=quantile(freq, 9, 10) if enough else None,
        mean=round(sum(v * n for v, n in freq) / total, 1) if enough else None,
        suppressed=any(b.suppressed for b in histogram) or not enough,
        histogram=histogram,
    )


# --- The figures -----------------------------------------------------------------------------


def funnel(
    session: Session, *, actor: Actor, year: int | None = None, pathway: str | None = None
) -> Funnel:
    """Per step, in pathway order: cases that have it, reached it, are in it, finished, skipped."""
    require_leadership(actor)
    check_pathway(pathway)
    counts = step_counts(session, year=year, pathway=pathway, today=clocks.local_today())
    return build_funnel(counts, year, pathway)


def time_to(
    session: Session,
    *,
    actor: Actor,
    milestone: Milestone,
    year: int | None = None,
    pathway: str | None = None,
) -> TimeTo:
    """Days from arrival (or the case's opening, if no arrival is known) to the milestone's done."""
    require_leadership(actor)
    check_pathway(pathway)
    if milestone not in BIN_DAYS:
        raise ValidationFailed(
            "milestone must be one of {milestones}.",
            milestones=", ".join(BIN_DAYS),
        )
    freq = arrival_days(session, milestones=[milestone], year=year, pathway=pathway)
    return build_time_to(freq[milestone], milestone, year, pathway)


def within_legal_clock(
    session: Session,
    *,
    actor: Actor,
    year: int | None = None,
    pathway: str | None = None,
    today: date | None = None,
) -> LegalClock:
    """Per step with a legal clock: finished steps inside it, and open steps already past it."""
    require_leadership(actor)
    check_pathway(pathway)
    today = today or clocks.local_today()
    counts = step_counts(session, year=year, pathway=pathway, today=today, keys=clock_keys(pathway))
    return build_legal(counts, year, pathway, today)


def recognition_outcomes(
    session: Session, *, actor: Actor, year: int | None = None, pathway: str | None = None
) -> RecognitionOutcomes:
    """How recognition decisions came out: full, partial or no equivalence."""
    require_leadership(actor)
    check_pathway(pathway)
    counts = step_counts(
        session, year=year, pathway=pathway, today=clocks.local_today(), keys=["recognition"]
    )
    return build_recognition(counts, year, pathway)
