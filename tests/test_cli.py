"""The `onboarding` command end to end: real database, real output, real exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tracker.cli.main import app
from tracker.config import get_settings
from tracker.db import get_database

runner = CliRunner()


def _json(cli, *args):
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_a_case_manager_registers_a_newcomer_and_sees_the_case(cli):
    made = _json(
        cli,
        "newcomer",
        "add",
        "--as",
        "cm.mueller",
        "--given-name",
        "Olena",
        "--family-name",
        "Kovalenko",
        "--birth-date",
        "1991-04-02",
        "--nationality",
        "UA",
        "--language",
        "uk",
        "--permit-expiry",
        "2026-12-31",
    )
    ref = made["reference"]
    view = _json(cli, "case", "show", ref, "--as", "cm.mueller")
    assert view["pathway"] == "skilled_worker"
    assert view["newcomer"]["family_name"] == "Kovalenko"
    assert [s["key"] for s in view["steps"] if s["state"] == "open"] == ["recognition", "job_offer"]
    cases = _json(cli, "case", "list", "--as", "cm.mueller", "--manager", "me")
    assert [c["reference"] for c in cases] == [ref]


def test_steps_and_handoffs_move_through_their_life_cycle_from_the_command_line(cli):
    ref = _json(
        cli,
        "newcomer",
        "add",
        "--as",
        "cm.mueller",
        "--given-name",
        "Jan",
        "--family-name",
        "Nowak",
        "--nationality",
        "PL",
    )["reference"]
    code, out, err = cli(
        "step", "complete", ref, "housing", "--on", "2024-05-01", "--as", "cm.mueller"
    )
    assert code == 0, err
    assert "Open now: registration" in out
    # Without consent the Bürgerbüro does not see the case yet.
    assert _json(cli, "queue", "--as", "stadt.weber") == []
    code, out, err = cli(
        "consent", "give", ref, "stadt-bochum", "--as", "cm.mueller", "--language", "de"
    )
    assert code == 0, err
    queue = _json(cli, "queue", "--as", "stadt.weber")
    assert [(q["reference"], q["step"], q["due_status"]) for q in queue] == [
        (ref, "registration", "overdue")
    ]
    assert set(queue[0]["newcomer"]) == {
        "given_name",
        "family_name",
        "birth_date",
        "nationality",
        "move_in_date",
    }
    code, _, err = cli(
        "handoff", "decline", ref, "registration", "--as", "stadt.weber", "--reason", ""
    )
    assert code == 1 and "reason is required" in err
    code, _, err = cli("handoff", "accept", ref, "registration", "--as", "stadt.weber")
    assert code == 0, err
    code, out, err = cli("handoff", "complete", ref, "registration", "--as", "stadt.weber")
    assert code == 0, err
    assert "tax_id" in out
    timeline = _json(cli, "case", "timeline", ref, "--as", "cm.mueller")
    actions = [e["action"] for e in timeline]
    done_at = actions.index("step.completed", actions.index("handoff.accepted"))
    assert actions[done_at + 1 :] == ["step.opened"] * 4
    assert {e["step"] for e in timeline[done_at + 1 :]} == {
        "tax_id",
        "bank_account",
        "health_insurance",
        "job_entry",
    }
    actors = {e["actor"] for e in timeline}
    assert {"cm.mueller", "stadt.weber"} <= actors


def test_errors_are_one_clear_line_and_a_non_zero_exit(cli):
    code, _, err = cli("case", "show", "WO-NOPE-NOPE", "--as", "cm.mueller")
    assert code == 1 and "No case with reference" in err
    code, _, err = cli("case", "show", "[red]WO-1", "--as", "cm.mueller")
    assert code == 1 and "[red]WO-1" in err  # user input is never read as markup
    code, _, err = cli("case", "list", "--as", "nobody")
    assert code == 1 and "No user called 'nobody'" in err
    code, _, err = cli("queue", "ihk-mr", "--as", "stadt.weber")
    assert code == 1 and "own organisation" in err
    code, _, err = cli("case", "list", "--as", "lead.schmidt")
    assert code == 1 and "aggregate" in err
    code, _, err = cli(
        "newcomer",
        "add",
        "--as",
        "cm.mueller",
        "--given-name",
        "A",
        "--family-name",
        "B",
        "--birth-date",
        "1990-02-31",
    )
    assert code == 1 and "birth_date" in err


def test_a_stale_version_is_refused_from_the_command_line(cli):
    ref = _json(
        cli,
        "newcomer",
        "add",
        "--as",
        "cm.mueller",
        "--given-name",
        "Ana",
        "--family-name",
        "Silva",
        "--nationality",
        "BR",
    )["reference"]
    step = next(
        s
        for s in _json(cli, "case", "show", ref, "--as", "cm.mueller")["steps"]
        if s["key"] == "recognition"
    )
    code, _, err = cli(
        "step",
        "block",
        ref,
        "recognition",
        "-r",
        "Unterlagen fehlen",
        "--as",
        "cm.yilmaz",
        "--expected-version",
        str(step["version"]),
    )
    assert code == 0, err
    code, _, err = cli(
        "step",
        "start",
        ref,
        "recognition",
        "--as",
        "cm.mueller",
        "--expected-version",
        str(step["version"]),
    )
    assert code == 1 and "changed by someone else" in err


def test_admins_keep_the_organisations(cli):
    code, _, err = cli(
        "org", "add", "welcome-hattingen", "Welcome Point Hattingen", "--as", "admin"
    )
    assert code == 0, err
    code, _, err = cli(
        "org", "rename", "welcome-hattingen", "Welcome Point Hattingen (EN-Kreis)", "--as", "admin"
    )
    assert code == 0, err
    code, _, err = cli("org", "deactivate", "welcome-hattingen", "--as", "admin")
    assert code == 0, err
    orgs = {o["key"]: o for o in _json(cli, "org", "list")}
    assert orgs["welcome-hattingen"]["name"] == "Welcome Point Hattingen (EN-Kreis)"
    assert orgs["welcome-hattingen"]["active"] is False
    code, _, err = cli("org", "add", "x-org", "X", "--as", "cm.mueller")
    assert code == 1 and "administrators" in err


def test_admins_name_the_users_the_screens_show(cli):
    code, _, err = cli(
        "user", "add", "cm.neu", "--display-name", "  Anna   Neumann ", "--role",
        "case_manager", "--organisation", "kim-bochum", "--as", "admin",
    )  # fmt: skip
    assert code == 0, err
    names = {u["username"]: u["display_name"] for u in _json(cli, "user", "list", "--as", "admin")}
    assert names["cm.neu"] == "Anna Neumann"
    code, out, err = cli(
        "user", "rename", "cm.neu", "--display-name", "Anna Schulte", "--as", "admin"
    )
    assert code == 0, err
    assert "Anna Schulte" in out
    names = {u["username"]: u["display_name"] for u in _json(cli, "user", "list", "--as", "admin")}
    assert names["cm.neu"] == "Anna Schulte"
    # A blank name is refused, by the service and for adding as well as renaming.
    code, _, err = cli("user", "rename", "cm.neu", "--display-name", "  ", "--as", "admin")
    assert code == 1 and "display name" in err
    code, _, err = cli(
        "user", "add", "cm.leer", "--display-name", "", "--role", "case_manager", "--as", "admin"
    )
    assert code == 1 and "display name" in err
    code, _, err = cli("user", "rename", "cm.neu", "--display-name", "X", "--as", "cm.mueller")
    assert code == 1 and "administrators" in err


def test_pathways_are_listed_and_checked(cli):
    rows = _json(cli, "pathways", "list")
    assert {r["key"] for r in rows} == {"skilled_worker", "student", "eu_citizen"}
    code, out, _ = cli("pathways", "check")
    assert code == 0 and "valid" in out


def test_db_upgrade_and_demo_on_a_fresh_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ONBOARDING_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ONBOARDING_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    get_database.cache_clear()
    try:
        result = runner.invoke(app, ["db", "upgrade"])
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "data" / "onboarding.db").exists()
        result = runner.invoke(app, ["demo", "--people", "40", "--seed", "5", "--if-empty"])
        assert result.exit_code == 0, result.stderr
        assert "Loaded 40 newcomers" in result.stdout
        assert "cm.mueller" in result.stdout and "willkommen" in result.stdout
        again = runner.invoke(app, ["demo", "--people", "40", "--if-empty"])
        assert "already holds 40 newcomers" in again.stdout
        assert "Demo sign-ins" in again.stdout
        # `make run` leaves the table to `onboarding run`, which prints it right after.
        quiet = runner.invoke(app, ["demo", "--people", "40", "--if-empty", "--no-logins"])
        assert "already holds 40 newcomers" in quiet.stdout
        assert "Demo sign-ins" not in quiet.stdout
        status = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
        assert status["newcomers"] == 40
        assert sum(status["cases"].values()) == 40
        assert status["schema"] == status["schema_newest"]
    finally:
        get_database.cache_clear()
        get_settings.cache_clear()


def test_the_console_script_is_installed():
    exe = shutil.which("onboarding", path=str(Path(sys.executable).parent))
    assert exe, "the onboarding console script should be installed in the virtual environment"
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "newcomer" in done.stdout and "queue" in done.stdout


def test_import_reports_every_bad_row_and_imports_nothing(cli, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "given_name;family_name;birth_date;nationality\n"
        "Amina;Yusuf;03.07.1995;NG\n"
        "[red]Mallory;Tables;31.02.1990;XX1\n",
        encoding="utf-8",
    )
    code, _, err = cli("import", str(bad), "--as", "cm.mueller")
    assert code == 1
    assert "nothing was imported" in err
    assert "line 3, birth_date" in err and "line 3, nationality" in err
    assert _json(cli, "case", "list", "--as", "cm.mueller") == []

    good = tmp_path / "good.csv"
    good.write_text(
        "given_name,family_name,birth_date,nationality,purpose\n"
        "Amina,Yusuf,1995-07-03,NG,work\n"
        "Олег,Шевченко,2001-01-20,UA,study\n",
        encoding="utf-8",
    )
    code, out, err = cli("import", str(good), "--as", "cm.mueller")
    assert code == 0, err
    assert "2 imported" in out
    rows = _json(cli, "case", "list", "--as", "cm.mueller")
    assert sorted(r["family_name"] for r in rows) == ["Yusuf", "Шевченко"]
    code, _, err = cli("import", str(good), "--as", "cm.mueller")
    assert code == 1 and err.count("already in the tracker as case") == 2


def test_an_import_says_how_far_both_phases_have_come_off_a_terminal(cli, tmp_path, monkeypatch):
    """Writing the rows, then opening the first steps (inline: here and now): each phase says its
    count on standard error as it goes, so a long import in a log or a pipe is never silent."""
    monkeypatch.setattr("tracker.cli.common.PROGRESS_EVERY", 0)  # a line at every step
    # Rows are written and cases advanced in batches; batches of one show every step.
    monkeypatch.setattr("tracker.journeys.importer.WRITE_BATCH", 1)
    monkeypatch.setattr("tracker.journeys.advance.ADVANCE_BATCH", 1)
    three = tmp_path / "three.csv"
    three.write_bytes(
        b"given_name,family_name,birth_date,nationality\n"
        + b"".join(f"Person{i},Raman,199{i}-11-02,IN\n".encode() for i in range(3))
    )
    code, out, err = cli("import", str(three), "--as", "cm.mueller")
    assert code == 0, err
    assert "3 imported" in out
    said = err.splitlines()
    assert [line.split(" (")[0] for line in said if line.startswith("Writing rows")][-1] == (
        "Writing rows: 3"
    )
    opening = [line for line in said if line.startswith("Opening first steps")]
    assert opening[0].startswith("Opening first steps: 1 / 3 (") and "left)" in opening[0]
    assert opening[-1].startswith("Opening first steps: 3 / 3 (")
    # The phase's count is the cases really advanced: each has its first steps open.
    rows = _json(cli, "case", "list", "--as", "cm.mueller")
    assert len(rows) == 3 and all(r["active_steps"] for r in rows), rows


def test_every_read_command_speaks_json(cli):
    ref = _json(
        cli,
        "newcomer",
        "add",
        "--as",
        "cm.mueller",
        "--given-name",
        "Mei",
        "--family-name",
        "Lin",
        "--nationality",
        "CN",
        "--purpose",
        "study",
    )["reference"]
    reads = [
        ("case", "show", ref, "--as", "cm.mueller"),
        ("case", "list", "--as", "cm.mueller"),
        ("case", "timeline", ref, "--as", "cm.mueller"),
        ("queue", "akafoe", "--as", "cm.mueller"),
        ("org", "list"),
        ("user", "list", "--as", "admin"),
        ("pathways", "list"),
        ("pathways", "show", "student"),
        ("status",),
        ("db", "current"),
    ]
    for args in reads:
        value = _json(cli, *args)
        assert value not in (None, "", {}), args


def test_the_other_life_cycle_moves_from_the_command_line(cli):
    ref = _json(
        cli,
        "newcomer",
        "add",
        "--as",
        "cm.mueller",
        "--given-name",
        "Ravi",
        "--family-name",
        "Menon",
        "--nationality",
        "IN",
    )["reference"]
    for org in ("ihk-mr", "hwk-do", "afa-bochum"):
        assert cli("consent", "give", ref, org, "--as", "cm.mueller")[0] == 0
    code, _, err = cli(
        "handoff", "offer", ref, "recognition", "--to", "hwk-do", "--as", "cm.mueller"
    )
    assert code == 0, err
    code, _, err = cli("handoff", "accept", ref, "recognition", "--as", "hwk.wagner")
    assert code == 0, err
    code, _, err = cli(
        "handoff", "return", ref, "recognition", "-r", "Zeugnis fehlt", "--as", "hwk.wagner"
    )
    assert code == 0, err
    code, _, err = cli(
        "handoff", "withdraw", ref, "job_offer", "-r", "Wir klären das", "--as", "cm.mueller"
    )
    assert code == 0, err
    code, _, err = cli(
        "step", "skip", ref, "recognition", "-r", "anabin: vergleichbar", "--as", "cm.mueller"
    )
    assert code == 0, err
    view = _json(cli, "case", "show", ref, "--as", "cm.mueller")
    steps = {s["key"]: s for s in view["steps"]}
    assert steps["recognition"]["state"] == "skipped"
    assert [(h["organisation"], h["state"]) for h in steps["recognition"]["past_handoffs"]] == [
        ("ihk-mr", "withdrawn"),
        ("hwk-do", "returned"),
    ]
    assert steps["job_offer"]["handoff"] is None
    code, _, err = cli("case", "cancel", ref, "-r", "Zurück nach Indien", "--as", "cm.mueller")
    assert code == 0, err
    assert _json(cli, "case", "show", ref, "--as", "cm.mueller")["status"] == "cancelled"
    code, _, err = cli("revoke-nothing")
    assert code != 0
