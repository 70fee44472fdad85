"""The dashboard under Streamlit's AppTest: every page and role, widgets driven by key."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import streamlit as st
from google.protobuf.message import Message
from markdown_it import MarkdownIt
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Table

from tests.conftest import NOW
from tests.helpers import start_case
from tests.test_fit import enrolled
from tracker import fit
from tracker.admin import queries as admin_queries
from tracker.admin.passwords import hash_password
from tracker.config import get_settings
from tracker.db import get_database
from tracker.demo.people import DEMO_PASSWORD
from tracker.enums import OfferKind
from tracker.journeys import queries
from tracker.journeys.steps import block_step
from tracker.models import Step, User

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
APP = str(DASHBOARD / "app.py")


@pytest.fixture
def dash(db, monkeypatch):
    """The dashboard pointed at the test database, advancing cases inline (no Prefect)."""
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "inline")
    # AppTest calls a widget's format_func outside the script run, where the chosen language
    # is not visible; make the fallback the language these tests read.
    monkeypatch.setattr("dashboard.common.DEFAULT", "en")
    get_settings.cache_clear()
    get_database.cache_clear()
    yield db
    get_database.cache_clear()
    get_settings.cache_clear()


def app(username: str | None = None, *, page: str | None = None, lang: str = "en") -> AppTest:
    at = AppTest.from_file(
        str(DASHBOARD / "views" / f"{page}.py") if page else APP, default_timeout=60
    )
    at.session_state["lang"] = lang
    if username:
        at.session_state["username"] = username
        at.session_state["signed_in_at"] = datetime.now(UTC)
    return at


def texts(at: AppTest) -> str:
    parts = (
        [e.value for e in at.error]
        + [e.value for e in at.warning]
        + [e.value for e in at.success]
        + [e.value for e in at.info]
        + [t.value for t in at.title]
        + [m.value for m in at.markdown]
    )
    return "\n".join(str(p) for p in parts)


def test_signing_in_with_the_right_password_opens_my_cases(dash):
    at = app()
    at.run()
    assert not at.exception
    at.text_input(key="signin_user").input("cm.mueller")
    at.text_input(key="signin_password").input("wrong")
    at.button(key="signin_submit").click().run()
    assert "Wrong username or password" in texts(at)
    at.text_input(key="signin_password").input(DEMO_PASSWORD)
    at.button(key="signin_submit").click().run()
    assert not at.exception
    assert at.session_state["username"] == "cm.mueller"
    assert [m.label for m in at.metric] == ["Open cases", "Overdue", "Due soon", "Need attention"]


def _signed_in_dashboard() -> AppTest:
    """Signed in through the form, as a person does (the session remembers its credentials)."""
    at = app()
    at.run()
    at.text_input(key="signin_user").input("cm.mueller")
    at.text_input(key="signin_password").input(DEMO_PASSWORD)
    at.button(key="signin_submit").click().run()
    assert at.session_state["username"] == "cm.mueller"
    return at


def _signed_out(at: AppTest) -> str:
    assert not at.exception
    assert "username" not in at.session_state
    assert at.text_input(key="signin_user"), "the sign-in page"
    return "\n".join(str(i.value) for i in at.info)


def test_an_idle_session_ends_and_the_sign_in_page_says_why(dash):
    at = _signed_in_dashboard()
    now = datetime.now(UTC)
    at.session_state["last_seen"] = now - timedelta(minutes=29)
    at.run()
    assert at.session_state["username"] == "cm.mueller"  # a click within the limit
    assert at.session_state["last_seen"] > now - timedelta(seconds=5)  # ... counts as activity
    at.session_state["last_seen"] = now - timedelta(minutes=31)
    at.run()
    assert "signed out after 30 minutes without activity" in _signed_out(at)


def test_a_session_ends_8_hours_after_sign_in_however_busy(dash):
    at = _signed_in_dashboard()
    at.session_state["lang"] = "de"
    at.session_state["signed_in_at"] = datetime.now(UTC) - timedelta(hours=8, seconds=1)
    at.run()
    assert "Sitzung endete 8 Stunden nach der Anmeldung" in _signed_out(at)


@pytest.mark.parametrize("change", ["password", "lockout"])
def test_a_new_password_or_a_lockout_ends_the_session_within_seconds(dash, change):
    at = _signed_in_dashboard()
    if change == "password":
        values = {"password_hash": hash_password("a-new-password")}
    else:  # someone else's wrong guesses locked the account
        values = {"locked_until": datetime.now(UTC) + timedelta(minutes=15)}
    with dash.transaction() as s:
        s.execute(update(User).where(User.username == "cm.mueller").values(**values))
    st.cache_data.clear()  # what the 5 seconds of the actor cache do
    at.run()
    assert "password or account was changed or locked" in _signed_out(at)


def test_a_deactivated_account_is_signed_out_within_seconds(dash):
    at = _signed_in_dashboard()
    with dash.transaction() as s:
        s.execute(update(User).where(User.username == "cm.mueller").values(active=False))
    st.cache_data.clear()
    at.run()
    _signed_out(at)


@pytest.mark.parametrize(
    ("username", "first_title"),
    [
        ("cm.mueller", "My cases"),
        ("stadt.weber", "Our queue"),
        ("admin", "Cases"),
    ],
)
def test_each_role_lands_on_its_first_page_without_errors(dash, username, first_title):
    at = app(username)
    at.run()
    assert not at.exception
    assert at.title[0].value == first_title


def test_my_cases_counts_and_filters(dash, actors):
    cm = actors["cm.mueller"]
    refs = [start_case(dash, cm, now=NOW, given_name=f"P{i}", nationality="PL") for i in range(3)]
    at = app("cm.mueller")
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Open cases"] == "3"
    table = at.dataframe(key="cases_table").value
    assert sorted(table["Reference"]) == sorted(refs)
    at.text_input(key="cases_search").input(refs[1]).run()
    assert list(at.dataframe(key="cases_table").value["Reference"]) == [refs[1]]
    at.selectbox(key="cases_status").set_value("closed").run()
    assert "cases_table" not in [d.key for d in at.dataframe]
    assert "No case matches these filters." in texts(at)


def test_a_case_manager_completes_a_step_and_the_next_one_opens(dash, actors):
    cm = actors["cm.mueller"]
    ref = start_case(dash, cm, now=NOW, nationality="PL")
    at = app("cm.mueller", page="person")
    at.session_state["case"] = ref
    at.run()
    assert not at.exception
    # A click on the housing row (the first step) chooses it; "record as done" comes first.
    at.session_state["person_steps"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert at.radio[0].value == "complete"
    at.button(key="person_submit").click().run()
    assert not at.exception
    with dash.read() as s:
        states = {st.key: st.state for st in queries.case_view(s, actor=cm, reference=ref).steps}
    assert states["housing"] == "done"
    assert states["registration"] == "open"
    steps = at.dataframe[0].value
    assert "open" in list(steps[steps["Step"] == "Residence registration (Anmeldung)"]["State"])


def test_the_case_page_shows_prefect_runs_only_when_prefect_runs_the_advance(
    dash, actors, monkeypatch
):
    ref = start_case(dash, actors["cm.mueller"], now=NOW, nationality="PL")

    def case_page() -> AppTest:
        at = app("cm.mueller", page="person")
        at.session_state["case"] = ref
        at.run()
        assert not at.exception
        return at

    def subheaders(at: AppTest) -> list[str]:
        return [h.value for h in at.subheader]

    assert "Runs in Prefect" not in subheaders(case_page())  # inline: no link to a Prefect UI
    # With Prefect (here unreachable: a closed port) the section is there; Prefect is asked
    # only when the person wants the runs (a save's reruns do not wait for it), then it says so.
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "prefect")
    monkeypatch.setenv("ONBOARDING_PREFECT_API_URL", "http://127.0.0.1:9/api")
    get_settings.cache_clear()
    at = case_page()
    assert "Runs in Prefect" in subheaders(at)
    unreachable = "No runs found, or Prefect is not reachable."
    assert not any(unreachable in c.value for c in at.caption)
    at.toggle(key="person_runs").set_value(True).run()
    assert not at.exception
    assert any(unreachable in c.value for c in at.caption)


def test_a_stale_edit_is_refused_with_a_clear_message(dash, actors):
    cm = actors["cm.mueller"]
    ref = start_case(dash, cm, now=NOW, nationality="PL")
    at = app("cm.mueller", page="person")
    at.session_state["case"] = ref
    at.run()
    at.session_state["person_steps"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()  # housing chosen: "record as done"
    assert at.radio[0].value == "complete"
    # Meanwhile a colleague blocks the same step.
    with dash.transaction() as s:
        block_step(
            s,
            actor=actors["cm.yilmaz"],
            reference=ref,
            step_key="housing",
            reason="Mietvertrag fehlt",
        )
    at.button(key="person_submit").click().run()
    assert "Someone else changed this record" in texts(at)
    with dash.read() as s:
        state = s.scalar(select(Step.state).where(Step.key == "housing"))
    assert state == "blocked"


def test_a_partner_accepts_a_handoff_and_it_leaves_the_new_offers(dash, actors):
    cm = actors["cm.mueller"]
    ref = start_case(dash, cm, now=NOW)
    at = app("ihk.hoffmann", page="queue")
    at.run()
    assert not at.exception
    table = at.dataframe(key="queue_new").value
    assert list(table["Reference"]) == [ref]
    assert list(table["Name"]) == ["Priya Raman"]
    at.session_state["queue_new"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    # Only the fields the step needs: the IHK's recognition needs birth date and nationality.
    (facts,) = [c.value for c in at.caption if "Date of birth" in c.value]
    assert "Nationality" in facts and "Email" not in facts
    at.button(key="queue_accept").click().run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["New (offered)"] == "0"
    assert {m.label: m.value for m in at.metric}["In progress (accepted)"] == "1"


@pytest.mark.parametrize(
    ("username", "page"),
    [
        ("stadt.weber", "my_cases"),
        ("stadt.weber", "admin"),
        ("cm.mueller", "admin"),
        ("lead.schmidt", "my_cases"),
        ("lead.schmidt", "queue"),
        ("lead.schmidt", "person"),
    ],
)
def test_a_page_a_role_may_not_use_refuses_even_when_opened_directly(dash, username, page):
    at = app(username, page=page)
    at.run()
    assert not at.exception
    assert "not available for your role" in texts(at)


def test_nobody_signed_in_sees_nothing_but_the_sign_in(dash):
    at = app(page="my_cases")
    at.run()
    assert "Please sign in" in texts(at)
    assert not at.dataframe


def test_leadership_sees_the_outcomes_without_names(dash, actors):
    cm = actors["cm.mueller"]
    for i in range(6):
        start_case(dash, cm, now=NOW, given_name=f"Anon{i}", family_name="Secretname")
    at = app("lead.schmidt")
    at.run()
    assert not at.exception
    assert at.title[0].value == "Outcomes"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Open cases"] == "6"
    assert "Secretname" not in texts(at)
    assert len(at.get("download_button")) >= 8  # every figure downloadable as CSV


def test_admin_pages_render_and_an_organisation_can_be_added(dash):
    at = app("admin", page="admin")
    at.run()
    assert not at.exception
    at.text_input(key="org_key").input("welcome-herne")
    at.text_input(key="org_name").input("Welcome Point Herne")
    at.button(key="org_add_submit").click().run()
    assert not at.exception
    assert "welcome-herne" in list(at.dataframe[0].value["Key"])


def test_renaming_an_organisation_someone_else_just_changed_is_refused(dash, actors):
    from tracker.admin.organisations import update_organisation

    at = app("admin", page="admin")
    at.run()
    at.selectbox(key="org_target").set_value("thga")
    at.text_input(key="org_new_name").input("THGA (mine)")
    with dash.transaction() as s:
        update_organisation(s, actor=actors["admin"], key="thga", name="THGA (theirs)")
    at.button(key="org_change_submit").click().run()
    assert "Someone else changed this record" in texts(at)
    with dash.read() as s:
        names = {o.key: o.name for o in admin_queries.organisations(s)}
    assert names["thga"] == "THGA (theirs)"


def test_a_handoff_accepted_meanwhile_by_a_colleague_is_not_accepted_twice(dash, actors):
    from tracker.journeys.handoffs import accept_handoff

    cm = actors["cm.mueller"]
    ref = start_case(dash, cm, now=NOW)
    at = app("ihk.hoffmann", page="queue")
    at.run()
    at.session_state["queue_new"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    with dash.transaction() as s:  # a colleague at the same organisation is quicker
        accept_handoff(s, actor=actors["ihk.hoffmann"], reference=ref, step_key="recognition")
    at.button(key="queue_accept").click().run()
    assert not at.exception
    assert "Not accepted" in texts(at)  # with what happened: taken meanwhile


def test_leadership_reports_page_offers_every_format_and_the_issued_reports(dash, actors):
    from tracker.reporting import reports
    from tracker.reporting.archive import store_reports

    lead = actors["lead.schmidt"]
    file = reports.ReportFile("monthly", "2026-10", "de", "html", b"<html>kept</html>")
    with dash.transaction() as s:
        store_reports(s, actor=lead, files=[file])
    at = app("lead.schmidt", page="reports")
    at.run()
    assert not at.exception
    assert at.title[0].value == "Reports"
    labels = [b.label for b in at.get("download_button")]
    assert labels[:4] == ["Download HTML", "Download PDF", "Download CSV", "Download JSON"]
    assert labels[4:] == ["Download"]  # the one issued report
    # The period as a month's name, the language by name (not 2026-10, de).
    issued = "\n".join(str(m.value) for m in at.markdown)
    assert "October 2026" in issued and "German" in issued
    assert "2026-10" not in issued
    at.radio(key="report_kind").set_value("fit").run()
    assert not at.exception
    assert at.selectbox(key="report_period_fit").value == str(NOW.year)


def test_partners_and_case_managers_cannot_open_the_reports_page(dash):
    for username in ("cm.mueller", "vbw.schulz"):
        at = app(username, page="reports")
        at.run()
        assert "not available for your role" in texts(at)
        assert not at.get("download_button")


# A name that is Markdown: an image from elsewhere (a tracking pixel), a link and coloured text.
PIXEL = "![p](http://127.0.0.1:8999/pixel.png)"
PHISH = "[klick](http://127.0.0.1:8999/phish) :red[ROT]"
# Where Streamlit shows a string as plain text, not as Markdown (tried in a browser): the
# options of a selectbox or multiselect, what an input holds, st.text and st.code.
PLAIN_FIELDS = {
    ("Selectbox", "options"),
    ("MultiSelect", "options"),
    ("TextInput", "default"),
    ("TextInput", "value"),
    ("Text", "body"),
    ("Code", "code_text"),
}


def _strings(message: Message, path: str = "") -> Iterator[tuple[str, str]]:
    for field, value in message.ListFields():
        for item in value if field.is_repeated else [value]:
            if isinstance(item, str):
                yield path + field.name, item
            elif isinstance(item, Message):
                yield from _strings(item, f"{path}{field.name}.")


def markdown_sources(at: AppTest) -> list[tuple[str, str]]:
    """Every string of the page that the browser renders as Markdown, with where it is: the
    text of titles, captions, alerts, labels, expanders, tabs ... and the cells of st.table."""
    found = []
    for node in [*at.main, *at.sidebar]:
        proto = getattr(node, "proto", None)
        kind = type(proto).__name__
        if isinstance(proto, Message):
            found += [
                (f"{kind}.{w}", s) for w, s in _strings(proto) if (kind, w) not in PLAIN_FIELDS
            ]
        if isinstance(node, Table):
            found += [("Table cell", str(v)) for v in node.value.to_numpy().ravel()]
    return found


def assert_typed_text_is_shown_as_text(at: AppTest) -> int:
    """No string that quotes the Markdown name reaches Markdown unescaped, and each one still
    reads as the name; returns how many such strings the page has."""
    assert not at.exception
    quoting = [(where, source) for where, source in markdown_sources(at) if "8999" in source]
    for where, source in quoting:
        assert not re.search(r"(?<!\\)(!\[|\]\(|:red\[)", source), f"{where}: {source!r}"
        rendered = MarkdownIt("commonmark").render(source)
        assert "<img" not in rendered and "<a " not in rendered, f"{where}: {rendered}"
        text = html.unescape(re.sub(r"<[^>]+>", "", rendered)).replace("\u2060", "")
        assert PIXEL in text or PHISH in text, f"{where}: {text!r}"
    return len(quoting)


def test_a_name_written_in_markdown_shows_as_text_on_every_page(dash, actors):
    cm = actors["cm.mueller"]
    # A work case: recognition is offered to the IHK; a student enrolled in FIT@THGA.
    ref = start_case(dash, cm, now=NOW, given_name=PIXEL, family_name=PHISH)
    enrolled(dash, actors, 1, family_name=PHISH)
    with dash.transaction() as s:
        starts = datetime.now(UTC) + timedelta(days=7)
        offer = fit.create_offer(
            s,
            actor=actors["thga.nowak"],
            kind=OfferKind.job_fair,
            title=f"Messe {PHISH}",
            starts_at=starts,
            ends_at=starts + timedelta(hours=4),
            place=PIXEL,
            capacity=5,
            now=NOW,
        ).id

    for username in ("cm.mueller", "ihk.hoffmann"):
        at = app(username, page="person")
        at.session_state["case"] = ref
        at.run()
        assert assert_typed_text_is_shown_as_text(at) >= 1  # the title names the person
        assert ref in at.title[0].value

    at = app("cm.mueller", page="my_cases")
    at.run()
    assert_typed_text_is_shown_as_text(at)
    assert f"{PIXEL} {PHISH}" in list(at.dataframe[0].value["Name"])

    at = app("ihk.hoffmann", page="queue")
    at.run()
    assert_typed_text_is_shown_as_text(at)
    assert list(at.dataframe[0].value["Reference"]) == [ref]

    at = app("thga.nowak", page="fit")
    at.session_state["fit_tabs"] = "Offers"  # only the open tab is drawn
    at.run()
    assert assert_typed_text_is_shown_as_text(at) >= 1  # the offer's title and place
    at.button(key=f"fit_register_submit_{offer}").click().run()
    # "... has a place." names the student; so does the table of registrations.
    assert any("has a place" in str(m.value) for m in at.success)
    assert assert_typed_text_is_shown_as_text(at) >= 2
