"""The outbox against a real SMTP server (aiosmtpd on 127.0.0.1): nothing lost, nothing doubled.

What "nothing doubled" means here: SMTP has no way to make a send and the outbox's "sent" mark
one atomic step. A crash after the server accepted a message and before the mark is committed
sends the message again. The sender's promise is the same ``Message-ID`` (and
``X-Onboarding-Key``) on both copies, so the receiver can de-duplicate; the crash test below
shows exactly that. Every other failure (4xx replies, a server that is down) leaves the message
unsent and pending, so it arrives exactly once when the server takes it.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from tests.conftest import NOW, Actors
from tests.helpers import DeliveryRun, deliver, start_case
from tracker.access import Actor
from tracker.admin.organisations import update_organisation
from tracker.config import Settings
from tracker.db import Database
from tracker.enums import OutboxStatus
from tracker.messages.delivery import backoff, claim_messages
from tracker.messages.outbox import enqueue
from tracker.messages.rendering import render_message
from tracker.messages.senders import (
    KEY_HEADER,
    DeliveryError,
    FileSender,
    Outgoing,
    SmtpSender,
    default_sender,
    message_id_for,
    sending,
)
from tracker.models import Organisation, OutboxMessage

MULTILINGUAL = "Jürgen Müller · محمد العلي · Ольга Шевченко"
INJECTION = "{{ 7*7 }}"
TRY_LATER = "451 4.3.0 try later"
NO_SUCH_USER = "550 5.1.1 no such user"


# --- the server ------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """An aiosmtpd handler that keeps what it accepts and refuses when told to.

    Its methods run on the controller's event-loop thread; the tests read from the main
    thread, hence the lock.
    """

    received: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse_next: int = 0  # answer DATA with 451 for this many messages
    unknown: set[str] = field(default_factory=set)  # answer RCPT with 550 for these
    data_commands: int = 0
    peers: list[Any] = field(default_factory=list)  # the connection each message came over
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.unknown:
            return NO_SUCH_USER
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.data_commands += 1
            if self.refuse_next > 0:
                self.refuse_next -= 1
                return TRY_LATER
            mail = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(mail, EmailMessage)
            self.received.append(mail)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.peers.append(session.peer)
        return "250 OK queued"

    def message_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(str(m["Message-ID"]) for m in self.received)


def parts(mail: EmailMessage) -> tuple[EmailMessage, EmailMessage]:
    """The text and the HTML part of a multipart/alternative e-mail, checked to be just that."""
    assert mail.get_content_type() == "multipart/alternative"
    text, html = list(mail.iter_parts())
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    for part in (text, html):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
    return text, html


def content(part: EmailMessage) -> str:
    """A part's decoded text with the line ends it had before SMTP made them CRLF."""
    return str(part.get_content()).replace("\r\n", "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """A real SMTP server on a free local port that can be stopped and started again."""

    def __init__(self, **smtp_options: Any) -> None:
        self.mailbox = Mailbox()
        self.port = free_port()
        self._options = smtp_options
        self._controller: Controller | None = None

    def start(self) -> None:
        # A fresh Controller each time: the same port, the same mailbox, a new listener.
        self._controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port, **self._options
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def sender(self, **overrides: Any) -> SmtpSender:
        options: dict[str, Any] = {"timeout": 5.0, "from_address": "Welcome Office <wo@test>"}
        options.update(overrides)
        return SmtpSender("127.0.0.1", self.port, **options)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- helpers ---------------------------------------------------------------------------------


def give_everyone_an_address(db: Database, admin: Actor) -> None:
    with db.read() as s:
        org_keys = list(s.scalars(select(Organisation.key)))
    with db.transaction() as s:
        for key in org_keys:
            update_organisation(s, actor=admin, key=key, email=f"{key}@partners.invalid", now=NOW)


def outbox(db: Database) -> list[OutboxMessage]:
    with db.read() as s:
        rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        s.expunge_all()
    return rows


def enqueue_for_manager(db: Database, manager: Actor, count: int) -> None:
    with db.transaction() as s:
        for i in range(count):
            enqueue(
                s,
                key=f"test:case_closed:{i}",
                kind="case_closed",
                now=NOW + timedelta(seconds=i),
                recipient_user_id=manager.user_id,
                context={"reference": f"WO-TEST-{i:04d}"},
            )


def expected_ids(db: Database) -> set[str]:
    return {message_id_for(m.idempotency_key) for m in outbox(db)}


def assert_each_arrived_once(db: Database, smtp: SmtpServer) -> None:
    ids = smtp.mailbox.message_ids()
    assert set(ids) == expected_ids(db), "a message is missing or unexpected"
    assert all(n == 1 for n in ids.values()), f"doubled: {ids}"
    assert all(m.status == OutboxStatus.sent for m in outbox(db))


# --- delivery through the outbox ---------------------------------------------------------------


def test_each_message_arrives_once_with_its_headers_and_a_utf8_body(
    db: Database, actors: Actors, smtp: SmtpServer
) -> None:
    manager = actors["cm.mueller"]
    give_everyone_an_address(db, actors["admin"])
    ref = start_case(
        db, manager, now=NOW, email="priya@example.org", given_name="Jürgen", family_name="Ölçer"
    )
    with db.transaction() as s:
        enqueue(
            s,
            key="test:declined",
            kind="handoff_declined",
            now=NOW,
            recipient_user_id=manager.user_id,
            context={
                "reference": f"{MULTILINGUAL} {INJECTION}",
                "step": "housing",
                "organisation": f"<b>{INJECTION}</b>",
            },
        )

    report = deliver(db, sender=smtp.sender(), now=NOW + timedelta(seconds=1))
    again = deliver(db, sender=smtp.sender(), now=NOW + timedelta(hours=1))

    messages = outbox(db)
    with db.read() as s:
        org_names = {o.key: o.name for o in s.scalars(select(Organisation))}
    assert report.sent == len(messages) >= 3 and report.retried == report.failed == 0
    assert again.sent == again.retried == again.failed == 0
    assert_each_arrived_once(db, smtp)
    assert len(set(smtp.mailbox.peers)) == 1  # the claim went over one connection

    by_id = {str(m["Message-ID"]): m for m in smtp.mailbox.received}
    for row in messages:
        mail = by_id[message_id_for(row.idempotency_key)]
        assert mail[KEY_HEADER] == row.idempotency_key
        assert mail["From"] == "Welcome Office <wo@test>"
        assert mail["Auto-Submitted"] == "auto-generated"
        # Text first, then HTML: what the outbox row renders to, word for word.
        text, html = parts(mail)
        rendered = render_message(row.kind, row.language, row.context, organisation_names=org_names)
        assert content(text) == rendered.body
        assert content(html) == rendered.html
        assert mail["Content-Language"] == rendered.language
        assert f'<html lang="{rendered.language}" dir="ltr">' in html.get_content()
    for envelope_from, rcpts in smtp.mailbox.envelopes:
        assert envelope_from == "wo@test" and len(rcpts) == 1

    welcome = by_id[
        message_id_for(next(m.idempotency_key for m in messages if m.kind == "welcome"))
    ]
    assert welcome["To"] == "priya@example.org"
    assert welcome["Subject"] == f"Welcome to Bochum – your case {ref}"
    offers = [
        by_id[message_id_for(m.idempotency_key)] for m in messages if m.kind == "handoff_offered"
    ]
    assert offers and all(str(m["To"]).endswith("@partners.invalid") for m in offers)
    for offer in offers:  # partners get no names
        assert all("Jürgen" not in part.get_content() for part in parts(offer))

    declined = by_id[message_id_for("test:declined")]
    assert declined["To"] == "cm.mueller@demo.invalid"
    text, html = parts(declined)
    body = text.get_content()
    assert MULTILINGUAL in declined["Subject"] and INJECTION in declined["Subject"]
    assert MULTILINGUAL in body and f"<b>{INJECTION}</b>" in body
    assert "49" not in body and "49" not in declined["Subject"]
    # In the HTML the same data is escaped: shown as written, never markup, never evaluated.
    assert MULTILINGUAL in html.get_content()
    assert f"&lt;b&gt;{INJECTION}&lt;/b&gt;" in html.get_content()
    assert "<b>" not in html.get_content() and "49" not in html.get_content()


def test_an_arabic_newcomer_gets_a_right_to_left_html_part_and_the_same_text_part(
    db: Database, actors: Actors, smtp: SmtpServer
) -> None:
    ref = start_case(
        db,
        actors["cm.mueller"],
        now=NOW,
        consent_to=[],
        email="layla@example.org",
        preferred_language="ar",
        given_name="<script>alert(1)</script>",
        family_name=INJECTION,
    )
    report = deliver(db, sender=smtp.sender(), now=NOW + timedelta(seconds=1))
    assert report.sent >= 1
    (mail,) = [m for m in smtp.mailbox.received if m["To"] == "layla@example.org"]
    assert mail["Content-Language"] == "ar"
    assert ref in str(mail["Subject"]) and str(mail["Subject"]).startswith("مرحبًا بك")
    text, html = parts(mail)
    page = html.get_content()
    assert '<html lang="ar" dir="rtl">' in page and '<body dir="rtl"' in page
    assert "text-align: right" in page and "text-align: left" not in page
    assert "<script" not in page and "49" not in page and "49" not in text.get_content()

    # The text part is exactly the e-mail the message would be without its HTML form.
    (row,) = [m for m in outbox(db) if m.kind == "welcome"]
    rendered = render_message(row.kind, row.language, row.context)
    assert content(text) == rendered.body
    outgoing = Outgoing(
        row.id,
        row.idempotency_key,
        row.kind,
        "layla@example.org",
        rendered.language,
        rendered.subject,
        rendered.body,
        rendered.html,
    )
    sender = smtp.sender()
    plain = sender.build(replace(outgoing, html=None))
    assert plain.get_content_type() == "text/plain"
    assert plain.get_payload() == text.get_payload().replace("\r\n", "\n")
    for header in ("Content-Type", "Content-Transfer-Encoding"):
        assert plain[header] == text[header]
    both = sender.build(outgoing)
    for header in ("Message-ID", KEY_HEADER, "Subject", "From", "To", "Content-Language"):
        assert both[header] == plain[header] == mail[header]


def test_a_server_answering_451_keeps_messages_pending_then_each_arrives_once(
    db: Database, actors: Actors, smtp: SmtpServer
) -> None:
    enqueue_for_manager(db, actors["cm.mueller"], 3)
    smtp.mailbox.refuse_next = 6  # two rounds of three
    sender = smtp.sender()
    first_at = NOW + timedelta(seconds=10)

    first = deliver(db, sender=sender, now=first_at)
    assert first == DeliveryRun(retried=3)
    for m in outbox(db):
        assert m.status == OutboxStatus.pending and m.attempts == 1
        assert m.next_attempt_at == first_at + backoff(1)
        assert "451" in (m.last_error or "") and "try later" in (m.last_error or "")

    # Inside the backoff nobody knocks on the server.
    early = deliver(db, sender=sender, now=first_at + backoff(1) - timedelta(seconds=1))
    assert early.retried == 0 and smtp.mailbox.data_commands == 3

    second_at = first_at + backoff(1)
    assert deliver(db, sender=sender, now=second_at).retried == 3
    assert smtp.mailbox.received == []

    third = deliver(db, sender=sender, now=second_at + backoff(2))
    assert third.sent == 3 and smtp.mailbox.data_commands == 9
    assert_each_arrived_once(db, smtp)
    assert all(m.attempts == 3 and m.last_error is None for m in outbox(db))


def test_a_server_that_is_down_and_comes_back_gets_each_message_once(
    db: Database, actors: Actors, smtp: SmtpServer
) -> None:
    give_everyone_an_address(db, actors["admin"])
    start_case(db, actors["cm.mueller"], now=NOW, email="priya@example.org")
    enqueue_for_manager(db, actors["cm.mueller"], 2)
    total = len(outbox(db))
    sender = smtp.sender()

    smtp.stop()
    down_at = NOW + timedelta(seconds=10)
    down = deliver(db, sender=sender, now=down_at)
    assert down == DeliveryRun(retried=total)
    for m in outbox(db):
        assert m.status == OutboxStatus.pending
        assert "ConnectionRefusedError" in (m.last_error or "")

    smtp.start()
    back = deliver(db, sender=sender, now=down_at + backoff(1))
    assert back.sent == total
    assert_each_arrived_once(db, smtp)
    assert deliver(db, sender=sender, now=NOW + timedelta(days=1)).sent == 0
    assert len(smtp.mailbox.received) == total


def test_a_crash_between_send_and_mark_resends_with_the_same_message_id(
    db: Database, actors: Actors, smtp: SmtpServer
) -> None:
    """The limit of SMTP: a message the server accepted but the outbox never marked is sent
    again after its lease runs out, and the recipient gets two copies. Both carry the same
    Message-ID and X-Onboarding-Key, so the receiver can drop the second; the outbox still
    ends with one row per message, marked sent."""
    enqueue_for_manager(db, actors["cm.mueller"], 3)
    sender = smtp.sender()
    claimed_at = NOW + timedelta(seconds=10)
    with db.transaction() as s:
        claimed = claim_messages(s, now=claimed_at, lease_seconds=300)
    for outgoing in claimed:
        sender.send(outgoing)  # ... and the worker dies before marking anything
    assert len(smtp.mailbox.received) == 3

    during = deliver(db, sender=sender, now=claimed_at + timedelta(seconds=299))
    assert during.sent == 0 and len(smtp.mailbox.received) == 3

    after = deliver(db, sender=sender, now=claimed_at + timedelta(seconds=300))
    assert after.sent == 3

    ids = smtp.mailbox.message_ids()
    assert set(ids) == expected_ids(db) and all(n == 2 for n in ids.values())
    first, second = smtp.mailbox.received[:3], smtp.mailbox.received[3:]
    for a, b in zip(first, second, strict=True):
        assert a["Message-ID"] == b["Message-ID"] and a[KEY_HEADER] == b[KEY_HEADER]
        assert a["Subject"] == b["Subject"]
        for part_a, part_b in zip(parts(a), parts(b), strict=True):
            assert part_a.get_content() == part_b.get_content()
    rows = outbox(db)
    assert len(rows) == 3 and len({r.idempotency_key for r in rows}) == 3
    assert all(r.status == OutboxStatus.sent and r.attempts == 2 for r in rows)


def test_a_550_for_one_recipient_parks_that_message_at_once(
    db: Database, actors: Actors, smtp: SmtpServer
) -> None:
    give_everyone_an_address(db, actors["admin"])
    start_case(db, actors["cm.mueller"], now=NOW, email="nobody@example.org")
    smtp.mailbox.unknown = {"nobody@example.org"}
    sender = smtp.sender()

    report = deliver(db, sender=sender, now=NOW + timedelta(seconds=10))
    rows = outbox(db)
    welcome = next(m for m in rows if m.kind == "welcome")
    others = [m for m in rows if m.kind != "welcome"]
    assert others and report == DeliveryRun(sent=len(others), failed=1)
    assert welcome.status == OutboxStatus.failed and welcome.attempts == 1
    assert welcome.last_error is not None
    assert "recipient refused: 550 5.1.1 no such user" in welcome.last_error
    assert "nobody@example.org" not in welcome.last_error  # the admin screen shows no addresses
    assert all(m.status == OutboxStatus.sent for m in others)
    assert set(smtp.mailbox.message_ids()) == {message_id_for(m.idempotency_key) for m in others}

    assert deliver(db, sender=sender, now=NOW + timedelta(days=1)) == DeliveryRun()
    assert len(smtp.mailbox.received) == len(others)


# --- the sender on its own ---------------------------------------------------------------------


def outgoing(to: str = "someone@example.org", key: str = "test:1") -> Outgoing:
    return Outgoing(1, key, "welcome", to, "de", "Betreff", "Hallo")


def test_login_works_and_a_wrong_password_stays_out_of_the_error() -> None:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"office",
            b"s3cret-pw",
        )
        return AuthResult(success=ok, handled=False)

    # Plain-text AUTH is fine on 127.0.0.1 in a test; never in production (use STARTTLS).
    server = SmtpServer(authenticator=authenticate, auth_require_tls=False)
    server.start()
    try:
        server.sender(user="office", password="s3cret-pw").send(outgoing())
        assert len(server.mailbox.received) == 1

        wrong = server.sender(user="office", password="wrong-pw-123")
        with pytest.raises(DeliveryError) as caught:
            wrong.send(outgoing(key="test:2"))
        assert not caught.value.permanent  # a configuration problem: retry once it is fixed
        assert "login" in str(caught.value) and "535" in str(caught.value)
        assert "wrong-pw-123" not in str(caught.value) and "wrong-pw-123" not in repr(wrong)
        assert len(server.mailbox.received) == 1
    finally:
        server.stop()


def test_a_run_of_messages_shares_one_connection_and_login_until_a_failure_ends_it() -> None:
    logins: list[bytes] = []

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        logins.append(data.login)
        return AuthResult(success=True, handled=False)

    server = SmtpServer(authenticator=authenticate, auth_require_tls=False)
    server.mailbox.unknown = {"nobody@example.org"}
    server.start()
    try:
        sender = server.sender(user="office", password="s3cret-pw")
        with sending(sender) as send:
            send(outgoing(key="run:1"))
            send(outgoing(key="run:2"))
            with pytest.raises(DeliveryError) as refused:
                send(outgoing(to="nobody@example.org", key="run:3"))
            assert refused.value.permanent
            send(outgoing(key="run:4"))
            send(outgoing(key="run:5"))
            # The server goes away and comes back: the kept connection is dead. That message
            # fails for now (retried later, as any dropped connection is); the next one gets
            # a new connection.
            server.stop()
            server.start()
            with pytest.raises(DeliveryError) as dropped:
                send(outgoing(key="run:6"))
            assert not dropped.value.permanent
            send(outgoing(key="run:7"))
        # Outside such a run, each message has a connection of its own.
        sender.send(outgoing(key="run:8"))
        sender.send(outgoing(key="run:9"))
        mailbox = server.mailbox
        assert [m[KEY_HEADER] for m in mailbox.received] == [
            f"run:{n}" for n in (1, 2, 4, 5, 7, 8, 9)
        ]
        one, two, four, five, *_ = mailbox.peers
        assert one == two and four == five
        # One login per connection: 1-3, 4-6, 7, 8 and 9.
        assert logins == [b"office"] * 5
    finally:
        server.stop()


def test_an_unexpected_error_drops_the_connection_it_happened_on() -> None:
    """smtplib cannot encode a non-ASCII password for AUTH: the error is not an SMTP one, and
    the half-open session must not carry the next message, unauthenticated, in a run."""
    logins: list[bytes] = []

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        logins.append(data.login)
        return AuthResult(success=True, handled=False)

    server = SmtpServer(authenticator=authenticate, auth_require_tls=False)
    server.start()
    try:
        sender = server.sender(user="office", password="pässwort")
        with sending(sender) as send:
            for n in range(3):
                with pytest.raises(UnicodeEncodeError):
                    send(outgoing(key=f"unicode:{n}"))
        with pytest.raises(UnicodeEncodeError):
            sender.send(outgoing(key="unicode:3"))
        assert server.mailbox.received == [] and logins == []
    finally:
        server.stop()


def test_the_delivery_flow_sends_a_claim_over_one_connection(
    smtp: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows import delivery as flow_delivery

    monkeypatch.setattr(flow_delivery, "default_sender", smtp.sender)
    smtp.mailbox.unknown = {"nobody@example.org"}
    claim = [replace(outgoing(key=f"claim:{n}"), id=n) for n in range(4)]
    claim[1] = replace(claim[1], to_address="nobody@example.org")
    failures = flow_delivery.send_batch.fn(claim, len(claim))
    assert set(failures) == {1} and failures[1][1] is True  # refused for good
    first, third, fourth = smtp.mailbox.peers
    assert first != third == fourth  # the refusal ended the first connection, not the run


def test_starttls_against_a_server_without_it_is_a_retryable_error(smtp: SmtpServer) -> None:
    with pytest.raises(DeliveryError, match="starttls") as caught:
        smtp.sender(starttls=True).send(outgoing())
    assert not caught.value.permanent
    assert smtp.mailbox.received == []


def test_a_server_that_never_answers_times_out_as_a_retryable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sender's own timeout is the one the connection waits with, and it gives up after
    one attempt: no waiting on the system's default, no second knock."""
    connections: list[tuple[tuple[str, int], float | None]] = []
    real_connect = socket.create_connection

    def connect(address: tuple[str, int], timeout: Any = None, *args: Any, **kwargs: Any) -> Any:
        connections.append((address, timeout))
        return real_connect(address, timeout, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", connect)
    # Listening but never accepting: the connection lands in the backlog, no greeting comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(DeliveryError, match="timed out") as caught:
            SmtpSender("127.0.0.1", port, timeout=0.3).send(outgoing())
    assert not caught.value.permanent
    assert connections == [(("127.0.0.1", port), 0.3)]


def test_an_address_with_a_line_break_is_refused_before_connecting() -> None:
    # Port 9 (discard) is not listening: reaching the network would be a retryable error.
    with pytest.raises(DeliveryError, match="cannot build") as caught:
        SmtpSender("127.0.0.1", 9).send(outgoing(to="a@example.org\r\nBcc: all@example.org"))
    assert caught.value.permanent


def test_the_message_id_is_stable_per_key_and_distinct_across_keys() -> None:
    sender = SmtpSender("127.0.0.1")
    a, b = sender.build(outgoing(key="welcome:1")), sender.build(outgoing(key="welcome:1"))
    assert a["Message-ID"] == b["Message-ID"] == message_id_for("welcome:1")
    assert message_id_for("welcome:1") != message_id_for("welcome:2")
    assert str(a["Message-ID"]).endswith("@onboarding.local>")
    assert a["Content-Language"] == "de"
    # Without an HTML form the e-mail stays a single text/plain part, as it always was.
    assert a.get_content_type() == "text/plain" and a["Content-Transfer-Encoding"] == (
        "quoted-printable"
    )
    html = sender.build(replace(outgoing(key="welcome:1"), html="<p>Hallo</p>"))
    assert html["Message-ID"] == a["Message-ID"] and html[KEY_HEADER] == "welcome:1"
    assert html["Content-Language"] == "de" and html["MIME-Version"] == "1.0"
    assert [p["MIME-Version"] for p in parts(html)] == [None, None]


def test_settings_choose_smtp_when_a_host_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("ONBOARDING_SMTP_HOST", raising=False)
    assert isinstance(default_sender(Settings(data_dir=tmp_path)), FileSender)
    monkeypatch.setenv("ONBOARDING_SMTP_HOST", "mail.example.org")
    monkeypatch.setenv("ONBOARDING_SMTP_PORT", "587")
    monkeypatch.setenv("ONBOARDING_SMTP_USER", "office")
    monkeypatch.setenv("ONBOARDING_SMTP_PASSWORD", "hunter2-pw")
    monkeypatch.setenv("ONBOARDING_SMTP_STARTTLS", "true")
    settings = Settings(data_dir=tmp_path)
    sender = default_sender(settings)
    assert isinstance(sender, SmtpSender)
    assert (sender.host, sender.port, sender.user, sender.starttls) == (
        "mail.example.org",
        587,
        "office",
        True,
    )
    assert sender.timeout == 10 and sender.from_address.endswith("<welcome@localhost>")
    assert "hunter2-pw" not in repr(sender) and "hunter2-pw" not in repr(settings)
    assert "hunter2-pw" not in str(settings.model_dump())
