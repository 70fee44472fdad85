"""Switching the language in a real browser: every chosen option stays chosen and is relabelled.

Streamlit keeps a select box's choice by its label; without dashboard.common.keep_choices the
old language's label ("alle", "Unterschriebenes Formular") stayed on English screens, and was read
back as a value no option has. AppTest does not label widgets the way the browser does, so this
is checked here, on the demo database behind a real `streamlit run`.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.e2e.test_dashboard_browser import (
    PASSWORD,
    Dashboard,
    browser,  # noqa: F401 - the shared Chromium fixture
    choose,
    dashboard,  # noqa: F401 - the demo database behind `streamlit run`
    metric,
    nav_link,
    page,  # noqa: F401 - a fresh local-only browser session per test
    settle,
)


def sign_in_in_german(tab: Page, url: str, username: str) -> None:
    tab.goto(url)
    tab.get_by_role("textbox", name="Benutzername").fill(username)
    tab.get_by_role("textbox", name="Passwort").fill(PASSWORD)
    tab.get_by_role("button", name="Anmelden").click()
    settle(tab)


def switch_to_english(tab: Page) -> None:
    tab.locator(".st-key-lang").get_by_text("English", exact=True).click()
    settle(tab)


def test_the_outcomes_profile_stays_chosen_in_english(page: Page, dashboard: Dashboard) -> None:  # noqa: F811
    sign_in_in_german(page, dashboard.url, "lead.schmidt")
    expect(page.get_by_role("heading", name="Ergebnisse", exact=True)).to_be_visible()
    choose(page, "Profil", "Studierende")
    settle(page)
    students = metric(page, "Offene Fälle").inner_text()

    switch_to_english(page)
    expect(page.get_by_role("heading", name="Outcomes", exact=True)).to_be_visible()
    expect(page.get_by_role("combobox", name="Profile")).to_have_value("Student")
    # Still the students' figures, not those of a profile called "Studierende".
    expect(metric(page, "Open cases")).to_have_text(students)
    expect(page.get_by_role("combobox", name="Year")).not_to_have_value("")


def test_the_case_page_s_choices_speak_english_after_the_switch(
    page: Page,  # noqa: F811
    dashboard: Dashboard,  # noqa: F811
) -> None:
    sign_in_in_german(page, dashboard.url, "cm.mueller")
    expect(page.get_by_role("heading", name="Meine Fälle")).to_be_visible()
    settle(page)
    nav_link(page, "Fall").click()
    reference = page.get_by_role("textbox", name="Fallnummer", exact=True)
    reference.fill(dashboard.manager_case)
    reference.press("Enter")
    expect(page.get_by_role("heading", name=dashboard.manager_case)).to_be_visible()
    settle(page)
    expect(page.get_by_role("combobox", name="Form")).to_have_value("Unterschriebenes Formular")
    expect(page.get_by_role("combobox", name="Sprache der Datenschutzhinweise")).to_have_value(
        "Deutsch"
    )

    switch_to_english(page)
    expect(page.get_by_role("heading", name=dashboard.manager_case)).to_be_visible()
    expect(page.get_by_role("combobox", name="How")).to_have_value("Signed form")
    expect(page.get_by_role("combobox", name="Notice language")).to_have_value("German")
    # The steps read in English too; none keeps its German title.
    expect(page.get_by_text("Wohnung und Wohnungsgeberbestätigung")).to_have_count(0)
