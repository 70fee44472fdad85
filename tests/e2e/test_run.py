"""`onboarding run` (what `make run` ends in) for real: the Prefect server, the flows with the
advance task worker, and the dashboard come up; a change made through the CLI is advanced by
that worker; Ctrl-C stops everything, the server last."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e._servers import free_port, inherited_environ, wait_for

BIN = Path(sys.executable).parent


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "onboarding"), *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"onboarding {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_onboarding_run_serves_the_advance_task_and_stops_cleanly(tmp_path):
    port, dashboard_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **inherited_environ(),
        "ONBOARDING_DATA_DIR": str(tmp_path / "data"),
        "ONBOARDING_ORCHESTRATION": "prefect",
        "ONBOARDING_PREFECT_API_URL": api,
        "ONBOARDING_DASHBOARD_PORT": str(dashboard_port),
        "PREFECT_API_URL": api,
        "COLUMNS": "200",
        # A loaded CI machine may take longer than the operator's default to run the advance.
        "ONBOARDING_ADVANCE_WAIT_SECONDS": "90",
    }
    for name in ("ONBOARDING_DATABASE_URL", "PREFECT_HOME"):
        env.pop(name, None)
    _cli(env, "db", "upgrade")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from tracker.db import get_database\n"
            "from tracker.demo.people import ensure_demo_users\n"
            "db = get_database()\nwith db.transaction() as s: ensure_demo_users(s)",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    log = tmp_path / "run.log"
    run = subprocess.Popen(
        [str(BIN / "onboarding"), "run"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200, 180, "Prefect")
        wait_for(
            lambda: (
                httpx.get(f"http://127.0.0.1:{dashboard_port}/_stcore/health", timeout=2).text
                == "ok"
            ),
            120,
            "the dashboard",
        )
        # The flows process has connected a task worker for the advance task.
        workers: list[dict[str, object]] = []

        def connected() -> bool:
            workers[:] = httpx.post(f"{api}/task_workers/filter", json={}, timeout=5).json()
            return any(str(key).startswith("advance-") for w in workers for key in w["task_keys"])

        wait_for(connected, 120, "the advance task worker")
        assert len(workers) == 1

        made = json.loads(
            _cli(
                env,
                "newcomer",
                "add",
                "--as",
                "cm.mueller",
                "--given-name",
                "Lauf",
                "--family-name",
                "Probe",
                "--nationality",
                "PL",
                "--json",
                "--wait",
            )
        )
        assert made["advance"] == "completed", (made, log.read_text(errors="replace")[-4000:])
        view = json.loads(
            _cli(env, "case", "show", made["reference"], "--as", "cm.mueller", "--json")
        )
        assert [s["key"] for s in view["steps"] if s["state"] == "open"] == ["housing"]
    finally:
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group, not only to
        # the launcher (each child has a group of its own, so the launcher stops them in order).
        os.killpg(run.pid, signal.SIGINT)
        try:
            code = run.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            raise
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert "stopping …" in text
    # Every child is gone with it (the whole session: server, flows, dashboard).
    left = subprocess.run(["pgrep", "-s", str(run.pid)], capture_output=True, text=True).stdout
    assert left.strip() == "", f"left running: {left}"
    # The server stopped last: nothing lost its connection to it on the way down.
    assert "ConnectionClosedError" not in text, text
    assert "Traceback" not in text, text
    # One sign-in table, one set of addresses: Prefect's banner went to its log file.
    assert text.count("Demo sign-ins") == 1, text
    assert "Check out the dashboard" not in text, text
    server_log = (tmp_path / "data" / "logs" / "prefect-server.log").read_text(errors="replace")
    assert "Check out the dashboard" in server_log
    assert f"prefect log     {tmp_path / 'data' / 'logs' / 'prefect-server.log'}" in text
