"""Ways to hand a rendered message to the outside world: a file drop, or an SMTP server."""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from tracker.clocks import utcnow
from tracker.config import Settings, get_settings


@dataclass(frozen=True)
class Outgoing:
    """One claimed outbox message, addressed and rendered, ready to send."""

    id: int
    idempotency_key: str
    kind: str
    to_address: str
    language: str
    subject: str
    body: str
    # The same message as an HTML document, sent as the e-mail's alternative to the text.
    html: str | None = None


class DeliveryError(Exception):
    """Sending failed. ``permanent`` says a retry cannot help (e.g. the address is rejected)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@runtime_checkable
class Sender(Protocol):
    """Delivers one message or raises ``DeliveryError``.

    It will be called again for the same message after a crash between sending and marking
    it sent, so a second call must either add no copy (the file drop) or make the copy
    recognisable as the same message (SMTP: the same ``Message-ID``).
    """

    def send(self, message: Outgoing) -> None: ...


def _key_digest(idempotency_key: str) -> str:
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]


def file_name_for(idempotency_key: str) -> str:
    """The drop file's name: a hash, so keys never become paths and one key is one file."""
    return _key_digest(idempotency_key) + ".json"


MESSAGE_ID_DOMAIN = "onboarding.local"
KEY_HEADER = "X-Onboarding-Key"


def message_id_for(idempotency_key: str) -> str:
    """The ``Message-ID`` of a message: the same for every attempt to send it.

    A hash rather than the key itself, so the ID is always a valid msg-id whatever the key
    holds; the key travels in clear in ``X-Onboarding-Key``.
    """
    return f"<{_key_digest(idempotency_key)}@{MESSAGE_ID_DOMAIN}>"


class FileSender:
    """Writes each message as one JSON file into a folder: the mail drop for local runs and tests.

    The file is named by the message's idempotency key, so delivering a message again (after a
    crash between sending and marking it sent) finds the file already there and adds no copy.
    The HTML form travels inside the same file (``"html"``), so text and HTML are written, and
    found again, together.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path_for(self, message: Outgoing) -> Path:
        return self.folder / file_name_for(message.idempotency_key)

    def send(self, message: Outgoing) -> None:
        target = self.path_for(message)
        payload = {
            "to": message.to_address,
            "subject": message.subject,
            "body": message.body,
            "html": message.html,
            "kind": message.kind,
            "key": message.idempotency_key,
            "language": message.language,
            "created": utcnow().isoformat(),
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if target.exists():
                return  # delivered before; the first copy stands
            # Write aside and rename: a reader (or a crash) never sees half a message.
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(payload, fh, ensure_ascii=False, indent=2)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DeliveryError(f"could not write {target.name}: {exc}") from exc


class SmtpSender:
    """Sends each message to an SMTP server: one connection per message, or one for a whole
    run of messages through ``sender.connection()`` (no TLS handshake and login per message).

    SMTP cannot be exactly-once. If the worker dies after the server accepted a message but
    before the outbox marked it sent, the message is sent again when its lease runs out, and
    the recipient gets a second copy. What this sender guarantees is that both copies carry
    the same ``Message-ID`` (derived from the idempotency key) and the key itself in
    ``X-Onboarding-Key``, so a receiving system or mail client can drop the duplicate.

    Failures become ``DeliveryError``: ``permanent=True`` only when the server refused this
    message or its recipient for good (a 5xx reply to RCPT or DATA, or 552 "too big" to MAIL
    FROM), so the outbox parks it at once; everything else (refused or reset connections,
    timeouts, 4xx replies, and 5xx replies to the session as a whole, which mean a
    misconfiguration rather than a bad message) is retried with backoff.

    The password is held as a ``SecretStr``, never logged, never put into an error message,
    and smtplib's debug output (which would print the AUTH exchange) is never switched on.
    """

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        from_address: str = "Welcome Office Bochum <welcome@localhost>",
        user: str | None = None,
        password: SecretStr | str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.from_address = from_address
        self.user = user
        self._password = SecretStr(password) if isinstance(password, str) else password
        self.starttls = starttls
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpSender:
        if not settings.smtp_host:
            raise ValueError("ONBOARDING_SMTP_HOST is not set")
        return cls(
            settings.smtp_host,
            settings.smtp_port,
            from_address=settings.smtp_from,
            user=settings.smtp_user or None,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
            timeout=settings.smtp_timeout,
        )

    def __repr__(self) -> str:
        # Spelled out so that no future field (least of all the password) leaks into a log.
        return (
            f"SmtpSender(host={self.host!r}, port={self.port}, user={self.user!r}, "
            f"starttls={self.starttls}, timeout={self.timeout})"
        )

    def build(self, message: Outgoing) -> EmailMessage:
        """The e-mail for one outbox message; identical headers on every attempt but Date.

        With an HTML form it is multipart/alternative: the text part first (exactly the e-mail
        a text-only message would be), then the HTML part, which clients show when they can.
        """
        mail = EmailMessage()
        mail["From"] = self.from_address
        mail["To"] = message.to_address
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(utcnow())
        mail["Message-ID"] = message_id_for(message.idempotency_key)
        mail[KEY_HEADER] = message.idempotency_key
        # RFC 3834: machine-sent, so well-behaved auto-responders do not answer it.
        mail["Auto-Submitted"] = "auto-generated"
        # Quoted-printable keeps the body 7-bit clean, so a relay without 8BITMIME passes
        # umlauts, Arabic and Cyrillic through unchanged.
        mail.set_content(message.body, subtype="plain", charset="utf-8", cte="quoted-printable")
        if message.html is not None:
            # Turns the mail into multipart/alternative and moves the text into its first part.
            mail.add_alternative(
                message.html, subtype="html", charset="utf-8", cte="quoted-printable"
            )
            for part in mail.iter_parts():
                del part["MIME-Version"]  # belongs to the message, not to its parts
        # After set_content and add_alternative, which clear or move every Content-* header
        # set before them.
        mail["Content-Language"] = message.language
        return mail

    def send(self, message: Outgoing) -> None:
        with self.connection() as send:
            send(message)

    @contextmanager
    def connection(self) -> Iterator[Callable[[Outgoing], None]]:
        """A ``send`` that keeps one connection open for the messages given to it in this
        block. A failure ends the connection; the next message opens a new one. The sender
        itself holds no connection, so blocks never share one (use each in one thread)."""
        line = _Line()
        try:
            yield lambda message: self._send(message, line)
        finally:
            line.hang_up()

    def _send(self, message: Outgoing, line: _Line) -> None:
        try:
            mail = self.build(message)
        except (ValueError, TypeError, MessageError) as exc:
            # E.g. a line break in the address: this message can never be sent as it is.
            raise DeliveryError(
                f"cannot build the e-mail: {self._redact(str(exc), message)}", permanent=True
            ) from exc
        # Taken off the line while in use: it goes back only once this message went through.
        smtp, line.smtp = line.smtp, None
        stage = "connect"
        try:
            if smtp is None:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    stage = "starttls"
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    stage = "login"
                    password = self._password.get_secret_value() if self._password else ""
                    smtp.login(self.user, password)
            stage = "send"
            smtp.send_message(mail, to_addrs=[message.to_address])
        except (smtplib.SMTPException, OSError) as exc:
            if smtp is not None:
                _quit_quietly(smtp)
            raise self._delivery_error(exc, stage, message) from exc
        except BaseException:
            # Anything else (a password smtplib cannot encode, an interrupt) leaves the session
            # in an unknown state: drop it without another word to the server.
            if smtp is not None:
                smtp.close()
            raise
        line.smtp = smtp

    def _delivery_error(self, exc: BaseException, stage: str, message: Outgoing) -> DeliveryError:
        """Classify a failure: permanent only when this message or its recipient was refused."""
        where = f"SMTP {self.host}:{self.port} {stage}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            # One recipient per message, so "all refused" is this message's recipient.
            code, reply = next(iter(exc.recipients.values()), (0, b""))
            text = f"{where}: recipient refused: {code} {_text(reply)}"
            return DeliveryError(self._redact(text, message), permanent=_is_5xx(code))
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            text = f"{where}: {type(exc).__name__}: {code} {_text(exc.smtp_error)}"
            permanent = _is_5xx(code) and (
                isinstance(exc, smtplib.SMTPDataError)
                # RFC 1870: 552 to MAIL FROM ... SIZE= means this message is too big.
                or (isinstance(exc, smtplib.SMTPSenderRefused) and code == 552)
            )
            return DeliveryError(self._redact(text, message), permanent=permanent)
        if isinstance(exc, smtplib.SMTPNotSupportedError) and stage == "send":
            # The address needs SMTPUTF8 and the server has none: it never will for this one.
            text = f"{where}: {exc}"
            return DeliveryError(self._redact(text, message), permanent=True)
        # Refused/reset connections, timeouts, TLS trouble, a dropped session: try again later.
        text = f"{where}: {type(exc).__name__}: {exc}"
        return DeliveryError(self._redact(text, message))

    def _redact(self, text: str, message: Outgoing) -> str:
        """Keep secrets and addresses out of ``last_error``, which the admin screen shows."""
        if self._password and self._password.get_secret_value():
            text = text.replace(self._password.get_secret_value(), "**********")
        if message.to_address:
            text = text.replace(message.to_address, "<recipient>")
        return text


def _is_5xx(code: int) -> bool:
    return 500 <= code < 600


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


@dataclass
class _Line:
    """The connection an ``SmtpSender.connection()`` block keeps between its messages."""

    smtp: smtplib.SMTP | None = None

    def hang_up(self) -> None:
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            _quit_quietly(smtp)


def _quit_quietly(smtp: smtplib.SMTP) -> None:
    """End the session. The outcome of the send is already known, so a failing QUIT (which
    ``with smtplib.SMTP(...)`` would raise) must not turn an accepted message into a retry
    and thus a second copy."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


@contextmanager
def sending(sender: Sender) -> Iterator[Callable[[Outgoing], None]]:
    """A ``send`` for a run of messages through ``sender``: over one connection where it
    keeps one (SMTP), else ``sender.send`` itself."""
    if isinstance(sender, SmtpSender):
        with sender.connection() as send:
            yield send
    else:
        yield sender.send


def default_sender(settings: Settings | None = None) -> Sender:
    """The sender configured for this installation: SMTP when a host is set, else the file drop."""
    settings = settings or get_settings()
    if settings.smtp_host:
        return SmtpSender.from_settings(settings)
    return FileSender(settings.mail_dir or settings.data_dir / "mail")
