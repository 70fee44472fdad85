"""End to end against a real `prefect server start` (SQLite), `onboarding-flows serve` (the
deployments and the advance task's worker in one process) and the CLI, all as subprocesses.

After each change the CLI queues the case's advance as a Prefect background task and returns;
the serving process's task worker runs it. Prefect learns the case reference and nothing else.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e._servers import free_port, inherited_environ, wait_for

BIN = Path(sys.executable).parent
# Distinctive names: neither may turn up anywhere in Prefect's records.
GIVEN, FAMILY = "Gwendolyn", "Przybyszewska"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
GRACE = 20  # seconds the serving process has to stop after SIGTERM


@dataclass
class Stack:
    env: dict[str, str]
    api: str
    data: Path
    logs: Path
    serving: subprocess.Popen[bytes]

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def task_runs(self, reference: str) -> list[dict[str, Any]]:
        """The task runs tagged with this case, as the issue asks Prefect for them."""
        return list(
            self.post("/task_runs/filter", {"task_runs": {"tags": {"all_": [f"case:{reference}"]}}})
        )

    def task_run(self, run_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/task_runs/{run_id}", timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def everything(self) -> dict[str, list[Any]]:
        """All task runs, flow runs, events and logs the Prefect server holds."""

        def paged(path: str) -> list[Any]:
            found: list[Any] = []
            while page := self.post(path, {"limit": 200, "offset": len(found)}):
                found += page
            return found

        events: list[Any] = []
        page = self.post("/events/filter", {"limit": 50})
        while True:
            events += page["events"]
            if not page.get("next_page"):
                break
            response = httpx.get(page["next_page"], timeout=30)
            response.raise_for_status()
            page = response.json()
        return {
            "task_runs": paged("/task_runs/filter"),
            "flow_runs": paged("/flow_runs/filter"),
            "logs": paged("/logs/filter"),
            "events": events,
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Prefect server on a free port, `onboarding-flows serve`, and a migrated SQLite tracker.

    The last test stops the serving process itself (SIGTERM); the teardown only cleans up."""
    root = tmp_path_factory.mktemp("e2e")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **inherited_environ(),
        "ONBOARDING_DATA_DIR": str(root / "data"),
        "ONBOARDING_ORCHESTRATION": "prefect",
        "ONBOARDING_PREFECT_API_URL": api,
        "ONBOARDING_ADVANCE_WAIT_SECONDS": "60",
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "COLUMNS": "200",
    }
    env.pop("ONBOARDING_DATABASE_URL", None)
    subprocess.run(
        [str(BIN / "onboarding"), "db", "upgrade"], env=env, check=True, capture_output=True
    )
    # Users only: the demo's own newcomers would make the queues harder to read.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from tracker.db import get_database\n"
            "from tracker.demo.people import ensure_demo_users\n"
            "db = get_database();\nwith db.transaction() as s: ensure_demo_users(s)",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    logs = root / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(logs / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    serving = None
    try:
        wait_for(
            lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
            180,
            "the Prefect server",
        )
        serving = subprocess.Popen(
            [str(BIN / "onboarding-flows"), "serve"],
            env=env,
            stdout=(logs / "serve.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: len(httpx.post(f"{api}/deployments/filter", json={}, timeout=5).json()) >= 5,
            120,
            "the deployments",
        )
        # The task worker is up once it has subscribed with the advance task's key.
        wait_for(
            lambda: httpx.post(f"{api}/task_workers/filter", json={}, timeout=5).json(),
            120,
            "the advance task worker",
        )
        yield Stack(env, api, root / "data", logs, serving)
    finally:
        for proc in (serving, server):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=GRACE)
                except subprocess.TimeoutExpired:
                    proc.kill()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "onboarding"), *args], env=env, capture_output=True, text=True, timeout=180
    )


def cli(env: dict[str, str], *args: str) -> str:
    done = run(env, *args)
    assert done.returncode == 0, f"onboarding {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def queue(env: dict[str, str], user: str) -> list[tuple[str, str, str]]:
    return [
        (q["reference"], q["step"], q["state"])
        for q in json.loads(cli(env, "queue", "--as", user, "--json"))
    ]


def python(env: dict[str, str], code: str, *args: str) -> Any:
    """Run ``code`` in a fresh interpreter with the stack's environment; its JSON output."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_journey_through_the_real_prefect_server(stack):
    env, api = stack.env, stack.api
    changes = 0  # each change queues exactly one advance
    made = json.loads(
        cli(
            env,
            *("newcomer", "add", "--as", "cm.mueller", "--given-name", GIVEN),
            *("--family-name", FAMILY, "--nationality", "PL", "--json"),
        )
    )
    changes += 1
    ref = made["reference"]
    assert made["advance"] == "scheduled"  # queued; the task worker runs it
    cli(env, "consent", "give", ref, "vbw", "--as", "cm.mueller")
    # --wait: the housing step must be handed to the housing company before the next command.
    out = cli(env, "consent", "give", ref, "stadt-bochum", "--as", "cm.mueller", "--wait")
    changes += 2
    assert "Open now: housing" in out, out
    assert queue(env, "vbw.schulz") == [(ref, "housing", "offered")]
    out = cli(env, "handoff", "accept", ref, "housing", "--as", "vbw.schulz")
    assert "housing accepted" in out
    # Without --wait the command returns once the change is saved ...
    out = cli(env, "handoff", "complete", ref, "housing", "--as", "vbw.schulz")
    changes += 2
    assert "Saved; the next steps are being opened." in out, out
    assert "Open now" not in out
    # ... and the next step is handed on shortly after, by the task worker.
    opened = wait_for(
        lambda: queue(env, "stadt.weber"), 180, "the registration step in the city's queue"
    )
    assert opened == [(ref, "registration", "offered")]
    cli(env, "handoff", "accept", ref, "registration", "--as", "stadt.weber")
    out = cli(env, "handoff", "complete", ref, "registration", "--as", "stadt.weber", "--wait")
    changes += 2
    assert "Open now: " in out and "tax_id" in out, out
    for step in ("tax_id", "bank_account", "health_insurance", "job_entry"):
        out = cli(env, "step", "complete", ref, step, "--as", "cm.mueller", "--wait")
        changes += 1
        assert f"{step} done." in out and "Open now: " in out, out
    assert "Open now: nothing – the case is closed" in out
    view = json.loads(cli(env, "case", "show", ref, "--as", "cm.mueller", "--json"))
    assert view["status"] == "closed"
    assert FAMILY in json.dumps(view)  # the tracker has the name; Prefect must not
    timeline = json.loads(cli(env, "case", "timeline", ref, "--as", "cm.mueller", "--json"))
    assert timeline[-1]["action"] == "case.closed"
    assert timeline[-1]["actor"] == "system:advance"

    # Each change left one advance task run, found by the case's tag. Its state (and the name
    # the worker gives it) reach the server as events, so they may lag a moment.
    runs = wait_for(
        lambda: (
            (runs := stack.task_runs(ref))
            and len(runs) >= changes
            and all(r["state_type"] in FINAL for r in runs)
            and runs
        ),
        180,
        "the advance task runs to be recorded as finished",
    )
    assert len(runs) == changes, [(r["name"], r["state_type"]) for r in runs]
    assert {r["state_type"] for r in runs} == {"COMPLETED"}
    assert {r["name"] for r in runs} == {f"advance {ref}"}
    assert {r["flow_run_id"] for r in runs} == {None}  # background tasks, no flow run around
    for tag in (f"case:{ref}", "pathway:eu_citizen", "partner:vbw", "partner:stadt-bochum"):
        assert all(tag in r["tags"] for r in runs), (tag, [r["tags"] for r in runs])

    # No personal name anywhere in Prefect: runs, events and logs. The events of the runs are
    # recorded asynchronously, so wait for the last run's to be there before looking.
    wait_for(
        lambda: f"advance {ref}" in json.dumps(stack.everything()["events"]),
        180,
        "the advance runs' events",
    )
    records = stack.everything()
    assert records["task_runs"] and records["events"]
    dump = json.dumps(records).lower()
    assert ref.lower() in dump  # what Prefect knows is the reference ...
    assert GIVEN.lower() not in dump and FAMILY.lower() not in dump  # ... never the name
    assert all(GIVEN not in json.dumps(v) and FAMILY not in json.dumps(v) for v in records.values())

    # The case page's link to Prefect: every advance, at its task run page in the UI.
    listed = python(
        env,
        "import json, sys\n"
        "from tracker.journeys.orchestration import case_runs\n"
        "print(json.dumps(case_runs(sys.argv[1])))",
        ref,
    )
    ui = api.removesuffix("/api")
    assert sorted(r["url"] for r in listed) == sorted(f"{ui}/runs/task-run/{r['id']}" for r in runs)
    assert {r["name"] for r in listed} == {f"advance {ref}"}
    assert {r["state"] for r in listed} == {"Completed"}

    # Erasing the person also removes the case's runs from Prefect's history.
    out = cli(env, "erase", ref, "--as", "admin", "--confirm", ref)
    assert f"Removed {changes} runs of the case from Prefect's history." in out, out
    assert stack.task_runs(ref) == []
    assert stack.post("/flow_runs/filter", {"flow_runs": {"name": {"like_": ref}}}) == []


def test_changes_are_saved_when_prefect_is_down_and_the_sweep_catches_up(stack):
    env = {
        **stack.env,
        "ONBOARDING_PREFECT_API_URL": "http://127.0.0.1:9/api",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }
    done = run(
        env,
        *("newcomer", "add", "--as", "cm.mueller", "--given-name", "Ana"),
        *("--family-name", "Costa", "--nationality", "PT", "--json"),
    )
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["advance"] == "unreachable"
    ref = made["reference"]
    view = json.loads(cli(stack.env, "case", "show", ref, "--as", "cm.mueller", "--json"))
    assert {s["state"] for s in view["steps"]} == {"pending"}  # saved, not yet advanced
    sweep = subprocess.run(
        [str(BIN / "onboarding-flows"), "sweep"],
        env={**stack.env, "ONBOARDING_CATCH_UP_GRACE_SECONDS": "0"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert sweep.returncode == 0, sweep.stderr
    assert json.loads(sweep.stdout.strip().splitlines()[-1])["caught_up"]["cases"] >= 1
    view = json.loads(cli(stack.env, "case", "show", ref, "--as", "cm.mueller", "--json"))
    assert [s["key"] for s in view["steps"] if s["state"] == "open"] == ["housing"]


def test_the_serving_process_finishes_its_advance_and_stops_on_sigterm(stack):
    """Runs last: it stops the module's serving process.

    An advance is held in flight (the tracker's database is locked, so its transaction waits)
    when SIGTERM arrives; the process lets it finish, then exits cleanly, and no advance is
    left Running in Prefect."""
    env, serving = stack.env, stack.serving
    assert serving.poll() is None, "the serving process died early"
    away = {**env, "ONBOARDING_PREFECT_API_URL": "http://127.0.0.1:9/api"}
    made = json.loads(
        run(
            away,
            *("newcomer", "add", "--as", "cm.mueller", "--given-name", "Ines"),
            *("--family-name", "Moreira", "--nationality", "PT", "--json"),
        ).stdout
    )
    ref = made["reference"]
    assert made["advance"] == "unreachable"  # saved with nothing open: the advance has work

    lock = sqlite3.connect(stack.data / "onboarding.db", isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the advance's own BEGIN IMMEDIATE now waits
        run_id = python(
            env,
            "import json, sys\n"
            "from tracker.journeys.orchestration import queue_advance, use_prefect_environment\n"
            "use_prefect_environment()\n"
            "print(json.dumps(queue_advance(sys.argv[1])))",
            ref,
        )
        wait_for(
            lambda: stack.task_run(run_id)["state_type"] == "RUNNING",
            180,
            "the advance to be running",
        )
        serving.send_signal(signal.SIGTERM)
        time.sleep(1)  # the process has the signal while its advance still waits
    finally:
        if lock.in_transaction:
            lock.rollback()
        lock.close()
    try:
        code = serving.wait(timeout=GRACE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"onboarding-flows serve still running {GRACE} s after SIGTERM")
    log = (stack.logs / "serve.log").read_text(errors="replace")
    assert code == 0, f"exit code {code}\n{log[-3000:]}"
    # The advance's last state reaches the server as an event, sent before the process ended.
    state = wait_for(
        lambda: (s := stack.task_run(run_id)["state_type"]) in FINAL and s,
        120,
        "the advance's final state",
    )
    assert state == "COMPLETED", log[-3000:]
    view = json.loads(cli(env, "case", "show", ref, "--as", "cm.mueller", "--json"))
    assert [s["key"] for s in view["steps"] if s["state"] == "open"] == ["housing"]
    running = stack.post(
        "/task_runs/filter",
        {"task_runs": {"name": {"like_": "advance"}, "state": {"type": {"any_": ["RUNNING"]}}}},
    )
    assert running == []
