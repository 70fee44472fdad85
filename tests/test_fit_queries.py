"""FIT@THGA reads (tracker.fit.queries): programme staff only, plain data, and the staff page's
exact programme counts agreeing with leadership's suppressed figures wherever those are shown."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import NOW
from tests.test_fit import LATER, enrolled, job, offer, record, weekdays
from tracker.enums import ContactKind, FitStatus, JobKind, OfferKind
from tracker.errors import PermissionDenied
from tracker.fit import queries as fit_queries
from tracker.fit.contacts import add_contact
from tracker.fit.offers import cancel_offer, create_offer, record_attendance, register
from tracker.fit.participants import change_status, record_job_entry
from tracker.fit.work_days import add_job
from tracker.reporting import fit as fit_figures

BOCHUM = ZoneInfo("Europe/Berlin")  # the office's time zone (the tests do not set another)


def new_offer(
    db,
    actors,
    kind: OfferKind,
    starts: datetime,
    capacity: int,
    *,
    people: Sequence[int] = (),
    came: Sequence[int] | None = None,
) -> int:
    """An offer (created and registered for a week before it starts); with ``came``, held."""
    thga = actors["thga.nowak"]
    before = starts - timedelta(days=7)
    with db.transaction() as s:
        oid = create_offer(
            s,
            actor=thga,
            kind=kind,
            title=f"{kind} {starts:%Y-%m-%d}",
            starts_at=starts,
            ends_at=starts + timedelta(hours=3),
            place="THGA",
            capacity=capacity,
            now=before,
        ).id
        for pid in people:
            register(s, actor=thga, offer_id=oid, participant_id=pid, now=before)
    if came is not None:
        with db.transaction() as s:
            record_attendance(
                s, actor=thga, offer_id=oid, attended=came, now=starts + timedelta(hours=4)
            )
    return oid


# --- the staff counts against leadership's figures -------------------------------------------

# Every count the staff page shows that leadership's fit_programme shows too, under the same name.
SHARED = ("company_contacts", "working_student_jobs", "graduated", "dropped_out", "job_entries")
# ... and those leadership shows per kind of offer (the staff page shows their totals).
PER_KIND = ("offers_held", "attended", "no_show")
STAFF_ONLY = ("year", "enrolled")  # leadership counts enrolments by the case's step instead


def compare(staff: fit_queries.ProgrammeCounts, lead: fit_figures.FitProgramme) -> set[str]:
    """Assert that every figure shown in both places is equal wherever leadership shows it (its
    per-kind figures: wherever it shows every kind); returns the names compared."""
    compared = set()
    for name in PER_KIND:
        parts = [getattr(row, name) for row in lead.offers]
        if None not in parts:
            assert getattr(staff, name) == sum(parts), (staff.year, name)
            compared.add(name)
    for name in SHARED:
        value = getattr(lead, name)
        if value is not None:
            assert getattr(staff, name) == value, (staff.year, name)
            compared.add(name)
    return compared


def test_every_staff_count_has_a_leadership_counterpart_or_is_named_staff_only():
    assert set(fit_queries.ProgrammeCounts.model_fields) == {*SHARED, *PER_KIND, *STAFF_ONLY}


def test_staff_counts_agree_with_leadership_wherever_it_shows_them(db, actors):
    thga = actors["thga.nowak"]
    people = enrolled(db, actors, 12)  # enrolled on 2026-03-02
    fair_day = datetime(2026, 4, 15, 10, tzinfo=UTC)
    # 2025: one held seminar, everyone came (5) or did not (0).
    new_offer(
        db, actors, OfferKind.work_culture_seminar, datetime(2025, 11, 5, 14, tzinfo=UTC), 6,
        people=people[:5], came=people[:5],
    )  # fmt: skip
    # 2026: a fair (7 came, 3 did not, 2 waiting), a seminar (5 and 3); a cancelled offer and
    # a planned one with registrations count for nothing.
    fair = new_offer(db, actors, OfferKind.job_fair, fair_day, 10, people=people, came=people[:7])
    new_offer(
        db, actors, OfferKind.work_culture_seminar, fair_day + timedelta(days=20), 8,
        people=people[:8], came=people[:5],
    )  # fmt: skip
    cancelled = new_offer(
        db, actors, OfferKind.application_training, fair_day + timedelta(days=30), 20,
        people=people,
    )  # fmt: skip
    with db.transaction() as s:
        cancel_offer(s, actor=thga, offer_id=cancelled, reason="Referentin krank", now=NOW)
    new_offer(
        db, actors, OfferKind.salary_training, datetime(2026, 12, 10, 9, tzinfo=UTC), 20,
        people=people,
    )  # fmt: skip
    # 2027: an excursion, 6 came and 6 did not (registered before anyone left the programme).
    new_offer(
        db, actors, OfferKind.excursion, datetime(2027, 2, 3, 9, tzinfo=UTC), 12,
        people=people, came=people[:6],
    )  # fmt: skip

    after = datetime(2026, 11, 20, 12, tzinfo=UTC)
    with db.transaction() as s:
        for i, pid in enumerate(people[:7]):
            add_contact(
                s, actor=thga, participant_id=pid, company=f"Firma {i % 3}",
                kind=ContactKind.job_fair_talk, contact_on=fair_day.date(), now=after,
            )  # fmt: skip
        for pid in people[:5]:
            add_contact(
                s, actor=thga, participant_id=pid, company="Vonovia",
                kind=ContactKind.interview, contact_on=date(2025, 12, 1), now=after,
            )  # fmt: skip
        # Jobs that began in 2026: 4 working-student jobs, a voluntary internship, an "other",
        # and a placement from the fair count (7); mandatory internships (one of them a
        # placement too) and an assistant job at the university do not.
        kinds = [JobKind.working_student] * 4 + [
            JobKind.voluntary_internship,
            JobKind.other,
            JobKind.mandatory_internship,
            JobKind.mandatory_internship,
            JobKind.university_assistant,
        ]
        for pid, kind in zip(people, kinds, strict=False):
            add_job(
                s, actor=thga, participant_id=pid, employer="Bochumer Verein", kind=kind,
                starts_on=date(2026, 6, 1), now=after,
            )  # fmt: skip
        for pid, kind in (
            (people[9], JobKind.working_student),
            (people[10], JobKind.mandatory_internship),
        ):
            add_job(
                s, actor=thga, participant_id=pid, employer="Ruhr AG", kind=kind,
                starts_on=date(2026, 5, 1), offer_id=fair, now=after,
            )  # fmt: skip
        for pid in people[:5]:  # and 5 working-student jobs in 2025
            add_job(
                s, actor=thga, participant_id=pid, employer="Stadtwerke Bochum",
                kind=JobKind.working_student, starts_on=date(2025, 9, 1), now=after,
            )  # fmt: skip
        # 6 graduate in 2026 and find a job (5 of them in the region), 5 drop out, 1 withdraws.
        for pid in people[:6]:
            change_status(
                s, actor=thga, participant_id=pid, status=FitStatus.graduated,
                on=date(2026, 9, 30), now=after,
            )  # fmt: skip
            record_job_entry(
                s, actor=thga, participant_id=pid, employer="thyssenkrupp",
                started_on=date(2026, 11, 1), in_region=pid != people[0], now=after,
            )  # fmt: skip
        for pid in people[6:11]:
            change_status(
                s, actor=thga, participant_id=pid, status=FitStatus.dropped_out,
                on=date(2026, 10, 15), now=after,
            )  # fmt: skip
        change_status(
            s, actor=thga, participant_id=people[11], status=FitStatus.withdrawn,
            on=date(2026, 10, 15), now=after,
        )  # fmt: skip
        # Two of those who dropped out find a job in 2027.
        for pid in people[6:8]:
            record_job_entry(
                s, actor=thga, participant_id=pid, employer="Vonovia",
                started_on=date(2027, 1, 15), in_region=True, now=after,
            )  # fmt: skip

    with db.read() as s:
        staff = {y: fit_queries.programme_counts(s, actor=thga, year=y) for y in (2025, 2026, 2027)}
        lead = {
            y: fit_figures.fit_programme(s, actor=actors["lead.schmidt"], year=y)
            for y in (2025, 2026, 2027)
        }
    # The exact counts staff see.
    assert staff[2026].model_dump() == {
        "year": 2026,
        "enrolled": 12,
        "offers_held": 2,
        "attended": 12,
        "no_show": 6,
        "company_contacts": 7,
        "working_student_jobs": 7,
        "graduated": 6,
        "dropped_out": 5,
        "job_entries": 6,
    }
    assert staff[2025].model_dump() == {
        "year": 2025,
        "enrolled": 0,
        "offers_held": 1,
        "attended": 5,
        "no_show": 0,
        "company_contacts": 5,
        "working_student_jobs": 5,
        "graduated": 0,
        "dropped_out": 0,
        "job_entries": 0,
    }
    assert (staff[2027].offers_held, staff[2027].attended, staff[2027].no_show) == (1, 6, 6)
    assert staff[2027].job_entries == 2
    # Equal wherever leadership shows the figure; and the comparison is not empty: leadership
    # hides the fair's 3 no-shows in 2026 and the 2 job entries in 2027, and shows the rest.
    compared = {y: compare(staff[y], lead[y]) for y in staff}
    assert compared[2026] == {*PER_KIND, *SHARED} - {"no_show"}
    assert compared[2025] == {*PER_KIND, *SHARED}
    assert compared[2027] == {*PER_KIND, *SHARED} - {"job_entries"}


def test_an_offer_in_the_first_hour_of_the_year_counts_in_that_year_in_both_places(db, actors):
    people = enrolled(db, actors, 5)
    # 00:30 on 1 January 2027 in Bochum is still 31 December 2026 in UTC.
    new_year = datetime(2027, 1, 1, 0, 30, tzinfo=BOCHUM)
    new_offer(db, actors, OfferKind.job_fair, new_year, 5, people=people, came=people)
    with db.read() as s:
        staff = fit_queries.programme_counts(s, actor=actors["thga.nowak"], year=2027)
        lead = fit_figures.fit_programme(s, actor=actors["lead.schmidt"], year=2027)
    assert (staff.offers_held, staff.attended) == (1, 5)
    assert compare(staff, lead) >= {"offers_held", "attended"}


# --- scope -----------------------------------------------------------------------------------

# Every read, with arguments it accepts.
READS: dict[str, dict[str, Any]] = {
    "programme_years": {},
    "programme_counts": {"year": 2026},
    "participants": {},
    "count_participants": {},
    "day_counts": {"year": 2026},
    "day_limit_warnings": {"year": 2026},
    "jobs": {"participant_id": 1},
    "work_day_count": {"participant_id": 1, "year": 2026},
    "participants_with_work_days": {"year": 2026},
    "offers": {"year": 2026},
    "registrations": {"offer_id": 1},
}


def test_every_read_of_the_module_is_in_the_scope_tests():
    public = {
        name
        for name, fn in inspect.getmembers(fit_queries, inspect.isfunction)
        if fn.__module__ == fit_queries.__name__ and not name.startswith("_")
    }
    assert public == set(READS)
    for name in READS:  # keyword-only after the session: (session, *, actor, ...)
        params = list(inspect.signature(getattr(fit_queries, name)).parameters.values())
        assert params[0].name == "session" and params[1].name == "actor", name
        assert all(p.kind == p.KEYWORD_ONLY for p in params[1:]), name


@pytest.mark.parametrize("name", sorted(READS))
@pytest.mark.parametrize("username", ["lead.schmidt", "vbw.schulz"])
def test_leadership_and_other_partners_are_refused_every_read(db, actors, name, username):
    enrolled(db, actors, 1)
    offer(db, actors, 5)
    read: Callable[..., object] = getattr(fit_queries, name)
    with db.read() as s, pytest.raises(PermissionDenied, match="programme staff"):
        read(s, actor=actors[username], **READS[name])


@pytest.mark.parametrize("username", ["thga.nowak", "cm.mueller", "admin"])
def test_programme_staff_may_read(db, actors, username):
    (pid,) = enrolled(db, actors, 1)
    oid = offer(db, actors, 5)
    args = {**READS, "jobs": {"participant_id": pid}, "registrations": {"offer_id": oid}}
    args["work_day_count"] = {"participant_id": pid, "year": 2026}
    with db.read() as s:
        for name, kwargs in args.items():
            getattr(fit_queries, name)(s, actor=actors[username], **kwargs)


# --- the rows --------------------------------------------------------------------------------


def test_participants_by_enrolment_or_by_name_with_what_became_of_them(db, actors):
    thga = actors["thga.nowak"]
    zeller = enrolled(db, actors, 1, family_name="Zeller")[0]
    adam = enrolled(db, actors, 1, family_name="Adam")[0]
    with db.transaction() as s:
        change_status(
            s, actor=thga, participant_id=zeller, status=FitStatus.graduated,
            on=date(2026, 7, 1), now=LATER,
        )  # fmt: skip
        record_job_entry(
            s, actor=thga, participant_id=zeller, employer="RAG", started_on=date(2026, 8, 1),
            in_region=False, now=LATER,
        )  # fmt: skip
    with db.read() as s:
        by_enrolment = fit_queries.participants(s, actor=thga)
        by_name = fit_queries.participants(s, actor=thga, order="name")
        graduated = fit_queries.participants(s, actor=thga, status="graduated")
        none_in_2025 = fit_queries.participants(s, actor=thga, year=2025)
    assert [p.id for p in by_enrolment] == [zeller, adam]
    assert [p.id for p in by_name] == [adam, zeller]
    assert [p.name for p in by_name] == ["Student0 Adam", "Student0 Zeller"]
    (row,) = graduated
    assert (row.id, row.status, row.graduated_on, row.left_on, row.ended_on) == (
        zeller,
        "graduated",
        date(2026, 7, 1),
        None,
        date(2026, 7, 1),
    )
    assert (row.job_employer, row.job_started_on, row.job_in_region) == (
        "RAG",
        date(2026, 8, 1),
        False,
    )
    assert none_in_2025 == []
    # Plain data: the row dumps to JSON for the CLI without the derived name.
    assert "name" not in row.model_dump() and row.model_dump(mode="json")["enrolled_on"]


def test_day_counts_are_the_services_count_for_everyone(db, actors):
    thga = actors["thga.nowak"]
    a, b = enrolled(db, actors, 2)
    work = job(db, actors, a, JobKind.working_student)
    assistant = job(db, actors, a, JobKind.university_assistant)
    days = weekdays(date(2025, 3, 3), 10)
    record(db, actors, work, days[:6])
    record(db, actors, work, days[6:], half=True)
    record(db, actors, assistant, weekdays(date(2025, 6, 2), 5))
    with db.read() as s:
        counts = fit_queries.day_counts(s, actor=thga, year=2025)
        single = fit_queries.work_day_count(s, actor=thga, participant_id=a, year=2025)
        jobs = fit_queries.jobs(s, actor=thga, participant_id=a)
        with_days = fit_queries.participants_with_work_days(s, actor=thga, year=2025)
    assert counts[a] == single
    assert (single.full, single.half, single.used) == (6, 4, 8.0)
    assert (counts[b].used, counts[b].warning) == (0, False)
    assert {(j.kind, j.full_days, j.half_days) for j in jobs} == {
        ("working_student", 6, 4),
        ("university_assistant", 5, 0),
    }
    assert with_days == [a]


def test_a_page_of_the_participants_by_name_their_count_and_a_search(db, actors):
    thga, cm = actors["thga.nowak"], actors["cm.mueller"]
    names = ["Engel", "Adam", "Dorn", "Berg", "Celik"]
    ids = {name: enrolled(db, actors, 1, family_name=name)[0] for name in names}
    with db.read() as s:
        pages = [
            [p.family_name for p in fit_queries.participants(
                s, actor=thga, order="name", limit=2, offset=offset
            )]
            for offset in (0, 2, 4, 6)
        ]  # fmt: skip
        total = fit_queries.count_participants(s, actor=thga)
        berg = fit_queries.participants(s, actor=thga, search="BERG")
        reference = berg[0].reference
        by_reference = fit_queries.participants(s, actor=thga, search=reference.lower()[-6:])
        two_words = fit_queries.participants(s, actor=thga, search="stud dor")
        counted = fit_queries.count_participants(s, actor=thga, search="stud dor")
        # A word with a digit may be part of a birth date: a partner's matches references only.
        digits = [
            fit_queries.count_participants(s, actor=who, search="student0") for who in (thga, cm)
        ]
        none = fit_queries.count_participants(s, actor=cm, search="nobody")
        wildcard = fit_queries.count_participants(s, actor=cm, search="%")
        by_ids = fit_queries.participants(
            s, actor=thga, order="name", ids=[ids["Engel"], ids["Adam"]]
        )
    assert pages == [["Adam", "Berg"], ["Celik", "Dorn"], ["Engel"], []]
    assert total == 5
    assert [p.id for p in berg] == [ids["Berg"]]
    assert [p.id for p in by_reference] == [ids["Berg"]]
    assert ([p.id for p in two_words], counted) == ([ids["Dorn"]], 1)
    assert digits == [0, 5]
    assert (none, wildcard) == (0, 0)  # "%" is a character to look for, not a wildcard
    assert [p.family_name for p in by_ids] == ["Adam", "Engel"]


def test_the_day_limit_warnings_are_the_participants_near_the_limit(db, actors):
    """Counted in the database for everyone: the same participants and counts as the day
    counter's warning (140 days, warned from 120), scoped like every other read."""
    from tests.test_fit_scope import set_consent

    thga, cm = actors["thga.nowak"], actors["cm.mueller"]
    full, halves, doubled = enrolled(db, actors, 3)
    days = weekdays(date(2025, 1, 1), 122)
    record(db, actors, job(db, actors, full, JobKind.working_student), days[:120])
    # 119 full days and two half days: 120.
    work = job(db, actors, halves, JobKind.working_student)
    record(db, actors, work, days[:119])
    record(db, actors, work, days[119:121], half=True)
    # 119 full days, the same days again as half days in a second job and ten days of a
    # mandatory internship: still 119 (a day counts once; the internship not at all).
    record(db, actors, job(db, actors, doubled, JobKind.working_student), days[:119])
    record(db, actors, job(db, actors, doubled, JobKind.voluntary_internship), days[:119], True)
    internship = job(db, actors, doubled, JobKind.mandatory_internship)
    record(db, actors, internship, weekdays(date(2025, 9, 1), 10))
    with db.read() as s:
        warned = fit_queries.day_limit_warnings(s, actor=thga, year=2025)
        counts = fit_queries.day_counts(s, actor=thga, year=2025)
        none_in_2026 = fit_queries.day_limit_warnings(s, actor=thga, year=2026)
        reference = fit_queries.participants(s, actor=cm, ids=[full])[0].reference
    assert warned == {pid: count for pid, count in counts.items() if count.warning}
    assert {pid: w.used for pid, w in warned.items()} == {full: 120.0, halves: 120.0}
    assert counts[doubled].used == 119.0 and none_in_2026 == {}
    set_consent(db, actors, reference, given=False)  # no longer shared with THGA
    with db.read() as s:
        assert list(fit_queries.day_limit_warnings(s, actor=thga, year=2025)) == [halves]
        assert sorted(fit_queries.day_limit_warnings(s, actor=cm, year=2025)) == [full, halves]


def test_offers_by_the_bochum_year_with_their_places_and_registrations_in_order(db, actors):
    thga = actors["thga.nowak"]
    a, b, c = enrolled(db, actors, 3)
    # 00:30 on 1 January 2027 in Bochum: an offer of 2027, though 2026 in UTC.
    new_year = new_offer(
        db, actors, OfferKind.job_fair, datetime(2027, 1, 1, 0, 30, tzinfo=BOCHUM), 1,
        people=[a, b],
    )  # fmt: skip
    autumn = new_offer(
        db, actors, OfferKind.excursion, datetime(2026, 10, 1, 9, tzinfo=UTC), 5,
        people=[a, c], came=[c],
    )  # fmt: skip
    with db.read() as s:
        in_2026 = fit_queries.offers(s, actor=thga, year=2026)
        in_2027 = fit_queries.offers(s, actor=thga, year=2027)
        every = fit_queries.offers(s, actor=thga)
        latest_first = fit_queries.offers(s, actor=thga, latest_first=True)
        waiting = fit_queries.registrations(s, actor=thga, offer_id=new_year)
    assert [o.id for o in in_2026] == [autumn]
    assert [o.id for o in in_2027] == [new_year]
    assert [o.id for o in every] == [autumn, new_year]
    assert [o.id for o in latest_first] == [new_year, autumn]
    held = every[0]
    assert (held.status, held.places_taken, held.waitlisted, held.attended) == ("held", 2, 0, 1)
    full = every[1]
    assert (full.status, full.places_taken, full.waitlisted, full.capacity) == ("planned", 1, 1, 1)
    assert [(r.participant_id, r.status) for r in waiting] == [
        (a, "registered"),
        (b, "waitlisted"),
    ]
    assert waiting[1].placed_at is None and waiting[1].name.startswith("Student1 ")


def test_the_years_to_choose_from_reach_from_the_first_data_to_the_last_offer(db, actors):
    thga = actors["thga.nowak"]
    with db.read() as s:
        empty = fit_queries.programme_years(s, actor=thga)
    this_year = datetime.now(BOCHUM).year
    assert empty == list(range(this_year, min(this_year, 2024) - 1, -1))
    new_offer(db, actors, OfferKind.job_fair, datetime(2023, 5, 1, 9, tzinfo=UTC), 5)
    new_offer(
        db, actors, OfferKind.job_fair, datetime(this_year + 1, 12, 31, 23, 30, tzinfo=UTC), 5
    )
    with db.read() as s:
        years = fit_queries.programme_years(s, actor=thga)
    # 23:30 UTC on 31 December is already the next year in Bochum.
    assert years == list(range(this_year + 2, 2022, -1))
