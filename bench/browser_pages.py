"""Every dashboard page in headless Chromium against `streamlit run` on a large demo database.

A benchmark with plain timers, not a timed test. Per role: a fresh `streamlit run
dashboard/app.py` (its data caches empty), the sign-in, then each page of the role's navigation
once (cold: the first visit after signing in) and ``--runs`` times more (warm: back to a page
already seen, through the sidebar); on the case page also opening a case by its reference.
Then, as a case manager, the time from a click on the case page's Save to "Gespeichert." /
"Saved." (inline orchestration: the tracker opens the next steps before it answers).

A page counts as loaded when Streamlit has run its script to the end after the click, no
skeleton is left, and Vega has drawn every chart on it (each ``.vega-embed`` has its marks).
The click and that moment are both taken inside the page (``performance.now()``).

    .venv/bin/python bench/browser_pages.py --people 100000 \
        --data-dir /tmp/bench-dashboard-100000 --out bench/results/browser-pages-100000-sqlite.json

The data dir's demo database is reused if present (bench/dashboard_pages.py's
`prepare_database`), else loaded with `onboarding demo`. The 1-minute load average is recorded
next to every figure: the machine has 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _harness import BIN, free_port, markdown_table, peak_rss_mib, stop, wait_for
from dashboard_pages import machine, prepare_database

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
NOTES = RESULTS / "browser-pages-notes.md"  # hand-written findings, quoted after the tables
CHROMIUM = "/usr/bin/chromium"
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
PASSWORD = "willkommen"  # the demo accounts' password
TARGETS = {"cold_s": 3.0, "warm_s": 1.0, "saved_s": 0.5}

# Who signs in. Their pages are the links of the sidebar's navigation, in its order; the first
# is where the sign-in lands (served at the root). On the case page a case is opened too.
ROLES: list[tuple[str, str]] = [
    ("case_manager", "cm.mueller"),
    ("partner_agent", "stadt.weber"),
    ("partner_agent (THGA)", "thga.nowak"),
    ("leadership", "lead.schmidt"),
    ("admin", "admin"),
]
SAVED = {"de": "Gespeichert", "en": "Saved."}

# Inside the page: note when the script starts running after a mark, and when it is done
# (script finished, no skeleton, every chart drawn). Streamlit sets data-test-script-state.
WATCH = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const b = (window.__bench = window.__bench || {});
  if (!b.observer) {
    // A quick run may start and end between two callbacks: the records keep the old value.
    b.observer = new MutationObserver((records) => {
      if (b.mark === null) return;
      if (app.getAttribute('data-test-script-state') === 'running'
          || records.some((r) => r.oldValue === 'running')) b.ran = true;
    });
    b.observer.observe(app, {attributes: true, attributeOldValue: true,
                             attributeFilter: ['data-test-script-state']});
  }
  b.mark = null; b.ran = false; b.done = null;
}"""
MARK = """() => { const b = window.__bench; b.mark = performance.now(); b.ran = false;
  b.done = null; }"""
DONE = """(paths) => {
  const b = window.__bench;
  if (b.mark === null) return false;
  const app = document.querySelector('[data-testid="stApp"]');
  if (app.getAttribute('data-test-script-state') === 'running') b.ran = true;
  if (!b.ran || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  // On a page of the app (the default page is served at the root) and signed in.
  const here = location.pathname.replace(/^\\/+|\\/+$/g, '');
  if (paths !== null && (!paths.includes(here) ||
      !document.querySelector('[data-testid="stSidebarNav"]'))) return false;
  if (document.querySelector('[data-testid="stSkeleton"]')) return false;
  // Charts in a closed expander or another tab are not drawn until shown.
  for (const chart of document.querySelectorAll('.vega-embed'))
    if (chart.checkVisibility() && !chart.querySelector('canvas.marks, svg.marks')) return false;
  if (b.done === null) b.done = performance.now();
  return true;
}"""
ELAPSED = "() => (window.__bench.done - window.__bench.mark) / 1000"


@contextmanager
def streamlit(data_dir: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`streamlit run dashboard/app.py` on the data dir's database, on a free local port."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ONBOARDING_DATA_DIR": str(data_dir),
        "ONBOARDING_ORCHESTRATION": "inline",
        "ONBOARDING_PREFECT_API_URL": "http://127.0.0.1:9/api",  # nothing there: refused
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    env.pop("ONBOARDING_DATABASE_URL", None)
    command = [str(BIN / "streamlit"), "run", "dashboard/app.py", "--server.address"]
    command += ["127.0.0.1", "--server.port", str(port), "--server.headless", "true"]
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        wait_for(
            lambda: httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok",
            120,
            "streamlit",
            interval=0.2,
        )
        SERVER["pid"] = proc.pid
        yield url, proc
    finally:
        stop(proc)


def local_only(route: Any) -> None:
    """Nothing leaves the machine: a request elsewhere would be a leak (and a wait)."""
    if re.match(r"^(data:|blob:|https?://(127\.0\.0\.1|localhost)[:/])", route.request.url):
        route.continue_()
    else:
        route.abort()


def new_page(browser: Any, lang: str, height: int = 900) -> Any:
    context = browser.new_context(
        viewport={"width": 1366, "height": height},
        locale="de-DE" if lang == "de" else "en-GB",
        timezone_id="Europe/Berlin",
    )
    context.set_default_timeout(120_000)
    context.route("**/*", local_only)
    return context.new_page()


def loaded(page: Any, path: str | None, timeout_s: float = 120) -> float:
    """Seconds from the mark to the page loaded (see DONE); ``path`` is the page's name (its
    URL path; the landing page may also be at the root), None for the sign-in page."""
    paths = None if path is None else [path, ""]
    page.wait_for_function(DONE, arg=paths, polling="raf", timeout=timeout_s * 1000)
    return float(page.evaluate(ELAPSED))


def settle(page: Any) -> None:
    """Wait until Streamlit has finished running the script (whatever started it)."""
    page.wait_for_function(
        """() => document.querySelector('[data-testid="stApp"]')
            .getAttribute('data-test-script-state') === 'notRunning'
          && !document.querySelector('[data-testid="stSkeleton"]')""",
        polling=100,
        timeout=120_000,
    )


# The Streamlit process being measured: the CPU time it spends on a page view does not depend
# on what else runs on the machine the way the wall time does.
SERVER = {"pid": 0}


def server_cpu() -> float:
    """User and system CPU seconds of the Streamlit process so far (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{SERVER['pid']}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(timeout: float = 60) -> None:
    """Until the Streamlit process has been idle for half a second (its start, or what the
    sign-in page set going, is over): a page's figures start from a server at rest."""
    deadline = time.monotonic() + timeout
    last = server_cpu()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server_cpu()
        if now - last < 0.05:
            return
        last = now


def timed(page: Any, action: Any, path: str | None) -> dict[str, Any]:
    """Mark, act (a click, a key), and wait until the page has loaded; with the load average
    and the CPU time the Streamlit process spent meanwhile."""
    load = round(os.getloadavg()[0], 2)
    cpu = server_cpu()
    page.evaluate(MARK)
    action()
    seconds = loaded(page, path)
    return {"s": round(seconds, 3), "load_1m": load, "server_cpu_s": round(server_cpu() - cpu, 2)}


def nav(page: Any, index: int) -> Any:
    """The sidebar's link to the role's ``index``-th page (the first is served at the root)."""
    return page.get_by_test_id("stSidebarNav").get_by_role("link").nth(index)


def sign_in(page: Any, url: str, username: str, landing: str, lang: str) -> dict[str, Any]:
    page.goto(url)
    page.locator(".st-key-signin_user input").wait_for()
    page.evaluate(WATCH)
    if lang == "en":
        page.evaluate(MARK)
        page.locator(".st-key-lang").get_by_text("English", exact=True).click()
        loaded(page, None)
    page.locator(".st-key-signin_user input").fill(username)
    page.locator(".st-key-signin_password input").fill(PASSWORD)
    return timed(page, page.locator(".st-key-signin_submit button").click, landing)


def open_case(page: Any, reference: str) -> dict[str, Any]:
    box = page.locator(".st-key-person_ref input")
    box.fill(reference)
    result = timed(page, lambda: box.press("Enter"), "person")
    heading = page.get_by_role("heading", level=1).first.inner_text()
    result["ok"] = reference in heading
    return result


def pages_of(page: Any) -> list[dict[str, str]]:
    """The signed-in role's pages: the sidebar's links, in order (title and URL path)."""
    links = page.get_by_test_id("stSidebarNav").get_by_role("link")
    found = []
    for i in range(links.count()):
        href = str(links.nth(i).get_attribute("href"))
        path = re.sub(r"^https?://[^/]+", "", href).strip("/")
        found.append({"title": links.nth(i).inner_text().strip(), "path": path})
    return found


def role_run(
    browser: Any, url: str, username: str, case: str | None, runs: int, lang: str
) -> dict[str, Any]:
    """Sign in, every page once (cold), then ``runs`` rounds through all of them (warm)."""
    page = new_page(browser, lang)
    try:
        signin = sign_in(page, url, username, "", lang)
        pages = pages_of(page)
        cold: dict[str, dict[str, Any]] = {pages[0]["path"]: signin}
        warm: dict[str, list[dict[str, Any]]] = {p["path"]: [] for p in pages}
        case_cold: dict[str, Any] | None = None
        errors: list[str] = []
        for round_ in range(runs + 1):
            # The cold round starts on the landing page; warm rounds come back to it last.
            order = list(range(1, len(pages))) + ([0] if round_ else [])
            for index in order:
                path = pages[index]["path"]
                try:
                    result = timed(page, nav(page, index).click, path)
                except Exception as exc:  # noted with the page; the next page goes on
                    errors.append(f"/{path}: {type(exc).__name__}")
                    continue
                if round_:
                    warm[path].append(result)
                else:
                    cold[path] = result
                if path == "person" and case and not round_:
                    # Later visits of the case page show this case again (warm figures).
                    case_cold = open_case(page, case)
                    if not case_cold["ok"]:
                        errors.append(f"case {case} did not open")
                crash = page.get_by_test_id("stException")
                if crash.count():
                    errors.append(f"/{path}: {crash.first.inner_text()[:300]}")
        return {
            "pages": pages,
            "cold": cold,
            "warm": warm,
            "case_cold": case_cold,
            "errors": sorted(set(errors)),
        }
    finally:
        page.context.close()


# --- the case page's Save -------------------------------------------------------------------

SAVE_WATCH = """(saved) => {
  const b = (window.__save = {click: null, saved: null, text: ''});
  document.addEventListener('click', (e) => {
    const button = document.querySelector('.st-key-person_submit button');
    if (b.click === null && button && button.contains(e.target)) b.click = performance.now();
  }, true);
  new MutationObserver(() => {
    if (b.click === null || b.saved !== null) return;
    for (const a of document.querySelectorAll('[data-testid="stAlert"]')) {
      const t = a.textContent || '';
      if (t.includes(saved)) { b.saved = performance.now(); b.text = t; return; }
    }
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""


def pick_step_row(page: Any, row: int) -> None:
    """Select a row of the case's step table (a canvas grid): click its row marker, again if
    the first click found the grid still moving."""
    grid = page.locator(".st-key-person_steps")
    for attempt in range(3):
        grid.scroll_into_view_if_needed()
        box = grid.bounding_box()
        assert box is not None
        page.evaluate(MARK)
        # The header and each row are 35 px high; the row markers are the first column.
        page.mouse.click(box["x"] + 16, box["y"] + 35 + 35 * row + 17)
        try:
            loaded(page, "person", timeout_s=15)
            return
        except Exception:
            if attempt == 2:
                raise


def time_saves(
    browser: Any, url: str, cases: list[tuple[str, int]], lang: str
) -> list[dict[str, Any]]:
    """As cm.mueller, per case: open it, select the open step's row, "record as done", Save;
    the seconds from the click on Save to the "Saved." alert."""
    page = new_page(browser, lang, height=2000)  # the case's whole step table in view
    out: list[dict[str, Any]] = []
    try:
        sign_in(page, url, "cm.mueller", "", lang)
        timed(page, nav(page, 1).click, "person")  # a case manager's second page
        action_label = {"de": "als erledigt erfassen", "en": "record as done"}[lang]
        for reference, row in cases:
            try:
                out.append(time_save(page, reference, row, action_label, lang))
            except Exception as exc:  # noted; the next case goes on
                out.append({"reference": reference, "outcome": type(exc).__name__, "s": None})
                settle(page)
    finally:
        page.context.close()
    return out


def time_save(page: Any, reference: str, row: int, action_label: str, lang: str) -> dict[str, Any]:
    """One save (see ``time_saves``)."""
    open_case(page, reference)
    pick_step_row(page, row)
    radio = page.locator("[class*='st-key-person_form'][class*='action']")
    if not radio.get_by_role("radio", name=action_label).is_checked():
        page.evaluate(MARK)
        radio.get_by_text(action_label, exact=True).click()
        loaded(page, "person")
    outcome_box = page.locator("[class*='st-key-person_form'][class*='outcome']")
    if outcome_box.count():  # a step with outcomes is done with one of them: the first
        page.evaluate(MARK)
        outcome_box.get_by_role("combobox").click()
        page.get_by_role("option").first.click()
        loaded(page, "person")
    page.evaluate(SAVE_WATCH, SAVED[lang])
    load = round(os.getloadavg()[0], 2)
    cpu = server_cpu()
    page.evaluate(MARK)  # for the whole page's redraw after the save, besides "Saved"
    page.locator(".st-key-person_submit button").click()
    outcome = "ok"
    try:
        page.wait_for_function("() => window.__save.saved !== null", polling="raf", timeout=30_000)
    except Exception as exc:  # noted with what the page said instead; the next case goes on
        said = page.get_by_test_id("stAlert").all_inner_texts()
        outcome = f"{type(exc).__name__}: {' | '.join(said)[:200]}"
    b = page.evaluate("window.__save")
    cpu = server_cpu() - cpu
    seconds = (b["saved"] - b["click"]) / 1000 if b["saved"] and b["click"] else None
    try:
        page_s: float | None = round(loaded(page, "person", timeout_s=30), 3)
    except Exception:
        page_s = None
    settle(page)
    return {
        "page_s": page_s,  # until the page is drawn again, the step's new state in the table
        "reference": reference,
        "outcome": outcome,
        "s": None if seconds is None else round(seconds, 3),
        "text": b["text"][:120],
        "load_1m": load,
        "server_cpu_s": round(cpu, 2),  # until "Saved." showed
    }


# --- the cases to open ----------------------------------------------------------------------


def pick_cases(data_dir: Path, saves: int) -> dict[str, Any]:
    """A case each role may open, and open cases of cm.mueller with an open step to complete
    (the row of their first open step in the case page's table)."""
    os.environ.pop("ONBOARDING_DATABASE_URL", None)
    os.environ["ONBOARDING_DATA_DIR"] = str(data_dir)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tracker.access import actor_for
    from tracker.config import get_settings
    from tracker.db import Database
    from tracker.journeys import queries

    db = Database(get_settings().resolved_database_url)
    found: dict[str, Any] = {}
    try:
        with db.read() as session:
            mueller = actor_for(session, "cm.mueller")
            mine = queries.list_cases(session, actor=mueller, manager="me", limit=200)
            found["cm.mueller"] = found["admin"] = mine[0].reference
            for partner in ("stadt.weber", "thga.nowak"):
                queue = queries.partner_queue(session, actor=actor_for(session, partner), limit=1)
                found[partner] = queue[0].reference if queue else None
            saves_on = []
            for row in mine[1:]:
                view = queries.case_view(session, actor=mueller, reference=row.reference)
                states = [s.state for s in view.steps]
                first_open = next((i for i, s in enumerate(states) if s == "open"), None)
                if first_open is not None:
                    saves_on.append((row.reference, first_open))
                if len(saves_on) >= saves:
                    break
            found["saves"] = saves_on
    finally:
        db.dispose()
    return found


# --- figures and the report ------------------------------------------------------------------


def spread(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    values = [s["s"] for s in samples if s.get("s") is not None]
    if not values:
        return None
    loads = [s["load_1m"] for s in samples]
    cpu = [s["server_cpu_s"] for s in samples if s.get("server_cpu_s") is not None]
    return {
        "n": len(values),
        "median_s": round(statistics.median(values), 3),
        "max_s": round(max(values), 3),
        "runs_s": values,
        "load_1m": [min(loads), max(loads)],
        "server_cpu_median_s": round(statistics.median(cpu), 2) if cpu else None,
    }


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per role and page: cold, warm (median and max), and the verdict."""
    rows = []
    for role in result["roles"]:
        run = role["run"]
        for i, p in enumerate(run["pages"]):
            path = p["path"]
            cold = run["cold"].get(path)
            warm = spread(run["warm"].get(path, []))
            rows.append(
                {
                    "role": role["role"],
                    "username": role["username"],
                    "page": f"{p['title']} (/{path})" + (" after sign-in" if i == 0 else ""),
                    "cold_s": cold["s"] if cold else None,
                    "cold_load_1m": cold["load_1m"] if cold else None,
                    "cold_server_cpu_s": cold.get("server_cpu_s") if cold else None,
                    "warm": warm,
                    "ok": bool(
                        cold
                        and cold["s"] <= TARGETS["cold_s"]
                        and (warm is None or warm["max_s"] <= TARGETS["warm_s"])
                    ),
                }
            )
            if path == "person" and run.get("case_cold"):
                # Cold: the first case opened by its reference. Warm: the row above (the case
                # page shows that case again on every later visit).
                rows.append(
                    {
                        "role": role["role"],
                        "username": role["username"],
                        "page": f"{p['title']} (/{path}): a case opened by its reference",
                        "cold_s": run["case_cold"]["s"],
                        "cold_load_1m": run["case_cold"]["load_1m"],
                        "cold_server_cpu_s": run["case_cold"].get("server_cpu_s"),
                        "warm": None,
                        "ok": run["case_cold"]["s"] <= TARGETS["cold_s"],
                    }
                )
    return rows


def section(found: list[dict[str, Any]]) -> list[str]:
    """Markdown for docs/benchmarks.md (bench/suite.py's write_doc quotes it)."""
    if not found:
        return []
    lines = [
        "## Every page in a real browser (headless Chromium)",
        "",
        f"Targets: ≤ {TARGETS['cold_s']:g} s cold, ≤ {TARGETS['warm_s']:g} s warm, "
        f"≤ {TARGETS['saved_s']:g} s from a click on Save to “Gespeichert.”",
        "",
        "bench/browser_pages.py: a fresh `streamlit run dashboard/app.py` per role (data caches "
        "empty), sign in, each page of the role's navigation once (cold; the first page is the "
        "landing page after the sign-in), then again through the sidebar (warm, median and "
        "slowest). A page is loaded when its script has run to the end, no skeleton is left and "
        "every chart is drawn. Load is the 1-minute load average when the figure was taken "
        "(2 CPUs).",
        "",
    ]
    found = sorted(found, key=lambda d: d["measured_at"])
    for data in found:
        commit = data["machine"].get("commit") or ""
        lines.append(
            f"- **{data['label'] or data['measured_at']}**: {data['people']:,} newcomers, "
            f"{data['backend']}, measured {data['measured_at']}"
            f"{', commit ' + commit[:10] if commit else ''}, language {data['lang']}, "
            f"{data['runs']} warm rounds; load average at start "
            f"{data['machine']['load_avg_start']}, at end {data['load_avg_end']}."
            + (" Errors: " + "; ".join(data["errors"])[:400] if data.get("errors") else "")
        )
    lines += ["", *compared(found), ""]
    for data in found:
        saves = data.get("saves") or []
        took = [s["s"] for s in saves if s["s"] is not None]
        if took:
            loads = [s["load_1m"] for s in saves if "load_1m" in s]
            lines.append(
                f"- {data['label'] or data['measured_at']}: Save on the case page → "
                f"“{SAVED[data['lang']]}” median {statistics.median(took):.2f} s, slowest "
                f"{max(took):.2f} s over {len(took)} saves "
                f"({sum(s['outcome'] != 'ok' for s in saves)} failed; load "
                f"{min(loads)}–{max(loads)}): "
                + ("PASS" if max(took) <= TARGETS["saved_s"] else "**MISS**")
                + redrawn(saves)
            )
    lines.append("")
    if NOTES.exists():
        lines += [NOTES.read_text().strip(), ""]
    return lines


def redrawn(saves: list[dict[str, Any]]) -> str:
    """The time until the whole case page was drawn again after the save (the step's new state
    in the table and the map), where the run measured it."""
    took = [s["page_s"] for s in saves if s.get("page_s") is not None]
    if not took:
        return ""
    return (
        f"; the page drawn again with the new state: median {statistics.median(took):.2f} s, "
        f"slowest {max(took):.2f} s"
    )


def compared(found: list[dict[str, Any]]) -> list[str]:
    """The runs side by side: per page and role, each run's cold and slowest warm figure, each
    with the Streamlit process's CPU seconds for it and the load average when it was taken."""
    keys: dict[tuple[str, str], str] = {}
    by_run: list[dict[tuple[str, str], dict[str, Any]]] = []
    for data in found:
        rows = {}
        for r in data["rows"]:
            key = (r["username"], r["page"])
            keys.setdefault(key, r["role"])
            rows[key] = r
        by_run.append(rows)

    def figure(seconds: float, cpu: float | None, load: float) -> str:
        return f"{seconds:.2f}" + ("" if cpu is None else f" [{cpu:.2f}]") + f" @{load:g}"

    def cells(r: dict[str, Any] | None) -> list[str]:
        if r is None or r["cold_s"] is None:
            return ["–", "–"]
        miss = "" if r["ok"] else " **MISS**"
        cold = figure(r["cold_s"], r.get("cold_server_cpu_s"), r["cold_load_1m"])
        warm = r["warm"]
        if not warm:
            return [cold + miss, "–"]
        slowest = figure(warm["max_s"], warm.get("server_cpu_median_s"), warm["load_1m"][1])
        return [cold, slowest + miss]

    header = ["role", "page"]
    for d in found:
        name = d["label"] or d["measured_at"]
        header += [f"{name}: cold", f"{name}: warm (slowest)"]
    rows = [
        [role, page, *(c for run in by_run for c in cells(run.get((username, page))))]
        for (username, page), role in keys.items()
    ]
    return [
        "Each figure: seconds in the browser [CPU seconds of the Streamlit process for it; for "
        "warm the median of the visits] @ the 1-minute load average. The JSON in bench/results/ "
        "has every visit.",
        "",
        markdown_table(header, rows),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3, help="warm rounds through every page")
    parser.add_argument("--saves", type=int, default=5, help="saves on the case page to time")
    parser.add_argument("--lang", default="de", choices=["de", "en"])
    parser.add_argument("--roles", nargs="*", default=None, help="only these usernames")
    parser.add_argument("--label", default="", help="what this run measures (e.g. before)")
    parser.add_argument(
        "--server",
        choices=["per-role", "shared"],
        default="per-role",
        help="a fresh Streamlit per role (its first page also pays the process's first imports)"
        " or one for all roles in turn (warm process; each role's figures still uncached)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    data_dir = (args.data_dir or Path(f"/tmp/bench-dashboard-{args.people}")).resolve()
    database = prepare_database(data_dir, args.people)
    cases = pick_cases(data_dir, args.saves)
    info = machine()
    from playwright.sync_api import sync_playwright

    roles = [r for r in ROLES if args.roles is None or r[1] in args.roles]
    result: dict[str, Any] = {
        "people": database["newcomers"] or args.people,
        "backend": "sqlite",
        "label": args.label,
        "lang": args.lang,
        "runs": args.runs,
        "server": args.server,
        "data_dir": str(data_dir),
        "machine": info,
        "targets": TARGETS,
        "roles": [],
        "errors": [],
    }
    logs = Path(f"/tmp/bench-browser-{os.getpid()}")
    logs.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            shared = ExitStack()  # the one server of --server shared, stopped after the roles
            server: tuple[str, Any] | None = None
            for role, username in roles:
                with ExitStack() as own:
                    stack = shared if args.server == "shared" else own
                    if args.server == "per-role" or server is None:
                        name = "all" if args.server == "shared" else username
                        server = stack.enter_context(
                            streamlit(data_dir, logs / f"streamlit-{name}.log")
                        )
                        url = server[0]
                        # The server's own start (the sign-in page once) is no page's figure.
                        warm_up = new_page(browser, args.lang)
                        warm_up.goto(url)
                        warm_up.locator(".st-key-signin_user input").wait_for()
                        warm_up.context.close()
                        wait_idle()
                    started = time.perf_counter()
                    try:
                        run = role_run(
                            browser, server[0], username, cases.get(username), args.runs, args.lang
                        )
                    except Exception as exc:  # noted; the other roles go on
                        result["errors"].append(f"{username}: {type(exc).__name__}: {exc}"[:500])
                        continue
                    result["roles"].append(
                        {
                            "role": role,
                            "username": username,
                            "run": run,
                            "streamlit_peak_rss_mib": peak_rss_mib(server[1].pid),
                            "seconds": round(time.perf_counter() - started, 1),
                        }
                    )
                    result["errors"] += [f"{username}: {e}" for e in run["errors"]]
                    for r in summarise({"roles": result["roles"][-1:]}):
                        warm = r["warm"] or {}
                        print(
                            f"{username:13} {r['page']:40} cold {r['cold_s']!s:>6} s "
                            f"warm {warm.get('median_s')!s:>6} / {warm.get('max_s')!s:>6} s "
                            f"load {r['cold_load_1m']}",
                            file=sys.stderr,
                        )
            shared.close()  # (an error above leaves it to the process's end)
            if args.saves and cases["saves"] and (args.roles is None or "cm.mueller" in args.roles):
                with streamlit(data_dir, logs / "streamlit-saves.log") as (url, _proc):
                    wait_idle()
                    try:
                        result["saves"] = time_saves(browser, url, cases["saves"], args.lang)
                    except Exception as exc:  # noted; the pages' figures are kept
                        result["errors"].append(f"saves: {type(exc).__name__}: {exc}"[:500])
                        result["saves"] = []
                for s in result["saves"]:
                    print(f"save {s['reference']}: {s['s']} s ({s['outcome']})", file=sys.stderr)
        finally:
            browser.close()
    result["rows"] = summarise(result)
    result["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print("\n".join(section([result])))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
