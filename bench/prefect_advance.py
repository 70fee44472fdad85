"""Click to next step open: a case's advance as a Prefect background task, against the former
per-event deployment run, end to end through a real `prefect server start` and real workers.

Each "change" is a step recorded as done (committed), after which the advance is asked for;
the clock runs from the request to the moment the next step is open in the tracker database
(polled every 15 ms), one change at a time. Modes, in this order, on one Prefect server:

- direct: ``advance_now`` in this process (the floor: the advance's own transaction);
- background: ``request_advance([ref])`` (``.delay()``), run by ``onboarding-flows tasks``;
- former: the per-event deployment run the product used before the background task, reconstructed in
  bench/background_advance.py and served with ``PREFECT_RUNNER_POLL_FREQUENCY=2``;
- onecert: background again, with ``PREFECT_API_SSL_CERT_FILE`` a one-certificate PEM in the
  caller and the worker (a proposed setting; see docs/background-tasks-probe.md);
- profile: background again on a worker with a stack sampler (its timings are not comparable);
- burst1 / burst2: ``--burst`` changes at once from 4 threads, 1 or 2 task workers;
- batch: the ``advance_cases`` flow in this process, for many cases at once;
- dashboard: the case page's Save in headless Chromium (``streamlit run``), with Prefect and
  inline.

    .venv/bin/python bench/prefect_advance.py [--backend sqlite postgresql] [--cases 50]

writes bench/results/prefect_advance_<backend>.json (read by bench/suite.py for the document).
The tracker is on SQLite; the Prefect server on SQLite or on a scratch PostgreSQL database.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _harness import (
    PrefectServer,
    machine,
    peak_rss_mib,
    scratch_dir,
    stop,
    summary,
    wait_for,
)
from background_advance import TARGET_P50_MS, TARGET_P95_MS, TARGET_SPEEDUP

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODES = ["direct", "background", "former", "onecert", "profile", "burst1", "burst2", "batch"]
MODES += ["dashboard"]
POLL_S = 0.015
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
PARTNERS = ["stadt-bochum", "ihk-mr", "afa-bochum", "vbw", "akafoe", "thga", "hwk-do"]
# One profile per pathway: skilled worker, EU citizen, student.
PROFILES = [("NG", "work"), ("PL", "work"), ("IN", "study")]
MANAGER = "cm.mueller"
RETRYABLE = "Encountered retryable exception in request"  # one server log line per 503


@dataclass
class Move:
    """One change: record ``done`` as done; the advance then opens ``opens``."""

    reference: str
    done: str
    opens: list[str]


# --- the tracker -----------------------------------------------------------------------------


def build_tracker(path: Path, count: int) -> list[Move]:
    """A migrated SQLite tracker with ``count`` advanced cases, each with a step whose
    completion opens another."""
    from tracker.access import actor_for
    from tracker.admin.organisations import seed_organisations
    from tracker.db import Database
    from tracker.demo.people import ensure_demo_users
    from tracker.enums import ConsentMethod, Purpose
    from tracker.journeys.advance import advance_case
    from tracker.journeys.cases import open_case, register_newcomer
    from tracker.journeys.consent import give_consent
    from tracker.migrate import upgrade
    from tracker.schemas import NewcomerIn

    url = f"sqlite:///{path}"
    upgrade(url)
    db = Database(url)
    with db.transaction() as session:
        seed_organisations(session)
        ensure_demo_users(session)
    with db.read() as session:
        manager = actor_for(session, MANAGER)
    moves = []
    for i in range(count):
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
            with db.transaction() as session:
                give_consent(
                    session,
                    actor=manager,
                    reference=ref,
                    organisation=org,
                    method=ConsentMethod.signed_form,
                    notice_language="en",
                )
        for _ in range(5):  # e.g. a visa needs both recognition and a job offer: do one first
            with db.transaction() as session:
                advance_case(session, actor=manager, reference=ref)
                move = next_move(session, ref)
            if move.opens:
                break
            complete(db, move)
        moves.append(move)
    db.dispose()
    with sqlite3.connect(path) as conn:  # fold the WAL in
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return moves


def next_move(session: Any, ref: str) -> Move:
    """The first open step whose completion makes a pending step ready (or, if none would,
    the first open step, with nothing to open)."""
    from tracker.enums import FINISHED_STEP_STATES, StepState
    from tracker.journeys.advance import prerequisites_met
    from tracker.records import get_case

    case = get_case(session, ref)
    finished = {s.key for s in case.steps if s.state in FINISHED_STEP_STATES}
    for step in sorted(case.steps, key=lambda s: s.position):
        if step.state not in (StepState.open, StepState.in_progress):
            continue
        opens = [
            p.key
            for p in sorted(case.steps, key=lambda s: s.position)
            if p.state == StepState.pending and prerequisites_met(p.needs, finished | {step.key})
        ]
        if opens:
            return Move(ref, step.key, opens)
    workable = [s for s in case.steps if s.state in (StepState.open, StepState.in_progress)]
    if not workable:
        raise RuntimeError(f"{ref}: no step open")
    return Move(ref, min(workable, key=lambda s: s.position).key, [])  # opens nothing yet


def complete(db: Any, move: Move) -> None:
    """The change: the case manager records the step as done (committed here)."""
    from tracker.access import actor_for
    from tracker.journeys.steps import complete_step

    with db.transaction() as session:
        actor = actor_for(session, MANAGER)
        complete_step(session, actor=actor, reference=move.reference, step_key=move.done)


def step_states(db: Any, moves: list[Move]) -> dict[str, str]:
    """The state of each move's first step to open, by reference."""
    from sqlalchemy import select

    from tracker.models import Case, Step

    wanted = {m.reference: m.opens[0] for m in moves}
    with db.read() as session:
        rows = session.execute(
            select(Case.reference, Step.key, Step.state)
            .join(Step, Step.case_id == Case.id)
            .where(Case.reference.in_(list(wanted)), Step.key.in_(set(wanted.values())))
        ).all()
    return {ref: str(state) for ref, key, state in rows if wanted[ref] == key}


def until_open(db: Any, move: Move, timeout: float = 30) -> float | None:
    """perf_counter() when the move's next step is open, polled every POLL_S; None if never."""
    from sqlalchemy import select

    from tracker.models import Case, Step

    query = (
        select(Step.state)
        .join(Case, Step.case_id == Case.id)
        .where(Case.reference == move.reference, Step.key == move.opens[0])
    )
    deadline = time.perf_counter() + timeout
    with db.reader.connect() as conn:
        while time.perf_counter() < deadline:
            if str(conn.execute(query).scalar_one()) != "pending":
                return time.perf_counter()
            conn.rollback()  # a fresh snapshot each time
            time.sleep(POLL_S)
    return None


def opened_at(db: Any, moves: list[Move]) -> dict[str, datetime]:
    """When each move's next step opened, by the advance's own clock (its transaction's now)."""
    from sqlalchemy import select

    from tracker.models import Case, Step

    wanted = {m.reference: m.opens[0] for m in moves}
    with db.read() as session:
        rows = session.execute(
            select(Case.reference, Step.key, Step.opened_at)
            .join(Step, Step.case_id == Case.id)
            .where(Case.reference.in_(list(wanted)))
        ).all()
    return {ref: at for ref, key, at in rows if wanted[ref] == key and at is not None}


def audit_check(db: Any, moves: list[Move]) -> dict[str, Any]:
    """Was each case advanced once: every step opened at most once (by its audit events),
    the awaited step open, and no advance request left."""
    from sqlalchemy import func, select

    from tracker.models import AuditEvent, Case

    refs = [m.reference for m in moves]
    with db.read() as session:
        ids = dict(
            session.execute(select(Case.reference, Case.id).where(Case.reference.in_(refs))).all()
        )
        per_step = session.execute(
            select(AuditEvent.entity_id, func.count())
            .where(AuditEvent.action == "step.opened", AuditEvent.case_id.in_(list(ids.values())))
            .group_by(AuditEvent.entity_id)
        ).all()
        waiting = session.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.reference.in_(refs), Case.advance_requested_at.is_not(None))
        )
    states = step_states(db, moves)
    return {
        "cases": len(refs),
        "next_step_open": sum(states.get(r) not in (None, "pending") for r in refs),
        "steps_opened_twice": sum(n > 1 for _, n in per_step),
        "step_opened_events": sum(n for _, n in per_step),
        "advance_requests_left": int(waiting or 0),
    }


# --- one change at a time --------------------------------------------------------------------


def one_by_one(
    db: Any, moves: list[Move], ask: Callable[[str], str | None], state_url: str | None
) -> list[dict[str, Any]]:
    """Per move: commit the change, ask for the advance (timed: the caller's wait), poll the
    tracker until the next step is open; then poll Prefect until the run's end is recorded."""
    import httpx

    rows = []
    with httpx.Client(timeout=5) as client:
        for move in moves:
            complete(db, move)
            wall0, t0 = time.time(), time.perf_counter()
            run_id, error = None, None
            try:
                run_id = ask(move.reference)
            except Exception as exc:  # counted, and the next case goes on
                error = f"{type(exc).__name__}: {str(exc)[:160]}"
            t1 = time.perf_counter()
            t2 = until_open(db, move)
            t3 = None
            if run_id and state_url:
                deadline = time.perf_counter() + 60
                while time.perf_counter() < deadline:
                    got = client.get(f"{state_url}/{run_id}")
                    if got.status_code == 200 and got.json().get("state_type") in FINAL:
                        t3 = time.perf_counter()
                        break
                    time.sleep(0.02)
            rows.append(
                {
                    "reference": move.reference,
                    "run_id": run_id,
                    "error": error,
                    "wall0": wall0,
                    "caller_ms": (t1 - t0) * 1000,
                    "open_ms": (t2 - t0) * 1000 if t2 else None,
                    "recorded_ms": (t3 - t0) * 1000 if t3 else None,
                }
            )
    return rows


def ms(later: datetime | None, earlier: datetime | None) -> float | None:
    return (later - earlier).total_seconds() * 1000 if later and earlier else None


def spans(
    rows: list[dict[str, Any]], runs: dict[str, dict[str, Any]], opened: dict[str, datetime]
) -> dict[str, Any]:
    """Where each case's time went, by the timestamps the server, the worker and the tracker
    recorded (one clock: everything runs on this machine)."""

    def at(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    parts: dict[str, list[float]] = {}
    for row in rows:
        run = runs.get(row["run_id"] or "", {})
        asked = datetime.fromtimestamp(row["wall0"], UTC)
        created, start, end = (
            at(run.get("created")),
            at(run.get("start_time")),
            at(run.get("end_time")),
        )
        step = opened.get(row["reference"])
        seen = asked.timestamp() * 1000 + row["open_ms"] if row["open_ms"] else None
        recorded = asked.timestamp() * 1000 + row["recorded_ms"] if row["recorded_ms"] else None
        for name, value in (
            ("request → run created (server)", ms(created, asked)),
            ("run created → running (worker)", ms(start, created)),
            ("running → advance's transaction began", ms(step, start)),
            (
                "advance began → step seen open (commit + poll)",
                seen - step.timestamp() * 1000 if seen and step else None,
            ),
            (
                "run ended (worker) → end recorded by the API",
                recorded - end.timestamp() * 1000 if recorded and end else None,
            ),
        ):
            if value is not None:
                parts.setdefault(name, []).append(value)
    return {name: summary(values) for name, values in parts.items()}


def sequential(
    db: Any, moves: list[Move], ask: Callable[[str], str | None], server: PrefectServer, kind: str
) -> dict[str, Any]:
    """One change at a time through ``ask``; ``kind`` is "task_runs", "flow_runs" or ""."""
    load_before = round(os.getloadavg()[0], 2)
    retryable = server.log_count(RETRYABLE)
    url = f"{server.api}/{kind}" if kind else None
    started = time.perf_counter()
    rows = one_by_one(db, moves, ask, url)
    wall = time.perf_counter() - started
    ids = [r["run_id"] for r in rows if r["run_id"]]
    runs = (
        {
            r["id"]: r
            for r in server.post(f"/{kind}/filter", {kind: {"id": {"any_": ids}}, "limit": 200})
        }
        if ids
        else {}
    )
    opens = [r["open_ms"] for r in rows if r["open_ms"] is not None]
    recorded = [r["recorded_ms"] for r in rows if r["recorded_ms"] is not None]
    return {
        "n": len(rows),
        "open": summary(opens) if opens else None,
        "caller": summary([r["caller_ms"] for r in rows]),
        "recorded": summary(recorded) if recorded else None,
        "not_opened": sum(r["open_ms"] is None for r in rows),
        "errors": Counter(r["error"] for r in rows if r["error"]),
        "run_states": Counter(r.get("state_type") for r in runs.values()),
        "spans": spans(rows, runs, opened_at(db, moves)),
        "server_503": server.log_count(RETRYABLE) - retryable,
        "wall_s": round(wall, 1),
        "loadavg_1m": [load_before, round(os.getloadavg()[0], 2)],
    }


def background_ask(db: Any) -> Callable[[str], str | None]:
    from tracker.journeys.orchestration import request_advance

    def ask(ref: str) -> str | None:
        outcome = request_advance([ref], db=db)
        if outcome.state != "scheduled":
            raise RuntimeError(f"{outcome.state}: {outcome.message}")
        return outcome.run_ids[0]

    return ask


# --- a burst ---------------------------------------------------------------------------------


def run_burst(
    root: Path, db: Any, moves: list[Move], server: PrefectServer, workers: int, threads: int = 4
) -> dict[str, Any]:
    """All ``moves`` at once from ``threads`` threads (each: commit the change, request the
    advance), served by ``workers`` task workers; then what the tracker and Prefect hold."""
    from background_advance import start_workers

    from tracker.journeys.orchestration import request_advance

    procs = start_workers(root, server, workers, f"burst{workers}")
    retryable = server.log_count(RETRYABLE)
    load_before = round(os.getloadavg()[0], 2)
    try:
        started = time.perf_counter()
        wall_start = time.time()

        def one(move: Move) -> dict[str, Any]:
            complete(db, move)
            wall0, t0 = time.time(), time.perf_counter()
            try:
                outcome = request_advance([move.reference], db=db)
                state, ids = outcome.state, outcome.run_ids
            except Exception as exc:
                state, ids = f"{type(exc).__name__}", []
            return {
                "reference": move.reference,
                "wall0": wall0,
                "caller_ms": (time.perf_counter() - t0) * 1000,
                "state": state,
                "run_ids": ids,
            }

        with ThreadPoolExecutor(max_workers=threads) as pool:
            asked = list(pool.map(one, moves))
        submitted = time.perf_counter() - started

        def all_open() -> bool:
            states = step_states(db, moves)
            return all(states.get(m.reference) not in (None, "pending") for m in moves)

        try:
            wait_for(all_open, 600, "the burst's advances", interval=0.05)
            done = time.perf_counter() - started
        except RuntimeError:
            done = None
        ids = [i for a in asked for i in a["run_ids"]]

        def ended() -> bool:
            runs = server.post(
                "/task_runs/filter", {"task_runs": {"id": {"any_": ids}}, "limit": 200}
            )
            return len(runs) == len(ids) and all(r["state_type"] in FINAL for r in runs)

        with suppress(RuntimeError):
            wait_for(ended, 120, "the burst's task runs to be recorded as ended")
        rss = [peak_rss_mib(p.pid) for p in procs]
    finally:
        for p in procs:
            stop(p)
    runs = (
        server.post("/task_runs/filter", {"task_runs": {"id": {"any_": ids}}, "limit": 200})
        if ids
        else []
    )
    opened = opened_at(db, moves)
    latency = [
        (opened[a["reference"]].timestamp() - a["wall0"]) * 1000
        for a in asked
        if a["reference"] in opened
    ]
    last_open = max(opened.values()).timestamp() - wall_start if opened else None
    return {
        "changes": len(moves),
        "task_workers": workers,
        "submitting_threads": threads,
        "refused": sum(a["state"] != "scheduled" for a in asked),
        "request_states": Counter(a["state"] for a in asked),
        "caller": summary([a["caller_ms"] for a in asked]),
        "submit_s": round(submitted, 2),
        "all_open_s": round(done, 2) if done else None,
        "last_opened_s": round(last_open, 2) if last_open else None,
        "advances_per_s": round(len(moves) / last_open, 1) if last_open else None,
        "request_to_open": summary(latency) if latency else None,
        "server_503": server.log_count(RETRYABLE) - retryable,
        "task_runs": len(runs),
        "task_run_states": Counter(r["state_type"] for r in runs),
        "runs_per_case": Counter(
            Counter(tag for r in runs for tag in r["tags"] if tag.startswith("case:")).values()
        ),
        "tracker": audit_check(db, moves),
        "worker_peak_rss_mib": rss,
        "loadavg_1m": [load_before, round(os.getloadavg()[0], 2)],
    }


# --- batch and dashboard ---------------------------------------------------------------------


def run_batch(db: Any, moves: list[Move]) -> dict[str, Any]:
    """Many changes, then one ``advance_cases`` flow run in this process for all of them."""
    import asyncio

    from flows.journey import advance_cases

    for move in moves:
        complete(db, move)
    started = time.perf_counter()
    totals = asyncio.run(advance_cases(references=[m.reference for m in moves]))
    wall = time.perf_counter() - started
    return {
        "cases": len(moves),
        "wall_s": round(wall, 2),
        "wall_ms_per_case": round(wall * 1000 / len(moves), 1),
        "totals": totals,
        "tracker": audit_check(db, moves),
    }


def run_dashboard(
    root: Path, db: Any, moves: list[Move], server: PrefectServer, saves: int
) -> dict[str, Any]:
    """The case page's Save: with Prefect (a task worker running) and inline."""
    from background_advance import dashboard_saves, start_workers

    batches = {"prefect": moves[:saves], "inline": moves[saves : 2 * saves]}
    out = dashboard_saves(
        root,
        {k: [(m.reference, m.done, m.opens[0]) for m in v] for k, v in batches.items() if v},
        worker=lambda: start_workers(root, server, 1, "dashboard"),
        username=MANAGER,
    )
    for orchestration, chosen in batches.items():
        if orchestration in out:
            out[orchestration]["tracker"] = audit_check(db, chosen)
    return out


# --- the run ---------------------------------------------------------------------------------


def plan(modes: list[str], cases: int, burst: int, saves: int) -> dict[str, int]:
    """How many fresh cases each mode uses."""
    sizes = {m: cases for m in modes if m in ("direct", "background", "former", "onecert")}
    sizes |= {m: cases for m in modes if m in ("profile", "batch")}
    for m in ("burst1", "burst2"):
        if m in modes:
            sizes[m] = burst
    if "dashboard" in modes:
        sizes["dashboard"] = 2 * saves
    return sizes


def run_backend(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    modes = args.modes
    sizes = plan(modes, args.cases, args.burst, args.saves)
    with scratch_dir(args.keep) as root:
        server = PrefectServer(root, backend, env={"PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true"})
        tracker_db = root / "tracker.db"
        os.environ.update(server.client_env())
        os.environ.update(
            {
                "ONBOARDING_DATA_DIR": str(root / "data"),
                "ONBOARDING_DATABASE_URL": f"sqlite:///{tracker_db}",
                "ONBOARDING_ORCHESTRATION": "prefect",
                "ONBOARDING_PREFECT_API_URL": server.api,
                "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            }
        )
        t0 = time.perf_counter()
        moves = build_tracker(tracker_db, sum(sizes.values()))
        log(f"{backend}: {len(moves)} cases ready in {time.perf_counter() - t0:.0f} s")
        slices, at = {}, 0
        for mode in modes:
            slices[mode] = moves[at : at + sizes[mode]]
            at += sizes[mode]
        from background_advance import one_cert_pem  # imports Prefect: after the settings

        pem = one_cert_pem(root)
        results: dict[str, Any] = {
            "backend": backend,
            "tracker": "sqlite",
            "cases": args.cases,
            "burst": args.burst,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "code": code_version(),
            "poll_ms": POLL_S * 1000,
            "targets": {
                "p50_ms": TARGET_P50_MS,
                "p95_ms": TARGET_P95_MS,
                "speedup": TARGET_SPEEDUP,
            },
            "modes": {},
        }
        from tracker.db import get_database

        db = get_database()
        with server.running():
            results["server_startup_s"] = round(server.startup_seconds, 1)
            for mode in modes:
                log(f"{backend}: {mode} ({len(slices[mode])} cases) …")
                try:
                    outcome = run_mode(mode, root, db, slices[mode], server, pem, args)
                except Exception as exc:  # keep the other modes' figures
                    outcome = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                results["modes"][mode] = outcome
                log(f"{backend}: {mode}: {json.dumps(outcome, default=str)[:1500]}")
                save(args, backend, results)
            results["server_peak_rss_mib"] = server.peak_rss_mib()
        db.dispose()
        results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        save(args, backend, results)
        return results


def run_mode(
    mode: str,
    root: Path,
    db: Any,
    moves: list[Move],
    server: PrefectServer,
    pem: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    if mode == "direct":
        from tracker.journeys.background import advance_now

        return sequential(db, moves, lambda ref: advance_now(ref) and None, server, "")
    from background_advance import start_former, start_workers

    if mode in ("background", "onecert", "profile"):
        env = {"PREFECT_API_SSL_CERT_FILE": str(pem)} if mode == "onecert" else None
        sampled = root / "worker-profile.txt" if mode == "profile" else None
        procs = start_workers(root, server, 1, mode, env=env, sampled=sampled)
        try:
            if mode == "onecert":
                from prefect.settings import PREFECT_API_SSL_CERT_FILE, temporary_settings

                with temporary_settings(updates={PREFECT_API_SSL_CERT_FILE: str(pem)}):
                    outcome = sequential(db, moves, background_ask(db), server, "task_runs")
            else:
                outcome = sequential(db, moves, background_ask(db), server, "task_runs")
            if mode == "background":
                from background_advance import caller_profile

                refs = [m.reference for m in moves]
                outcome["caller_profile"] = caller_profile(db, refs, server.api, pem)
            outcome["worker_peak_rss_mib"] = peak_rss_mib(procs[0].pid)
        finally:
            for p in procs:
                stop(p)
        if sampled:
            wait_for(sampled.exists, 30, "the worker's profile")
            text = sampled.read_text()
            (args.out / f"prefect_advance_{server.backend}_worker_profile.txt").write_text(text)
            outcome["worker_profile"] = text.splitlines()[:30]
        return outcome
    if mode == "former":
        from background_advance import former_request

        proc = start_former(root, server)
        try:
            outcome = sequential(
                db, moves, lambda ref: former_request(ref, db), server, "flow_runs"
            )
            outcome["serve_peak_rss_mib"] = peak_rss_mib(proc.pid)
        finally:
            stop(proc)
        return outcome
    if mode in ("burst1", "burst2"):
        return run_burst(root, db, moves, server, workers=int(mode[-1]))
    if mode == "batch":
        return run_batch(db, moves)
    if mode == "dashboard":
        return run_dashboard(root, db, moves, server, args.saves)
    raise ValueError(mode)


def code_version() -> str:
    """The commit measured: BENCH_CODE when run from an exported tree, else the checkout's."""
    if os.environ.get("BENCH_CODE"):
        return os.environ["BENCH_CODE"]
    done = subprocess.run(
        ["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def log(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def save(args: argparse.Namespace, backend: str, results: dict[str, Any]) -> None:
    """Write the results so far (after every mode, so a later failure loses nothing)."""
    path = args.out / f"prefect_advance_{backend}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def main() -> None:
    import signal

    # Stopped with SIGTERM, still stop the servers and workers and drop the scratch database.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument("--cases", type=int, default=50, help="changes per one-at-a-time mode")
    parser.add_argument("--burst", type=int, default=200, help="changes at once per burst")
    parser.add_argument("--saves", type=int, default=20, help="dashboard saves per orchestration")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON results")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = set(args.modes) - set(MODES)
    if unknown:
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    if len(args.backend) > 1:
        # Prefect reads its settings once per process: one child process per backend.
        for backend in args.backend:
            argv = [a for a in sys.argv[1:]]
            i = argv.index("--backend") if "--backend" in argv else None
            if i is not None:
                j = i + 1
                while j < len(argv) and not argv[j].startswith("--"):
                    j += 1
                del argv[i:j]
            subprocess.run([sys.executable, __file__, *argv, "--backend", backend], check=False)
        return
    run_backend(args, args.backend[0])


if __name__ == "__main__":
    main()
