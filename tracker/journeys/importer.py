"""Import newcomers from a CSV file: every row is checked first, then all are written or none."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import Actor, require_case_manager
from tracker.bulk import chunks
from tracker.enums import CaseStatus, Role
from tracker.errors import TrackerError
from tracker.journeys.cases import CaseOpening, register_newcomers
from tracker.journeys.cases import open_cases as open_cases_service
from tracker.journeys.csv_file import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    ImportFailed,
    ImportReport,
    Label,
    PersonRow,
    Row,
    RowError,
    quote_cell,
    read_and_check,
)
from tracker.models import Case, Newcomer, User

# The file's columns and the report's types belong to the import's interface.
__all__ = [
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ImportFailed",
    "ImportReport",
    "RowError",
    "check_file",
    "import_newcomers",
]


# Rows registered (and their cases opened) per call of the batch services: large enough that a
# statement's cost is shared by many rows, small enough that a batch's rows sit lightly in memory.
WRITE_BATCH = 500


def import_newcomers(
    session: Session,
    *,
    actor: Actor,
    source: Path | bytes,
    open_cases: bool = True,
    skip_duplicates: bool = False,
    encoding: str | None = None,
    delimiter: str | None = None,
    case_manager: str | None = None,
    now: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Check every row of a CSV file, then register (and open cases for) all of them or none.

    Raises ImportFailed listing every problem found. Runs inside the caller's transaction and
    never commits; the writes sit in a savepoint, so a failure half-way leaves nothing behind.
    """
    require_case_manager(actor, "import newcomers")
    now = now or clocks.utcnow()
    report = ImportReport(dry_run=dry_run)
    checked = read_and_check(source, encoding, delimiter, report)

    if open_cases:
        _check_case_managers(session, checked.people, case_manager, report)
    kept, skipped = _drop_duplicates(session, checked.people, report, skip=skip_duplicates)
    if report.errors:
        raise ImportFailed(report)
    if dry_run:
        report.imported = [(line, None) for line in kept]
        return report
    if not kept:
        return report
    # The rows were checked and then let go of; they are read again as they are written, so a
    # large file costs its text and a few bytes a row, not a validated object a row.
    checked.people.clear()
    _write(
        session,
        checked.rows(skip=skipped),
        report,
        actor=actor,
        open_cases=open_cases,
        case_manager=case_manager,
        now=now,
        progress=progress,
    )
    return report


def check_file(
    source: Path | bytes, *, encoding: str | None = None, delimiter: str | None = None
) -> ImportReport:
    """Read and check every row of a CSV file without the database.

    Raises ImportFailed listing every problem in the file itself (encoding, separator, header,
    cells, quotes). What only the database can tell (duplicates of people already in the tracker,
    unknown case managers) is left to ``import_newcomers``. On success ``imported`` lists
    ``(line, None)`` for every row read.
    """
    report = ImportReport(dry_run=True)
    checked = read_and_check(source, encoding, delimiter, report)
    if report.errors:
        raise ImportFailed(report)
    report.imported = [(person.line, None) for person in checked.people]
    return report


def _write(
    session: Session,
    rows: Iterable[Row],
    report: ImportReport,
    *,
    actor: Actor,
    open_cases: bool,
    case_manager: str | None,
    now: datetime,
    progress: Callable[[int], None] | None,
) -> None:
    line = 0
    batch: list[Row] = []

    def write(rows: list[Row]) -> list[Label]:
        ids = register_newcomers(session, actor=actor, people=[row.data for row in rows], now=now)
        if not open_cases:
            return list(ids)
        opened = open_cases_service(
            session,
            actor=actor,
            openings=[
                CaseOpening(newcomer_id, row.case_manager or case_manager)
                for newcomer_id, row in zip(ids, rows, strict=True)
            ],
            now=now,
        )
        return [reference for _, reference in opened]

    def write_batch() -> None:
        nonlocal line
        line = batch[0].line
        try:
            with session.begin_nested():
                labels = write(batch)
        except TrackerError as exc:
            line = batch[getattr(exc, "item", 0)].line
            raise
        except (DataError, IntegrityError):
            line = _refused_row(session, batch, write)
            raise
        report.imported.extend((row.line, label) for row, label in zip(batch, labels, strict=True))
        if progress:
            progress(len(batch))
        batch.clear()

    try:
        # A savepoint keeps "all or none" even if the caller catches the error and commits.
        with session.begin_nested():
            for row in rows:
                batch.append(row)
                if len(batch) == WRITE_BATCH:
                    write_batch()
            if batch:
                write_batch()
            audit.record(
                session,
                actor=actor,
                action="newcomers.imported",
                entity_type="import",
                entity_id=None,
                now=now,
                details={
                    "rows": report.rows_read,
                    "imported": len(report.imported),
                    "skipped_duplicates": len(report.skipped_duplicates),
                    "cases_opened": open_cases,
                },
            )
    except TrackerError as exc:
        report.imported.clear()
        report.errors.append(RowError(getattr(exc, "line", line), "", str(exc)))
        raise ImportFailed(report) from exc
    except (DataError, IntegrityError) as exc:
        # The checks above should leave nothing for the database to refuse; if it does, the
        # savepoint is gone and the reader still learns which row it was.
        report.imported.clear()
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        report.errors.append(RowError(line, "", f"the database refused this row ({reason})"))
        raise ImportFailed(report) from exc


def _refused_row(
    session: Session, batch: list[Row], write: Callable[[list[Row]], list[Label]]
) -> int:
    """The line of the first row of a batch the database refuses on its own: the batch is
    written again row by row (each in a savepoint), to name the line to the reader. What is
    written here goes when the import's savepoint is rolled back."""
    for row in batch:
        try:
            with session.begin_nested():
                write([row])
        except (DataError, IntegrityError):
            return row.line
    return batch[0].line


def _check_case_managers(
    session: Session, people: list[PersonRow], default: str | None, report: ImportReport
) -> None:
    wanted = {p.case_manager for p in people if p.case_manager} | ({default} if default else set())
    active: set[str] = set()
    for chunk in chunks(sorted(wanted)):
        active.update(
            session.scalars(
                select(User.username).where(
                    User.username.in_(chunk),
                    User.role == Role.case_manager,
                    User.active.is_(True),
                )
            )
        )
    if default and default not in active:
        report.errors.append(
            RowError(0, "case_manager", f"{default!r} is not an active case manager")
        )
    for person in people:
        if person.case_manager and person.case_manager not in active:
            report.errors.append(
                RowError(
                    person.line,
                    "case_manager",
                    f"{quote_cell(person.case_manager)} is not the username of an active "
                    "case manager",
                )
            )


def _existing_people(session: Session, keys: set[str]) -> dict[str, str]:
    """For each match key already in the database: how to name that person to the user."""
    found: dict[str, tuple[tuple[int, Any], str]] = {}
    for chunk in chunks(sorted(keys)):
        stmt = (
            select(Newcomer.match_key, Newcomer.id, Case.reference, Case.status, Case.opened_at)
            .outerjoin(Case, Case.newcomer_id == Newcomer.id)
            .where(Newcomer.match_key.in_(chunk))
        )
        for key, newcomer_id, reference, status, opened_at in session.execute(stmt):
            if reference is None:
                rank: tuple[int, Any] = (0, newcomer_id)
                name = f"already in the tracker (newcomer id {newcomer_id}, no case)"
            else:
                # Name the case a worker would look at: the open one, else the latest.
                rank = (2 if status == CaseStatus.open else 1, opened_at)
                name = f"already in the tracker as case {reference}"
            if key not in found or rank > found[key][0]:
                found[key] = (rank, name)
    return {key: name for key, (_, name) in found.items()}


def _drop_duplicates(
    session: Session, people: list[PersonRow], report: ImportReport, *, skip: bool
) -> tuple[list[int], set[int]]:
    """The lines to import, and the lines skipped as duplicates (or reported as errors)."""
    existing = _existing_people(session, {p.match_key for p in people})
    first_seen: dict[str, int] = {}
    kept: list[int] = []
    dropped: set[int] = set()
    for person in people:
        key = person.match_key
        if key in existing:
            problem = existing[key]
        elif key in first_seen:
            problem = f"the same person as line {first_seen[key]}"
        else:
            first_seen[key] = person.line
            kept.append(person.line)
            continue
        first_seen.setdefault(key, person.line)
        dropped.add(person.line)
        if person.born:
            problem += " (same family name, given name and birth date)"
        else:
            problem += (
                " (same family name and given name, no birth date; add birth dates if they "
                "are different people)"
            )
        if skip:
            report.skipped_duplicates.append((person.line, problem))
        else:
            report.errors.append(RowError(person.line, "", problem))
    return kept, dropped
