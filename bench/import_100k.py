"""Time and memory of checking and importing a large CSV file of newcomers (`onboarding import`).

Every phase runs in a fresh child process, so its peak RSS is its own:

- ``check``: a dry run (every row read and checked, the database asked about duplicates and case
  managers), as `onboarding import --dry-run` does;
- ``check_traced``: the same under tracemalloc, for the peak of Python allocations;
- ``refuse``: the same file with one impossible date near the end, imported for real: refused,
  nothing written;
- ``import``: the real import, all rows in one transaction (cases opened unless --no-open-cases);
- ``advance``: the new cases' first steps opened inline (``request_advance``, as `onboarding
  import` does without Prefect), the import's second phase.

    .venv/bin/python bench/import_100k.py --tracker both --out bench/results/import_100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _harness import PG_URL, machine, markdown_table, scratch_dir, scratch_pg_database

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HEADER = "given_name,family_name,birth_date,nationality,purpose,email,phone,arrival_date"
# Names from several scripts, so the file is not plain ASCII (Python then keeps the text wider).
GIVEN = ["Priya", "Jörg", "Олена", "محمد", "明", "Zoë", "Nikolaos", "ნინო", "प्रिया", "Ana"]
FAMILY = ["Raman", "Weiß", "Шевченко", "الحسيني", "王", "Ní Bhriain", "Παπαδόπουλος", "ბერიძე"]
NATIONS = ["IN", "DE", "UA", "SY", "CN", "IE", "GR", "GE", "NP", "BR"]


def build_csv(rows: int, bad_line: int | None = None) -> bytes:
    """A valid file of ``rows`` people (all different); ``bad_line`` gets an impossible date."""
    out = [HEADER]
    for i in range(rows):
        line = i + 2
        born = date(1960, 1, 1) + timedelta(days=i % 15_000)
        birth = "2025-02-30" if line == bad_line else born.isoformat()
        out.append(
            f"{GIVEN[i % len(GIVEN)]} {i},{FAMILY[i % len(FAMILY)]},{birth},"
            f"{NATIONS[i % len(NATIONS)]},{'study' if i % 3 == 0 else 'work'},"
            f"person{i}@example.org,+49 234 {i:07d},2026-01-{i % 28 + 1:02d}"
        )
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


def rss_mib(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident memory, in MiB (Linux).

    Not getrusage: a spawned child's ru_maxrss starts from its parent's at the fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def prepare(url: str) -> None:
    """Migrate and seed the organisations and the demo users (cm.mueller imports)."""
    from tracker.admin.organisations import seed_organisations
    from tracker.db import Database
    from tracker.demo.people import ensure_demo_users
    from tracker.migrate import upgrade

    upgrade(url)
    db = Database(url)
    with db.transaction() as session:
        seed_organisations(session, now=NOW)
        ensure_demo_users(session, now=NOW)
    db.dispose()


def counts(db: Any) -> dict[str, int]:
    """Rows per table, and per kind where a kind tells what a change did (step states, audit
    actions, outbox kinds, handoff states): the same file must leave the same figures."""
    from sqlalchemy import func, select

    from tracker.models import AuditEvent, Case, Handoff, Newcomer, OutboxMessage, Step

    out: dict[str, int] = {}
    with db.read() as s:
        for m in (Newcomer, Case, Step, AuditEvent, Handoff, OutboxMessage):
            out[m.__tablename__] = int(s.scalar(select(func.count()).select_from(m)) or 0)
        for column in (Step.state, AuditEvent.action, OutboxMessage.kind, Handoff.state):
            for kind, n in s.execute(select(column, func.count()).group_by(column)):
                out[f"{column.class_.__tablename__}.{getattr(kind, 'value', kind)}"] = n
    return out


def advance_phase(db: Any) -> dict[str, Any]:
    """Open the first steps of every case that waits for its advance, inline."""
    from sqlalchemy import select

    from tracker.config import get_settings
    from tracker.journeys.orchestration import request_advance
    from tracker.models import Case

    os.environ["ONBOARDING_ORCHESTRATION"] = "inline"
    get_settings.cache_clear()
    with db.read() as s:
        refs = list(s.scalars(select(Case.reference).where(Case.advance_requested_at.is_not(None))))
    request = request_advance(refs, db=db)
    assert request.state == "completed", request.message
    with db.read() as s:
        waiting = s.scalar(select(Case.id).where(Case.advance_requested_at.is_not(None)).limit(1))
    return {"rows_read": len(refs), "imported": len(refs), "still_waiting": waiting is not None}


def phase(url: str, path: str, kind: str, open_cases: bool) -> dict[str, Any]:
    """One phase in this (child) process."""
    from tracker.access import actor_for
    from tracker.db import Database
    from tracker.journeys.importer import ImportFailed, import_newcomers

    db = Database(url)
    with db.read() as s:
        actor = actor_for(s, "cm.mueller")
    before = counts(db)
    rss_before = rss_mib("VmRSS")
    if kind == "check_traced":
        tracemalloc.start()
    started = time.perf_counter()
    outcome: dict[str, Any] = {}
    try:
        if kind == "advance":
            outcome = advance_phase(db)
        else:
            with db.transaction() as session:
                report = import_newcomers(
                    session,
                    actor=actor,
                    source=Path(path),
                    open_cases=open_cases,
                    dry_run=kind.startswith("check"),
                    now=NOW,
                )
            outcome = {"rows_read": report.rows_read, "imported": len(report.imported)}
    except ImportFailed as exc:
        errors = exc.report.errors
        outcome = {
            "refused": True,
            "rows_read": exc.report.rows_read,
            "errors": len(errors),
            "first_error": str(errors[0]) if errors else None,
        }
    seconds = time.perf_counter() - started
    if kind == "check_traced":
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        outcome["tracemalloc_peak_mib"] = round(traced_peak / 2**20, 1)
    after = counts(db)
    db.dispose()
    return {
        "phase": kind,
        "seconds": round(seconds, 1),
        "rows_per_second": round(outcome.get("rows_read", 0) / seconds) if seconds else None,
        "rss_at_start_mib": rss_before,
        "peak_rss_mib": rss_mib(),
        "cpu_seconds": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),
        "counts_before": before,
        "counts_after": after,
        **outcome,
    }


def in_child(*args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(phase, *args).result()


@contextmanager
def tracker_url(root: Path, backend: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{root / 'tracker.db'}"
        return
    with scratch_pg_database("import") as name:
        yield PG_URL.format(name=name)


def run_backend(
    backend: str, rows: int, open_cases: bool, skip_import: bool, only_import: bool = False
) -> dict[str, Any]:
    with scratch_dir() as root, tracker_url(root, backend) as url:
        good, bad = root / "good.csv", root / "bad.csv"
        good.write_bytes(build_csv(rows))
        bad_line = rows - 1  # the third line from the end
        bad.write_bytes(build_csv(rows, bad_line=bad_line))
        prepare(url)
        result: dict[str, Any] = {
            "backend": backend,
            "rows": rows,
            "file_mib": round(good.stat().st_size / 2**20, 1),
            "open_cases": open_cases,
            "bad_line": bad_line,
            "phases": [],
        }
        plan = [] if only_import else [("check", good), ("check_traced", good), ("refuse", bad)]
        if not skip_import:
            plan.append(("import", good))
            if open_cases:
                plan.append(("advance", good))
        for kind, path in plan:
            print(f"{backend}: {kind} …", file=sys.stderr, flush=True)
            done = in_child(url, str(path), kind, open_cases)
            print(json.dumps(done), file=sys.stderr, flush=True)
            result["phases"].append(done)
        return result


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        for p in r["phases"]:
            rows.append(
                [
                    r["backend"],
                    p["phase"],
                    p["seconds"],
                    p.get("rows_per_second"),
                    p["rss_at_start_mib"],
                    p["peak_rss_mib"],
                    p.get("tracemalloc_peak_mib"),
                    p.get("first_error") or f"{p.get('imported', 0):,} rows",
                    p["counts_after"]["newcomers"] - p["counts_before"]["newcomers"],
                    p["counts_after"]["audit_events"] - p["counts_before"]["audit_events"],
                ]
            )
    header = [
        "tracker",
        "phase",
        "seconds",
        "rows/s",
        "RSS at start (MiB)",
        "peak RSS (MiB)",
        "tracemalloc peak (MiB)",
        "outcome",
        "newcomers written",
        "audit events written",
    ]
    first = results[0]
    title = (
        f"{first['rows']:,} rows, {first['file_mib']} MiB file, cases opened: {first['open_cases']}"
    )
    return f"{title}\n\n{markdown_table(header, rows)}"


def section(found: list[dict[str, Any]]) -> list[str]:
    """The benchmarks document's section: each run's import (writing the rows) and advance
    (opening the new cases' first steps inline), by size, backend and code."""
    rows = []
    for run in found:
        for r in run["results"]:
            phases = {p["phase"]: p for p in r["phases"]}
            write, advance = phases.get("import"), phases.get("advance")
            if write is None:
                continue
            total = write["seconds"] + (advance["seconds"] if advance else 0)
            rows.append(
                [
                    f"{r['rows']:,}",
                    r["backend"],
                    run.get("label") or "–",
                    run["started"][:16],
                    write["seconds"],
                    advance["seconds"] if advance else "–",
                    round(total, 1),
                    round(r["rows"] / total) if total else None,
                    max(write["peak_rss_mib"], advance["peak_rss_mib"] if advance else 0),
                    "yes" if advance and not advance.get("still_waiting") else "no",
                ]
            )
    if not rows:
        return []
    # By size, the newest runs first; a before/after pair of bench/compare.py sits together.
    rows.sort(key=lambda r: (int(str(r[0]).replace(",", "")), str(r[3])), reverse=True)
    rows.sort(key=lambda r: int(str(r[0]).replace(",", "")))
    header = [
        "rows",
        "backend",
        "code",
        "started",
        "writing s",
        "opening first steps s",
        "total s",
        "rows/s",
        "peak RSS MiB",
        "every case advanced",
    ]
    return [
        "## CSV import: writing the rows, then opening the first steps inline",
        "",
        "`bench/import_100k.py --label …` (each phase in a fresh process; SQLite with the default",
        "synchronous=FULL). Target: 100,000 rows with their first steps open in ≤ 90 s on",
        "SQLite and ≤ 120 s on PostgreSQL. Compare rows started within the same few minutes",
        "(a bench/compare.py pair): this shared machine ran the same code three times slower at",
        "19:48 than at 21:57 on 2026-12-07.",
        "",
        markdown_table(header, rows),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--tracker", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--open-cases", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--skip-import", action="store_true", help="check and refuse only")
    parser.add_argument("--only-import", action="store_true", help="no check and refuse phases")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--label",
        help="which code this is (e.g. 'before 0a1b2c3'); writes bench/results/import-ROWS-"
        "LABEL.json for the benchmarks document when --out is not given",
    )
    args = parser.parse_args()

    backends = ["sqlite", "postgresql"] if args.tracker == "both" else [args.tracker]
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    results = [
        run_backend(b, args.rows, args.open_cases, args.skip_import, args.only_import)
        for b in backends
    ]
    text = report(results)
    print(text)
    if args.label and not args.out:
        slug = "".join(c if c.isalnum() else "-" for c in args.label.lower()).strip("-")
        args.out = Path(__file__).parent / "results" / f"import-{args.rows}-{slug}.json"
    if args.out:
        payload = {
            "started": started,
            "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(),
            "pid": os.getpid(),
            "label": args.label,
            "results": results,
            "markdown": text,
        }
        args.out.write_text(json.dumps(payload, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
