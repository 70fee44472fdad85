"""What people typed is printed as they typed it: a name that looks like Rich markup, or that
holds terminal escape sequences, never breaks a list, never styles the output and never reaches
the terminal as a hyperlink or a colour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

from sqlalchemy import select, update

from tests.conftest import NOW
from tests.helpers import advance, start_case
from tracker import clocks
from tracker.journeys.steps import complete_step
from tracker.models import Case, Newcomer

MARKUP = "[/]"
LINK = "[link=http://evil.example]click[/link]"
# Colour, then a terminal hyperlink (OSC 8): neither is accepted by the forms, both can come
# from older data or be typed into free text such as a reason.
ESCAPES = "Rot\x1b[31mRed\x1b]8;;http://x\x1b\\Link\x1b]8;;\x1b\\"
ESCAPES_SHOWN = "Rot\\x1b[31mRed\\x1b]8;;http://x\\x1b\\Link\\x1b]8;;\\x1b\\"


def shows(cli, *args: str, expect: list[str], stream: str = "out") -> str:
    """Run a command that must succeed and print each expected text literally; nothing it
    prints may hold an escape sequence (the test's output is no terminal, so Rich adds none)."""
    code, out, err = cli(*args)
    assert code == 0, err or out
    text = out if stream == "out" else err
    for wanted in expect:
        assert wanted in text, (args, wanted, text)
    assert "\x1b" not in out + err, args
    return text


def refuses(cli, *args: str, expect: list[str]) -> str:
    """Run a command that must fail with one clear line repeating the input literally."""
    code, out, err = cli(*args)
    assert code == 1, (args, out, err)
    assert "Traceback" not in err and "MarkupError" not in err
    for wanted in expect:
        assert wanted in err, (args, wanted, err)
    assert "\x1b" not in out + err, args
    return err


def register(cli, given: str, family: str) -> str:
    code, out, err = cli(
        "newcomer", "add", "--as", "cm.mueller", "--given-name", given, "--family-name", family,
        "--nationality", "VN", "--purpose", "study", "--json",
    )  # fmt: skip
    assert code == 0, err
    return str(json.loads(out)["reference"])


def with_escapes(db, reference: str) -> None:
    """Give a newcomer the family name with escapes, as data from before the forms checked it."""
    with db.transaction() as s:
        newcomer_id = s.scalar(select(Case.newcomer_id).where(Case.reference == reference))
        s.execute(update(Newcomer).where(Newcomer.id == newcomer_id).values(family_name=ESCAPES))


def test_case_lists_views_and_queues_print_names_and_reasons_literally(cli, db):
    bracket = register(cli, MARKUP, "Klammer")
    link = register(cli, "Mallory", LINK)
    escapes = register(cli, "Ansi", "Placeholder")
    with_escapes(db, escapes)
    for ref in (bracket, link, escapes):
        shows(cli, "consent", "give", ref, "akafoe", "--as", "cm.mueller", expect=[ref])
    shows(
        cli, "handoff", "decline", link, "housing", "--as", "akafoe.fischer", "-r", LINK,
        expect=["declined"],
    )  # fmt: skip
    shows(
        cli, "step", "block", escapes, "housing", "--as", "cm.mueller", "-r", ESCAPES,
        expect=["blocked"],
    )  # fmt: skip

    shows(cli, "case", "show", bracket, "--as", "cm.mueller", expect=[f"given_name: {MARKUP}"])
    shows(cli, "case", "show", link, "--as", "cm.mueller", expect=[LINK, f"declined: {LINK}"])
    shows(cli, "case", "show", escapes, "--as", "cm.mueller", expect=[ESCAPES_SHOWN])
    every_name = [f"{MARKUP} Klammer", f"Mallory {LINK}", f"Ansi {ESCAPES_SHOWN}"]
    shows(cli, "case", "list", "--as", "cm.mueller", expect=every_name)
    shows(cli, "case", "list", "--as", "cm.mueller", "--search", "[", expect=[f"{MARKUP} Klammer"])
    shows(cli, "case", "timeline", link, "--as", "cm.mueller", expect=[LINK])
    shows(cli, "case", "timeline", escapes, "--as", "cm.mueller", expect=[ESCAPES_SHOWN])
    shows(cli, "queue", "akafoe", "--as", "cm.mueller", expect=[f"{MARKUP} Klammer"])
    shows(cli, "queue", "--as", "akafoe.fischer", expect=[f"{MARKUP} Klammer"])
    shows(
        cli, "queue", "akafoe", "--as", "cm.mueller", "--state", "declined",
        expect=[f"Mallory {LINK}"],
    )  # fmt: skip


def test_fit_participants_and_offers_print_names_titles_and_places_literally(cli, db, actors):
    cm = actors["cm.mueller"]
    refs = [
        start_case(db, cm, now=NOW, purpose="study", nationality="VN", given_name=given)
        for given in (MARKUP, LINK, "Ansi")
    ]
    with_escapes(db, refs[2])
    for ref in refs:
        for key in ("housing", "registration"):
            with db.transaction() as s:
                complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)
            advance(db, cm, ref, now=NOW)
        shows(
            cli, "fit", "enrol", ref, "--as", "cm.mueller", "--channel", "other",
            "--programme", f"Bergbau {LINK}", "--semester", "1", expect=["enrolled"],
        )  # fmt: skip
    shows(
        cli, "fit", "participants", "--as", "thga.nowak",
        expect=[f"{MARKUP} Raman", f"{LINK} Raman", f"Ansi {ESCAPES_SHOWN}", f"Bergbau {LINK}"],
    )  # fmt: skip
    day = clocks.local_today() + timedelta(days=30)
    shows(
        cli, "fit", "offer", "add", "--as", "thga.nowak", "--kind", "salary_training",
        "--title", f"Gehalt {MARKUP} {LINK}", "--starts", f"{day} 09:00",
        "--ends", f"{day} 12:00", "--place", f"Haus {ESCAPES}", "--capacity", "3",
        expect=[f"Gehalt {MARKUP} {LINK}"],
    )  # fmt: skip
    shows(
        cli, "fit", "offers", "--as", "thga.nowak",
        expect=[f"Gehalt {MARKUP} {LINK}", f"Haus {ESCAPES_SHOWN}"],
    )  # fmt: skip


def test_organisations_users_and_the_access_log_print_their_names_literally(cli, db):
    ref = register(cli, MARKUP, "Klammer")
    shows(cli, "consent", "give", ref, "akafoe", "--as", "cm.mueller", expect=["akafoe"])
    shows(cli, "org", "rename", "akafoe", LINK, "--as", "admin", expect=[LINK])
    shows(cli, "org", "add", "esc-org", ESCAPES, "--as", "admin", expect=["esc-org"])
    shows(cli, "org", "list", expect=[LINK, ESCAPES_SHOWN])
    shows(
        cli, "user", "add", "u.markup", "--display-name", f"{MARKUP} {LINK}",
        "--role", "case_manager", "--organisation", "kim-bochum", "--as", "admin",
        expect=["u.markup"],
    )  # fmt: skip
    shows(cli, "user", "list", "--as", "admin", expect=[f"{MARKUP} {LINK}"])
    shows(cli, "queue", "--as", "akafoe.fischer", expect=[f"{MARKUP} Klammer"])
    shows(cli, "access-log", ref, "--as", "cm.mueller", expect=[LINK])
    shows(cli, "case", "show", ref, "--as", "cm.mueller", expect=[f"given_name: {MARKUP}"])


def test_errors_and_import_reports_repeat_what_was_typed_literally(cli, db, tmp_path):
    refuses(cli, "case", "show", ESCAPES, "--as", "cm.mueller", expect=["Rot\\x1b[31mRed"])
    refuses(cli, "case", "list", "--as", ESCAPES, expect=["Rot\\x1b[31mRed"])
    refuses(cli, "case", "list", "--as", LINK, expect=[LINK])
    refuses(cli, "case", "timeline", MARKUP, "--as", "cm.mueller", expect=[MARKUP])
    shows(cli, "erasures", ESCAPES, "--as", "admin", expect=[ESCAPES_SHOWN])

    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"given_name,family_name,birth_date,nationality\n{MARKUP},Klammer,1990-01-01,{LINK}\n",
        encoding="utf-8",
    )
    refuses(cli, "import", str(bad), "--as", "cm.mueller", expect=[LINK])
    good = tmp_path / "good.csv"
    good.write_text(
        "given_name,family_name,birth_date,nationality,purpose\n"
        f"{MARKUP},Klammer,1990-01-01,VN,study\n"
        f'"{LINK}",Mallory,1991-02-02,VN,study\n',
        encoding="utf-8",
    )
    shows(cli, "import", str(good), "--as", "cm.mueller", expect=["2 imported"])
    shows(
        cli, "import", str(good), "--as", "cm.mueller", "--skip-duplicates",
        expect=["0 imported", "skipped line 2", "skipped line 3"],
    )  # fmt: skip
    shows(
        cli, "case", "list", "--as", "cm.mueller",
        expect=[f"{MARKUP} Klammer", f"{LINK} Mallory"],
    )  # fmt: skip


def test_on_a_terminal_a_name_sends_no_hyperlink_and_no_colour(cli, db):
    """The real command on a colour terminal (FORCE_COLOR): Rich styles its own output, but
    the link in a name stays text and the name's escapes arrive as visible characters."""
    register(cli, "Mallory", LINK)
    escapes = register(cli, "Ansi", "Placeholder")
    with_escapes(db, escapes)
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "200"}
    env.pop("NO_COLOR", None)
    for args in (["case", "list"], ["case", "show", escapes]):
        done = subprocess.run(
            [sys.executable, "-m", "tracker.cli.main", *args, "--as", "cm.mueller"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "\x1b[" in done.stdout  # a terminal indeed: Rich's own styles are there
        assert "\x1b]8;" not in done.stdout
        assert ESCAPES not in done.stdout and "\x1b[31mRed" not in done.stdout
        assert ESCAPES_SHOWN in done.stdout
        if args == ["case", "list"]:
            assert LINK in done.stdout
