"""The FIT@THGA page under Streamlit's AppTest: programme staff run offers, registrations and
attendance through the services; leadership and other partners do not get the page."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from tests.conftest import NOW
from tests.test_fit import enrolled, statuses, weekdays
from tracker import fit
from tracker.clocks import local_today
from tracker.config import get_settings
from tracker.db import get_database
from tracker.enums import (
    ContactKind,
    FitChannel,
    FitStatus,
    JobKind,
    OfferKind,
    OfferStatus,
    PermitKind,
    RegistrationStatus,
)
from tracker.models import FitJob, FitOffer, FitParticipant

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
APP = str(DASHBOARD / "app.py")
FIT_PAGE = "views/fit.py"


@pytest.fixture
def dash(db, monkeypatch):
    """The dashboard pointed at the test database, advancing cases inline (no Prefect)."""
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "inline")
    # AppTest calls a widget's format_func outside the script run, where the chosen language
    # is not visible; make the fallback the language a test reads.
    monkeypatch.setattr("dashboard.common.DEFAULT", "en")
    get_settings.cache_clear()
    get_database.cache_clear()
    st.cache_data.clear()  # the PostgreSQL test database keeps its URL from test to test
    yield db
    st.cache_data.clear()
    get_database.cache_clear()
    get_settings.cache_clear()


def app(username: str | None = None, *, page: str | None = "fit", lang: str = "en") -> AppTest:
    at = AppTest.from_file(
        str(DASHBOARD / "views" / f"{page}.py") if page else APP, default_timeout=60
    )
    at.session_state["lang"] = lang
    if username:
        at.session_state["username"] = username
        at.session_state["signed_in_at"] = datetime.now(UTC)
    return at


def open_tab(at: AppTest, label: str) -> AppTest:
    """Choose a tab of the page for the next run: only the open tab is drawn."""
    at.session_state["fit_tabs"] = label
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("error", "warning", "success", "info") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in [*parts, *(t.value for t in at.title)])


def figures(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# Each table of the page, by a column only it has.
PEOPLE, OFFERS, REGISTRATIONS = "Study programme", "Capacity", "Registered on"


def table(at: AppTest, marker: str):  # -> pandas.DataFrame
    found = [d.value for d in at.dataframe if marker in d.value.columns]
    assert len(found) == 1, f"{len(found)} tables with a column {marker!r}"
    return found[0]


def column(at: AppTest, marker: str, name: str) -> list[object]:
    return list(table(at, marker)[name])


def new_offer(db, actors, capacity: int, *, starts: datetime, title: str = "Karrieretag") -> int:
    with db.transaction() as s:
        return fit.create_offer(
            s,
            actor=actors["thga.nowak"],
            kind=OfferKind.job_fair,
            title=title,
            starts_at=starts,
            ends_at=starts + timedelta(hours=4),
            place="THGA Audimax",
            capacity=capacity,
            now=NOW,
        ).id


def names(db, *ids: int) -> list[str]:
    with db.read() as s:
        people = [s.get(FitParticipant, i) for i in ids]
        return [f"{p.newcomer.given_name} {p.newcomer.family_name}" for p in people]


def test_thga_opens_the_page_from_the_navigation_and_sees_the_programme(dash, actors):
    (pid,) = enrolled(dash, actors, 1)
    new_offer(dash, actors, 10, starts=datetime.now(UTC) + timedelta(days=7))
    at = app("thga.nowak", page=None)
    at.run()
    at.switch_page(FIT_PAGE).run()
    assert not at.exception
    assert at.title[0].value == "FIT@THGA"
    assert list(figures(at)) == [
        "Enrolled",
        "Offers held",
        "Attended",
        "No-shows",
        "Company contacts",
        "Working-student jobs",
        "Graduates",
        "Dropouts",
        "Job entries",
    ]
    at.selectbox(key="fit_year").set_value(NOW.year).run()
    assert figures(at)["Enrolled"] == "1"
    assert column(at, PEOPLE, "Name") == names(dash, pid)
    assert column(at, PEOPLE, "Channel") == ["orientation week"]
    assert [t.label for t in at.tabs] == ["Participants", "Offers", "Enrol"]
    open_tab(at, "Offers").run()
    assert column(at, OFFERS, "Title") == ["Karrieretag"]


def test_creating_an_offer_through_the_form_adds_it(dash, actors):
    at = open_tab(app("thga.nowak"), "Offers")
    at.run()
    assert not at.exception
    day = local_today() + timedelta(days=14)
    at.selectbox(key="fit_offer_kind").set_value(OfferKind.application_training)
    at.text_input(key="fit_offer_title").input("Bewerbungstraining Herbst")
    at.date_input(key="fit_offer_day").set_value(day)
    at.text_input(key="fit_offer_place").input("Raum 2.14")
    at.number_input(key="fit_offer_capacity").set_value(12)
    at.button(key="fit_offer_submit").click().run()
    assert not at.exception
    assert "Saved." in texts(at)
    assert column(at, OFFERS, "Title") == ["Bewerbungstraining Herbst"]
    assert column(at, OFFERS, "Kind") == ["application training"]
    assert column(at, OFFERS, "Capacity") == [12]
    with dash.read() as s:
        stored = s.execute(select(FitOffer.title, FitOffer.capacity, FitOffer.starts_at)).one()
    # 10:00 in Bochum is the same day in UTC.
    assert (stored.title, stored.capacity, stored.starts_at.date()) == (
        "Bewerbungstraining Herbst",
        12,
        day,
    )
    # A refused offer (no place) shows the reason and adds nothing.
    at.text_input(key="fit_offer_title").input("Ohne Ort")
    at.text_input(key="fit_offer_place").input("")
    at.button(key="fit_offer_submit").click().run()
    assert "Not saved: place is required." in texts(at)
    with dash.read() as s:
        assert len(s.scalars(select(FitOffer)).all()) == 1


def test_two_people_for_one_place_one_registered_one_on_the_waiting_list(dash, actors):
    a, b = enrolled(dash, actors, 2)
    oid = new_offer(dash, actors, 1, starts=datetime.now(UTC) + timedelta(days=7))
    at = open_tab(app("thga.nowak"), "Offers")
    at.run()
    at.selectbox(key="fit_offer").set_value(oid).run()
    assert "Nobody has registered yet." in [c.value for c in at.caption]
    for pid in (a, b):
        at.selectbox(key=f"fit_register_who_{oid}").set_value(pid)
        at.button(key=f"fit_register_submit_{oid}").click().run()
        assert not at.exception
    name_a, name_b = names(dash, a, b)
    assert f"The offer is full: {name_b} is on the waiting list." in texts(at)
    table_ = table(at, REGISTRATIONS)
    assert dict(zip(table_["Name"], table_["Status"], strict=True)) == {
        name_a: "has a place",
        name_b: "waiting list",
    }
    assert column(at, OFFERS, "Registered") == [1]
    assert column(at, OFFERS, "Waiting list") == [1]
    with dash.read() as s:
        stored = statuses(s)
    assert stored == {a: RegistrationStatus.registered, b: RegistrationStatus.waitlisted}
    # Registering the same person twice is refused with the service's reason.
    at.selectbox(key=f"fit_register_who_{oid}").set_value(a)
    at.button(key=f"fit_register_submit_{oid}").click().run()
    assert "already registered" in texts(at)


def test_recording_attendance_changes_the_programme_figures(dash, actors):
    a, b, c = enrolled(dash, actors, 3)
    started = datetime.now(UTC) - timedelta(hours=1)
    oid = new_offer(dash, actors, 2, starts=started)
    with dash.transaction() as s:
        for pid in (a, b, c):  # before the offer began: two places, one on the waiting list
            fit.register(s, actor=actors["thga.nowak"], offer_id=oid, participant_id=pid, now=NOW)
    at = open_tab(app("thga.nowak"), "Offers")
    at.run()
    at.selectbox(key="fit_year").set_value(local_today(started).year).run()
    before = figures(at)
    assert (before["Offers held"], before["Attended"], before["No-shows"]) == ("0", "0", "0")
    at.selectbox(key="fit_offer").set_value(oid).run()
    # Only the people with a place can be marked.
    assert at.multiselect(key=f"fit_attended_{oid}").options == names(dash, a, b)
    at.multiselect(key=f"fit_attended_{oid}").select(a)
    at.button(key=f"fit_attendance_submit_{oid}").click().run()
    assert not at.exception
    after = figures(at)
    assert (after["Offers held"], after["Attended"], after["No-shows"]) == ("1", "1", "1")
    assert column(at, OFFERS, "Status") == ["held"]
    with dash.read() as s:
        stored = statuses(s)
    assert stored == {a: "attended", b: "no_show", c: "waitlisted"}


def test_outcomes_contacts_jobs_and_days_are_recorded_for_a_participant(dash, actors):
    (pid,) = enrolled(dash, actors, 1)
    at = app("thga.nowak")
    at.run()
    at.selectbox(key="fit_year").set_value(NOW.year).run()
    at.selectbox(key="fit_participant").set_value(pid)
    at.text_input(key="fit_contact_company").input("Vonovia SE")
    at.selectbox(key="fit_contact_kind").set_value(ContactKind.company_visit)
    at.date_input(key="fit_contact_on").set_value(NOW.date())
    at.button(key="fit_contact_submit").click().run()
    assert not at.exception
    assert figures(at)["Company contacts"] == "1"

    # A working-student job, and a range of days: only the weekdays are recorded.
    monday = NOW.date() + timedelta(days=7 - NOW.date().weekday())
    at.text_input(key="fit_job_employer").input("Stadtwerke Bochum")
    at.selectbox(key="fit_job_kind").set_value(JobKind.working_student)
    at.date_input(key="fit_job_from").set_value(NOW.date())
    at.button(key="fit_job_submit").click().run()
    assert not at.exception
    assert figures(at)["Working-student jobs"] == "1"
    at.date_input(key="fit_days_from").set_value(monday)
    at.date_input(key="fit_days_until").set_value(monday + timedelta(days=6))  # to Sunday
    at.button(key="fit_days_submit").click().run()
    assert not at.exception
    assert f"Days used in {NOW.year}: 5 of 140." in texts(at)
    assert column(at, PEOPLE, f"Days worked {NOW.year}") == ["5 / 140"]

    at.selectbox(key="fit_permit_kind").set_value(PermitKind.job_search)
    at.date_input(key="fit_permit_from").set_value(date(2026, 3, 1))
    at.date_input(key="fit_permit_until").set_value(date(2028, 3, 2))  # beyond 18 months
    at.button(key="fit_permit_submit").click().run()
    assert "Not saved: A job-search permit (§20) runs at most 18 months" in texts(at)

    at.text_input(key="fit_entry_employer").input("thyssenkrupp")
    at.date_input(key="fit_entry_on").set_value(NOW.date() + timedelta(days=60))
    at.button(key="fit_entry_submit").click().run()
    # The status form presets nothing: saving without a choice changes nothing.
    assert at.selectbox(key="fit_status").value is None
    at.button(key="fit_status_submit").click().run()
    assert "Choose the new status first." in texts(at)
    with dash.read() as s:
        assert s.get(FitParticipant, pid).status == FitStatus.enrolled
    at.selectbox(key="fit_status").set_value(FitStatus.graduated)
    at.date_input(key="fit_status_on").set_value(NOW.date() + timedelta(days=30))
    at.button(key="fit_status_submit").click().run()
    assert not at.exception
    shown = figures(at)
    assert (shown["Graduates"], shown["Job entries"], shown["Dropouts"]) == ("1", "1", "0")
    assert column(at, PEOPLE, "Status")[0].startswith("graduated")
    with dash.read() as s:
        job = s.scalar(select(FitJob))
        assert (job.employer, job.kind) == ("Stadtwerke Bochum", JobKind.working_student)
        participant = s.get(FitParticipant, pid)
        assert (participant.status, participant.job_employer) == (
            FitStatus.graduated,
            "thyssenkrupp",
        )


def test_days_near_the_limit_are_marked(dash, actors):
    (pid,) = enrolled(dash, actors, 1)
    last_year = local_today().year - 1
    with dash.transaction() as s:
        job = fit.add_job(
            s,
            actor=actors["thga.nowak"],
            participant_id=pid,
            employer="Bochumer Verein",
            kind=JobKind.working_student,
            starts_on=date(last_year, 1, 1),
        )
        fit.record_work_days(
            s, actor=actors["thga.nowak"], job_id=job.id, days=weekdays(date(last_year, 1, 1), 125)
        )
    at = app("thga.nowak")
    at.run()
    at.selectbox(key="fit_year").set_value(last_year).run()
    assert column(at, PEOPLE, f"Days worked {last_year}") == ["125 / 140 ⚠"]
    assert "Near or over the limit of 140 working days" in texts(at)


def test_the_participants_come_a_page_at_a_time_and_are_found_by_name(dash, actors, monkeypatch):
    monkeypatch.setattr("dashboard.lists.PAGE_SIZE", 2)
    for family in ("Celik", "Adam", "Berg"):
        enrolled(dash, actors, 1, family_name=family)
    at = app("thga.nowak")
    at.run()
    assert [n.split()[-1] for n in column(at, PEOPLE, "Name")] == ["Adam", "Berg"]
    assert "1–2 of 3" in [c.value for c in at.caption]
    at.button(key="fit_people_next").click().run()
    assert [n.split()[-1] for n in column(at, PEOPLE, "Name")] == ["Celik"]
    # The participant to act on is one of the page's.
    assert len(at.selectbox(key="fit_participant").options) == 1
    at.text_input(key="fit_search").input("ber").run()
    assert [n.split()[-1] for n in column(at, PEOPLE, "Name")] == ["Berg"]
    at.text_input(key="fit_search").input("nobody").run()
    assert "None match." in texts(at)
    assert "fit_participant" not in [b.key for b in at.selectbox]


def test_a_hidden_tab_reads_nothing(dash, actors, monkeypatch):
    """Only the open tab is drawn: on the Offers tab the participants are not read, on the
    Participants tab the registrations are not."""
    from tracker.fit import queries as fit_queries

    (pid,) = enrolled(dash, actors, 1)
    oid = new_offer(dash, actors, 5, starts=datetime.now(UTC) + timedelta(days=7))
    with dash.transaction() as s:
        fit.register(s, actor=actors["thga.nowak"], offer_id=oid, participant_id=pid)
    reads: list[str] = []
    for name in ("participants", "count_participants", "day_counts", "registrations"):
        real = getattr(fit_queries, name)
        monkeypatch.setattr(
            fit_queries, name, lambda *a, _n=name, _f=real, **k: reads.append(_n) or _f(*a, **k)
        )
    at = app("thga.nowak")
    at.run()
    assert not at.exception
    assert "registrations" not in reads and "participants" in reads
    reads.clear()
    open_tab(at, "Offers").run()
    assert not at.exception
    assert reads == ["registrations", "participants"]  # the registrations, and who may register
    assert not [d for d in at.dataframe if "Study programme" in d.value.columns]


def test_a_stale_capacity_change_is_refused(dash, actors):
    oid = new_offer(dash, actors, 3, starts=datetime.now(UTC) + timedelta(days=7))
    at = open_tab(app("thga.nowak"), "Offers")
    at.run()
    at.selectbox(key="fit_offer").set_value(oid).run()
    with dash.transaction() as s:  # meanwhile a colleague gives the offer more places
        fit.change_capacity(s, actor=actors["cm.mueller"], offer_id=oid, capacity=8)
    at.number_input(key=f"fit_capacity_{oid}").set_value(5)
    at.button(key=f"fit_capacity_submit_{oid}").click().run()
    assert "Someone else changed this record" in texts(at)
    with dash.read() as s:
        assert s.get(FitOffer, oid).capacity == 8


def test_cancelling_a_registration_moves_the_waiting_list_up_and_an_offer_can_be_called_off(
    dash, actors
):
    a, b = enrolled(dash, actors, 2)
    oid = new_offer(dash, actors, 1, starts=datetime.now(UTC) + timedelta(days=7))
    with dash.transaction() as s:
        first = fit.register(s, actor=actors["thga.nowak"], offer_id=oid, participant_id=a)
        fit.register(s, actor=actors["thga.nowak"], offer_id=oid, participant_id=b)
        first_id = first.id
    at = open_tab(app("thga.nowak"), "Offers")
    at.run()
    at.selectbox(key="fit_offer").set_value(oid).run()
    at.selectbox(key=f"fit_unregister_which_{oid}").set_value(first_id)
    at.button(key=f"fit_unregister_submit_{oid}").click().run()
    assert not at.exception
    with dash.read() as s:
        stored = statuses(s)
    assert stored == {a: "cancelled", b: "registered"}
    at.button(key=f"fit_cancel_submit_{oid}").click().run()
    assert "Not saved: reason is required." in texts(at)
    at.text_input(key=f"fit_cancel_reason_{oid}").input("Referent erkrankt")
    at.button(key=f"fit_cancel_submit_{oid}").click().run()
    assert column(at, OFFERS, "Status") == ["called off"]
    with dash.read() as s:
        assert s.get(FitOffer, oid).status == OfferStatus.cancelled


def test_thga_enrols_the_student_of_a_case_through_the_accepted_handoff(dash, actors):
    from tests.test_fit import student_with_open_fit_step
    from tracker.journeys.handoffs import accept_handoff

    ref = student_with_open_fit_step(dash, actors)
    with dash.transaction() as s:
        accept_handoff(s, actor=actors["thga.nowak"], reference=ref, step_key="fit_enrollment")
    at = app("thga.nowak")
    at.run()
    at.text_input(key="fit_enrol_reference").input(ref.lower())
    at.selectbox(key="fit_enrol_channel").set_value(FitChannel.international_office)
    at.text_input(key="fit_enrol_programme").input("Rohstoffingenieurwesen")
    at.number_input(key="fit_enrol_semester").set_value(3)
    at.button(key="fit_enrol_submit").click().run()
    assert not at.exception
    assert column(at, PEOPLE, "Reference") == [ref]
    assert column(at, PEOPLE, "Study programme") == ["Rohstoffingenieurwesen"]
    # The same student again is refused with the reason.
    at.text_input(key="fit_enrol_reference").input(ref)
    at.button(key="fit_enrol_submit").click().run()
    assert "already in FIT@THGA" in texts(at)


@pytest.mark.parametrize("username", ["lead.schmidt", "vbw.schulz"])
def test_leadership_and_other_partners_do_not_get_the_page(dash, actors, username):
    enrolled(dash, actors, 1)
    at = app(username, page=None)
    at.run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(FIT_PAGE)  # not in their navigation
    at = app(username)  # and opened directly, it refuses
    at.run()
    assert not at.exception
    assert "not available for your role" in texts(at)
    assert not at.dataframe
    assert not at.metric


@pytest.mark.parametrize("username", ["cm.mueller", "admin"])
def test_case_managers_and_admins_may_help(dash, username):
    at = app(username, page=None)
    at.run()
    at.switch_page(FIT_PAGE).run()
    assert not at.exception
    assert at.title[0].value == "FIT@THGA"


def test_the_page_speaks_german_including_its_data_words(dash, actors, monkeypatch):
    monkeypatch.setattr("dashboard.common.DEFAULT", "de")
    enrolled(dash, actors, 1)
    at = app("thga.nowak", lang="de")
    at.run()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Teilnehmende", "Angebote", "Aufnahme"]
    assert figures(at).keys() >= {"Aufgenommen", "Teilgenommen", "Nicht erschienen"}
    for key, enum in [
        ("fit_enrol_channel", FitChannel),
        ("fit_offer_kind", OfferKind),
        ("fit_contact_kind", ContactKind),
        ("fit_job_kind", JobKind),
        ("fit_permit_kind", PermitKind),
    ]:
        shown = at.selectbox(key=key).options
        assert len(shown) == len(enum), key
        assert not set(shown) & {e.value for e in enum}, f"{key}: untranslated {shown}"
    statuses = at.selectbox(key="fit_status").options
    assert statuses == [
        "Abschluss",
        "Studium abgebrochen",
        "aus dem Programm ausgetreten",
        "im Programm",
    ]
