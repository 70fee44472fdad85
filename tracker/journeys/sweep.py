"""The clock sweep: reminders before due dates, escalations after them and for idle handoffs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import String, and_, case, cast, exists, func, insert, literal, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import CURRENT_CONSENT, PARTNER_QUEUE_STATES, system_actor
from tracker.bulk import chunks
from tracker.config import get_settings
from tracker.enums import ACTIVE_STEP_STATES, CaseStatus, DueStatus, HandoffState
from tracker.messages.outbox import queued_keys
from tracker.models import Case, Consent, Handoff, Organisation, OutboxMessage, Step


@dataclass(frozen=True)
class SweepBatch:
    """What one batch of the sweep queued; call again with ``next_cursor`` until it is None."""

    reminders: int
    escalations: int
    next_cursor: int | None
    # Messages that had nobody to go to (no case manager and no consenting holder).
    unassigned: int = 0


def enqueue_new(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert outbox rows in one statement, skipping keys that exist; returns the keys written.

    Callers filter out known keys first, so this normally inserts everything. The
    ``ON CONFLICT DO NOTHING`` covers a second sweep running at the same moment on another
    worker: it would otherwise fail the whole batch on the unique key, and the keys it returns
    decide which messages get an audit event, so each message is audited exactly once.
    """
    if not rows:
        return set()
    table = OutboxMessage.metadata.tables[OutboxMessage.__tablename__]
    key_col = table.c.idempotency_key
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = pg_insert(table).on_conflict_do_nothing(index_elements=[key_col])
    elif dialect == "sqlite":
        stmt = sqlite_insert(table).on_conflict_do_nothing(index_elements=[key_col])
    else:
        stmt = insert(table)
    return set(session.execute(stmt.returning(key_col), list(rows)).scalars())


def _message(
    *,
    key: str,
    kind: str,
    now: datetime,
    case_id: int | None,
    recipient_org_id: int | None = None,
    recipient_user_id: int | None = None,
    context: dict[str, Any],
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "kind": kind,
        "case_id": case_id,
        "recipient_org_id": recipient_org_id,
        "recipient_user_id": recipient_user_id,
        "recipient_newcomer_id": None,
        "language": "de",
        "context": context,
        "created_at": now,
        "next_attempt_at": now,
    }


def _consents(session: Session, newcomer_ids: set[int]) -> set[tuple[int, int]]:
    """(newcomer, organisation) pairs with current consent to share, for these people."""
    pairs: set[tuple[int, int]] = set()
    ids = sorted(newcomer_ids)
    for chunk in chunks(ids):
        pairs.update(
            (n, o)
            for n, o in session.execute(
                select(Consent.newcomer_id, Consent.organisation_id).where(
                    Consent.newcomer_id.in_(chunk), *CURRENT_CONSENT
                )
            )
        )
    return pairs


def sweep_clocks(
    session: Session,
    *,
    today: date,
    now: datetime,
    after_step_id: int = 0,
    limit: int = 2000,
) -> SweepBatch:
    """Remind holders of steps due soon and escalate overdue steps, once per due date.

    One batch of active steps of open cases with a due date up to ``due_soon_days`` ahead,
    in step-id order after ``after_step_id``. The keys carry the due date, so a due date that
    moves earns a fresh message while a repeated sweep sends nothing twice.
    """
    settings = get_settings()
    horizon = today + timedelta(days=settings.due_soon_days)
    # The holder is the organisation whose queue has the step, and only while the newcomer
    # consents to it: a reminder names the case, so without consent it goes to the manager.
    # (Consent is looked up for the batch's people afterwards, on its index: inside the join
    # PostgreSQL would hash every active consent for every batch.)
    holder = and_(
        Handoff.step_id == Step.id,
        Handoff.state.in_(PARTNER_QUEUE_STATES),
        Handoff.organisation_id.in_(select(Organisation.id).where(Organisation.active)),
    )
    # Two steps: the batch's step ids from the (state, due date) index alone, then their rows.
    # In one statement every batch re-read and sorted all the due steps to find its page after
    # the cursor (at 100,000 newcomers 15,000 of them: 0.35 s a batch, the sweep's largest part).
    ids = list(
        session.scalars(
            select(Step.id)
            .where(
                Step.id > after_step_id,
                Step.state.in_(list(ACTIVE_STEP_STATES)),
                Step.due_date.is_not(None),
                Step.due_date <= horizon,
            )
            .order_by(Step.id)
            .limit(limit)
        )
    )
    next_cursor = ids[-1] if len(ids) == limit else None
    rows: list[Any] = []
    for chunk in chunks(ids):
        rows += session.execute(
            select(
                Step.id,
                Step.key,
                Step.state,
                Step.due_date,
                Step.legal_reference,
                Step.case_id,
                Case.reference,
                Case.case_manager_id,
                Case.newcomer_id,
                Handoff.organisation_id.label("holder_org_id"),
            )
            .join(Case, Step.case_id == Case.id)
            .outerjoin(Handoff, holder)
            .where(Step.id.in_(chunk), Case.status == CaseStatus.open)
            .order_by(Step.id)
        ).all()
    consented = _consents(session, {r.newcomer_id for r in rows if r.holder_org_id is not None})

    planned: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    unassigned = 0
    for row in rows:
        status = clocks.due_status(
            state=row.state, due=row.due_date, today=today, due_soon_days=settings.due_soon_days
        )
        if status == DueStatus.overdue:
            kind, org_id, user_id = "escalation", None, row.case_manager_id
        elif status == DueStatus.due_soon:
            kind = "reminder"
            org_id = (
                row.holder_org_id if (row.newcomer_id, row.holder_org_id) in consented else None
            )
            user_id = None if org_id is not None else row.case_manager_id
        else:
            continue
        if org_id is None and user_id is None:
            unassigned += 1
            continue
        key = f"{kind}:{row.id}:{row.due_date.isoformat()}"
        if key in planned:  # a step held twice (should not happen) still gets one message
            continue
        context = {
            "reference": row.reference,
            "step": row.key,
            "step_state": str(row.state),
            "due_date": row.due_date.isoformat(),
            "legal_reference": row.legal_reference,
            "threshold": str(status),
        }
        message = _message(
            key=key,
            kind=kind,
            now=now,
            case_id=row.case_id,
            recipient_org_id=org_id,
            recipient_user_id=user_id,
            context=context,
        )
        details = {
            "step": row.key,
            "due_date": row.due_date.isoformat(),
            "threshold": str(status),
            "message_key": key,
            "recipient_org_id": org_id,
            "recipient_user_id": user_id,
        }
        planned[key] = (message, {"step_id": row.id, "case_id": row.case_id, "details": details})

    known = queued_keys(session, list(planned))
    written = enqueue_new(session, [m for k, (m, _) in planned.items() if k not in known])
    actor = system_actor("sweep")
    counts = {}
    for kind in ("reminder", "escalation"):
        counts[kind] = audit.record_many(
            session,
            actor=actor,
            action=f"clock.{kind}",
            entity_type="step",
            now=now,
            events=(
                (meta["step_id"], meta["case_id"], meta["details"])
                for key, (message, meta) in planned.items()
                if key in written and message["kind"] == kind
            ),
        )
    return SweepBatch(
        reminders=counts["reminder"],
        escalations=counts["escalation"],
        next_cursor=next_cursor,
        unassigned=unassigned,
    )


def sweep_handoffs(session: Session, *, now: datetime, limit: int = 2000) -> int:
    """Escalate handoffs a partner has left unanswered for ``handoff_accept_days``, once each.

    Returns the number queued; a result equal to ``limit`` means more may be waiting. Handoffs
    already escalated are excluded in the query itself (there is no cursor: a handoff leaves
    this set by being answered or escalated, not by its id), so batches always make progress.
    """
    cutoff = now - timedelta(days=get_settings().handoff_accept_days)
    message_key = literal("handoff_unanswered:", String) + cast(Handoff.id, String)
    rows = session.execute(
        select(
            Handoff.id,
            Handoff.case_id,
            Handoff.step_id,
            Handoff.offered_at,
            Step.key.label("step"),
            Case.reference,
            Case.case_manager_id,
            Organisation.key.label("organisation"),
        )
        .join(Step, Handoff.step_id == Step.id)
        .join(Case, Handoff.case_id == Case.id)
        .join(Organisation, Handoff.organisation_id == Organisation.id)
        .where(
            Handoff.state == HandoffState.offered,
            Handoff.offered_at <= cutoff,
            Case.status == CaseStatus.open,
            # Without a case manager there is nobody to escalate to; the case lists show it.
            Case.case_manager_id.is_not(None),
            ~exists().where(OutboxMessage.idempotency_key == message_key),
        )
        .order_by(Handoff.offered_at, Handoff.id)
        .limit(limit)
    ).all()
    planned: dict[str, tuple[dict[str, Any], Any]] = {}
    for row in rows:
        key = f"handoff_unanswered:{row.id}"
        offered_on = clocks.local_today(row.offered_at)
        planned[key] = (
            _message(
                key=key,
                kind="handoff_unanswered",
                now=now,
                case_id=row.case_id,
                recipient_user_id=row.case_manager_id,
                context={
                    "reference": row.reference,
                    "step": row.step,
                    "organisation": row.organisation,
                    "handoff_id": row.id,
                    "offered_on": offered_on.isoformat(),
                    "days_waiting": (clocks.local_today(now) - offered_on).days,
                },
            ),
            row,
        )
    written = enqueue_new(session, [m for m, _ in planned.values()])
    return audit.record_many(
        session,
        actor=system_actor("sweep"),
        action="clock.handoff_unanswered",
        entity_type="handoff",
        now=now,
        events=(
            (
                row.id,
                row.case_id,
                {
                    "step": row.step,
                    "organisation": row.organisation,
                    "offered_on": clocks.local_today(row.offered_at).isoformat(),
                    "message_key": key,
                    "recipient_user_id": row.case_manager_id,
                },
            )
            for key, (_, row) in planned.items()
            if key in written
        ),
    )


def clock_overview(session: Session, *, today: date) -> dict[str, Any]:
    """Active steps of open cases that are overdue or due soon, per owning organisation."""
    soon_days = get_settings().due_soon_days
    overdue = func.sum(case((Step.due_date < today, 1), else_=0))
    due_soon = func.sum(case((Step.due_date >= today, 1), else_=0))
    rows = session.execute(
        select(Organisation.key, overdue, due_soon)
        .select_from(Step)
        .join(Case, Step.case_id == Case.id)
        .join(Organisation, Step.owner_org_id == Organisation.id)
        .where(
            Step.state.in_(list(ACTIVE_STEP_STATES)),
            Step.due_date.is_not(None),
            Step.due_date <= today + timedelta(days=soon_days),
            Case.status == CaseStatus.open,
        )
        .group_by(Organisation.key)
        .order_by(Organisation.key)
    ).all()
    by_org = {key: {"overdue": int(o or 0), "due_soon": int(s or 0)} for key, o, s in rows}
    return {
        "today": today.isoformat(),
        "due_soon_days": soon_days,
        "organisations": by_org,
        "total": {
            "overdue": sum(v["overdue"] for v in by_org.values()),
            "due_soon": sum(v["due_soon"] for v in by_org.values()),
        },
    }
