"""The FIT@THGA page in a real headless Chromium against a real `streamlit run`.

A THGA agent registers a student for a job fair, marks them as attended once the fair has
begun, and the programme figures on the page change. The browser, its local-only routing and
the helpers are those of test_dashboard_browser.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from unittest.mock import patch

import pytest
from playwright.sync_api import Locator, Page, expect

from dashboard import formatting
from tests.conftest import NOW, Actors
from tests.e2e import test_dashboard_browser as base
from tests.e2e._servers import inherited_environ
from tests.e2e.test_dashboard_browser import (
    _free_port,
    _onboarding,
    cell,
    metric,
    nav_link,
    served_dashboard,
    settle,
    shoot,
    sign_in,
    table_with,
)
from tests.test_fit import enrolled
from tracker import fit
from tracker.access import actor_for
from tracker.admin.organisations import seed_organisations
from tracker.clocks import utcnow
from tracker.db import Database
from tracker.demo.people import ensure_demo_users
from tracker.enums import OfferKind
from tracker.models import FitOffer, FitParticipant

# The same fixtures as the dashboard's browser tests: Debian's Chromium (a missing one fails
# the run under CI=true), and a fresh context per test that may only talk to 127.0.0.1.
browser = base.browser
page = base.page

FAIR_LASTS = timedelta(hours=4)


@dataclass(frozen=True)
class FitDashboard:
    url: str
    db_url: str
    student: str  # the enrolled student's name
    other_offer: str  # an offer listed before the fair, so the fair has to be chosen
    screens: Path  # for `shoot`


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FitDashboard]:
    """A fresh database with the demo sign-ins and one enrolled student, served by Streamlit."""
    root = tmp_path_factory.mktemp("fit-e2e")
    data = root / "data"
    screens = root / "screens"
    screens.mkdir()
    env = {
        **inherited_environ(),
        "ONBOARDING_DATA_DIR": str(data),
        "ONBOARDING_ORCHESTRATION": "inline",
        "ONBOARDING_PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api",
    }
    for name in ("ONBOARDING_DATABASE_URL", "PREFECT_API_URL", "ONBOARDING_TIMEZONE"):
        env.pop(name, None)
    _onboarding(env, "db", "upgrade")

    db_url = f"sqlite:///{data / 'onboarding.db'}"
    db = Database(db_url)
    try:
        with db.transaction() as session:
            seed_organisations(session, now=NOW)
            ensure_demo_users(session, now=NOW)
        actors = Actors(db)
        # Through the real services: a student's case, handed to THGA, enrolled in FIT.
        (participant_id,) = enrolled(db, actors, 1, family_name="Nguyen")
        later = utcnow() + timedelta(days=30)
        with db.transaction() as session:
            fit.create_offer(
                session,
                actor=actors["thga.nowak"],
                kind=OfferKind.salary_training,
                title="Gehaltsverhandlung",
                starts_at=later,
                ends_at=later + timedelta(hours=3),
                place="THGA Raum 2.14",
                capacity=15,
            )
            student = session.get(FitParticipant, participant_id).newcomer
            name = f"{student.given_name} {student.family_name}"
    finally:
        db.dispose()

    with served_dashboard(env, root) as url:
        yield FitDashboard(url, db_url, name, "Gehaltsverhandlung", screens)


def job_fair(dashboard: FitDashboard, starts_at: datetime) -> int:
    """A job fair with places, planned by THGA through the service."""
    db = Database(dashboard.db_url)
    try:
        with db.transaction() as session:
            return fit.create_offer(
                session,
                actor=actor_for(session, "thga.nowak"),
                kind=OfferKind.job_fair,
                title="Karrieretag Ruhr",
                starts_at=starts_at,
                ends_at=starts_at + FAIR_LASTS,
                place="THGA Audimax",
                capacity=30,
            ).id
    finally:
        db.dispose()


def the_fair_begins(dashboard: FitDashboard, offer_id: int, at: datetime) -> None:
    """The day of the fair comes: its start (and its end, keeping its length) moves to ``at``.
    Registration closes when an offer begins and attendance opens then; moving the fair instead
    of waiting for it keeps the test free of any time budget."""
    db = Database(dashboard.db_url)
    try:
        with db.transaction() as session:
            offer = session.get(FitOffer, offer_id)
            assert offer is not None
            offer.starts_at, offer.ends_at = at, at + (offer.ends_at - offer.starts_at)
    finally:
        db.dispose()


def within(page: Page, key: str) -> Locator:
    """The widget with this Streamlit key (its container carries the class st-key-<key>)."""
    return page.locator(f".st-key-{key}")


def pick(page: Page, key: str, option: str) -> None:
    """Open a selectbox or multiselect by its key and click the option that starts so."""
    within(page, key).get_by_role("combobox").click()
    page.get_by_role("option", name=option).first.click()


def on_screen(moment: datetime, write: Callable[[datetime], str] | None = None) -> str:
    """A moment as the English screen writes it, through dashboard.formatting (the one path)."""
    with patch.object(formatting, "lang", return_value="en"):
        return (write or formatting.datetime_text)(moment)


def figure(page: Page, label: str) -> int:
    return int(metric(page, label).inner_text())


def test_a_thga_agent_registers_a_student_marks_attendance_and_the_figures_change(page, dashboard):
    starts = (utcnow() + timedelta(days=1)).replace(second=0, microsecond=0)
    oid = job_fair(dashboard, starts)

    sign_in(page, dashboard.url, "thga.nowak")
    expect(page.get_by_role("heading", name="Our queue")).to_be_visible()
    nav_link(page, "FIT@THGA").click()
    expect(page.get_by_role("heading", name="FIT@THGA")).to_be_visible()
    settle(page)
    before = {k: figure(page, k) for k in ("Offers held", "Attended", "No-shows")}
    people = table_with(page, "Study programme")
    expect(cell(people, dashboard.student, "Status")).to_have_text("enrolled")

    page.get_by_role("tab", name="Offers").click()
    fair = f"{on_screen(starts)} · Karrieretag Ruhr"
    pick(page, "fit_offer", fair)
    expect(within(page, "fit_offer").get_by_role("combobox")).to_have_value(fair)
    settle(page)
    pick(page, f"fit_register_who_{oid}", dashboard.student)
    page.get_by_role("button", name="Register", exact=True).click()

    expect(
        page.get_by_test_id("stAlert").filter(has_text=f"{dashboard.student} has a place.")
    ).to_be_visible()
    registrations = table_with(page, "Registered on")
    expect(cell(registrations, dashboard.student, "Status")).to_have_text("has a place")
    shoot(page, dashboard, "fit-1-registered", focus=registrations)

    # Attendance can be recorded once the fair has begun.
    begun = (utcnow() - timedelta(hours=1)).replace(second=0, microsecond=0)
    the_fair_begins(dashboard, oid, begun)
    pick(page, f"fit_attended_{oid}", dashboard.student)
    page.keyboard.press("Escape")  # close the multiselect's list
    page.get_by_role("button", name="Save attendance").click()

    expect(page.get_by_test_id("stAlert").filter(has_text="Saved.")).to_be_visible()
    # The page shows the fair at the hour it began, and what happened there.
    hours = f"{on_screen(begun)}–{on_screen(begun + FAIR_LASTS, formatting.time_text)}"
    expect(
        page.get_by_test_id("stMarkdown").filter(has_text="Karrieretag Ruhr").filter(has_text=hours)
    ).to_have_count(1)
    expect(metric(page, "Attended")).to_have_text(str(before["Attended"] + 1))
    expect(metric(page, "Offers held")).to_have_text(str(before["Offers held"] + 1))
    expect(metric(page, "No-shows")).to_have_text(str(before["No-shows"]))
    expect(cell(table_with(page, "Registered on"), dashboard.student, "Status")).to_have_text(
        "attended"
    )
    offers = table_with(page, "Capacity")
    expect(cell(offers, "Karrieretag Ruhr", "Status")).to_have_text("held")
    expect(cell(offers, dashboard.other_offer, "Status")).to_have_text("planned")
    shoot(page, dashboard, "fit-2-attended", focus=page.get_by_test_id("stMetric").first)
