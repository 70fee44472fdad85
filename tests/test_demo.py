"""Demo data: reproducible, consistent with the services' rules, and continuable through them."""

from __future__ import annotations

from collections import Counter
from datetime import date

from sqlalchemy import extract, func, select

from tracker import queries
from tracker.db import Database
from tracker.demo import load_demo
from tracker.enums import ACTIVE_HANDOFF_STATES, FINISHED_STEP_STATES, CaseStatus, StepState
from tracker.migrate import upgrade
from tracker.models import AuditEvent, Case, Handoff, Newcomer, Step
from tracker.services import accept_handoff, complete_handoff

AS_OF = date(2026, 11, 20)


def _fingerprint(db: Database) -> list[tuple]:
    with db.read() as s:
        return list(
            s.execute(
                select(
                    Case.reference,
                    Newcomer.family_name,
                    Newcomer.given_name,
                    Step.key,
                    Step.state,
                    Step.done_at,
                )
                .join(Newcomer, Case.newcomer_id == Newcomer.id)
                .join(Step, Step.case_id == Case.id)
                .order_by(Case.id, Step.position)
            ).all()
        )


def test_the_same_seed_and_day_give_the_same_data(tmp_path):
    prints = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        upgrade(url)
        db = Database(url)
        load_demo(db, people=150, seed=7, as_of=AS_OF)
        prints.append(_fingerprint(db))
        db.dispose()
    assert prints[0] == prints[1]
    assert len(prints[0]) > 1000
    url = f"sqlite:///{tmp_path / 'c'}.db"
    upgrade(url)
    other = Database(url)
    load_demo(other, people=150, seed=8, as_of=AS_OF)
    assert _fingerprint(other) != prints[0]


def test_demo_histories_obey_the_life_cycle_rules(empty_db):
    counts = load_demo(empty_db, people=400, seed=11, as_of=AS_OF, batch_size=150)
    assert counts["newcomers"] == 400
    with empty_db.read() as s:
        steps = s.execute(
            select(
                Step.case_id,
                Step.key,
                Step.state,
                Step.needs,
                Step.opened_at,
                Step.service_due,
                Step.legal_due,
                Step.due_date,
            )
        ).all()
        cases = dict(s.execute(select(Case.id, Case.status)).all())
        next_due = dict(s.execute(select(Case.id, Case.next_due)).all())
        handoffs = s.execute(select(Handoff.step_id, Handoff.state)).all()
        step_state = dict(s.execute(select(Step.id, Step.state)).all())
        opened_events = Counter(
            s.scalars(select(AuditEvent.case_id).where(AuditEvent.action == "case.opened"))
        )
        fit_2024 = s.scalar(
            select(func.count())
            .select_from(Step)
            .where(
                Step.key == "fit_enrollment",
                Step.state == StepState.done,
                extract("year", Step.done_at) == 2024,
            )
        )
        profiles = Counter(s.scalars(select(Case.pathway_key)))
    by_case: dict[int, dict[str, str]] = {}
    for case_id, key, state, *_ in steps:
        by_case.setdefault(case_id, {})[key] = state
    for case_id, key, state, needs, opened_at, service_due, legal_due, due_date in steps:
        finished = {k for k, st in by_case[case_id].items() if st in FINISHED_STEP_STATES}
        if state == StepState.pending:
            assert opened_at is None
        else:
            assert set(needs) <= finished, (case_id, key, needs)
            assert opened_at is not None
        if state in ("open", "in_progress", "blocked"):
            present = [d for d in (service_due, legal_due) if d is not None]
            assert due_date == (min(present) if present else None)
    earliest: dict[int, date] = {}
    for case_id, _key, state, *_rest, due_date in steps:
        if state in ("open", "in_progress", "blocked") and due_date is not None:
            earliest[case_id] = min(due_date, earliest.get(case_id, due_date))
    assert next_due == {case_id: earliest.get(case_id) for case_id in cases}
    for case_id, status in cases.items():
        all_done = all(st in FINISHED_STEP_STATES for st in by_case[case_id].values())
        assert (status == CaseStatus.closed) == all_done
        assert opened_events[case_id] == 1
    active = Counter(step_id for step_id, st in handoffs if st in ACTIVE_HANDOFF_STATES)
    assert max(active.values()) == 1
    for step_id in active:
        assert step_state[step_id] in ("open", "in_progress", "blocked")
    assert fit_2024 == 108
    assert set(profiles) == {"skilled_worker", "student", "eu_citizen"}
    assert set(cases.values()) == {CaseStatus.open, CaseStatus.closed}


def test_a_demo_case_can_be_carried_on_through_the_services(db, actors):
    load_demo(db, people=120, seed=3, as_of=AS_OF)
    stadt = actors["stadt.weber"]
    with db.read() as s:
        queue = queries.partner_queue(s, actor=stadt, limit=500)
    assert queue, "the demo should leave work in the Bürgerbüro's queue"
    item = queue[0]
    if item.state == "offered":
        with db.transaction() as s:
            accept_handoff(s, actor=stadt, reference=item.reference, step_key=item.step)
    with db.transaction() as s:
        complete_handoff(s, actor=stadt, reference=item.reference, step_key=item.step)
    with db.read() as s:
        view = queries.case_view(s, actor=actors["cm.mueller"], reference=item.reference)
    assert next(st for st in view.steps if st.key == item.step).state == "done"
