"""A case manager's inbox: what on their open cases waits for them, most pressing first."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Integer, Select, cast, exists, func, literal, null, select, union_all
from sqlalchemy.orm import Session, aliased

from tracker import clocks
from tracker.access import Actor
from tracker.enums import ACTIVE_STEP_STATES, CaseStatus, HandoffState, StepState
from tracker.journeys.filters import case_filters
from tracker.models import Case, Handoff, Newcomer, Organisation, Step
from tracker.privacy import access_log

# What waits for a case manager, most pressing first: a step a partner sent back, a handoff
# held for want of consent, a blocked step, a clock that ran out.
INBOX_KINDS = ("returned", "declined", "held", "blocked", "overdue")


class InboxItem(BaseModel):
    """One thing on an open case that waits for its case manager."""

    reference: str
    given_name: str
    family_name: str
    step: str
    kind: str  # one of INBOX_KINDS
    organisation_name: str | None  # who sent it back, or whose consent is missing
    reason: str | None  # the partner's reason, or why the step is blocked
    since: datetime | None  # when it was sent back or held
    due_date: date | None


class Inbox(BaseModel):
    total: int
    counts: dict[str, int]  # per kind, over all pages
    items: list[InboxItem]


def needs_me(
    session: Session,
    *,
    actor: Actor,
    manager: str | None = "me",
    today: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Inbox:
    """A case manager's inbox: on their open cases (``manager`` as in ``list_cases``; ``None``:
    everyone's), every step a partner declined or returned and nobody has handed on again,
    every handoff held for want of consent, every blocked step and every overdue step."""
    # Who may see case lists at all is checked by case_filters, before anything is read.
    today = today or clocks.local_today()
    scope = [
        Case.status == CaseStatus.open,
        *case_filters(
            session,
            actor=actor,
            manager=manager,
            status=None,
            pathway=None,
            stage=None,
            due=None,
            attention=False,
            search=None,
            today=today,
        ),
    ]
    active = Step.state.in_(list(ACTIVE_STEP_STATES))
    newer = aliased(Handoff)
    no_handoff = cast(null(), Integer)

    def kind(rank: int, handoff_id: Any) -> Select[Any]:
        return select(
            literal(rank).label("rank"),
            Step.id.label("step_id"),
            handoff_id.label("handoff_id"),
            Step.due_date.label("due_date"),
        ).join(Case, Step.case_id == Case.id)

    def sent_back(state: HandoffState) -> Select[Any]:
        return (
            kind(INBOX_KINDS.index(state), Handoff.id)
            .join(Handoff, Handoff.step_id == Step.id)
            .where(
                *scope,
                active,
                Handoff.state == state,
                ~exists().where(newer.step_id == Handoff.step_id, newer.id > Handoff.id),
            )
        )

    held = (
        kind(INBOX_KINDS.index("held"), Handoff.id)
        .join(Handoff, Handoff.step_id == Step.id)
        .where(*scope, Handoff.state == HandoffState.held)
    )
    blocked = kind(INBOX_KINDS.index("blocked"), no_handoff).where(
        *scope, Step.state == StepState.blocked
    )
    overdue = kind(INBOX_KINDS.index("overdue"), no_handoff).where(
        *scope, active, Step.due_date < today
    )
    waiting = union_all(
        sent_back(HandoffState.returned), sent_back(HandoffState.declined), held, blocked, overdue
    ).subquery()
    counts = dict.fromkeys(INBOX_KINDS, 0)
    for rank, n in session.execute(select(waiting.c.rank, func.count()).group_by(waiting.c.rank)):
        counts[INBOX_KINDS[int(rank)]] = int(n)
    page = session.execute(
        select(waiting)
        .order_by(waiting.c.rank, waiting.c.due_date.asc().nulls_last(), waiting.c.step_id)
        .limit(limit)
        .offset(offset)
    ).all()
    step_ids = {row.step_id for row in page}
    handoff_ids = {row.handoff_id for row in page if row.handoff_id is not None}
    steps = {
        row.id: row
        for row in session.execute(
            select(
                Step.id,
                Step.case_id,
                Step.key,
                Step.blocked_reason,
                Case.reference,
                Newcomer.given_name,
                Newcomer.family_name,
            )
            .join(Case, Step.case_id == Case.id)
            .join(Newcomer, Case.newcomer_id == Newcomer.id)
            .where(Step.id.in_(step_ids))
        )
    }
    handoffs = {
        row.id: row
        for row in session.execute(
            select(
                Handoff.id,
                Handoff.reason,
                Handoff.closed_at,
                Handoff.created_at,
                Organisation.name,
            )
            .join(Organisation, Handoff.organisation_id == Organisation.id)
            .where(Handoff.id.in_(handoff_ids))
        )
    }
    access_log.note(session, actor, sorted({s.case_id for s in steps.values()}), "list")
    items = []
    for row in page:
        step = steps[row.step_id]
        handoff = handoffs.get(row.handoff_id)
        what = INBOX_KINDS[int(row.rank)]
        items.append(
            InboxItem(
                reference=step.reference,
                given_name=step.given_name,
                family_name=step.family_name,
                step=step.key,
                kind=what,
                organisation_name=handoff.name if handoff else None,
                reason=(
                    handoff.reason
                    if handoff is not None and what in ("returned", "declined")
                    else step.blocked_reason
                    if what == "blocked"
                    else None
                ),
                since=(
                    (handoff.closed_at if what in ("returned", "declined") else handoff.created_at)
                    if handoff is not None
                    else None
                ),
                due_date=row.due_date,
            )
        )
    return Inbox(total=sum(counts.values()), counts=counts, items=items)
