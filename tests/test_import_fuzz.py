"""Fuzzing the CSV import: no input crashes it, and no input is half-imported.

Two properties:

- any bytes or text given to ``check_file`` is either accepted or refused with ``ImportFailed``
  whose problems each carry a printable message: never another exception;
- a valid file put through mutations (columns dropped, doubled or swapped, another separator,
  cut off anywhere, impossible dates, other encodings, names in many scripts, injection strings)
  is imported against the real database (SQLite and PostgreSQL) either in full, every name stored
  as the file meant it, or not at all, with every problem naming its line (and its column where a
  single cell is at fault) and the tables as they were.

Runs are derandomised, so CI sees the same inputs every time. How many inputs each property tried
is printed at the end of the test session ("CSV import fuzzing" in the summary).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.conftest import NOW
from tracker.admin.organisations import update_organisation
from tracker.journeys.importer import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    ImportFailed,
    RowError,
    check_file,
    import_newcomers,
)
from tracker.models import AuditEvent, Case, Newcomer, Step
from tracker.reporting import reports
from tracker.schemas import match_key

# How many inputs each property was given, e.g. TRIED["import, mutated file", "sqlite"]; and
# how many of them the importer accepted or refused.
TRIED: Counter[tuple[str, str]] = Counter()
OUTCOMES: Counter[tuple[str, str, str]] = Counter()
DISTINCT: dict[tuple[str, str], set[int]] = {}

PURE = settings(
    max_examples=200,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ON_DB = settings(
    max_examples=50,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class _Summary:
    """Writes the counters into pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not TRIED:
            return
        terminalreporter.section("CSV import fuzzing: inputs tried")
        for (prop, backend), count in sorted(TRIED.items()):
            accepted = OUTCOMES[prop, backend, "accepted"]
            refused = OUTCOMES[prop, backend, "refused"]
            distinct = len(DISTINCT.get((prop, backend), ()))
            where = f" [{backend}]" if backend else ""
            terminalreporter.write_line(
                f"{prop}{where}: {count} inputs, {distinct} different "
                f"({accepted} accepted, {refused} refused)"
            )


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> None:
    manager = request.config.pluginmanager
    if not manager.has_plugin("import-fuzz-summary"):
        manager.register(_Summary(), "import-fuzz-summary")


def _count(prop: str, backend: str, accepted: bool, given: object) -> None:
    TRIED[prop, backend] += 1
    DISTINCT.setdefault((prop, backend), set()).add(hash(repr(given)))
    OUTCOMES[prop, backend, "accepted" if accepted else "refused"] += 1


# --- what every refusal must look like -------------------------------------------------------

# Problems of the whole file, which no single line carries (line 0).
FILE_LEVEL = re.compile(
    r"UTF-16|UTF-32|encoding|the file is empty|separator must be|cannot read|case manager"
)
# Problems of a whole line or row rather than one cell (field "").
LINE_LEVEL = re.compile(
    r"cells but the header|quote|cannot be read|header|column|UTF-8|not valid|same person|"
    r"already in the tracker|separator|no rows"
)


def _printable(text: str) -> bool:
    """Fit for a terminal or a web page: no control characters but line breaks, no surrogates."""
    return all(ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cs") for ch in text) and bool(
        text.strip()
    )


def assert_well_formed(failure: ImportFailed) -> list[RowError]:
    errors = failure.report.errors
    assert errors, "refused without naming a problem"
    text = str(failure)
    assert _printable(text), text
    count = len(errors)
    assert text.splitlines()[0].endswith("; nothing was imported.")
    assert text.startswith(f"{count} problem{'' if count == 1 else 's'} in ")
    assert failure.report.imported == []
    for error in errors:
        assert error.field in ("", *COLUMNS), error
        assert _printable(error.message), error
        if error.line == 0:
            assert FILE_LEVEL.search(error.message), error
        else:
            assert error.line >= 1
        if not error.field:
            assert FILE_LEVEL.search(error.message) or LINE_LEVEL.search(error.message), error
    assert [e.line for e in errors] == sorted(e.line for e in errors)
    return errors


# --- (a) anything at all given to the check --------------------------------------------------

ENCODINGS = [
    None,
    "utf-8",
    "latin-1",
    "cp1252",
    "utf-16",
    "utf-16-be",
    "utf-32",
    "base64",
    "rot13",
    "idna",
    "punycode",
    "unicode_escape",
    "undefined",
    "no-such-codec",
    "a\x00",
    "",
]
DELIMITERS = [None, ",", ";", "\t", "tab", "\\t", "|", "", "ab", '"', "\n", "\x00", "é", " "]
INTERESTING_CELLS = [
    "",
    " ",
    "Priya",
    "Raman",
    "1994-05-17",
    "17.05.1994",
    "2025-02-30",
    "31.04.2024",
    "0000-01-01",
    "9999-12-31",
    "IN",
    "work",
    "studium",
    "ja",
    "WAHR",
    "maybe",
    "cm.mueller",
    "a@b.c",
    '"',
    '""',
    '"a""b"',
    "=cmd|' /C calc'!A0",
    "+SUM(1)",
    "@x",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "'; DROP TABLE newcomers; --",
    "\x00",
    "\u200f\u202e",
    "e\u0301",
    "\ufeff",
    "\r",
    "\u2028",
    "\x85",
]
HEADER_CELLS = [*COLUMNS, "Given Name", "family-name", "", "religion", "sep=;", "\ufeffgiven_name"]


@st.composite
def csv_like(draw: st.DrawFn) -> bytes:
    """Text shaped like a CSV file (so the checks past the header are reached), then mangled."""
    header = draw(st.lists(st.sampled_from(HEADER_CELLS), min_size=1, max_size=6))
    if draw(st.booleans()):  # mostly a header the importer takes, so the rows get checked
        header = [*REQUIRED_COLUMNS, *header[:2]]
    cell = st.one_of(
        st.sampled_from(INTERESTING_CELLS), st.text(max_size=12), st.sampled_from(["Ada", "Li"])
    )
    width = len(header)
    rows = draw(
        st.lists(
            st.lists(cell, min_size=max(width - 1, 0), max_size=width + 1), min_size=0, max_size=5
        )
    )
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote_all = draw(st.booleans())
    lines = [
        sep.join(('"' + c.replace('"', '""') + '"') if quote_all else c for c in row)
        for row in [header, *rows]
    ]
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):  # cut it anywhere, as a file still being written would be
        data = data[: draw(st.integers(0, len(data)))]
    return data


ANY_TEXT = st.text(
    alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=300
)
ANY_INPUT = st.one_of(
    st.binary(max_size=600),
    ANY_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    csv_like(),
    st.deferred(lambda: mutated_files().map(lambda f: f.render()[0])),
)


def _check_anything(data: bytes, encoding: str | None, delimiter: str | None) -> None:
    try:
        report = check_file(data, encoding=encoding, delimiter=delimiter)
    except ImportFailed as failure:
        _count("check_file, any input", "", False, (data, encoding, delimiter))
        assert_well_formed(failure)
    else:
        _count("check_file, any input", "", True, (data, encoding, delimiter))
        lines = [line for line, _ in report.imported]
        assert report.rows_read == len(lines) >= 1
        assert lines == sorted(set(lines)) and lines[0] >= 2


GOOD = b"given_name,family_name,birth_date\nA,B,\n"


def test_any_bytes_are_accepted_or_refused_with_clear_problems() -> None:
    @PURE
    @given(
        data=ANY_INPUT,
        encoding=st.sampled_from(ENCODINGS),
        delimiter=st.sampled_from(DELIMITERS),
    )
    # Regressions: each of these once raised something other than ImportFailed.
    @example(data=b'""\n', encoding=None, delimiter=None)  # StopIteration: no header record
    @example(data=b",,,\r\n", encoding=None, delimiter=None)  # the same
    @example(data=GOOD, encoding="base64", delimiter=None)  # LookupError: not a text encoding
    @example(data=GOOD, encoding="a\x00", delimiter=None)  # ValueError: embedded null character
    @example(data=GOOD, encoding="undefined", delimiter=None)  # UnicodeError
    # Was read as UTF-8 with a NUL after every letter ("unknown columns g\x00i\x00v\x00…").
    @example(
        data="given_name,family_name,birth_date\nA,B,\n".encode("utf-16-le"),
        encoding=None,
        delimiter=None,
    )
    @example(
        data=b"given_name,family_name,birth_date\n\\ud800,B,\n",
        encoding="unicode_escape",
        delimiter=None,
    )
    # A message quoted the csv module's error with the raw separator in it (here a tab).
    @example(data=b'""\x00', encoding=None, delimiter="\t")
    def run(data: bytes, encoding: str | None, delimiter: str | None) -> None:
        _check_anything(data, encoding, delimiter)

    tried = TRIED["check_file, any input", ""]
    run()
    assert TRIED["check_file, any input", ""] - tried >= 200


# --- (b) a valid file, mutated, imported into the real database -------------------------------

SCRIPT_NAMES = [
    ("Priya", "Raman"),
    ("محمد", "الحسيني"),  # Arabic
    ("Олена", "Шевченко"),  # Cyrillic
    ("प्रिया", "शर्मा"),  # Devanagari
    ("明", "王"),  # CJK
    ("美咲", "佐藤"),
    ("Νίκος", "Παπαδόπουλος"),  # Greek
    ("ნინო", "ბერიძე"),  # Georgian
    ("אברהם", "כהן"),  # Hebrew
    ("\u200fمريم\u200f", "O'Brien"),  # right-to-left marks
    ("👩\u200d👩\u200d👧", "Family 🏳️\u200d🌈"),  # emoji joined by zero-width joiners
    ("a\u200db", "x\u200cy"),  # zero-width joiner and non-joiner
    ("Zoë", "Ñúñez-Çelik"),
    ("Jörg", "Weiß"),
    ("e\u0301\u0301", "Zalgơ̸̢"),  # combining marks
    ("Anna  Maria", " von der Leyen "),  # spaces: collapsed and trimmed, as for any name
    ("ß" * 200, "ﬃ" * 30),  # 200 characters, but twice as long once case-folded (match key)
]
INJECTIONS = [
    "=cmd|' /C calc'!A0",
    "+SUM(1)",
    "-2+3",
    "@x",
    "<script>alert(1)</script>",
    "{{ 7*7 }}",
    "'; DROP TABLE newcomers; --",
    "Robert\x00Tables",
    "\x00",
    "${jndi:ldap://x}",
    '"quoted"',
    "a,b;c|d",
    "tab\there",
    "line\nbreak",
    "\\N",
    "NULL",
    '=HYPERLINK("http://x","y")',
]
IMPOSSIBLE_DATES = [
    "2025-02-30",
    "31.04.2024",
    "0000-01-01",
    "2024-13-01",
    "29.02.2023",
    "10000-01-01",
    "17/05/1994",
    "1994-05-17T00:00",
    "yesterday",
    "٢٠٢٥-٠٢-٣٠",
]
PRINTABLE_INJECTIONS = [i for i in INJECTIONS if i.isprintable()]
OPTIONAL = list(OPTIONAL_COLUMNS)
DATES = ("birth_date", "arrival_date", "move_in_date", "permit_expiry")
TODAY = date.today()


@dataclass
class Mutated:
    """A file as the generator built it, and what it means."""

    columns: list[str]
    rows: list[dict[str, str]]
    header: list[str] = field(default_factory=list)  # as written ("Given Name" for given_name)
    delimiter: str = ","
    newline: str = "\n"
    quote_all: bool = False
    encoding: str = "utf-8"
    declare_encoding: bool = False
    sep_line: bool = False
    blank_lines: bool = False
    cut: float | None = None  # keep this share of the bytes
    open_cases: bool = True
    # Mutations after which the exact problems are not worked out here (only their form).
    unpredictable: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)

    def render(self) -> tuple[bytes, str | None]:
        """The file's bytes, and the encoding option given to the importer."""
        text = "".join(self.lines())
        data = text.encode(self.encoding)
        if self.cut is not None:
            data = data[: int(len(data) * self.cut)]
        return data, (self.encoding if self.declare_encoding else None)

    def lines(self) -> Iterator[str]:
        if self.sep_line:
            yield f"sep={self.delimiter}{self.newline}"
        yield self._line(self.header or self.columns)
        for row in self.rows:
            yield self._line([row.get(c, "") for c in self.columns])
            if self.blank_lines:
                yield self.newline

    def _line(self, cells: list[str]) -> str:
        def cell(value: str) -> str:
            special = any(ch in value for ch in (self.delimiter, '"', "\r", "\n"))
            return '"' + value.replace('"', '""') + '"' if self.quote_all or special else value

        return self.delimiter.join(cell(v) for v in cells) + self.newline


def _valid_row(
    i: int, names: tuple[str, str], columns: list[str], draw: st.DrawFn
) -> dict[str, str]:
    """Right values for the file's columns (only those are drawn, so no draw goes unused)."""
    dotted = "." if any(c in DATES for c in columns) and draw(st.booleans()) else ""

    def show(d: date) -> str:
        return f"{d.day}.{d.month}.{d.year}" if dotted else d.isoformat()

    choices = {
        "nationality": ["IN", "de", "UA", "", "SY"],
        "purpose": ["work", "Studium", "", "study", "Arbeit"],
        "email": ["", f"person{i}@example.org", "x.y@beispiel.de"],
        "phone": ["", "+49 234 1", "+49 234 1\n(abends)"],
        "eu_citizen": ["", "ja", "nein", "WAHR", "false"],
        "preferred_language": ["", "de", "en", "AR"],
        "permit_expiry": ["", "2027-01-31", "9999-12-31"],
        "case_manager": ["", "cm.mueller", "cm.yilmaz"],
    }
    row = {"given_name": names[0], "family_name": names[1]}
    row.update({c: draw(st.sampled_from(v)) for c, v in choices.items() if c in columns})
    if "birth_date" in columns:
        row["birth_date"] = show(date(1950, 1, 1) + timedelta(days=draw(st.integers(0, 20_000))))
    if "arrival_date" in columns or "move_in_date" in columns:
        arrival = date(2025, 1, 1) + timedelta(days=draw(st.integers(0, 400)))
        row["arrival_date"] = show(arrival)
        row["move_in_date"] = show(arrival + timedelta(days=draw(st.integers(0, 60))))
    return row


@st.composite
def mutated_files(draw: st.DrawFn, *, harmless: bool = False) -> Mutated:
    """A valid file, then up to three mutations (``harmless``: only those that keep it valid)."""
    optional = draw(st.lists(st.sampled_from(OPTIONAL), unique=True, max_size=6))
    columns = draw(st.permutations([*REQUIRED_COLUMNS, *optional]))  # swapped columns
    pairs = SCRIPT_NAMES[:-1] if harmless else SCRIPT_NAMES
    injections = PRINTABLE_INJECTIONS if harmless else INJECTIONS
    names = st.one_of(
        st.sampled_from(pairs),
        st.sampled_from(pairs),
        st.tuples(st.sampled_from(injections), st.sampled_from([n for _, n in SCRIPT_NAMES])),
        st.tuples(
            st.text(
                st.characters(codec="utf-8", exclude_categories=["Cc"]), min_size=1, max_size=20
            ),
            st.sampled_from([n for _, n in SCRIPT_NAMES[:-1]]),
        ),
    )
    # Different people (a duplicate is one mutation among others, not the rule).
    people = draw(
        st.lists(
            names,
            min_size=1,
            max_size=4,
            unique_by=lambda n: (
                " ".join(n[0].split()).casefold(),
                " ".join(n[1].split()).casefold(),
            ),
        )
    )
    rows = [_valid_row(i, pair, columns, draw) for i, pair in enumerate(people)]
    f = Mutated(columns=columns, rows=rows, open_cases=draw(st.booleans()))
    choices = HARMLESS_MUTATIONS if harmless else MUTATIONS + HARMLESS_MUTATIONS
    steps = draw(st.lists(st.sampled_from(choices), max_size=3))
    # Bytes last: a name added after the encoding was chosen might not fit in it.
    for step in sorted(steps, key=lambda m: m in (other_encoding, declared_encoding, cut_off)):
        f = step(f, draw)
    return f


def _pick_row(f: Mutated, draw: st.DrawFn) -> dict[str, str]:
    return f.rows[draw(st.integers(0, len(f.rows) - 1))]


def impossible_date(f: Mutated, draw: st.DrawFn) -> Mutated:
    present = [c for c in DATES if c in f.columns]
    if not present:
        return f
    column = draw(st.sampled_from(present))
    value = draw(st.sampled_from([*IMPOSSIBLE_DATES, "9999-12-31", "1899-12-31"]))
    _pick_row(f, draw)[column] = value
    return replace(f, steps=[*f.steps, f"impossible date {value!r} in {column}"])


def name_from_a_script_or_an_injection(f: Mutated, draw: st.DrawFn) -> Mutated:
    column = draw(st.sampled_from(["given_name", "family_name"]))
    value = draw(st.sampled_from([*INJECTIONS, *(n for pair in SCRIPT_NAMES for n in pair)]))
    _pick_row(f, draw)[column] = value
    return replace(f, steps=[*f.steps, f"{column} {value!r}"])


def printable_name(f: Mutated, draw: st.DrawFn) -> Mutated:
    column = draw(st.sampled_from(["given_name", "family_name"]))
    value = draw(st.sampled_from([*PRINTABLE_INJECTIONS, *(n for n, _ in SCRIPT_NAMES[:-1])]))
    _pick_row(f, draw)[column] = value
    return replace(f, steps=[*f.steps, f"{column} {value!r}"])


def injection_in_any_cell(f: Mutated, draw: st.DrawFn) -> Mutated:
    column = draw(st.sampled_from(f.columns))
    value = draw(st.sampled_from(INJECTIONS))
    _pick_row(f, draw)[column] = value
    return replace(
        f, steps=[*f.steps, f"{column} {value!r}"], unpredictable=[*f.unpredictable, "cell"]
    )


def drop_column(f: Mutated, draw: st.DrawFn) -> Mutated:
    column = draw(st.sampled_from(f.columns))
    header = [h for h, c in zip(f.header or f.columns, f.columns, strict=True) if c != column]
    return replace(
        f,
        columns=[c for c in f.columns if c != column],
        header=header if f.header else [],
        steps=[*f.steps, f"drop {column}"],
    )


def duplicate_column(f: Mutated, draw: st.DrawFn) -> Mutated:
    column = draw(st.sampled_from(f.columns))
    at = draw(st.integers(0, len(f.columns)))
    header = list(f.header or f.columns)
    header.insert(at, column)
    columns = list(f.columns)
    columns.insert(at, column)
    return replace(f, columns=columns, header=header, steps=[*f.steps, f"twice {column}"])


def swap_cells_in_a_row(f: Mutated, draw: st.DrawFn) -> Mutated:
    if len(f.columns) < 2:
        return f
    a, b = draw(st.permutations(f.columns))[:2]
    row = _pick_row(f, draw)
    row[a], row[b] = row.get(b, ""), row.get(a, "")
    return replace(
        f, steps=[*f.steps, f"swap {a}/{b} in a row"], unpredictable=[*f.unpredictable, "swap"]
    )


def other_separator(f: Mutated, draw: st.DrawFn) -> Mutated:
    sep = draw(st.sampled_from([";", "\t", "|"]))  # "|" is not guessed: it needs a "sep=|" line
    return replace(f, delimiter=sep, steps=[*f.steps, f"separator {sep!r}"])


def known_separator(f: Mutated, draw: st.DrawFn) -> Mutated:
    sep = draw(st.sampled_from([";", "\t"]))
    return replace(f, delimiter=sep, steps=[*f.steps, f"separator {sep!r}"])


def other_layout(f: Mutated, draw: st.DrawFn) -> Mutated:
    newline = draw(st.sampled_from(["\r\n", "\r", "\n"]))
    return replace(
        f,
        newline=newline,
        quote_all=draw(st.booleans()),
        sep_line=draw(st.booleans()),
        blank_lines=draw(st.booleans()),
        header=[
            draw(st.sampled_from([c, c.replace("_", " ").title(), c.replace("_", "-").upper()]))
            for c in f.columns
        ],
        steps=[*f.steps, f"layout {newline!r}"],
    )


def other_encoding(f: Mutated, draw: st.DrawFn) -> Mutated:
    encoding = draw(
        st.sampled_from(["utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-16-le", "utf-32"])
    )
    try:
        "".join(f.lines()).encode(encoding)
    except UnicodeEncodeError:
        return f  # these names cannot be written in it
    return replace(
        f,
        encoding=encoding,
        declare_encoding=draw(st.booleans()),
        steps=[*f.steps, f"encoding {encoding}"],
    )


def cut_off(f: Mutated, draw: st.DrawFn) -> Mutated:
    share = draw(st.floats(0, 1))
    return replace(f, cut=share, steps=[*f.steps, f"cut at {share:.0%}"])


MUTATIONS = [
    impossible_date,
    name_from_a_script_or_an_injection,
    injection_in_any_cell,
    drop_column,
    duplicate_column,
    swap_cells_in_a_row,
    other_separator,
    other_layout,
    other_encoding,
    cut_off,
]


# Drawn as often again: about half the files should still be importable after the mutations.
def declared_encoding(f: Mutated, draw: st.DrawFn) -> Mutated:
    """Another encoding, said so (or UTF-8 with a byte-order mark, which needs no saying)."""
    f = other_encoding(f, draw)
    return replace(f, declare_encoding=f.encoding != "utf-8-sig")


HARMLESS_MUTATIONS = [printable_name, known_separator, other_layout, declared_encoding]


# --- what the file means, read independently of the importer ----------------------------------


def _decoded(data: bytes, encoding: str | None) -> str | None:
    """The documented rule: UTF-8 (a BOM allowed) unless an encoding is given."""
    if encoding:
        return data.decode(encoding).removeprefix("\ufeff")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _line_breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def meaning(f: Mutated, data: bytes, encoding: str | None) -> list[tuple[int, dict[str, str]]]:
    """(line, {column: cell}) for every row, read with the separator the generator used.

    Raises ValueError where the file cannot mean anything: it must then be refused."""
    try:
        text = _decoded(data, encoding)
    except UnicodeDecodeError:
        raise ValueError("a cut inside a character") from None
    head = data[:4096]
    if text is None or (not encoding and len(head) >= 8 and head.count(0) * 4 >= len(head)):
        raise ValueError("not UTF-8, or UTF-16 without a byte-order mark")
    if f.delimiter not in (",", ";", "\t") and not f.sep_line:
        raise ValueError("a separator the importer does not guess (it must be given)")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=f.delimiter, strict=True)
    records: list[tuple[int, list[str]]] = []
    try:
        previous = 0
        for cells in reader:
            if any(c.strip() for c in cells):
                records.append((previous + 1, cells))
            previous = reader.line_num
    except csv.Error:
        raise ValueError("a cut inside quotes") from None
    if f.sep_line:
        records = [r for r in records if r[0] != 1]
    if len(records) < 2:
        raise ValueError("no rows")
    header = [f.columns[i] if i < len(f.columns) else "?" for i in range(len(records[0][1]))]
    if len(records[0][1]) != len(f.columns) or len(set(header)) != len(header):
        raise ValueError("the header changed")
    if set(REQUIRED_COLUMNS) - set(header):
        raise ValueError("a required column is missing")
    rows = []
    for line, cells in records[1:]:
        if len(cells) != len(header):
            raise ValueError(f"line {line} has the wrong width")
        rows.append((line, dict(zip(header, cells, strict=True))))
    return rows


def _collapsed(name: str) -> str:
    return " ".join(name.split())


def _parse_date(value: str) -> date | None:
    iso = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", value)
    dotted = re.fullmatch(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", value)
    try:
        if iso:
            return date(int(iso[1]), int(iso[2]), int(iso[3]))
        if dotted:
            return date(int(dotted[3]), int(dotted[2]), int(dotted[1]))
    except ValueError:
        return None
    return None


def _bad_text(value: str) -> bool:
    return any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in value)


def expected_problems(
    rows: list[tuple[int, dict[str, str]]], stored_keys: set[str], open_cases: bool
) -> set[tuple[int, str]]:
    """The (line, column) of every problem, worked out from the rules the issue states."""
    problems: set[tuple[int, str]] = set()
    seen: set[str] = set()
    for line, row in rows:
        wrong: set[str] = set()
        for column in ("given_name", "family_name"):
            value = row[column].strip()
            if not value or _bad_text(value) or len(value) > 200:
                wrong.add(column)
        for column, value in row.items():  # no cell keeps a control character but line breaks
            if column in COLUMNS and _bad_text(value.strip().replace("\n", "").replace("\r", "")):
                wrong.add(column)
        dates: dict[str, date] = {}
        for column in DATES:
            value = row.get(column, "").strip()
            if not value:
                continue
            parsed = None if column in wrong else _parse_date(value)
            if parsed is None or (
                column == "birth_date" and not date(1900, 1, 1) <= parsed <= TODAY
            ):
                wrong.add(column)
            else:
                dates[column] = parsed
        arrival, move_in, born = (
            dates.get(c) for c in ("arrival_date", "move_in_date", "birth_date")
        )
        if not wrong:  # the checks across cells run once every cell is right, first failure only
            if arrival and move_in and move_in < arrival:
                wrong.add("move_in_date")
            elif arrival and born and arrival < born:
                wrong.add("arrival_date")
        problems |= {(line, c) for c in wrong}
        manager = row.get("case_manager", "").strip()
        if open_cases and manager and manager not in ("cm.mueller", "cm.yilmaz"):
            problems.add((line, "case_manager"))  # the row is still checked for duplicates
        if wrong:
            continue
        key = match_key(_collapsed(row["family_name"]), _collapsed(row["given_name"]), born)
        if len(key) > 420:
            problems.add((line, "family_name"))
            continue
        if key in stored_keys or key in seen:
            problems.add((line, ""))
        seen.add(key)
    return problems


def table_counts(session) -> dict[str, int]:
    return {
        m.__tablename__: session.scalar(select(func.count()).select_from(m))
        for m in (Newcomer, Case, Step, AuditEvent)
    }


class _LeaveNothing(Exception):
    """Rolls an accepted example back, so that every example meets the same database."""


def _run_mutated(db, actor, backend: str, f: Mutated, prop: str) -> None:
    data, encoding = f.render()
    try:
        rows: list[tuple[int, dict[str, str]]] | None = meaning(f, data, encoding)
    except ValueError:
        rows = None
    with db.read() as s:
        committed = table_counts(s)
    try:
        with db.transaction() as s:
            stored_keys = set(s.scalars(select(Newcomer.match_key)))
            last_id = s.scalar(select(func.max(Newcomer.id))) or 0
            before = table_counts(s)
            try:
                report = import_newcomers(
                    s, actor=actor, source=data, encoding=encoding, open_cases=f.open_cases, now=NOW
                )
            except ImportFailed as failure:
                _count(prop, backend, False, (data, encoding, f.open_cases))
                errors = assert_well_formed(failure)
                # Nothing left behind inside the caller's transaction either; the caller then
                # commits whatever else it did (here: nothing), as a careless caller would.
                assert table_counts(s) == before, f.steps
                if rows is not None and not f.unpredictable:
                    expected = expected_problems(rows, stored_keys, f.open_cases)
                    assert {(e.line, e.field) for e in errors} == expected, (f.steps, errors)
                return
            _count(prop, backend, True, (data, encoding, f.open_cases))
            assert rows is not None, f"accepted a file that means nothing: {f.steps}"
            if not f.unpredictable:
                assert expected_problems(rows, stored_keys, f.open_cases) == set(), f.steps
            assert [line for line, _ in report.imported] == [line for line, _ in rows]
            stored = s.execute(
                select(Newcomer.given_name, Newcomer.family_name, Newcomer.email, Newcomer.phone)
                .where(Newcomer.id > last_id)
                .order_by(Newcomer.id)
            ).all()
            meant = [
                (
                    _collapsed(row["given_name"]),
                    _collapsed(row["family_name"]),
                    row.get("email", "").strip() or None,
                    row.get("phone", "").strip() or None,
                )
                for _, row in rows
            ]
            assert [tuple(r) for r in stored] == meant, f.steps
            after = table_counts(s)
            assert after["newcomers"] - before["newcomers"] == len(rows)
            assert after["cases"] - before["cases"] == (len(rows) if f.open_cases else 0)
            raise _LeaveNothing
    except _LeaveNothing:
        pass
    finally:
        with db.read() as s:
            assert table_counts(s) == committed, f.steps


# A NUL in a cell other than a name, and a family name twice as long once case-folded: both
# passed every check and then made PostgreSQL refuse the INSERT (DataError, a traceback).
_NUL_IN_EMAIL = Mutated(
    columns=["given_name", "family_name", "birth_date", "email"],
    rows=[{"given_name": "Ada", "family_name": "Nul", "email": "a\x00@b.c"}],
)
_LONG_FOLDED = Mutated(
    columns=["given_name", "family_name", "birth_date"],
    rows=[{"given_name": "ﬃ" * 30, "family_name": "ß" * 200}],
)
# Used to be read as UTF-8 text with a NUL after every letter: "unknown columns g\x00i\x00…".
_UTF16_NO_BOM = Mutated(
    columns=["given_name", "family_name", "birth_date"],
    rows=[{"given_name": "Ada", "family_name": "Lovelace"}],
    encoding="utf-16-le",
)


MUTATED = "import, mutated file"
VALID = "import, valid file in any layout"


# Old Mac line ends (a lone CR) and Excel's "sep=," line: the first line was taken to be the whole
# file, the sep= line went unseen and became the header ("the header lacks ... given_name").
_CR_ONLY_WITH_SEP_LINE = Mutated(
    columns=["given_name", "family_name", "birth_date"],
    rows=[{"given_name": "Priya", "family_name": "Raman"}],
    newline="\r",
    sep_line=True,
)


def test_mutated_files_are_imported_whole_or_not_at_all(db, actors) -> None:
    backend = "sqlite" if db.url.startswith("sqlite") else "postgresql"
    actor = actors["cm.mueller"]
    # People already in the tracker, so that some rows of the examples are duplicates of them.
    with db.transaction() as s:
        (g1, f1), (g2, f2) = SCRIPT_NAMES[3:5]
        people = f"{g1},{f1},\n{g2},{f2},1990-01-01\n"
        import_newcomers(
            s, actor=actor, source=f"given_name,family_name,birth_date\n{people}".encode(), now=NOW
        )

    @ON_DB
    @given(f=mutated_files())
    @example(f=_NUL_IN_EMAIL)
    @example(f=_LONG_FOLDED)
    @example(f=_UTF16_NO_BOM)
    def run(f: Mutated) -> None:
        _run_mutated(db, actor, backend, f, MUTATED)

    tried = TRIED[MUTATED, backend]
    run()
    assert TRIED[MUTATED, backend] - tried >= 50


def test_valid_files_in_any_layout_encoding_and_script_are_imported_in_full(db, actors) -> None:
    backend = "sqlite" if db.url.startswith("sqlite") else "postgresql"
    actor = actors["cm.mueller"]

    @ON_DB
    @given(f=mutated_files(harmless=True))
    @example(f=_CR_ONLY_WITH_SEP_LINE)
    def run(f: Mutated) -> None:
        _run_mutated(db, actor, backend, f, VALID)

    tried, accepted = TRIED[VALID, backend], OUTCOMES[VALID, backend, "accepted"]
    run()
    tried, accepted = TRIED[VALID, backend] - tried, OUTCOMES[VALID, backend, "accepted"] - accepted
    assert tried >= 50
    # Refused only where a generated name is blank or alike (the oracle agreed on each one).
    assert accepted >= tried * 0.8


# --- CSV on the way out ------------------------------------------------------------------------

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _harmless(cell: str) -> bool:
    if not cell.startswith(FORMULA_START):
        return True
    try:
        float(cell)  # a negative number is a number, not a formula
    except ValueError:
        return False
    return True


def test_the_report_csv_carries_no_formula_from_names_people_typed(db, actors) -> None:
    """The tracker's only CSV export (tracker/reporting/reports.py) writes keys and counts, never
    names: an organisation or a newcomer named like a formula does not reach it."""
    admin = actors["admin"]
    with db.transaction() as s:
        update_organisation(s, actor=admin, key="stadt-bochum", name="=cmd|' /C calc'!A0", now=NOW)
        import_newcomers(
            s,
            actor=actors["cm.mueller"],
            source=b'given_name,family_name,birth_date\n"=HYPERLINK(""http://x"",""y"")",@x,\n'
            b"+SUM(1),-2+3,\n",
            now=NOW,
        )
    with db.read() as s:
        made = reports.generate(
            s,
            actor=actors["lead.schmidt"],
            kind="monthly",
            period="2026-03",
            fmt="csv",
            today=NOW.date(),
            generated_at=datetime(2026, 3, 2, 9, 0),
        )
    text = made.content.decode("utf-8-sig")
    cells = [c for row in csv.reader(io.StringIO(text, newline="")) for c in row]
    assert len(cells) > 7
    assert [c for c in cells if not _harmless(c)] == []
    assert "calc" not in text and "HYPERLINK" not in text
