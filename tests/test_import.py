"""CSV import of newcomers against a real database: all rows or none, every problem named."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import event, func, select

from tests.conftest import NOW
from tests.helpers import start_case
from tracker.errors import InvalidTransition, PermissionDenied, ValidationFailed
from tracker.journeys import cases, importer, queries
from tracker.journeys.importer import ImportFailed, RowError, import_newcomers
from tracker.models import AuditEvent, Case, Handoff, Newcomer, OutboxMessage, Step, User

HEADER = "given_name,family_name,birth_date,nationality,purpose"


def csv_bytes(*lines: str, newline: str = "\n", encoding: str = "utf-8") -> bytes:
    return (newline.join(lines) + newline).encode(encoding)


def run_import(db, actor, source, **options):
    with db.transaction() as s:
        return import_newcomers(s, actor=actor, source=source, now=NOW, **options)


def refused(db, actor, source, **options) -> ImportFailed:
    with pytest.raises(ImportFailed) as info:
        run_import(db, actor, source, **options)
    return info.value


def problems(failure: ImportFailed) -> list[tuple[int, str]]:
    return [(e.line, e.field) for e in failure.report.errors]


def table_counts(db) -> dict[str, int]:
    with db.read() as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model))
            for model in (Newcomer, Case, Step, Handoff, AuditEvent, OutboxMessage)
        }


def stored_newcomers(db) -> list[Newcomer]:
    with db.read() as s:
        people = list(s.scalars(select(Newcomer).order_by(Newcomer.id)))
        s.expunge_all()  # keep the loaded values readable after the read session ends
    return people


def test_a_good_file_imports_every_row_and_opens_cases_on_the_right_pathways(db, actors, tmp_path):
    cm = actors["cm.mueller"]
    path = tmp_path / "newcomers.csv"
    path.write_bytes(
        csv_bytes(
            HEADER + ",case_manager",
            "Priya,Raman,1994-05-17,IN,work,",
            "Tran,Minh,2001-09-03,VN,study,cm.yilmaz",
            "Ola,Nowak,1990-01-30,PL,work,",
        )
    )
    calls: list[int] = []
    report = run_import(db, cm, path, progress=calls.append)

    assert report.rows_read == 3
    assert [line for line, _ in report.imported] == [2, 3, 4]
    assert sum(calls) == 3  # the progress display counts rows, told once per batch written
    assert report.errors == [] and report.skipped_duplicates == []
    with db.read() as s:
        rows = {r.reference: r for r in queries.list_cases(s, actor=cm, today=NOW.date())}
    by_line = {line: rows[str(ref)] for line, ref in report.imported}
    assert (by_line[2].family_name, by_line[2].pathway) == ("Raman", "skilled_worker")
    assert (by_line[3].family_name, by_line[3].pathway) == ("Minh", "student")
    assert (by_line[4].family_name, by_line[4].pathway) == ("Nowak", "eu_citizen")
    assert by_line[2].case_manager == "cm.mueller"
    assert by_line[3].case_manager == "cm.yilmaz"
    with db.read() as s:
        actions = s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions.count("newcomer.registered") == 3
    assert actions.count("case.opened") == 3
    assert actions[-1] == "newcomers.imported"


def test_several_bad_rows_are_each_named_by_line_and_field_and_nothing_is_written(
    db, actors, tmp_path
):
    cm = actors["cm.mueller"]
    path = tmp_path / "newcomers.csv"
    path.write_bytes(
        csv_bytes(
            HEADER + ",email,eu_citizen,arrival_date,move_in_date",
            "Priya,Raman,1994-05-17,IN,work,priya@example.org,,,",
            ",Okafor,1990-01-01,NG,work,,,,",
            "Anna,Kowalska,31.02.1990,PL,work,,,,",
            "Omar,Haddad,1992-03-04,Syria,holiday,omar-at-example,maybe,,",
            "Lena,Petrenko,1995-06-07,UA,work,,,2026-02-01,2026-01-15",
        )
    )
    before = table_counts(db)

    failure = refused(db, cm, path)

    assert problems(failure) == [
        (3, "given_name"),
        (4, "birth_date"),
        (5, "nationality"),
        (5, "purpose"),
        (5, "email"),
        (5, "eu_citizen"),
        (6, "move_in_date"),
    ]
    assert isinstance(failure, ValidationFailed)
    assert failure.report.rows_read == 5
    assert failure.report.imported == []
    assert table_counts(db) == before
    text = str(failure).splitlines()
    assert text[0] == "7 problems in newcomers.csv; nothing was imported."
    assert "line 3, given_name: is required but the cell is empty" in text
    assert "line 4, birth_date: '31.02.1990' is not a date (use YYYY-MM-DD or DD.MM.YYYY)" in text
    assert (
        "line 5, nationality: 'Syria' must be a two-letter country code such as DE, IN or UA"
        in (text)
    )
    assert "line 5, email: 'omar-at-example' is not an e-mail address" in text
    assert any(t.startswith("line 5, eu_citizen: 'maybe' is not yes or no") for t in text)
    assert "line 6, move_in_date: '2026-01-15' lies before arrival_date ('2026-02-01')" in text


def test_a_german_excel_file_with_semicolons_bom_and_dotted_dates_is_read(db, actors):
    cm = actors["cm.mueller"]
    data = csv_bytes(
        "Given_Name ; Family_Name;Birth_Date;Nationality;Purpose;EU_Citizen;Arrival_Date",
        "Jörg;Weiß;17.05.1994;IN;Arbeit;nein;01.02.2026",
        'Zoë;"Ní Bhriain; Dr.";3.9.2001;IE;Studium;ja;',
        ";;;;;;",
        newline="\r\n",
        encoding="utf-8-sig",
    )
    report = run_import(db, cm, data)

    assert [line for line, _ in report.imported] == [2, 3]
    first, second = stored_newcomers(db)
    assert (first.given_name, first.family_name) == ("Jörg", "Weiß")
    assert first.birth_date == date(1994, 5, 17)
    assert first.arrival_date == date(2026, 2, 1)
    assert (first.purpose, first.eu_citizen) == ("work", False)
    assert (second.given_name, second.family_name) == ("Zoë", "Ní Bhriain; Dr.")
    assert (second.birth_date, second.purpose, second.eu_citizen) == (
        date(2001, 9, 3),
        "study",
        True,
    )


def test_latin_1_bytes_are_refused_with_a_hint_and_read_when_the_encoding_is_given(db, actors):
    cm = actors["cm.mueller"]
    data = csv_bytes(
        HEADER,
        "Anna,Schmidt,1990-01-01,DE,work",
        "Jürgen,Müller,1985-12-24,DE,work",
        encoding="latin-1",
    )

    failure = refused(db, cm, data)
    assert problems(failure) == [(3, "")]
    message = failure.report.errors[0].message
    assert "not UTF-8" in message
    assert "--encoding latin-1" in message
    assert str(failure).startswith("1 problem in the file; nothing was imported.")
    assert stored_newcomers(db) == []

    report = run_import(db, cm, data, encoding="latin-1")
    assert len(report.imported) == 2
    assert [(n.given_name, n.family_name) for n in stored_newcomers(db)][1] == ("Jürgen", "Müller")


def test_a_header_without_the_required_columns_names_them_on_line_1(db, actors):
    cm = actors["cm.mueller"]
    failure = refused(db, cm, csv_bytes("first_name,family_name", "Priya,Raman"))
    assert problems(failure) == [(1, ""), (1, "")]
    missing, unknown = (e.message for e in failure.report.errors)
    assert "given_name" in missing
    assert "first_name" in unknown


def test_a_file_without_a_birth_date_column_is_refused_but_empty_birth_dates_are_fine(db, actors):
    """Duplicates are found by name and birth date: without the column no row could be checked."""
    cm = actors["cm.mueller"]
    failure = refused(db, cm, csv_bytes("given_name,family_name", "Priya,Raman", "Tran,Minh"))
    [error] = failure.report.errors
    assert (error.line, error.field) == (1, "")
    assert error.message == "the header lacks the required column birth_date"
    assert stored_newcomers(db) == []

    report = run_import(
        db, cm, csv_bytes("given_name,family_name,birth_date", "Priya,Raman,", "Tran,Minh,")
    )
    assert len(report.imported) == 2
    assert [n.birth_date for n in stored_newcomers(db)] == [None, None]


def test_a_wrong_separator_is_pointed_out_when_the_columns_are_missing(db, actors):
    cm = actors["cm.mueller"]
    data = csv_bytes("given_name;family_name;birth_date", "Priya;Raman;")
    failure = refused(db, cm, data, delimiter=",")
    [error] = failure.report.errors
    assert error.line == 1
    assert "given_name, family_name" in error.message
    assert "seems to use ';' as separator" in error.message


def test_an_unknown_column_is_named_and_stops_the_import(db, actors):
    cm = actors["cm.mueller"]
    failure = refused(
        db, cm, csv_bytes("given_name,family_name,birth_date,religion", "Priya,Raman,,x")
    )
    [error] = failure.report.errors
    assert (error.line, error.field) == (1, "")
    assert error.message.startswith("unknown column religion")
    assert stored_newcomers(db) == []


def test_an_unterminated_quote_on_the_last_line_is_reported_for_that_line(db, actors):
    cm = actors["cm.mueller"]
    data = csv_bytes(HEADER, "Priya,Raman,1994-05-17,IN,work", 'Tran,"Minh,2001-09-03,VN,st')
    failure = refused(db, cm, data)
    [error] = failure.report.errors
    assert error.line == 3
    assert "never closed" in error.message
    assert stored_newcomers(db) == []


def test_a_cut_off_row_and_a_row_with_too_many_cells_name_their_lines(db, actors):
    cm = actors["cm.mueller"]
    data = csv_bytes(
        HEADER,
        "Priya,Raman,1994-05-17,IN,work",
        "Ana,Silva,Santos,1993-02-01,BR,work",
        "Tran,Minh,2001-09",
    )
    failure = refused(db, cm, data)
    assert problems(failure) == [(3, ""), (4, "")]
    too_many, too_few = (e.message for e in failure.report.errors)
    assert "6 cells but the header has 5 columns" in too_many
    assert "3 cells but the header has 5 columns" in too_few
    assert "cut off" in too_few


def test_a_value_with_an_embedded_newline_keeps_later_line_numbers_right(db, actors):
    cm = actors["cm.mueller"]
    data = csv_bytes(
        "given_name,family_name,phone,birth_date",
        'Priya,Raman,"+49 234 1\n(evenings)",1994-05-17',
        "Tran,Minh,,yesterday",
    )
    failure = refused(db, cm, data)
    assert problems(failure) == [(4, "birth_date")]


def test_an_empty_file_and_a_header_only_file_say_there_are_no_rows(db, actors):
    cm = actors["cm.mueller"]
    for data in (b"", b"\n\n", csv_bytes(HEADER)):
        [error] = refused(db, cm, data).report.errors
        assert "no rows" in error.message


def test_duplicates_inside_the_file_name_the_earlier_line(db, actors):
    cm = actors["cm.mueller"]
    data = csv_bytes(
        HEADER,
        "Priya,Raman,1994-05-17,IN,work",
        "Tran,Minh,2001-09-03,VN,study",
        "  PRIYA , raman ,17.05.1994,IN,work",
    )
    failure = refused(db, cm, data)
    [error] = failure.report.errors
    assert error.line == 4
    assert "the same person as line 2" in error.message
    assert stored_newcomers(db) == []

    report = run_import(db, cm, data, skip_duplicates=True)
    assert [line for line, _ in report.imported] == [2, 3]
    assert [line for line, _ in report.skipped_duplicates] == [4]
    assert len(stored_newcomers(db)) == 2


def test_duplicates_of_people_already_in_the_tracker_name_their_case(db, actors):
    cm = actors["cm.mueller"]
    reference = start_case(db, cm, now=NOW, consent_to=[])  # Priya Raman, born 1994-05-17
    data = csv_bytes(HEADER, "Tran,Minh,2001-09-03,VN,study", "priya,RAMAN,1994-05-17,IN,work")

    failure = refused(db, cm, data)
    [error] = failure.report.errors
    assert error.line == 3
    assert f"already in the tracker as case {reference}" in error.message
    assert len(stored_newcomers(db)) == 1

    report = run_import(db, cm, data, skip_duplicates=True)
    assert [line for line, _ in report.imported] == [2]
    [(line, message)] = report.skipped_duplicates
    assert line == 3 and reference in message
    assert len(stored_newcomers(db)) == 2


def test_names_in_any_script_and_injection_strings_are_stored_literally(db, actors):
    cm = actors["cm.mueller"]
    names = [
        ("محمد", "الحسيني"),
        ("Олена", "Шевченко"),
        ("明", "王"),
        ("प्रिया", "शर्मा"),
        ("Zoë", "Ñúñez-Çelik"),
        ("{{ 7*7 }}", "<script>alert(1)</script>"),
        ('=HYPERLINK("http://x","y")', "Robert'); DROP TABLE newcomers;--"),
    ]
    lines = ["given_name,family_name,birth_date"]
    for given, family in names:
        lines.append(",".join('"' + v.replace('"', '""') + '"' for v in (given, family, "")))
    report = run_import(db, cm, csv_bytes(*lines), open_cases=False)

    assert len(report.imported) == len(names)
    assert all(isinstance(label, int) for _, label in report.imported)
    assert [(n.given_name, n.family_name) for n in stored_newcomers(db)] == names
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 0


def test_a_dry_run_checks_everything_and_writes_nothing(db, actors):
    cm = actors["cm.mueller"]
    before = table_counts(db)
    calls: list[int] = []
    data = csv_bytes(HEADER, "Priya,Raman,1994-05-17,IN,work", "Tran,Minh,2001-09-03,VN,study")
    report = run_import(db, cm, data, dry_run=True, progress=calls.append)
    assert report.dry_run
    assert report.imported == [(2, None), (3, None)]
    assert calls == []
    assert table_counts(db) == before

    bad = csv_bytes(HEADER, "Priya,Raman,1994-13-17,IN,work")
    assert problems(refused(db, cm, bad, dry_run=True)) == [(2, "birth_date")]


@pytest.mark.parametrize("username", ["ihk.hoffmann", "lead.schmidt"])
def test_only_case_managers_may_import(db, actors, username):
    with pytest.raises(PermissionDenied):
        run_import(db, actors[username], csv_bytes(HEADER, "Priya,Raman,1994-05-17,IN,work"))
    assert stored_newcomers(db) == []


def test_an_unknown_case_manager_in_a_row_or_in_the_option_is_an_error(db, actors):
    admin = actors["admin"]
    data = csv_bytes(
        "given_name,family_name,birth_date,case_manager", "Priya,Raman,,cm.nobody", "Tran,Minh,,"
    )
    failure = refused(db, admin, data, case_manager="stadt.weber")
    assert problems(failure) == [(0, "case_manager"), (2, "case_manager")]
    assert str(failure).splitlines()[1] == (
        "case_manager: 'stadt.weber' is not an active case manager"
    )


def test_a_failure_while_writing_leaves_nothing_behind_even_if_the_caller_goes_on(
    db, actors, monkeypatch
):
    cm = actors["cm.mueller"]
    real_step_rows = cases._step_rows
    planned: list[str] = []

    def steps_failing_for_the_second_row(pathway, orgs, **kwargs):
        # The batch has registered both people by now; its cases are planned one by one.
        if planned:
            raise InvalidTransition("the pathway cannot start")
        planned.append(pathway.key)
        return real_step_rows(pathway, orgs, **kwargs)

    monkeypatch.setattr(cases, "_step_rows", steps_failing_for_the_second_row)
    before = table_counts(db)
    data = csv_bytes(HEADER, "Priya,Raman,1994-05-17,IN,work", "Tran,Minh,2001-09-03,VN,study")
    with db.transaction() as s:
        with pytest.raises(ImportFailed) as info:
            import_newcomers(s, actor=cm, source=data, now=NOW)
        s.add(  # the caller carries on and commits other work
            User(username="after.import", display_name="x", role="case_manager", created_at=NOW)
        )
    assert info.value.report.errors == [RowError(3, "", "the pathway cannot start")]
    assert info.value.report.imported == []
    assert table_counts(db) == before
    with db.read() as s:
        assert s.scalar(select(User.id).where(User.username == "after.import")) is not None


def test_a_failure_in_a_later_batch_takes_the_earlier_batches_back_too(db, actors, monkeypatch):
    """Rows are written in batches (here of two): the third batch's failure names its row, and
    the two batches already written are gone with it."""
    cm = actors["cm.mueller"]
    monkeypatch.setattr(importer, "WRITE_BATCH", 2)
    real_step_rows = cases._step_rows
    planned: list[str] = []

    def steps_failing_for_the_fifth_row(pathway, orgs, **kwargs):
        if len(planned) == 4:
            raise InvalidTransition("the pathway cannot start")
        planned.append(pathway.key)
        return real_step_rows(pathway, orgs, **kwargs)

    monkeypatch.setattr(cases, "_step_rows", steps_failing_for_the_fifth_row)
    before = table_counts(db)
    rows = [f"Person{i},Family{i},1990-01-0{i + 1},IN,work" for i in range(6)]
    with db.transaction() as s, pytest.raises(ImportFailed) as info:
        import_newcomers(s, actor=cm, source=csv_bytes(HEADER, *rows), now=NOW)
    assert info.value.report.errors == [RowError(6, "", "the pathway cannot start")]
    assert len(planned) == 4  # two batches were written before the third failed
    assert table_counts(db) == before


def test_a_row_the_database_refuses_is_named_by_its_line_and_nothing_is_written(
    db, actors, monkeypatch
):
    """The checks should leave nothing for the database to refuse; if it refuses a batch all
    the same, the import finds the row it refused, names its line, and writes nothing."""
    cm = actors["cm.mueller"]
    real_row = cases._newcomer_row

    def row_broken_past_every_check(data, now):
        row = real_row(data, now)
        if data.given_name == "Tran":
            row["eu_citizen"] = None  # NOT NULL: the database refuses it
        return row

    monkeypatch.setattr(cases, "_newcomer_row", row_broken_past_every_check)
    before = table_counts(db)
    data = csv_bytes(
        HEADER,
        "Priya,Raman,1994-05-17,IN,work",
        "Ola,Nowak,1990-01-30,PL,work",
        "Tran,Minh,2001-09-03,VN,study",
    )
    with db.transaction() as s, pytest.raises(ImportFailed) as info:
        import_newcomers(s, actor=cm, source=data, now=NOW)
    (error,) = info.value.report.errors
    assert error.line == 4
    assert error.message.startswith("the database refused this row (")
    assert info.value.report.imported == []
    assert table_counts(db) == before


def test_a_long_list_of_problems_is_cut_short_in_the_message(db, actors):
    cm = actors["cm.mueller"]
    rows = [f"Person{i},Family{i},not-a-date,IN,work" for i in range(60)]
    failure = refused(db, cm, csv_bytes(HEADER, *rows))
    text = str(failure).splitlines()
    assert text[0] == "60 problems in the file; nothing was imported."
    assert len(text) == 1 + 50 + 1
    assert text[-1] == "... and 10 more"


def test_checking_a_large_file_asks_the_database_a_few_questions_not_one_per_row(db, actors):
    cm = actors["cm.mueller"]
    start_case(
        db,
        cm,
        now=NOW,
        consent_to=[],
        given_name="Person7",
        family_name="Family7",
        birth_date=date(1990, 1, 1),
    )
    rows = [f"Person{i},Family{i},1990-01-01,IN,work,cm.yilmaz" for i in range(1200)]
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(db.writer, "before_cursor_execute", count)
    try:
        report = run_import(
            db, cm, csv_bytes(HEADER + ",case_manager", *rows), dry_run=True, skip_duplicates=True
        )
    finally:
        event.remove(db.writer, "before_cursor_execute", count)
    assert len(report.imported) == 1199
    assert [line for line, _ in report.skipped_duplicates] == [9]
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 6


def hundred_thousand_rows(bad_line: int | None = None) -> bytes:
    """100,000 different people (lines 2 to 100,001); ``bad_line`` gets an impossible date."""
    lines = [HEADER + ",email"]
    for line in range(2, 100_002):
        born = "2025-02-30" if line == bad_line else f"{1950 + line % 50}-{line % 12 + 1:02d}-15"
        lines.append(f"Person {line},Familie {line},{born},IN,work,p{line}@example.org")
    return csv_bytes(*lines, newline="\r\n")


def test_a_100k_row_file_with_one_impossible_date_near_the_end_is_refused_whole(db, actors):
    cm = actors["cm.mueller"]
    before = table_counts(db)

    failure = refused(db, cm, hundred_thousand_rows(bad_line=99_998))

    assert problems(failure) == [(99_998, "birth_date")]
    assert str(failure).splitlines() == [
        "1 problem in the file; nothing was imported.",
        "line 99998, birth_date: '2025-02-30' is not a date (use YYYY-MM-DD or DD.MM.YYYY)",
    ]
    assert failure.report.rows_read == 100_000
    assert table_counts(db) == before


def test_a_100k_row_file_is_checked_whole_in_a_dry_run(db, actors):
    # The real import of 100,000 rows (cases and all) takes minutes: bench/import_100k.py.
    cm = actors["cm.mueller"]
    before = table_counts(db)

    report = run_import(db, cm, hundred_thousand_rows(), dry_run=True)

    assert report.rows_read == 100_000
    assert report.imported == [(line, None) for line in range(2, 100_002)]
    assert report.errors == [] and report.skipped_duplicates == []
    assert table_counts(db) == before
