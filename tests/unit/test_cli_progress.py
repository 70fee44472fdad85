"""A long command's phases off a terminal (a log, a pipe, CI): a line every few seconds with the
count, the rate and an estimate of the time left, one at the end, and nothing for a quick one."""

from __future__ import annotations

import io

from rich.console import Console

from tracker.cli.common import Phase


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(buffer: io.StringIO) -> list[str]:
    return [line for line in buffer.getvalue().splitlines() if line]


def test_a_long_phase_says_its_count_rate_and_what_is_left_every_few_seconds():
    buffer, clock = io.StringIO(), Clock()
    console = Console(file=buffer, width=200)  # a file: not a terminal
    assert not console.is_terminal
    with Phase("Opening first steps", 1200, console=console, every=5, clock=clock) as phase:
        clock.now += 1
        phase.advance(100)  # 1 s in: too soon to say anything
        assert lines(buffer) == []
        clock.now += 5
        phase.advance(500)  # 6 s in, 600 of 1,200 at 100 a second: about 6 s left
        assert lines(buffer) == ["Opening first steps: 600 / 1,200 (100/s, about 6 s left)"]
        clock.now += 2
        phase.advance(200)  # 2 s after the last line: nothing new
        assert len(lines(buffer)) == 1
        clock.now += 4
        phase.advance(400)
    assert lines(buffer)[-1] == "Opening first steps: 1,200 / 1,200 (100/s)"
    assert len(lines(buffer)) == 3


def test_a_phase_without_a_total_counts_without_an_estimate():
    buffer, clock = io.StringIO(), Clock()
    with Phase("Writing rows", None, console=Console(file=buffer), every=5, clock=clock) as phase:
        for _ in range(3):
            clock.now += 3
            phase.advance(3000)
    assert lines(buffer) == ["Writing rows: 6,000 (1,000/s)", "Writing rows: 9,000 (1,000/s)"]


def test_a_quick_phase_says_nothing_and_estimates_read_as_minutes_and_hours():
    buffer, clock = io.StringIO(), Clock()
    with Phase("Demo newcomers", 50, console=Console(file=buffer), every=5, clock=clock) as phase:
        clock.now += 0.5
        phase.advance(50)
    assert lines(buffer) == []

    for total, left in ((100_000, "about 16 min left"), (1_000_000, "about 2 h 46 min left")):
        buffer, clock = io.StringIO(), Clock()
        console = Console(file=buffer, width=200)
        with Phase("Opening first steps", total, console=console, every=5, clock=clock) as phase:
            clock.now += 10
            phase.advance(1000)  # 100 a second: 99,000 left take 990 s; 999,000 take 9,990 s
        assert left in lines(buffer)[0], lines(buffer)
