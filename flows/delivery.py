"""Delivering the outbox: claim, send with retries on I/O only, record the outcome."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.tasks import exponential_backoff

from flows._common import database, note_failure
from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.messages.delivery import claim_messages, mark_failed, mark_sent
from tracker.messages.senders import DeliveryError, Outgoing, default_sender, sending


@task(task_run_name="claim up to {limit} messages")
def claim(limit: int) -> list[Outgoing]:
    """Lease due messages to this run; other workers skip them."""
    with database().transaction() as session:
        return claim_messages(session, now=utcnow(), limit=limit, lease_seconds=lease_for(limit))


SEND_RETRIES = 3
SEND_BACKOFF = 2  # seconds, doubling: 2, 4, 8
SMTP_STAGES = 4  # connect, STARTTLS, login, send: each may wait the full timeout


def lease_for(messages: int) -> int:
    """How long a claim must hold: every message of it may need all its attempts, each
    attempt every SMTP stage's timeout, plus the backoff between attempts, plus a margin.
    Shorter, and another deliverer could claim (and send again) what this run has yet to
    reach."""
    attempt = SMTP_STAGES * get_settings().smtp_timeout
    backoff = sum(SEND_BACKOFF * 2**i for i in range(SEND_RETRIES))
    per_message = (SEND_RETRIES + 1) * attempt + backoff
    return int(messages * per_message) + 60


@task(task_run_name="send {count} messages")
def send_batch(messages: list[Outgoing], count: int) -> dict[int, tuple[str, bool]]:
    """Hand each message of a claim to the sender once; returns the failures by message id
    (error, permanent). One task for the claim: a task per message cost more than the send."""
    failures: dict[int, tuple[str, bool]] = {}
    with sending(default_sender()) as send:  # one SMTP connection for the claim
        for message in messages:
            try:
                send(message)
            except DeliveryError as exc:
                failures[message.id] = (str(exc)[:500], exc.permanent)
            except Exception as exc:  # a bug: retried later through the outbox, never parked
                failures[message.id] = (f"{type(exc).__name__}: {exc}"[:500], False)
    return failures


@task(
    task_run_name="retry {message.kind} #{message.id}",
    retries=SEND_RETRIES - 1,
    retry_delay_seconds=exponential_backoff(backoff_factor=SEND_BACKOFF),
    retry_condition_fn=lambda task, run, state: _is_delivery_error(state),
)
def send(message: Outgoing) -> None:
    """Send one message whose first attempt failed for a temporary reason: the remaining
    attempts (SEND_RETRIES in all after the first) with Prefect's retries and backoff."""
    default_sender().send(message)


def _is_delivery_error(state: Any) -> bool:
    """Retry temporary I/O failures only: a refused recipient (permanent) or a bug is not."""
    try:
        state.result()
    except DeliveryError as exc:
        return not exc.permanent
    except Exception:  # anything else is a bug, not worth retrying
        return False
    return False


def _permanent(state: Any) -> bool:
    try:
        state.result()
    except DeliveryError as exc:
        return exc.permanent
    except Exception:  # a bug: retry later through the outbox, never park silently
        return False
    return False


@task(task_run_name="record {count} results")
def record(outcomes: list[tuple[int, str | None, bool]], count: int) -> dict[str, int]:
    """Mark each message sent, or schedule its retry (parked at once if the failure is
    permanent, or after too many attempts), all in one transaction."""
    sent = failed = 0
    with database().transaction() as session:
        for message_id, error, permanent in outcomes:
            if error is None:
                mark_sent(session, message_id=message_id, now=utcnow())
                sent += 1
            else:
                mark_failed(
                    session, message_id=message_id, error=error, now=utcnow(), permanent=permanent
                )
                failed += 1
    return {"sent": sent, "failed": failed}


@flow(name="deliver-outbox", flow_run_name="deliver outbox", on_failure=[note_failure])
async def deliver_outbox(limit: int = 100) -> dict[str, int]:
    """Send what the outbox holds, claim by claim: one task sends the claim's messages, one
    records their results; only a message whose send failed for a temporary reason gets a task
    of its own, for Prefect's retries. A crash between send and record sends the claim's
    messages again under the same idempotency keys: the file drop writes no second copy, and by
    SMTP the copy carries the same Message-ID, so the receiving side can recognise it."""
    sent = failed = 0
    remaining = limit
    # Small claims: a lease must outlast sending what it covers, retries with backoff included,
    # or another deliverer could take over messages this run has not reached yet.
    while remaining > 0:
        batch = claim(min(CLAIM_CHUNK, remaining))
        if not batch:
            break
        remaining -= len(batch)
        s, f = _send_all(batch)
        sent, failed = sent + s, failed + f
    return {"sent": sent, "failed": failed}


CLAIM_CHUNK = 10  # with 10 s SMTP timeouts a claim of 10 holds ~30 minutes at most


def _send_all(batch: list[Outgoing]) -> tuple[int, int]:
    failures = send_batch(batch, len(batch))
    outcomes: list[tuple[int, str | None, bool]] = []
    for message in batch:
        error, permanent = failures.get(message.id, (None, False))
        if error is not None and not permanent:
            state = send(message, return_state=True)
            if state.is_completed():
                error = None
            else:
                error = str(state.message or error)[:500]
                permanent = _permanent(state)
        outcomes.append((message.id, error, permanent))
    done = record(outcomes, len(outcomes))
    return done["sent"], done["failed"]
