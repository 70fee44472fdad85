"""A case's advance as a Prefect background task, under Prefect's test harness: a change queues
exactly one advance, the advance worker runs it, repeats open nothing twice, nothing personal
reaches Prefect, and the screen and the CLI never wait for it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import NOW
from tests.helpers import queued_advances, run_queued_advances, start_case
from tracker.config import get_settings
from tracker.db import get_database
from tracker.journeys import queries
from tracker.journeys.steps import complete_step
from tracker.models import AuditEvent, Case, OutboxMessage

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture
def prefect_mode(db, monkeypatch, tmp_path):
    """The tracker asking the harness's Prefect server for each advance, as in production."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    assert api, "the harness sets the API URL"
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "prefect")
    monkeypatch.setenv("ONBOARDING_PREFECT_API_URL", api)
    monkeypatch.setenv("ONBOARDING_MAIL_DIR", str(tmp_path / "mail"))
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    get_database.cache_clear()
    yield db
    get_database.cache_clear()
    get_settings.cache_clear()


def invoke(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from tracker.cli.main import app

    done = CliRunner().invoke(app, list(args))
    if done.exception and not isinstance(done.exception, SystemExit):
        raise done.exception
    return done.exit_code, done.stdout, done.stderr


def case_page_with_housing_chosen(ref: str) -> Any:
    """The case page of ``ref`` for cm.mueller in English, housing (the first step) chosen by a
    click on its row; "record as done" is its first action."""
    from streamlit.testing.v1 import AppTest

    page = Path(__file__).resolve().parent.parent / "dashboard" / "views" / "person.py"
    at = AppTest.from_file(str(page), default_timeout=60)
    at.session_state["lang"] = "en"
    at.session_state["username"] = "cm.mueller"
    at.session_state["signed_in_at"] = datetime.now(UTC)
    at.session_state["case"] = ref
    at.run()
    assert not at.exception
    at.session_state["person_steps"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert at.radio[0].value == "complete"
    return at


def states(db, actor, ref) -> dict[str, str]:
    with db.read() as s:
        return {st.key: st.state for st in queries.case_view(s, actor=actor, reference=ref).steps}


def opened(db, ref) -> Counter[str]:
    with db.read() as s:
        case_id = s.scalar(select(Case.id).where(Case.reference == ref))
        return Counter(
            e.details["step"]
            for e in s.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "step.opened", AuditEvent.case_id == case_id
                )
            )
        )


def test_a_change_queues_exactly_one_advance_and_the_worker_runs_it(prefect_mode, actors):
    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL", given_name="Zanele", family_name="Dlamini")
    assert queued_advances(ref) == []

    code, out, err = invoke("step", "complete", ref, "housing", "--as", "cm.mueller")
    assert code == 0, out + err
    assert "Saved; the next steps are being opened." in out
    # Saved, and the next step not yet open: that is the worker's job.
    assert states(db, cm, ref)["registration"] == "pending"
    queued = queued_advances(ref)
    assert len(queued) == 1
    run = queued[0]
    assert run.name == "advance"  # the worker names it "advance <reference>" when it starts
    assert set(run.tags) == {
        f"case:{ref}",
        "pathway:eu_citizen",
        "partner:stadt-bochum",
        "partner:vbw",
    }
    assert run.state is not None and run.state.state_details.task_parameters_id is None
    as_stored = run.model_dump_json()
    assert "Dlamini" not in as_stored and "Zanele" not in as_stored

    assert run_queued_advances(ref) == 1
    assert states(db, cm, ref)["registration"] == "open"
    assert opened(db, ref)["registration"] == 1
    with db.read() as s:
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        assert case.advance_requested_at is None
    assert run_queued_advances(ref) == 0  # nothing else was queued


def test_the_same_advance_run_twice_opens_each_step_once(prefect_mode, actors):
    from tracker.journeys.orchestration import request_advance

    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    first = request_advance([ref])
    second = request_advance([ref])  # e.g. two clicks, or a save retried
    assert (first.state, second.state) == ("scheduled", "scheduled")
    assert len(first.run_ids) == len(second.run_ids) == 1
    assert {str(r.id) for r in queued_advances(ref)} == {*first.run_ids, *second.run_ids}
    assert run_queued_advances(ref) == 2
    assert opened(db, ref) == {"housing": 1, "registration": 1}
    with db.read() as s:
        keys = s.scalars(select(OutboxMessage.idempotency_key)).all()
    assert len(keys) == len(set(keys))


def test_the_advance_worker_keeps_no_files_and_erasure_forgets_the_runs(prefect_mode, actors):
    """No parameter file (the reference travels in a tag) and no result file (the worker
    serves the task without persistence): erasing the person leaves nothing in Prefect."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    from tracker.journeys.orchestration import forget_case_runs, request_advance

    db = prefect_mode
    cm = actors["cm.mueller"]
    storage = Path(PREFECT_LOCAL_STORAGE_PATH.value())
    before = set(storage.rglob("*")) if storage.exists() else set()
    ref = start_case(db, cm, now=NOW, nationality="PL")
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    assert request_advance([ref]).state == "scheduled"
    assert run_queued_advances(ref) == 1
    assert states(db, cm, ref)["registration"] == "open"
    after = set(storage.rglob("*")) if storage.exists() else set()
    assert after - before == set()

    assert len(queued_advances(ref, scheduled_only=False)) == 1
    assert forget_case_runs(ref) == 1
    assert queued_advances(ref, scheduled_only=False) == []


def test_wait_says_when_no_worker_finished_the_advance_and_the_change_stays(
    prefect_mode, actors, monkeypatch
):
    monkeypatch.setenv("ONBOARDING_ADVANCE_WAIT_SECONDS", "0.5")
    get_settings.cache_clear()
    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    code, out, err = invoke("step", "complete", ref, "housing", "--as", "cm.mueller", "--wait")
    assert code == 0, out + err
    assert f"{ref}: housing done." in out
    assert "has not finished after 0.5 s (is a task worker running?)" in " ".join(err.split())
    assert states(db, cm, ref)["housing"] == "done"
    assert len(queued_advances(ref)) == 1


def test_wait_asks_the_tracker_so_a_late_record_in_prefect_does_not_hold_it(prefect_mode, actors):
    """The advance has run (the case's request is cleared) while Prefect still has the run as
    Scheduled, as when its event pipeline lags on a loaded machine: the wait ends as completed
    at once, and a case whose advance has not run keeps it waiting until the deadline."""
    from tracker.journeys.background import advance_now
    from tracker.journeys.orchestration import _advanced, queue_advance, wait_for_task_run

    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing")
    run_id = queue_advance(ref, db=db)
    assert wait_for_task_run(run_id, 0.3, advanced=_advanced(ref, db)) == "scheduled"
    advance_now(ref)  # the advance, but not through Prefect: its run stays Scheduled
    assert wait_for_task_run(run_id, 0.3) == "scheduled"
    assert wait_for_task_run(run_id, 30, advanced=_advanced(ref, db)) == "completed"
    assert states(db, cm, ref)["registration"] != "pending"


def test_a_save_succeeds_when_prefect_is_down_and_says_the_sweep_will_open_the_steps(
    prefect_mode, actors, monkeypatch
):
    monkeypatch.setenv("ONBOARDING_PREFECT_API_URL", "http://127.0.0.1:9/api")
    get_settings.cache_clear()
    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    code, out, err = invoke("step", "complete", ref, "housing", "--as", "cm.mueller")
    assert code == 0, out + err
    assert "Prefect is not reachable" in " ".join(err.split())
    assert states(db, cm, ref)["housing"] == "done"
    with db.read() as s:
        case = s.scalars(select(Case).where(Case.reference == ref)).one()
        assert case.advance_requested_at is not None  # the sweep takes it from here


def test_the_case_page_says_saved_at_once_and_shows_the_opened_step_when_it_is_open(
    prefect_mode, actors, monkeypatch
):
    """No waiting on the click: "Saved." at once, a quiet line while the advance is queued,
    then the page as it is now, with what opened."""

    monkeypatch.setattr("dashboard.common.DEFAULT", "en")
    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    at = case_page_with_housing_chosen(ref)
    at.button(key="person_submit").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Saved."]
    assert any("Opening the next steps" in c.value for c in at.caption)
    watch = at.session_state["advance_watch"]
    watch["asked"].result(timeout=30)  # the request thread has queued the task
    assert states(db, cm, ref)["registration"] == "pending"

    assert run_queued_advances(ref) == 1
    at.run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Now open: Residence registration (Anmeldung)"]
    assert not any("Opening the next steps" in c.value for c in at.caption)
    steps = at.dataframe[0].value
    assert "open" in list(steps[steps["Step"] == "Residence registration (Anmeldung)"]["State"])


def test_the_case_page_warns_when_prefect_is_away_and_keeps_the_change(
    prefect_mode, actors, monkeypatch
):

    monkeypatch.setattr("dashboard.common.DEFAULT", "en")
    monkeypatch.setenv("ONBOARDING_PREFECT_API_URL", "http://127.0.0.1:9/api")
    get_settings.cache_clear()
    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    at = case_page_with_housing_chosen(ref)
    at.button(key="person_submit").click().run()
    assert not at.exception
    assert states(db, cm, ref)["housing"] == "done"
    # The page may have seen the refused request already on the click's run (a busy machine
    # runs the watch late); otherwise the next run shows it.
    if "advance_watch" in at.session_state:
        at.session_state["advance_watch"]["asked"].result(timeout=30)
        at.run()
    assert [w.value for w in at.warning] == [
        "Saved. The next steps will open when the scheduler runs again."
    ]
    assert "advance_watch" not in at.session_state


def test_the_case_page_keeps_watching_while_a_busy_prefect_takes_the_request(
    prefect_mode, actors, monkeypatch
):
    """The watch window opens when the advance is queued, not at the click: asking a busy
    Prefect can itself take seconds. Once queued, the page watches ``advance_wait_seconds`` and
    then says the scheduler will open the steps."""
    from concurrent.futures import Future

    from tracker.journeys.orchestration import AdvanceRequest

    monkeypatch.setattr("dashboard.common.DEFAULT", "en")
    monkeypatch.setenv("ONBOARDING_ADVANCE_WAIT_SECONDS", "0")
    get_settings.cache_clear()
    asked: Future[AdvanceRequest] = Future()
    monkeypatch.setattr(
        "tracker.journeys.orchestration.request_advance_soon", lambda reference, db=None: asked
    )
    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    at = case_page_with_housing_chosen(ref)
    at.button(key="person_submit").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["Saved."]
    # Prefect has not answered yet: with a window of 0 s the page still waits, quietly.
    for _ in range(2):
        at.run()
        assert any("Opening the next steps" in c.value for c in at.caption)
        assert not at.warning
    assert at.session_state["advance_watch"]["until"] is None

    asked.set_result(AdvanceRequest([ref], "prefect", "scheduled", "Queued.", ["run"]))
    at.run()  # queued now: the window opens, and at 0 s it has run out
    if "advance_watch" in at.session_state:
        at.run()
    assert [w.value for w in at.warning] == [
        "Saved. The next steps will open when the scheduler runs again."
    ]
    assert "advance_watch" not in at.session_state
    assert states(db, cm, ref)["housing"] == "done"


def test_a_lost_advance_is_caught_up_by_the_sweep_and_its_run_closed_as_crashed(
    prefect_mode, actors, monkeypatch
):
    """A worker that died, or a server restart, leaves the queued run unfinished for good:
    the sweep advances the case, and marks the run Crashed so that Prefect's history is true."""
    import asyncio

    from flows.clocks import clock_sweep
    from tracker.journeys.orchestration import close_stale_advance_runs, request_advance

    monkeypatch.setenv("ONBOARDING_CATCH_UP_GRACE_SECONDS", "0")
    get_settings.cache_clear()
    db = prefect_mode
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, nationality="PL")
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    (lost,) = request_advance([ref]).run_ids  # queued; no worker ever takes it
    assert close_stale_advance_runs(older_than_minutes=30) == 0  # too young to call lost

    swept = asyncio.run(clock_sweep(day="2026-03-03"))
    assert swept["caught_up"]["cases"] == 1
    assert states(db, cm, ref)["registration"] == "open"
    assert close_stale_advance_runs(older_than_minutes=0) >= 1
    (run,) = queued_advances(ref, scheduled_only=False)
    assert str(run.id) == lost
    assert run.state is not None and run.state.type.value == "CRASHED"
    assert "the clock sweep advanced the case" in str(run.state.message)
    assert close_stale_advance_runs(older_than_minutes=0) == 0  # each once
