"""Import newcomers from a CSV file: every row is checked first, then all are written or none."""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, require_case_manager
from tracker.enums import CaseStatus, Purpose, Role
from tracker.errors import TrackerError, ValidationFailed
from tracker.models import Case, Newcomer, User
from tracker.schemas import NEWCOMER_FIELDS, NewcomerIn
from tracker.services import open_case, register_newcomer

REQUIRED_COLUMNS = ("given_name", "family_name")
OPTIONAL_COLUMNS = (
    *(f for f in NEWCOMER_FIELDS if f not in REQUIRED_COLUMNS),
    "case_manager",
)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
DATE_COLUMNS = frozenset(
    {"birth_date", "first_contact_date", "arrival_date", "move_in_date", "permit_expiry"}
)
BOOL_COLUMNS = frozenset({"eu_citizen", "accelerated_procedure"})
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y")
# German Excel shows TRUE/FALSE as WAHR/FALSCH and writes them so into CSV.
YES = frozenset({"true", "ja", "yes", "1", "wahr"})
NO = frozenset({"false", "nein", "no", "0", "falsch"})
PURPOSES = {
    "work": Purpose.work,
    "arbeit": Purpose.work,
    "study": Purpose.study,
    "studium": Purpose.study,
}
DELIMITERS = (",", ";", "\t")
LISTED_ERRORS = 50
# Well below SQLite's and PostgreSQL's limits on bound parameters per statement.
IN_CHUNK = 500
_EXCEL_SEP_LINE = re.compile(r"^sep=(.)$", re.IGNORECASE)  # Excel's hint line

Label = str | int


@dataclass(frozen=True)
class RowError:
    """One problem: the file line (0 when it concerns no line), the column and the reason."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = ", ".join(p for p in (f"line {self.line}" if self.line else "", self.field) if p)
        return f"{where}: {self.message}" if where else self.message


@dataclass
class ImportReport:
    """What an import read, wrote (or in a dry run would write), skipped and refused."""

    source: str = "the file"
    rows_read: int = 0
    # (line, case reference) when cases are opened, else (line, newcomer id); in a dry run
    # (line, None) for each row that would be imported.
    imported: list[tuple[int, Label | None]] = field(default_factory=list)
    skipped_duplicates: list[tuple[int, str]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False

    def failure_text(self) -> str:
        count = len(self.errors)
        head = f"{count} problem{'' if count == 1 else 's'} in {self.source}; nothing was imported."
        listed = [str(e) for e in self.errors[:LISTED_ERRORS]]
        if count > LISTED_ERRORS:
            listed.append(f"... and {count - LISTED_ERRORS} more")
        return "\n".join([head, *listed])


class ImportFailed(ValidationFailed):
    """The file had problems, so nothing was imported; ``report`` lists every one."""

    def __init__(self, report: ImportReport) -> None:
        # Problems are found in several passes; the reader wants them in file order.
        report.errors.sort(key=lambda e: e.line)
        self.report = report
        super().__init__(report.failure_text())


class _Unreadable(Exception):
    """The file cannot be read as rows at all; no point looking further."""

    def __init__(self, *errors: RowError) -> None:
        self.errors = list(errors)


@dataclass
class _Row:
    line: int
    data: NewcomerIn
    case_manager: str | None


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
    now = now or datetime.now(UTC)
    report = ImportReport(dry_run=dry_run)
    try:
        if isinstance(source, Path):
            report.source = source.name
            try:
                raw = source.read_bytes()
            except OSError as exc:
                raise _Unreadable(RowError(0, "", f"cannot read {source}: {exc.strerror}")) from exc
        else:
            raw = bytes(source)
        rows = _parse(_decode(raw, encoding), delimiter, report)
    except _Unreadable as exc:
        report.errors.extend(exc.errors)
        raise ImportFailed(report) from None

    if open_cases:
        _check_case_managers(session, rows, case_manager, report)
    rows = _drop_duplicates(session, rows, report, skip=skip_duplicates)
    if report.errors:
        raise ImportFailed(report)
    if dry_run:
        report.imported = [(row.line, None) for row in rows]
        return report
    if not rows:
        return report
    _write(
        session,
        rows,
        report,
        actor=actor,
        open_cases=open_cases,
        case_manager=case_manager,
        now=now,
        progress=progress,
    )
    return report


def _write(
    session: Session,
    rows: list[_Row],
    report: ImportReport,
    *,
    actor: Actor,
    open_cases: bool,
    case_manager: str | None,
    now: datetime,
    progress: Callable[[int], None] | None,
) -> None:
    line = 0
    try:
        # A savepoint keeps "all or none" even if the caller catches the error and commits.
        with session.begin_nested():
            for row in rows:
                line = row.line
                person = register_newcomer(session, actor=actor, data=row.data, now=now)
                label: Label = person.id
                if open_cases:
                    case = open_case(
                        session,
                        actor=actor,
                        newcomer_id=person.id,
                        case_manager=row.case_manager or case_manager,
                        now=now,
                    )
                    label = case.reference
                report.imported.append((row.line, label))
                if progress:
                    progress(1)
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
        report.errors.append(RowError(line, "", str(exc)))
        raise ImportFailed(report) from exc


# --- reading the file -------------------------------------------------------------------------


def _decode(raw: bytes, encoding: str | None) -> str:
    if encoding is None:
        if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise _Unreadable(
                RowError(
                    0,
                    "",
                    "the file is UTF-16 (Excel's 'Unicode text'); save it as 'CSV UTF-8' "
                    "or try again with --encoding utf-16",
                )
            )
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise _Unreadable(
                RowError(
                    _line_of(raw, exc.start),
                    "",
                    "the file is not UTF-8 (this line has bytes that are not valid UTF-8); "
                    "it was probably saved by Excel or an older program. Try again with "
                    "--encoding latin-1 (or --encoding cp1252)",
                )
            ) from None
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise _Unreadable(
            RowError(0, "", f"{encoding!r} is not a known encoding; try utf-8, latin-1 or cp1252")
        ) from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _Unreadable(
            RowError(
                _line_of(raw, exc.start),
                "",
                f"this line has bytes that are not valid {encoding}; check the file's encoding",
            )
        ) from None
    return text.removeprefix("\ufeff")


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def _column_name(cell: str) -> str:
    # "Given Name" and "given-name" are what people type for given_name.
    return "_".join(re.split(r"[\s\-]+", cell.strip().lower())).strip("_")


def _show(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


def _header_names(first_line: str, delimiter: str) -> list[str]:
    cells = next(csv.reader([first_line], delimiter=delimiter), [])
    return [_column_name(c) for c in cells]


def _sniff(first_line: str) -> str:
    def score(candidate: str) -> tuple[int, int]:
        names = _header_names(first_line, candidate)
        return sum(n in COLUMNS for n in names), len(names)

    return max(DELIMITERS, key=score)


def _records(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str] | csv.Error]]:
    """Yield (first line, last line, cells or the reader's error) for each non-blank record."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num <= end:
                return  # the reader cannot move on; everything after is unreadable anyway
            end = reader.line_num
            yield start, end, exc
            continue
        end = reader.line_num
        # Excel leaves rows of bare separators where cells were once touched.
        if any(c.strip() for c in cells):
            yield start, end, cells


def _parse(text: str, delimiter: str | None, report: ImportReport) -> list[_Row]:
    first, _, rest = text.partition("\n")
    excel_sep = _EXCEL_SEP_LINE.match(first.rstrip("\r"))
    if excel_sep:
        delimiter = delimiter or excel_sep.group(1)
        text = "\n" + rest  # keeps the line numbers; blank lines are skipped
    first_line = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first_line:
        raise _Unreadable(RowError(0, "", "the file is empty: no header and no rows"))
    delimiter = _check_delimiter(delimiter) if delimiter else _sniff(first_line)

    records = _records(text, delimiter)
    header_line, header_end, header_cells = next(records)
    if isinstance(header_cells, csv.Error):
        raise _Unreadable(
            RowError(header_line, "", _reader_problem(header_cells, header_line, header_end))
        )
    names = _check_header(header_line, header_cells, first_line, delimiter)

    rows: list[_Row] = []
    for start, end, cells in records:
        report.rows_read += 1
        if isinstance(cells, csv.Error):
            report.errors.append(RowError(start, "", _reader_problem(cells, start, end)))
        elif len(cells) != len(names):
            report.errors.append(
                RowError(start, "", _width_problem(len(cells), len(names), delimiter, start, end))
            )
        else:
            row = _validate(start, list(zip(names, cells, strict=True)), report)
            if row is not None:
                rows.append(row)
    if report.rows_read == 0:
        raise _Unreadable(RowError(header_line, "", "the file has a header but no rows"))
    return rows


def _check_delimiter(delimiter: str) -> str:
    # A tab is hard to type on a command line.
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter.lower(), delimiter)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise _Unreadable(
            RowError(
                0, "", f"the separator must be one character such as ',' or ';', not {delimiter!r}"
            )
        )
    return delimiter


def _check_header(line: int, cells: list[str], first_line: str, delimiter: str) -> list[str]:
    names = [_column_name(c) for c in cells]
    # Spreadsheets often end the header with empty cells; those columns are ignored.
    while names and not names[-1]:
        names.pop()
    problems: list[RowError] = []
    unnamed = [str(i) for i, n in enumerate(names, start=1) if not n]
    if unnamed:
        problems.append(
            RowError(
                line,
                "",
                f"{_columns(unnamed)} {'has' if len(unnamed) == 1 else 'have'} no name "
                "in the header",
            )
        )
    twice = sorted({n for n in names if n and names.count(n) > 1})
    if twice:
        problems.append(
            RowError(
                line, "", f"{_columns(twice)} appear{'s' if len(twice) == 1 else ''} more than once"
            )
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        message = f"the header lacks the required {_columns(missing)}"
        others = [d for d in (*DELIMITERS, "|") if d != delimiter]
        fits = next(
            (d for d in others if set(REQUIRED_COLUMNS) <= set(_header_names(first_line, d))),
            None,
        )
        if fits:
            message += (
                f"; the file seems to use {_show(fits)} as separator, not {_show(delimiter)}"
                f" (try --delimiter {_show(fits)})"
            )
        problems.append(RowError(line, "", message))
    unknown = [n for n in names if n and n not in COLUMNS]
    if unknown and not (missing and len(names) == 1):
        problems.append(
            RowError(
                line,
                "",
                f"unknown {_columns(unknown)}; the columns are {', '.join(COLUMNS)}",
            )
        )
    if problems:
        raise _Unreadable(*problems)
    return [*names, *[""] * (len(cells) - len(names))]


def _columns(names: list[str]) -> str:
    return f"column{'' if len(names) == 1 else 's'} {', '.join(names)}"


def _reader_problem(error: csv.Error, start: int, end: int) -> str:
    if "unexpected end of data" in str(error):
        return (
            f'a quote (") opened here is never closed, so the file ends inside it '
            f"(lines {start} to {end}); the file may be cut off or a closing quote is missing"
        )
    if "expected after" in str(error):
        return (
            "a quoted value is followed by more text before the next separator; "
            f"check the quotes on this line ({error})"
        )
    return f"this line cannot be read ({error})"


def _width_problem(cells: int, columns: int, delimiter: str, start: int, end: int) -> str:
    message = f"the row has {cells} cells but the header has {columns} columns; "
    if cells < columns:
        message += "the line may be cut off or a separator is missing"
    else:
        message += f"a value probably contains a {_show(delimiter)} without quotes around it"
    if end > start:
        message += f" (the row runs from line {start} to line {end}: is a quote missing?)"
    return message


# --- checking the rows --------------------------------------------------------------------------


def _quote(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _convert(column: str, value: str) -> Any:
    if column in DATE_COLUMNS:
        for fmt in DATE_FORMATS:
            try:
                return datetime.strptime(value, fmt).date()
            except ValueError:
                pass
        raise ValueError(f"{_quote(value)} is not a date (use YYYY-MM-DD or DD.MM.YYYY)")
    if column in BOOL_COLUMNS:
        word = value.lower()
        if word in YES or word in NO:
            return word in YES
        raise ValueError(
            f"{_quote(value)} is not yes or no (use true/false, ja/nein, yes/no or 1/0)"
        )
    if column == "purpose":
        purpose = PURPOSES.get(value.lower())
        if purpose is None:
            raise ValueError(
                f"{_quote(value)} is not a purpose (use work or study; arbeit or studium)"
            )
        return purpose
    return value


def _validate(line: int, cells: list[tuple[str, str]], report: ImportReport) -> _Row | None:
    given = {c: v.strip() for c, v in cells if c and v.strip()}
    manager = given.pop("case_manager", None)
    values: dict[str, Any] = {}
    errors = [
        RowError(
            line, "", f"column {i} has a value ({_quote(v.strip())}) but no name in the header"
        )
        for i, (c, v) in enumerate(cells, start=1)
        if not c and v.strip()
    ]
    for column, text in given.items():
        try:
            values[column] = _convert(column, text)
        except ValueError as exc:
            errors.append(RowError(line, column, str(exc)))
    try:
        data = NewcomerIn.model_validate(values)
    except ValidationError as exc:
        errors.extend(_pydantic_errors(line, exc, given))
    if errors:
        position = {c: i for i, (c, _) in enumerate(cells)}
        report.errors.extend(sorted(errors, key=lambda e: position.get(e.field, -1)))
        return None
    return _Row(line=line, data=data, case_manager=manager)


def _pydantic_errors(line: int, exc: ValidationError, given: dict[str, str]) -> Iterable[RowError]:
    for error in exc.errors(include_url=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["loc"]:
            column = str(error["loc"][0])
        else:
            # Checks across fields name the columns in their message; blame the first one.
            column = next((c for c in COLUMNS if message.startswith(c)), "")
            message = message.removeprefix(column).lstrip()
            other = next((c for c in COLUMNS if message.endswith(c)), "")
            if other in given:
                message += f" ({_quote(given[other])})"
        text = given.get(column)
        if error["type"] == "missing":
            message = "is required but the cell is empty"
        elif error["type"] == "string_too_long":
            limit = (error.get("ctx") or {}).get("max_length")
            message = f"is too long ({len(text or '')} characters, at most {limit})"
        elif text is not None:
            message = f"{_quote(text)} {message}"
        yield RowError(line, column, message)


def _chunks(items: Iterable[str]) -> Iterator[list[str]]:
    batch = sorted(items)
    for i in range(0, len(batch), IN_CHUNK):
        yield batch[i : i + IN_CHUNK]


def _check_case_managers(
    session: Session, rows: list[_Row], default: str | None, report: ImportReport
) -> None:
    wanted = {r.case_manager for r in rows if r.case_manager} | ({default} if default else set())
    active: set[str] = set()
    for chunk in _chunks(wanted):
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
    for row in rows:
        if row.case_manager and row.case_manager not in active:
            report.errors.append(
                RowError(
                    row.line,
                    "case_manager",
                    f"{_quote(row.case_manager)} is not the username of an active case manager",
                )
            )


def _existing_people(session: Session, keys: set[str]) -> dict[str, str]:
    """For each match key already in the database: how to name that person to the user."""
    found: dict[str, tuple[tuple[int, Any], str]] = {}
    for chunk in _chunks(keys):
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
    session: Session, rows: list[_Row], report: ImportReport, *, skip: bool
) -> list[_Row]:
    existing = _existing_people(session, {r.data.match_key for r in rows})
    first_seen: dict[str, int] = {}
    kept: list[_Row] = []
    for row in rows:
        key = row.data.match_key
        if key in existing:
            problem = existing[key]
        elif key in first_seen:
            problem = f"the same person as line {first_seen[key]}"
        else:
            first_seen[key] = row.line
            kept.append(row)
            continue
        first_seen.setdefault(key, row.line)
        if row.data.birth_date:
            problem += " (same family name, given name and birth date)"
        else:
            problem += (
                " (same family name and given name, no birth date; add birth dates if they "
                "are different people)"
            )
        if skip:
            report.skipped_duplicates.append((row.line, problem))
        else:
            report.errors.append(RowError(row.line, "", problem))
    return kept
