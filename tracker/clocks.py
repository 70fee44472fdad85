"""Service targets and legal clocks, computed from stored dates and never from flags."""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tracker.config import get_settings
from tracker.enums import FINISHED_STEP_STATES, DueStatus, StepState
from tracker.errors import ValidationFailed


def _as_date(value: date | datetime | None) -> date | None:
    """A stored moment as the office's day (a step done at 00:30 in Bochum counts from that
    day, not from the day before in UTC); a date stays as it is."""
    if isinstance(value, datetime):
        return local_today(value)
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
    """Today in the office's time zone (not UTC, not the server's zone); given a moment, the
    office's day at that moment."""
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


def utcnow() -> datetime:
    return datetime.now(UTC)


def moment(on: date | None, now: datetime) -> datetime:
    """The time a fact happened: noon of the given day in the office's time zone, or now."""
    if on is None:
        return now
    if on > local_today(now):
        raise ValidationFailed(
            "The date {day} lies in the future.",
            day=on,
        )
    zone = ZoneInfo(get_settings().timezone)
    return datetime.combine(on, time(12, 0), tzinfo=zone).astimezone(UTC)
