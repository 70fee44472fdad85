"""Leadership outcome figures: aggregates in SQL, small cells suppressed, no personal data."""

# Conventions that hold for every figure here (the dashboard and the reports may quote them):
#
# * Cohort year = the year of the case's ``opened_at``. Years and days are counted on the UTC
#   calendar, on both SQLite and PostgreSQL, because SQLite cannot convert to Europe/Berlin; the
#   office works in daytime hours, so at most a late-night entry lands on the neighbouring day.
# * Suppression: a count of 1 to 4 people is returned as ``None`` and its row flagged
#   ``suppressed=True``. 0 is shown (it reveals nobody), except inside the breakdown of a group
#   of 1 to 4. Where the parts of a row add up to a total that is shown, a single hidden part
#   could be recovered by subtraction, so the next smallest part is hidden too (secondary
#   suppression). Shares, means and percentiles are withheld whenever a count they derive from
#   is withheld (a histogram too, when its total is). Suppression works within a row; totals
#   across rows (e.g. all pathways) are not published, so nothing is subtracted across rows.
# * Percentiles are "inclusive" linear interpolation between order statistics: exactly
#   ``statistics.quantiles(values, n=4 or 10, method="inclusive")``, which is also numpy's
#   default and PostgreSQL's ``percentile_cont``.

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, Literal, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    Date,
    Integer,
    and_,
    case,
    distinct,
    extract,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from tracker import clocks
from tracker.access import Actor
from tracker.config import get_settings
from tracker.enums import (
    ACTIVE_STEP_STATES,
    JOBS_NOT_COUNTED,
    CaseStatus,
    HandoffState,
    Role,
    StepState,
)
from tracker.errors import PermissionDenied, ValidationFailed
from tracker.models import Case, Handoff, Newcomer, Organisation, Step
from tracker.pathway import get_registry

MIN_CELL = 5
FIT_FIRST_YEAR = 2023  # FIT@THGA's first cohort the tracker knows
# Percentiles and the mean of a handful of values give the values themselves away (five people:
# the quartiles are three of them, p90 and the mean the other two); they need more people.
MIN_FOR_STATISTICS = 20
Milestone = Literal["registration", "residence_title", "job_entry"]
# Histogram bin widths in days: registration runs in weeks, job entry in months.
BIN_DAYS: dict[str, int] = {"registration": 7, "residence_title": 14, "job_entry": 30}
RECOGNITION_OUTCOMES = ("full", "partial", "none")
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("age_0_7", 0, 7),
    ("age_8_14", 8, 14),
    ("age_15_30", 15, 30),
    ("age_over_30", 31, None),
)
BACKLOG_STATES = (HandoffState.offered, HandoffState.accepted)
_ACTIVE = [s.value for s in ACTIVE_STEP_STATES]


# --- SQL building blocks that differ between SQLite and PostgreSQL ---------------------------


class utc_date(FunctionElement[date]):
    """The UTC calendar date of a stored timestamp."""

    type = Date()
    inherit_cache = True
    name = "utc_date"


@compiles(utc_date)
def _utc_date_default(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


@compiles(utc_date, "sqlite")
def _utc_date_sqlite(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    # Timestamps are stored as naive UTC text on SQLite, "YYYY-MM-DD HH:MM:SS.ffffff": the date
    # is their first ten characters. (date() parses the text: 2-3x the cost of a year's figures.)
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(utc_date, "postgresql")
def _utc_date_pg(element: utc_date, compiler: SQLCompiler, **kw: Any) -> str:
    # Without AT TIME ZONE the cast would follow the session's time zone setting.
    return f"CAST(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC' AS DATE)"


class days_between(FunctionElement[int]):
    """Whole days from the first date to the second (negative when the second is earlier)."""

    type = Integer()
    inherit_cache = True
    name = "days_between"


def _two(element: days_between, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    start, end = list(element.clauses)
    return compiler.process(start, **kw), compiler.process(end, **kw)


@compiles(days_between)
def _days_default(element: days_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = _two(element, compiler, **kw)
    return f"(({end}) - ({start}))"


@compiles(days_between, "sqlite")
def _days_sqlite(element: days_between, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = _two(element, compiler, **kw)
    return f"CAST(julianday({end}) - julianday({start}) AS INTEGER)"


# --- Suppression -----------------------------------------------------------------------------


def _suppress(
    values: Mapping[str, int], equations: Iterable[Sequence[str]] = ()
) -> dict[str, int | None]:
    """Hide counts of 1-4, then hide more so that no hidden count follows from one equation.

    Each equation names a total first, then the parts that add up to it. When the total is a
    small cell its parts are hidden too, zeros included: "0 of these 3 found a job" says
    something about each of the three. Names starting with "_" are complements that are not
    returned (e.g. "not overdue"): the reader does not see them, but can work one out by
    subtraction once every other member of its equation is shown, so a complement of 1-4 also
    forces a shown member to be hidden.
    """
    hidden = {k for k, v in values.items() if 0 < v < MIN_CELL}
    eqs = [list(e) for e in equations]
    for eq in eqs:
        if eq[0] in hidden:
            hidden.update(eq)
    changed = True
    while changed:
        changed = False
        for eq in eqs:
            unknown = [k for k in eq if k in hidden or k[0] == "_"]
            if len(unknown) != 1 or unknown[0] not in hidden:
                continue
            candidates = [k for k in eq if k not in hidden and values[k] > 0 and k[0] != "_"]
            if candidates:
                hidden.add(min(candidates, key=lambda k: (values[k], k)))
                changed = True
    return {k: None if k in hidden else v for k, v in values.items() if k[0] != "_"}


ROUNDING_BASE = 5


def round_to_base(value: int) -> int | None:
    """A count rounded to the nearest multiple of 5 (halves up); 1-4 hidden like any cell."""
    if 0 < value < MIN_CELL:
        return None
    return ROUNDING_BASE * ((value + ROUNDING_BASE // 2) // ROUNDING_BASE)


def rounded_cohorts(figure: Cohorts) -> Cohorts:
    """Cohort counts rounded to 5, for snapshots published again and again (the monthly
    report): two exact snapshots a month apart would tell by subtraction what changed."""
    rows = []
    for r in figure.cohorts:
        values = {k: getattr(r, k) for k in ("opened", "open", "closed", "cancelled")}
        shown = {k: None if v is None else round_to_base(v) for k, v in values.items()}
        rows.append(r.model_copy(update={**shown, "suppressed": _any_hidden(shown)}))
    return Cohorts(cohorts=rows)


def _share(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole:
        return None
    return round(part / whole, 4)


def _any_hidden(values: Mapping[str, int | None]) -> bool:
    return any(v is None for v in values.values())


# --- Distributions from frequency tables ------------------------------------------------------


def _order_stat(freq: Sequence[tuple[int, int]], index: int) -> int:
    """The value at position ``index`` (0-based) of the sorted data a frequency table describes."""
    seen = 0
    for value, n in freq:
        seen += n
        if index < seen:
            return value
    raise IndexError(index)


def quantile(freq: Sequence[tuple[int, int]], i: int, n: int) -> float:
    """The i-th of the n-quantiles, as ``statistics.quantiles(method="inclusive")`` computes it.

    ``freq`` is (value, count) sorted by value. Integer arithmetic as in the standard library,
    so the result is identical to it, not merely close.
    """
    total = sum(c for _, c in freq)
    m = total - 1
    j = i * m // n
    delta = i * m - j * n
    lo = _order_stat(freq, j)
    hi = _order_stat(freq, j + 1) if delta else lo
    return (lo * (n - delta) + hi * delta) / n


# --- Result models ---------------------------------------------------------------------------


class _Figure(BaseModel):
    model_config = ConfigDict(frozen=True)

    def rows(self) -> list[dict[str, Any]]:  # pragma: no cover - every figure overrides it
        raise NotImplementedError


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


class Funnel(_Figure):
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


class TimeTo(_Figure):
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


class LegalClock(_Figure):
    year: int | None
    pathway: str | None
    today: date
    steps: list[LegalClockRow]

    def rows(self) -> list[dict[str, Any]]:
        head = {"year": self.year, "pathway": self.pathway or "all", "today": self.today}
        return [{**head, **r.model_dump()} for r in self.steps]


class PartnerBacklogRow(BaseModel):
    organisation: str
    organisation_name: str
    offered: int | None
    accepted: int | None
    total: int | None
    age_median_days: float | None  # days since the handoff was offered (from 20 handoffs)
    age_0_7: int | None
    age_8_14: int | None
    age_15_30: int | None
    age_over_30: int | None
    overdue: int | None  # the step's due date has passed
    suppressed: bool


class PartnerBacklog(_Figure):
    today: date
    partners: list[PartnerBacklogRow]

    def rows(self) -> list[dict[str, Any]]:
        return [{"today": self.today, **r.model_dump()} for r in self.partners]


class CohortRow(BaseModel):
    year: int
    pathway: str
    opened: int | None
    open: int | None
    closed: int | None
    cancelled: int | None
    median_days_to_close: float | None
    suppressed: bool


class Cohorts(_Figure):
    cohorts: list[CohortRow]

    def rows(self) -> list[dict[str, Any]]:
        return [r.model_dump() for r in self.cohorts]


class RecognitionRow(BaseModel):
    outcome: str  # full, partial, none; "not_recorded" for a decision without an outcome
    count: int | None
    share: float | None  # of all recognition decisions in the cohort
    suppressed: bool


class RecognitionOutcomes(_Figure):
    year: int | None
    pathway: str | None
    decided: int | None  # recognition steps done: the base of the shares
    outcomes: list[RecognitionRow]

    def rows(self) -> list[dict[str, Any]]:
        head = {"year": self.year, "pathway": self.pathway or "all", "decided": self.decided}
        return [{**head, **r.model_dump()} for r in self.outcomes]


class FitPanel(_Figure):
    """FIT@THGA for one enrolment year. Grows by fields (and rows) as offers and attendance come.

    "followed_12m" are the participants enrolled at least 12 months before ``today``: only for
    them is "employed within 12 months" already decided, so it is the base of that share.
    """

    year: int
    today: date
    participants: int | None
    followed_12m: int | None
    employed_12m: int | None
    share_employed_12m: float | None
    followed_18m: int | None
    employed_18m: int | None
    share_employed_18m: float | None
    employed_so_far: int | None
    case_open: int | None
    case_closed: int | None
    case_cancelled: int | None
    suppressed: bool

    # indicator -> (outcome area of the FIT programme line, base indicator of its share)
    INDICATORS: ClassVar[tuple[tuple[str, str, str | None, str | None], ...]] = (
        ("participants", "access", None, None),
        ("followed_12m", "employability", "participants", None),
        ("employed_12m", "employability", "followed_12m", "share_employed_12m"),
        ("followed_18m", "employability", "participants", None),
        ("employed_18m", "employability", "followed_18m", "share_employed_18m"),
        ("employed_so_far", "employability", "participants", None),
        ("case_open", "staying", "participants", None),
        ("case_closed", "staying", "participants", None),
        ("case_cancelled", "staying", "participants", None),
    )

    def rows(self) -> list[dict[str, Any]]:
        data = self.model_dump()
        out = []
        for name, area, base, share_field in self.INDICATORS:
            count = data[name]
            if share_field:
                share = data[share_field]
            else:
                share = _share(count, data[base]) if base else None
            out.append(
                {
                    "year": self.year,
                    "area": area,
                    "indicator": name,
                    "count": count,
                    "base": base,
                    "share": share,
                    "suppressed": count is None,
                }
            )
        return out


class Overview(_Figure):
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


# --- Shared query helpers --------------------------------------------------------------------


def _require_leadership(actor: Actor) -> None:
    # Scope below the screen: a partner or a case manager gets no outcome figures at all.
    if actor.role not in (Role.leadership, Role.admin):
        raise PermissionDenied("Outcome figures are for leadership and administrators only.")


def _year_bounds(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def _cohort(year: int | None, pathway: str | None) -> list[ColumnElement[bool]]:
    """Conditions on ``Case`` for the cohort filters."""
    conds: list[ColumnElement[bool]] = []
    if year is not None:
        start, end = _year_bounds(year)
        # Naming every status lets SQLite range-scan ix_cases_status_opened (status, opened_at).
        conds += [
            Case.status.in_([s.value for s in CaseStatus]),
            Case.opened_at >= start,
            Case.opened_at < end,
        ]
    if pathway is not None:
        conds.append(Case.pathway_key == pathway)
    return conds


def _check_pathway(pathway: str | None) -> None:
    if pathway is not None and pathway not in {k for k, _ in get_registry().pathways}:
        raise ValidationFailed(f"No pathway called {pathway!r}.")


def _step_order(pathway: str | None, found: Iterable[str] = ()) -> list[str]:
    """Step keys in pathway order; without a pathway, in the catalogue's (reference) order.

    Keys only an older pathway version or a retired catalogue entry knows come last."""
    registry = get_registry()
    order = registry.get(pathway).step_ids if pathway else []
    order += [k for k in registry.catalogue if k not in order]
    return order + sorted(set(found) - set(order))


# --- Shared scans ----------------------------------------------------------------------------
#
# Funnel, legal clocks and recognition outcomes all count the steps of one cohort, and the three
# "time to" figures all join the cohort's cases to their newcomers. ``year_figures`` runs each
# scan once for all the figures that need it, and the scans two at a time (``side_by_side``).
# (One pass for both was 13-20 % cheaper in all, but as two they share out over two cores.)


@dataclass(frozen=True)
class _StepCount:
    n: int  # steps
    with_clock: int  # ... that carry a legal due date
    within: int  # ... done on or before it
    past_clock: int  # ... still active and already past it


def _step_count_columns(today: date) -> list[Any]:
    """The aggregates of a ``_StepCount``: steps, with a legal clock, within it, past it."""
    has_clock = Step.legal_due.is_not(None)
    done = Step.state == StepState.done
    active = Step.state.in_(_ACTIVE)
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


def _step_count(n: Any, c: Any, w: Any, p: Any) -> _StepCount:
    return _StepCount(n=int(n), with_clock=int(c or 0), within=int(w or 0), past_clock=int(p or 0))


def _step_counts(
    session: Session,
    *,
    year: int | None,
    pathway: str | None,
    today: date,
    keys: Sequence[str] | None = None,
    done_between: tuple[datetime, datetime] | None = None,
) -> dict[tuple[str, str, str | None], _StepCount]:
    """Steps of the cohort by (key, state, outcome); only the given step keys if named.

    With ``done_between`` the steps are not a cohort's but those finished in that period
    (start inclusive, end exclusive), whenever their case opened."""
    stmt = (
        select(Step.key, Step.state, Step.outcome, *_step_count_columns(today))
        .join(Case, Step.case_id == Case.id)
        .where(*_cohort(year, pathway))
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


def _arrival_days(
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
                *_cohort(None, pathway),
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
        .where(*_cohort(year, pathway))
        .group_by(Step.key, days)
    )
    for key, d, n in session.execute(stmt):
        if key is not None and d is not None:  # key is None: cases with no milestone done
            out[key].append((int(d), int(n)))
    return {m: sorted(f) for m, f in out.items()}


def _clock_keys(pathway: str | None) -> list[str]:
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


def _build_funnel(
    counts: Mapping[tuple[str, str, str | None], _StepCount],
    year: int | None,
    pathway: str | None,
) -> Funnel:
    by_key: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (key, state, _), c in counts.items():
        by_key[key]["active" if state in _ACTIVE else state] += c.n
    rows = []
    for position, key in enumerate(k for k in _step_order(pathway, by_key) if k in by_key):
        states = by_key[key]
        values = {
            "active": states["active"],
            "done": states["done"],
            "skipped": states["skipped"],
            "not_reached": states["pending"],
        }
        values["cases"] = sum(values.values())
        values["reached"] = values["cases"] - values["not_reached"]
        shown = _suppress(
            values,
            [
                ("cases", "not_reached", "active", "done", "skipped"),
                ("cases", "reached", "not_reached"),
            ],
        )
        rows.append(FunnelRow(step=key, position=position, suppressed=_any_hidden(shown), **shown))
    return Funnel(year=year, pathway=pathway, steps=rows)


def _build_legal(
    counts: Mapping[tuple[str, str, str | None], _StepCount],
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
        elif state in _ACTIVE:
            found[key]["open"] += c.with_clock
            found[key]["open_overdue"] += c.past_clock
    rows = []
    for key in _step_order(pathway, found):
        f = found.get(key, {})
        if key not in references and not (f.get("finished") or f.get("open")):
            continue
        finished, within = f.get("finished", 0), f.get("within", 0)
        n_open, overdue = f.get("open", 0), f.get("open_overdue", 0)
        shown = _suppress(
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
                share_within=_share(shown["within"], shown["finished"]),
                suppressed=_any_hidden(shown),
                **shown,
            )
        )
    return LegalClock(year=year, pathway=pathway, today=today, steps=rows)


def _build_recognition(
    counts: Mapping[tuple[str, str, str | None], _StepCount],
    year: int | None,
    pathway: str | None,
) -> RecognitionOutcomes:
    found: dict[str, int] = defaultdict(int)
    for (key, state, outcome), c in counts.items():
        if key == "recognition" and state == StepState.done:
            found[outcome if outcome in RECOGNITION_OUTCOMES else "not_recorded"] += c.n
    names = [*RECOGNITION_OUTCOMES, *(["not_recorded"] if found["not_recorded"] else [])]
    shown = _suppress(
        {"decided": sum(found.values()), **{n: found[n] for n in names}}, [("decided", *names)]
    )
    rows = [
        RecognitionRow(
            outcome=n,
            count=shown[n],
            share=_share(shown[n], shown["decided"]),
            suppressed=shown[n] is None,
        )
        for n in names
    ]
    return RecognitionOutcomes(year=year, pathway=pathway, decided=shown["decided"], outcomes=rows)


def _build_time_to(
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
    shown = _suppress(
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
    _require_leadership(actor)
    _check_pathway(pathway)
    counts = _step_counts(session, year=year, pathway=pathway, today=clocks.local_today())
    return _build_funnel(counts, year, pathway)


def time_to(
    session: Session,
    *,
    actor: Actor,
    milestone: Milestone,
    year: int | None = None,
    pathway: str | None = None,
) -> TimeTo:
    """Days from arrival (or the case's opening, if no arrival is known) to the milestone's done."""
    _require_leadership(actor)
    _check_pathway(pathway)
    if milestone not in BIN_DAYS:
        raise ValidationFailed(f"milestone must be one of {', '.join(BIN_DAYS)}.")
    freq = _arrival_days(session, milestones=[milestone], year=year, pathway=pathway)
    return _build_time_to(freq[milestone], milestone, year, pathway)


def within_legal_clock(
    session: Session,
    *,
    actor: Actor,
    year: int | None = None,
    pathway: str | None = None,
    today: date | None = None,
) -> LegalClock:
    """Per step with a legal clock: finished steps inside it, and open steps already past it."""
    _require_leadership(actor)
    _check_pathway(pathway)
    today = today or clocks.local_today()
    counts = _step_counts(
        session, year=year, pathway=pathway, today=today, keys=_clock_keys(pathway)
    )
    return _build_legal(counts, year, pathway, today)


def recognition_outcomes(
    session: Session, *, actor: Actor, year: int | None = None, pathway: str | None = None
) -> RecognitionOutcomes:
    """How recognition decisions came out: full, partial or no equivalence."""
    _require_leadership(actor)
    _check_pathway(pathway)
    counts = _step_counts(
        session, year=year, pathway=pathway, today=clocks.local_today(), keys=["recognition"]
    )
    return _build_recognition(counts, year, pathway)


def cohorts(session: Session, *, actor: Actor) -> Cohorts:
    """Per year of opening and pathway: opened, still open, closed, cancelled; days to close."""
    _require_leadership(actor)
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
        shown = _suppress(values, [("opened", *(s.value for s in CaseStatus))])
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
                suppressed=_any_hidden(shown),
            )
        )
    return Cohorts(cohorts=rows)


def partner_backlog(session: Session, *, actor: Actor, today: date) -> PartnerBacklog:
    """Per partner with a queue: handoffs offered and accepted now, their age, and overdue ones."""
    _require_leadership(actor)
    orgs = session.execute(
        select(Organisation.id, Organisation.key, Organisation.name, Organisation.active)
        .where(Organisation.receives_handoffs.is_(True))
        .order_by(Organisation.key)
    ).all()
    offered_on = utc_date(func.coalesce(Handoff.offered_at, Handoff.created_at))
    stmt = (
        select(
            Handoff.organisation_id,
            Handoff.state,
            offered_on,
            func.count(),
            # Aggregated, not grouped: PostgreSQL would not match a grouped expression whose
            # bound parameter appears twice.
            func.sum(case((Handoff.step_due_date < today, 1), else_=0)),
        )
        .where(
            # Naming the organisations lets ix_handoffs_org_state_due seek, not scan; the step's
            # due date is copied onto the handoff, so no step is read.
            Handoff.organisation_id.in_([o.id for o in orgs]),
            Handoff.state.in_([s.value for s in BACKLOG_STATES]),
        )
        .group_by(Handoff.organisation_id, Handoff.state, offered_on)
    )
    by_org: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"offered": 0, "accepted": 0, "overdue": 0, "ages": defaultdict(int)}
    )
    for org_id, state, day, n, overdue in session.execute(stmt):
        entry = by_org[org_id]
        entry[str(state)] += int(n)
        entry["overdue"] += int(overdue or 0)
        entry["ages"][(today - day).days] += int(n)
    rows = []
    for org_id, key, name, is_active in orgs:
        if not is_active and org_id not in by_org:
            continue
        entry = by_org[org_id]
        ages = sorted(entry["ages"].items())
        total = entry["offered"] + entry["accepted"]
        values = {
            "offered": entry["offered"],
            "accepted": entry["accepted"],
            "total": total,
            "overdue": entry["overdue"],
            "_not_overdue": total - entry["overdue"],
        }
        for field, low, high in AGE_BUCKETS:
            values[field] = sum(n for a, n in ages if a >= low and (high is None or a <= high))
        shown = _suppress(
            values,
            [
                ("total", "offered", "accepted"),
                ("total", "overdue", "_not_overdue"),
                ("total", *(b[0] for b in AGE_BUCKETS)),
            ],
        )
        visible = shown["total"] is not None and total > 0
        rows.append(
            PartnerBacklogRow(
                organisation=key,
                organisation_name=name,
                age_median_days=(
                    quantile(ages, 2, 4) if visible and total >= MIN_FOR_STATISTICS else None
                ),
                suppressed=_any_hidden(shown),
                **shown,
            )
        )
    return PartnerBacklog(today=today, partners=rows)


def _month_index(day: ColumnElement[date]) -> ColumnElement[Any]:
    return extract("year", day) * 12 + extract("month", day)


def _within_months(start: ColumnElement[date], end: ColumnElement[date], months: int) -> Any:
    """SQL: end <= clocks.add_months(start, months), the month's last day standing in for a
    missing day (Aug 31 + 6 months = Feb 28/29), on both backends without date arithmetic."""
    return or_(
        _month_index(end) < _month_index(start) + months,
        and_(
            _month_index(end) == _month_index(start) + months,
            extract("day", end) <= extract("day", start),
        ),
    )


def _latest_start(today: date, months: int) -> date:
    """The last day from which ``months`` months have fully passed by ``today``."""
    day = clocks.add_months(today, -months)
    while clocks.add_months(day + timedelta(days=1), months) <= today:
        day += timedelta(days=1)
    return day


def fit_panel(session: Session, *, actor: Actor, year: int, today: date | None = None) -> FitPanel:
    """FIT@THGA participants of one year (enrolment done that year) and what became of them."""
    _require_leadership(actor)
    today = today or clocks.local_today()
    start, end = _year_bounds(year)
    job = Step.__table__.alias("job")
    fit_day = utc_date(Step.done_at)
    job_day = utc_date(job.c.done_at)
    employed = job.c.state == StepState.done.value

    def count_if(*conds: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conds), 1), else_=0)), 0)

    followed_12 = fit_day <= _latest_start(today, 12)
    followed_18 = fit_day <= _latest_start(today, 18)
    stmt = (
        select(
            func.count(),
            count_if(followed_12),
            count_if(followed_12, employed, _within_months(fit_day, job_day, 12)),
            count_if(followed_18),
            count_if(followed_18, employed, _within_months(fit_day, job_day, 18)),
            count_if(employed),
            count_if(Case.status == CaseStatus.open),
            count_if(Case.status == CaseStatus.closed),
            count_if(Case.status == CaseStatus.cancelled),
        )
        .select_from(Step)
        .join(Case, Step.case_id == Case.id)
        .outerjoin(job, and_(job.c.case_id == Step.case_id, job.c.key == "job_entry"))
        .where(
            Step.key == "fit_enrollment",
            Step.state == StepState.done,
            Step.done_at >= start,
            Step.done_at < end,
        )
    )
    row = [int(x) for x in session.execute(stmt).one()]
    values = dict(
        zip(
            (
                "participants",
                "followed_12m",
                "employed_12m",
                "followed_18m",
                "employed_18m",
                "employed_so_far",
                "case_open",
                "case_closed",
                "case_cancelled",
            ),
            row,
            strict=True,
        )
    )
    values["_not_employed_12m"] = values["followed_12m"] - values["employed_12m"]
    values["_not_employed_18m"] = values["followed_18m"] - values["employed_18m"]
    values["_not_employed"] = values["participants"] - values["employed_so_far"]
    values["_not_followed_12m"] = values["participants"] - values["followed_12m"]
    values["_not_followed_18m"] = values["participants"] - values["followed_18m"]
    equations = [
        ("participants", "case_open", "case_closed", "case_cancelled"),
        ("participants", "followed_12m", "_not_followed_12m"),
        ("participants", "followed_18m", "_not_followed_18m"),
        ("participants", "employed_so_far", "_not_employed"),
        ("followed_12m", "employed_12m", "_not_employed_12m"),
        ("followed_18m", "employed_18m", "_not_employed_18m"),
    ]
    if values["followed_12m"] == values["followed_18m"]:
        # Followed alike, the two differ by those who found work in months 13 to 18.
        values["_employed_13_18m"] = values["employed_18m"] - values["employed_12m"]
        equations.append(("employed_18m", "employed_12m", "_employed_13_18m"))
    shown = _suppress(values, equations)
    return FitPanel(
        year=year,
        today=today,
        share_employed_12m=_share(shown["employed_12m"], shown["followed_12m"]),
        share_employed_18m=_share(shown["employed_18m"], shown["followed_18m"]),
        suppressed=_any_hidden(shown),
        **shown,
    )


def overview(session: Session, *, actor: Actor, today: date) -> Overview:
    """The headline numbers for the top of the leadership page."""
    _require_leadership(actor)
    soon = today + timedelta(days=get_settings().due_soon_days)
    start, end = _year_bounds(today.year)
    active = Step.state.in_(_ACTIVE)
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
        select(func.count(distinct(Case.newcomer_id))).where(*_cohort(today.year, None))
    )
    shown = _suppress(
        {
            "open_cases": int(open_cases or 0),
            "cases_overdue": int(cases_overdue or 0),
            "overdue_steps": int(overdue_steps),
            "due_soon_steps": int(due_soon_steps),
            "closed_this_year": int(closed or 0),
            "newcomers_this_year": int(newcomers or 0),
        }
    )
    return Overview(today=today, suppressed=_any_hidden(shown), **shown)


class YearFigures(BaseModel):
    """Every figure of the leadership page for one year, as the dashboard and reports use it."""

    year: int
    pathway: str | None
    today: date
    overview: Overview
    funnel: Funnel
    time_to: dict[str, TimeTo]  # by milestone
    within_legal_clock: LegalClock
    partner_backlog: PartnerBacklog
    cohorts: Cohorts
    recognition_outcomes: RecognitionOutcomes
    fit_panel: FitPanel
    fit_programme: FitProgramme


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
    _require_leadership(actor)
    _check_pathway(pathway)
    milestones = list(get_args(Milestone))
    found = side_by_side(
        session,
        {  # the longest first
            "counts": lambda s: _step_counts(s, year=year, pathway=pathway, today=today),
            "days": lambda s: _arrival_days(s, milestones=milestones, year=year, pathway=pathway),
            "cohorts": lambda s: cohorts(s, actor=actor),
            "partner_backlog": lambda s: partner_backlog(s, actor=actor, today=today),
            "fit_panel": lambda s: fit_panel(s, actor=actor, year=year, today=today),
            "overview": lambda s: overview(s, actor=actor, today=today),
            "fit_programme": lambda s: fit_programme(s, actor=actor, year=year),
        },
    )
    counts, freqs = found["counts"], found["days"]
    return YearFigures(
        year=year,
        pathway=pathway,
        today=today,
        overview=found["overview"],
        funnel=_build_funnel(counts, year, pathway),
        time_to={m: _build_time_to(freqs[m], m, year, pathway) for m in milestones},
        within_legal_clock=_build_legal(counts, year, pathway, today),
        partner_backlog=found["partner_backlog"],
        cohorts=found["cohorts"],
        recognition_outcomes=_build_recognition(counts, year, pathway),
        fit_panel=found["fit_panel"],
        fit_programme=found["fit_programme"],
    )


# --- One month, and the FIT@THGA year: what the reports add ------------------------------------


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


class HandoffFlowRow(BaseModel):
    """What moved through one partner's queue in a period."""

    organisation: str
    organisation_name: str
    offered: int | None
    completed: int | None
    declined: int | None
    returned: int | None
    suppressed: bool


class MonthActivity(_Figure):
    year: int
    month: int
    start: date  # first day of the month
    end: date  # last day of the month
    caseload: list[CaseloadRow]
    handoffs: list[HandoffFlowRow]

    def rows(self) -> list[dict[str, Any]]:
        head = {"year": self.year, "month": self.month}
        return [{**head, **r.model_dump()} for r in self.caseload] + [
            {**head, **r.model_dump()} for r in self.handoffs
        ]


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """The month as [start, end) UTC timestamps (the outcome figures count on the UTC calendar)."""
    if not 1 <= month <= 12:
        raise ValidationFailed(f"month must be between 1 and 12, not {month}.")
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_activity(session: Session, *, actor: Actor, year: int, month: int) -> MonthActivity:
    """Per pathway the caseload of the month, and per partner the handoffs that moved in it."""
    _require_leadership(actor)
    start, end = month_bounds(year, month)

    def count_if(*conds: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*conds), 1), else_=0)), 0)

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
    for key in _pathway_order(found):
        carried, opened, closed, cancelled = found.get(key, [0, 0, 0, 0])
        flows = _suppress({"opened": opened, "closed": closed, "cancelled": cancelled})
        stocks = {
            "active": round_to_base(carried + opened),
            "open_at_end": round_to_base(carried + opened - closed - cancelled),
        }
        caseload.append(
            CaseloadRow(
                pathway=key,
                suppressed=_any_hidden(flows) or _any_hidden(stocks),
                **flows,
                **stocks,
            )
        )

    closed_in = and_(Handoff.closed_at >= start, Handoff.closed_at < end)
    flow = (
        select(
            Handoff.organisation_id,
            count_if(Handoff.offered_at >= start, Handoff.offered_at < end),
            count_if(closed_in, Handoff.state == HandoffState.completed),
            count_if(closed_in, Handoff.state == HandoffState.declined),
            count_if(closed_in, Handoff.state == HandoffState.returned),
        )
        .where(
            or_(
                and_(Handoff.offered_at >= start, Handoff.offered_at < end),
                closed_in,
            )
        )
        .group_by(Handoff.organisation_id)
    )
    moved = {org: [int(x) for x in rest] for org, *rest in session.execute(flow)}
    orgs = session.execute(
        select(Organisation.id, Organisation.key, Organisation.name, Organisation.active)
        .where(Organisation.receives_handoffs.is_(True))
        .order_by(Organisation.key)
    ).all()
    handoffs = []
    for org_id, key, name, is_active in orgs:
        if not is_active and org_id not in moved:
            continue
        offered, completed, declined, returned = moved.get(org_id, [0, 0, 0, 0])
        shown = _suppress(
            {"offered": offered, "completed": completed, "declined": declined, "returned": returned}
        )
        handoffs.append(
            HandoffFlowRow(
                organisation=key,
                organisation_name=name,
                suppressed=_any_hidden(shown),
                **shown,
            )
        )
    last_day = (end - timedelta(days=1)).date()
    return MonthActivity(
        year=year,
        month=month,
        start=start.date(),
        end=last_day,
        caseload=caseload,
        handoffs=handoffs,
    )


def _pathway_order(found: Iterable[str]) -> list[str]:
    """Pathway keys in the registry's order, then any only old cases know."""
    known = sorted({k for k, _ in get_registry().pathways})
    return known + sorted(set(found) - set(known))


class MonthFigures(BaseModel):
    """Everything the monthly outcomes report shows for one month."""

    year: int
    month: int
    today: date  # when the figures were read: the backlog is a snapshot of that day
    activity: MonthActivity
    within_legal_clock: LegalClock  # steps finished in the month (open steps not counted)
    time_to: dict[str, TimeTo]  # milestones reached in the month, days from arrival
    partner_backlog: PartnerBacklog
    cohorts: Cohorts  # rounded to 5: see rounded_cohorts


def month_figures(
    session: Session, *, actor: Actor, year: int, month: int, today: date
) -> MonthFigures:
    """All figures of the monthly outcomes report."""
    _require_leadership(actor)
    period = month_bounds(year, month)
    counts = _step_counts(
        session, year=None, pathway=None, today=today, keys=_clock_keys(None), done_between=period
    )
    milestones = list(get_args(Milestone))
    freqs = _arrival_days(
        session, milestones=milestones, year=None, pathway=None, done_between=period
    )
    return MonthFigures(
        year=year,
        month=month,
        today=today,
        activity=month_activity(session, actor=actor, year=year, month=month),
        within_legal_clock=_build_legal(counts, year, None, today),
        time_to={m: _build_time_to(freqs[m], m, year, None) for m in milestones},
        partner_backlog=partner_backlog(session, actor=actor, today=today),
        cohorts=rounded_cohorts(cohorts(session, actor=actor)),
    )


class QuarterRow(BaseModel):
    quarter: int
    participants: int | None
    suppressed: bool


class FitYearFigures(BaseModel):
    """Everything the yearly FIT@THGA programme report shows."""

    year: int
    today: date
    panel: FitPanel
    quarters: list[QuarterRow]  # enrolments per quarter of the year
    # Days from FIT enrolment to job entry, for every participant with a job (a job begun
    # before the enrolment counts as 0 days, so the count is the panel's employed_so_far).
    enrolment_to_job: TimeTo
    # The two years before: only for them can "in work within 12 / 18 months" be decided
    # when the report comes out early in the following year.
    follow_up: list[FitPanel]
    programme: FitProgramme  # offers, attendance, contacts, jobs, outcomes of the year


def fit_year_figures(session: Session, *, actor: Actor, year: int, today: date) -> FitYearFigures:
    """The FIT@THGA programme's year: the panel, enrolments by quarter, time to a job."""
    _require_leadership(actor)
    start, end = _year_bounds(year)
    fit_day = utc_date(Step.done_at)
    enrolled = and_(
        Step.key == "fit_enrollment",
        Step.state == StepState.done,
        Step.done_at >= start,
        Step.done_at < end,
    )
    by_month = session.execute(
        select(extract("month", fit_day), func.count())
        .where(enrolled)
        .group_by(extract("month", fit_day))
    ).all()
    per_quarter = {q: 0 for q in range(1, 5)}
    for m, n in by_month:
        per_quarter[(int(m) - 1) // 3 + 1] += int(n)
    names = {q: f"q{q}" for q in per_quarter}
    values = {names[q]: n for q, n in per_quarter.items()}
    shown = _suppress(
        {"participants": sum(per_quarter.values()), **values},
        [("participants", *names.values())],
    )
    quarters = [
        QuarterRow(quarter=q, participants=shown[names[q]], suppressed=shown[names[q]] is None)
        for q in per_quarter
    ]
    job = Step.__table__.alias("job")
    days = days_between(fit_day, utc_date(job.c.done_at))
    found = session.execute(
        select(days, func.count())
        .select_from(Step)
        .join(job, and_(job.c.case_id == Step.case_id, job.c.key == "job_entry"))
        .where(enrolled, job.c.state == StepState.done.value)
        .group_by(days)
    ).all()
    freq: dict[int, int] = defaultdict(int)
    for d, n in found:
        freq[max(int(d), 0)] += int(n)  # a job begun before the enrolment: 0 days
    return FitYearFigures(
        year=year,
        today=today,
        panel=fit_panel(session, actor=actor, year=year, today=today),
        quarters=quarters,
        enrolment_to_job=_build_time_to(sorted(freq.items()), "job_entry", year, "student"),
        follow_up=[
            fit_panel(session, actor=actor, year=y, today=today)
            for y in (year - 1, year - 2)
            if y >= FIT_FIRST_YEAR
        ],
        programme=fit_programme(session, actor=actor, year=year),
    )


class OfferKindRow(BaseModel):
    """Offers of one kind that took place in the year, and who came."""

    kind: str
    offers_held: int  # offers, not people: never suppressed
    places: int  # places offered at the held offers
    attended: int | None  # attendances (a person at two offers counts twice)
    no_show: int | None
    suppressed: bool


class FitProgramme(_Figure):
    """What the programme did in a year: offers and attendance, contacts, jobs, outcomes.

    People counts of 1-4 are hidden like everywhere; counts of offers are not about people."""

    year: int
    offers: list[OfferKindRow]
    participants_reached: int | None  # distinct participants who attended at least one offer
    company_contacts: int | None  # contacts recorded in the year
    companies: int | None  # distinct companies among them (not people: shown)
    working_student_jobs: int | None  # jobs while studying that began in the year
    placements: int | None  # ... of them found through a placement offer
    graduated: int | None
    dropped_out: int | None
    withdrawn: int | None
    job_entries: int | None  # participants who started a job in the year
    job_entries_in_region: int | None  # ... in Bochum / the Ruhr
    suppressed: bool

    def rows(self) -> list[dict[str, Any]]:
        head = {"year": self.year}
        out = [{**head, "section": "offers", **r.model_dump()} for r in self.offers]
        for name in (
            "participants_reached",
            "company_contacts",
            "companies",
            "working_student_jobs",
            "placements",
            "graduated",
            "dropped_out",
            "withdrawn",
            "job_entries",
            "job_entries_in_region",
        ):
            value = getattr(self, name)
            out.append(
                {
                    **head,
                    "section": "programme",
                    "indicator": name,
                    "count": value,
                    "suppressed": value is None,
                }
            )
        return out


def fit_programme(session: Session, *, actor: Actor, year: int) -> FitProgramme:
    """The FIT@THGA programme's activity in one calendar year (Europe/Berlin dates)."""
    from tracker.enums import OfferKind, OfferStatus, RegistrationStatus
    from tracker.models import FitContact, FitJob, FitOffer, FitParticipant, FitRegistration

    _require_leadership(actor)
    # Offers happen at a time of day: the year is Bochum's (00:30 on 1 January belongs to it).
    zone = ZoneInfo(get_settings().timezone)
    start, end = datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)
    first, last = date(year, 1, 1), date(year, 12, 31)
    held = and_(
        FitOffer.status == OfferStatus.held, FitOffer.starts_at >= start, FitOffer.starts_at < end
    )
    per_kind: dict[str, dict[str, int]] = {
        k.value: {"offers_held": 0, "places": 0, "attended": 0, "no_show": 0} for k in OfferKind
    }
    for kind, n, places in session.execute(
        select(FitOffer.kind, func.count(), func.coalesce(func.sum(FitOffer.capacity), 0))
        .where(held)
        .group_by(FitOffer.kind)
    ):
        per_kind[str(kind)]["offers_held"] = int(n)
        per_kind[str(kind)]["places"] = int(places)
    for kind, status, n in session.execute(
        select(FitOffer.kind, FitRegistration.status, func.count())
        .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
        .where(
            held,
            FitRegistration.status.in_(
                [RegistrationStatus.attended.value, RegistrationStatus.no_show.value]
            ),
        )
        .group_by(FitOffer.kind, FitRegistration.status)
    ):
        per_kind[str(kind)][str(status)] = int(n)
    offers = []
    for kind_key, c in per_kind.items():
        shown = _suppress({"attended": c["attended"], "no_show": c["no_show"]})
        offers.append(
            OfferKindRow(
                kind=kind_key,
                offers_held=c["offers_held"],
                places=c["places"],
                suppressed=_any_hidden(shown),
                **shown,
            )
        )
    reached = session.scalar(
        select(func.count(distinct(FitRegistration.participant_id)))
        .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
        .where(held, FitRegistration.status == RegistrationStatus.attended)
    )
    contacts, companies = session.execute(
        select(func.count(), func.count(distinct(func.lower(FitContact.company)))).where(
            FitContact.contact_on >= first, FitContact.contact_on <= last
        )
    ).one()
    jobs, placements = session.execute(
        select(func.count(), func.count(FitJob.offer_id)).where(
            FitJob.starts_on >= first,
            FitJob.starts_on <= last,
            # Jobs while studying that count against the day limit: working-student jobs,
            # voluntary internships, other jobs (the same kinds the staff page counts).
            FitJob.kind.not_in([k.value for k in JOBS_NOT_COUNTED]),
        )
    ).one()

    def people(*conds: Any) -> int:
        return int(
            session.scalar(select(func.count()).select_from(FitParticipant).where(*conds)) or 0
        )

    in_year = lambda col: and_(col >= first, col <= last)  # noqa: E731
    values = {
        "participants_reached": int(reached or 0),
        "company_contacts": int(contacts or 0),
        "working_student_jobs": int(jobs or 0),
        "placements": int(placements or 0),
        "graduated": people(
            FitParticipant.status == "graduated", in_year(FitParticipant.graduated_on)
        ),
        "dropped_out": people(
            FitParticipant.status == "dropped_out", in_year(FitParticipant.left_on)
        ),
        "withdrawn": people(FitParticipant.status == "withdrawn", in_year(FitParticipant.left_on)),
        "job_entries": people(in_year(FitParticipant.job_started_on)),
        "job_entries_in_region": people(
            in_year(FitParticipant.job_started_on), FitParticipant.job_in_region.is_(True)
        ),
    }
    values["_jobs_elsewhere"] = values["job_entries"] - values["job_entries_in_region"]
    values["_jobs_not_placed"] = values["working_student_jobs"] - values["placements"]
    shown = _suppress(
        values,
        [
            ("job_entries", "job_entries_in_region", "_jobs_elsewhere"),
            ("working_student_jobs", "placements", "_jobs_not_placed"),
        ],
    )
    return FitProgramme(
        year=year,
        offers=offers,
        companies=int(companies or 0),
        suppressed=_any_hidden(shown) or any(r.suppressed for r in offers),
        **shown,
    )
