"""End to end against a real `prefect server start`, the real flow-serving process and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e._servers import free_port, wait_for

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server on a free port, the flows serving, and a migrated SQLite tracker."""
    root = tmp_path_factory.mktemp("e2e")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
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
            "from tracker.db import get_database; from tracker.demo import ensure_demo_users;"
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
    flows = None
    try:
        wait_for(
            lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
            180,
            "the Prefect server",
        )
        flows = subprocess.Popen(
            [str(BIN / "onboarding-flows"), "serve"],
            env=env,
            stdout=(logs / "flows.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: len(httpx.post(f"{api}/deployments/filter", json={}, timeout=5).json()) >= 5,
            120,
            "the deployments",
        )
        yield env
    finally:
        for proc in (flows, server):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "onboarding"), *args], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, f"onboarding {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_journey_through_the_real_prefect_server(stack):
    env = stack
    made = json.loads(
        cli(
            env,
            "newcomer",
            "add",
            "--as",
            "cm.mueller",
            "--given-name",
            "Jan",
            "--family-name",
            "Nowak",
            "--nationality",
            "PL",
            "--json",
        )
    )
    ref = made["reference"]
    assert made["advance"] == "completed"
    for org in ("vbw", "stadt-bochum"):
        cli(env, "consent", "give", ref, org, "--as", "cm.mueller")
    # The first handoff appears in the housing company's queue.
    queue = json.loads(cli(env, "queue", "--as", "vbw.schulz", "--json"))
    assert [(q["reference"], q["step"], q["state"]) for q in queue] == [(ref, "housing", "offered")]
    cli(env, "handoff", "accept", ref, "housing", "--as", "vbw.schulz")
    out = cli(env, "handoff", "complete", ref, "housing", "--as", "vbw.schulz")
    assert "Open now: registration" in out
    queue = json.loads(cli(env, "queue", "--as", "stadt.weber", "--json"))
    assert [(q["reference"], q["step"]) for q in queue] == [(ref, "registration")]
    cli(env, "handoff", "accept", ref, "registration", "--as", "stadt.weber")
    cli(env, "handoff", "complete", ref, "registration", "--as", "stadt.weber")
    for step in ("tax_id", "bank_account", "health_insurance", "job_entry"):
        cli(env, "step", "complete", ref, step, "--as", "cm.mueller")
    view = json.loads(cli(env, "case", "show", ref, "--as", "cm.mueller", "--json"))
    assert view["status"] == "closed"

    api = env["PREFECT_API_URL"]
    runs = httpx.post(
        f"{api}/flow_runs/filter", json={"flow_runs": {"name": {"like_": ref}}}, timeout=10
    ).json()
    assert len(runs) >= 8
    assert {r["name"] for r in runs} == {f"advance {ref}"}
    assert all(r["state_type"] == "COMPLETED" for r in runs)
    assert all("pathway:eu_citizen" in r["tags"] for r in runs)
    assert all("Nowak" not in json.dumps(r) for r in runs)
    timeline = json.loads(cli(env, "case", "timeline", ref, "--as", "cm.mueller", "--json"))
    assert timeline[-1]["action"] == "case.closed"
    assert timeline[-1]["actor"] == "system:advance"

    # Erasing the person also removes the case's runs from Prefect's history.
    done = subprocess.run(
        [str(BIN / "onboarding"), "erase", ref, "--as", "admin", "--confirm", ref],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "flow runs of the case from Prefect" in done.stdout, done.stdout + done.stderr
    left = httpx.post(
        f"{api}/flow_runs/filter", json={"flow_runs": {"name": {"like_": ref}}}, timeout=10
    ).json()
    assert left == []


def test_changes_are_saved_when_prefect_is_down_and_the_sweep_catches_up(stack, tmp_path):
    env = {
        **stack,
        "ONBOARDING_PREFECT_API_URL": "http://127.0.0.1:9/api",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
    }
    done = subprocess.run(
        [
            str(BIN / "onboarding"),
            "newcomer",
            "add",
            "--as",
            "cm.mueller",
            "--given-name",
            "Ana",
            "--family-name",
            "Costa",
            "--nationality",
            "PT",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert made["advance"] == "unreachable"
    ref = made["reference"]
    view = json.loads(cli(stack, "case", "show", ref, "--as", "cm.mueller", "--json"))
    assert {s["state"] for s in view["steps"]} == {"pending"}  # saved, not yet advanced
    sweep = subprocess.run(
        [str(BIN / "onboarding-flows"), "sweep"],
        env={**stack, "ONBOARDING_CATCH_UP_GRACE_SECONDS": "0"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert sweep.returncode == 0, sweep.stderr
    assert json.loads(sweep.stdout.strip().splitlines()[-1])["caught_up"]["cases"] >= 1
    view = json.loads(cli(stack, "case", "show", ref, "--as", "cm.mueller", "--json"))
    assert [s["key"] for s in view["steps"] if s["state"] == "open"] == ["housing"]
