"""Shared pieces of the benchmarks: a scratch Prefect server, scratch databases, timers."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg

BIN = Path(sys.executable).parent
PG_ADMIN_DSN = os.environ.get("BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres")
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"

# What every Prefect process of the benchmark gets: quiet, local, nothing phones home.
QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_API_HOST": "127.0.0.1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def scratch_dir(keep: bool = False) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix=f"bench_{os.getpid()}_"))
    try:
        yield root
    finally:
        if keep:
            print(f"kept scratch files in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def scratch_pg_database(label: str) -> Iterator[str]:
    """A PostgreSQL database named after this process, dropped on exit; yields its name."""
    name = f"bench_{label}_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate one process we started, then kill it if it does not go."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def peak_rss_mib(pid: int) -> float | None:
    """The high-water mark of a running process's resident memory (Linux), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


class PrefectServer:
    """`prefect server start` on a free loopback port, backed by SQLite or a scratch PostgreSQL."""

    def __init__(self, root: Path, backend: str, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.backend = backend
        self.env = env or {}  # extra settings for the server process only
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.home = root / "prefect-home"
        self.log = root / "prefect-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    def client_env(self) -> dict[str, str]:
        """Environment for every client of this server (this process, the serving process)."""
        return {**QUIET, "PREFECT_HOME": str(self.home), "PREFECT_API_URL": self.api}

    @contextmanager
    def running(self) -> Iterator[PrefectServer]:
        env = {**os.environ, **self.client_env(), "PREFECT_UI_ENABLED": "false", **self.env}
        with self._database() as db_url:
            if db_url:
                env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = db_url
            started = time.perf_counter()
            command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1"]
            self.proc = subprocess.Popen(
                [*command, "--port", str(self.port)],
                env=env,
                stdout=self.log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for(self.healthy, 240, f"the Prefect server ({self.log})")
                self.startup_seconds = time.perf_counter() - started
                yield self
            finally:
                stop(self.proc)

    @contextmanager
    def _database(self) -> Iterator[str | None]:
        if self.backend == "sqlite":
            yield None
            return
        with scratch_pg_database("prefect") as name:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the Prefect server exited; see {self.log}")
        return httpx.get(f"{self.api}/health", timeout=2).status_code == 200

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def flow_runs(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        for start in range(0, len(ids), 200):
            chunk = list(ids[start : start + 200])
            runs += self.post(
                "/flow_runs/filter", {"flow_runs": {"id": {"any_": chunk}}, "limit": 200}
            )
        return runs

    def task_run_count(self, flow_run_ids: Sequence[str], settle: float = 3.0) -> int:
        """Task runs the server recorded for these flow runs, once the recorder has caught up."""
        last, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            count = 0
            for start in range(0, len(flow_run_ids), 200):
                chunk = list(flow_run_ids[start : start + 200])
                count += self.post("/task_runs/count", {"flow_runs": {"id": {"any_": chunk}}})
            if count != last:
                last, stable_since = count, time.monotonic()
            elif time.monotonic() - stable_since >= settle:
                return count
            time.sleep(0.5)
        return last

    def peak_rss_mib(self) -> float | None:
        return peak_rss_mib(self.proc.pid) if self.proc else None

    def log_count(self, text: str) -> int:
        """How many lines of the server's output contain ``text`` so far."""
        try:
            with self.log.open("rb") as out:
                return sum(text.encode() in line for line in out)
        except OSError:
            return 0


def summary(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, mean and max of per-case timings in milliseconds."""
    ordered = sorted(samples_ms)
    if len(ordered) == 1:
        only = ordered[0]
        return {"n": 1, "p50_ms": only, "p95_ms": only, "mean_ms": only, "max_ms": only}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "n": len(ordered),
        "p50_ms": round(cuts[49], 1),
        "p95_ms": round(cuts[94], 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
        "max_ms": round(ordered[-1], 1),
    }


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:,.1f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import platform

    import prefect
    import sqlalchemy

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "prefect": prefect.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
