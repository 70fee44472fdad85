"""The flows under Prefect's test harness: real runs, real database, nothing repeated on re-run."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import NOW
from tests.helpers import PARTNERS, advance_task, start_case
from tracker.config import get_settings
from tracker.db import get_database
from tracker.enums import ConsentMethod
from tracker.journeys import queries
from tracker.journeys.cases import open_case, register_newcomer
from tracker.journeys.consent import give_consent
from tracker.journeys.orchestration import BATCH_DEPLOYMENT
from tracker.journeys.steps import complete_step
from tracker.models import AuditEvent, Case, Handoff, OutboxMessage
from tracker.schemas import NewcomerIn

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def flow_db(db, monkeypatch, tmp_path):
    """Point the flows (which find the database through the settings) at the test database."""
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_MAIL_DIR", str(tmp_path / "mail"))
    monkeypatch.setenv("ONBOARDING_CATCH_UP_GRACE_SECONDS", "0")
    get_settings.cache_clear()
    get_database.cache_clear()
    yield db
    get_database.cache_clear()
    get_settings.cache_clear()


def _open(db, manager, *, consent_to=PARTNERS, **facts) -> str:
    """Open a case without advancing it: that is the flow's job."""
    data = {"given_name": "Amara", "family_name": "Okafor", "nationality": "NG", **facts}
    with db.transaction() as s:
        person = register_newcomer(s, actor=manager, data=NewcomerIn.model_validate(data), now=NOW)
        ref = open_case(s, actor=manager, newcomer_id=person.id, now=NOW).reference
    for org in consent_to:
        with db.transaction() as s:
            give_consent(
                s,
                actor=manager,
                reference=ref,
                organisation=org,
                method=ConsentMethod.signed_form,
                notice_language="en",
                now=NOW,
            )
    return ref


def _counts(db):
    with db.read() as s:
        return {
            "audit": s.scalar(select(func.count()).select_from(AuditEvent)),
            "handoffs": s.scalar(select(func.count()).select_from(Handoff)),
            "outbox": s.scalar(select(func.count()).select_from(OutboxMessage)),
        }


def _states(db, actor, ref):
    with db.read() as s:
        return {st.key: st.state for st in queries.case_view(s, actor=actor, reference=ref).steps}


def test_the_advance_task_opens_the_first_steps_and_a_second_run_changes_nothing(flow_db, actors):
    cm = actors["cm.mueller"]
    ref = _open(flow_db, cm)
    assert _states(flow_db, cm, ref)["recognition"] == "pending"
    state = advance_task(ref)
    assert state.is_completed()
    assert state.result() == {
        "reference": ref,
        "opened": ["recognition", "job_offer"],
        "closed": False,
    }
    with flow_db.read() as s:
        queue = queries.partner_queue(s, actor=actors["ihk.hoffmann"])
    assert [(q.reference, q.step) for q in queue] == [(ref, "recognition")]
    before = _counts(flow_db)
    again = advance_task(ref)
    assert again.result()["opened"] == []
    assert _counts(flow_db) == before


def test_a_crash_halfway_leaves_the_case_as_it_was_and_the_sweep_finishes_it(
    flow_db, actors, monkeypatch
):
    """The advance is one transaction: a task that dies after opening one step (flushed, not
    committed) leaves nothing of it, keeps the case's request, and the sweep opens each step
    once."""
    import tracker.journeys.advance as advance_rules
    from flows.clocks import clock_sweep

    cm = actors["cm.mueller"]
    ref = _open(flow_db, cm)
    real = advance_rules.handoff_announcement
    calls = Counter()

    def crash_on_job_offer(new, now):
        # By now the opened steps and their handoffs are written (not committed) ...
        calls[new.step_key] += 1
        if new.step_key == "job_offer":
            raise RuntimeError("worker lost mid-run")
        return real(new, now)

    monkeypatch.setattr(advance_rules, "handoff_announcement", crash_on_job_offer)
    state = advance_task(ref)
    assert state.is_failed()
    assert calls == {"recognition": 1, "job_offer": 1}
    half = _states(flow_db, cm, ref)
    assert (half["recognition"], half["job_offer"]) == ("pending", "pending")  # ... and undone
    with flow_db.read() as s:
        failures = s.execute(
            select(AuditEvent.action, AuditEvent.case_id, AuditEvent.details).where(
                AuditEvent.action == "flow.failed"
            )
        ).all()
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        assert case.advance_requested_at is not None  # still asked for: the sweep will see it
        case_id = case.id
    assert [(f.action, f.case_id, f.details["run"]) for f in failures] == [
        ("flow.failed", case_id, f"advance {ref}")
    ]
    assert _counts(flow_db)["handoffs"] == 0

    monkeypatch.setattr(advance_rules, "handoff_announcement", real)
    assert asyncio.run(clock_sweep(day="2026-03-03"))["caught_up"]["cases"] == 1
    assert asyncio.run(clock_sweep(day="2026-03-03"))["caught_up"]["cases"] == 0
    advance_task(ref)  # a late repeat of the lost task changes nothing
    done = _states(flow_db, cm, ref)
    assert (done["recognition"], done["job_offer"]) == ("open", "open")
    with flow_db.read() as s:
        opened = Counter(
            e.details["step"]
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action == "step.opened"))
        )
        keys = s.scalars(select(OutboxMessage.idempotency_key)).all()
        handoffs = s.scalar(select(func.count()).select_from(Handoff))
    assert opened == {"recognition": 1, "job_offer": 1}
    assert len(keys) == len(set(keys))
    assert sum(k.startswith("handoff_offered:") for k in keys) == 2
    assert handoffs == 2


def test_the_batch_flow_advances_many_cases_in_few_task_runs(flow_db, actors):
    from flows.journey import advance_cases

    cm = actors["cm.mueller"]
    refs = [_open(flow_db, cm, consent_to=[], given_name=f"P{i}") for i in range(5)]
    totals = asyncio.run(advance_cases(references=refs))
    assert totals == {"cases": 5, "opened": 10, "closed": 0, "failed": 0}


def test_the_sweep_escalates_an_overdue_registration_exactly_once(flow_db, actors):
    from flows.clocks import clock_sweep

    cm = actors["cm.mueller"]
    ref = _open(flow_db, cm, nationality="PL")
    assert advance_task(ref).is_completed()
    move_in = date(2026, 2, 1)
    with flow_db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", on=move_in, now=NOW)
    # The advance after "housing done" never ran (Prefect was down): the sweep catches up.
    day = (move_in + timedelta(days=15)).isoformat()  # more than 14 days after moving in
    first = asyncio.run(clock_sweep(day=day))
    assert first["caught_up"]["cases"] == 1
    assert _states(flow_db, cm, ref)["registration"] == "open"
    second = asyncio.run(clock_sweep(day=day))
    assert second["caught_up"]["cases"] == 0
    with flow_db.read() as s:
        escalations = s.scalars(
            select(OutboxMessage.context).where(OutboxMessage.kind == "escalation")
        ).all()
    assert [(e["reference"], e["step"]) for e in escalations] == [(ref, "registration")]


def test_delivery_sends_each_message_once(flow_db, actors, tmp_path):
    from flows.delivery import deliver_outbox

    cm = actors["cm.mueller"]
    ref = _open(flow_db, cm, email="amara@example.org")
    with flow_db.read() as s:
        pending = s.scalar(select(func.count()).select_from(OutboxMessage))
    first = asyncio.run(deliver_outbox(limit=50))
    second = asyncio.run(deliver_outbox(limit=50))
    assert first["sent"] == pending >= 1
    assert second == {"sent": 0, "failed": 0}
    files = list((tmp_path / "mail").glob("*.json"))
    assert len(files) == first["sent"]
    assert any(ref in f.read_text(encoding="utf-8") for f in files)


def test_delivery_retries_a_temporary_failure_in_a_task_of_its_own_and_parks_a_refusal(
    flow_db, actors, monkeypatch
):
    """A claim is sent in one task; a message refused for now is tried again by Prefect's
    retries (and goes out), one refused for good is parked at once, the others are sent."""
    import flows.delivery as delivery
    from tracker.enums import OutboxStatus
    from tracker.messages.outbox import enqueue
    from tracker.messages.senders import DeliveryError

    monkeypatch.setattr(delivery, "send", delivery.send.with_options(retry_delay_seconds=0))
    cm = actors["cm.mueller"]
    with flow_db.transaction() as s:
        for i in range(4):
            enqueue(
                s,
                key=f"retry-flow:{i}",
                kind="case_closed",
                now=NOW,
                recipient_user_id=cm.user_id,
                context={"reference": f"WO-TEST-{i:04d}"},
            )
    attempts: Counter[str] = Counter()

    class Flaky:
        def send(self, message):
            attempts[message.idempotency_key] += 1
            if message.idempotency_key == "retry-flow:1" and attempts[message.idempotency_key] < 3:
                raise DeliveryError("451 try later", permanent=False)
            if message.idempotency_key == "retry-flow:2":
                raise DeliveryError("550 no such user", permanent=True)

    monkeypatch.setattr(delivery, "default_sender", lambda: Flaky())
    assert asyncio.run(delivery.deliver_outbox(limit=50)) == {"sent": 3, "failed": 1}
    assert attempts == {
        "retry-flow:0": 1,
        "retry-flow:1": 3,  # the claim's attempt, then two by the retry task
        "retry-flow:2": 1,  # refused for good: no retry
        "retry-flow:3": 1,
    }
    with flow_db.read() as s:
        states = dict(s.execute(select(OutboxMessage.idempotency_key, OutboxMessage.status)).all())
    assert states == {
        "retry-flow:0": OutboxStatus.sent,
        "retry-flow:1": OutboxStatus.sent,
        "retry-flow:2": OutboxStatus.failed,
        "retry-flow:3": OutboxStatus.sent,
    }


def test_the_digest_is_queued_once_a_day(flow_db, actors):
    from flows.clocks import partner_digest

    cm = actors["cm.mueller"]
    ref = _open(flow_db, cm)
    assert advance_task(ref).is_completed()
    first = asyncio.run(partner_digest(day="2026-03-03"))
    second = asyncio.run(partner_digest(day="2026-03-03"))
    assert first["digests"] >= 2  # IHK and the employment agency have the first two steps
    assert second["digests"] == 0


def test_every_deployment_the_tracker_starts_exists_with_its_schedule():
    from flows.deployments import deployments

    built = {f"{d.flow_name}/{d.name}": d for d in deployments()}
    assert set(built) == {
        BATCH_DEPLOYMENT,
        "clock-sweep/clock-sweep",
        "deliver-outbox/deliver-outbox",
        "partner-digest/partner-digest",
        "issue-report/monthly-report",
        "issue-report/fit-report",
        "fit-daily/fit-daily",
        "retention/retention",
    }
    assert built["retention/retention"].schedules
    assert built["issue-report/monthly-report"].parameters == {"kind": "monthly"}
    assert built["issue-report/fit-report"].parameters == {"kind": "fit"}
    assert built["issue-report/monthly-report"].schedules
    assert built["clock-sweep/clock-sweep"].schedules
    assert built["partner-digest/partner-digest"].schedules
    assert not built[BATCH_DEPLOYMENT].schedules  # started by imports and bulk changes


def test_the_retention_flow_anonymises_who_is_due_once(flow_db, actors):
    from flows.privacy import retention
    from tracker.journeys.cases import cancel_case
    from tracker.models import Newcomer

    cm = actors["cm.mueller"]
    refs = [start_case(flow_db, cm, now=NOW, given_name=f"Ret{i}") for i in range(3)]
    for ref in refs[:2]:
        with flow_db.transaction() as s:
            cancel_case(s, actor=cm, reference=ref, reason="moved away", now=NOW)
    first = retention(day="2027-03-10", batch_size=1)
    assert first["anonymised"] == 2 and first["batches"] == 3
    assert retention(day="2027-03-10")["anonymised"] == 0
    with flow_db.read() as s:
        names = sorted(s.scalars(select(Newcomer.given_name)))
    assert names == ["Ret2", "–", "–"]


def test_the_scheduled_report_flow_keeps_last_months_report_once(flow_db, actors):
    import io

    from pypdf import PdfReader

    from flows.reports import issue_report
    from tracker.demo.load import load_demo
    from tracker.reporting import reports

    db = flow_db
    load_demo(db, people=120, seed=5, as_of=date(2026, 11, 20))
    period = "2026-10"
    assert reports.last_complete_period("monthly", date(2026, 1, 1)) == "2025-12"
    assert reports.last_complete_period("fit", date(2026, 1, 15)) == "2025"
    first = issue_report(kind="monthly", period=period)
    second = issue_report(kind="monthly", period=period)
    assert first["kept"] == 5 and not first["skipped"]  # html + pdf in de and en, csv
    assert second == {"kind": "monthly", "period": period, "kept": 0, "skipped": True}
    with db.read() as s:
        kept = reports.stored_reports(s, actor=actors["lead.schmidt"])
    assert sorted((k.format, k.language) for k in kept) == [
        ("csv", ""),
        ("html", "de"),
        ("html", "en"),
        ("pdf", "de"),
        ("pdf", "en"),
    ]
    assert all(k.generated_by == "system:reports" for k in kept)
    pdf = next(k for k in kept if k.format == "pdf" and k.language == "en")
    with db.read() as s:
        content = reports.stored_report(s, actor=actors["admin"], report_id=pdf.id).content
    assert "Monthly report October 2026" in PdfReader(io.BytesIO(content)).pages[0].extract_text()


def test_onboarding_flows_runs_the_fit_day_and_a_report_once(flow_db, actors):
    import json

    from typer.testing import CliRunner

    from flows.serve import app

    runner = CliRunner()
    fit_run = runner.invoke(app, ["fit", "--day", "2026-03-03"])
    assert fit_run.exit_code == 0, fit_run.output
    assert json.loads(fit_run.stdout)["reminders"] == 0
    first = runner.invoke(app, ["report", "fit", "--period", "2025"])
    again = runner.invoke(app, ["report", "fit", "--period", "2025"])
    assert first.exit_code == 0 and again.exit_code == 0, first.output
    assert json.loads(first.stdout)["kept"] == 5
    assert json.loads(again.stdout)["skipped"] is True
