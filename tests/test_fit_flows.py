"""The FIT@THGA morning flow under Prefect's test harness: each message once, however often
it runs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from tests.conftest import NOW
from tests.helpers import advance, start_case
from tracker.clocks import local_today
from tracker.config import get_settings
from tracker.db import get_database
from tracker.enums import FitChannel, JobKind, OfferKind, PermitKind, RegistrationStatus
from tracker.fit.offers import cancel_registration, create_offer, record_attendance
from tracker.fit.offers import register as register_for_offer
from tracker.fit.participants import enrol
from tracker.fit.permits import add_permit
from tracker.fit.work_days import add_job, record_work_days
from tracker.journeys.steps import complete_step
from tracker.messages.rendering import render_message
from tracker.models import AuditEvent, FitParticipant, FitRegistration, Newcomer, OutboxMessage

pytestmark = pytest.mark.usefixtures("prefect_harness")

STARTS = datetime(2026, 5, 6, 7, 0, tzinfo=UTC)  # 09:00 in Bochum


@pytest.fixture
def flow_db(db, monkeypatch, tmp_path):
    """Point the flows (which find the database through the settings) at the test database."""
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_MAIL_DIR", str(tmp_path / "mail"))
    get_settings.cache_clear()
    get_database.cache_clear()
    yield db
    get_database.cache_clear()
    get_settings.cache_clear()


def participants(db, actors, n: int, *, language: str = "ar") -> list[int]:
    """Enrol ``n`` students in FIT@THGA through the services."""
    cm = actors["cm.mueller"]
    ids = []
    for i in range(n):
        ref = start_case(
            db,
            cm,
            now=NOW,
            purpose="study",
            nationality="EG",
            given_name=f"Student{i}",
            email=f"student{i}@example.org",
            preferred_language=language,
        )
        for key in ("housing", "registration"):
            with db.transaction() as s:
                complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)
            advance(db, cm, ref, now=NOW)
        with db.transaction() as s:
            ids.append(
                enrol(
                    s,
                    actor=cm,
                    reference=ref,
                    channel=FitChannel.orientation_week,
                    study_programme="Maschinenbau",
                    semester=3,
                    enrolled_on=local_today(NOW),
                    now=NOW,
                ).id
            )
    return ids


def an_offer(db, actors, *, capacity: int, starts: datetime = STARTS, **extra) -> int:
    with db.transaction() as s:
        return create_offer(
            s,
            actor=actors["thga.nowak"],
            kind=extra.pop("kind", OfferKind.application_training),
            title=extra.pop("title", "Bewerbungstraining mit der IHK"),
            starts_at=starts,
            ends_at=starts + timedelta(hours=6),
            place="THGA, Haus 2, Raum 105",
            capacity=capacity,
            now=NOW,
        ).id


def register(db, actors, offer_id: int, people: list[int]) -> dict[int, str]:
    statuses = {}
    for pid in people:
        with db.transaction() as s:
            statuses[pid] = register_for_offer(
                s, actor=actors["thga.nowak"], offer_id=offer_id, participant_id=pid, now=NOW
            ).status
    return statuses


def messages(db, kind: str) -> list[OutboxMessage]:
    with db.read() as s:
        rows = list(
            s.scalars(
                select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
            )
        )
        s.expunge_all()
    return rows


def newcomer_of(db, participant_id: int) -> int:
    with db.read() as s:
        return s.get_one(FitParticipant, participant_id).newcomer_id


def test_each_reminder_is_sent_once_across_two_runs_and_only_to_those_with_a_place(flow_db, actors):
    from flows.fit import fit_daily

    a, b, c = participants(flow_db, actors, 3)
    offer_id = an_offer(flow_db, actors, capacity=2)
    assert list(register(flow_db, actors, offer_id, [a, b, c]).values()) == [
        RegistrationStatus.registered,
        RegistrationStatus.registered,
        RegistrationStatus.waitlisted,
    ]
    # Two days ahead nothing is due yet.
    early = fit_daily(day="2026-05-04")
    assert (early["reminders"], early["feedback_requests"]) == (0, 0)

    first = fit_daily(day="2026-05-05")
    second = fit_daily(day="2026-05-05")
    assert first["reminders"] == 2
    assert second["reminders"] == 0
    sent = messages(flow_db, "fit_offer_reminder")
    assert sorted(m.recipient_newcomer_id for m in sent) == sorted(
        [newcomer_of(flow_db, a), newcomer_of(flow_db, b)]
    )
    assert newcomer_of(flow_db, c) not in {m.recipient_newcomer_id for m in sent}
    # What the student needs to come, in their language, and no one else's data.
    assert {m.language for m in sent} == {"ar"}
    assert set(sent[0].context) == {"offer_title", "offer_kind", "starts_at", "ends_at", "place"}
    text = render_message("fit_offer_reminder", "ar", sent[0].context)
    assert text.language == "ar" and "Bewerbungstraining mit der IHK" in text.subject
    assert "THGA, Haus 2, Raum 105" in text.body

    # The day after: attendance is in, and only the one who came is asked for feedback, once.
    with flow_db.transaction() as s:
        record_attendance(
            s,
            actor=actors["thga.nowak"],
            offer_id=offer_id,
            attended=[a],
            now=STARTS + timedelta(hours=7),
        )
    after = [fit_daily(day="2026-05-07") for _ in range(2)]
    assert [r["feedback_requests"] for r in after] == [1, 0]
    (feedback,) = messages(flow_db, "fit_feedback")
    assert feedback.recipient_newcomer_id == newcomer_of(flow_db, a)
    assert len(messages(flow_db, "fit_offer_reminder")) == 2


def test_an_offer_just_after_midnight_in_bochum_is_reminded_the_day_before(flow_db, actors):
    from flows.fit import fit_daily

    (a,) = participants(flow_db, actors, 1, language="de")
    # 22:30 UTC on 5 May is 00:30 on 6 May in Bochum: "tomorrow" on the 5th, not on the 4th.
    offer_id = an_offer(
        flow_db, actors, capacity=5, starts=datetime(2026, 5, 5, 22, 30, tzinfo=UTC)
    )
    register(flow_db, actors, offer_id, [a])
    assert fit_daily(day="2026-05-04")["reminders"] == 0
    assert fit_daily(day="2026-05-05")["reminders"] == 1


def test_a_permit_ending_within_the_warning_window_gets_one_warning(flow_db, actors):
    from flows.fit import fit_daily

    soon, later, renewed = participants(flow_db, actors, 3)
    today = date(2026, 6, 1)
    window = get_settings().fit_permit_warning_days
    thga = actors["thga.nowak"]
    with flow_db.transaction() as s:
        add_permit(
            s,
            actor=thga,
            participant_id=soon,
            kind=PermitKind.job_search,
            valid_from=date(2025, 1, 15),
            valid_until=today + timedelta(days=30),
            now=NOW,
        )
        add_permit(
            s,
            actor=thga,
            participant_id=later,
            kind=PermitKind.student,
            valid_from=date(2025, 10, 1),
            valid_until=today + timedelta(days=window + 1),
            now=NOW,
        )
        # Ends soon too, but a newer permit follows it: nothing to warn about.
        add_permit(
            s,
            actor=thga,
            participant_id=renewed,
            kind=PermitKind.student,
            valid_from=date(2024, 10, 1),
            valid_until=today + timedelta(days=10),
            now=NOW,
        )
        add_permit(
            s,
            actor=thga,
            participant_id=renewed,
            kind=PermitKind.student,
            valid_from=today + timedelta(days=5),
            valid_until=today + timedelta(days=700),
            now=NOW,
        )
    runs = [fit_daily(day=today.isoformat()) for _ in range(2)]
    assert [r["permit_warnings"] for r in runs] == [1, 0]
    (warning,) = messages(flow_db, "fit_permit_ending")
    assert warning.recipient_newcomer_id == newcomer_of(flow_db, soon)
    assert warning.context == {
        "permit": "job_search",
        "valid_until": (today + timedelta(days=30)).isoformat(),
        "days_left": 30,
    }
    # The permit further out is warned the morning it comes into the window, once.
    tomorrow = (today + timedelta(days=1)).isoformat()
    assert [fit_daily(day=tomorrow)["permit_warnings"] for _ in range(2)] == [1, 0]
    assert {m.recipient_newcomer_id for m in messages(flow_db, "fit_permit_ending")} == {
        newcomer_of(flow_db, soon),
        newcomer_of(flow_db, later),
    }


def weekdays(start: date, n: int) -> list[date]:
    days, day = [], start
    while len(days) < n:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def test_the_flow_rechecks_the_day_limit_and_warns_once(flow_db, actors, monkeypatch):
    from flows.fit import fit_daily

    a, b = participants(flow_db, actors, 2)
    thga = actors["thga.nowak"]
    # Days recorded while the office warned only at the limit itself: no warning then.
    monkeypatch.setenv("ONBOARDING_FIT_DAY_WARNING_MARGIN", "0")
    get_settings.cache_clear()
    jobs = {}
    with flow_db.transaction() as s:
        for pid in (a, b):
            jobs[pid] = add_job(
                s,
                actor=thga,
                participant_id=pid,
                employer="Ruhr Tunnelbau GmbH",
                kind=JobKind.working_student,
                starts_on=date(2025, 1, 1),
                now=NOW,
            ).id
    for pid, n in ((a, 125), (b, 60)):
        with flow_db.transaction() as s:
            count = record_work_days(
                s, actor=thga, job_id=jobs[pid], days=weekdays(date(2025, 1, 2), n), now=NOW
            )
            assert count is not None and not count.warning
    assert messages(flow_db, "fit_day_limit") == []

    # Back to the default margin of 20 days: the morning run catches up, once.
    monkeypatch.delenv("ONBOARDING_FIT_DAY_WARNING_MARGIN")
    get_settings.cache_clear()
    runs = [fit_daily(day="2025-12-01", batch_size=1) for _ in range(2)]
    assert [r["day_limit_checked"] for r in runs] == [2, 2]  # in pages of one
    assert [r["day_limit_warnings"] for r in runs] == [1, 0]
    (student,) = messages(flow_db, "fit_day_limit")
    (manager,) = messages(flow_db, "fit_day_limit_manager")
    assert student.recipient_newcomer_id == newcomer_of(flow_db, a)
    assert student.context == {
        "year": 2025,
        "used": 125,
        "limit": 140,
        "remaining": 15,
        "level": "near",
    }
    assert manager.recipient_user_id == actors["cm.mueller"].user_id
    assert manager.context["reference"] and manager.context["level"] == "near"
    # Another year has no days: nothing to check.
    assert fit_daily(day="2026-03-01")["day_limit_checked"] == 0


def test_a_failed_run_leaves_an_audit_event_and_the_rerun_catches_up(flow_db, actors, monkeypatch):
    import flows.fit as fit_flows

    (a,) = participants(flow_db, actors, 1)
    offer_id = an_offer(flow_db, actors, capacity=3)
    register(flow_db, actors, offer_id, [a])

    def broken(session, **kwargs):
        raise RuntimeError("database went away")

    real = fit_flows.send_daily
    monkeypatch.setattr(fit_flows, "send_daily", broken)
    state = fit_flows.fit_daily(day="2026-05-05", return_state=True)
    assert state.is_failed()
    with flow_db.read() as s:
        failed = s.scalars(select(AuditEvent).where(AuditEvent.action == "flow.failed")).all()
        assert [e.details.get("flow") for e in failed] == ["fit-daily"]
    assert messages(flow_db, "fit_offer_reminder") == []
    monkeypatch.setattr(fit_flows, "send_daily", real)
    assert fit_flows.fit_daily(day="2026-05-05")["reminders"] == 1


# --- the messages the FIT services queue, against the template table --------------------------


def test_every_fit_message_matches_the_template_table_and_renders_in_every_language(
    flow_db, actors, monkeypatch
):
    """tests/test_messages.py checks its context table against the services that send the
    other kinds; this drives the FIT services and the flow and checks the FIT kinds."""
    from flows.fit import fit_daily
    from tests.message_contexts import CONTEXTS, FILES, REQUIRED, every_context
    from tests.test_messages import _shape

    a, b, c = participants(flow_db, actors, 3)
    thga = actors["thga.nowak"]
    offer_id = an_offer(flow_db, actors, capacity=1, kind=OfferKind.job_fair, title="Karrieretag")
    regs = register(flow_db, actors, offer_id, [a, b])
    assert regs[b] == RegistrationStatus.waitlisted
    with flow_db.read() as s:
        first = s.scalars(
            select(FitRegistration.id).where(FitRegistration.participant_id == a)
        ).one()
    with flow_db.transaction() as s:  # b moves up: fit_place_freed
        cancel_registration(s, actor=thga, registration_id=first, now=NOW)
    fit_daily(day="2026-05-05")  # fit_offer_reminder
    fit_daily(day="2026-05-07")  # fit_feedback
    with flow_db.transaction() as s:
        add_permit(
            s,
            actor=thga,
            participant_id=c,
            kind=PermitKind.student,
            valid_from=date(2024, 10, 1),
            valid_until=date(2026, 6, 30),
            now=NOW,
        )
    fit_daily(day="2026-06-01")  # fit_permit_ending
    with flow_db.transaction() as s:
        job = add_job(
            s,
            actor=thga,
            participant_id=c,
            employer="Emscher Geotechnik GmbH",
            kind=JobKind.working_student,
            starts_on=date(2025, 1, 1),
            now=NOW,
        ).id
    days = weekdays(date(2025, 1, 2), 142)
    for chunk, half in ((days[:120], False), (days[120:122], True), (days[122:], False)):
        with flow_db.transaction() as s:  # near at 120, then 141 (two half days): over
            record_work_days(s, actor=thga, job_id=job, days=chunk, half=half, now=NOW)

    with flow_db.read() as s:
        rows = list(s.scalars(select(OutboxMessage).where(OutboxMessage.kind.like("fit_%"))))
        languages = dict(s.execute(select(Newcomer.id, Newcomer.preferred_language)).all())
        s.expunge_all()
    kinds = {r.kind for r in rows}
    fit_kinds = {k for k in CONTEXTS if k.startswith("fit_")}
    assert kinds == fit_kinds
    mismatches = []
    for kind in sorted(kinds):
        table = _shape([ctx for _, ctx in every_context(kind)])
        real = _shape([r.context for r in rows if r.kind == kind])
        if set(table) != set(real):
            mismatches.append(f"{kind}: services write {sorted(real)}, table has {sorted(table)}")
            continue
        for key, types in real.items():
            if not types <= table[key]:
                mismatches.append(f"{kind}.{key}: services write {types}, not {table[key]}")
    assert not mismatches, "\n".join(mismatches)
    failures = []
    for row in rows:
        if row.recipient_newcomer_id is not None:
            # To the student: in their language; the table's languages all render.
            assert row.language == languages[row.recipient_newcomer_id]
            assert "ar" in FILES[row.kind], f"{row.kind} goes to newcomers but has no Arabic"
        for lang in sorted(set(REQUIRED) | FILES[row.kind]):
            message = render_message(row.kind, lang, row.context)
            if message.language != lang:
                failures.append(f"{row.idempotency_key} in {lang}")
    assert not failures, failures
    assert {r.kind for r in rows if r.recipient_user_id is not None} == {"fit_day_limit_manager"}
