"""Partner queues in figures: what each partner holds now, how old, and what moved through."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Row, and_, case, func, or_, select
from sqlalchemy.orm import Session

from tracker.access import PARTNER_QUEUE_STATES, Actor
from tracker.enums import HandoffState, Role
from tracker.errors import PermissionDenied
from tracker.models import Handoff, Organisation
from tracker.reporting.base import Figure, count_if, require_leadership, utc_date
from tracker.reporting.suppression import (
    MIN_FOR_STATISTICS,
    any_hidden,
    quantile,
    share_of,
    suppress,
)

AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("age_0_7", 0, 7),
    ("age_8_14", 8, 14),
    ("age_15_30", 15, 30),
    ("age_over_30", 31, None),
)


class PartnerBacklogRow(BaseModel):
    organisation: str
    organisation_name: str
    offered: int | None
    accepted: int | None
    total: int | None
    age_median_days: float | None  # days since the handoff was offered (from 20 handoffs)
    age_0_7: int | None
    age_8_14: int | None
    age_15_30: int | None
    age_over_30: int | None
    overdue: int | None  # the step's due date has passed
    suppressed: bool


class PartnerBacklog(Figure):
    today: date
    partners: list[PartnerBacklogRow]

    def rows(self) -> list[dict[str, Any]]:
        return [{"today": self.today, **r.model_dump()} for r in self.partners]


class HandoffFlowRow(BaseModel):
    """What moved through one partner's queue in a period."""

    organisation: str
    organisation_name: str
    offered: int | None
    completed: int | None
    declined: int | None
    returned: int | None
    suppressed: bool


def receiving_organisations(session: Session) -> Sequence[Row[int, str, str, bool]]:
    """Organisations that take handoffs, by key: (id, key, name, active)."""
    return session.execute(
        select(Organisation.id, Organisation.key, Organisation.name, Organisation.active)
        .where(Organisation.receives_handoffs.is_(True))
        .order_by(Organisation.key)
    ).all()


def partner_backlog(session: Session, *, actor: Actor, today: date) -> PartnerBacklog:
    """Per partner with a queue: handoffs offered and accepted now, their age, and overdue ones."""
    require_leadership(actor)
    orgs = receiving_organisations(session)
    offered_on = utc_date(func.coalesce(Handoff.offered_at, Handoff.created_at))
    stmt = (
        select(
            Handoff.organisation_id,
            Handoff.state,
            offered_on,
            func.count(),
            # Aggregated, not grouped: PostgreSQL would not match a grouped expression whose
            # bound parameter appears twice.
            func.sum(case((Handoff.step_due_date < today, 1), else_=0)),
        )
        .where(
            # Naming the organisations lets ix_handoffs_org_state_due seek, not scan; the step's
            # due date is copied onto the handoff, so no step is read.
            Handoff.organisation_id.in_([o.id for o in orgs]),
            Handoff.state.in_([s.value for s in PARTNER_QUEUE_STATES]),
        )
        .group_by(Handoff.organisation_id, Handoff.state, offered_on)
    )
    by_org: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"offered": 0, "accepted": 0, "overdue": 0, "ages": defaultdict(int)}
    )
    for org_id, state, day, n, overdue in session.execute(stmt):
        entry = by_org[org_id]
        entry[str(state)] += int(n)
        entry["overdue"] += int(overdue or 0)
        entry["ages"][(today - day).days] += int(n)
    rows = []
    for org_id, key, name, is_active in orgs:
        if not is_active and org_id not in by_org:
            continue
        entry = by_org[org_id]
        ages = sorted(entry["ages"].items())
        total = entry["offered"] + entry["accepted"]
        values = {
            "offered": entry["offered"],
            "accepted": entry["accepted"],
            "total": total,
            "overdue": entry["overdue"],
            "_not_overdue": total - entry["overdue"],
        }
        for field, low, high in AGE_BUCKETS:
            values[field] = sum(n for a, n in ages if a >= low and (high is None or a <= high))
        shown = suppress(
            values,
            [
                ("total", "offered", "accepted"),
                ("total", "overdue", "_not_overdue"),
                ("total", *(b[0] for b in AGE_BUCKETS)),
            ],
        )
        visible = shown["total"] is not None and total > 0
        rows.append(
            PartnerBacklogRow(
                organisation=key,
                organisation_name=name,
                age_median_days=(
                    quantile(ages, 2, 4) if visible and total >= MIN_FOR_STATISTICS else None
                ),
                suppressed=any_hidden(shown),
                **shown,
            )
        )
    return PartnerBacklog(today=today, partners=rows)


def handoff_flows(session: Session, *, start: datetime, end: datetime) -> list[HandoffFlowRow]:
    """Per partner: handoffs offered in [start, end), and those completed, declined or returned.

    A partner no longer active appears only if something moved through its queue."""
    closed_in = and_(Handoff.closed_at >= start, Handoff.closed_at < end)
    flow = (
        select(
            Handoff.organisation_id,
            count_if(Handoff.offered_at >= start, Handoff.offered_at < end),
            count_if(closed_in, Handoff.state == HandoffState.completed),
            count_if(closed_in, Handoff.state == HandoffState.declined),
            count_if(closed_in, Handoff.state == HandoffState.returned),
        )
        .where(
            or_(
                and_(Handoff.offered_at >= start, Handoff.offered_at < end),
                closed_in,
            )
        )
        .group_by(Handoff.organisation_id)
    )
    moved = {org: [int(x) for x in rest] for org, *rest in session.execute(flow)}
    handoffs = []
    for org_id, key, name, is_active in receiving_organisations(session):
        if not is_active and org_id not in moved:
            continue
        offered, completed, declined, returned = moved.get(org_id, [0, 0, 0, 0])
        shown = suppress(
            {"offered": offered, "completed": completed, "declined": declined, "returned": returned}
        )
        handoffs.append(
            HandoffFlowRow(
                organisation=key,
                organisation_name=name,
                suppressed=any_hidden(shown),
                **shown,
            )
        )
    return handoffs


# How far back "on time" looks: handoffs completed in the last 90 days.
ON_TIME_DAYS = 90


class PartnerProgressRow(BaseModel):
    """One partner's open handoffs now, and how punctually it completed them lately."""

    organisation: str
    organisation_name: str
    offered: int | None  # new, not yet accepted
    accepted: int | None  # being worked on
    open: int | None  # offered and accepted
    overdue: int | None  # open, and the step's due date has passed
    age_median_days: float | None  # days since offered
    age_oldest_days: int | None
    completed: int | None  # completed in the last ON_TIME_DAYS days
    on_time: int | None  # of those, completed by the step's due date
    on_time_share: float | None
    suppressed: bool


class PartnerProgress(BaseModel):
    today: date
    since: date  # the first day of the on-time window
    suppressed: bool  # small cells are hidden (leadership's view)
    partners: list[PartnerProgressRow]

    def rows(self) -> list[dict[str, Any]]:
        return [{"today": self.today, "since": self.since, **r.model_dump()} for r in self.partners]


def partner_progress(session: Session, *, actor: Actor, today: date) -> PartnerProgress:
    """Progress per partner: its open handoffs (how many, how old, how many overdue) and the
    share of the handoffs it completed in the last 90 days by the step's due date.

    For case managers (and administrators) the exact figures: they see every case anyway. For
    leadership, counts of 1-4 and what would reveal them are hidden (``suppression``), and the
    median and oldest age need at least ``MIN_FOR_STATISTICS`` open handoffs."""
    if actor.role not in (Role.case_manager, Role.admin, Role.leadership):
        raise PermissionDenied("Partner progress is for case managers and leadership.")
    hide_small = actor.role == Role.leadership
    orgs = receiving_organisations(session)
    org_ids = [o.id for o in orgs]
    offered_on = utc_date(func.coalesce(Handoff.offered_at, Handoff.created_at))
    open_now = session.execute(
        select(
            Handoff.organisation_id,
            Handoff.state,
            offered_on,
            func.count(),
            func.sum(case((Handoff.step_due_date < today, 1), else_=0)),
        )
        .where(
            Handoff.organisation_id.in_(org_ids),
            Handoff.state.in_([s.value for s in PARTNER_QUEUE_STATES]),
        )
        .group_by(Handoff.organisation_id, Handoff.state, offered_on)
    ).all()
    since = today - timedelta(days=ON_TIME_DAYS)
    closed_on = utc_date(Handoff.closed_at)
    done = {
        org_id: (int(n), int(in_time or 0))
        for org_id, n, in_time in session.execute(
            select(
                Handoff.organisation_id,
                func.count(),
                func.sum(
                    case(
                        (
                            or_(
                                Handoff.step_due_date.is_(None),
                                closed_on <= Handoff.step_due_date,
                            ),
                            1,
                        ),
                        else_=0,
                    )
                ),
            )
            .where(
                Handoff.organisation_id.in_(org_ids),
                Handoff.state == HandoffState.completed,
                Handoff.closed_at >= datetime.combine(since, time(), tzinfo=UTC),
            )
            .group_by(Handoff.organisation_id)
        )
    }
    by_org: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"offered": 0, "accepted": 0, "overdue": 0, "ages": defaultdict(int)}
    )
    for org_id, state, day, n, overdue in open_now:
        entry = by_org[org_id]
        entry[str(state)] += int(n)
        entry["overdue"] += int(overdue or 0)
        entry["ages"][(today - day).days] += int(n)
    rows = []
    for org_id, key, name, is_active in orgs:
        if not is_active and org_id not in by_org and org_id not in done:
            continue
        entry = by_org[org_id]
        ages = sorted(entry["ages"].items())
        total = entry["offered"] + entry["accepted"]
        completed, on_time = done.get(org_id, (0, 0))
        values = {
            "offered": entry["offered"],
            "accepted": entry["accepted"],
            "open": total,
            "overdue": entry["overdue"],
            "_not_overdue": total - entry["overdue"],
            "completed": completed,
            "on_time": on_time,
            "_late": completed - on_time,
        }
        equations = [
            ("open", "offered", "accepted"),
            ("open", "overdue", "_not_overdue"),
            ("completed", "on_time", "_late"),
        ]
        shown: dict[str, int | None] = (
            suppress(values, equations)
            if hide_small
            else {k: v for k, v in values.items() if not k.startswith("_")}
        )
        enough = total > 0 and (
            not hide_small or (shown["open"] is not None and total >= MIN_FOR_STATISTICS)
        )
        rows.append(
            PartnerProgressRow(
                organisation=key,
                organisation_name=name,
                age_median_days=quantile(ages, 2, 4) if enough else None,
                age_oldest_days=ages[-1][0] if enough else None,
                on_time_share=share_of(shown["on_time"], shown["completed"]),
                suppressed=any_hidden(shown),
                **shown,
            )
        )
    return PartnerProgress(today=today, since=since, suppressed=hide_small, partners=rows)
