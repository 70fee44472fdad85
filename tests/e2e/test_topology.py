"""The scale topology without Docker: a real `prefect server start` on PostgreSQL, two
`onboarding-flows worker` processes on one work pool, two `onboarding-flows tasks` processes
(the advance task's workers), the tracker on PostgreSQL, and an SMTP server that keeps every
message it is handed.

500 newcomers walk their pathways. This test plays the people (case managers and partners
complete and accept steps through the services, as the dashboard does); everything else runs in
the workers. Each case, once opened, asks for its advance the way the CLI does: a background
task queued in Prefect, which one of the two task workers runs at once. The rest of the changes
are advanced by the clock sweeps (which advance every case after each change, claiming cases
with ``FOR UPDATE SKIP LOCKED``), which also send reminders and escalations; the delivery of the
outbox is claimed the same way. The first sweeps start while the task workers are still busy
with the queued advances, and each round starts two sweeps and two deliveries at once, so the
workers do the same kind of work at the same moment. At the end:

- every queued advance ran exactly once, and both task workers ran some;
- no step was opened or finished twice, no handoff offered twice, every case closed once;
- every outbox message reached the SMTP server exactly once (none twice, none lost), and none
  is left waiting or parked;
- the audit trail has every event it should: one per case opened/closed, step opened/finished,
  handoff offered/accepted, and one per reminder or escalation, naming its message.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from tests.conftest import create_pg_database, drop_pg_database
from tests.e2e._servers import free_port, inherited_environ, wait_for
from tests.helpers import newcomer
from tests.test_smtp import Mailbox
from tracker.access import actor_for
from tracker.admin.organisations import seed_organisations
from tracker.db import Database
from tracker.demo.people import CASE_MANAGERS, PARTNER_BY_ORG, ensure_demo_users
from tracker.enums import ConsentMethod, HandoffState, Purpose, StepState
from tracker.journeys.background import reference_in
from tracker.journeys.cases import open_case, register_newcomer
from tracker.journeys.consent import give_consent
from tracker.journeys.handoffs import accept_handoff, complete_handoff
from tracker.journeys.steps import complete_step
from tracker.messages.senders import message_id_for
from tracker.migrate import upgrade
from tracker.models import AuditEvent, Case, Handoff, Organisation, OutboxMessage, Step

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
PEOPLE = int(os.environ.get("ONBOARDING_TOPOLOGY_PEOPLE", "500"))
POOL = "topology"
WORKERS = ("worker-a", "worker-b")
TASK_WORKERS = ("tasks-a", "tasks-b")
RECEIVERS = ["stadt-bochum", "ihk-mr", "afa-bochum", "vbw", "akafoe", "thga", "hwk-do"]
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SUBMITTED = re.compile(r"Worker '([\w-]+)' submitting flow run '([0-9a-f-]{36})'")
ABORTED = re.compile(r"Aborted submission of flow run '([0-9a-f-]{36})'")


@dataclass
class Topology:
    api: str
    tracker_url: str
    env: dict[str, str]
    logs: Path
    mailbox: Mailbox
    workers: dict[str, subprocess.Popen[bytes]]
    task_status: dict[str, int]  # each task worker's status port

    def deployment_id(self, name: str) -> str:
        response = httpx.get(f"{self.api}/deployments/name/{name}", timeout=30)
        response.raise_for_status()
        return str(response.json()["id"])

    def start(self, name: str, **parameters: Any) -> str:
        response = httpx.post(
            f"{self.api}/deployments/{self.deployment_id(name)}/create_flow_run",
            json={"parameters": parameters},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def runs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """These flow runs as the server has them, in one request."""
        response = httpx.post(
            f"{self.api}/flow_runs/filter",
            json={"flow_runs": {"id": {"any_": run_ids}}, "limit": len(run_ids)},
            timeout=30,
        )
        response.raise_for_status()
        return list(response.json())

    def wait(self, run_ids: list[str], timeout: float = 600) -> dict[str, str]:
        states: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.runs(run_ids):
                state = run["state"]
                if state and state["type"] in TERMINAL:
                    states[run["id"]] = f"{state['type']}: {state.get('message') or ''}"
            if len(states) == len(run_ids):
                return states
            for name, proc in self.workers.items():
                assert proc.poll() is None, f"{name} died:\n{self.log(name)[-3000:]}"
            time.sleep(1)
        raise AssertionError(
            f"flow runs not finished after {timeout} s: {set(run_ids) - set(states)}"
        )

    def task_runs(self, run_ids: list[str]) -> list[dict[str, Any]]:
        """These task runs as the server has them (200 to a request, the server's limit)."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(run_ids), 200):
            chunk = run_ids[start : start + 200]
            response = httpx.post(
                f"{self.api}/task_runs/filter",
                json={"task_runs": {"id": {"any_": chunk}}, "limit": len(chunk)},
                timeout=30,
            )
            response.raise_for_status()
            found += response.json()
        return found

    def finished_tasks(self, name: str) -> int:
        """How many task runs this task worker has finished (its status server says)."""
        response = httpx.get(f"http://127.0.0.1:{self.task_status[name]}/status", timeout=10)
        response.raise_for_status()
        return sum(response.json()["finished"].values())

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def runs_by_worker(self) -> dict[str, set[str]]:
        """Which worker ran each flow run: it logged the submission and was not turned away
        (a worker that asks for a run another worker has taken is refused by the server)."""
        ran: dict[str, set[str]] = {}
        for name in WORKERS:
            text = self.log(name)
            submitted = {run for worker, run in SUBMITTED.findall(text) if worker == name}
            ran[name] = submitted - set(ABORTED.findall(text))
        return ran


@pytest.fixture(scope="module")
def topology(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    problem = request.config._pg_problem  # type: ignore[attr-defined]
    if problem:
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    root = tmp_path_factory.mktemp("topology")
    suffix = f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"
    tracker_db, prefect_db = f"onboarding_topology_{suffix}", f"prefect_topology_{suffix}"
    tracker_url = create_pg_database(tracker_db)
    create_pg_database(prefect_db)
    upgrade(tracker_url)
    mailbox = Mailbox()
    smtp_port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **inherited_environ(),
        "ONBOARDING_DATABASE_URL": tracker_url,
        "ONBOARDING_DATA_DIR": str(root / "data"),
        "ONBOARDING_ORCHESTRATION": "prefect",
        "ONBOARDING_PREFECT_API_URL": api,
        "ONBOARDING_WORK_POOL": POOL,
        "ONBOARDING_SMTP_HOST": "127.0.0.1",
        "ONBOARDING_SMTP_PORT": str(smtp_port),
        # Every change is advanced by the next sweep, at once.
        "ONBOARDING_CATCH_UP_GRACE_SECONDS": "0",
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": (
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{prefect_db}"
        ),
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        # INFO: the workers log which flow runs they submit (read back by runs_by_worker).
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        # The scheduled deliveries run too, but less often than the test's own.
        "ONBOARDING_DELIVERY_INTERVAL_SECONDS": "300",
        "PREFECT_API_REQUEST_TIMEOUT": "120",
        "COLUMNS": "200",
    }
    logs = root / "logs"
    logs.mkdir()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["server"] = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=(logs / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        wait_for(
            lambda: httpx.get(f"{api}/health", timeout=5).status_code == 200,
            240,
            "the Prefect server",
        )
        deployed = subprocess.run(
            [str(BIN / "onboarding-flows"), "deploy"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert f"in work pool '{POOL}'" in deployed.stdout
        workers = {}
        for name in WORKERS:
            workers[name] = procs[name] = subprocess.Popen(
                [str(BIN / "onboarding-flows"), "worker", "--name", name, "--limit", "2"],
                env=env,
                stdout=(logs / f"{name}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        task_status = {}
        for name in TASK_WORKERS:
            task_status[name] = free_port()
            workers[name] = procs[name] = subprocess.Popen(
                [
                    str(BIN / "onboarding-flows"),
                    "tasks",
                    "--task-limit",
                    "4",
                    "--status-port",
                    str(task_status[name]),
                ],
                env=env,
                stdout=(logs / f"{name}.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
        topology = Topology(api, tracker_url, env, logs, mailbox, workers, task_status)
        wait_for(
            lambda: all(f"Worker '{n}' started" in topology.log(n) for n in WORKERS),
            180,
            "both workers",
        )
        wait_for(
            lambda: (
                all(topology.finished_tasks(n) == 0 for n in TASK_WORKERS)
                and len(httpx.post(f"{api}/task_workers/filter", json={}, timeout=5).json()) == 2
            ),
            180,
            "both task workers subscribed",
        )
        yield topology
    finally:
        for proc in reversed(list(procs.values())):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        smtp.stop()
        drop_pg_database(tracker_db)
        drop_pg_database(prefect_db)


def _letters(number: int) -> str:
    """A name part from a number (names take letters only): 0 -> "Aa", 27 -> "Bb" ..."""
    word = ""
    number += 26
    while number:
        number, rest = divmod(number, 26)
        word = "abcdefghijklmnopqrstuvwxyz"[rest] + word
    return word.capitalize()


def _register(db: Database, people: int) -> dict[str, str]:
    """People of all three pathways, consenting to every partner. Each case, once opened and
    committed, asks for its advance as the dashboard does (``request_advance_soon``: a thread
    queues the background task in Prefect while the next person is registered). Returns each
    case's reference with its task run's id.

    Runs in a process of its own with the topology's environment (Prefect mode, this Prefect
    server), see ``_register_in_a_process``."""
    from tracker.journeys.orchestration import AdvanceRequest, request_advance_soon

    with db.read() as s:
        managers = [actor_for(s, name) for name in CASE_MANAGERS]
    profiles = [
        {"nationality": "IN", "purpose": Purpose.work},  # skilled worker
        {"nationality": "PL", "purpose": Purpose.work},  # EU citizen
        {"nationality": "VN", "purpose": Purpose.study},  # student
    ]
    asked: list[Future[AdvanceRequest]] = []
    for i in range(people):
        manager = managers[i % len(managers)]
        with db.transaction() as s:
            person = register_newcomer(
                s,
                actor=manager,
                data=newcomer(
                    given_name=_letters(i),
                    family_name="Topologie",
                    email=f"person{i}@example.invalid",
                    preferred_language=("de", "en", "ar")[i % 3],
                    **profiles[i % len(profiles)],
                ),
            )
            case = open_case(s, actor=manager, newcomer_id=person.id)
            for org in RECEIVERS:
                give_consent(
                    s,
                    actor=manager,
                    reference=case.reference,
                    organisation=org,
                    method=ConsentMethod.signed_form,
                    notice_language="de",
                )
        asked.append(request_advance_soon(case.reference, db=db))
    queued: dict[str, str] = {}
    for future in asked:
        request = future.result()
        if request.state != "scheduled" or len(request.run_ids) != 1:
            raise RuntimeError(f"{request.references}: {request.state}: {request.message}")
        queued[request.references[0]] = request.run_ids[0]
    return queued


def _register_in_a_process(topology: Topology, people: int) -> dict[str, str]:
    """``_register`` in a fresh interpreter with the topology's environment, as the CLI or the
    dashboard would queue the advances; the case references with their task run ids."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys\n"
            "from tests.e2e.test_topology import _register\n"
            "from tracker.db import Database\n"
            "queued = _register(Database(sys.argv[1]), int(sys.argv[2]))\n"
            "print(json.dumps(queued))",
            topology.tracker_url,
            str(people),
        ],
        env=topology.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    # Prefect's own shutdown noise can follow the error; show the error lines first.
    errors = [
        line for line in done.stderr.splitlines() if "Error" in line and "prefect" not in line
    ]
    assert done.returncode == 0, "\n".join(errors[:20]) + done.stdout[-2000:] + done.stderr[-2000:]
    (topology.logs / "register.log").write_text(done.stderr)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _work_open_steps(db: Database, round_: int) -> int:
    """What the people do between two sweeps: partners accept what was handed to them and finish
    it; case managers finish the steps nobody was handed. About one step in seven waits for the
    next round (a different one each round), so the sweeps always find open steps to remind
    about and escalate. Returns the steps finished."""
    with db.read() as s:
        rows = s.execute(
            select(
                Step.id,
                Case.reference,
                Step.key,
                Organisation.key,
                Handoff.state,
                Case.case_manager_id,
            )
            .join(Case, Step.case_id == Case.id)
            .join(Organisation, Step.owner_org_id == Organisation.id)
            .outerjoin(
                Handoff,
                (Handoff.step_id == Step.id)
                & Handoff.state.in_([HandoffState.offered, HandoffState.accepted]),
            )
            .where(Step.state.in_([StepState.open, StepState.in_progress]))
            .order_by(Step.id)
        ).all()
        actors = {name: actor_for(s, name) for name in [*CASE_MANAGERS, *PARTNER_BY_ORG.values()]}
        managers = {a.user_id: a for a in actors.values() if a.username in CASE_MANAGERS}
    rows = [row for row in rows if (row[0] + round_) % 7]
    for _, reference, step_key, owner, handoff, manager_id in rows:
        with db.transaction() as s:
            if handoff is None:
                complete_step(s, actor=managers[manager_id], reference=reference, step_key=step_key)
                continue
            partner = actors[PARTNER_BY_ORG[owner]]
            if handoff == HandoffState.offered:
                accept_handoff(s, actor=partner, reference=reference, step_key=step_key)
            complete_handoff(s, actor=partner, reference=reference, step_key=step_key)
    return len(rows)


def _count(db: Database, stmt: Any) -> Counter[Any]:
    with db.read() as s:
        return Counter(tuple(row) for row in s.execute(stmt))


def test_two_workers_move_500_newcomers_without_double_work_or_lost_messages(topology):
    db = Database(topology.tracker_url)
    with db.transaction() as s:
        seed_organisations(s)
        ensure_demo_users(s)
        # Every organisation and person has an address, so no message is parked for want of one.
        s.execute(update(Organisation).values(email=Organisation.key + "@example.invalid"))
    advances = _register_in_a_process(topology, PEOPLE)
    assert len(advances) == PEOPLE and len(set(advances.values())) == PEOPLE

    run_ids: list[str] = []
    rounds = 0
    while True:
        with db.read() as s:
            open_cases = s.scalar(
                select(func.count()).select_from(Case).where(Case.closed_at.is_(None))
            )
            first_due = s.scalar(
                select(func.min(Step.due_date)).where(
                    Step.state.in_([StepState.open, StepState.in_progress])
                )
            )
        if not open_cases:
            break
        rounds += 1
        assert rounds <= 20, f"{open_cases} cases still open after 20 rounds"
        # The sweeps look at today, or at a day on which the first open step is due soon
        # (reminders to partners) or overdue (escalations to case managers).
        day = None
        if first_due is not None and rounds % 3:
            day = (first_due + timedelta(days=-1 if rounds % 3 == 1 else 1)).isoformat()
        parameters = {"day": day} if day else {}
        batch = [
            topology.start("clock-sweep/clock-sweep", **parameters),
            topology.start("deliver-outbox/deliver-outbox", limit=400),
            topology.start("clock-sweep/clock-sweep", **parameters),
            topology.start("deliver-outbox/deliver-outbox", limit=400),
        ]
        run_ids += batch
        states = topology.wait(batch)
        assert all(v.startswith("COMPLETED") for v in states.values()), states
        _work_open_steps(db, rounds)

    # Deliver what is left, in both workers, until the outbox is empty (it may be already).
    leftover: dict[str, str] = {}
    for _ in range(20):
        with db.read() as s:
            waiting = s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status != "sent")
            )
        if not waiting:
            break
        batch = [topology.start("deliver-outbox/deliver-outbox", limit=1000) for _ in WORKERS]
        run_ids += batch
        leftover.update(topology.wait(batch))
    assert all(v.startswith("COMPLETED") for v in leftover.values()), leftover

    # Both workers took part, in sweeps and in deliveries, and no run ran twice.
    ran = topology.runs_by_worker()
    assert not (ran["worker-a"] & ran["worker-b"]), "a flow run ran in both workers"
    names = {run["id"]: run["deployment_id"] for run in topology.runs(run_ids)}
    sweep, delivery = (
        topology.deployment_id("clock-sweep/clock-sweep"),
        topology.deployment_id("deliver-outbox/deliver-outbox"),
    )
    for worker in WORKERS:
        kinds = {names[r] for r in ran[worker] if r in names}
        assert {sweep, delivery} <= kinds, f"{worker} ran {len(ran[worker])} runs: {kinds}"
    assert set(run_ids) <= ran["worker-a"] | ran["worker-b"]

    with db.read() as s:
        cases = s.execute(select(Case.id, Case.status)).all()
        steps = s.execute(select(Step.id, Step.state)).all()
        handoffs = s.execute(select(Handoff.id, Handoff.state)).all()
        outbox = s.execute(
            select(OutboxMessage.idempotency_key, OutboxMessage.status, OutboxMessage.kind)
        ).all()
    assert len(cases) == PEOPLE and {str(c.status) for c in cases} == {"closed"}
    assert {str(st.state) for st in steps} <= {"done", "skipped"}

    # No step advanced twice: one "opened" and one "completed" per step, one offer per handoff.
    def per_entity(*actions: str) -> Counter[Any]:
        return _count(
            db,
            select(AuditEvent.entity_id, AuditEvent.action).where(AuditEvent.action.in_(actions)),
        )

    step_events = per_entity("step.opened", "step.completed")
    assert max(step_events.values()) == 1, "a step was opened or completed twice"
    assert {e for e, _ in step_events} == {st.id for st in steps}
    assert len(step_events) == 2 * len(steps)
    case_events = per_entity("case.opened", "case.closed")
    assert max(case_events.values()) == 1 and len(case_events) == 2 * PEOPLE
    handoff_events = per_entity("handoff.offered", "handoff.accepted")
    assert max(handoff_events.values()) == 1
    assert len(handoff_events) == 2 * len(handoffs)
    assert {str(h.state) for h in handoffs} == {"completed"}
    assert len(handoffs) >= PEOPLE  # every pathway hands steps to partners

    # No message sent twice or lost: each outbox row reached the SMTP server exactly once.
    assert outbox, "the outbox stayed empty"
    assert {str(m.status) for m in outbox} == {"sent"}
    received = topology.mailbox.message_ids()
    doubled = {k: n for k, n in received.items() if n > 1}
    assert not doubled, f"{len(doubled)} messages arrived more than once"
    expected = {message_id_for(m.idempotency_key) for m in outbox}
    assert set(received) == expected, (
        f"lost: {len(expected - set(received))}, unknown: {len(set(received) - expected)}"
    )
    kinds = Counter(str(m.kind) for m in outbox)
    assert kinds["escalation"] > 0 and kinds["reminder"] > 0, kinds
    assert kinds["handoff_offered"] > 0 and kinds["case_closed"] == PEOPLE, kinds

    # The audit trail is complete: one event per reminder and escalation, naming its message.
    with db.read() as s:
        clock_keys = Counter(
            s.scalars(
                select(AuditEvent.details["message_key"].as_string()).where(
                    AuditEvent.action.in_(["clock.reminder", "clock.escalation"])
                )
            )
        )
    queued = {m.idempotency_key for m in outbox if str(m.kind) in {"reminder", "escalation"}}
    assert max(clock_keys.values()) == 1 and set(clock_keys) == queued

    # Every queued advance ran, once, in one of the two task workers, and both took part.
    runs = topology.task_runs(list(advances.values()))
    assert len(runs) == PEOPLE
    assert Counter(r["state_type"] for r in runs) == {"COMPLETED": PEOPLE}
    assert {r["id"]: reference_in(r["tags"]) for r in runs} == {v: k for k, v in advances.items()}
    assert {r["name"] for r in runs} == {f"advance {ref}" for ref in advances}
    assert {r["run_count"] for r in runs} == {1}
    finished = {name: topology.finished_tasks(name) for name in TASK_WORKERS}
    assert sum(finished.values()) == PEOPLE and min(finished.values()) > 0, finished
    # A case's advances are found by its tag, as the case page and erasure find them.
    for ref in sorted(advances)[:: max(1, PEOPLE // 5)]:
        tagged = httpx.post(
            f"{topology.api}/task_runs/filter",
            json={"task_runs": {"tags": {"all_": [f"case:{ref}"]}}},
            timeout=30,
        ).json()
        assert [(r["id"], r["state_type"]) for r in tagged] == [(advances[ref], "COMPLETED")]
