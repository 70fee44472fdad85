"""The outbox's delivery rules (the delivery flow sends): claim with a lease, mark, retry, park."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from jinja2 import TemplateError
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, require_admin
from tracker.config import get_settings
from tracker.enums import OutboxStatus
from tracker.errors import InvalidTransition, NotFoundError
from tracker.messages.rendering import RenderError, render_message
from tracker.messages.senders import Outgoing
from tracker.models import Newcomer, Organisation, OutboxMessage, User

# Minutes to wait after the 1st, 2nd, ... failed attempt; the last value repeats.
BACKOFF_MINUTES = (1, 5, 15, 60, 240)
NO_ADDRESS = "recipient has no e-mail address"
NO_RECIPIENT = "message has no recipient"
MAX_ERROR_CHARS = 2000


def backoff(attempts: int) -> timedelta:
    """How long to wait after the given number of failed attempts (1 or more)."""
    index = min(max(attempts, 1), len(BACKOFF_MINUTES)) - 1
    return timedelta(minutes=BACKOFF_MINUTES[index])


def _max_attempts(value: int | None) -> int:
    return value if value is not None else get_settings().delivery_max_attempts


def _park(message: OutboxMessage, error: str) -> None:
    message.status = OutboxStatus.failed
    message.last_error = error[:MAX_ERROR_CHARS]


@dataclass
class _Recipients:
    """The recipients of one claimed batch, each table read once."""

    orgs: dict[int, Organisation]
    users: dict[int, User]
    newcomers: dict[int, Newcomer]
    org_names: dict[str, str]

    @classmethod
    def load(cls, session: Session, messages: Sequence[OutboxMessage]) -> _Recipients:
        user_ids = {m.recipient_user_id for m in messages if m.recipient_user_id}
        newcomer_ids = {m.recipient_newcomer_id for m in messages if m.recipient_newcomer_id}
        # All organisations: there are a few dozen, and templates name them by key.
        orgs = {o.id: o for o in session.scalars(select(Organisation))}
        users = (
            {u.id: u for u in session.scalars(select(User).where(User.id.in_(user_ids)))}
            if user_ids
            else {}
        )
        newcomers = (
            {
                n.id: n
                for n in session.scalars(select(Newcomer).where(Newcomer.id.in_(newcomer_ids)))
            }
            if newcomer_ids
            else {}
        )
        return cls(orgs, users, newcomers, {o.key: o.name for o in orgs.values()})

    def address(self, message: OutboxMessage) -> str | None:
        """The recipient's address; raises ``LookupError`` if the message names nobody."""
        if message.recipient_org_id is not None:
            org = self.orgs.get(message.recipient_org_id)
            return org.email if org else None
        if message.recipient_user_id is not None:
            user = self.users.get(message.recipient_user_id)
            return user.email if user else None
        if message.recipient_newcomer_id is not None:
            newcomer = self.newcomers.get(message.recipient_newcomer_id)
            return newcomer.email if newcomer else None
        raise LookupError(NO_RECIPIENT)


def claim_messages(
    session: Session,
    *,
    now: datetime,
    limit: int = 100,
    lease_seconds: int = 300,
    max_attempts: int | None = None,
) -> list[Outgoing]:
    """Lease up to ``limit`` due messages to this worker, oldest first, rendered and addressed.

    Messages that cannot be delivered at all (no address, no template) are parked as failed
    and not returned.
    """
    give_up_after = _max_attempts(max_attempts)
    stmt = (
        select(OutboxMessage)
        .where(
            # A "sending" row whose lease has run out belongs to a worker that crashed or hung.
            OutboxMessage.status.in_([OutboxStatus.pending, OutboxStatus.sending]),
            OutboxMessage.next_attempt_at <= now,
        )
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
        .limit(limit)
        # PostgreSQL: rows another worker is claiming right now are skipped, not waited for,
        # so workers never claim the same message. SQLite ignores this; its writers are
        # serialised by BEGIN IMMEDIATE, so the second claimer sees the first one's leases.
        .with_for_update(skip_locked=True)
    )
    messages = list(session.scalars(stmt))
    if not messages:
        return []
    recipients = _Recipients.load(session, messages)
    claimed: list[Outgoing] = []
    for message in messages:
        if message.status == OutboxStatus.sending and message.attempts >= give_up_after:
            # The worker never reported back, attempt after attempt: a message that keeps
            # crashing its worker must not keep coming back.
            _park(message, f"gave up after {message.attempts} attempts without a result")
            continue
        try:
            address = recipients.address(message)
            if not address:
                raise LookupError(NO_ADDRESS)
            rendered = render_message(
                message.kind,
                message.language,
                message.context,
                organisation_names=recipients.org_names,
            )
        except LookupError as exc:
            _park(message, str(exc.args[0]))
            continue
        except (RenderError, TemplateError) as exc:
            # A missing template or a context the template cannot use: retrying cannot help
            # until someone fixes the template, after which an admin retries the message.
            _park(message, f"cannot render: {type(exc).__name__}: {exc}")
            continue
        message.status = OutboxStatus.sending
        message.attempts += 1
        message.next_attempt_at = now + timedelta(seconds=lease_seconds)
        claimed.append(
            Outgoing(
                id=message.id,
                idempotency_key=message.idempotency_key,
                kind=message.kind,
                to_address=address,
                language=rendered.language,
                subject=rendered.subject,
                body=rendered.body,
                html=rendered.html,
            )
        )
    return claimed


def _locked(session: Session, message_id: int) -> OutboxMessage:
    stmt = select(OutboxMessage).where(OutboxMessage.id == message_id).with_for_update()
    message = session.scalars(stmt).one_or_none()
    if message is None:
        raise NotFoundError(
            "No outbox message {message}.",
            message=message_id,
        )
    return message


def mark_sent(session: Session, *, message_id: int, now: datetime) -> OutboxStatus:
    """Record that the message went out. Idempotent; the send happened, whoever holds it now."""
    message = _locked(session, message_id)
    if message.status != OutboxStatus.sent:
        message.status = OutboxStatus.sent
        message.sent_at = now
        message.last_error = None
    return message.status


def mark_failed(
    session: Session,
    *,
    message_id: int,
    error: str,
    now: datetime,
    max_attempts: int | None = None,
    permanent: bool = False,
) -> OutboxStatus:
    """Schedule a retry with backoff, or park the message once its attempts are used up.

    Only a message still in ``sending`` changes: one that was sent (or parked) meanwhile keeps
    its state, so a late or repeated call cannot undo another worker's result.
    """
    message = _locked(session, message_id)
    if message.status != OutboxStatus.sending:
        return message.status
    if permanent or message.attempts >= _max_attempts(max_attempts):
        _park(message, error)
    else:
        message.status = OutboxStatus.pending
        message.last_error = error[:MAX_ERROR_CHARS]
        message.next_attempt_at = now + backoff(message.attempts)
    return message.status


def retry_message(session: Session, *, actor: Actor, message_id: int, now: datetime) -> None:
    """Put a parked message back in the queue with a fresh set of attempts."""
    require_admin(actor, "retry messages")
    message = _locked(session, message_id)
    if message.status != OutboxStatus.failed:
        raise InvalidTransition(
            "Only failed messages can be retried; message {message} is {status}.",
            message=message_id,
            status=message.status,
        )
    details = {
        "kind": message.kind,
        "key": message.idempotency_key,
        "attempts": message.attempts,
    }
    message.status = OutboxStatus.pending
    message.attempts = 0
    message.next_attempt_at = now
    audit.record(
        session,
        actor=actor,
        action="outbox.retried",
        entity_type="outbox",
        entity_id=message.id,
        case_id=message.case_id,
        now=now,
        details=details,
    )
