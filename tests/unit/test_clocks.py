"""Clock arithmetic: due dates from stored facts, and the due status a date gives."""

from datetime import UTC, date, datetime

import pytest

from tracker import clocks
from tracker.enums import DueStatus, StepState


def test_legal_clock_counts_from_its_basis_fact():
    facts = {"move_in": date(2026, 1, 31)}
    assert clocks.legal_due(basis="move_in", days=14, facts=facts) == date(2026, 2, 14)


def test_a_clock_whose_fact_is_unknown_has_not_started():
    assert clocks.legal_due(basis="move_in", days=14, facts={"move_in": None}) is None
    assert clocks.legal_due(basis="done:residence_title", days=365, facts={}) is None


def test_a_clock_can_count_from_another_steps_completion_time():
    facts = {"done:residence_title": datetime(2025, 3, 4, 15, 30, tzinfo=UTC)}
    assert clocks.legal_due(basis="done:residence_title", days=365, facts=facts) == date(2026, 3, 4)


def test_service_target_counts_from_opening_on_the_offices_day():
    # 23:00 UTC on 27 February is already 28 February in Bochum: the clock counts from there.
    opened = datetime(2026, 2, 27, 23, 0, tzinfo=UTC)
    assert clocks.service_due(opened=opened, days=10) == date(2026, 3, 10)
    earlier = datetime(2026, 2, 27, 22, 59, tzinfo=UTC)  # 23:59 on the 27th in Bochum
    assert clocks.service_due(opened=earlier, days=10) == date(2026, 3, 9)
    assert clocks.service_due(opened=None, days=10) is None


def test_earliest_ignores_missing_dates():
    assert clocks.earliest(None, date(2026, 3, 1), date(2026, 2, 1)) == date(2026, 2, 1)
    assert clocks.earliest(None, None) is None


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 3, 1), DueStatus.on_track),
        (date(2026, 3, 7), DueStatus.due_soon),  # 3 days before
        (date(2026, 3, 10), DueStatus.due_soon),  # the due day itself
        (date(2026, 3, 11), DueStatus.overdue),
    ],
)
def test_due_status_at_its_boundaries(today, expected):
    got = clocks.due_status(
        state=StepState.open, due=date(2026, 3, 10), today=today, due_soon_days=3
    )
    assert got == expected


@pytest.mark.parametrize("state", [StepState.done, StepState.skipped, StepState.pending])
def test_finished_and_pending_steps_are_never_overdue(state):
    got = clocks.due_status(
        state=state, due=date(2020, 1, 1), today=date(2026, 1, 1), due_soon_days=3
    )
    assert got == DueStatus.none
