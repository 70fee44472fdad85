"""The message contexts of tests/message_contexts.py against the rows the services really write:
every service that writes to the outbox runs on a real database, and its rows render and go
out (the rendering itself is tested in tests/unit/test_messages.py).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tests.conftest import NOW, Actors
from tests.helpers import advance, deliver, start_case
from tests.message_contexts import (
    FILES,
    KINDS,
    REQUIRED,
    evaluated,
    every_context,
    text_lines,
    view,
)
from tracker import fit
from tracker.config import get_settings
from tracker.db import Database
from tracker.demo.people import PARTNER_BY_ORG
from tracker.enums import (
    ACTIVE_STEP_STATES,
    CaseStatus,
    FitChannel,
    HandoffState,
    JobKind,
    OfferKind,
    PermitKind,
    Profile,
    Purpose,
)
from tracker.journeys.handoffs import accept_handoff, decline_handoff, offer_handoff, return_handoff
from tracker.journeys.steps import complete_step
from tracker.journeys.sweep import sweep_clocks, sweep_handoffs
from tracker.messages.digest import build_digests
from tracker.messages.rendering import render_message
from tracker.messages.senders import FileSender
from tracker.models import Case, Handoff, Organisation, OutboxMessage, Step
from tracker.pathway import get_registry

PROFILE_FACTS: dict[Profile, dict[str, Any]] = {
    Profile.skilled_worker: {"purpose": Purpose.work},
    Profile.student: {"purpose": Purpose.study},
    Profile.eu_citizen: {"nationality": "PL"},
}
NAME = "{{ 7*7 }} <script>alert(1)</script>"


def _open_steps(db: Database, reference: str) -> list[str]:
    with db.read() as s:
        return list(
            s.scalars(
                select(Step.key)
                .join(Case)
                .where(Case.reference == reference, Step.state.in_(list(ACTIVE_STEP_STATES)))
                .order_by(Step.id)
            )
        )


def _status(db: Database, reference: str) -> CaseStatus:
    with db.read() as s:
        return s.scalars(select(Case.status).where(Case.reference == reference)).one()


def _offered(db: Database, reference: str) -> list[tuple[str, str]]:
    with db.read() as s:
        return [
            (step, org)
            for step, org in s.execute(
                select(Step.key, Organisation.key)
                .join(Handoff, Handoff.step_id == Step.id)
                .join(Organisation, Handoff.organisation_id == Organisation.id)
                .join(Case, Step.case_id == Case.id)
                .where(Case.reference == reference, Handoff.state == HandoffState.offered)
                .order_by(Step.id)
            )
        ]


def run_every_service_that_sends(db: Database, actors: Actors) -> None:
    """For every pathway: open cases (with and without consent), decline, re-offer, return,
    leave offers unanswered, sweep the clocks, send digests, and finish a case."""
    cm = actors["cm.mueller"]
    t = NOW
    for pathway in get_registry().latest():
        assert pathway.profile in PROFILE_FACTS, f"add facts for profile {pathway.profile}"
        facts = PROFILE_FACTS[pathway.profile]
        ref = start_case(
            db,
            cm,
            now=t,
            given_name=NAME,
            email=f"{pathway.key}@example.org",
            preferred_language="ar",
            **facts,
        )
        with db.read() as s:
            key = s.scalars(select(Case.pathway_key).where(Case.reference == ref)).one()
        assert key == pathway.key, f"no newcomer facts here choose pathway {pathway.key}"
        start_case(db, cm, now=t, consent_to=[], given_name="Held", **facts)  # handoff_held

        answerable = [(st, org) for st, org in _offered(db, ref) if org in PARTNER_BY_ORG]
        if answerable:
            step, org = answerable[0]
            partner = actors[PARTNER_BY_ORG[org]]
            with db.transaction() as s:
                decline_handoff(s, actor=partner, reference=ref, step_key=step, reason="r", now=t)
            with db.transaction() as s:
                offer_handoff(s, actor=cm, reference=ref, step_key=step, now=t)
            with db.transaction() as s:
                accept_handoff(s, actor=partner, reference=ref, step_key=step, now=t)
            with db.transaction() as s:
                return_handoff(s, actor=partner, reference=ref, step_key=step, reason="r", now=t)

        # The other offers stay unanswered past the acceptance period.
        later = t + timedelta(days=get_settings().handoff_accept_days + 1)
        with db.transaction() as s:
            sweep_handoffs(s, now=later)
        with db.transaction() as s:
            build_digests(s, day=later.date(), now=later)
        with db.read() as s:
            first_due = s.scalar(
                select(func.min(Step.due_date)).where(
                    Step.state.in_(list(ACTIVE_STEP_STATES)), Step.due_date.is_not(None)
                )
            )
        assert first_due is not None
        for today in (first_due - timedelta(days=1), first_due + timedelta(days=400)):
            with db.transaction() as s:
                sweep_clocks(s, today=today, now=later)

        # Work the journey to its end, which closes the case.
        for _ in range(len(pathway.steps) + 1):
            t += timedelta(days=1)
            for step in _open_steps(db, ref):
                with db.transaction() as s:
                    complete_step(s, actor=cm, reference=ref, step_key=step, now=t)
            advance(db, cm, ref, now=t)
            if _status(db, ref) == CaseStatus.closed:
                break
        assert _status(db, ref) == CaseStatus.closed


def run_the_fit_services_that_send(db: Database, actors: Actors) -> None:
    """FIT@THGA: a place freed on a full offer, the daily reminders, feedback and permit
    warnings, and the working-day warnings (near, then over the limit)."""
    cm, thga = actors["cm.mueller"], actors["thga.nowak"]
    people = []
    for i in range(2):
        ref = start_case(
            db, cm, now=NOW, purpose=Purpose.study, given_name=f"{NAME} {i}",
            email=f"fit{i}@example.net", preferred_language="ar",
        )  # fmt: skip
        for key in ("housing", "registration"):
            with db.transaction() as s:
                complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)
            advance(db, cm, ref, now=NOW)
        with db.transaction() as s:
            people.append(
                fit.enrol(
                    s, actor=cm, reference=ref, channel=FitChannel.lecturer,
                    study_programme="Maschinenbau", semester=1, now=NOW,
                ).id
            )  # fmt: skip
    starts = NOW + timedelta(days=30)
    with db.transaction() as s:
        offer = fit.create_offer(
            s, actor=thga, kind=OfferKind.job_fair, title=NAME, starts_at=starts,
            ends_at=starts + timedelta(hours=5), place=NAME, capacity=1, now=NOW,
        ).id  # fmt: skip
    with db.transaction() as s:
        first = fit.register(s, actor=thga, offer_id=offer, participant_id=people[0], now=NOW).id
        fit.register(s, actor=thga, offer_id=offer, participant_id=people[1], now=NOW)
    with db.transaction() as s:
        fit.cancel_registration(s, actor=thga, registration_id=first, now=NOW)
    with db.transaction() as s:
        fit.add_permit(
            s, actor=thga, participant_id=people[0], kind=PermitKind.student,
            valid_from=NOW.date(), valid_until=starts.date(), now=NOW,
        )  # fmt: skip
    for day in (starts.date() - timedelta(days=1), starts.date() + timedelta(days=1)):
        with db.transaction() as s:
            fit.send_daily(s, today=day, now=NOW)
    with db.transaction() as s:
        job = fit.add_job(
            s, actor=thga, participant_id=people[0], employer=NAME,
            kind=JobKind.working_student, starts_on=date(2025, 1, 1), now=NOW,
        ).id  # fmt: skip
    days = [date(2025, 1, 1) + timedelta(days=n) for n in range(200)]
    for chunk, half in ((days[:120], False), (days[120:122], True), (days[122:142], False)):
        with db.transaction() as s:
            fit.record_work_days(s, actor=thga, job_id=job, days=chunk, half=half, now=NOW)


def outbox(db: Database) -> list[OutboxMessage]:
    with db.read() as s:
        rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        s.expunge_all()
    return rows


def _types(value: Any) -> str:
    return type(value).__name__


def _shape(contexts: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each key with the types its values take (``items.<key>`` for a digest's items)."""
    shape: dict[str, set[str]] = {}
    for context in contexts:
        for key, value in context.items():
            shape.setdefault(key, set()).add(_types(value))
            if key == "items":
                for item in value:
                    for ikey, ivalue in item.items():
                        shape.setdefault(f"items.{ikey}", set()).add(_types(ivalue))
    return shape


def test_the_contexts_here_are_the_ones_the_services_enqueue(
    db: Database, actors: Actors, tmp_path: Path
) -> None:
    run_every_service_that_sends(db, actors)
    run_the_fit_services_that_send(db, actors)
    rows = outbox(db)
    enqueued = {r.kind for r in rows}
    assert enqueued == set(KINDS), (
        f"kinds sent but without templates: {sorted(enqueued - set(KINDS))}; "
        f"templates no service sends: {sorted(set(KINDS) - enqueued)}"
    )
    with db.read() as s:
        org_names = {o.key: o.name for o in s.scalars(select(Organisation))}

    mismatches = []
    for kind in KINDS:
        table = _shape([ctx for _, ctx in every_context(kind)])
        real = _shape([r.context for r in rows if r.kind == kind])
        if set(table) != set(real):
            mismatches.append(
                f"{kind}: the services write {sorted(real)}, the table has {sorted(table)}"
            )
            continue
        for key, types in real.items():
            if not types <= table[key]:
                mismatches.append(f"{kind}.{key}: the services write {types}, not {table[key]}")
    assert not mismatches, "\n".join(mismatches)

    # And the real rows render, in every language their kind has.
    failures = []
    for row in rows:
        for lang in sorted(set(REQUIRED) | FILES[row.kind]):
            message = render_message(row.kind, lang, row.context, organisation_names=org_names)
            if message.language != lang or evaluated(message.html):
                failures.append(f"{row.idempotency_key} in {lang}")
    assert not failures, failures

    # What goes to a newcomer exists in Arabic, and arrives right to left.
    to_newcomers = {r.kind for r in rows if r.recipient_newcomer_id is not None}
    assert to_newcomers, "no message went to a newcomer"
    untranslated = sorted(k for k in to_newcomers if "ar" not in FILES[k])
    assert not untranslated, f"sent to newcomers but not in Arabic: {untranslated}"
    assert "ar" in {r.language for r in rows if r.recipient_newcomer_id is not None}

    deliver(db, sender=FileSender(tmp_path), now=NOW + timedelta(days=500), limit=10_000)
    drops = [json.loads(p.read_text("utf-8")) for p in tmp_path.glob("*.json")]
    welcomes = [d for d in drops if d["kind"] == "welcome" and d["to"].endswith("@example.org")]
    assert len(welcomes) == len(get_registry().latest())
    for drop in welcomes:
        assert drop["language"] == "ar"
        assert '<html lang="ar" dir="rtl">' in drop["html"]
        assert view(drop["html"]).lines == text_lines(drop["body"])
        assert not evaluated(drop["html"]) and "<script" not in drop["html"]
