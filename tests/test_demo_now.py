"""Demo data never lies in the future: nothing in it happens after the moment it is loaded."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Date, func, select

from tracker.clocks import local_today, utcnow
from tracker.db import Database
from tracker.demo.ledger import Ids, Ledger
from tracker.demo.load import load_demo
from tracker.enums import OutboxStatus
from tracker.errors import ValidationFailed
from tracker.models import AuditEvent, Base, OutboxMessage, UTCDateTime

# A Friday morning: the office has been open for a while, most of the day's work is still to come.
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
# Moments that are plans, not things that happened: an offer takes place when it is planned.
SCHEDULES = {("fit_offers", "starts_at"), ("fit_offers", "ends_at")}
# Dates that say when something happened (the others are due dates, validities and plans).
FACT_DAYS = {
    ("newcomers", "first_contact_date"),
    ("newcomers", "arrival_date"),
    ("newcomers", "move_in_date"),
    ("fit_participants", "enrolled_on"),
    ("fit_participants", "graduated_on"),
    ("fit_participants", "left_on"),
    ("fit_participants", "job_started_on"),
    ("fit_contacts", "contact_on"),
    ("fit_work_days", "day"),
}


def _latest(db: Database) -> tuple[dict[str, datetime], dict[str, date]]:
    """The latest moment in every timestamp column of every table, and the latest day in every
    column of a day something happened (empty columns left out)."""
    moments: dict[str, datetime] = {}
    days: dict[str, date] = {}
    with db.read() as s:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                where = (table.name, column.name)
                if isinstance(column.type, UTCDateTime) and where not in SCHEDULES:
                    found = s.scalar(select(func.max(column)))
                    if found is not None:
                        moments[".".join(where)] = found
                elif isinstance(column.type, Date) and where in FACT_DAYS:
                    found = s.scalar(select(func.max(column)))
                    if found is not None:
                        days[".".join(where)] = found
    return moments, days


def _last_event(db: Database) -> datetime:
    with db.read() as s:
        return s.scalar(
            select(func.max(AuditEvent.occurred_at)).where(AuditEvent.action != "demo.loaded")
        )


def _after(db: Database, now: datetime) -> tuple[dict[str, datetime], dict[str, date]]:
    moments, days = _latest(db)
    today = local_today(now)
    return (
        {name: at for name, at in moments.items() if at > now},
        {name: day for name, day in days.items() if day > today},
    )


def test_a_demo_loaded_in_the_morning_has_nothing_later_than_that_morning(empty_db):
    counts = load_demo(empty_db, people=300, seed=4, now=NOW)
    assert counts["audit_events"] > 5000 and counts["fit_participants"] > 0
    assert _after(empty_db, NOW) == ({}, {})
    moments, days = _latest(empty_db)
    # Every kind of row was there to be checked.
    checked = (
        "audit_events.occurred_at",
        "outbox.sent_at",
        "steps.done_at",
        "handoffs.created_at",
        "consents.given_at",
        "fit_registrations.updated_at",
        "fit_permits.created_at",
    )
    for name in checked:
        assert name in moments, name
    assert set(days) == {".".join(where) for where in FACT_DAYS}
    with empty_db.read() as s:
        loaded = s.scalar(select(AuditEvent.occurred_at).where(AuditEvent.action == "demo.loaded"))
        pending = s.scalars(
            select(OutboxMessage.created_at).where(OutboxMessage.status == OutboxStatus.pending)
        ).all()
    assert loaded == NOW
    assert _last_event(empty_db).date() == NOW.date()  # the day itself was under way
    # A message queued in the minute before the load is not sent yet.
    assert all(NOW - timedelta(minutes=1) <= at < NOW for at in pending)


def test_a_demo_loaded_now_has_nothing_later_than_now(empty_db):
    """The default: today, as far as it has gone (not the rest of the day as well)."""
    load_demo(empty_db, people=300, seed=4)
    assert _after(empty_db, utcnow()) == ({}, {})


def test_a_past_day_is_cut_at_its_end_and_a_future_day_is_refused(empty_db):
    day = date(2026, 11, 19)
    load_demo(empty_db, people=200, seed=4, as_of=day, now=NOW)
    end = datetime(2026, 11, 20, tzinfo=UTC)
    moments, _ = _latest(empty_db)
    assert moments["audit_events.occurred_at"] == NOW  # the demo.loaded event
    del moments["audit_events.occurred_at"]
    assert end - timedelta(days=1) <= _last_event(empty_db) < end  # the day itself had events
    assert max(moments.values()) < end
    with pytest.raises(ValidationFailed):
        load_demo(empty_db, people=5, seed=4, as_of=date(2026, 11, 21), now=NOW)
    with pytest.raises(ValidationFailed):
        load_demo(empty_db, people=5, seed=4, now=datetime(2024, 1, 2, 6, tzinfo=UTC))


def test_a_message_whose_minute_to_be_sent_is_not_over_by_the_cut_is_still_waiting():
    ledger = Ledger(Ids({"outbox": 1}), {}, ["outbox"], end=NOW)
    for key, queued in (
        ("early", NOW - timedelta(minutes=5)),
        ("late", NOW - timedelta(seconds=30)),
    ):
        ledger.message(key, "welcome", queued, case_id=1, context={})
    early, late = ledger.rows["outbox"]
    assert (early["status"], early["sent_at"]) == ("sent", NOW - timedelta(minutes=4))
    assert (late["status"], late["sent_at"], late["attempts"]) == ("pending", None, 0)
    assert late["next_attempt_at"] == NOW - timedelta(seconds=30)
