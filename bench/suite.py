"""`make bench`: the benchmark suite (plain timers, not timed tests).

For each size (--people) and backend (sqlite, postgresql) the demo is loaded once into a
scratch database in a child process; each group of measurements then runs in a child process
of its own, so each peak RSS is that group's own:

- reads: partner queue first page per partner organisation, person timeline, year figures;
- sweep: one `clock_sweep` flow run against a scratch Prefect server (as bench/sweep.py does);
- completions: `complete_step` through the service layer, one transaction each, ~10 s;
- dashboard: every page under Streamlit's AppTest (bench/dashboard_pages.py's `measure`).

Click to next step open through Prefect is not re-run here (bench/prefect_advance.py takes
about half an hour); its latest results in bench/results/ are quoted. Results go to
bench/results/suite-<size>-<backend>.json; docs/benchmarks.md is assembled from all of those.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, date, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _harness import PrefectServer, machine, markdown_table, scratch_dir, summary
from sweep import load, sweep_once, tracker_url

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DOC = ROOT / "docs" / "benchmarks.md"
NOTES = RESULTS / "suite-notes.md"  # hand-written findings, quoted at the end of the document
BACKENDS = ("sqlite", "postgresql")
QUEUE_RUNS = 30
TIMELINE_CASES = 50
COMPLETION_SECONDS = 10.0
FIGURES_ENOUGH_MS = 10_000
FIGURES_TIMEOUT_MS = 90_000  # PostgreSQL only
CASE_MANAGER, LEADERSHIP = "cm.mueller", "lead.schmidt"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def in_child(work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``work`` in a fresh (spawned) process; an exception becomes {"error": ...}."""
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        try:
            out = pool.submit(_with_origin, work, *args).result()
        except Exception as exc:
            out = {"error": f"{type(exc).__name__}: {exc}"}
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    out["loadavg_after"] = loadavg()
    return out


def tracker_env(url: str, root: Path, orchestration: str = "inline") -> dict[str, str]:
    return {
        "ONBOARDING_DATA_DIR": str(root / "data"),
        "ONBOARDING_DATABASE_URL": url,
        "ONBOARDING_ORCHESTRATION": orchestration,
        "ONBOARDING_PREFECT_API_URL": "http://127.0.0.1:9/api",  # refused at once
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }


def setup_child(env: dict[str, str]) -> None:
    """Before the tracker is imported: its settings are read (and cached) from the environment."""
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        # Last, not first: bench/compare.py puts the code it measures first on PYTHONPATH, and
        # a spawned child must import that tracker, not this checkout's.
        sys.path.append(str(ROOT))


def _with_origin(work: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``work``'s result, with the folder the child imported ``tracker`` from."""
    out = work(*args)
    tracker = sys.modules.get("tracker")
    out["tracker_imported_from"] = str(Path(tracker.__file__).parent) if tracker else None
    return out


def timed_ms(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = work()
    return (time.perf_counter() - started) * 1000, value


# --- reads: queue, timeline, year figures ---------------------------------------------------------


def measure_reads(url: str, env: dict[str, str], seed: int) -> dict[str, Any]:
    setup_child(env)
    from sqlalchemy import select, text

    from tracker.access import actor_for
    from tracker.db import Database
    from tracker.enums import HandoffState
    from tracker.journeys import queries
    from tracker.models import Case, Handoff, Organisation
    from tracker.reporting import figures as outcomes

    db = Database(url)
    today = date.today()
    with db.read() as s:
        cm, lead = actor_for(s, CASE_MANAGER), actor_for(s, LEADERSHIP)
        orgs = list(
            s.scalars(
                select(Organisation.key)
                .where(
                    Organisation.id.in_(
                        select(Handoff.organisation_id).where(
                            Handoff.state.in_([HandoffState.offered, HandoffState.accepted])
                        )
                    )
                )
                .order_by(Organisation.key)
            )
        )
        references = list(s.scalars(select(Case.reference)))
    out: dict[str, Any] = {"rss_at_start_mib": peak_rss_mib(), "today": today.isoformat()}

    # Partner queue, first page (50), the default filter (offered + accepted), most urgent first.
    per_org: dict[str, Any] = {}
    pooled: list[float] = []
    for key in orgs:

        def page(key: str = key) -> int:
            with db.read() as s:
                return len(queries.partner_queue(s, actor=cm, organisation=key, today=today))

        samples, rows = [], 0
        for _ in range(QUEUE_RUNS):
            ms, rows = timed_ms(page)
            samples.append(ms)
        pooled += samples
        per_org[key] = {**summary(samples), "rows": rows}
    out["queue"] = {
        "as": CASE_MANAGER,
        "runs_per_org": QUEUE_RUNS,
        "orgs": per_org,
        "all": summary(pooled) if pooled else None,
        "worst_org_p95_ms": max((v["p95_ms"] for v in per_org.values()), default=None),
    }

    # Person timeline for random cases (the first view of each writes its access log row).
    chosen = random.Random(seed).sample(references, min(TIMELINE_CASES, len(references)))
    samples, events = [], []
    for ref in chosen:

        def entries(ref: str = ref) -> int:
            with db.read() as s:
                return len(queries.timeline(s, actor=cm, reference=ref))

        ms, n = timed_ms(entries)
        samples.append(ms)
        events.append(n)
    out["timeline"] = {
        **summary(samples),
        "cases": len(chosen),
        "entries_mean": round(statistics.fmean(events), 1),
    }

    # Leadership outcomes: all figures for the current year, median of 3 (1 if > 10 s).
    samples = []
    timed_out = None
    for _ in range(3):

        def figures() -> Any:
            with db.read() as s:
                if not db.is_sqlite:  # a runaway plan must not hold up the whole suite
                    s.execute(text(f"SET LOCAL statement_timeout = {FIGURES_TIMEOUT_MS}"))
                return outcomes.year_figures(s, actor=lead, year=today.year, today=today)

        try:
            ms, _ = timed_ms(figures)
        except Exception as exc:
            timed_out = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            break
        samples.append(ms)
        if ms > FIGURES_ENOUGH_MS:
            break  # far over the target: one run says enough (and keeps the suite short)
    out["year_figures"] = {
        "year": today.year,
        "runs_ms": [round(x, 1) for x in samples],
        "median_ms": round(statistics.median(samples), 1) if samples else None,
        "statement_timeout_ms": None if db.is_sqlite else FIGURES_TIMEOUT_MS,
        "error": timed_out,
    }
    db.dispose()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# --- step completions through the service layer ------------------------------------------------


def open_steps(session: Any) -> list[tuple[str, str]]:
    """Every open or started step of an open case: (reference, step key)."""
    from sqlalchemy import select

    from tracker.enums import CaseStatus, StepState
    from tracker.models import Case, Step

    stmt = (
        select(Case.reference, Step.key)
        .join(Case, Step.case_id == Case.id)
        .where(
            Step.state.in_([StepState.open, StepState.in_progress]),
            Case.status == CaseStatus.open,
        )
    )
    return [(ref, key) for ref, key in session.execute(stmt)]


def measure_completions(url: str, env: dict[str, str], seed: int, seconds: float) -> dict[str, Any]:
    setup_child(env)
    from sqlalchemy import select

    from tracker.access import actor_for
    from tracker.db import Database
    from tracker.journeys.steps import complete_step
    from tracker.models import AuditEvent, OutboxMessage

    db = Database(url)
    with db.read() as s:
        cm = actor_for(s, CASE_MANAGER)
        todo = open_steps(s)
        audit0 = s.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1)) or 0
        outbox0 = s.scalar(select(OutboxMessage.id).order_by(OutboxMessage.id.desc()).limit(1))
    random.Random(seed).shuffle(todo)
    rss_start = peak_rss_mib()
    samples: list[float] = []
    errors: dict[str, int] = {}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for ref, key in todo:
        if time.perf_counter() - started >= seconds:
            break
        t0 = time.perf_counter()
        try:
            with db.transaction() as s:
                complete_step(s, actor=cm, reference=ref, step_key=key)
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        samples.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    with db.read() as s:
        audit = len(s.scalars(select(AuditEvent.id).where(AuditEvent.id > audit0)).all())
        outbox = len(
            s.scalars(select(OutboxMessage.id).where(OutboxMessage.id > (outbox0 or 0))).all()
        )
    db.dispose()
    return {
        "open_steps": len(todo),
        "completed": len(samples),
        "errors": errors,
        "seconds": round(wall, 2),
        "per_second": round(len(samples) / wall, 1) if wall else None,
        "cpu_seconds_this_process": round(
            (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 2
        ),
        "latency": summary(samples) if samples else None,
        "audit_events_written": audit,
        "outbox_messages_written": outbox,
        "note": "one process, one transaction (commit) per completion, as cm.mueller",
        "rss_at_start_mib": rss_start,
        "peak_rss_mib": peak_rss_mib(),
    }


def measure_change_and_advance(
    url: str, env: dict[str, str], seed: int, seconds: float, synchronous: str
) -> dict[str, Any]:
    """A completion followed by its advance, as the CLI does inline: one transaction records the
    step done, the next opens what it unlocked (``request_advance``'s inline path). On SQLite
    with ``synchronous`` FULL (the default: every commit durable) or NORMAL."""
    setup_child({**env, "ONBOARDING_SQLITE_SYNCHRONOUS": synchronous})
    from sqlalchemy import select

    from tracker.access import actor_for
    from tracker.db import Database
    from tracker.journeys.orchestration import request_advance
    from tracker.journeys.steps import complete_step
    from tracker.models import Case

    db = Database(url)
    with db.read() as s:
        cm = actor_for(s, CASE_MANAGER)
        todo = open_steps(s)
    random.Random(seed + 1).shuffle(todo)
    samples: list[float] = []
    errors: dict[str, int] = {}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for ref, key in todo:
        if time.perf_counter() - started >= seconds:
            break
        t0 = time.perf_counter()
        try:
            with db.transaction() as s:
                complete_step(s, actor=cm, reference=ref, step_key=key)
            request = request_advance([ref], db=db)
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        if request.state != "completed":
            errors[request.state] = errors.get(request.state, 0) + 1
            continue
        samples.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    with db.read() as s:
        waiting = s.scalar(select(Case.id).where(Case.advance_requested_at.is_not(None)).limit(1))
    db.dispose()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "synchronous": synchronous if url.startswith("sqlite") else None,
        "done": len(samples),
        "errors": errors,
        "seconds": round(wall, 2),
        "per_second": round(len(samples) / wall, 1) if wall else None,
        "cpu_ms_each": round(cpu * 1000 / len(samples), 2) if samples else None,
        "latency": summary(samples) if samples else None,
        "advance_left_waiting": waiting is not None,
        "note": "complete_step, commit, then request_advance inline (its own transaction)",
        "peak_rss_mib": peak_rss_mib(),
    }


# --- clock sweep (bench/sweep.py's sweep_once) ---------------------------------------------------


def measure_sweep(url: str, env: dict[str, str], api: str, day: str, batch: int) -> dict[str, Any]:
    setup_child(env)
    from tracker.db import get_database

    server = PrefectServer(Path(env["ONBOARDING_DATA_DIR"]), "sqlite")
    server.api = api  # sweep_once only asks the server (REST) what it recorded
    db = get_database()
    run = sweep_once(server, db, day, batch)
    db.dispose()
    return run


# --- dashboard pages (bench/dashboard_pages.py's measure) ----------------------------------------


def measure_dashboard(url: str, env: dict[str, str], runs: int) -> dict[str, Any]:
    setup_child(env)
    import dashboard_pages as dp

    dp.quiet_streamlit()
    cases = dp.pick_cases()
    sql = dp.SqlLog()
    sql.attach()
    warm_up = dp.warm_up_streamlit("de")
    pages = []
    for role, username, page in dp.ENTRIES:
        case = cases.get(username) if page == "person" else None
        try:
            r = dp.measure(role, username, page, case, runs, "de", sql, None)
        except Exception as exc:
            r = {"page": page, "role": role, "errors": [f"{type(exc).__name__}: {exc}"]}
        print(f"  page {r['page']:26} as {username:13} {r.get('first_s')} s", file=sys.stderr)
        pages.append(r)
    return {
        "runs": runs,
        "warm_up_seconds": round(warm_up, 2),
        "pages": pages,
        "peak_rss_mib": peak_rss_mib(),
    }


# --- one size on one backend ---------------------------------------------------------------------


def run_one(people: int, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    day = datetime.now().date().isoformat()
    results: dict[str, Any] = {
        "people": people,
        "backend": backend,
        "day": day,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "complete": False,
    }
    out_path = RESULTS / f"suite-{people}-{backend}.json"

    def save() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2, default=str, ensure_ascii=False) + "\n")

    def log(what: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(f"[{stamp}] {people:,} {backend}: {what} (load {loadavg()})", file=sys.stderr)

    with scratch_dir(args.keep) as root, tracker_url(root, backend) as url:
        env = tracker_env(url, root)
        log("loading the demo")
        loaded = in_child(load, url, people, args.seed, day)
        if "seconds" in loaded:
            loaded["newcomers_per_second"] = round(people / loaded["seconds"], 1)
        results["load"] = loaded
        save()
        log(f"loaded: {loaded.get('seconds')} s; reads")
        results["reads"] = in_child(measure_reads, url, env, args.seed)
        save()
        if "sweep" in args.skip:
            results["sweep"] = {"skipped": "--skip sweep"}
        else:
            log("sweep (starting a scratch Prefect server)")
            server = PrefectServer(root, "sqlite")
            with server.running():
                sweep_env = {
                    **env,
                    **server.client_env(),
                    "ONBOARDING_ORCHESTRATION": "prefect",
                    "ONBOARDING_PREFECT_API_URL": server.api,
                }
                results["sweep"] = in_child(
                    measure_sweep, url, sweep_env, server.api, day, args.batch_size
                )
                results["sweep"]["server_startup_s"] = round(server.startup_seconds, 1)
                results["sweep"]["server_peak_rss_mib"] = server.peak_rss_mib()
        save()
        log("completions")
        results["completions"] = in_child(
            measure_completions, url, env, args.seed, args.completion_seconds
        )
        save()
        log("completion + advance")
        for sync in ("FULL", "NORMAL") if backend == "sqlite" else ("FULL",):
            results[f"change_and_advance_{sync.lower()}"] = in_child(
                measure_change_and_advance, url, env, args.seed, args.completion_seconds, sync
            )
            save()
        if "dashboard" in args.skip:
            results["dashboard"] = {"skipped": "--skip dashboard"}
        else:
            log("dashboard pages")
            results["dashboard"] = in_child(measure_dashboard, url, env, args.dashboard_runs)
        results["complete"] = True
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        save()
        log("done")
    return results


# --- docs/benchmarks.md --------------------------------------------------------------------------


def prefect_advance() -> list[str]:
    """The section of bench/prefect_advance.py's latest results (not re-run by the suite)."""
    from background_advance import section  # imports neither Prefect nor the tracker

    found = []
    for backend in BACKENDS:
        path = RESULTS / f"prefect_advance_{backend}.json"
        if path.exists():
            found.append(json.loads(path.read_text()))
    return section(found)


def import_runs() -> list[str]:
    """The section of bench/import_100k.py's labelled runs (before and after a change)."""
    from import_100k import section

    found = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("import-*.json"))]
    return section(found)


def change_advance_runs() -> list[str]:
    """The section of bench/change_advance.py's labelled runs (before and after a change)."""
    from change_advance import section

    found = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("change-advance-*.json"))]
    return section(found)


def browser_pages() -> list[str]:
    """The section of bench/browser_pages.py's results (a real browser; not re-run by the
    suite: it needs Chromium and a demo database of its own)."""
    from browser_pages import section

    found = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("browser-pages-*.json"))]
    return section(found)


def slow_pages(found: list[dict[str, Any]]) -> list[str]:
    """Where the time of a slow page went (the profiled render of dashboard_pages.measure)."""
    from dashboard_pages import short_sql

    lines = []
    for d in found:
        for p in (d.get("dashboard") or {}).get("pages") or []:
            prof = p.get("profile")
            if not prof:
                continue
            top = prof["sql"]["top"][0] if prof["sql"]["top"] else None
            func = prof["functions"][0]["function"] if prof["functions"] else "?"
            line = (
                f"- {d['people']:,} · {d['backend']}, {p['page']} as {p['username']}: "
                f"{prof['seconds_under_profiler']:.1f} s under cProfile, "
                f"{prof['sql']['seconds']:.1f} s in SQL; top function {func}"
            )
            if top:
                line += f"; slowest SQL {top['seconds']:.1f} s: `{short_sql(top['sql'], 200)}`"
            lines.append(line)
    return ["Slow pages (over 1 s), where the time went:", "", *lines, ""] if lines else []


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("PASS" if ok else "**MISS**")


def get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def write_doc() -> None:
    found = []
    for path in sorted(RESULTS.glob("suite-*-*.json")):
        data = json.loads(path.read_text())
        found.append(data)
    found.sort(key=lambda d: (d["people"], BACKENDS.index(d["backend"])))
    if not found:
        return

    def label(d: dict[str, Any]) -> str:
        tag = "" if d.get("complete") else " (partial)"
        return f"{d['people']:,} · {d['backend']}{tag}"

    measures: list[tuple[str, str, Callable[[dict[str, Any]], tuple[Any, bool | None, Any]]]]

    def load_row(d: dict[str, Any]) -> tuple[Any, bool | None, Any]:
        sec, rate = get(d, "load", "seconds"), get(d, "load", "newcomers_per_second")
        if sec is None:
            return get(d, "load", "error"), None, get(d, "load", "peak_rss_mib")
        ok = rate >= 100_000 / 60
        return f"{sec:,.1f} s = {rate:,.0f}/s", ok, get(d, "load", "peak_rss_mib")

    def queue_row(d: dict[str, Any]) -> tuple[Any, bool | None, Any]:
        q = get(d, "reads", "queue", "all")
        if not q:
            return get(d, "reads", "error"), None, None
        worst = get(d, "reads", "queue", "worst_org_p95_ms")
        orgs = get(d, "reads", "queue", "orgs") or {}
        name = max(orgs, key=lambda k: orgs[k]["p95_ms"]) if orgs else "?"
        value = f"all orgs p50 {q['p50_ms']} / p95 {q['p95_ms']} ms; worst: {name} p95 {worst} ms"
        return value, worst is not None and worst <= 50, get(d, "reads", "peak_rss_mib")

    def timeline_row(d: dict[str, Any]) -> tuple[Any, bool | None, Any]:
        t = get(d, "reads", "timeline")
        if not t:
            return get(d, "reads", "error"), None, None
        value = f"p50 {t['p50_ms']} / p95 {t['p95_ms']} ms ({t['cases']} cases)"
        return value, t["p95_ms"] <= 20, get(d, "reads", "peak_rss_mib")

    def figures_row(d: dict[str, Any]) -> tuple[Any, bool | None, Any]:
        f = get(d, "reads", "year_figures")
        if not f:
            return get(d, "reads", "error"), None, None
        if f.get("median_ms") is None:
            limit = f.get("statement_timeout_ms") or 0
            value = f"> {limit / 1000:.0f} s: cancelled by statement_timeout ({f.get('error')})"
            return value, False, get(d, "reads", "peak_rss_mib")
        value = f"median {f['median_ms']:,.0f} ms (runs {f['runs_ms']})"
        return value, f["median_ms"] <= 1000, get(d, "reads", "peak_rss_mib")

    def completion_row(d: dict[str, Any]) -> tuple[Any, bool | None, Any]:
        c = d.get("completions")
        if not c or "per_second" not in c:
            return (c or {}).get("error", "not run"), None, None
        lat = c.get("latency") or {}
        value = (
            f"{c['per_second']:,.0f}/s ({c['completed']:,} in {c['seconds']} s, "
            f"{c['cpu_seconds_this_process']} s CPU in this process, "
            f"p50/p95 {lat.get('p50_ms')}/{lat.get('p95_ms')} ms, errors {c['errors'] or 0})"
        )
        return value, c["per_second"] >= 1500, c.get("peak_rss_mib")

    def change_and_advance_row(sync: str, target: int) -> Callable[..., Any]:
        def row(d: dict[str, Any]) -> tuple[Any, bool | None, Any]:
            c = d.get(f"change_and_advance_{sync}")
            if not c or "per_second" not in c:
                return (c or {}).get("error", "not run"), None, None
            lat = c.get("latency") or {}
            value = (
                f"{c['per_second']:,.0f}/s, {c['cpu_ms_each']} ms CPU each ({c['done']:,} in "
                f"{c['seconds']} s, p50/p95 {lat.get('p50_ms')}/{lat.get('p95_ms')} ms, "
                f"errors {c['errors'] or 0}, advance left waiting: {c['advance_left_waiting']})"
            )
            goal = 300 if d.get("backend") == "postgresql" else target
            return value, c["per_second"] >= goal, c.get("peak_rss_mib")

        return row

    def sweep_row(d: dict[str, Any]) -> tuple[Any, bool | None, Any]:
        s = d.get("sweep")
        if not s or "seconds" not in s:
            return (s or {}).get("error") or (s or {}).get("skipped") or "not run", None, None
        value = (
            f"{s['seconds']} s ({get(s, 'before', 'open_cases'):,} open cases, "
            f"{s['clock_batches']} batches, {s['flow_run_state']})"
        )
        return value, s["seconds"] <= 10, s.get("peak_rss_mib")

    measures = [
        ("Demo load (newcomers with full histories per second)", "100k in ≤ 60 s", load_row),
        ("Partner queue, first page (filtered, sorted by urgency)", "p95 ≤ 50 ms", queue_row),
        ("Person timeline", "p95 ≤ 20 ms", timeline_row),
        ("Leadership outcomes, all figures for one year", "≤ 1 s", figures_row),
        (
            "Step completions through the service layer (commit with audit and outbox)",
            "≥ 1,500/s on one core",
            completion_row,
        ),
        (
            "Completion + advance of one step, one process, synchronous=FULL (inline CLI)",
            "≥ 500/s and ≤ 1.5 ms CPU on SQLite, ≥ 300/s on PostgreSQL",
            change_and_advance_row("full", 500),
        ),
        (
            "Completion + advance, SQLite synchronous=NORMAL",
            "≥ 800/s",
            change_and_advance_row("normal", 800),
        ),
        ("Clock sweep over all open steps", "≤ 10 s at 100k", sweep_row),
    ]
    lines = [
        "# Benchmarks",
        "",
        'Written by `make bench` (`bench/suite.py`; sizes: `make bench PEOPLE="10000 100000"`),',
        "which then runs the write path's measures for this commit and the one before it in the",
        "same run (`bench/compare.py`, the sections labelled before/after; another base:",
        "`make bench BASE=1a2b3c4`).",
        "Plain timers in child processes on scratch databases; peak RSS is the high-water mark of",
        "the child process that took the measurement (reads share one process).",
        f"Assembled {datetime.now(UTC).isoformat(timespec='minutes')}.",
        "",
        "## Runs",
        "",
        markdown_table(
            ["size · backend", "started (UTC)", "finished", "CPUs", "load avg at start", "python"],
            [
                [
                    label(d),
                    d["started"],
                    d.get("finished", "not finished"),
                    d["machine"]["cpus"],
                    str(d["machine"]["loadavg_at_start"]),
                    d["machine"]["python"],
                ]
                for d in found
            ],
        ),
        "",
        f"Machine: {cpu_model()}, {found[0]['machine']['cpus']} CPUs; Prefect "
        f"{found[0]['machine']['prefect']}, SQLAlchemy {found[0]['machine']['sqlalchemy']} "
        "(bench/_harness.py `machine()`). Load average is the 1/5/15-minute average when each "
        "run started; it counts the suite's own processes too (the loader's second process, "
        "PostgreSQL, the scratch Prefect server). Whether anything else ran is in the notes.",
        "",
    ]
    header = ["size · backend", "value", "verdict", "peak RSS MiB"]
    for name, target, row in measures:
        rows = []
        for d in found:
            value, ok, rss = row(d)
            rows.append([label(d), value, verdict(ok), rss])
        lines += [f"## {name}", "", f"Target: {target}", "", markdown_table(header, rows), ""]
        if name.startswith("Demo load"):
            lines += [
                "At 10,000 the target is read as the same rate (≥ 1,667 newcomers/s); the "
                "seconds include migrating the empty database.",
                "",
            ]
        if name.startswith("Partner queue"):
            lines += [
                f"Each partner organisation with offered or accepted handoffs, {QUEUE_RUNS} runs "
                f"each, as {CASE_MANAGER} (default filter: offered + accepted, 50 rows). "
                "The verdict is on the worst organisation's p95 (the pooled p95 is shown "
                "too). The first view of a page writes its access log rows.",
                "",
            ]
        if name.startswith("Clock sweep"):
            lines += [
                "One `clock_sweep` flow run in-process against a scratch Prefect server on "
                "SQLite (bench/sweep.py's `sweep_once`); at 10,000 the 100k target is applied "
                "as it is.",
                "",
            ]
        if name.startswith("Step completions"):
            lines += [
                "A single process (one core), one `db.transaction()` per `complete_step` on "
                "random open steps, for about 10 s; the figure is completions per wall second.",
                "",
            ]
    # Dashboard pages.
    lines += ["## Each dashboard page's render under AppTest", "", "Target: ≤ 2 s", ""]
    rows = []
    for d in found:
        dash = d.get("dashboard") or {}
        if not dash.get("pages"):
            reason = dash.get("skipped") or dash.get("error") or "not run"
            rows.append([label(d), "–", reason, "–", "–", "–", dash.get("peak_rss_mib")])
            continue
        for p in dash["pages"]:
            if "first_s" not in p:
                rows.append([label(d), p["page"], p["role"], "–", "–", "ERROR", None])
                continue
            worst = max(p["first_s"], p["warm_p95_s"], p["cache_cleared_p95_s"])
            ok = worst <= 2 and not p["errors"]
            rows.append(
                [
                    label(d),
                    p["page"],
                    p["role"],
                    f"{p['first_s']:.2f}",
                    f"{p['cache_cleared_p50_s']:.2f}",
                    verdict(ok) + (" (errors)" if p["errors"] else ""),
                    dash.get("peak_rss_mib"),
                ]
            )
    lines += [
        markdown_table(
            [
                "size · backend",
                "page",
                "role",
                "first render s",
                "caches cleared s",
                "verdict",
                "peak RSS MiB",
            ],
            rows,
        ),
        "",
        "The verdict takes the slowest of the first render, the warm p95 and the p95 with the "
        "data caches cleared (bench/dashboard_pages.py's `measure`, run in the suite's child).",
        "",
        *slow_pages(found),
        *browser_pages(),
        *import_runs(),
        *change_advance_runs(),
        *prefect_advance(),
    ]
    misses = []
    for name, _target, row in measures:
        for d in found:
            _value, ok, _rss = row(d)
            if ok is False:
                misses.append(f"- {name}: {label(d)}")
    if misses:
        lines += ["## Missed targets", "", *misses, ""]
    if NOTES.exists():
        lines += [NOTES.read_text().strip(), ""]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {DOC}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--backend", choices=BACKENDS, nargs="+", default=list(BACKENDS))
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--batch-size", type=int, default=2000, help="the sweep's batch size")
    parser.add_argument("--completion-seconds", type=float, default=COMPLETION_SECONDS)
    parser.add_argument("--dashboard-runs", type=int, default=1)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["sweep", "dashboard"], help="leave these out"
    )
    parser.add_argument("--doc-only", action="store_true", help="only rewrite the document")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = parser.parse_args()
    if not args.doc_only:
        for people in args.people:
            for backend in args.backend:
                try:
                    run_one(people, backend, args)
                except Exception:
                    traceback.print_exc()
                write_doc()
    write_doc()


if __name__ == "__main__":
    main()
