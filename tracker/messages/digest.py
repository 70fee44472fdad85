"""The daily digest: one message per partner organisation summarising its handoff queue."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import in_partner_queue, system_actor
from tracker.config import get_settings
from tracker.enums import ACTIVE_STEP_STATES, HandoffState
from tracker.journeys.sweep import enqueue_new
from tracker.messages.outbox import queued_keys
from tracker.models import Case, Handoff, Organisation, Step


def _queue_filter() -> Any:
    # The same rule as the partner's own queue.
    return in_partner_queue(Case.newcomer_id)


def build_digests(
    session: Session, *, day: date, now: datetime, items_per_org: int = 25
) -> list[str]:
    """Queue one digest per partner organisation with a non-empty queue; returns their keys.

    Once per organisation and day (key ``digest:{org}:{day}``), so a second run that day
    queues nothing. The digest names cases by reference and step only, never by person.
    """
    soon_days = get_settings().due_soon_days
    horizon = day + timedelta(days=soon_days)
    orgs = session.scalars(
        select(Organisation)
        .where(Organisation.active, Organisation.receives_handoffs)
        .order_by(Organisation.key)
    ).all()
    keys = {o.id: f"digest:{o.key}:{day.isoformat()}" for o in orgs}
    done = queued_keys(session, list(keys.values()))
    wanted = {o.id: o for o in orgs if keys[o.id] not in done}
    if not wanted:
        return []

    active = Step.state.in_(list(ACTIVE_STEP_STATES))
    counts_by_org = {
        row.organisation_id: row
        for row in session.execute(
            select(
                Handoff.organisation_id,
                func.sum(case((Handoff.state == HandoffState.offered, 1), else_=0)).label(
                    "offered"
                ),
                func.sum(case((Handoff.state == HandoffState.accepted, 1), else_=0)).label(
                    "accepted"
                ),
                func.sum(case((and_(active, Step.due_date < day), 1), else_=0)).label("overdue"),
                func.sum(
                    case((and_(active, Step.due_date >= day, Step.due_date <= horizon), 1), else_=0)
                ).label("due_soon"),
            )
            .join(Step, Handoff.step_id == Step.id)
            .join(Case, Handoff.case_id == Case.id)
            .where(_queue_filter(), Handoff.organisation_id.in_(list(wanted)))
            .group_by(Handoff.organisation_id)
        )
    }

    messages: dict[str, dict[str, Any]] = {}
    audits: dict[str, tuple[Organisation, dict[str, Any]]] = {}
    for org_id, org in wanted.items():
        row = counts_by_org.get(org_id)
        if row is None or not (row.offered or row.accepted):
            continue
        counts = {
            "offered": int(row.offered),
            "accepted": int(row.accepted),
            "overdue": int(row.overdue),
            "due_soon": int(row.due_soon),
        }
        items = [
            {
                "reference": reference,
                "step": step_key,
                "state": str(state),
                "due_date": due.isoformat() if due else None,
                "due_status": str(
                    clocks.due_status(state=step_state, due=due, today=day, due_soon_days=soon_days)
                ),
            }
            for reference, step_key, state, due, step_state in session.execute(
                select(Case.reference, Step.key, Handoff.state, Step.due_date, Step.state)
                .join(Step, Handoff.step_id == Step.id)
                .join(Case, Handoff.case_id == Case.id)
                .where(_queue_filter(), Handoff.organisation_id == org_id)
                .order_by(Step.due_date.is_(None), Step.due_date, Handoff.offered_at, Handoff.id)
                .limit(items_per_org)
            )
        ]
        key = keys[org_id]
        total = counts["offered"] + counts["accepted"]
        messages[key] = {
            "idempotency_key": key,
            "kind": "digest",
            "case_id": None,
            "recipient_org_id": org_id,
            "recipient_user_id": None,
            "recipient_newcomer_id": None,
            "language": "de",
            "context": {
                "organisation": org.key,
                "day": day.isoformat(),
                "counts": counts,
                "total": total,
                # How many queue entries the digest does not list; the queue screen has them.
                "more": total - len(items),
                "items": items,
            },
            "created_at": now,
            "next_attempt_at": now,
        }
        audits[key] = (
            org,
            {"organisation": org.key, "day": day.isoformat(), "counts": counts, "message_key": key},
        )

    written = enqueue_new(session, list(messages.values()))
    actor = system_actor("digest")
    for key, (org, details) in audits.items():
        if key not in written:
            continue
        audit.record(
            session,
            actor=actor,
            action="digest.queued",
            entity_type="organisation",
            entity_id=org.id,
            now=now,
            details=details,
        )
    session.flush()
    return [org.key for key, (org, _) in audits.items() if key in written]
