"""Service targets and legal clocks, computed from stored dates and never from flags."""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from tracker.enums import FINISHED_STEP_STATES, DueStatus, StepState


def _as_date(value: date | datetime | None) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value


def basis_date(basis: str, facts: Mapping[str, date | datetime | None]) -> date | None:
    """The date a clock counts from: a newcomer fact, the step's own dates, or another step's.

    ``facts`` holds ``move_in``, ``arrival``, ``permit_expiry``, ``opened``, ``started`` and
    ``done:<step>`` keys; a missing fact means the clock has not started yet.
    """
    return _as_date(facts.get(basis))


def add_months(day: date, months: int) -> date:
    """The same day ``months`` later, or the month's last day if it has no such day (Jan 31 + 1)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def legal_due(
    *,
    basis: str | None,
    days: int | None,
    facts: Mapping[str, date | datetime | None],
    months: int | None = None,
) -> date | None:
    if basis is None or (days is None and months is None):
        return None
    start = basis_date(basis, facts)
    if start is None:
        return None
    return add_months(start, months) if months is not None else start + timedelta(days=days or 0)


def local_today(now: datetime | None = None, tz: str | None = None) -> date:
    """Today in the office's time zone (not UTC, not the server's zone)."""
    from tracker.config import get_settings

    zone = ZoneInfo(tz or get_settings().timezone)
    return (now or datetime.now(zone)).astimezone(zone).date()


def service_due(*, opened: date | datetime | None, days: int | None) -> date | None:
    start = _as_date(opened)
    if start is None or days is None:
        return None
    return start + timedelta(days=days)


def earliest(*dates: date | None) -> date | None:
    present = [d for d in dates if d is not None]
    return min(present) if present else None


def due_status(
    *, state: StepState | str, due: date | None, today: date, due_soon_days: int
) -> DueStatus:
    """Where a step stands against its earliest due date today."""
    if state in FINISHED_STEP_STATES or state == StepState.pending or due is None:
        return DueStatus.none
    if today > due:
        return DueStatus.overdue
    if (due - today).days <= due_soon_days:
        return DueStatus.due_soon
    return DueStatus.on_track


def finished_within(*, done: date | datetime | None, due: date | None) -> bool | None:
    """Whether a finished step met its clock; None when there was no clock or it is not done."""
    done_date = _as_date(done)
    if done_date is None or due is None:
        return None
    return done_date <= due
