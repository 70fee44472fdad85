"""Reading a newcomer CSV file: encoding, separator, header and every cell checked, no database."""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tracker.enums import Purpose
from tracker.errors import ValidationFailed
from tracker.models import Newcomer
from tracker.schemas import NEWCOMER_FIELDS, NewcomerIn

# The columns every file must have. The duplicate check pairs a name with a birth date, so a
# file without that column could not find any duplicate; a cell may stay empty where the date
# is unknown (the name alone then flags a possible duplicate for the case manager to look at).
REQUIRED_COLUMNS = ("given_name", "family_name", "birth_date")


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


_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


_EXCEL_SEP_LINE = re.compile(r"^sep=(.)$", re.IGNORECASE)  # Excel's hint line


# Control characters other than tab and line breaks, and lone surrogates (which only a wrong
# codec such as unicode_escape produces): no cell may keep them, and PostgreSQL refuses NUL.
_UNSTORABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


MATCH_KEY_LENGTH: int = Newcomer.__table__.c.match_key.type.length  # type: ignore[attr-defined]


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
class Row:
    line: int
    data: NewcomerIn
    case_manager: str | None


def read_and_check(
    source: Path | bytes, encoding: str | None, delimiter: str | None, report: ImportReport
) -> CheckedFile:
    try:
        text = _read(source, encoding, report)
        return _parse(text, delimiter, report)
    except _Unreadable as exc:
        report.errors.extend(exc.errors)
        raise ImportFailed(report) from None


def _read(source: Path | bytes, encoding: str | None, report: ImportReport) -> str:
    if isinstance(source, Path):
        report.source = source.name
        try:
            raw = source.read_bytes()
        except OSError as exc:
            raise _Unreadable(RowError(0, "", f"cannot read {source}: {exc.strerror}")) from exc
        return _decode(raw, encoding)
    return _decode(bytes(source), encoding)


def _decode(raw: bytes, encoding: str | None) -> str:
    if encoding is None:
        return _decode_default(raw)
    try:
        codec = codecs.lookup(encoding)
    except (LookupError, ValueError, TypeError):
        raise _Unreadable(
            RowError(0, "", f"{encoding!r} is not a known encoding; try utf-8, latin-1 or cp1252")
        ) from None
    if not getattr(codec, "_is_text_encoding", True) or codec.name in _NOT_FILE_ENCODINGS:
        # base64, zlib, rot13 and the like
        raise _Unreadable(
            RowError(
                0,
                "",
                f"{encoding!r} is not an encoding files are saved in; try utf-8, latin-1 or cp1252",
            )
        )
    try:
        text = codec.decode(raw)[0]
    except UnicodeDecodeError as exc:
        raise _Unreadable(
            RowError(
                _line_of(raw, exc.start, codec.name),
                "",
                f"this line has bytes that are not valid {encoding}; check the file's encoding",
            )
        ) from None
    except (UnicodeError, ValueError, TypeError) as exc:  # e.g. idna, or a codec's own rules
        raise _Unreadable(
            RowError(0, "", f"the file cannot be read as {encoding} ({exc}); check its encoding")
        ) from None
    if not isinstance(text, str):
        raise _Unreadable(RowError(0, "", f"{encoding!r} is not a text encoding"))
    return text.removeprefix("\ufeff")


def _decode_default(raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise _Unreadable(
            RowError(
                0,
                "",
                "the file is UTF-32; save it as 'CSV UTF-8' or try again with --encoding utf-32",
            )
        )
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _Unreadable(
            RowError(
                0,
                "",
                "the file is UTF-16 (Excel's 'Unicode text'); save it as 'CSV UTF-8' "
                "or try again with --encoding utf-16",
            )
        )
    head = raw[:4096]
    if len(head) >= 8 and head.count(0) * 4 >= len(head):
        # Text files hold no NUL bytes; UTF-16 without a byte-order mark holds one in two.
        little = head[1::2].count(0) >= head[0::2].count(0)
        guess = "utf-16-le" if little else "utf-16-be"
        raise _Unreadable(
            RowError(
                0,
                "",
                "the file is not text as saved by a spreadsheet (every other byte is zero): "
                "it is probably UTF-16 without a byte-order mark; save it as 'CSV UTF-8' or "
                f"try again with --encoding {guess}",
            )
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Unreadable(
            RowError(
                _line_of(raw, exc.start, "utf-8"),
                "",
                "the file is not UTF-8 (this line has bytes that are not valid UTF-8); "
                "it was probably saved by Excel or an older program. Try again with "
                "--encoding latin-1 (or --encoding cp1252)",
            )
        ) from None


def _line_of(raw: bytes, offset: int, encoding: str) -> int:
    """The line (as the CSV reader counts them) holding the byte at ``offset``."""
    try:
        before = raw[:offset].decode(encoding, "replace")
    except (UnicodeError, LookupError, ValueError, TypeError):
        before = raw[:offset].decode("latin-1")
    return _line_breaks(before) + 1


def _line_breaks(text: str) -> int:
    # "\r\n", a lone "\r" and a lone "\n" each end one line, as for csv and io's newline="".
    return text.count("\n") + text.count("\r") - text.count("\r\n")


_LINE = re.compile(r"[^\r\n]*(?:\r\n|[\r\n]|\Z)")


def _lines(text: str, *, blank_first: bool = False) -> Iterator[str]:
    """The lines of ``text`` with their endings, one at a time (no copy of the whole text)."""
    for number, match in enumerate(_LINE.finditer(text)):
        line = match.group()
        if not line:
            return
        # Excel's "sep=" line is not a row; a blank line keeps the later line numbers.
        yield "\n" if blank_first and number == 0 else line


def _column_name(cell: str) -> str:
    # "Given Name" and "given-name" are what people type for given_name.
    return "_".join(re.split(r"[\s\-]+", cell.strip().lower())).strip("_")


def _show(delimiter: str) -> str:
    return "tab" if delimiter == "\t" else repr(delimiter)


# Codecs Python knows that no program saves a spreadsheet in: they turn "\\u00e9" into "é" (and
# "\\ud800" into half a character), or are for domain names, or refuse everything.
_NOT_FILE_ENCODINGS = frozenset(
    {"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"}
)


def _header_names(first_line: str, delimiter: str) -> list[str]:
    cells = next(csv.reader([first_line], delimiter=delimiter), [])
    return [_column_name(c) for c in cells]


def _sniff(first_line: str) -> str:
    def score(candidate: str) -> tuple[int, int]:
        names = _header_names(first_line, candidate)
        return sum(n in COLUMNS for n in names), len(names)

    return max(DELIMITERS, key=score)


def _records(
    text: str, delimiter: str, *, blank_first: bool = False
) -> Iterator[tuple[int, int, list[str] | csv.Error]]:
    """Yield (first line, last line, cells or the reader's error) for each non-blank record."""
    reader = csv.reader(_lines(text, blank_first=blank_first), delimiter=delimiter, strict=True)
    end = 0
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num <= end:
                # The reader cannot move on: say so rather than drop the rest unread.
                yield start, start, exc
                return
            end = reader.line_num
            yield start, end, exc
            continue
        end = reader.line_num
        # Excel leaves rows of bare separators where cells were once touched.
        if any(c.strip() for c in cells):
            yield start, end, cells


@dataclass(slots=True)
class PersonRow:
    """What the checks against the database need to know of a row, and no more."""

    line: int
    match_key: str
    case_manager: str | None
    born: bool


@dataclass
class CheckedFile:
    """A file read and checked row by row. The rows are read again when they are written."""

    text: str
    delimiter: str
    sep_line: bool
    names: list[str]
    people: list[PersonRow]

    def rows(self, *, skip: set[int]) -> Iterator[Row]:
        records = _records(self.text, self.delimiter, blank_first=self.sep_line)
        next(records, None)  # the header
        for start, _end, cells in records:
            if start in skip or isinstance(cells, csv.Error) or len(cells) != len(self.names):
                continue  # a skipped duplicate (any other problem stopped the import already)
            again = ImportReport()
            row = _validate(start, list(zip(self.names, cells, strict=True)), again)
            if row is None:  # cannot happen: the same text was checked a moment ago
                raise _ReadAgainFailed(start)
            yield row


class _ReadAgainFailed(ValidationFailed):
    def __init__(self, line: int) -> None:
        self.line = line
        super().__init__("this line read differently the second time; nothing was imported")


def _blank(line: str) -> bool:
    return not line.strip().strip(',;\t"').strip()


def _parse(text: str, delimiter: str | None, report: ImportReport) -> CheckedFile:
    first = next(_lines(text), "").rstrip("\r\n")
    excel_sep = _EXCEL_SEP_LINE.match(first)
    given_at = 0  # where the separator was given: on the command line, or on the sep= line
    if excel_sep and not delimiter:
        delimiter, given_at = excel_sep.group(1), 1
    first_line = next(
        (ln.rstrip("\r\n") for ln in _lines(text, blank_first=bool(excel_sep)) if not _blank(ln)),
        "",
    )
    if not first_line:
        raise _Unreadable(RowError(0, "", "the file is empty: no header and no rows"))
    delimiter = _check_delimiter(delimiter, given_at) if delimiter else _sniff(first_line)

    records = _records(text, delimiter, blank_first=bool(excel_sep))
    header = next(records, None)
    if header is None:
        raise _Unreadable(RowError(0, "", "the file is empty: no header and no rows"))
    header_line, header_end, header_cells = header
    if isinstance(header_cells, csv.Error):
        raise _Unreadable(
            RowError(
                header_line, "", _reader_problem(header_cells, header_line, header_end, delimiter)
            )
        )
    names = _check_header(header_line, header_cells, first_line, delimiter)

    people: list[PersonRow] = []
    for start, end, cells in records:
        report.rows_read += 1
        if isinstance(cells, csv.Error):
            report.errors.append(RowError(start, "", _reader_problem(cells, start, end, delimiter)))
        elif len(cells) != len(names):
            report.errors.append(
                RowError(start, "", _width_problem(len(cells), len(names), delimiter, start, end))
            )
        else:
            row = _validate(start, list(zip(names, cells, strict=True)), report)
            if row is not None:
                people.append(
                    PersonRow(
                        row.line,
                        row.data.match_key,
                        row.case_manager,
                        row.data.birth_date is not None,
                    )
                )
    if report.rows_read == 0:
        raise _Unreadable(RowError(header_line, "", "the file has a header but no rows"))
    return CheckedFile(text, delimiter, bool(excel_sep), names, people)


def _check_delimiter(delimiter: str, line: int) -> str:
    # A tab is hard to type on a command line.
    delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter.lower(), delimiter)
    if len(delimiter) != 1 or delimiter in '"\r\n':
        raise _Unreadable(
            RowError(
                line,
                "",
                f"the separator must be one character such as ',' or ';', not {delimiter!r}",
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
    shown = ", ".join(n if n.isprintable() else repr(n) for n in names)
    return f"column{'' if len(names) == 1 else 's'} {shown}"


def _printable(text: str) -> str:
    """``text`` with anything a terminal would act on (a tab, a NUL, an escape) written out."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _reader_problem(error: csv.Error, start: int, end: int, delimiter: str) -> str:
    if "unexpected end of data" in str(error):
        return (
            f'a quote (") opened here is never closed, so the file ends inside it '
            f"(lines {start} to {end}); the file may be cut off or a closing quote is missing"
        )
    if "expected after" in str(error):
        return (
            "a quoted value is followed by more text before the next separator; "
            "check the quotes on this line (a closing quote must be followed by "
            f"{_show(delimiter)})"
        )
    return f"this line cannot be read ({_printable(str(error))})"


def _width_problem(cells: int, columns: int, delimiter: str, start: int, end: int) -> str:
    message = f"the row has {cells} cells but the header has {columns} columns; "
    if cells < columns:
        message += "the line may be cut off or a separator is missing"
    else:
        message += f"a value probably contains a {_show(delimiter)} without quotes around it"
    if end > start:
        message += f" (the row runs from line {start} to line {end}: is a quote missing?)"
    return message


def quote_cell(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def _convert(column: str, value: str) -> Any:
    if column in DATE_COLUMNS:
        iso = _ISO_DATE.fullmatch(value)
        if iso:  # the common case, without strptime's cost (a large file has many dates)
            try:
                return date(*(int(part) for part in iso.groups()))
            except ValueError:
                pass  # 2025-02-30: strptime says no as well, in the same words below
        for fmt in DATE_FORMATS:
            try:
                return datetime.strptime(value, fmt).date()
            except ValueError:
                pass
        raise ValueError(f"{quote_cell(value)} is not a date (use YYYY-MM-DD or DD.MM.YYYY)")
    if column in BOOL_COLUMNS:
        word = value.lower()
        if word in YES or word in NO:
            return word in YES
        raise ValueError(
            f"{quote_cell(value)} is not yes or no (use true/false, ja/nein, yes/no or 1/0)"
        )
    if column == "purpose":
        purpose = PURPOSES.get(value.lower())
        if purpose is None:
            raise ValueError(
                f"{quote_cell(value)} is not a purpose (use work or study; arbeit or studium)"
            )
        return purpose
    return value


def _unstorable(value: str) -> str | None:
    """Why a cell's text cannot be kept as it is, if it cannot."""
    bad = _UNSTORABLE.search(value)
    if bad is None:
        return None
    char = bad.group()
    if "\ud800" <= char <= "\udfff":
        return (
            f"{quote_cell(value)} holds U+{ord(char):04X}, which is not a character; "
            "the file's encoding is probably wrong"
        )
    return (
        f"{quote_cell(value)} holds the control character U+{ord(char):04X}; the file may be "
        "damaged or saved in another encoding (such as UTF-16)"
    )


def _validate(line: int, cells: list[tuple[str, str]], report: ImportReport) -> Row | None:
    given = {c: v.strip() for c, v in cells if c and v.strip()}
    errors = [
        RowError(
            line, "", f"column {i} has a value ({quote_cell(v.strip())}) but no name in the header"
        )
        for i, (c, v) in enumerate(cells, start=1)
        if not c and v.strip()
    ]
    unstorable = {c: why for c, v in given.items() if (why := _unstorable(v))}
    errors.extend(RowError(line, c, why) for c, why in unstorable.items())
    manager = given.pop("case_manager", None)
    values: dict[str, Any] = {}
    for column, text in given.items():
        if column in unstorable:
            continue
        try:
            values[column] = _convert(column, text)
        except ValueError as exc:
            errors.append(RowError(line, column, str(exc)))
    try:
        data = NewcomerIn.model_validate(values)
    except ValidationError as exc:
        # A cell already refused is not also "required but empty".
        errors.extend(e for e in _pydantic_errors(line, exc, given) if e.field not in unstorable)
    else:
        if len(data.match_key) > MATCH_KEY_LENGTH:
            errors.append(
                RowError(
                    line,
                    "family_name",
                    f"together with given_name is too long ({len(data.match_key)} characters "
                    f"once case-folded for the duplicate check, at most {MATCH_KEY_LENGTH})",
                )
            )
    if errors:
        position = {c: i for i, (c, _) in enumerate(cells)}
        report.errors.extend(sorted(errors, key=lambda e: position.get(e.field, -1)))
        return None
    return Row(line=line, data=data, case_manager=manager)


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
                message += f" ({quote_cell(given[other])})"
        text = given.get(column)
        if error["type"] == "missing":
            message = "is required but the cell is empty"
        elif error["type"] == "string_too_long":
            limit = (error.get("ctx") or {}).get("max_length")
            message = f"is too long ({len(text or '')} characters, at most {limit})"
        elif text is not None:
            message = f"{quote_cell(text)} {message}"
        yield RowError(line, column, message)
