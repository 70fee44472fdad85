"""Time every dashboard page under Streamlit's AppTest on a large demo database (plain timers)."""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import re
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamlit.testing.v1 import AppTest

    from tracker.db import Database

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboard"
BIN = Path(sys.executable).parent
SLOW_SECONDS = 1.0  # pages slower than this get their SQL and functions reported

# (role, username, page): each page as the role that uses it. "app" is dashboard/app.py,
# which shows the role's landing page (the first page of its navigation).
ENTRIES: list[tuple[str, str, str]] = [
    ("case_manager", "cm.mueller", "my_cases"),
    ("case_manager", "cm.mueller", "person"),
    ("case_manager", "cm.mueller", "queue"),
    ("partner_agent", "stadt.weber", "queue"),
    ("partner_agent", "stadt.weber", "person"),
    ("leadership", "lead.schmidt", "outcomes"),
    ("admin", "admin", "admin"),
    ("case_manager", "cm.mueller", "app"),
    ("partner_agent", "stadt.weber", "app"),
    ("leadership", "lead.schmidt", "app"),
    ("admin", "admin", "app"),
]
LANDING = {
    "cm.mueller": "my_cases",
    "stadt.weber": "queue",
    "lead.schmidt": "outcomes",
    "admin": "my_cases (all cases)",
}


# ---------------------------------------------------------------- the scratch database


def count_newcomers(db_file: Path) -> int:
    if not db_file.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM newcomers").fetchone()[0])
    except sqlite3.Error:
        return 0


def prepare_database(data_dir: Path, people: int) -> dict[str, Any]:
    """Reuse the demo database in data_dir, or migrate and load one (`onboarding demo`)."""
    db_file = data_dir / "onboarding.db"
    found = count_newcomers(db_file)
    if found:
        if found != people:
            print(
                f"note: {db_file} holds {found} newcomers, not {people}; using it as it is",
                file=sys.stderr,
            )
        return {"reused": True, "newcomers": found, "load_seconds": None}
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ONBOARDING_DATA_DIR": str(data_dir)}
    env.pop("ONBOARDING_DATABASE_URL", None)
    onboarding = str(BIN / "onboarding")
    print(f"loading {people} demo newcomers into {db_file} …", file=sys.stderr)
    started = time.perf_counter()
    subprocess.run([onboarding, "db", "upgrade"], env=env, check=True)
    subprocess.run(
        [onboarding, "demo", "--people", str(people), "--seed", "1"], env=env, check=True
    )
    seconds = time.perf_counter() - started
    return {
        "reused": False,
        "newcomers": count_newcomers(db_file),
        "load_seconds": round(seconds, 1),
    }


def set_environment(data_dir: Path) -> None:
    """Point the tracker at the scratch database; no Prefect server to wait for."""
    os.environ.pop("ONBOARDING_DATABASE_URL", None)
    os.environ["ONBOARDING_DATA_DIR"] = str(data_dir)
    os.environ["ONBOARDING_ORCHESTRATION"] = "inline"
    os.environ["ONBOARDING_PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # refused at once
    os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def dashboard_database() -> Database:
    """The Database object the dashboard uses (get_database is cached per URL argument)."""
    from tracker.config import get_settings
    from tracker.db import get_database

    return get_database(get_settings().resolved_database_url)


def pick_cases() -> dict[str, str]:
    """A real open case of cm.mueller (the top of their list) and one in stadt.weber's queue."""
    from tracker.access import actor_for
    from tracker.journeys import queries

    with dashboard_database().read() as session:
        mueller = actor_for(session, "cm.mueller")
        mine = queries.list_cases(session, actor=mueller, manager="me", limit=1)
        weber = actor_for(session, "stadt.weber")
        queue = queries.partner_queue(session, actor=weber, limit=1)
    if not mine or not queue:
        raise SystemExit("the demo database has no open case for cm.mueller or stadt.weber")
    return {"cm.mueller": mine[0].reference, "stadt.weber": queue[0].reference}


# ---------------------------------------------------------------- SQL timing


class SqlLog:
    """Time spent in each SQL statement (cursor execute; fetching rows is not included)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = False
        self.stats: dict[str, list[Any]] = {}  # statement: [count, seconds, first parameters]

    def attach(self) -> None:
        from sqlalchemy import event

        db = dashboard_database()
        for engine in {id(db.reader): db.reader, id(db.writer): db.writer}.values():
            event.listen(engine, "before_cursor_execute", self._before)
            event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        elapsed = time.perf_counter() - conn.info["bench_started"].pop()
        if not self.active:
            return
        key = " ".join(statement.split())
        with self.lock:
            entry = self.stats.setdefault(key, [0, 0.0, parameters])
            entry[0] += 1
            entry[1] += elapsed

    @contextmanager
    def recording(self) -> Iterator[dict[str, list[Any]]]:
        with self.lock:
            self.stats = {}
        self.active = True
        try:
            yield self.stats
        finally:
            self.active = False

    @staticmethod
    def summary(stats: dict[str, list[Any]], top: int = 5) -> dict[str, Any]:
        ordered = sorted(stats.items(), key=lambda kv: kv[1][1], reverse=True)
        return {
            "statements": int(sum(v[0] for v in stats.values())),
            "seconds": round(sum(v[1] for v in stats.values()), 3),
            "top": [
                {"seconds": round(v[1], 3), "count": int(v[0]), "sql": k[:3000]}
                for k, v in ordered[:top]
            ],
        }

    def explain(self, top: int = 3, over: float = 0.05) -> list[dict[str, Any]]:
        """SQLite's plan for the slowest SELECTs of the last recording, with their parameters."""
        db = dashboard_database()
        if not db.url.startswith("sqlite:///"):
            return []
        ordered = sorted(self.stats.items(), key=lambda kv: kv[1][1], reverse=True)
        plans = []
        uri = f"file:{db.url.removeprefix('sqlite:///')}?mode=ro"
        with sqlite3.connect(uri, uri=True) as conn:
            for statement, (_count, seconds, parameters) in ordered[:top]:
                if seconds < over or not statement.upper().startswith(("SELECT", "WITH")):
                    continue
                try:
                    rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", parameters or ())
                    plan = [str(row[-1]) for row in rows]
                except sqlite3.Error as exc:
                    plan = [f"(no plan: {exc})"]
                plans.append(
                    {
                        "seconds": round(seconds, 3),
                        "sql": statement[:3000],
                        "parameters": [str(p) for p in (parameters or ())],
                        "plan": plan,
                    }
                )
        return plans


# ---------------------------------------------------------------- rendering one page


def make_app(username: str, page: str, case: str | None, lang: str) -> AppTest:
    from streamlit.testing.v1 import AppTest

    path = DASHBOARD / "app.py" if page == "app" else DASHBOARD / "views" / f"{page}.py"
    at = AppTest.from_file(str(path), default_timeout=900)
    quiet_streamlit()  # setting session_state outside a run warns; an AppTest run resets this
    at.session_state["lang"] = lang
    at.session_state["username"] = username
    at.session_state["signed_in_at"] = datetime.now(UTC)
    if case and page == "person":
        at.session_state["case"] = case
    return at


def render(
    username: str,
    page: str,
    case: str | None,
    lang: str,
    sql: SqlLog,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """One render of a page in a new session; seconds, SQL, and whether it went wrong."""
    at = make_app(username, page, case, lang)
    with sql.recording() as stats, profiling(profile):
        started = time.perf_counter()
        error = None
        try:
            at.run()
        except Exception as exc:  # a timeout or a crash of the runner itself
            error = f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - started
    if error is None and at.exception:
        error = "; ".join(str(e.value)[:300] for e in at.exception)
    titles = [t.value for t in at.title] if error is None else []
    warnings = [str(w.value)[:200] for w in at.warning] + [str(e.value)[:200] for e in at.error]
    return {
        "seconds": seconds,
        "sql": SqlLog.summary(stats),
        "error": error,
        "title": titles[0] if titles else None,
        "warnings": warnings,
    }


@contextmanager
def profiling(profile: cProfile.Profile | None) -> Iterator[None]:
    """Profile the script thread AppTest starts (cProfile only sees its own thread)."""
    if profile is None:
        yield
        return
    from streamlit.testing.v1.local_script_runner import LocalScriptRunner

    original = LocalScriptRunner._run_script_thread

    def profiled(self: Any) -> None:
        profile.enable()
        try:
            original(self)
        finally:
            profile.disable()

    LocalScriptRunner._run_script_thread = profiled  # type: ignore[method-assign]
    try:
        yield
    finally:
        LocalScriptRunner._run_script_thread = original  # type: ignore[method-assign]


def profile_report(profile: cProfile.Profile, limit: int = 10) -> dict[str, Any]:
    """The project's own functions (tracker/, dashboard/) that took the most time, inclusive,
    and the time inside SQLite's cursor calls (execute and fetch)."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    functions, sqlite_calls = [], []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if name.startswith("<method '") and "sqlite3." in name:
            sqlite_calls.append(
                {"function": name, "calls": calls, "cumulative_s": round(cumtime, 3)}
            )
        elif name != "<module>" and (
            str(ROOT / "tracker") in filename or str(ROOT / "dashboard") in filename
        ):
            where = f"{Path(filename).relative_to(ROOT)}:{line}"
            functions.append(
                {
                    "function": f"{name} ({where})",
                    "calls": calls,
                    "cumulative_s": round(cumtime, 3),
                    "own_s": round(tottime, 3),
                }
            )
    functions.sort(key=lambda r: r["cumulative_s"], reverse=True)
    sqlite_calls.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return {"functions": functions[:limit], "sqlite": sqlite_calls[:4]}


def quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if len(ordered) == 1:
        return {"p50": ordered[0], "p95": ordered[0], "max": ordered[0]}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cuts[49], "p95": cuts[94], "max": ordered[-1]}


def quiet_streamlit() -> None:
    """Outside a script run, clearing the caches logs "missing ScriptRunContext" warnings."""
    from streamlit.logger import set_log_level

    set_log_level("ERROR")


def clear_data_caches() -> None:
    import streamlit as st

    quiet_streamlit()  # an AppTest run sets the log level back from the config
    st.cache_data.clear()  # st.cache_resource (the engines) is kept, as on a running server


def measure(
    role: str,
    username: str,
    page: str,
    case: str | None,
    runs: int,
    lang: str,
    sql: SqlLog,
    fresh: dict[str, Any] | None,
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    first = render(username, page, case, lang, sql)
    warm = [render(username, page, case, lang, sql) for _ in range(runs)]
    cleared = []
    for _ in range(runs):
        clear_data_caches()
        cleared.append(render(username, page, case, lang, sql))
    warm_q = quantiles([r["seconds"] for r in warm])
    cleared_q = quantiles([r["seconds"] for r in cleared])
    errors = sorted({r["error"] for r in [first, *warm, *cleared] if r["error"]})
    result: dict[str, Any] = {
        "page": page if page != "app" else f"app → {LANDING.get(username, '?')}",
        "role": role,
        "username": username,
        "case": case if page == "person" else None,
        "title": first["title"],
        "warnings": first["warnings"],
        "first_s": round(first["seconds"], 3),
        "next_s": round(warm[0]["seconds"], 3),
        "warm_p50_s": round(warm_q["p50"], 3),
        "warm_p95_s": round(warm_q["p95"], 3),
        "warm_max_s": round(warm_q["max"], 3),
        "cache_cleared_p50_s": round(cleared_q["p50"], 3),
        "cache_cleared_p95_s": round(cleared_q["p95"], 3),
        "fresh_process_s": round(fresh["seconds"], 3) if fresh else None,
        "first_sql": first["sql"],
        "warm_sql_seconds_p50": round(statistics.median(r["sql"]["seconds"] for r in warm), 3),
        "cache_cleared_sql": cleared[-1]["sql"],
        "fresh_process_sql": fresh["sql"] if fresh else None,
        "errors": errors,
        "load_1min_before": round(load_before, 2),
        "load_1min_after": round(os.getloadavg()[0], 2),
    }
    slowest = max(result["first_s"], result["warm_p50_s"], result["cache_cleared_p50_s"])
    if slowest > SLOW_SECONDS:
        # One more render with the data caches cleared, under cProfile, to say where time goes.
        profile = cProfile.Profile()
        clear_data_caches()
        profiled = render(username, page, case, lang, sql, profile)
        result["profile"] = {
            "seconds_under_profiler": round(profiled["seconds"], 3),
            "sql": profiled["sql"],
            "plans": sql.explain(),
            **profile_report(profile),
        }
    return result


# ---------------------------------------------------------------- a first render in a new process


def warm_up_streamlit(lang: str) -> float:
    """The first AppTest run of a process pays for Streamlit's own start (components, pyarrow);
    the sign-in page (no query) takes that, so the first render of each page is its own."""
    at = make_app("", "signin", None, lang)
    at.session_state["username"] = None
    started = time.perf_counter()
    at.run()
    return time.perf_counter() - started


def fresh_process_render(username: str, page: str, case: str | None, lang: str) -> dict[str, Any]:
    """The first render of one page in a new Python process, after a sign-in page render (so
    Streamlit's own start is not timed, but the page's imports, connection and caches are)."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        json.dumps({"username": username, "page": page, "case": case, "lang": lang}),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"seconds": float("nan"), "sql": None, "error": (done.stderr or done.stdout)[-800:]}
    return dict(json.loads(lines[-1]))


def child(spec: str) -> None:
    args = json.loads(spec)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import streamlit.testing.v1  # noqa: F401  (the test harness itself is not what is timed)

    sql = SqlLog()
    sql.attach()
    warm_up_streamlit(args["lang"])
    result = render(args["username"], args["page"], args["case"], args["lang"], sql)
    print(
        json.dumps({"seconds": result["seconds"], "sql": result["sql"], "error": result["error"]})
    )


# ---------------------------------------------------------------- report


def short_sql(sql: str, width: int = 160) -> str:
    text = re.sub(r"\s+", " ", sql)
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown(results: list[dict[str, Any]], people: int) -> str:
    head = (
        "| Page | Role | People | First s | Next s | Warm p50 s | Warm p95 s "
        "| Cache cleared p50 s | Fresh process s | SQL s (first) | Load 1 min | OK |"
    )
    lines = [head, "| " + " | ".join(["---"] * 12) + " |"]
    for r in results:
        fresh = "" if r["fresh_process_s"] is None else f"{r['fresh_process_s']:.2f}"
        ok = "yes" if not r["errors"] else "ERROR"
        lines.append(
            f"| {r['page']} | {r['role']} | {people:,} | {r['first_s']:.2f} | {r['next_s']:.2f} "
            f"| {r['warm_p50_s']:.2f} | {r['warm_p95_s']:.2f} | {r['cache_cleared_p50_s']:.2f} "
            f"| {fresh} | {r['first_sql']['seconds']:.3f} | {r['load_1min_after']:.1f} | {ok} |"
        )
    slow = [r for r in results if "profile" in r]
    if slow:
        lines += [
            "",
            f"Slow spots (a figure over {SLOW_SECONDS:g} s); one profiled render with "
            "the data caches cleared:",
        ]
        for r in slow:
            p = r["profile"]
            lines += [
                "",
                f"**{r['page']} as {r['username']}** ({p['seconds_under_profiler']:.2f}"
                f" s under cProfile, {p['sql']['seconds']:.2f} s in "
                f"{p['sql']['statements']} SQL statements)",
                "",
            ]
            for s in p["sql"]["top"][:3]:
                lines.append(f"- SQL {s['seconds']:.2f} s ×{s['count']}: `{short_sql(s['sql'])}`")
                plan = next((x["plan"] for x in p["plans"] if x["sql"] == s["sql"]), None)
                if plan:
                    lines.append(f"  - plan: `{short_sql('; '.join(plan), 240)}`")
            for f in p["functions"][:5]:
                lines.append(
                    f"- {f['function']}: {f['cumulative_s']:.2f} s cumulative, {f['calls']} calls"
                )
            if p["sqlite"]:
                lines.append(
                    "- inside SQLite: "
                    + ", ".join(
                        f"{c['function'].split(' of ')[0].strip('<')} {c['cumulative_s']:.2f} s"
                        for c in p["sqlite"]
                    )
                )
    errors = [r for r in results if r["errors"]]
    for r in errors:
        lines += ["", f"ERROR {r['page']} as {r['username']}: {r['errors'][0][:400]}"]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    try:  # read-only: which files differ from the commit (others may be editing them)
        dirty = subprocess.run(
            ["git", "diff", "--name-only", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split()
    except OSError:
        dirty = []
    import streamlit

    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "streamlit": streamlit.__version__,
        "commit": commit,
        "changed_files": dirty,
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=10_000, help="newcomers in the demo load")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="scratch data dir; an existing demo database there is reused "
        "(default /tmp/bench-dashboard-<people>)",
    )
    parser.add_argument("--runs", type=int, default=5, help="repeated renders per page")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--lang", default="de", choices=["de", "en"])
    parser.add_argument(
        "--no-fresh-process",
        action="store_true",
        help="skip the first render of each page in a new process",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.child:
        child(args.child)
        return

    data_dir = (args.data_dir or Path(f"/tmp/bench-dashboard-{args.people}")).resolve()
    database = prepare_database(data_dir, args.people)
    set_environment(data_dir)
    info = machine()
    quiet_streamlit()
    cases = pick_cases()
    sql = SqlLog()
    sql.attach()

    warm_up_seconds = warm_up_streamlit(args.lang)

    results = []
    for role, username, page in ENTRIES:
        case = cases.get(username) if page == "person" else None
        fresh = (
            None if args.no_fresh_process else fresh_process_render(username, page, case, args.lang)
        )
        result = measure(role, username, page, case, args.runs, args.lang, sql, fresh)
        if fresh and fresh.get("error"):
            result["errors"].append("fresh process: " + fresh["error"])
        results.append(result)
        print(
            f"{result['page']:28} {username:13} first {result['first_s']:6.2f} s  "
            f"warm p50 {result['warm_p50_s']:6.2f} s  cleared p50 "
            f"{result['cache_cleared_p50_s']:6.2f} s  load {result['load_1min_after']}",
            file=sys.stderr,
        )

    people = database["newcomers"] or args.people
    table = markdown(results, people)
    print(f"\n## Dashboard pages under AppTest, {people:,} newcomers (SQLite, {args.runs} runs)\n")
    print(
        f"Process warm-up (sign-in page, first AppTest run): {warm_up_seconds:.2f} s; "
        f"load average at start {info['load_avg_start']}, at end "
        f"{[round(x, 2) for x in os.getloadavg()]}; {info['cpus']} CPUs.\n"
    )
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "people": people,
                    "runs": args.runs,
                    "lang": args.lang,
                    "data_dir": str(data_dir),
                    "database": database,
                    "cases": cases,
                    "machine": info,
                    "load_avg_end": [round(x, 2) for x in os.getloadavg()],
                    "warm_up_seconds": round(warm_up_seconds, 3),
                    "slow_seconds": SLOW_SECONDS,
                    "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "pages": results,
                },
                indent=2,
                ensure_ascii=False,
            )
        )
        print(f"\nwrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
