"""A save in a real Chromium against the dashboard with a real Prefect server and task worker:
"Saved" at once, then the next step opens on the page without a reload."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e._servers import free_port, inherited_environ, wait_for
from tests.e2e.test_dashboard_browser import (
    BIN,
    HOUSING,
    REGISTRATION,
    _eu_citizen_case_offered_to_vbw,
    _onboarding,
    browser,  # noqa: F401 - the shared Chromium fixture
    cell,
    click_row,
    nav_link,
    page,  # noqa: F401 - a fresh local-only browser session per test
    served_dashboard,
    settle,
    shoot,
    sign_in,
    table_with,
)
from tracker.db import Database

# Seconds for the next step to open after a save (see the fixture); the page watches as long.
OPENED_WITHIN = 120


@dataclass(frozen=True)
class Served:
    url: str
    screens: Path
    cases: list[str]
    task_worker: subprocess.Popen[bytes]


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGCONT)  # a paused worker must hear the TERM
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A Prefect server, the advance task worker and the dashboard in Prefect mode, on a
    tracker with demo users and two fresh cases whose housing step is open."""
    root = tmp_path_factory.mktemp("background-e2e")
    (root / "screens").mkdir()
    logs = root / "logs"
    logs.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **inherited_environ(),
        "ONBOARDING_DATA_DIR": str(root / "data"),
        "ONBOARDING_ORCHESTRATION": "prefect",
        "ONBOARDING_PREFECT_API_URL": api,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # The page watches this long once the advance is queued. CI runs this next to the
        # topology test on two cores, where a task worker has taken over 15 s to get to it.
        "ONBOARDING_ADVANCE_WAIT_SECONDS": str(OPENED_WITHIN),
    }
    env.pop("ONBOARDING_DATABASE_URL", None)
    _onboarding(env, "db", "upgrade")
    _onboarding(env, "demo", "--people", "20", "--seed", "5")
    db = Database(f"sqlite:///{root / 'data' / 'onboarding.db'}")
    try:
        cases = [_eu_citizen_case_offered_to_vbw(db, f"Hintergrund-{i}") for i in range(2)]
    finally:
        db.dispose()

    server = worker = None
    try:
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=(logs / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
            180,
            "the Prefect server",
        )
        status = free_port()
        worker = subprocess.Popen(
            [str(BIN / "onboarding-flows"), "tasks", f"--status-port={status}"],
            env=env,
            stdout=(logs / "tasks.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{status}/status", timeout=2).status_code == 200,
            120,
            "the task worker",
        )
        with served_dashboard(env, root) as url:
            yield Served(url, root / "screens", cases, worker)
    finally:
        _stop(worker)
        _stop(server)


def _open_case(tab: Page, url: str, reference: str) -> None:
    sign_in(tab, url, "cm.mueller")
    expect(tab.get_by_role("heading", name="My cases")).to_be_visible()
    nav_link(tab, "Case").click()
    box = tab.get_by_role("textbox", name="Case reference")
    box.fill(reference)
    box.press("Enter")
    expect(tab.get_by_role("heading", name=reference)).to_be_visible()
    expect(cell(table_with(tab, "Owner"), REGISTRATION, "State")).to_have_text("pending")


def _record_housing_as_done(tab: Page) -> None:
    click_row(table_with(tab, "Owner"), HOUSING)
    expect(tab.get_by_role("radio", name="record as done")).to_be_checked()
    tab.get_by_role("button", name="Save").click()


def test_a_save_says_saved_and_the_next_step_opens_without_a_reload(page, dashboard):  # noqa: F811
    _open_case(page, dashboard.url, dashboard.cases[0])
    page.evaluate("window.__mark = 'before the save'")
    _record_housing_as_done(page)

    expect(page.get_by_test_id("stAlert").filter(has_text="Saved.")).to_be_visible()
    expect(
        page.get_by_test_id("stAlert").filter(has_text=f"Now open: {REGISTRATION}")
    ).to_be_visible(timeout=OPENED_WITHIN * 1000)
    steps = table_with(page, "Owner")
    expect(cell(steps, HOUSING, "State")).to_have_text("done")
    expect(cell(steps, REGISTRATION, "State")).to_have_text("open")
    expect(cell(steps, REGISTRATION, "Handoff")).to_have_text("offered")
    # The same document all along: the page updated itself, nobody reloaded it.
    assert page.evaluate("window.__mark") == "before the save"
    settle(page)
    shoot(
        page,
        dashboard,
        "background-next-step-open",
        focus=page.get_by_test_id("stAlert").first,
    )


def test_a_save_does_not_wait_for_the_advance(page, dashboard):  # noqa: F811
    """With the task worker paused the save still says "Saved" and the page stays usable; the
    step opens once the worker runs again."""
    _open_case(page, dashboard.url, dashboard.cases[1])
    page.evaluate("window.__mark = 'before the save'")
    dashboard.task_worker.send_signal(signal.SIGSTOP)
    try:
        _record_housing_as_done(page)
        expect(page.get_by_test_id("stAlert").filter(has_text="Saved.")).to_be_visible()
        expect(page.get_by_text("Opening the next steps …")).to_be_visible()
        steps = table_with(page, "Owner")
        expect(cell(steps, HOUSING, "State")).to_have_text("done")
        expect(cell(steps, REGISTRATION, "State")).to_have_text("pending")
        settle(page)
        shoot(page, dashboard, "background-saved-waiting")
    finally:
        dashboard.task_worker.send_signal(signal.SIGCONT)
    expect(
        page.get_by_test_id("stAlert").filter(has_text=f"Now open: {REGISTRATION}")
    ).to_be_visible(timeout=OPENED_WITHIN * 1000)
    expect(cell(table_with(page, "Owner"), REGISTRATION, "State")).to_have_text("open")
    assert page.evaluate("window.__mark") == "before the save"
