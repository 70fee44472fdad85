"""The figures FIT@THGA and Outcomes cache (st.cache_data): keyed by the viewer's scope and the
data's version, so one role's or organisation's figures never reach another, and a change made
anywhere (another process, the command line) shows on the next run, not after the cache's ttl."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import NOW
from tests.helpers import start_case
from tests.test_fit import enrolled
from tests.test_fit_scope import set_consent
from tracker.access import figure_scope
from tracker.admin.users import add_user
from tracker.audit import data_version
from tracker.config import get_settings
from tracker.db import get_database
from tracker.enums import Role
from tracker.fit import queries as fit_queries
from tracker.reporting import figures as reporting_figures

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"


@pytest.fixture
def dash(db, monkeypatch):
    """The dashboard on the test database, its data caches empty at the start and the end."""
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "inline")
    monkeypatch.setattr("dashboard.common.DEFAULT", "en")
    get_settings.cache_clear()
    get_database.cache_clear()
    st.cache_data.clear()
    yield db
    st.cache_data.clear()
    get_database.cache_clear()
    get_settings.cache_clear()


def page(name: str, username: str) -> AppTest:
    at = AppTest.from_file(str(DASHBOARD / "views" / f"{name}.py"), default_timeout=60)
    at.session_state["lang"] = "en"
    at.session_state["username"] = username
    at.session_state["signed_in_at"] = datetime.now(UTC)
    if name == "fit":
        at.session_state["fit_year"] = NOW.year  # the students enrol in the tests' year
    at.run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return {m.label: m.value for m in at.metric}[label]


def participant_names(at: AppTest) -> list[str]:
    (table,) = [d.value for d in at.dataframe if "Study programme" in d.value.columns]
    return list(table["Name"])


def test_the_data_version_moves_with_every_change(db, actors):
    with db.read() as s:
        before = data_version(s)
    with db.read() as s:
        assert data_version(s) == before  # reading changes nothing
    start_case(db, actors["cm.mueller"], now=NOW)
    with db.read() as s:
        assert data_version(s) != before


def test_the_figure_scope_is_role_and_organisation_never_the_person(db, actors):
    scopes = {name: figure_scope(actors[name]) for name in ("cm.mueller", "cm.yilmaz")}
    assert scopes["cm.mueller"] == scopes["cm.yilmaz"]
    assert figure_scope(actors["thga.nowak"]) != figure_scope(actors["vbw.schulz"])
    assert figure_scope(actors["lead.schmidt"]) != figure_scope(actors["admin"])


def test_a_partner_never_gets_the_programme_figures_a_case_manager_filled_the_cache_with(
    dash, actors
):
    """Two students; one no longer shares with THGA. The case manager sees both, THGA's agent
    one, whoever asks first and however often."""
    hidden, _shown = enrolled(dash, actors, 2)
    with dash.read() as s:
        (row,) = fit_queries.participants(s, actor=actors["cm.mueller"], ids=[hidden])
    set_consent(dash, actors, row.reference, given=False)

    for username, enrolled_count, people in [
        ("cm.mueller", "2", 2),
        ("thga.nowak", "1", 1),
        ("cm.mueller", "2", 2),
        ("admin", "2", 2),
        ("thga.nowak", "1", 1),
    ]:
        at = page("fit", username)
        assert metric(at, "Enrolled") == enrolled_count, username
        assert len(participant_names(at)) == people, username


def test_a_change_made_outside_the_page_shows_on_its_next_run(dash, actors):
    """Not through the page (whose saves clear the caches): as from the command line or
    another dashboard process. The cached figures follow the data's version."""
    enrolled(dash, actors, 1)
    at = page("fit", "thga.nowak")
    assert metric(at, "Enrolled") == "1"
    at.run()
    assert metric(at, "Enrolled") == "1"
    enrolled(dash, actors, 1)
    at.run()
    assert metric(at, "Enrolled") == "2"
    assert len(participant_names(at)) == 2


def test_outcomes_are_read_once_per_role_shared_by_its_members_and_again_after_a_change(
    dash, actors, monkeypatch
):
    for i in range(6):
        start_case(dash, actors["cm.mueller"], now=NOW, given_name=f"Anon{i}")
    with dash.transaction() as s:
        add_user(
            s,
            actor=actors["admin"],
            username="lead.weiss",
            display_name="Dr. Eva Weiß",
            role=Role.leadership,
            now=NOW,
        )
    reads: list[str] = []
    real = reporting_figures.year_figures

    def counted(session, *, actor, **kwargs):
        reads.append(str(actor.role))
        return real(session, actor=actor, **kwargs)

    monkeypatch.setattr(reporting_figures, "year_figures", counted)

    assert metric(page("outcomes", "lead.schmidt"), "Open cases") == "6"
    assert metric(page("outcomes", "lead.weiss"), "Open cases") == "6"
    assert reads == ["leadership"]  # the second member of leadership shares the first's
    assert metric(page("outcomes", "admin"), "Open cases") == "6"
    assert reads == ["leadership", "admin"]  # another role reads its own

    start_case(dash, actors["cm.mueller"], now=NOW, given_name="Anon6")
    assert metric(page("outcomes", "lead.schmidt"), "Open cases") == "7"
    assert reads == ["leadership", "admin", "leadership"]


def test_outcomes_charts_are_made_once_per_figures_and_language(dash, actors, monkeypatch):
    """Altair builds and checks a chart against its schema on every run; the page keeps each
    chart's Vega-Lite spec with its figures, and makes it anew for new data or a language."""
    from dashboard import charts

    for i in range(6):
        start_case(dash, actors["cm.mueller"], now=NOW, given_name=f"Anon{i}")
    built: list[str] = []
    for name in ("stacked_bars", "labelled_bars", "histogram"):
        real = getattr(charts, name)
        monkeypatch.setattr(
            charts, name, lambda *a, _n=name, _f=real, **k: built.append(_n) or _f(*a, **k)
        )

    at = page("outcomes", "lead.schmidt")
    first = len(built)
    drawn = at.get("vega_lite_chart")
    assert first >= 4 and len(drawn) >= 4  # funnel, legal clock, backlog, recognition, …
    at.run()
    assert len(built) == first  # the same figures: nothing built again
    assert len(at.get("vega_lite_chart")) == len(drawn)

    start_case(dash, actors["cm.mueller"], now=NOW, given_name="Anon6")
    at.run()
    assert len(built) == 2 * first  # new figures: every chart anew
    at.session_state["lang"] = "de"
    at.run()
    assert len(built) == 3 * first  # other words on the axes
