"""Pieces of bench/prefect_advance.py that run in processes of their own.

- ``serve-former``: the former per-event path, reconstructed for comparison. Before the
  background task each change started a run of the deployment
  ``advance-journey/advance-journey``, served by
  ``onboarding-flows serve`` (Prefect's ``Runner``, which looks for new runs every
  ``PREFECT_RUNNER_POLL_FREQUENCY`` = 2 s and starts each in a process of its own). That flow
  is gone from the product; ``advance_journey`` below is the same shape (one flow run per case,
  named by the case) calling today's advance rule, so the two paths differ only in how the
  advance gets to run. The former flow also had a task per step, so if anything it was slower.
- ``tasks-sampled``: ``onboarding-flows tasks`` with a stack sampler, for where a worker's time
  goes (written as a text profile when the process is stopped).
- ``start_workers`` / ``start_former``: start those, and ``onboarding-flows tasks``, for
  prefect_advance.py, and wait until each is subscribed or polling.
- ``caller_profile``: what ``request_advance`` spends its time on, piece by piece.
- ``time_saves``: the dashboard's save in headless Chromium, from the click on Save to
  "Saved." and to "Now open: …" (called by prefect_advance.py's dashboard mode).

- ``section``: this benchmark's part of docs/benchmarks.md (bench/suite.py writes it).

Nothing here imports Prefect or the tracker before it is called (see ``FORMER_FLOW``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FORMER_DEPLOYMENT = "advance-journey/advance-journey"
# Set only in the former serving process and so in its flow runs' processes, which load this
# file by path: everywhere else (the bench, bench/suite.py) this module does not import Prefect,
# which reads its settings once, when first imported.
FORMER_FLOW = "BENCH_FORMER_FLOW"
ROOT = Path(__file__).resolve().parent.parent
# The targets set for the background advance.
TARGET_P50_MS, TARGET_P95_MS, TARGET_SPEEDUP = 300, 500, 10
CHROMIUM = "/usr/bin/chromium"
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


if os.environ.get(FORMER_FLOW) == "1":
    from prefect import flow

    @flow(name="advance-journey", flow_run_name="advance {reference}")
    def advance_journey(reference: str) -> dict[str, Any]:
        """The former per-event flow run: one case's advance, in a process of its own."""
        from tracker.journeys.background import advance_now

        return advance_now(reference)


def former_request(reference: str, db: Any) -> str:
    """What the former ``request_advance`` did for one case (with ``timeout=0``): look at
    Prefect's /health, read the case's tags, create the deployment run; returns its id."""
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from tracker.config import get_settings
    from tracker.journeys import queries
    from tracker.journeys.orchestration import prefect_reachable

    if not prefect_reachable(get_settings().prefect_api_url):
        raise RuntimeError("Prefect is not reachable")
    with db.read() as session:
        tags = queries.case_tags(session, reference=reference)
    run = run_deployment(
        FORMER_DEPLOYMENT,
        parameters={"reference": reference},
        flow_run_name=f"advance {reference}",
        tags=tags,
        timeout=0,
        as_subflow=False,
    )
    assert isinstance(run, FlowRun)
    return str(run.id)


# --- starting the workers and the former serving process ------------------------------------


def worker_ids(server: Any) -> set[str]:
    """The task workers subscribed to the server (host-pid)."""
    return {w["identifier"] for w in server.post("/task_workers/filter", {})}


def start_workers(
    root: Path,
    server: Any,
    count: int,
    label: str,
    env: dict[str, str] | None = None,
    sampled: Path | None = None,
) -> list[subprocess.Popen[bytes]]:
    """``count`` × ``onboarding-flows tasks``, waited for until each is subscribed."""
    import socket

    from _harness import BIN, wait_for

    procs = []
    for i in range(count):
        if sampled:
            command = [
                sys.executable,
                str(Path(__file__).resolve().parent / "background_advance.py"),
                "tasks-sampled",
            ]
            command += ["--out", str(sampled)]
        else:
            command = [str(BIN / "onboarding-flows"), "tasks"]
        procs.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **(env or {})},
                stdout=(root / f"tasks-{label}-{i}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
    wanted = {f"{socket.gethostname()}-{p.pid}" for p in procs}

    def subscribed() -> bool:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a task worker exited; see {root}/tasks-{label}-*.log")
        return wanted <= worker_ids(server)

    wait_for(subscribed, 120, "the task workers to subscribe", interval=0.2)
    return procs


def start_former(root: Path, server: Any) -> subprocess.Popen[bytes]:
    """The reconstructed former serving process, waited for until it polls."""
    from datetime import UTC, datetime

    from _harness import wait_for

    started = datetime.now(UTC)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve().parent / "background_advance.py"),
            "serve-former",
        ],
        cwd=ROOT,
        env={**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": "2", FORMER_FLOW: "1"},
        stdout=(root / "serve-former.log").open("wb"),
        stderr=subprocess.STDOUT,
    )

    def polling() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"serve-former exited; see {root}/serve-former.log")
        found = server.post(
            "/deployments/filter", {"deployments": {"name": {"any_": ["advance-journey"]}}}
        )
        polled = found[0].get("last_polled") if found else None
        return bool(polled) and datetime.fromisoformat(polled) > started

    wait_for(polling, 180, "the former serving process to poll")
    return proc


# --- where the caller's time goes -----------------------------------------------------------


def caller_profile(db: Any, refs: list[str], api: str, pem: Path) -> dict[str, Any]:
    """What ``request_advance`` spends its time on, piece by piece (cases already advanced:
    their runs change nothing)."""
    import ssl

    import certifi
    import httpx
    from _harness import summary
    from prefect import tags
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, temporary_settings

    from tracker.journeys import queries
    from tracker.journeys.background import advance, case_tag
    from tracker.journeys.orchestration import prefect_reachable, request_advance

    def delay(ref: str) -> None:
        with db.read() as session:
            labels = queries.case_tags(session, reference=ref)
        with tags(case_tag(ref), *labels):
            advance.delay()

    def delay_onecert(ref: str) -> None:
        with temporary_settings(updates={PREFECT_API_SSL_CERT_FILE: str(pem)}):
            delay(ref)

    def read_tags(ref: str) -> None:
        with db.read() as session:
            queries.case_tags(session, reference=ref)

    pieces: dict[str, Callable[[str], Any]] = {
        "request_advance (all of it)": lambda ref: request_advance([ref], db=db),
        "prefect_reachable (/health, a new httpx client)": lambda _: prefect_reachable(
            api, timeout=1
        ),
        "/health with verify=False (no TLS context)": lambda _: httpx.get(
            f"{api}/health", timeout=1, verify=False
        ),
        "read the case's tags": read_tags,
        "tags + .delay()": delay,
        "tags + .delay(), one-cert PEM": delay_onecert,
        "ssl context, certifi bundle": lambda _: ssl.create_default_context(cafile=certifi.where()),
        "ssl context, one-cert PEM": lambda _: ssl.create_default_context(cafile=str(pem)),
    }
    # Does the caller's .delay() really build its client's TLS context from the PEM here?
    seen: list[str | None] = []
    build = ssl.create_default_context

    def spy(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        seen.append(kwargs.get("cafile"))
        return build(*args, **kwargs)

    ssl.create_default_context = spy  # type: ignore[assignment]
    try:
        delay(refs[0])
        delay_onecert(refs[0])
    finally:
        ssl.create_default_context = build
    times: dict[str, list[float]] = {name: [] for name in pieces}
    for i in range(30):
        ref = refs[i % len(refs)]
        for name, piece in pieces.items():
            t0 = time.perf_counter()
            piece(ref)
            times[name].append((time.perf_counter() - t0) * 1000)
        time.sleep(0.2)  # let the worker run what was queued
    return {
        **{name: summary(values) for name, values in times.items()},
        "cafiles built by .delay(), then by .delay() with the PEM": seen,
    }


def one_cert_pem(root: Path) -> Path:
    """The first certificate of certifi's bundle alone (the API is plain http: nothing is
    verified against it, it only makes the client's TLS context cheap to build)."""
    import certifi

    text = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    first = text[text.index("-----BEGIN CERTIFICATE-----") : text.index(end) + len(end)]
    pem = root / "one-cert.pem"
    pem.write_text(first + "\n")
    return pem


# --- a stack sampler for the task worker -----------------------------------------------------


def _sampled_tasks(out: Path, interval: float, task_limit: int) -> None:
    """Run the advance task's worker as ``onboarding-flows tasks`` does, sampling every thread's
    stack; on SIGTERM write the functions seen most often (own and cumulative) to ``out``."""
    import asyncio
    import threading
    from collections import Counter

    from tracker.journeys.orchestration import use_prefect_environment

    use_prefect_environment()
    from flows.serving import serve_tasks

    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    samples = [0]
    stop = threading.Event()

    def sample() -> None:
        me = threading.get_ident()  # not this sampler itself
        while not stop.wait(interval):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                seen: set[str] = set()
                top = True
                busy = False
                f: Any = frame
                while f is not None:
                    code = f.f_code
                    where = f"{code.co_name} ({_short(code.co_filename)}:{code.co_firstlineno})"
                    if top:
                        # A thread waiting in select/epoll or on a lock is idle, not busy.
                        busy = code.co_name not in {"select", "wait", "_worker", "poll", "sleep"}
                        if busy:
                            own[where] += 1
                        top = False
                    if busy and where not in seen:
                        cumulative[where] += 1
                        seen.add(where)
                    f = f.f_back
                if busy:
                    samples[0] += 1

    sampler = threading.Thread(target=sample, daemon=True, name="bench-sampler")
    sampler.start()
    try:
        asyncio.run(serve_tasks(task_limit=task_limit))
    finally:
        stop.set()
        lines = [f"busy samples: {samples[0]} (every {interval * 1000:.0f} ms, all threads)", ""]
        for title, counts in (("cumulative", cumulative), ("own", own)):
            lines.append(f"## {title}")
            total = max(samples[0], 1)
            for where, n in counts.most_common(45):
                lines.append(f"{n / total * 100:5.1f} %  {where}")
            lines.append("")
        out.write_text("\n".join(lines))


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 2)[-1] if "/" in path else path


# --- the dashboard's save in a real browser --------------------------------------------------

# Records, inside the page, when the Save button is clicked and when an alert with each text
# first appears (Streamlit draws it in the DOM; nothing else draws these texts).
OBSERVE = """([saved, open]) => {
  const b = (window.__bench = {click: null, saved: null, open: null, savedText: '', openText: ''});
  const button = document.querySelector('.st-key-person_submit button');
  document.addEventListener('click', (e) => {
    if (b.click === null && button && button.contains(e.target)) b.click = performance.now();
  }, true);
  const look = () => {
    if (b.click === null) return;
    for (const a of document.querySelectorAll('[data-testid="stAlert"]')) {
      const t = a.textContent || '';
      if (b.saved === null && t.includes(saved)) { b.saved = performance.now(); b.savedText = t; }
      if (b.open === null && t.includes(open)) { b.open = performance.now(); b.openText = t; }
    }
  };
  new MutationObserver(look).observe(document.body,
    {childList: true, subtree: true, characterData: true});
}"""


def time_saves(
    url: str,
    cases: list[tuple[str, str, str]],
    *,
    username: str,
    password: str,
    step_titles: dict[str, str],
    expect_open: bool,
    timeout_s: float = 30,
) -> list[dict[str, Any]]:
    """Sign in as ``username``, then per case: open its page, choose the step, "record as
    done", click Save; how long until "Saved." and (``expect_open``) "Now open: …" show."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    saves: list[dict[str, Any]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1400, "height": 1600}, locale="en-GB", timezone_id="Europe/Berlin"
        )
        context.set_default_timeout(60_000)
        # Only this machine: anything else would be a leak (and a wait).
        context.route(
            "**/*",
            lambda route: (
                route.continue_()
                if re.match(
                    r"^(data:|blob:|https?://(127\.0\.0\.1|localhost)[:/])", route.request.url
                )
                else route.abort()
            ),
        )
        page = context.new_page()
        page.goto(url)
        page.locator(".st-key-lang").get_by_text("English", exact=True).click()
        page.locator(".st-key-signin_user input").fill(username)
        page.locator(".st-key-signin_password input").fill(password)
        page.locator(".st-key-signin_submit button").click()
        expect(page.get_by_role("heading", name="My cases")).to_be_visible()
        nav = page.get_by_test_id("stSidebarNav").get_by_role("link", name="Case", exact=True)
        nav.click()
        for ref, done_key, next_key in cases:
            box = page.locator(".st-key-person_ref input")
            box.fill(ref)
            box.press("Enter")
            expect(page.get_by_role("heading", name=re.compile(re.escape(ref)))).to_be_visible()
            _settle(page)
            page.get_by_role("combobox", name="Step").click()
            page.get_by_role("option", name=step_titles[done_key]).first.click()
            page.locator(".st-key-person_action").get_by_text("record as done", exact=True).click()
            _settle(page)
            for text in ("Saved.", "Now open"):
                expect(page.get_by_test_id("stAlert").filter(has_text=text)).to_have_count(0)
            page.evaluate(OBSERVE, ["Saved.", "Now open"])
            page.locator(".st-key-person_submit button").click()
            wanted = "b.open !== null" if expect_open else "b.saved !== null"
            outcome = "ok"
            try:
                page.wait_for_function(
                    f"(() => {{ const b = window.__bench; return {wanted}; }})()",
                    timeout=timeout_s * 1000,
                )
            except Exception as exc:  # noted, and the next case goes on
                outcome = f"{type(exc).__name__}"
            b = page.evaluate("window.__bench")
            click = b["click"]
            saves.append(
                {
                    "reference": ref,
                    "step_done": done_key,
                    "step_next": next_key,
                    "outcome": outcome,
                    "saved_ms": round(b["saved"] - click, 1) if b["saved"] and click else None,
                    "open_ms": round(b["open"] - click, 1) if b["open"] and click else None,
                    "saved_text": b["savedText"][:120],
                    "open_text": b["openText"][:120],
                }
            )
            _settle(page)
        context.close()
        browser.close()
    return saves


@contextmanager
def streamlit(root: Path, orchestration: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`streamlit run dashboard/app.py` on a free local port with this orchestration."""
    import httpx
    from _harness import BIN, free_port, stop, wait_for

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "streamlit"), "run", "dashboard/app.py", "--server.address"]
    command += ["127.0.0.1", "--server.port", str(port), "--server.headless", "true"]
    command += ["--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "ONBOARDING_ORCHESTRATION": orchestration},
        stdout=(root / f"streamlit-{orchestration}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: httpx.get(f"{url}/_stcore/health", timeout=2).text.strip() == "ok",
            90,
            "streamlit",
            interval=0.2,
        )
        yield url, proc
    finally:
        stop(proc)


def dashboard_saves(
    root: Path,
    batches: dict[str, list[tuple[str, str, str]]],
    *,
    worker: Callable[[], list[subprocess.Popen[bytes]]],
    username: str,
) -> dict[str, Any]:
    """Per orchestration ("prefect" with a task worker from ``worker()``, or "inline"): a
    dashboard on it, and the saves of ``time_saves`` on its cases."""
    from collections import Counter

    from _harness import peak_rss_mib, stop, summary

    from tracker.demo.people import DEMO_PASSWORD
    from tracker.pathway import get_registry

    titles = {key: entry.title.en for key, entry in get_registry().catalogue.items()}
    out: dict[str, Any] = {}
    for orchestration, chosen in batches.items():
        workers = worker() if orchestration == "prefect" else []
        load_before = round(os.getloadavg()[0], 2)
        try:
            with streamlit(root, orchestration) as (url, proc):
                rows = time_saves(
                    url,
                    chosen,
                    username=username,
                    password=DEMO_PASSWORD,
                    step_titles=titles,
                    expect_open=orchestration == "prefect",
                )
                streamlit_rss = peak_rss_mib(proc.pid)
        finally:
            for w in workers:
                stop(w)
        saved = [r["saved_ms"] for r in rows if r["saved_ms"] is not None]
        opened = [r["open_ms"] for r in rows if r["open_ms"] is not None]
        out[orchestration] = {
            "saves": len(rows),
            "saved": summary(saved) if saved else None,
            "now_open": summary(opened) if opened else None,
            "outcomes": Counter(r["outcome"] for r in rows),
            "texts": Counter(r["saved_text"][:60] for r in rows),
            "streamlit_peak_rss_mib": streamlit_rss,
            "loadavg_1m": [load_before, round(os.getloadavg()[0], 2)],
            "rows": rows,
        }
    return out


def _settle(page: Any) -> None:
    """Wait until Streamlit has finished running the script."""
    from playwright.sync_api import expect

    expect(page.locator('[data-testid="stApp"]')).to_have_attribute(
        "data-test-script-state", "notRunning"
    )
    expect(page.locator('[data-testid="stSkeleton"]')).to_have_count(0)


# --- the document's section (bench/suite.py writes it into docs/benchmarks.md) ---------------

NOTES = (
    Path(__file__).resolve().parent / "results" / "prefect-advance-notes.md"
)  # hand-written findings, quoted after the tables
PATHS = {
    "direct": "`advance_now` in the caller (the floor)",
    "background": "**background task**: `request_advance` → `onboarding-flows tasks`",
    "former": "former deployment run (reconstructed), Runner polling every 2 s",
    "onecert": "background task + one-cert `PREFECT_API_SSL_CERT_FILE` (proposal)",
}


def section(found: list[dict[str, Any]]) -> list[str]:
    """Markdown for docs/benchmarks.md from the results of each backend."""
    import json

    from _harness import markdown_table

    def p(stats: dict[str, Any] | None, *keys: str) -> str:
        return " / ".join(f"{stats[k]:,.0f}" for k in keys) if stats else "–"

    def load(m: dict[str, Any]) -> str:
        return " → ".join(str(x) for x in m.get("loadavg_1m", [])) or "–"

    one, where, bursts, saves = [], [], [], []
    pieces: dict[str, list[str]] = {}  # what request_advance blocks on, per backend
    batch = []
    for d in found:
        server, modes = f"{d['backend']} ({d['started'][:16]})", d["modes"]
        new, old = modes.get("background") or {}, modes.get("former") or {}
        for name, stats in (new.get("caller_profile") or {}).items():
            if isinstance(stats, dict):
                pieces.setdefault(name, []).append(p(stats, "p50_ms", "p95_ms"))
        if (modes.get("batch") or {}).get("wall_ms_per_case") is not None:
            batch.append(f"{modes['batch']['wall_ms_per_case']} ms per case on {d['backend']}")
        for mode, label in PATHS.items():
            m = modes.get(mode)
            if not m or not m.get("open"):
                continue
            verdict = "–"
            if mode == "background":
                ok = m["open"]["p50_ms"] <= TARGET_P50_MS and m["open"]["p95_ms"] <= TARGET_P95_MS
                verdict = "PASS" if ok else "**MISS**"
            if mode == "former" and new.get("open"):
                x50, x95 = (old["open"][k] / new["open"][k] for k in ("p50_ms", "p95_ms"))
                ok = min(x50, x95) >= TARGET_SPEEDUP
                verdict = f"×{x50:.0f} / ×{x95:.0f} slower: " + ("PASS" if ok else "**MISS**")
            one.append(
                [
                    server,
                    label,
                    m["n"],
                    p(m["open"], "p50_ms", "p95_ms", "max_ms"),
                    p(m["caller"], "p50_ms", "p95_ms"),
                    p(m.get("recorded"), "p50_ms"),
                    m["not_opened"] + sum(m["errors"].values()),
                    load(m),
                    verdict,
                ]
            )
            if mode in ("background", "former"):
                where += [
                    [server, label, name, p(v, "p50_ms", "p95_ms")]
                    for name, v in m["spans"].items()
                ]
        for mode in ("burst1", "burst2"):
            b = modes.get(mode)
            if not b or "error" in b:
                continue
            t = b["tracker"]
            bursts.append(
                [
                    server,
                    b["task_workers"],
                    b["changes"],
                    b["refused"],
                    t["next_step_open"],
                    t["steps_opened_twice"],
                    json.dumps(b["runs_per_case"]),
                    b["server_503"],
                    b["submit_s"],
                    b["last_opened_s"],
                    b["advances_per_s"],
                    p(b["request_to_open"], "p50_ms", "p95_ms", "max_ms"),
                    p(b["caller"], "p50_ms", "p95_ms"),
                    " / ".join(str(x) for x in b["worker_peak_rss_mib"]),
                    load(b),
                ]
            )
        for orchestration, v in (modes.get("dashboard") or {}).items():
            if isinstance(v, dict) and "saves" in v:
                saves.append(
                    [
                        server,
                        orchestration,
                        v["saves"],
                        p(v["saved"], "p50_ms", "p95_ms", "max_ms"),
                        p(v["now_open"], "p50_ms", "p95_ms", "max_ms"),
                        load(v),
                    ]
                )
    if not one:
        return []
    first = found[0]["machine"]
    lines = [
        "## Click to next step open: the advance after a change",
        "",
        f"Target: p50 ≤ {TARGET_P50_MS / 1000} s and p95 ≤ {TARGET_P95_MS / 1000} s for the "
        f"background task, at least {TARGET_SPEEDUP}× faster than the former per-event "
        "deployment run",
        "",
        "Not re-run by the suite: `.venv/bin/python bench/prefect_advance.py` (both backends, "
        "about half an hour; `--backend sqlite`, `--modes background,former` for less) writes "
        "bench/results/prefect_advance_<backend>.json, quoted here. A real `prefect server "
        "start` on SQLite or on a scratch PostgreSQL database, the tracker on SQLite, "
        f"{first['cpus']} CPUs shared with other test runs (load: the 1-minute average before "
        "→ after each row). Each change is a step recorded as done and committed; the clock runs "
        "from the request for the advance to the next step being open in the tracker database, "
        f"polled every {found[0]['poll_ms']:.0f} ms, one change at a time. The former path is "
        "the per-event `advance-journey` deployment the product used before the background task, "
        "rebuilt for this comparison in bench/background_advance.py (one flow run per change, "
        "served by Prefect's `Runner` with `PREFECT_RUNNER_POLL_FREQUENCY=2`, asked with "
        "`run_deployment(..., timeout=0)`).",
        "",
        markdown_table(
            [
                "Prefect server",
                "path",
                "changes",
                "click → next step open p50 / p95 / max ms",
                "caller blocked p50 / p95 ms",
                "run's end in Prefect p50 ms",
                "lost",
                "load",
                "verdict",
            ],
            one,
        ),
        "",
        "Where the time goes (p50 / p95 ms; timestamps of the bench, the Prefect server, "
        "the worker and the advance's own transaction, all on this machine):",
        "",
        markdown_table(["Prefect server", "path", "span", "p50 / p95 ms"], where),
        "",
    ]
    if pieces:
        lines += [
            "What the caller's `request_advance` blocks on, piece by piece (p50 / p95 ms over "
            "30 calls each, interleaved; `.delay()` includes building a Prefect client):",
            "",
            markdown_table(
                [
                    "piece",
                    *(f"Prefect on {d['backend']}" for d in found if d["modes"].get("background")),
                ],
                [[name, *values] for name, values in pieces.items()],
            ),
            "",
        ]
    if batch:
        lines += [
            f"Bulk work stays a batch: the `advance_cases` flow in-process, {found[0]['cases']} "
            f"changes at once: {', '.join(batch)} (wall).",
            "",
        ]
    if bursts:
        lines += [
            "A burst: the changes at once from 4 threads (each commits its change, then "
            "`request_advance`), served by 1 or 2 `onboarding-flows tasks` (10 at once each). "
            "Checked in the tracker (every awaited step open, no step opened twice by its "
            "`step.opened` audit events) and in Prefect (task runs per `case:` tag); 503s are "
            "the server's own count of answers to retry:",
            "",
            markdown_table(
                [
                    "Prefect server",
                    "task workers",
                    "changes",
                    "refused",
                    "advanced",
                    "steps opened twice",
                    "runs per case",
                    "503s",
                    "submitted in s",
                    "all open after s",
                    "advances/s",
                    "request → open p50 / p95 / max ms",
                    "caller p50 / p95 ms",
                    "worker peak RSS MiB",
                    "load",
                ],
                bursts,
            ),
            "",
        ]
    if saves:
        lines += [
            "The dashboard's save (`streamlit run`, headless Chromium): the case page, "
            '"record as done", Save; from the click to the "Saved." alert and to '
            '"Now open: …" (Prefect; inline has the next step on the page with "Saved."):',
            "",
            markdown_table(
                [
                    "Prefect server",
                    "orchestration",
                    "saves",
                    "click → Saved. p50 / p95 / max ms",
                    "click → Now open p50 / p95 / max ms",
                    "load",
                ],
                saves,
            ),
            "",
        ]
    if NOTES.exists():
        lines += [NOTES.read_text().strip(), ""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    former = sub.add_parser("serve-former", help="serve the reconstructed advance-journey flow")
    former.add_argument("--limit", type=int, default=4, help="flow runs at once")
    sampled = sub.add_parser("tasks-sampled", help="the task worker with a stack sampler")
    sampled.add_argument("--out", type=Path, required=True)
    sampled.add_argument("--interval-ms", type=float, default=5)
    sampled.add_argument("--task-limit", type=int, default=10)
    args = parser.parse_args()
    if args.command == "serve-former":
        from tracker.journeys.orchestration import use_prefect_environment

        use_prefect_environment()
        every = os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY")
        print(f"serving advance-journey, polling every {every} s", flush=True)
        advance_journey.serve(name="advance-journey", limit=args.limit)
    else:
        _sampled_tasks(args.out, args.interval_ms / 1000, args.task_limit)


if __name__ == "__main__":
    main()
