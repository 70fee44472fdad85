"""What every outcome figure shares: who may read it, the cohort, UTC days in SQL, the result type.

* Cohort year = the year of the case's ``opened_at``. Years and days are counted on the UTC
  calendar, on both SQLite and PostgreSQL, because SQLite cannot convert to Europe/Berlin; the
  office works in daytime hours, so at most a late-night entry lands on the neighbouring day.
* Figures hold aggregates only, small cells suppressed (:mod:`tracker.reporting.suppression`):
  no reference, no name, nothing about one person.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Date, Integer, and_, case, func
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from tracker.access import Actor
from tracker.enums import ACTIVE_STEP_STATES, CaseStatus, Role
from tracker.errors import PermissionDenied, ValidationFailed
from tracker.models import Case
from tracker.pathway import get_registry

# Open, in progress or blocked, as stored: the states a step is counted "active" in.
ACTIVE_STEP_VALUES = [s.value for s in ACTIVE_STEP_STATES]


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


def count_if(*conds: Any) -> Any:
    """SQL: how many rows meet all the conditions (0, not NULL, when none do)."""
    return func.coalesce(func.sum(case((and_(*conds), 1), else_=0)), 0)


# --- The result type, scope and cohort --------------------------------------------------------


class Figure(BaseModel):
    """A figure's result: frozen, and flat rows for a CSV writer."""

    model_config = ConfigDict(frozen=True)

    def rows(self) -> list[dict[str, Any]]:  # pragma: no cover - every figure overrides it
        raise NotImplementedError


def require_leadership(actor: Actor) -> None:
    """Outcome figures are for leadership and administrators."""
    # Scope below the screen: a partner or a case manager gets no outcome figures at all.
    if actor.role not in (Role.leadership, Role.admin):
        raise PermissionDenied("Outcome figures are for leadership and administrators only.")


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """The calendar year as [start, end) UTC timestamps."""
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def cohort_filter(year: int | None, pathway: str | None) -> list[ColumnElement[bool]]:
    """Conditions on ``Case`` for the cohort filters."""
    conds: list[ColumnElement[bool]] = []
    if year is not None:
        start, end = year_bounds(year)
        # Naming every status lets SQLite range-scan ix_cases_status_opened (status, opened_at).
        conds += [
            Case.status.in_([s.value for s in CaseStatus]),
            Case.opened_at >= start,
            Case.opened_at < end,
        ]
    if pathway is not None:
        conds.append(Case.pathway_key == pathway)
    return conds


def check_pathway(pathway: str | None) -> None:
    """A pathway filter must name a known pathway."""
    if pathway is not None and pathway not in {k for k, _ in get_registry().pathways}:
        raise ValidationFailed(
            "No pathway called '{pathway}'.",
            pathway=pathway,
        )


def step_order(pathway: str | None, found: Iterable[str] = ()) -> list[str]:
    """Step keys in pathway order; without a pathway, in the catalogue's (reference) order.

    Keys only an older pathway version or a retired catalogue entry knows come last."""
    registry = get_registry()
    order = registry.get(pathway).step_ids if pathway else []
    order += [k for k in registry.catalogue if k not in order]
    return order + sorted(set(found) - set(order))


def pathway_order(found: Iterable[str]) -> list[str]:
    """Pathway keys in the registry's order, then any only old cases know."""
    known = sorted({k for k, _ in get_registry().pathways})
    return known + sorted(set(found) - set(known))
