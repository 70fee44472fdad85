"""The dashboard in a real headless Chromium against a real `streamlit run` on the demo database."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect, sync_playwright

from tests.ci import IN_CI
from tests.e2e._servers import inherited_environ, wait_for
from tests.helpers import start_case
from tracker.access import actor_for
from tracker.db import Database

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium tries to reach Google on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

SHARED_SCREENS = Path("/tmp/dashboard-screens")
PASSWORD = "willkommen"  # every demo account's password
HOUSING = "Housing and landlord confirmation"
REGISTRATION = "Residence registration (Anmeldung)"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# A name written in Markdown: an image from another local port (a tracking pixel), a link to
# it and coloured text. Nothing may load from that port, and the name must read as typed.
PIXEL = "![p](http://127.0.0.1:8999/pixel.png)"
PHISH = "[klick](http://127.0.0.1:8999/phish) :red[ROT]"


@dataclass(frozen=True)
class Dashboard:
    url: str
    partner_case: str  # housing offered to vbw; the partner test accepts it
    manager_case: str  # the same situation; the case-manager test records housing as done
    screens: Path
    erase_case: str = ""  # the same again; the admin erases it
    markdown_case: str = ""  # the same, for a person whose name is written in Markdown
    bulk_cases: tuple[str, ...] = ()  # two more; the partner accepts both in one go


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _onboarding(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "onboarding"), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"onboarding {' '.join(args)}\n{done.stdout}\n{done.stderr}"


def _eu_citizen_case_offered_to_vbw(db: Database, family_name: str, given_name: str = "Ola") -> str:
    """A fresh EU-citizen case with consent for the city and vbw: housing is open and offered."""
    with db.read() as session:
        manager = actor_for(session, "cm.mueller")
    return start_case(
        db,
        manager,
        now=datetime.now(UTC),
        nationality="PL",
        given_name=given_name,
        family_name=family_name,
        consent_to=["stadt-bochum", "vbw"],
    )


def _wait_until_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"streamlit did not become healthy at {url}:\n{log.read_text()}")


@contextmanager
def served_dashboard(env: dict[str, str], root: Path) -> Iterator[str]:
    """`streamlit run dashboard/app.py` on a free local port with these settings; yields its
    URL once healthy, and stops it afterwards."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "streamlit.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "streamlit"),
                "run",
                "dashboard/app.py",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_healthy(proc, url, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The demo database with two fresh cases, and `streamlit run` serving the app on it."""
    root = tmp_path_factory.mktemp("dashboard-e2e")
    data = root / "data"
    screens = root / "screens"
    screens.mkdir()
    env = {
        **inherited_environ(),
        "ONBOARDING_DATA_DIR": str(data),
        "ONBOARDING_ORCHESTRATION": "inline",
        # No Prefect in this test: the "runs" panel asks a closed local port and gets nothing.
        "ONBOARDING_PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api",
    }
    for name in ("ONBOARDING_DATABASE_URL", "PREFECT_API_URL"):
        env.pop(name, None)
    _onboarding(env, "db", "upgrade")
    _onboarding(env, "demo", "--people", "300", "--seed", "3")

    db = Database(f"sqlite:///{data / 'onboarding.db'}")
    try:
        partner_case = _eu_citizen_case_offered_to_vbw(db, "Browsertest-Partner")
        manager_case = _eu_citizen_case_offered_to_vbw(db, "Browsertest-Manager")
        erase_case = _eu_citizen_case_offered_to_vbw(db, "Browsertest-Loeschung")
        markdown_case = _eu_citizen_case_offered_to_vbw(db, PHISH, given_name=PIXEL)
        bulk_cases = tuple(
            _eu_citizen_case_offered_to_vbw(db, "Browsertest-Sammel", given_name=given)
            for given in ("Ada", "Bea")
        )
    finally:
        db.dispose()

    with served_dashboard(env, root) as url:
        yield Dashboard(
            url, partner_case, manager_case, screens, erase_case, markdown_case, bulk_cases
        )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; missing, it fails the run under CI=true and skips elsewhere."""
    if not os.access(CHROMIUM, os.X_OK):
        reason = f"{CHROMIUM} is missing (apt-get install chromium, or scripts/ensure-chromium.sh)"
        if IN_CI:
            raise RuntimeError(f"CI=true and {reason}")
        pytest.skip(reason)
    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    """A fresh browser session (so a fresh Streamlit session) that may only talk to 127.0.0.1."""
    outside: list[str] = []

    def local_only(route: Route) -> None:
        target = urlsplit(route.request.url)
        if target.scheme in ("data", "blob") or target.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context = browser.new_context(
        viewport={"width": 1400, "height": 1600}, locale="en-GB", timezone_id="Europe/Berlin"
    )
    context.set_default_timeout(20_000)
    context.route("**/*", local_only)
    try:
        yield context.new_page()
    finally:
        context.close()
    assert not outside, f"the dashboard asked for something outside this machine: {outside}"


# -- helpers -------------------------------------------------------------------------------


def settle(page: Page) -> None:
    """Wait until Streamlit has finished running the script (call after the awaited change)."""
    expect(page.locator('[data-testid="stApp"]')).to_have_attribute(
        "data-test-script-state", "notRunning"
    )
    expect(page.locator('[data-testid="stSkeleton"]')).to_have_count(0)


def shoot(page: Page, dashboard: Dashboard, name: str, focus: Locator | None = None) -> None:
    """Save a screenshot under the test's screens folder and copy it to /tmp/dashboard-screens."""
    settle(page)
    if focus is not None:
        focus.scroll_into_view_if_needed()
    path = dashboard.screens / f"{name}.png"
    page.screenshot(path=str(path))
    SHARED_SCREENS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHARED_SCREENS / path.name)


def open_in_english(page: Page, url: str) -> None:
    page.goto(url)
    page.locator(".st-key-lang").get_by_text("English", exact=True).click()
    expect(page.get_by_role("textbox", name="Username")).to_be_visible()


def sign_in(page: Page, url: str, username: str, password: str = PASSWORD) -> None:
    open_in_english(page, url)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def nav_link(page: Page, title: str) -> Locator:
    return page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True)


def choose(page: Page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by the start of its shown text."""
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option).first.click()
    expect(page.get_by_role("combobox", name=label)).to_have_value(
        re.compile("^" + re.escape(option))
    )


def metric(page: Page, label: str) -> Locator:
    return (
        page.get_by_test_id("stMetric")
        .filter(has=page.get_by_test_id("stMetricLabel").filter(has_text=label))
        .get_by_test_id("stMetricValue")
    )


def table_with(page: Page, column: str) -> Locator:
    """The st.dataframe that has this column (its cells are read from the grid's a11y table)."""
    grid = page.get_by_test_id("stDataFrame").filter(has=page.locator("th", has_text=column))
    expect(grid).to_have_count(1)
    return grid


def cell(grid: Locator, row_text: str, column: str) -> Locator:
    """One cell of a dataframe: the row that contains `row_text`, in the named column."""
    # The grid draws its header and rows after the frame appears: wait for both first.
    # (The grid's accessible table is visually hidden: wait for it to exist, not to show.)
    expect(grid.locator("th", has_text=column)).not_to_have_count(0)
    expect(grid.locator("tr").filter(has_text=row_text)).not_to_have_count(0)
    headers: list[str] = []

    def column_drawn() -> bool:
        # A grid drawn again (after a save) can be read between its header cells: read again.
        headers[:] = grid.locator("th").all_text_contents()
        return column in headers

    wait_for(column_drawn, 10, f"the column {column!r} in the grid")
    return grid.locator("tr").filter(has_text=row_text).locator("td").nth(headers.index(column))


# The grid's geometry (Streamlit's defaults): a header row, then rows of 35 px, each starting
# with the selection box in a narrow first column.
GRID_HEADER, GRID_ROW, GRID_MARKER = 35, 35, 17


def click_row(grid: Locator, row_text: str) -> None:
    """Click a table's row as a person does: on the row's selection box, in the canvas."""
    expect(grid.locator("tr").filter(has_text=row_text)).not_to_have_count(0)
    rows = grid.locator("tbody tr").all_text_contents()
    index = next(i for i, text in enumerate(rows) if row_text in text)
    grid.click(position={"x": GRID_MARKER, "y": GRID_HEADER + GRID_ROW * index + GRID_ROW // 2})


def alert(page: Page, text: str) -> Locator:
    return page.get_by_test_id("stAlert").filter(has_text=text)


def no_sideways_scrolling(page: Page) -> None:
    """Every table on the page fits its width: nothing hides beyond the right edge."""
    settle(page)
    sizes = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller')]
            .filter(s => s.offsetParent !== null)
            .map(s => [s.scrollWidth, s.clientWidth])"""
    )
    assert sizes, "no table on the page"
    assert all(wide <= shown + 1 for wide, shown in sizes), sizes


def drawn_charts(page: Page) -> Locator:
    """Altair charts that Vega has drawn (its canvas or svg renderer marks the element)."""
    return page.locator(".vega-embed").locator("canvas.marks, svg.marks").filter(visible=True)


# -- tests ---------------------------------------------------------------------------------


def test_a_partner_accepts_a_handoff_and_it_leaves_the_offered_ones(page, dashboard):
    sign_in(page, dashboard.url, "vbw.schulz")
    expect(page.get_by_role("heading", name="Our queue")).to_be_visible()
    new = table_with(page, "Waiting (days)")  # new offers; "Accepted on" is the work in progress
    expect(cell(new, dashboard.partner_case, "Step")).to_have_text(HOUSING)
    settle(page)
    offered = int(metric(page, "New (offered)").inner_text())
    accepted = int(metric(page, "In progress (accepted)").inner_text())
    shoot(page, dashboard, "1-partner-queue-before")

    click_row(new, dashboard.partner_case)
    page.get_by_role("button", name="Accept 1 selected").click()

    expect(
        page.get_by_test_id("stAlert").filter(has_text="1 of 1 offers accepted.")
    ).to_be_visible()
    expect(metric(page, "New (offered)")).to_have_text(str(offered - 1))
    expect(metric(page, "In progress (accepted)")).to_have_text(str(accepted + 1))
    expect(cell(table_with(page, "Accepted on"), dashboard.partner_case, "Step")).to_have_text(
        HOUSING
    )
    expect(
        table_with(page, "Waiting (days)").locator("tr").filter(has_text=dashboard.partner_case)
    ).to_have_count(0)
    # Nothing stays selected: no button offers to accept anything until a row is chosen.
    expect(page.get_by_role("button", name=re.compile("^Accept"))).to_have_count(0)
    shoot(page, dashboard, "2-partner-queue-after-accept")


def test_a_partner_accepts_two_offers_at_once(page, dashboard):
    sign_in(page, dashboard.url, "vbw.schulz")
    expect(page.get_by_role("heading", name="Our queue")).to_be_visible()
    search = page.get_by_role("textbox", name="Search name or reference")
    search.fill("Browsertest-Sammel")
    search.press("Enter")
    new = table_with(page, "Waiting (days)")
    for reference in dashboard.bulk_cases:
        expect(cell(new, reference, "Step")).to_have_text(HOUSING)
    expect(page.get_by_text("1–2 of 2", exact=True).first).to_be_visible()
    no_sideways_scrolling(page)

    for reference in dashboard.bulk_cases:
        click_row(new, reference)
        settle(page)
    page.get_by_role("button", name="Accept 2 selected").click()

    expect(
        page.get_by_test_id("stAlert").filter(has_text="2 of 2 offers accepted.")
    ).to_be_visible()
    work = table_with(page, "Accepted on")
    for reference in dashboard.bulk_cases:
        expect(cell(work, reference, "Step")).to_have_text(HOUSING)
    expect(page.get_by_text("None match.", exact=True)).to_be_visible()  # no new offer left
    shoot(page, dashboard, "2b-partner-accepted-two-at-once")


def test_a_click_on_a_row_in_my_cases_opens_the_case(page, dashboard):
    sign_in(page, dashboard.url, "cm.mueller")
    expect(page.get_by_role("heading", name="My cases")).to_be_visible()
    no_sideways_scrolling(page)
    search = page.get_by_role("textbox", name="Search name or reference")
    search.fill("Browsertest-Manager")
    search.press("Enter")
    cases = table_with(page, "Progress")
    expect(cell(cases, dashboard.manager_case, "Name")).to_have_text("Ola Browsertest-Manager")

    click_row(cases, dashboard.manager_case)

    expect(page.get_by_role("heading", name=dashboard.manager_case)).to_be_visible()
    expect(page.get_by_role("textbox", name="Case reference")).to_have_value(dashboard.manager_case)
    no_sideways_scrolling(page)
    shoot(page, dashboard, "3b-case-opened-by-a-click")


def test_every_case_is_reached_page_by_page(page, dashboard):
    """Everyone's cases, 50 a page: the count says which ones show, Next and Previous move."""
    sign_in(page, dashboard.url, "admin")
    expect(page.get_by_role("heading", name="Cases", exact=True).first).to_be_visible()
    first_page = page.get_by_text(re.compile(r"^1–50 of \d+$"))
    expect(first_page).to_be_visible()
    total = int(first_page.inner_text().rsplit(" ", 1)[1])
    assert total > 100  # the demo's 300 people: more than two pages of open cases
    cases = table_with(page, "Case manager")
    expect(cases.locator("th", has_text="Reference")).to_have_count(1)
    column = cases.locator("th").all_text_contents().index("Reference")
    first_reference = cases.locator("tbody tr").first.locator("td").nth(column).inner_text()
    assert first_reference.startswith("WO-")

    page.get_by_role("button", name="Next").last.click()

    expect(page.get_by_text(f"51–100 of {total}", exact=True)).to_be_visible()
    cases = table_with(page, "Case manager")
    expect(cases.locator("tbody tr").filter(has_text=first_reference)).to_have_count(0)
    page.get_by_role("button", name="Previous").last.click()
    expect(page.get_by_text(f"1–50 of {total}", exact=True)).to_be_visible()
    expect(
        table_with(page, "Case manager").locator("tbody tr").filter(has_text=first_reference)
    ).to_have_count(1)


def test_a_case_manager_opens_a_partners_queue_from_the_partners_page(page, dashboard):
    sign_in(page, dashboard.url, "cm.mueller")
    expect(page.get_by_role("heading", name="My cases")).to_be_visible()
    nav_link(page, "Partners").click()
    expect(page.get_by_role("heading", name="Partners")).to_be_visible()
    partners = table_with(page, "On time")
    # The fixture's cases were handed to the housing company; some are still new offers.
    new = int(cell(partners, "VBW Bauen und Wohnen", "New").inner_text())
    assert new >= 1
    no_sideways_scrolling(page)

    click_row(partners, "VBW Bauen und Wohnen")

    expect(page.get_by_role("heading", name="Partner queue")).to_be_visible()
    expect(page.get_by_role("combobox", name="Partner")).to_have_value("VBW Bauen und Wohnen")
    expect(metric(page, "New (offered)")).to_have_text(str(new))


def test_a_case_manager_records_a_step_as_done_and_the_next_step_opens(page, dashboard):
    sign_in(page, dashboard.url, "cm.mueller")
    expect(page.get_by_role("heading", name="My cases")).to_be_visible()
    expect(metric(page, "Open cases")).to_be_visible()
    shoot(page, dashboard, "3-case-manager-my-cases")

    nav_link(page, "Case").click()
    reference = page.get_by_role("textbox", name="Case reference")
    reference.fill(dashboard.manager_case)
    reference.press("Enter")
    expect(page.get_by_role("heading", name=dashboard.manager_case)).to_be_visible()
    steps = table_with(page, "Owner")
    expect(cell(steps, HOUSING, "State")).to_have_text("open")
    expect(cell(steps, REGISTRATION, "State")).to_have_text("pending")
    expect(drawn_charts(page).first).to_be_visible()
    shoot(page, dashboard, "4-case-manager-case-before", focus=steps)

    click_row(steps, HOUSING)
    expect(page.get_by_role("radio", name="record as done")).to_be_checked()
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_test_id("stAlert").filter(has_text="Saved.")).to_be_visible()
    steps = table_with(page, "Owner")
    expect(cell(steps, HOUSING, "State")).to_have_text("done")
    expect(cell(steps, REGISTRATION, "State")).to_have_text("open")
    expect(cell(steps, REGISTRATION, "Handoff")).to_have_text("offered")
    shoot(page, dashboard, "5-case-manager-next-step-open", focus=page.get_by_test_id("stAlert"))


def test_leadership_sees_the_outcomes_page_with_its_charts(page, dashboard):
    sign_in(page, dashboard.url, "lead.schmidt")
    drawn = drawn_charts(page)
    crashed = page.get_by_test_id("stException")
    expect(drawn.or_(crashed).first).to_be_visible()
    assert crashed.count() == 0, crashed.first.inner_text()
    expect(page.get_by_role("heading", name="Outcomes", exact=True)).to_be_visible()
    settle(page)
    expect(crashed).to_have_count(0)
    charts = page.locator(".vega-embed").count()
    assert charts >= 2, f"the outcomes page shows {charts} chart(s), expected several"
    shoot(page, dashboard, "6-leadership-outcomes")
    shoot(page, dashboard, "6b-leadership-outcomes-lower", focus=page.locator(".vega-embed").last)


def test_leadership_downloads_the_monthly_report_as_pdf_and_csv(page, dashboard):
    from pypdf import PdfReader

    sign_in(page, dashboard.url, "lead.schmidt")
    expect(page.get_by_role("heading", name="Outcomes", exact=True)).to_be_visible()
    nav_link(page, "Reports").click()
    expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
    period = page.get_by_role("combobox", name="Period").input_value()
    months = "January February March April May June July August September October November December"
    shown = re.fullmatch(rf"({'|'.join(months.split())}) (\d{{4}})", period)
    assert shown, period  # the period as people say it, not 2026-11
    period = f"{shown[2]}-{months.split().index(shown[1]) + 1:02d}"
    shoot(page, dashboard, "7-leadership-reports")
    # Rendering starts at the click (a PDF takes a few seconds) and arrives as a download.
    with page.expect_download(timeout=60_000) as pdf_download:
        page.get_by_role("button", name="Download PDF").click()
    pdf = Path(pdf_download.value.path()).read_bytes()
    assert pdf_download.value.suggested_filename == f"monatsbericht-{period}-en.pdf"
    text = PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "Monthly report" in text and "People accompanied, by pathway" in text
    with page.expect_download(timeout=60_000) as csv_download:
        page.get_by_role("button", name="Download CSV").click()
    rows = Path(csv_download.value.path()).read_text("utf-8-sig").splitlines()
    assert rows[0] == "report,period,section,row,measure,value,suppressed"
    assert any(line.startswith(f"monthly,{period},caseload,") for line in rows)


def test_a_case_manager_downloads_the_welcome_letter_as_pdf(page, dashboard):
    from pypdf import PdfReader

    sign_in(page, dashboard.url, "cm.mueller")
    expect(page.get_by_role("heading", name="My cases")).to_be_visible()
    nav_link(page, "Case").click()
    reference = page.get_by_role("textbox", name="Case reference")
    reference.fill(dashboard.manager_case)
    reference.press("Enter")
    expect(page.get_by_role("heading", name=dashboard.manager_case)).to_be_visible()
    page.get_by_text("Welcome letter", exact=True).click()
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Welcome letter as PDF").click()
    assert download.value.suggested_filename.startswith(f"willkommen-{dashboard.manager_case}")
    text = PdfReader(io.BytesIO(Path(download.value.path()).read_bytes())).pages[0].extract_text()
    assert dashboard.manager_case in text


def test_a_wrong_password_shows_an_error_and_does_not_sign_in(page, dashboard):
    page.goto(dashboard.url)
    # German is the default; the form is shown before anything is chosen.
    expect(page.locator(".st-key-lang input[type=radio]").first).to_be_checked()
    expect(page.get_by_test_id("stForm")).to_be_visible()
    shoot(page, dashboard, "0-sign-in-german-default")

    sign_in(page, dashboard.url, "stadt.weber", "not-the-password")

    expect(
        page.get_by_test_id("stAlert").filter(has_text="Wrong username or password")
    ).to_be_visible()
    expect(page.get_by_role("textbox", name="Username")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    expect(nav_link(page, "Our queue")).to_have_count(0)
    shoot(page, dashboard, "7-wrong-password")


def open_case(page: Page, reference: str) -> None:
    nav_link(page, "Case").click()
    box = page.get_by_role("textbox", name="Case reference")
    box.fill(reference)
    box.press("Enter")
    expect(page.get_by_role("heading", name=reference)).to_be_visible()


def test_a_case_manager_exports_what_is_held_and_sees_who_looked(page, dashboard):
    import json

    sign_in(page, dashboard.url, "cm.mueller")
    expect(page.get_by_role("heading", name="My cases")).to_be_visible()
    open_case(page, dashboard.manager_case)
    page.get_by_text("Export everything held about this person", exact=False).click()
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Data export as JSON").click()
    assert download.value.suggested_filename == f"auskunft-{dashboard.manager_case}.json"
    data = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert data["person"]["family_name"] == "Browsertest-Manager"
    assert data["cases"][0]["reference"] == dashboard.manager_case
    assert {c["organisation"] for c in data["consents"]} == {
        "Stadt Bochum – Bürgerbüro und Ausländerbüro",
        "VBW Bauen und Wohnen",
    }
    page.get_by_text("Who viewed this person", exact=True).click()
    log = (
        page.get_by_test_id("stDataFrame")
        .filter(has=page.locator("th", has_text="Organisation"))
        .filter(has=page.locator("th", has_text="What"))
    )
    expect(
        log.locator("tr").filter(has_text="Sabine Müller").filter(has_text=re.compile("case page"))
    ).not_to_have_count(0)
    shoot(page, dashboard, "8-export-and-access-log", log)


def test_an_admin_erases_a_person_after_typing_the_reference_again(page, dashboard):
    sign_in(page, dashboard.url, "admin")
    open_case(page, dashboard.erase_case)
    page.get_by_text("Erase this person's data", exact=False).click()
    page.get_by_role("textbox", name="Type the case reference again to confirm").fill(
        dashboard.erase_case
    )
    page.get_by_role("button", name="Erase for good").click()
    expect(
        page.get_by_test_id("stAlert").filter(has_text=f"{dashboard.erase_case} was erased")
    ).to_be_visible()
    # The page stays on the reference, which now finds nothing.
    expect(page.get_by_test_id("stAlert").filter(has_text="No case with reference")).to_be_visible()
    shoot(page, dashboard, "9-erased")


@pytest.mark.parametrize("username", ["cm.mueller", "vbw.schulz"])
def test_a_name_written_in_markdown_reads_as_typed_and_loads_nothing(page, dashboard, username):
    port = urlsplit(dashboard.url).port
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    sign_in(page, dashboard.url, username)
    open_case(page, dashboard.markdown_case)
    page.get_by_text("Facts", exact=True).click()  # the name again, in the table of facts
    settle(page)

    heading = page.get_by_role("heading", name=dashboard.markdown_case)
    expect(heading).to_be_visible()
    # (The heading's own anchor, #wo-…-127-0-0-1-8999-…, is a slug of the text, not a link.)
    for made in ('img[src*=":8999"]', 'a[href*=":8999"]', ".stMarkdownColoredText"):
        expect(page.locator(made)).to_have_count(0)
    elsewhere = [
        url
        for url in asked
        if urlsplit(url).scheme not in ("data", "blob")
        and (urlsplit(url).hostname, urlsplit(url).port) != ("127.0.0.1", port)
    ]
    assert not elsewhere, f"the page asked for something besides the dashboard: {elsewhere}"
    assert any(urlsplit(url).port == port for url in asked)  # the requests were recorded
    # The name reads as typed; the word joiners that keep Streamlit from rewriting addresses
    # and codes in it are invisible.
    shown = heading.inner_text().replace("\u2060", "").strip()
    assert shown == f"{dashboard.markdown_case} · {PIXEL} {PHISH}"
    facts = page.get_by_test_id("stTable")
    assert PIXEL in facts.inner_text().replace("\u2060", "")
    shoot(page, dashboard, f"10-markdown-name-{username}", heading)
