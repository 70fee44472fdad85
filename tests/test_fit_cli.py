"""`onboarding fit ...` end to end: real database, real output, real exit codes."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import NOW
from tests.helpers import advance, start_case
from tracker import fit
from tracker.enums import FitStatus, OfferKind, RegistrationStatus, StepState
from tracker.journeys.steps import complete_step
from tracker.models import FitOffer, FitRegistration, OutboxMessage, Step

runner = CliRunner()
BOCHUM = ZoneInfo("Europe/Berlin")
TODAY = datetime.now(BOCHUM).date()


def ok(cli, *args: str) -> str:
    code, out, err = cli(*args)
    assert code == 0, err or out
    return out


def as_json(cli, *args: str):
    return json.loads(ok(cli, *args, "--json"))


def student(db, actors, name: str) -> str:
    """A student's case with the FIT@THGA step open (housing and Anmeldung done)."""
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, purpose="study", nationality="VN", given_name=name)
    for key in ("housing", "registration"):
        with db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)
        advance(db, cm, ref, now=NOW)
    return ref


def enrol(cli, ref: str, *, user: str = "cm.mueller") -> int:
    out = ok(
        cli,
        "fit",
        "enrol",
        ref,
        "--as",
        user,
        "--channel",
        "orientation_week",
        "--programme",
        "Geoingenieurwesen und Nachbergbau",
        "--semester",
        "2",
        "--on",
        "2026-03-02",
    )
    assert f"{ref}: enrolled in FIT@THGA as participant" in out
    return int(out.split("participant ")[1].split(".")[0])


def test_enrol_a_student_and_list_the_participants(cli, db, actors):
    ref = student(db, actors, "Linh")
    pid = enrol(cli, ref)
    with db.read() as s:
        state = s.scalar(
            select(Step.state).where(Step.key == "fit_enrollment", Step.case.has(reference=ref))
        )
    assert state == StepState.done  # enrolling is the case's FIT step
    rows = as_json(cli, "fit", "participants", "--as", "thga.nowak", "--year", "2026")
    assert [(r["id"], r["reference"], r["status"], r["semester"]) for r in rows] == [
        (pid, ref, "enrolled", 2)
    ]
    assert rows[0]["study_programme"] == "Geoingenieurwesen und Nachbergbau"
    assert as_json(cli, "fit", "participants", "--as", "thga.nowak", "--year", "2025") == []
    table = ok(cli, "fit", "participants", "--as", "thga.nowak")
    assert "1 FIT@THGA participants" in table and f"│ {pid} " in table
    # Twice is refused, with one clear line.
    code, _, err = cli(
        "fit", "enrol", ref, "--as", "cm.mueller", "--channel", "other",
        "--programme", "Maschinenbau", "--semester", "1",
    )  # fmt: skip
    assert code == 1 and "already in FIT@THGA" in err and "Traceback" not in err
    # Leadership sees aggregates only, other partners nothing of the programme.
    for user in ("lead.schmidt", "vbw.schulz"):
        code, _, err = cli("fit", "participants", "--as", user)
        assert code == 1 and "Only FIT@THGA programme staff" in err


def test_two_register_for_one_place_one_waits_and_moves_up_when_the_other_cancels(cli, db, actors):
    a = enrol(cli, student(db, actors, "Anh"))
    b = enrol(cli, student(db, actors, "Bao"))
    day = TODAY + timedelta(days=30)
    made = as_json(
        cli,
        "fit", "offer", "add", "--as", "thga.nowak",
        "--kind", "salary_training", "--title", "Gehalt verhandeln",
        "--starts", f"{day} 09:00", "--ends", f"{day} 13:00",
        "--place", "THGA, Haus 1", "--capacity", "1",
    )  # fmt: skip
    offer_id = made["offer_id"]
    with db.read() as s:
        offer = s.get_one(FitOffer, offer_id)
        # Typed in Bochum time, stored in UTC.
        assert offer.starts_at == datetime(day.year, day.month, day.day, 9, tzinfo=BOCHUM)
        assert offer.kind == OfferKind.salary_training
    first = as_json(cli, "fit", "register", str(offer_id), str(a), "--as", "thga.nowak")
    out = ok(cli, "fit", "register", str(offer_id), str(b), "--as", "thga.nowak")
    assert first["status"] == "registered"
    assert f"Participant {b} is on the waiting list for offer {offer_id}" in out
    (row,) = as_json(cli, "fit", "offers", "--as", "thga.nowak", "--year", str(day.year))
    assert (row["capacity"], row["places_taken"], row["waitlisted"]) == (1, 1, 1)

    ok(cli, "fit", "cancel", str(first["registration_id"]), "--as", "thga.nowak", "-r", "ill")
    with db.read() as s:
        status = dict(
            s.execute(select(FitRegistration.participant_id, FitRegistration.status)).all()
        )
        freed = s.scalars(
            select(OutboxMessage.kind).where(OutboxMessage.kind == "fit_place_freed")
        ).all()
    assert status == {a: RegistrationStatus.cancelled, b: RegistrationStatus.registered}
    assert freed == ["fit_place_freed"]
    code, _, err = cli("fit", "cancel", str(first["registration_id"]), "--as", "thga.nowak")
    assert code == 1 and "nothing to cancel" in err


def test_attendance_after_an_offer_marks_who_came(cli, db, actors):
    a = enrol(cli, student(db, actors, "Chi"))
    b = enrol(cli, student(db, actors, "Dung"))
    starts = datetime.combine(TODAY - timedelta(days=3), datetime.min.time(), BOCHUM)
    starts = starts.replace(hour=10)
    thga = actors["thga.nowak"]
    with db.transaction() as s:
        offer_id = fit.create_offer(
            s,
            actor=thga,
            kind=OfferKind.excursion,
            title="Zeche Zollverein",
            starts_at=starts,
            ends_at=starts + timedelta(hours=5),
            place="Essen",
            capacity=5,
            now=starts - timedelta(days=20),
        ).id
        for pid in (a, b):
            fit.register(
                s, actor=thga, offer_id=offer_id, participant_id=pid, now=starts - timedelta(days=9)
            )
    out = ok(cli, "fit", "attendance", str(offer_id), "--attended", str(a), "--as", "thga.nowak")
    assert "1 came" in out
    with db.read() as s:
        status = dict(
            s.execute(select(FitRegistration.participant_id, FitRegistration.status)).all()
        )
    assert status == {a: RegistrationStatus.attended, b: RegistrationStatus.no_show}
    (row,) = as_json(cli, "fit", "offers", "--as", "thga.nowak")
    assert (row["status"], row["attended"]) == ("held", 1)
    # Someone without a place cannot have come.
    c = enrol(cli, student(db, actors, "Em"))
    code, _, err = cli(
        "fit", "attendance", str(offer_id), "--attended", str(c), "--as", "thga.nowak"
    )
    assert code == 1 and "had no place" in err


def test_days_near_and_over_the_limit_print_a_warning(cli, db, actors):
    pid = enrol(cli, student(db, actors, "Giang"))
    job = as_json(
        cli,
        "fit", "job", "add", str(pid), "--as", "thga.nowak",
        "--employer", "Ruhr Tunnelbau GmbH", "--kind", "working_student",
        "--starts", "2025-01-01",
    )["job_id"]  # fmt: skip
    code, out, err = cli(
        "fit", "days", str(job), "--from", "2025-01-01", "--to", "2025-05-30", "--as", "thga.nowak"
    )
    assert code == 0, err
    assert "Recorded 108 full days" in out and "Warning" not in err  # weekdays only
    code, out, err = cli(
        "fit", "days", str(job), "--from", "2025-06-02", "--to", "2025-06-17", "--as", "thga.nowak"
    )
    assert code == 0, err
    assert "2025: 120 of 140 days used, 20 left." in out
    assert "Warning: near the limit of 140 days in 2025" in err
    code, out, err = cli(
        "fit", "days", str(job), "--from", "2025-06-18", "--to", "2025-07-31",
        "--half", "--as", "thga.nowak",
    )  # fmt: skip
    assert code == 0, err
    assert "Recorded 32 half days" in out and "136 of 140" in out and "near the limit" in err
    ok(
        cli,
        "fit",
        "days",
        str(job),
        "--from",
        "2025-08-01",
        "--to",
        "2025-08-08",
        "--as",
        "thga.nowak",
    )
    count = as_json(cli, "fit", "count", str(pid), "--year", "2025", "--as", "thga.nowak")
    assert (count["full"], count["half"], count["used"], count["over"]) == (126, 32, 142.0, True)
    code, out, err = cli("fit", "count", str(pid), "--year", "2025", "--as", "thga.nowak")
    assert "Warning: over the limit" in err
    with db.read() as s:
        keys = sorted(
            s.scalars(
                select(OutboxMessage.idempotency_key).where(OutboxMessage.kind == "fit_day_limit")
            )
        )
    assert keys == [f"fit_days:{pid}:2025:near", f"fit_days:{pid}:2025:over"]
    # An assistant job at the university does not count.
    assistant = as_json(
        cli,
        "fit", "job", "add", str(pid), "--as", "thga.nowak", "--employer", "THGA",
        "--kind", "university_assistant", "--starts", "2025-09-01",
    )["job_id"]  # fmt: skip
    out = ok(
        cli, "fit", "days", str(assistant), "--from", "2025-09-01", "--to", "2025-09-05",
        "--as", "thga.nowak",
    )  # fmt: skip
    assert "does not count" in out
    assert (
        as_json(cli, "fit", "count", str(pid), "--year", "2025", "--as", "thga.nowak")["used"]
        == 142.0
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2025-13-01", "--to", "2025-12-31"], "--from: '2025-13-01' is not a date"),
        (["--from", "2025-03-01", "--to", "1.3.2025"], "--to: '1.3.2025' is not a date"),
        (["--from", "2025-03-10", "--to", "2025-03-01"], "--to lies before --from"),
        (["--from", "2025-03-01", "--to", "2025-03-02"], "no weekday"),  # a weekend
        (["--from", "2024-12-30", "--to", "2024-12-31"], "lies outside the job's dates"),
        (["--from", "2099-01-05", "--to", "2099-01-06"], "lies in the future"),
    ],
)
def test_bad_dates_give_one_clear_error_and_exit_1(cli, db, actors, args, message):
    pid = enrol(cli, student(db, actors, "Hoa"))
    job = as_json(
        cli,
        "fit", "job", "add", str(pid), "--as", "thga.nowak", "--employer", "Bochum Stahl AG",
        "--kind", "working_student", "--starts", "2025-01-01",
    )["job_id"]  # fmt: skip
    code, _, err = cli("fit", "days", str(job), *args, "--as", "thga.nowak")
    assert code == 1
    assert message in err and "Traceback" not in err
    assert err.startswith("Error:")
    assert (
        as_json(cli, "fit", "count", str(pid), "--year", "2025", "--as", "thga.nowak")["used"] == 0
    )


def test_bad_offer_times_and_permits_are_refused_clearly(cli, db, actors):
    offer = [
        "fit", "offer", "add", "--as", "thga.nowak", "--kind", "job_fair", "--title", "Jobmesse",
        "--place", "RuhrCongress", "--capacity", "50",
    ]  # fmt: skip
    code, _, err = cli(*offer, "--starts", "morgen früh", "--ends", "2026-12-01 12:00")
    assert code == 1 and "--starts: 'morgen früh' is not a date and time" in err
    code, _, err = cli(*offer, "--starts", "2026-12-01 12:00", "--ends", "2026-12-01 10:00")
    assert code == 1 and "must end after it starts" in err
    with db.read() as s:
        assert s.scalars(select(FitOffer)).all() == []

    pid = enrol(cli, student(db, actors, "Khanh"))
    permit = ["fit", "permit", "add", str(pid), "--as", "thga.nowak", "--kind", "job_search"]
    code, _, err = cli(*permit, "--from", "2025-08-31", "--until", "2027-03-01")
    assert code == 1 and "at most 18 months" in err
    code, _, err = cli(*permit, "--from", "31.08.2025", "--until", "2027-02-28")
    assert code == 1 and "--from: '31.08.2025' is not a date" in err
    out = ok(cli, *permit, "--from", "2025-08-31", "--until", "2027-02-28")
    assert f"recorded for participant {pid}" in out


def test_a_participant_who_graduates_can_no_longer_register(cli, db, actors):
    pid = enrol(cli, student(db, actors, "Lan"))
    code, _, err = cli("fit", "status", str(pid), "graduated", "--on", "2026-01-31", "--as", "x")
    assert code == 1 and "No user called 'x'" in err
    code, _, err = cli("fit", "status", str(pid), "graduated", "--on", "2025-01-31",
                       "--as", "thga.nowak")  # fmt: skip
    assert code == 1 and "before the enrolment" in err
    out = ok(
        cli, "fit", "status", str(pid), "graduated", "--on", "2026-09-30", "--as", "thga.nowak"
    )
    assert f"Participant {pid} is now graduated." in out
    (row,) = as_json(cli, "fit", "participants", "--as", "thga.nowak", "--status", "graduated")
    assert row["status"] == FitStatus.graduated and row["graduated_on"] == "2026-09-30"
    day = TODAY + timedelta(days=20)
    offer_id = as_json(
        cli,
        "fit", "offer", "add", "--as", "thga.nowak", "--kind", "job_fair", "--title", "Jobmesse",
        "--starts", f"{day} 10:00", "--ends", f"{day} 16:00", "--place", "RuhrCongress",
        "--capacity", "50",
    )["offer_id"]  # fmt: skip
    code, _, err = cli("fit", "register", str(offer_id), str(pid), "--as", "thga.nowak")
    assert code == 1 and "no longer enrolled" in err
    assert date.fromisoformat(row["enrolled_on"]) == date(2026, 3, 2)
