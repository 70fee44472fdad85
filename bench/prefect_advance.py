"""Per-case cost of advancing a freshly opened case through Prefect, against the direct service."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

from _harness import (
    BIN,
    PrefectServer,
    machine,
    markdown_table,
    peak_rss_mib,
    scratch_dir,
    stop,
    summary,
    wait_for,
)

MODES = ["direct", "flow", "deployment", "concurrent", "burst", "batch"]
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
PARTNERS = ["stadt-bochum", "ihk-mr", "afa-bochum", "vbw", "akafoe", "thga", "hwk-do"]
# One profile per pathway: skilled worker, EU citizen, student.
PROFILES = [("NG", "work"), ("PL", "work"), ("IN", "study")]


def build_template(path: Path, cases: int) -> list[str]:
    """A migrated SQLite tracker with ``cases`` freshly opened (not yet advanced) cases."""
    from tracker.access import actor_for
    from tracker.db import Database
    from tracker.demo import ensure_demo_users
    from tracker.enums import ConsentMethod, Purpose
    from tracker.migrate import upgrade
    from tracker.schemas import NewcomerIn
    from tracker.services import give_consent, open_case, register_newcomer
    from tracker.services.admin import seed_organisations

    url = f"sqlite:///{path}"
    upgrade(url)
    db = Database(url)
    with db.transaction() as session:
        seed_organisations(session)
        ensure_demo_users(session)
    with db.read() as session:
        manager = actor_for(session, "cm.mueller")
    refs = []
    for i in range(cases):
        nationality, purpose = PROFILES[i % len(PROFILES)]
        data = NewcomerIn(
            given_name="Bench",
            family_name=f"Case {i}",
            nationality=nationality,
            purpose=Purpose(purpose),
        )
        with db.transaction() as session:
            person = register_newcomer(session, actor=manager, data=data)
            ref = open_case(session, actor=manager, newcomer_id=person.id).reference
            for org in PARTNERS:
                give_consent(
                    session,
                    actor=manager,
                    reference=ref,
                    organisation=org,
                    method=ConsentMethod.signed_form,
                    notice_language="en",
                )
        refs.append(ref)
    db.dispose()
    with sqlite3.connect(path) as conn:  # fold the WAL in, so a plain copy is complete
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return refs


def fresh_tracker(root: Path, template: Path, mode: str) -> Any:
    """Copy the template for one mode and point this process's tracker settings at it."""
    from tracker.config import get_settings
    from tracker.db import get_database

    path = root / f"tracker-{mode}.db"
    shutil.copy(template, path)
    os.environ["ONBOARDING_DATABASE_URL"] = f"sqlite:///{path}"
    get_settings.cache_clear()
    get_database.cache_clear()
    return get_database()


def awaiting(db: Any) -> int:
    """Open cases still waiting for their advance."""
    from sqlalchemy import func, select

    from tracker.models import Case

    with db.read() as session:
        query = select(func.count()).where(Case.advance_requested_at.is_not(None))
        return int(session.scalar(query.select_from(Case)) or 0)


def timed(refs: list[str], call: Callable[[str], Any]) -> tuple[list[float], float, list[Any]]:
    """Call once per case, one after another; per-case ms, wall seconds, and what came back."""
    times, outcomes = [], []
    started = time.perf_counter()
    for ref in refs:
        t0 = time.perf_counter()
        try:
            outcomes.append(call(ref))
        except Exception as exc:  # count it, keep going
            outcomes.append(exc)
        times.append((time.perf_counter() - t0) * 1000)
    return times, time.perf_counter() - started, outcomes


def result(
    times: list[float], wall: float, cases: int, failures: int, **extra: Any
) -> dict[str, Any]:
    return {
        **summary(times),
        "wall_s": round(wall, 2),
        "wall_ms_per_case": round(wall * 1000 / cases, 1),
        "cases_per_s": round(cases / wall, 2),
        "failures": failures,
        **extra,
    }


def run_direct(db: Any, refs: list[str]) -> dict[str, Any]:
    from tracker.access import system_actor
    from tracker.services import advance_case

    actor = system_actor("bench")

    def advance(ref: str) -> None:
        with db.transaction() as session:
            advance_case(session, actor=actor, reference=ref)

    times, wall, outcomes = timed(refs, advance)
    failures = sum(isinstance(o, Exception) for o in outcomes)
    return result(times, wall, len(refs), failures)


def run_flow(db: Any, refs: list[str], server: PrefectServer) -> dict[str, Any]:
    from flows.journey import advance_journey

    times, wall, outcomes = timed(refs, lambda ref: asyncio.run(advance_journey(reference=ref)))
    failures = sum(isinstance(o, Exception) for o in outcomes)
    runs = runs_named(server, [f"advance {ref}" for ref in refs])
    return result(times, wall, len(refs), failures, **recorded(server, runs))


def runs_named(server: PrefectServer, names: list[str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for start in range(0, len(names), 200):
        chunk = names[start : start + 200]
        runs += server.post(
            "/flow_runs/filter", {"flow_runs": {"name": {"any_": chunk}}, "limit": 200}
        )
    return runs


def recorded(server: PrefectServer, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the server holds for these runs: their states and how many task runs."""
    ids = [r["id"] for r in runs]
    return {
        "flow_runs_recorded": len(runs),
        "flow_run_states": dict(Counter(r["state_type"] for r in runs)),
        "task_runs_recorded": server.task_run_count(ids) if ids else 0,
    }


def server_latency(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency as the server saw it: created -> finished, and the run itself (start -> end)."""

    def at(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    total, running = [], []
    for run in runs:
        created, start, end = at(run["created"]), at(run["start_time"]), at(run["end_time"])
        if created and end:
            total.append((end - created).total_seconds() * 1000)
        if start and end:
            running.append((end - start).total_seconds() * 1000)
    return {
        "created_to_end": summary(total) if total else None,
        "start_to_end": summary(running) if running else None,
    }


def serving(root: Path, server: PrefectServer, mode: str) -> subprocess.Popen[bytes]:
    """Start `onboarding-flows serve` on this mode's tracker and wait until it polls."""
    env = {
        **os.environ,
        # Keep the scheduled flows out of the measurement: no sweep catching these cases up,
        # no delivery run in the middle.
        "ONBOARDING_CATCH_UP_GRACE_SECONDS": str(10**9),
        "ONBOARDING_SWEEP_INTERVAL_MINUTES": str(60 * 24 * 365),
        "ONBOARDING_DELIVERY_INTERVAL_SECONDS": str(3600 * 24 * 365),
    }
    started = datetime.now().astimezone()
    proc = subprocess.Popen(
        [str(BIN / "onboarding-flows"), "serve"],
        env=env,
        stdout=(root / f"serve-{mode}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )

    def polling() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"onboarding-flows serve exited; see {root}/serve-{mode}.log")
        found = server.post(
            "/deployments/filter", {"deployments": {"name": {"any_": ["advance-journey"]}}}
        )
        polled = found[0].get("last_polled") if found else None
        return bool(polled) and datetime.fromisoformat(polled) > started

    wait_for(polling, 180, "the serving process to poll")
    return proc


def run_deployment_mode(
    root: Path, db: Any, refs: list[str], server: PrefectServer, mode: str, concurrency: int
) -> dict[str, Any]:
    from tracker.orchestration import request_advance

    proc = serving(root, server, mode)
    try:

        def ask(ref: str) -> tuple[float, Any]:
            t0 = time.perf_counter()
            try:
                outcome: Any = request_advance([ref], wait=60, db=db)
            except Exception as exc:
                outcome = exc
            return (time.perf_counter() - t0) * 1000, outcome

        started = time.perf_counter()
        if concurrency == 1:
            done = [ask(ref) for ref in refs]
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                done = list(pool.map(ask, refs))
        wall = time.perf_counter() - started
        outcomes = [o for _, o in done]
        ids = [i for o in outcomes if not isinstance(o, Exception) for i in o.flow_run_ids]
        # A request is answered once the case has moved; the run reports its own end a moment
        # later. Stopping the serving process before that would cancel the last run.
        wait_for(
            lambda: all(r["state_type"] in FINAL for r in server.flow_runs(ids)),
            120,
            "the flow runs to report their end",
        )
    finally:
        serve_rss = peak_rss_mib(proc.pid)
        stop(proc)
    times = [t for t, _ in done]
    states = Counter(type(o).__name__ if isinstance(o, Exception) else o.state for o in outcomes)
    runs = server.flow_runs(ids)
    return result(
        times,
        wall,
        len(refs),
        len(refs) - states.get("completed", 0),
        concurrency=concurrency,
        request_states=dict(states),
        server=server_latency(runs),
        serve_peak_rss_mib=serve_rss,
        **recorded(server, runs),
    )


def run_burst(
    root: Path, db: Any, refs: list[str], server: PrefectServer, mode: str
) -> dict[str, Any]:
    """Every case's deployment run created at once (as request_advance names and tags them),
    then waited for: what the serving process gets through when nobody polls slowly."""
    from prefect.deployments import run_deployment

    from tracker import queries
    from tracker.orchestration import ADVANCE_DEPLOYMENT

    proc = serving(root, server, mode)
    try:
        started = time.perf_counter()
        ids, refused = [], Counter[str]()
        for ref in refs:
            with db.read() as session:
                tags = queries.case_tags(session, reference=ref)
            try:
                run = run_deployment(
                    ADVANCE_DEPLOYMENT,
                    parameters={"reference": ref},
                    flow_run_name=f"advance {ref}",
                    tags=tags,
                    timeout=0,
                    as_subflow=False,
                )
            except Exception as exc:  # e.g. HTTP 503 from a busy SQLite-backed server
                refused[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
                continue
            ids.append(str(run.id))
        submitted = time.perf_counter() - started

        def finished() -> bool:
            runs = server.flow_runs(ids)
            return all(r["state_type"] in FINAL for r in runs)

        wait_for(finished, 1800, "the burst of deployment runs")
        wall = time.perf_counter() - started
    finally:
        serve_rss = peak_rss_mib(proc.pid)
        stop(proc)
    runs = server.flow_runs(ids)
    latency = server_latency(runs)
    failures = sum(r["state_type"] != "COMPLETED" for r in runs) + sum(refused.values())
    return {
        **(latency["created_to_end"] or {}),
        "wall_s": round(wall, 2),
        "wall_ms_per_case": round(wall * 1000 / len(refs), 1),
        "cases_per_s": round(len(refs) / wall, 2),
        "failures": failures,
        "submit_s": round(submitted, 2),
        "refused_at_submit": dict(refused),
        "server": latency,
        "serve_peak_rss_mib": serve_rss,
        **recorded(server, runs),
    }


def run_batch(db: Any, refs: list[str], server: PrefectServer) -> dict[str, Any]:
    from flows.journey import advance_cases

    started = time.perf_counter()
    totals = asyncio.run(advance_cases(references=refs))
    wall = time.perf_counter() - started
    runs = runs_named(server, [f"advance {len(refs)} cases"])
    return {
        "wall_s": round(wall, 2),
        "wall_ms_per_case": round(wall * 1000 / len(refs), 1),
        "cases_per_s": round(len(refs) / wall, 2),
        "failures": totals["failed"],
        "totals": totals,
        **recorded(server, runs),
    }


def run_mode(
    mode: str, root: Path, db: Any, refs: list[str], server: PrefectServer, concurrency: int
) -> dict[str, Any]:
    if mode == "direct":
        return run_direct(db, refs)
    if mode == "flow":
        return run_flow(db, refs, server)
    if mode == "batch":
        return run_batch(db, refs, server)
    if mode == "burst":
        return run_burst(root, db, refs, server, mode)
    width = concurrency if mode == "concurrent" else 1
    return run_deployment_mode(root, db, refs, server, mode, width)


def save(path: Path | None, results: dict[str, Any]) -> None:
    """Write the results so far (after every mode, so a later failure loses nothing)."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def report(results: dict[str, Any]) -> str:
    modes = results["modes"]
    direct = modes.get("direct", {})
    base_p50, base_mean = direct.get("p50_ms"), direct.get("mean_ms")

    def added(value: float | None, base: float | None) -> float | None:
        return round(value - base, 1) if value is not None and base is not None else None

    labels = {
        "direct": "1 direct `advance_case`",
        "flow": "2 in-process `advance_journey`",
        "deployment": "3 deployment, `request_advance`, 1 at a time",
        "concurrent": "3 deployment, `request_advance`, {c} at once",
        "burst": "3 deployment, all runs created at once (serve limit 4)",
        "batch": "4 `advance_cases` batch flow",
    }
    rows: list[list[object]] = []
    for mode in MODES:
        m = modes.get(mode)
        if m is None or "error" in m:
            continue
        label = labels[mode].format(c=m.get("concurrency"))
        rows.append(
            [
                label,
                m.get("p50_ms"),
                m.get("p95_ms"),
                m["wall_ms_per_case"],
                m["cases_per_s"],
                added(m.get("p50_ms"), base_p50),
                added(m["wall_ms_per_case"], base_mean),
                m["failures"],
            ]
        )
        server = m.get("server") or {}
        spans = [("created_to_end", "created → completed"), ("start_to_end", "running → completed")]
        if mode == "burst":
            spans = spans[1:]  # the row above is already created -> completed
        for key, what in spans:
            s = server.get(key)
            if s:
                row = [f"  ↳ same runs, server: {what}", s["p50_ms"], s["p95_ms"]]
                rows.append([*row, None, None, added(s["p50_ms"], base_p50), None, None])
    header = [
        "mode",
        "p50 ms",
        "p95 ms",
        "wall ms/case",
        "cases/s",
        "added p50 ms",
        "added wall ms/case",
        "failures",
    ]
    title = (
        f"Prefect server on **{results['backend']}**, {results['cases']} cases per mode, "
        f"tracker on SQLite (server started in {results['server_startup_s']} s)"
    )
    notes = []
    for mode in ("flow", "deployment", "concurrent", "burst", "batch"):
        m = modes.get(mode)
        if m and "error" in m:
            notes.append(f"- {mode}: did not finish: {m['error']}")
        elif m:
            notes.append(
                f"- {mode}: server recorded {m['flow_runs_recorded']} flow runs "
                f"{m['flow_run_states']} and {m['task_runs_recorded']} task runs"
            )
    return "\n".join([title, "", markdown_table(header, rows), "", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")

    with scratch_dir(args.keep) as root:
        server = PrefectServer(root, args.backend)
        # Before anything imports Prefect or reads the tracker settings.
        os.environ.update(server.client_env())
        os.environ.update(
            {
                "ONBOARDING_DATA_DIR": str(root / "data"),
                "ONBOARDING_ORCHESTRATION": "prefect",
                "ONBOARDING_PREFECT_API_URL": server.api,
            }
        )
        template = root / "template.db"
        t0 = time.perf_counter()
        refs = build_template(template, args.cases)
        print(f"opened {len(refs)} cases in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        results: dict[str, Any] = {
            "backend": args.backend,
            "cases": args.cases,
            "tracker": "sqlite",
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(),
            "runner_poll_frequency_s": None,
            "modes": {},
        }
        with server.running():
            results["server_startup_s"] = round(server.startup_seconds, 1)
            for mode in modes:
                db = fresh_tracker(root, template, mode)
                before = awaiting(db)
                print(f"{mode}: {before} cases to advance …", file=sys.stderr)
                try:
                    outcome = run_mode(mode, root, db, refs, server, args.concurrency)
                except Exception as exc:  # keep the other modes' figures
                    outcome = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                outcome["awaiting_before"], outcome["awaiting_after"] = before, awaiting(db)
                outcome["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
                results["modes"][mode] = outcome
                print(f"{mode}: {json.dumps(outcome)}", file=sys.stderr)
                db.dispose()
                save(args.out, results)
            results["server_peak_rss_mib"] = server.peak_rss_mib()
        from tracker.config import get_settings, prefect_environment

        results["runner_poll_frequency_s"] = float(
            os.environ.get("PREFECT_RUNNER_POLL_FREQUENCY")
            or prefect_environment(get_settings())["PREFECT_RUNNER_POLL_FREQUENCY"]
        )
        results["finished"] = datetime.now().astimezone().isoformat(timespec="seconds")
        results["markdown"] = report(results)
        print(results["markdown"])
        save(args.out, results)


if __name__ == "__main__":
    main()
