"""Time one `clock_sweep` flow run over a large demo load, against a real Prefect server."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _harness import (
    PG_URL,
    PrefectServer,
    machine,
    markdown_table,
    scratch_dir,
    scratch_pg_database,
)


def load(url: str, people: int, seed: int, day: str) -> dict[str, Any]:
    """Migrate and load the demo data (in a child process, so its memory is not the sweep's)."""
    from tracker.db import Database
    from tracker.demo.load import load_demo
    from tracker.migrate import upgrade

    started = time.perf_counter()
    upgrade(url)
    db = Database(url)
    counts = load_demo(db, people=people, seed=seed, as_of=date.fromisoformat(day))
    db.dispose()
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "rows": counts,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


@contextmanager
def tracker_url(root: Path, backend: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{root / 'tracker.db'}"
        return
    with scratch_pg_database("tracker") as name:
        yield PG_URL.format(name=name)


def snapshot(db: Any, today: date, batch_size: int) -> dict[str, Any]:
    """What the sweep will look at: open cases, and the steps its batches walk through."""
    from sqlalchemy import func, select

    from tracker.config import get_settings
    from tracker.enums import ACTIVE_STEP_STATES, CaseStatus
    from tracker.models import Case, OutboxMessage, Step

    horizon = today + timedelta(days=get_settings().due_soon_days)
    with db.read() as s:
        candidates = s.scalar(
            select(func.count())
            .select_from(Step)
            .join(Case, Step.case_id == Case.id)
            .where(
                Step.state.in_(list(ACTIVE_STEP_STATES)),
                Step.due_date.is_not(None),
                Step.due_date <= horizon,
                Case.status == CaseStatus.open,
            )
        )
        return {
            "cases": s.scalar(select(func.count()).select_from(Case)),
            "open_cases": s.scalar(
                select(func.count()).select_from(Case).where(Case.status == CaseStatus.open)
            ),
            "steps": s.scalar(select(func.count()).select_from(Step)),
            "due_candidates": candidates,
            "expected_clock_batches": int(candidates or 0) // batch_size + 1,
            "outbox_max_id": s.scalar(select(func.max(OutboxMessage.id))) or 0,
        }


def new_messages(db: Any, after_id: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from tracker.models import OutboxMessage

    with db.read() as s:
        rows = s.execute(
            select(OutboxMessage.kind, func.count())
            .where(OutboxMessage.id > after_id)
            .group_by(OutboxMessage.kind)
        ).all()
    return dict(Counter({str(kind): int(n) for kind, n in rows}))


def mark_awaiting(db: Any, count: int) -> int:
    """Pretend Prefect was down: ``count`` open cases wait for an advance since yesterday."""
    from sqlalchemy import select, update

    from tracker.clocks import utcnow
    from tracker.enums import CaseStatus
    from tracker.models import Case

    with db.transaction() as s:
        ids = select(Case.id).where(Case.status == CaseStatus.open).order_by(Case.id).limit(count)
        done = s.execute(
            update(Case)
            .where(Case.id.in_(ids))
            .values(advance_requested_at=utcnow() - timedelta(days=1))
        )
        return int(done.rowcount)  # type: ignore[attr-defined]


def current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def sweep_once(server: PrefectServer, db: Any, day: str, batch_size: int) -> dict[str, Any]:
    from flows.clocks import clock_sweep

    today = date.fromisoformat(day)
    before = snapshot(db, today, batch_size)
    rss_before = current_rss_mib()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    outcome = asyncio.run(clock_sweep(day=day, batch_size=batch_size))
    seconds = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    runs = server.post(
        "/flow_runs/filter",
        {"flow_runs": {"name": {"any_": [f"clock sweep {day}"]}}, "sort": "START_TIME_DESC"},
    )
    run = runs[0]
    task_runs = server.task_run_count([run["id"]])  # waits for the task run recorder
    phases: Counter[str] = Counter()
    for task_run in server.post(
        "/task_runs/filter", {"flow_runs": {"id": {"any_": [run["id"]]}}, "limit": 200}
    ):
        phase = task_run["name"].split(" after ")[0]  # "clock batch after step N" -> one phase
        phases[phase] += round(task_run["total_run_time"] or 0.0, 2)
    batches = server.post(
        "/task_runs/count",
        {
            "flow_runs": {"id": {"any_": [run["id"]]}},
            "task_runs": {"name": {"like_": "clock batch"}},
        },
    )
    messages = new_messages(db, before["outbox_max_id"])
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds_this_process": round(
            (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 2
        ),
        "result": outcome,
        "flow_run_state": run["state_type"],
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
        "clock_batches": batches,
        "task_runs": task_runs,
        "task_seconds": {k: round(v, 2) for k, v in phases.items()},
        "messages": sum(messages.values()),
        "messages_by_kind": messages,
        "rss_before_mib": round(rss_before, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "before": before,
    }


def report(results: dict[str, Any]) -> str:
    rows = []
    for i, run in enumerate(results["runs"], 1):
        r = run["result"]
        rows.append(
            [
                f"{results['people']:,} on {results['tracker']} (run {i})",
                run["before"]["open_cases"],
                run["before"]["due_candidates"],
                run["seconds"],
                run["clock_batches"],
                run["task_runs"],
                r["caught_up"]["cases"],
                r["reminders"],
                r["escalations"],
                r["unanswered"],
                run["messages"],
                run["peak_rss_mib"],
                run["flow_run_state"],
            ]
        )
    header = [
        "sweep",
        "open cases",
        "steps due ≤ horizon",
        "total s",
        "clock batches",
        "task runs",
        "caught up",
        "reminders",
        "escalations",
        "unanswered handoffs",
        "outbox messages",
        "peak RSS MiB",
        "state",
    ]
    load_info = results["load"]
    lines = [
        f"`clock_sweep` in-process, Prefect server on {results['prefect_backend']}, tracker on "
        f"{results['tracker']}, demo as of {results['day']}, batch size {results['batch_size']}",
        "",
        markdown_table(header, rows),
        "",
        f"- demo load: {load_info['seconds']} s, peak RSS {load_info['peak_rss_mib']} MiB "
        f"(child process), rows {load_info['rows']}",
        *(
            f"- run {i}: seconds per phase (task runs) {run['task_seconds']}"
            for i, run in enumerate(results["runs"], 1)
        ),
        f"- sweeping process RSS before the first sweep: {results['runs'][0]['rss_before_mib']} "
        f"MiB; Prefect server peak RSS {results.get('server_peak_rss_mib')} MiB",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--tracker", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--prefect-backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=1, help="sweeps in a row (2nd: steady state)")
    parser.add_argument(
        "--catch-up",
        type=int,
        default=0,
        help="before the first sweep, mark this many open cases as missed advances",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    day = datetime.now().date().isoformat()

    with scratch_dir(args.keep) as root, tracker_url(root, args.tracker) as url:
        server = PrefectServer(root, args.prefect_backend)
        os.environ.update(server.client_env())
        os.environ.update(
            {
                "ONBOARDING_DATA_DIR": str(root / "data"),
                "ONBOARDING_DATABASE_URL": url,
                "ONBOARDING_ORCHESTRATION": "prefect",
                "ONBOARDING_PREFECT_API_URL": server.api,
            }
        )
        print(f"loading {args.people:,} newcomers into {args.tracker} …", file=sys.stderr)
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            loaded = pool.submit(load, url, args.people, args.seed, day).result()
        print(f"loaded: {json.dumps(loaded)}", file=sys.stderr)
        results: dict[str, Any] = {
            "people": args.people,
            "tracker": args.tracker,
            "prefect_backend": args.prefect_backend,
            "day": day,
            "batch_size": args.batch_size,
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(),
            "load": loaded,
            "runs": [],
        }
        from tracker.db import get_database

        db = get_database()
        results["marked_for_catch_up"] = mark_awaiting(db, args.catch_up) if args.catch_up else 0
        with server.running():
            results["server_startup_s"] = round(server.startup_seconds, 1)
            for i in range(args.runs):
                print(f"sweep {i + 1} …", file=sys.stderr)
                run = sweep_once(server, db, day, args.batch_size)
                print(json.dumps(run, default=str), file=sys.stderr)
                results["runs"].append(run)
            results["server_peak_rss_mib"] = server.peak_rss_mib()
        db.dispose()
        results["finished"] = datetime.now().astimezone().isoformat(timespec="seconds")
        results["markdown"] = report(results)
        print(results["markdown"])
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
