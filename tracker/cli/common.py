"""What every `onboarding` command shares: the consoles, the common options, acting as a user,
turning errors into one line, and printing JSON, files and values."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError

from tracker.access import Actor, actor_for
from tracker.db import database_unavailable, get_database
from tracker.errors import TrackerError
from tracker.journeys import queries
from tracker.journeys.orchestration import AdvanceRequest

# Emoji codes stay text: ":warning:" in a name is the name. An error is one line, however
# narrow the terminal.
out = Console(emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)
T = TypeVar("T")

AsUser = Annotated[
    str,
    typer.Option(
        "--as", envvar="ONBOARDING_USER", help="Act as this user (or set ONBOARDING_USER)."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripting.")]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait",
        help="Wait until the next steps are open (at most ONBOARDING_ADVANCE_WAIT_SECONDS) "
        "and say which; by default the command returns once the change is saved.",
    ),
]
Version = Annotated[
    int | None,
    typer.Option(
        "--expected-version", help="Refuse the change if the record changed since this version."
    ),
]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (required).")]


@contextmanager
def friendly() -> Iterator[None]:
    """Turn the tracker's errors into one clear line and a non-zero exit."""
    try:
        yield
    except TrackerError as exc:
        err.print(f"[bold red]Error:[/] {safe(exc)}")
        raise typer.Exit(1) from None
    except ValidationError as exc:
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"]) or "input"
            err.print(f"[bold red]Error:[/] {safe(field)}: {safe(e['msg'])}")
        raise typer.Exit(1) from None
    except DBAPIError as exc:
        # Raised outside Database.transaction/read (e.g. a migration check): the same words.
        away = database_unavailable(exc)
        if away is not None:
            err.print(f"[bold red]Error:[/] {safe(away)}")
            raise typer.Exit(1) from None
        if "no such table" in str(exc) or "does not exist" in str(exc.orig or ""):
            err.print(
                "[bold red]Error:[/] The database has no tracker tables yet: "
                "run [bold]onboarding db upgrade[/]."
            )
            raise typer.Exit(1) from None
        raise


def actor_named(username: str) -> Actor:
    with get_database().read() as session:
        return actor_for(session, username)


def change(as_user: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """Run one service function as one transaction on behalf of a user."""
    with friendly():
        actor = actor_named(as_user)
        with get_database().transaction() as session:
            return fn(session, actor=actor, **kwargs)


def read(as_user: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    with friendly():
        actor = actor_named(as_user)
        with get_database().read() as session:
            return fn(session, actor=actor, **kwargs)


def print_json(value: Any) -> None:
    def plain(v: Any) -> Any:
        if isinstance(v, BaseModel):
            return v.model_dump(mode="json")
        if isinstance(v, list):
            return [plain(i) for i in v]
        return v

    out.print_json(json.dumps(plain(value), ensure_ascii=False, default=str))


def write_file(content: bytes, name: str, output: Path | None) -> None:
    """Write a generated file: to ``output`` (a file, a folder for ``name``, or - for
    standard output), or to ``name`` here."""
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
        return
    target = output or Path(name)
    if target.is_dir():
        target = target / name
    target.write_bytes(content)
    err.print(f"Wrote {safe(target)} ({len(content):,} bytes).")


def as_text(value: Any) -> str:
    """A value as a person reads it: a dash for nothing, dates and times without seconds."""
    if value is None:
        return "–"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "hour") else value.isoformat()
    return str(value)


# C0 and C1 control characters but tab and line feed: with them a name could colour the
# terminal, move its cursor or send a hyperlink.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(value: Any) -> str:
    """``as_text(value)`` with every control character shown as ``\\xNN`` instead of acting."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", as_text(value))


def literal(value: Any, style: str = "") -> Text:
    """What someone typed, printed exactly so: never read as markup or emoji, escapes made
    visible. Use it for every value from the database or the command line."""
    return Text(visible(value), style=style)


def safe(value: Any) -> str:
    """``literal`` for a value put inside a line of our own Rich markup."""
    return escape(visible(value))


def table(*columns: str, rows: Iterable[Iterable[Any]], title: str | Text | None = None) -> Table:
    """A table whose cells are shown literally; a ``Text`` cell keeps its own style."""
    grid = Table(*columns, title=title)
    for row in rows:
        grid.add_row(*(cell if isinstance(cell, Text) else literal(cell) for cell in row))
    return grid


_DUE_STYLE = {"overdue": "bold red", "due_soon": "yellow", "on_track": "green", "none": "dim"}


def due_cell(status: str, day: Any) -> Text:
    """A due date coloured by how urgent it is."""
    return literal(day, _DUE_STYLE[status])


def safe_url(url: str) -> str:
    """A database URL fit to print: the password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# Off a terminal (a log file, a pipe, CI), how often a long phase says how far it has come.
PROGRESS_EVERY = 5.0  # seconds


class Phase:
    """One phase of a long command's work, on standard error as it goes.

    On a terminal a bar with the count, the time taken and an estimate of the time left.
    Elsewhere (a log, a pipe) a line every ``PROGRESS_EVERY`` seconds with the count, the rate
    and the estimate, and one at the end; a phase over sooner says nothing.
    ``total`` may be unknown (None): then there is no estimate."""

    def __init__(
        self,
        label: str,
        total: int | None,
        *,
        console: Console | None = None,
        every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.done = label, total, 0
        self._console = console or err
        self._every = PROGRESS_EVERY if every is None else every
        self._clock = clock
        self._bar: Progress | None = None
        self._started = self._last = 0.0
        self._said = False

    def __enter__(self) -> Phase:
        self._started = self._last = self._clock()
        if self._console.is_terminal:
            self._bar = Progress(
                TextColumn(self.label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.advance(self._task, count)
            return
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._say(now)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._said or self._clock() - self._started >= self._every:
            self._say(self._clock())

    def _say(self, now: float) -> None:
        self._said = True
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self.done:,}"
        if self.total is not None:
            text += f" / {self.total:,}"
        text += f" ({rate:,.0f}/s"
        if self.total is not None and 0 < self.done < self.total:
            text += f", about {_duration((self.total - self.done) / rate)} left"
        self._console.print(text + ")", markup=False, highlight=False)


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``1 h 5 min``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def follow_up(
    reference: str, *, wait: bool = False, quiet: bool = False, as_json: bool = False
) -> AdvanceRequest:
    """After a change has committed: ask for the case's advance and say what happened.

    Without ``wait`` this returns as soon as Prefect has queued the advance (inline, the
    advance has already run); with it, it waits for the advance to end (at most
    ONBOARDING_ADVANCE_WAIT_SECONDS) and says which steps are open now. ``quiet`` says
    nothing unless asked to wait or something went wrong; ``as_json`` leaves standard output
    to the command's JSON (problems still go to standard error)."""
    import logging

    from tracker.config import get_settings
    from tracker.journeys.orchestration import request_advance

    # Prefect sends the queued run's event as the process exits and warns that it is still
    # "processing 1 item": true, harmless, and not for an operator's terminal.
    logging.getLogger("EventsWorker").setLevel(logging.ERROR)
    request = request_advance([reference], wait=get_settings().advance_wait_seconds if wait else 0)
    if request.state in ("unreachable", "failed", "crashed"):
        err.print(f"[yellow]{safe(request.message)}[/]")
    elif as_json:
        pass
    elif request.state == "completed" and (wait or not quiet):
        with get_database().read() as session:
            active = queries.active_steps(session, reference=reference)
        out.print(
            f"Open now: {safe(', '.join(active)) if active else 'nothing – the case is closed'}"
        )
    elif wait:
        err.print(
            f"[yellow]The advance has not finished after {get_settings().advance_wait_seconds:g} s "
            "(is a task worker running?); the next steps open when it runs, or with the "
            "clock sweep.[/]"
        )
    elif not quiet:
        out.print(safe(request.message))
    return request


def report_step(reference: str, step: str, verb: str, *, wait: bool = False) -> None:
    out.print(f"{safe(reference.upper())}: {safe(step)} {verb}.")
    follow_up(reference, wait=wait)
