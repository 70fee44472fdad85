"""Time the privacy features on a demo load: the access log's cost per read, Art. 15 export,
Art. 17 erasure and the retention run (with a check that the leadership figures stay).

Each backend gets a scratch database; the demo is loaded in one child process and measured
in another, so each peak RSS is that step's own. Results go to bench/results/privacy-<backend>
(.md and .json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, date, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from _harness import machine, markdown_table, scratch_dir, summary
from sweep import load, tracker_url

AS_OF = date(2026, 10, 31)
# The retention run and the figures look at the demo's last day (as the tests do).
RETENTION_NOW = datetime(2026, 10, 31, 12, tzinfo=UTC)
FIGURE_YEARS = (2024, 2025)
MODES = ("off", "first", "repeat")
MODE_NAMES = {
    "off": "logging off",
    "first": "first view",
    "repeat": "repeated view",
}
RESULTS = Path(__file__).resolve().parent / "results"


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    """Milliseconds ``work`` took, and what it returned."""
    started = time.perf_counter()
    value = work()
    return (time.perf_counter() - started) * 1000, value


class StatementCounter:
    """SQL statements sent through the tracker's engines (reader and writer)."""

    def __init__(self, db: Any) -> None:
        from sqlalchemy import event

        self.count = 0
        for engine in {id(db.reader): db.reader, id(db.writer): db.writer}.values():
            event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args: Any) -> None:
        self.count += 1


@contextmanager
def access_logging_off() -> Iterator[None]:
    """Reads note nobody: ``tracker.privacy.access_log.note`` does nothing while this is active."""
    from tracker.privacy import access_log

    original = access_log.note
    access_log.note = lambda *args, **kwargs: None  # type: ignore[assignment]
    try:
        yield
    finally:
        access_log.note = original  # type: ignore[assignment]


def count_rows(db: Any, model: Any, *where: Any) -> int:
    from sqlalchemy import func, select

    with db.read() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def log_rows(db: Any, actor: str | None = None, purpose: str | None = None) -> int:
    from tracker.models import AccessLogEntry

    where = []
    if actor is not None:
        where.append(AccessLogEntry.actor == actor)
    if purpose is not None:
        where.append(AccessLogEntry.purpose == purpose)
    return count_rows(db, AccessLogEntry, *where)


def forget_views(db: Any, actor: str, purpose: str) -> None:
    """Delete the actor's log entries for this purpose, so the next view is a first view."""
    from sqlalchemy import delete

    from tracker.models import AccessLogEntry

    with db.transaction() as s:
        s.execute(
            delete(AccessLogEntry).where(
                AccessLogEntry.actor == actor, AccessLogEntry.purpose == purpose
            )
        )


# --- 1. the access log's cost per read ---------------------------------------------------------


def access_overhead(db: Any, actors: dict[str, Any], reps: int) -> dict[str, Any]:
    from tracker.journeys import queries

    cm, weber = actors["cm.mueller"], actors["stadt.weber"]
    with db.read() as s, access_logging_off():
        reference = queries.list_cases(s, actor=cm, manager="me", limit=1)[0].reference
    reads: dict[str, tuple[Any, str, Callable[[Any], Any]]] = {
        "list_cases (cm.mueller, limit 50)": (
            cm,
            "list",
            lambda s: queries.list_cases(s, actor=cm, limit=50),
        ),
        f"case_view (cm.mueller, {reference})": (
            cm,
            "case",
            lambda s: queries.case_view(s, actor=cm, reference=reference),
        ),
        "partner_queue (stadt.weber, limit 50)": (
            weber,
            "queue",
            lambda s: queries.partner_queue(s, actor=weber, limit=50),
        ),
    }
    statements = StatementCounter(db)
    log_before = log_rows(db)
    out: dict[str, Any] = {"reads": {}, "case_reference": reference}
    for name, (actor, purpose, query) in reads.items():

        def view(query: Callable[[Any], Any] = query) -> int:
            with db.read() as s:
                result = query(s)
            return len(result) if isinstance(result, list) else 1

        samples: dict[str, list[float]] = {m: [] for m in MODES}
        logged: dict[str, list[int]] = {m: [] for m in MODES}
        sql: dict[str, list[int]] = {m: [] for m in MODES}
        shown = 0
        print(f"  {name} …", file=sys.stderr)
        for i in range(reps + 2):  # the first two rounds warm caches and are not counted
            order = MODES[i % 3 :] + MODES[: i % 3]  # interleaved: a busy moment hits all
            for mode in order:
                if mode == "first":
                    forget_views(db, actor.username, purpose)
                before = log_rows(db, actor.username, purpose)
                sql_before = statements.count
                if mode == "off":
                    with access_logging_off():
                        ms, shown = timed(view)
                else:
                    ms, shown = timed(view)
                if i < 2:
                    continue
                samples[mode].append(ms)
                sql[mode].append(statements.count - sql_before)
                logged[mode].append(log_rows(db, actor.username, purpose) - before)
        figures = {m: summary(samples[m]) for m in MODES}
        out["reads"][name] = {
            "shown": shown,
            "timings": figures,
            "extra_ms_p50": {
                m: round(figures[m]["p50_ms"] - figures["off"]["p50_ms"], 1)
                for m in ("first", "repeat")
            },
            "rows_logged_per_view": {m: round(sum(v) / len(v), 1) for m, v in logged.items()},
            "rows_logged_max": {m: max(v) for m, v in logged.items()},
            "sql_statements_per_view": {m: round(sum(v) / len(v), 1) for m, v in sql.items()},
        }
    out["access_log_rows_before"] = log_before
    out["access_log_rows_after"] = log_rows(db)
    return out


# --- 2. Art. 15 export --------------------------------------------------------------------------


def exports(db: Any, cm: Any, references: list[str], pdfs: int) -> dict[str, Any]:
    from tracker.models import AccessLogEntry
    from tracker.privacy.erasure import export_person
    from tracker.privacy.export import render_export

    times: dict[str, list[float]] = {"export_person": [], "json": [], "html": [], "pdf": []}
    sizes: dict[str, list[int]] = {"json": [], "html": [], "pdf": []}
    log_before = count_rows(db, AccessLogEntry, AccessLogEntry.purpose == "export")
    cases_exported = 0
    for n, reference in enumerate(references):

        def export(reference: str = reference) -> dict[str, Any]:
            with db.transaction() as s:
                return export_person(s, actor=cm, reference=reference)

        ms, data = timed(export)
        times["export_person"].append(ms)
        cases_exported += len(data["cases"])
        formats = ["json", "html"] + (["pdf"] if n < pdfs else [])
        for fmt in formats:
            ms, file = timed(lambda fmt=fmt, data=data: render_export(data, fmt=fmt))
            times[fmt].append(ms)
            sizes[fmt].append(len(file.content))
    logged = count_rows(db, AccessLogEntry, AccessLogEntry.purpose == "export") - log_before
    return {
        "people": len(references),
        "timings": {k: summary(v) for k, v in times.items() if v},
        "first_ms": {k: round(v[0], 1) for k, v in times.items() if v},
        "bytes": {
            k: {"median": sorted(v)[len(v) // 2], "max": max(v)} for k, v in sizes.items() if v
        },
        "cases_exported": cases_exported,
        "access_log_rows_written": logged,
    }


# --- 3. Art. 17 erasure -------------------------------------------------------------------------


def erasures(db: Any, admin: Any, people: list[tuple[int, str]]) -> dict[str, Any]:
    from sqlalchemy import select

    from tracker.models import AccessLogEntry, Case, Erasure, Newcomer
    from tracker.privacy.erasure import erase_person

    times: list[float] = []
    removed: Counter[str] = Counter()
    rows_per_person: list[int] = []
    newcomers_before = count_rows(db, Newcomer)
    case_ids: list[int] = []
    for newcomer_id, _ in people:
        with db.read() as s:
            case_ids += s.scalars(select(Case.id).where(Case.newcomer_id == newcomer_id)).all()
    for _, reference in people:

        def erase(reference: str = reference) -> Any:
            with db.transaction() as s:
                return erase_person(s, actor=admin, reference=reference, confirm=reference)

        ms, removal = timed(erase)
        times.append(ms)
        rows = {k: v for k, v in removal.removed.items() if k != "mail_files"}
        removed.update(rows)
        rows_per_person.append(sum(rows.values()))
    ids = [n for n, _ in people]
    return {
        "people": len(people),
        "timings": summary(times),
        "rows_removed_per_person": round(sum(rows_per_person) / len(rows_per_person), 1),
        "rows_removed_max": max(rows_per_person),
        "removed_per_table_mean": {k: round(v / len(people), 1) for k, v in removed.items()},
        "newcomers_removed": newcomers_before - count_rows(db, Newcomer),
        "left_behind": {
            "newcomers": count_rows(db, Newcomer, Newcomer.id.in_(ids)),
            "cases": count_rows(db, Case, Case.id.in_(case_ids)),
            "access_log": count_rows(db, AccessLogEntry, AccessLogEntry.case_id.in_(case_ids)),
        },
        "tombstones": count_rows(db, Erasure, Erasure.basis == "request"),
    }


# --- 4. retention -------------------------------------------------------------------------------


def year_figures(db: Any, lead: Any) -> dict[int, Any]:
    from tracker.reporting import figures as outcomes

    with db.read() as s:
        return {
            year: outcomes.year_figures(s, actor=lead, year=year, today=AS_OF).model_dump(
                mode="json"
            )
            for year in FIGURE_YEARS
        }


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after), key=str):
            found += differences(before.get(key), after.get(key), f"{path}.{key}")
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            found += differences(b, a, f"{path}[{i}]")
        return found
    return [] if before == after else [f"{path.lstrip('.')}: {before!r} -> {after!r}"]


def retention(db: Any, lead: Any, batch_size: int) -> dict[str, Any]:
    from tracker.access import system_actor
    from tracker.models import AccessLogEntry, AuditEvent, Newcomer
    from tracker.privacy.retention import anonymise_expired, expired_newcomers

    system = system_actor("retention")

    def due() -> int:
        with db.read() as s:
            return len(expired_newcomers(s, now=RETENTION_NOW, limit=10_000_000))

    count_ms, due_before = timed(due)
    figures_ms, before = timed(lambda: year_figures(db, lead))
    log_before, audit_before = count_rows(db, AccessLogEntry), count_rows(db, AuditEvent)
    batch_ms: list[float] = []
    done = 0
    started = time.perf_counter()
    while True:

        def batch() -> list[Any]:
            with db.transaction() as s:
                return anonymise_expired(s, actor=system, now=RETENTION_NOW, limit=batch_size)

        ms, removals = timed(batch)
        if not removals:
            break
        batch_ms.append(ms)
        done += len(removals)
        if len(batch_ms) % 10 == 0:
            print(f"  anonymised {done:,} of {due_before:,} …", file=sys.stderr)
    seconds = time.perf_counter() - started
    after = year_figures(db, lead)
    changed = differences(before, after)
    return {
        "now": RETENTION_NOW.isoformat(),
        "due": due_before,
        "due_count_ms": round(count_ms, 1),
        "anonymised": done,
        "batches": len(batch_ms),
        "batch_size": batch_size,
        "batch_timings": summary(batch_ms) if batch_ms else None,
        "seconds": round(seconds, 2),
        "people_per_second": round(done / seconds, 1) if seconds else None,
        "due_after": due(),
        "anonymised_in_db": count_rows(db, Newcomer, Newcomer.anonymised_at.is_not(None)),
        "access_log_rows": [log_before, count_rows(db, AccessLogEntry)],
        "audit_events": [audit_before, count_rows(db, AuditEvent)],
        "year_figures_ms": round(figures_ms, 1),
        "figures_identical": before == after,
        "figure_differences": changed[:50],
        "figure_differences_total": len(changed),
    }


# --- the run in one child process ----------------------------------------------------------------


def measure(url: str, args: dict[str, Any]) -> dict[str, Any]:
    """Everything after the demo load, in a fresh process (its peak RSS is the measurement's)."""
    from sqlalchemy import func, select

    from tracker.access import actor_for
    from tracker.db import Database
    from tracker.models import Case

    rss_start = peak_rss_mib()
    db = Database(url)
    with db.read() as s:
        actors = {
            name: actor_for(s, name) for name in ("cm.mueller", "stadt.weber", "lead.schmidt")
        }
        actors["admin"] = actor_for(s, "admin")
        people = s.execute(
            select(Case.newcomer_id, func.min(Case.reference))
            .group_by(Case.newcomer_id)
            .order_by(Case.newcomer_id)
        ).all()
    rng = random.Random(args["seed"])
    chosen = rng.sample([(int(n), str(r)) for n, r in people], args["exports"] + args["erasures"])
    out: dict[str, Any] = {"rss_at_start_mib": rss_start}
    sections: list[tuple[str, Callable[[], Any]]] = [
        ("access_log", lambda: access_overhead(db, actors, args["reps"])),
        (
            "export",
            lambda: exports(
                db, actors["cm.mueller"], [r for _, r in chosen[: args["exports"]]], args["pdfs"]
            ),
        ),
        ("erasure", lambda: erasures(db, actors["admin"], chosen[args["exports"] :])),
        ("retention", lambda: retention(db, actors["lead.schmidt"], args["batch_size"])),
    ]
    for name, work in sections:
        print(f"{name} … (load {loadavg()})", file=sys.stderr)
        started = time.perf_counter()
        out[name] = work()
        out[name]["section_seconds"] = round(time.perf_counter() - started, 1)
        out[name]["loadavg_after"] = loadavg()
    db.dispose()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


# --- the report ----------------------------------------------------------------------------------


def ms_pair(figures: dict[str, float] | None) -> str:
    if not figures:
        return "–"
    return f"{figures['p50_ms']:,.1f} / {figures['p95_ms']:,.1f}"


def report(results: dict[str, Any]) -> str:
    m = results["measured"]
    access = m["access_log"]
    rows = []
    for name, read in access["reads"].items():
        t, extra, logged = read["timings"], read["extra_ms_p50"], read["rows_logged_per_view"]
        rows.append(
            [
                name,
                read["shown"],
                ms_pair(t["off"]),
                ms_pair(t["first"]),
                f"{extra['first']:+.1f}",
                ms_pair(t["repeat"]),
                f"{extra['repeat']:+.1f}",
                f"{logged['first']:g} / {logged['repeat']:g}",
                " / ".join(f"{read['sql_statements_per_view'][k]:g}" for k in MODES),
            ]
        )
    access_table = markdown_table(
        [
            "read",
            "rows shown",
            "logging off p50 / p95 ms",
            "first view p50 / p95 ms",
            "Δ p50 ms",
            "repeated view p50 / p95 ms",
            "Δ p50 ms",
            "log rows written first / repeated",
            "SQL statements off / first / repeated",
        ],
        rows,
    )
    export, erase, ret = m["export"], m["erasure"], m["retention"]
    et, eb = export["timings"], export["bytes"]
    ops = [
        [
            "export_person in a transaction",
            et["export_person"]["n"],
            ms_pair(et["export_person"]),
            f"{export['cases_exported']} cases; first {export['first_ms']['export_person']} ms",
        ],
        *(
            [
                f"render_export {fmt}",
                et[fmt]["n"],
                ms_pair(et[fmt]),
                f"{eb[fmt]['median']:,} bytes median, {eb[fmt]['max']:,} max; "
                f"first (cold) {export['first_ms'][fmt]} ms",
            ]
            for fmt in ("json", "html", "pdf")
            if fmt in et
        ),
        [
            "erase_person, one transaction each",
            erase["timings"]["n"],
            ms_pair(erase["timings"]),
            f"{erase['rows_removed_per_person']:,} rows removed per person "
            f"(max {erase['rows_removed_max']:,})",
        ],
        [
            f"anonymise_expired, batches of {ret['batch_size']}",
            ret["batches"],
            ms_pair(ret["batch_timings"]),
            f"{ret['anonymised']:,} people in {ret['seconds']:,} s = "
            f"{ret['people_per_second']} people/s",
        ],
        ["expired_newcomers (count due)", 1, f"{ret['due_count_ms']:,}", f"{ret['due']:,} due"],
    ]
    ops_table = markdown_table(["operation", "n", "p50 / p95 ms", "notes"], ops)
    load_info = results["load"]
    lines = [
        f"Privacy features on {results['backend']}: {results['people']:,} demo newcomers "
        f"(seed {results['seed']}, as of {AS_OF}), {results['reps']} repetitions per read, "
        f"run {results['started']}",
        "",
        "Access log overhead (Δ = p50 minus p50 with logging off)",
        "",
        access_table,
        "",
        "Export, erasure, retention",
        "",
        ops_table,
        "",
        f"- figures {', '.join(map(str, FIGURE_YEARS))} identical before and after retention: "
        f"**{ret['figures_identical']}**"
        + (
            f" ({ret['figure_differences_total']} differences: "
            + "; ".join(ret["figure_differences"][:10])
            + ")"
            if not ret["figures_identical"]
            else ""
        ),
        f"- retention as of {ret['now']}: due {ret['due']:,}, anonymised {ret['anonymised']:,}, "
        f"due afterwards {ret['due_after']:,}; access log rows {ret['access_log_rows'][0]:,} → "
        f"{ret['access_log_rows'][1]:,}, audit events {ret['audit_events'][0]:,} → "
        f"{ret['audit_events'][1]:,}",
        f"- access log rows: {access['access_log_rows_before']:,} before the reads, "
        f"{access['access_log_rows_after']:,} after; exports wrote "
        f"{export['access_log_rows_written']} rows for {export['cases_exported']} cases",
        f"- erasure: per table, mean rows removed {erase['removed_per_table_mean']}; "
        f"left behind {erase['left_behind']}",
        f"- demo load: {load_info['seconds']} s, peak RSS {load_info['peak_rss_mib']} MiB "
        f"(child process), rows {load_info['rows']}",
        f"- measuring process: peak RSS {m['peak_rss_mib']} MiB (at start {m['rss_at_start_mib']})",
        f"- run time {results['seconds']} s; load average at start {results['loadavg_start']}, "
        f"at end {results['loadavg_end']} ({results['machine']['cpus']} CPUs)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="tracker DB"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--reps", type=int, default=30, help="repetitions per read and mode")
    parser.add_argument("--exports", type=int, default=20)
    parser.add_argument("--pdfs", type=int, default=5)
    parser.add_argument("--erasures", type=int, default=20)
    parser.add_argument(
        "--batch-size", type=int, default=500, help="as the retention run (RETENTION_BATCH)"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    options = {
        "seed": args.seed,
        "reps": args.reps,
        "exports": args.exports,
        "pdfs": args.pdfs,
        "erasures": args.erasures,
        "batch_size": args.batch_size,
    }
    for backend in backends:
        started = time.perf_counter()
        results: dict[str, Any] = {
            "backend": backend,
            "people": args.people,
            "as_of": AS_OF.isoformat(),
            **options,
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "loadavg_start": loadavg(),
            "machine": machine(),
        }
        with scratch_dir(args.keep) as root, tracker_url(root, backend) as url:
            os.environ.update(
                {
                    "ONBOARDING_DATA_DIR": str(root / "data"),
                    "ONBOARDING_DATABASE_URL": url,
                    "ONBOARDING_ORCHESTRATION": "inline",
                    "ONBOARDING_PREFECT_API_URL": "http://127.0.0.1:9/api",  # refused at once
                }
            )
            print(f"loading {args.people:,} newcomers into {backend} …", file=sys.stderr)
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                results["load"] = pool.submit(
                    load, url, args.people, args.seed, AS_OF.isoformat()
                ).result()
            print(f"loaded: {json.dumps(results['load'])}", file=sys.stderr)
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                results["measured"] = pool.submit(measure, url, options).result()
        results["seconds"] = round(time.perf_counter() - started, 1)
        results["loadavg_end"] = loadavg()
        results["finished"] = datetime.now().astimezone().isoformat(timespec="seconds")
        results["markdown"] = report(results)
        print(results["markdown"])
        print()
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stem = args.out_dir / f"privacy-{backend}"
        stem.with_suffix(".md").write_text(results["markdown"] + "\n")
        stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"wrote {stem}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
