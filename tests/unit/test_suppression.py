"""Small-cell suppression, rounding and quantiles: the rules every published figure follows."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from tracker.reporting import caseload, journeys, suppression


def test_suppression_hides_a_lone_small_part_together_with_its_smallest_neighbour():
    shown = suppression.suppress(
        {"total": 30, "a": 3, "b": 12, "c": 15}, [("total", "a", "b", "c")]
    )
    assert shown == {"total": 30, "a": None, "b": None, "c": 15}
    # A complement the reader never sees still counts once everything else is shown.
    shown = suppression.suppress(
        {"open": 40, "overdue": 38, "_in_time": 2}, [("open", "overdue", "_in_time")]
    )
    assert shown == {"open": 40, "overdue": None}
    assert suppression.suppress({"x": 0, "y": 4, "z": 5}) == {"x": 0, "y": None, "z": 5}
    # The breakdown of a small group hides its zeros too.
    shown = suppression.suppress({"total": 3, "a": 3, "b": 0}, [("total", "a", "b")])
    assert shown == {"total": None, "a": None, "b": None}


@pytest.mark.parametrize("seed", range(25))
def test_quantiles_from_a_frequency_table_equal_the_standard_library(seed):
    rng = random.Random(seed)
    values = sorted(rng.randint(-5, 400) for _ in range(rng.randint(2, 60)))
    freq = sorted(Counter(values).items())
    for n in (4, 10):
        expected = statistics.quantiles(values, n=n, method="inclusive")
        assert [suppression.quantile(freq, i, n) for i in range(1, n)] == expected


def test_a_small_distribution_gives_away_neither_values_nor_where_the_few_people_are():
    # The reviewer's case: five people; quartiles, p90 and mean would recover all five values.
    five = journeys.build_time_to(
        [(3, 1), (10, 1), (17, 1), (40, 1), (95, 1)], "registration", 2025, None
    )
    assert five.count == 5
    assert five.p25 is five.median is five.p75 is five.p90 is five.mean is None
    # Every bin holds 0 or 1 person: all hidden, zeros included, so no bin points at anyone.
    assert all(b.count is None for b in five.histogram)


def test_rounding_to_five_hides_one_to_four_and_rounds_the_rest_to_the_nearest_five():
    expected = {0: 0, 1: None, 4: None, 5: 5, 7: 5, 8: 10, 12: 10, 13: 15, 102: 100, 103: 105}
    assert {v: suppression.round_to_base(v) for v in expected} == expected


def test_rounded_cohorts_round_every_shown_count_and_keep_hidden_ones_hidden():
    row = caseload.CohortRow(
        year=2025,
        pathway="student",
        opened=23,
        open=None,
        closed=None,
        cancelled=11,
        median_days_to_close=None,
        suppressed=True,
    )
    exact = row.model_copy(update={"opened": 12, "open": 7, "closed": 5, "cancelled": 0})
    rounded = caseload.rounded_cohorts(caseload.Cohorts(cohorts=[row, exact])).cohorts
    assert [(r.opened, r.open, r.closed, r.cancelled, r.suppressed) for r in rounded] == [
        (25, None, None, 10, True),
        (10, 5, 5, 0, False),
    ]


def test_a_share_is_withheld_with_its_part_and_rounded_to_four_places():
    assert suppression.share_of(2, 3) == 0.6667
    assert suppression.share_of(None, 30) is None
    assert suppression.share_of(0, 0) is None
