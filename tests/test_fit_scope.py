"""FIT@THGA under the partner scope: THGA's agents see and act on a participant only while the
student consents to sharing with THGA; case managers keep the whole programme in view."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.conftest import NOW
from tests.helpers import advance, start_case
from tests.test_fit import (
    LATER,
    TODAY,
    enrolled_by_thga,
    offer,
    statuses,
    student_with_open_fit_step,
)
from tracker.access import Actor
from tracker.enums import (
    ConsentMethod,
    ContactKind,
    FitChannel,
    FitStatus,
    JobKind,
    PermitKind,
)
from tracker.errors import InvalidTransition, NotFoundError
from tracker.fit import queries as fit_queries
from tracker.fit.contacts import add_contact
from tracker.fit.offers import cancel_registration, record_attendance, register
from tracker.fit.participants import change_status, enrol, record_job_entry
from tracker.fit.permits import add_permit
from tracker.fit.work_days import add_job, check_day_limits, record_work_days, remove_work_days
from tracker.journeys.consent import give_consent, revoke_consent
from tracker.journeys.steps import complete_step

NOBODY = 987654  # no participant, registration or job has this id
DAYS = [date(2026, 2, 2), date(2026, 2, 3)]


def set_consent(db, actors, ref: str, *, given: bool) -> None:
    cm = actors["cm.mueller"]
    with db.transaction() as s:
        if given:
            give_consent(
                s,
                actor=cm,
                reference=ref,
                organisation="thga",
                method=ConsentMethod.signed_form,
                notice_language="en",
                now=NOW + timedelta(hours=1),
            )
        else:
            revoke_consent(s, actor=cm, reference=ref, organisation="thga", now=NOW)


@pytest.fixture
def programme(db, actors) -> dict[str, Any]:
    """Two THGA students, each with a place on an offer, a job with two days worked; the
    first ("hidden") then revokes their consent to share with THGA."""
    thga = actors["thga.nowak"]
    oid = offer(db, actors, capacity=5)
    world: dict[str, Any] = {"offer": oid, "second_offer": offer(db, actors, capacity=5)}
    for name in ("hidden", "shown"):
        ref = student_with_open_fit_step(db, actors, given_name=name.title(), family_name="Pham")
        pid = enrolled_by_thga(db, thga, ref)
        with db.transaction() as s:
            reg = register(s, actor=thga, offer_id=oid, participant_id=pid, now=NOW).id
            job = add_job(
                s,
                actor=thga,
                participant_id=pid,
                employer="Emscher Geotechnik GmbH",
                kind=JobKind.working_student,
                starts_on=date(2026, 1, 5),
                now=NOW,
            ).id
            record_work_days(s, actor=thga, job_id=job, days=DAYS, now=NOW)
        world[name] = {"ref": ref, "pid": pid, "registration": reg, "job": job}
    set_consent(db, actors, world["hidden"]["ref"], given=False)
    return world


# Every FIT service that names a participant (or their registration or job), called with an id:
# for the hidden student THGA must hear exactly what it hears for an id nobody has.
Call = Callable[[Session, Actor, int, dict[str, Any]], Any]
SERVICES: dict[str, tuple[str, Call]] = {
    "change_status": (
        "pid",
        lambda s, a, i, w: change_status(
            s, actor=a, participant_id=i, status=FitStatus.graduated, on=TODAY, now=NOW
        ),
    ),
    "record_job_entry": (
        "pid",
        lambda s, a, i, w: record_job_entry(
            s, actor=a, participant_id=i, employer="Vonovia", started_on=TODAY, in_region=True
        ),
    ),
    "register": (
        "pid",
        lambda s, a, i, w: register(
            s, actor=a, offer_id=w["second_offer"], participant_id=i, now=NOW
        ),
    ),
    "cancel_registration": (
        "registration",
        lambda s, a, i, w: cancel_registration(s, actor=a, registration_id=i, now=NOW),
    ),
    "add_contact": (
        "pid",
        lambda s, a, i, w: add_contact(
            s,
            actor=a,
            participant_id=i,
            company="Bochumer Verein",
            kind=ContactKind.company_visit,
            contact_on=TODAY,
            now=NOW,
        ),
    ),
    "add_job": (
        "pid",
        lambda s, a, i, w: add_job(
            s,
            actor=a,
            participant_id=i,
            employer="Ruhr Tunnelbau GmbH",
            kind=JobKind.working_student,
            starts_on=date(2026, 1, 5),
            now=NOW,
        ),
    ),
    "add_permit": (
        "pid",
        lambda s, a, i, w: add_permit(
            s,
            actor=a,
            participant_id=i,
            kind=PermitKind.student,
            valid_from=date(2025, 10, 1),
            valid_until=date(2027, 9, 30),
            now=NOW,
        ),
    ),
    "record_work_days": (
        "job",
        lambda s, a, i, w: record_work_days(s, actor=a, job_id=i, days=[date(2026, 2, 4)], now=NOW),
    ),
    "remove_work_days": (
        "job",
        lambda s, a, i, w: remove_work_days(s, actor=a, job_id=i, days=DAYS[:1], now=NOW),
    ),
    "record_attendance": (
        "pid",
        lambda s, a, i, w: record_attendance(
            s, actor=a, offer_id=w["offer"], attended=[i], now=LATER + timedelta(hours=5)
        ),
    ),
    "record_attendance(walk-in)": (
        "pid",
        lambda s, a, i, w: record_attendance(
            s, actor=a, offer_id=w["offer"], attended=[], walk_ins=[i], now=LATER + timedelta(1)
        ),
    ),
}


def tables(s: Session) -> dict[str, int]:
    names = ["fit_participants", "fit_registrations", "fit_jobs", "fit_work_days"]
    names += ["fit_contacts", "fit_permits", "audit_events", "outbox"]
    counts = ", ".join(f"(SELECT COUNT(*) FROM {n}) AS {n}" for n in names)
    versions = "(SELECT SUM(version) FROM fit_participants) AS participant_versions"
    statuses_ = "(SELECT COUNT(*) FROM fit_registrations WHERE status = 'registered') AS placed"
    return dict(s.execute(text(f"SELECT {counts}, {versions}, {statuses_}")).mappings().one())


@pytest.mark.parametrize("name", list(SERVICES))
def test_thga_acting_on_a_student_who_stopped_sharing_hears_what_a_missing_one_gets(
    db, actors, programme, name
):
    key, call = SERVICES[name]
    thga = actors["thga.nowak"]
    hidden = programme["hidden"][key]
    with db.transaction() as s:
        before = tables(s)
        with pytest.raises(NotFoundError) as refused:
            call(s, thga, hidden, programme)
        with pytest.raises(NotFoundError) as missing:
            call(s, thga, NOBODY, programme)
        assert str(refused.value) == str(missing.value).replace(str(NOBODY), str(hidden))
        assert "Pham" not in str(refused.value) and "Hidden" not in str(refused.value)
        assert tables(s) == before
    # The student who still shares is THGA's to work with; the case manager may do both.
    for who, subject in (
        ("thga.nowak", programme["shown"][key]),
        ("cm.mueller", hidden),
    ):
        with db.transaction() as s:
            before = tables(s)
            call(s, actors[who], subject, programme)
            s.flush()
            assert tables(s)["audit_events"] > before["audit_events"], who


def test_thga_recording_attendance_leaves_the_place_of_a_student_it_cannot_see_alone(
    db, actors, programme
):
    hidden, shown = programme["hidden"]["pid"], programme["shown"]["pid"]
    after = LATER + timedelta(hours=5)
    with db.transaction() as s:
        record_attendance(
            s, actor=actors["thga.nowak"], offer_id=programme["offer"], attended=[], now=after
        )
    with db.read() as s:
        assert statuses(s) == {hidden: "registered", shown: "no_show"}
    with db.transaction() as s:
        record_attendance(
            s, actor=actors["cm.mueller"], offer_id=programme["offer"], attended=[shown], now=after
        )
    with db.read() as s:
        assert statuses(s) == {hidden: "no_show", shown: "attended"}


def test_thga_cannot_learn_by_enrolling_that_a_student_who_stopped_sharing_is_in_fit(
    db, actors, programme
):
    ref = programme["hidden"]["ref"]

    def enrol_again(actor: Actor) -> None:
        with db.transaction() as s:
            enrol(
                s,
                actor=actor,
                reference=ref,
                channel=FitChannel.other,
                study_programme="Maschinenbau",
                semester=1,
                now=NOW,
            )

    with pytest.raises(NotFoundError, match=f"^No case {ref}.$"):
        enrol_again(actors["thga.nowak"])
    with pytest.raises(InvalidTransition, match="already in FIT@THGA"):
        enrol_again(actors["cm.mueller"])


def test_the_reads_leave_out_a_student_who_stopped_sharing_and_show_them_again_after_consent(
    db, actors, programme
):
    thga, cm = actors["thga.nowak"], actors["cm.mueller"]
    hidden, shown = programme["hidden"]["pid"], programme["shown"]["pid"]

    def seen(actor: Actor) -> dict[str, object]:
        with db.read() as s:
            return {
                "participants": [p.id for p in fit_queries.participants(s, actor=actor)],
                "day_counts": sorted(fit_queries.day_counts(s, actor=actor, year=2026)),
                "registrations": [
                    r.participant_id
                    for r in fit_queries.registrations(s, actor=actor, offer_id=programme["offer"])
                ],
                "with_days": fit_queries.participants_with_work_days(s, actor=actor, year=2026),
                # A page of the list, its search, its count and a lookup by id.
                "searched": [
                    p.id for p in fit_queries.participants(s, actor=actor, search="pham", limit=5)
                ],
                "by_id": [
                    p.id for p in fit_queries.participants(s, actor=actor, ids=[hidden, shown])
                ],
                "counted": list(range(fit_queries.count_participants(s, actor=actor))),
            }

    both = sorted([hidden, shown])
    everyone = {
        "participants": both,
        "day_counts": both,
        "registrations": both,
        "with_days": both,
        "searched": both,
        "by_id": both,
        "counted": [0, 1],
    }
    assert seen(cm) == everyone
    assert seen(thga) == {k: [shown] for k in everyone} | {"counted": [0]}
    with db.read() as s:
        for read in (fit_queries.jobs, fit_queries.work_day_count):
            kwargs = {"year": 2026} if read is fit_queries.work_day_count else {}
            with pytest.raises(NotFoundError, match=f"^No FIT participant {hidden}.$"):
                read(s, actor=thga, participant_id=hidden, **kwargs)
            assert read(s, actor=cm, participant_id=hidden, **kwargs)
    # The newcomer shares with THGA again: THGA sees them again, where it left them.
    set_consent(db, actors, programme["hidden"]["ref"], given=True)
    assert seen(thga) == everyone
    with db.read() as s:
        assert fit_queries.work_day_count(s, actor=thga, participant_id=hidden, year=2026).full == 2


def test_the_daily_recheck_of_the_day_limit_still_covers_every_participant(db, actors, programme):
    """The flow runs as the system: consent to THGA is no condition for the student's own
    warning (the office, not THGA, sends it)."""
    from tracker.access import system_actor

    with db.transaction() as s:
        page = check_day_limits(s, actor=system_actor("fit-daily"), year=2026, limit=1)
        rest = check_day_limits(
            s, actor=system_actor("fit-daily"), year=2026, after_id=page.next_cursor or 0
        )
    assert (page.checked, page.next_cursor, rest.checked, rest.next_cursor) == (
        1,
        programme["hidden"]["pid"],
        1,
        None,
    )


def test_the_revocation_an_outsider_tried_on_the_command_line(cli, db, actors):
    """`consent revoke REF thga`: THGA's agent no longer finds the case, nor the student in
    the programme's list; given again, the student is back."""
    ref = student(db, actors)
    enrol_args = ["--channel", "orientation_week", "--programme", "Geotechnik", "--semester", "2"]
    ok(cli, "fit", "enrol", ref, "--as", "cm.mueller", *enrol_args)

    def listed(user: str) -> list[str]:
        rows = json.loads(ok(cli, "fit", "participants", "--as", user, "--json"))
        return [row["reference"] for row in rows]

    assert listed("thga.nowak") == [ref]
    ok(cli, "consent", "revoke", ref, "thga", "--as", "cm.mueller")
    code, out, err = cli("case", "show", ref, "--as", "thga.nowak")
    assert code != 0 and "No case with reference" in out + err
    assert listed("thga.nowak") == []
    table = ok(cli, "fit", "participants", "--as", "thga.nowak")
    assert ref not in table and "Minh" not in table
    assert listed("cm.mueller") == [ref]
    ok(cli, "consent", "give", ref, "thga", "--as", "cm.mueller")
    assert listed("thga.nowak") == [ref]


def student(db, actors) -> str:
    """A student's case with the FIT step open, shared with every partner."""
    cm = actors["cm.mueller"]
    ref = start_case(
        db, cm, now=NOW, purpose="study", nationality="VN", given_name="Minh", family_name="Pham"
    )
    for key in ("housing", "registration"):
        with db.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)
        advance(db, cm, ref, now=NOW)
    return ref


def ok(cli, *args: str) -> str:
    code, out, err = cli(*args)
    assert code == 0, err or out
    return out
