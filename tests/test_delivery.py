"""Templates and outbox delivery: every kind renders, nothing is lost, nothing is sent twice."""

from __future__ import annotations

import json
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError
from sqlalchemy import select

from tests.conftest import NOW
from tests.helpers import DeliveryRun, LockWait, deliver, start_case
from tracker.access import Actor
from tracker.admin.organisations import update_organisation
from tracker.db import Database
from tracker.enums import OutboxStatus
from tracker.errors import InvalidTransition, PermissionDenied
from tracker.messages.delivery import (
    NO_ADDRESS,
    backoff,
    claim_messages,
    mark_failed,
    mark_sent,
    retry_message,
)
from tracker.messages.outbox import enqueue
from tracker.messages.queries import failed_messages
from tracker.messages.rendering import MESSAGES_DIR, TemplateMissing, render_message, step_title
from tracker.messages.senders import DeliveryError, FileSender, Outgoing, file_name_for
from tracker.models import AuditEvent, Organisation, OutboxMessage

LANGUAGES = ["de", "en"]
REFERENCE = "WO-7K3M-Q9XA"
INJECTIONS = ["{{ 7*7 }}", "{% if true %}yes{% endif %}", "<script>alert(1)</script>"]

_FIT_OFFER = {
    "offer_title": "Karrieretag Ruhr",
    "offer_kind": "job_fair",
    "starts_at": "2026-05-06T08:00:00+00:00",
    "ends_at": "2026-05-06T12:00:00+00:00",
    "place": "THGA, Audimax",
}
_FIT_DAYS = {"year": 2026, "used": 121.5, "limit": 140, "remaining": 18.5, "level": "near"}

# One realistic context per message kind, shaped as the services write it to the outbox.
# (tests/test_messages.py checks the shapes against the rows the services really write.)
SAMPLE_CONTEXTS: dict[str, dict[str, Any]] = {
    "fit_place_freed": _FIT_OFFER,
    "fit_offer_reminder": _FIT_OFFER,
    "fit_feedback": _FIT_OFFER,
    "fit_permit_ending": {"permit": "job_search", "valid_until": "2027-02-28", "days_left": 52},
    "fit_day_limit": _FIT_DAYS,
    "fit_day_limit_manager": {**_FIT_DAYS, "reference": REFERENCE},
    "welcome": {"reference": REFERENCE},
    "handoff_offered": {"reference": REFERENCE, "step": "registration", "handoff_id": 17},
    "handoff_held": {"reference": REFERENCE, "step": "housing", "organisation": "vbw"},
    "handoff_declined": {"reference": REFERENCE, "step": "recognition", "organisation": "ihk-mr"},
    "handoff_returned": {"reference": REFERENCE, "step": "job_offer", "organisation": "afa-bochum"},
    "case_closed": {"reference": REFERENCE},
    "reminder": {
        "reference": REFERENCE,
        "step": "registration",
        "step_state": "open",
        "due_date": "2026-03-16",
        "legal_reference": "§ 17 BMG",
        "threshold": "due_soon",
    },
    "escalation": {
        "reference": REFERENCE,
        "step": "registration",
        "step_state": "open",
        "due_date": "2026-03-16",
        "legal_reference": None,
        "threshold": "overdue",
    },
    "handoff_unanswered": {
        "reference": REFERENCE,
        "step": "recognition",
        "organisation": "ihk-mr",
        "handoff_id": 17,
        "offered_on": "2026-03-02",
        "days_waiting": 6,
    },
    "digest": {
        "organisation": "stadt-bochum",
        "day": "2026-03-02",
        "counts": {"offered": 2, "accepted": 1, "overdue": 0, "due_soon": 1},
        "total": 3,
        "more": 1,
        "items": [
            {
                "reference": REFERENCE,
                "step": "registration",
                "state": "offered",
                "due_date": "2026-03-16",
                "due_status": "due_soon",
            },
            {
                "reference": "WO-2222-3333",
                "step": "housing",
                "state": "accepted",
                "due_date": None,
                "due_status": "none",
            },
        ],
    },
}
KINDS = sorted(SAMPLE_CONTEXTS)


# --- rendering ---------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_message_kind_renders_in_every_language(kind: str, language: str) -> None:
    message = render_message(kind, language, SAMPLE_CONTEXTS[kind])
    assert message.language == language  # no silent fallback: the translation exists
    assert message.subject and "\n" not in message.subject
    assert message.body.strip()
    assert f'<html lang="{language}" dir="ltr">' in message.html
    assert "{{" not in message.subject + message.body
    assert "Welcome Office Bochum" in message.body
    shown = message.subject + message.body
    if "reference" in SAMPLE_CONTEXTS[kind]:
        assert REFERENCE in shown
    if "step" in SAMPLE_CONTEXTS[kind]:
        assert step_title(SAMPLE_CONTEXTS[kind]["step"], language) in shown


def test_every_template_on_disk_has_a_sample_and_every_translation() -> None:
    found: dict[str, set[str]] = {}
    for path in MESSAGES_DIR.glob("*.txt"):
        kind, lang, _ = path.name.split(".")
        found.setdefault(lang, set()).add(kind)
    assert set(LANGUAGES) <= set(found)
    for lang, kinds in found.items():
        if lang in LANGUAGES:  # German and English have every kind
            assert kinds == set(KINDS), (
                f"{lang}: missing {set(KINDS) - kinds}, extra {kinds - set(KINDS)}"
            )
        else:  # further languages (Arabic) have the messages that go to newcomers
            assert kinds <= set(KINDS), f"{lang}: unknown kinds {kinds - set(KINDS)}"


def test_german_and_english_differ_and_format_dates_per_locale() -> None:
    de = render_message("escalation", "de", SAMPLE_CONTEXTS["escalation"])
    en = render_message("escalation", "en", SAMPLE_CONTEXTS["escalation"])
    assert de.body != en.body
    assert "16. März 2026" in de.body
    assert "March 16, 2026" in en.body
    assert "Anmeldung (Wohnsitz)" in de.subject
    assert "Residence registration" in en.subject


def test_a_timestamp_is_shown_as_the_day_it_was_in_bochum() -> None:
    context = dict(SAMPLE_CONTEXTS["handoff_unanswered"])
    del context["offered_on"], context["days_waiting"]
    context["offered_at"] = "2026-03-02T23:30:00+00:00"
    assert "3. März 2026" in render_message("handoff_unanswered", "de", context).body


def test_the_legal_basis_and_the_threshold_show_in_a_reminder() -> None:
    soon = render_message("reminder", "en", SAMPLE_CONTEXTS["reminder"])
    late = render_message("reminder", "de", {**SAMPLE_CONTEXTS["reminder"], "threshold": "overdue"})
    assert "due soon" in soon.subject and "Legal basis: § 17 BMG" in soon.body
    assert "überfällig" in late.subject and "war am 16. März 2026" in late.body


def test_the_digest_lists_counts_items_and_what_it_leaves_out() -> None:
    de = render_message("digest", "de", SAMPLE_CONTEXTS["digest"])
    assert "Stadt Bochum" in de.subject and "2. März 2026" in de.subject
    assert "angeboten: 2" in de.body and "bald fällig: 1" in de.body
    assert f"{REFERENCE} · Anmeldung (Wohnsitz) · angeboten · fällig am 16. März 2026" in de.body
    assert "Ein weiterer Vorgang" in de.body
    empty = {**SAMPLE_CONTEXTS["digest"], "items": [], "counts": {}, "more": 0}
    assert "Your queue is empty today." in render_message("digest", "en", empty).body


def test_a_language_without_templates_falls_back_to_german() -> None:
    message = render_message("welcome", "tr", {"reference": REFERENCE})
    assert message.language == "de"
    assert message.subject.startswith("Willkommen")


def test_an_unknown_kind_raises_template_missing_with_a_clear_message() -> None:
    with pytest.raises(TemplateMissing, match="no_such_kind"):
        render_message("no_such_kind", "en", {})
    with pytest.raises(TemplateMissing):
        render_message("../../etc/passwd", "en", {})


def test_a_missing_context_value_is_an_error_not_an_empty_gap() -> None:
    with pytest.raises(UndefinedError):
        render_message("handoff_offered", "en", {"reference": REFERENCE})


TEXT_FIELDS = ("reference", "organisation", "offer_title", "place")
# Kinds with text that came from data (the others carry only numbers, dates and fixed words).
KINDS_WITH_TEXT = [
    k for k in KINDS if k == "digest" or any(f in SAMPLE_CONTEXTS[k] for f in TEXT_FIELDS)
]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("kind", KINDS_WITH_TEXT)
def test_injection_strings_in_context_values_stay_literal(kind: str, language: str) -> None:
    context = json.loads(json.dumps(SAMPLE_CONTEXTS[kind]))
    payload = " ".join(INJECTIONS)
    for key in TEXT_FIELDS:
        if key in context:
            context[key] = payload
    if kind == "digest":
        context["items"][0]["reference"] = payload
    message = render_message(kind, language, context)
    shown = message.subject + "\n" + message.body
    for injection in INJECTIONS:
        assert injection in shown
    assert "49" not in shown and "49" not in message.html
    assert "<script>" not in message.html and "&lt;script&gt;" in message.html
    assert "yes" not in shown.replace("{% if true %}yes{% endif %}", "")


# --- delivery against the database ---------------------------------------------------------


def give_everyone_an_address(db: Database, admin: Actor) -> None:
    with db.read() as s:
        org_keys = list(s.scalars(select(Organisation.key)))
    with db.transaction() as s:
        for key in org_keys:
            update_organisation(s, actor=admin, key=key, email=f"{key}@partners.invalid", now=NOW)


def outbox(db: Database) -> list[OutboxMessage]:
    with db.read() as s:
        rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        s.expunge_all()  # keep the loaded values: the read session's rollback would expire them
    return rows


def mail_files(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("*.json"))]


def enqueue_for_manager(
    db: Database, manager: Actor, count: int, *, kind: str = "case_closed"
) -> None:
    with db.transaction() as s:
        for i in range(count):
            enqueue(
                s,
                key=f"test:{kind}:{i}",
                kind=kind,
                now=NOW + timedelta(seconds=i),
                recipient_user_id=manager.user_id,
                context={"reference": f"WO-TEST-{i:04d}"},
            )


class FailingSender:
    """A mail server that is down: every send raises."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def send(self, message: Outgoing) -> None:
        self.calls.append(message.idempotency_key)
        raise DeliveryError("connection refused")


class FlakySender:
    """Fails the first time it sees each message, then hands it to a file drop."""

    def __init__(self, folder: Path) -> None:
        self.inner = FileSender(folder)
        self.seen: set[str] = set()

    def send(self, message: Outgoing) -> None:
        if message.idempotency_key not in self.seen:
            self.seen.add(message.idempotency_key)
            raise RuntimeError("timeout")
        self.inner.send(message)


def test_claim_send_and_mark_deliver_each_message_exactly_once(db, actors, tmp_path):
    give_everyone_an_address(db, actors["admin"])
    ref = start_case(db, actors["cm.mueller"], now=NOW, email="priya@example.org")
    sender = FileSender(tmp_path / "mail")

    report = deliver(db, sender=sender, now=NOW)
    again = deliver(db, sender=sender, now=NOW + timedelta(hours=1))

    messages = outbox(db)
    assert {m.kind for m in messages} == {"welcome", "handoff_offered"}
    assert report.sent == len(messages) and report.retried == report.failed == 0
    assert again.sent == again.retried == again.failed == 0
    assert all(m.status == OutboxStatus.sent and m.sent_at == NOW for m in messages)
    assert all(m.attempts == 1 for m in messages)
    files = mail_files(tmp_path / "mail")
    assert sorted(f["key"] for f in files) == sorted(m.idempotency_key for m in messages)
    welcome = next(f for f in files if f["kind"] == "welcome")
    assert welcome["to"] == "priya@example.org"
    assert welcome["subject"] == f"Welcome to Bochum – your case {ref}"  # she prefers English
    offers = [f for f in files if f["kind"] == "handoff_offered"]
    assert all(f["to"].endswith("@partners.invalid") for f in offers)
    assert all(ref in f["subject"] and "Priya" not in f["body"] for f in offers)
    for f in files:
        assert set(f) >= {"to", "subject", "body", "html", "kind", "key", "created"}
        assert f["html"].startswith("<!DOCTYPE html>")
    assert '<html lang="en" dir="ltr">' in welcome["html"]
    assert ref in welcome["html"] and "Welcome to Bochum!" in welcome["html"]


def test_injection_strings_in_an_outbox_context_arrive_literally(db, actors, tmp_path):
    manager = actors["cm.mueller"]
    with db.transaction() as s:
        enqueue(
            s,
            key="test:declined",
            kind="handoff_declined",
            now=NOW,
            recipient_user_id=manager.user_id,
            context={"reference": "{{ 7*7 }}", "step": "housing", "organisation": "<b>{{ 6*7 }}"},
        )
    deliver(db, sender=FileSender(tmp_path), now=NOW)
    (mail,) = mail_files(tmp_path)
    assert "{{ 7*7 }}" in mail["subject"] and "<b>{{ 6*7 }}" in mail["body"]
    assert "49" not in mail["body"] and "42" not in mail["body"]
    assert "&lt;b&gt;{{ 6*7 }}" in mail["html"] and "<b>" not in mail["html"]
    assert "49" not in mail["html"] and "42" not in mail["html"]


def test_a_failing_sender_leaves_messages_pending_with_backoff_then_parks_them(db, actors):
    manager = actors["cm.mueller"]
    enqueue_for_manager(db, manager, 3)
    sender = FailingSender()

    first = deliver(db, sender=sender, now=NOW + timedelta(seconds=5), max_attempts=3)
    assert first == DeliveryRun(retried=3)
    for m in outbox(db):
        assert m.status == OutboxStatus.pending and m.attempts == 1
        assert m.next_attempt_at == NOW + timedelta(seconds=5) + backoff(1)
        assert m.last_error == "connection refused"

    # Not due yet: the backoff holds.
    early = deliver(db, sender=sender, now=NOW + timedelta(seconds=30), max_attempts=3)
    assert early.retried == 0 and len(sender.calls) == 3

    second_at = NOW + timedelta(seconds=5) + backoff(1)
    second = deliver(db, sender=sender, now=second_at, max_attempts=3)
    assert second.retried == 3
    assert all(m.next_attempt_at == second_at + backoff(2) for m in outbox(db))
    assert backoff(2) > backoff(1)

    third = deliver(db, sender=sender, now=second_at + backoff(2), max_attempts=3)
    assert third == DeliveryRun(failed=3)
    assert all(m.status == OutboxStatus.failed and m.attempts == 3 for m in outbox(db))
    assert deliver(db, sender=sender, now=NOW + timedelta(days=30)) == DeliveryRun()
    assert len(sender.calls) == 9


def test_an_admin_sees_parked_messages_and_retries_them_with_an_audit_event(db, actors, tmp_path):
    manager, admin = actors["cm.mueller"], actors["admin"]
    enqueue_for_manager(db, manager, 2)
    deliver(db, sender=FailingSender(), now=NOW + timedelta(seconds=5), max_attempts=1)

    with db.read() as s:
        parked = failed_messages(s, actor=admin)
        with pytest.raises(PermissionDenied):
            failed_messages(s, actor=manager)
    assert len(parked) == 2
    assert all(p.recipient == "user:cm.mueller" and p.attempts == 1 for p in parked)
    assert all(p.last_error == "connection refused" for p in parked)

    with db.transaction() as s, pytest.raises(PermissionDenied):
        retry_message(s, actor=manager, message_id=parked[0].id, now=NOW)
    later = NOW + timedelta(hours=2)
    with db.transaction() as s:
        for p in parked:
            retry_message(s, actor=admin, message_id=p.id, now=later)
    with db.transaction() as s, pytest.raises(InvalidTransition):
        retry_message(s, actor=admin, message_id=parked[0].id, now=later)

    report = deliver(db, sender=FileSender(tmp_path), now=later)
    assert report.sent == 2 and len(mail_files(tmp_path)) == 2
    with db.read() as s:
        events = s.execute(
            select(AuditEvent.entity_id, AuditEvent.actor, AuditEvent.details).where(
                AuditEvent.action == "outbox.retried"
            )
        ).all()
    assert sorted(e.entity_id for e in events) == sorted(p.id for p in parked)
    assert all(e.actor == "admin" and e.details["attempts"] == 1 for e in events)


def test_a_sender_that_fails_once_delivers_on_the_retry_and_only_once(db, actors, tmp_path):
    enqueue_for_manager(db, actors["cm.mueller"], 4)
    sender = FlakySender(tmp_path)
    first = deliver(db, sender=sender, now=NOW + timedelta(seconds=5))
    second = deliver(db, sender=sender, now=NOW + timedelta(minutes=2))
    assert (first.retried, second.sent) == (4, 4)
    assert len(mail_files(tmp_path)) == 4
    assert all(m.status == OutboxStatus.sent and m.attempts == 2 for m in outbox(db))


def test_an_expired_lease_of_a_crashed_worker_is_reclaimed(db, actors, tmp_path):
    enqueue_for_manager(db, actors["cm.mueller"], 3)
    claimed_at = NOW + timedelta(seconds=5)
    with db.transaction() as s:  # a worker claims, then dies without sending
        assert len(claim_messages(s, now=claimed_at, lease_seconds=300)) == 3
    sender = FileSender(tmp_path)

    during = deliver(db, sender=sender, now=claimed_at + timedelta(seconds=299))
    assert during.sent == 0 and mail_files(tmp_path) == []

    after = deliver(db, sender=sender, now=claimed_at + timedelta(seconds=300))
    assert after.sent == 3
    assert all(m.status == OutboxStatus.sent and m.attempts == 2 for m in outbox(db))


def test_a_worker_that_never_reports_back_gives_up_after_max_attempts(db, actors):
    enqueue_for_manager(db, actors["cm.mueller"], 1)
    at = NOW + timedelta(seconds=5)
    for _ in range(2):
        with db.transaction() as s:
            assert len(claim_messages(s, now=at, lease_seconds=60, max_attempts=2)) == 1
        at += timedelta(seconds=61)
    with db.transaction() as s:
        assert claim_messages(s, now=at, max_attempts=2) == []
    (message,) = outbox(db)
    assert message.status == OutboxStatus.failed
    assert "gave up after 2 attempts" in (message.last_error or "")


def test_a_message_whose_recipient_has_no_address_is_parked_at_once(db, actors, tmp_path):
    start_case(db, actors["cm.mueller"], now=NOW)  # no e-mail for the newcomer or partners
    report = deliver(db, sender=FileSender(tmp_path), now=NOW)
    messages = outbox(db)
    assert report == DeliveryRun()  # parked by the claim: nothing to send, nothing to record
    assert messages and all(m.status == OutboxStatus.failed for m in messages)
    assert all(m.last_error == NO_ADDRESS and m.attempts == 0 for m in messages)
    assert mail_files(tmp_path) == []


def test_a_message_without_a_template_is_parked_with_the_reason(db, actors, tmp_path):
    enqueue_for_manager(db, actors["cm.mueller"], 1, kind="no_such_kind")
    with db.transaction() as s:
        assert claim_messages(s, now=NOW) == []
    (message,) = outbox(db)
    assert message.status == OutboxStatus.failed
    assert "TemplateMissing" in (message.last_error or "")
    assert "no_such_kind" in (message.last_error or "")


def test_marking_is_idempotent_and_a_late_failure_cannot_undo_a_send(db, actors):
    enqueue_for_manager(db, actors["cm.mueller"], 1)
    with db.transaction() as s:
        (claimed,) = claim_messages(s, now=NOW)
    later = NOW + timedelta(minutes=1)
    with db.transaction() as s:
        assert mark_sent(s, message_id=claimed.id, now=later) == OutboxStatus.sent
    with db.transaction() as s:
        assert mark_sent(s, message_id=claimed.id, now=later + timedelta(hours=1)) == "sent"
        assert mark_failed(s, message_id=claimed.id, error="late", now=later) == "sent"
    (message,) = outbox(db)
    assert message.status == OutboxStatus.sent and message.sent_at == later
    assert message.last_error is None


def test_a_crash_between_send_and_mark_leaves_exactly_one_copy(db, actors, tmp_path):
    give_everyone_an_address(db, actors["admin"])
    start_case(db, actors["cm.mueller"], now=NOW, email="priya@example.org")
    enqueue_for_manager(db, actors["cm.mueller"], 3)
    sender = FileSender(tmp_path)
    with db.transaction() as s:
        claimed = claim_messages(s, now=NOW + timedelta(seconds=5), lease_seconds=300)
    for outgoing in claimed:
        sender.send(outgoing)  # ... and the worker dies before marking anything
    assert len(mail_files(tmp_path)) == len(claimed) == len(outbox(db))

    report = deliver(db, sender=sender, now=NOW + timedelta(minutes=10))
    assert report.sent == len(claimed)
    files = mail_files(tmp_path)
    assert len(files) == len(claimed)
    assert sorted(f["key"] for f in files) == sorted(m.idempotency_key for m in outbox(db))
    assert all(m.status == OutboxStatus.sent for m in outbox(db))
    names = {p.name for p in tmp_path.glob("*.json")}
    assert names == {file_name_for(m.idempotency_key) for m in outbox(db)}
    assert not list(tmp_path.glob(".tmp-*"))


def test_two_concurrent_claimers_never_claim_the_same_message(db, actors):
    """First a claim held open until the other claimer has met it (on PostgreSQL the second
    claim skips the locked rows and is done meanwhile; on SQLite it waits for the write lock and
    then sees the leases), then both claim on at once until nothing is left."""
    total = 40
    enqueue_for_manager(db, actors["cm.mueller"], total)
    at = NOW + timedelta(minutes=1)
    claimed: dict[str, list[int]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    held, met, release = threading.Event(), threading.Event(), threading.Event()
    start = threading.Barrier(2)

    def claim(name: str, *, hold: bool = False) -> bool:
        with db.transaction() as s:
            batch = claim_messages(s, now=at, limit=3)
            if hold:
                held.set()
                release.wait(30)
        claimed[name].extend(m.id for m in batch)
        return bool(batch)

    def worker(name: str, first: str) -> None:
        try:
            if first == "hold":
                claim(name, hold=True)
            else:
                assert held.wait(30)
                claim(name)
                met.set()
            start.wait(30)
            while claim(name):
                pass
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=("a", "hold")),
        threading.Thread(target=worker, args=("b", "meet")),
    ]
    with LockWait(db) as lock:
        for t in threads:
            t.start()
        overlapped = held.wait(30) and (lock.wait(30) if db.is_sqlite else met.wait(30))
        release.set()
        for t in threads:
            t.join(timeout=60)
    assert overlapped, "the second claim never met the first one's open transaction"
    assert not errors
    every = claimed["a"] + claimed["b"]
    assert len(every) == len(set(every)), "a message was claimed twice"
    assert sorted(every) == sorted(m.id for m in outbox(db))
    assert all(m.status == OutboxStatus.sending and m.attempts == 1 for m in outbox(db))


def test_the_file_sender_reports_io_problems_as_delivery_errors(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    message = Outgoing(1, "k", "welcome", "a@b.invalid", "de", "s", "b")
    with pytest.raises(DeliveryError, match="could not write"):
        FileSender(blocker).send(message)
    assert re.fullmatch(r"[0-9a-f]{32}\.json", file_name_for("welcome:1"))


def test_the_file_drop_keeps_the_html_in_the_same_file_and_writes_it_once(tmp_path):
    sender = FileSender(tmp_path)
    first = Outgoing(1, "k:1", "welcome", "a@b.invalid", "ar", "s", "b\n", "<p>eins</p>\n")
    sender.send(first)
    sender.send(Outgoing(1, "k:1", "welcome", "a@b.invalid", "ar", "s", "b\n", "<p>zwei</p>\n"))
    (drop,) = mail_files(tmp_path)
    assert drop["html"] == "<p>eins</p>\n" and drop["body"] == "b\n"
    assert [p.name for p in tmp_path.iterdir()] == [file_name_for("k:1")]
    sender.send(Outgoing(2, "k:2", "welcome", "a@b.invalid", "de", "s", "b\n"))
    assert next(f for f in mail_files(tmp_path) if f["key"] == "k:2")["html"] is None


def test_a_context_without_a_date_the_template_needs_is_parked_not_a_crash(db, actors):
    with db.transaction() as s:
        enqueue(
            s,
            key="test:escalation",
            kind="escalation",
            now=NOW,
            recipient_user_id=actors["cm.mueller"].user_id,
            context={"reference": REFERENCE, "step": "registration"},  # no due_date
        )
    with db.transaction() as s:
        assert claim_messages(s, now=NOW) == []
    (message,) = outbox(db)
    assert message.status == OutboxStatus.failed
    assert "UndefinedError" in (message.last_error or "")
    assert "due_date" in (message.last_error or "")


def test_a_claim_lasts_longer_than_sending_its_messages_can_take():
    """Each message may need every attempt with every SMTP stage timing out, plus backoff."""
    from flows.delivery import CLAIM_CHUNK, SEND_RETRIES, SMTP_STAGES, lease_for
    from tracker.config import get_settings

    timeout = get_settings().smtp_timeout
    worst_per_message = (SEND_RETRIES + 1) * SMTP_STAGES * timeout + (2 + 4 + 8)
    assert lease_for(CLAIM_CHUNK) > CLAIM_CHUNK * worst_per_message
    assert lease_for(1) < lease_for(CLAIM_CHUNK)
