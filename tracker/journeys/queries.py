"""Reads for screens, the CLI and reports: scoped to the acting user, returning plain data."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session, aliased, selectinload

from tracker import clocks
from tracker.access import (
    PARTNER_QUEUE_STATES,
    Actor,
    partner_fields,
    partner_may_see_case,
    partner_steps,
    require_case_manager,
    require_person_access,
)
from tracker.config import get_settings
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    ACTIVE_STEP_STATES,
    FINISHED_STEP_STATES,
    CaseStatus,
    HandoffState,
)
from tracker.errors import NotFoundError, PermissionDenied
from tracker.journeys.filters import attention_case_ids, case_filters, queue_filters
from tracker.models import AuditEvent, Case, Consent, Handoff, Newcomer, Organisation, Step, User
from tracker.pathway import get_registry, profile_for
from tracker.privacy import access_log
from tracker.schemas import NEWCOMER_FIELDS

CASE_MANAGER_FIELDS = NEWCOMER_FIELDS


class HandoffView(BaseModel):
    id: int
    organisation: str
    organisation_name: str
    state: str
    hold_reason: str | None
    reason: str | None
    offered_at: datetime | None
    accepted_at: datetime | None
    closed_at: datetime | None
    version: int


class StepView(BaseModel):
    key: str
    title_de: str
    title_en: str
    state: str
    owner: str
    owner_name: str
    needs: list[str]
    opened_at: datetime | None
    started_at: datetime | None
    done_at: datetime | None
    service_due: date | None
    legal_due: date | None
    legal_reference: str | None
    due_date: date | None
    due_status: str
    blocked_reason: str | None
    skip_reason: str | None
    outcome: str | None
    version: int
    handoff: HandoffView | None
    past_handoffs: list[HandoffView]
    # The steps this one needs, each only as a flag: done (or skipped) or not. This is all a
    # partner learns of other organisations' steps – e.g. of the employment agency's approval,
    # which is social data (§67 SGB X): never its outcome, dates or reasons.
    prerequisites: dict[str, bool] = {}


class ConsentView(BaseModel):
    organisation: str
    organisation_name: str
    method: str
    notice_language: str
    given_at: datetime
    revoked_at: datetime | None


class CaseView(BaseModel):
    reference: str
    status: str
    pathway: str
    pathway_version: int
    profile: str
    case_manager: str | None
    opened_at: datetime
    closed_at: datetime | None
    version: int
    newcomer: dict[str, Any]
    newcomer_version: int | None
    steps: list[StepView]
    consents: list[ConsentView]


class CaseRow(BaseModel):
    reference: str
    given_name: str
    family_name: str
    pathway: str
    status: str
    case_manager: str | None
    opened_at: datetime
    active_steps: list[str]
    next_due: date | None
    due_status: str
    overdue_steps: int
    steps_finished: int = 0  # done or skipped
    steps_total: int = 0


class QueueItem(BaseModel):
    handoff_id: int
    handoff_version: int
    reference: str
    step: str
    step_title_de: str
    step_title_en: str
    state: str
    step_state: str
    offered_at: datetime | None
    accepted_at: datetime | None
    age_days: int | None
    due_date: date | None
    legal_due: date | None
    legal_reference: str | None
    due_status: str
    newcomer: dict[str, Any]


class TimelineEntry(BaseModel):
    occurred_at: datetime
    actor: str
    action: str
    step: str | None
    reason: str | None
    details: dict[str, Any]


def _today(today: date | None) -> date:
    return today or clocks.local_today()


def _handoff_view(h: Handoff) -> HandoffView:
    return HandoffView(
        id=h.id,
        organisation=h.organisation.key,
        organisation_name=h.organisation.name,
        state=h.state,
        hold_reason=h.hold_reason,
        reason=h.reason,
        offered_at=h.offered_at,
        accepted_at=h.accepted_at,
        closed_at=h.closed_at,
        version=h.version,
    )


def _step_view(
    step: Step,
    today: date,
    soon: int,
    only_org: int | None = None,
    finished: frozenset[str] = frozenset(),
) -> StepView:
    entry = get_registry().catalogue.get(step.key)
    handoffs = [h for h in step.handoffs if only_org is None or h.organisation_id == only_org]
    active = [h for h in handoffs if h.state in ACTIVE_HANDOFF_STATES]
    return StepView(
        key=step.key,
        title_de=entry.title.de if entry else step.key,
        title_en=entry.title.en if entry else step.key,
        state=step.state,
        owner=step.owner.key,
        owner_name=step.owner.name,
        needs=list(step.needs),
        opened_at=step.opened_at,
        started_at=step.started_at,
        done_at=step.done_at,
        service_due=step.service_due,
        legal_due=step.legal_due,
        legal_reference=step.legal_reference,
        due_date=step.due_date,
        due_status=clocks.due_status(
            state=step.state, due=step.due_date, today=today, due_soon_days=soon
        ),
        blocked_reason=step.blocked_reason,
        skip_reason=step.skip_reason,
        outcome=step.outcome,
        version=step.version,
        handoff=_handoff_view(active[0]) if active else None,
        past_handoffs=[_handoff_view(h) for h in handoffs if h.state not in ACTIVE_HANDOFF_STATES],
        prerequisites={need: need in finished for need in step.needs},
    )


def _newcomer_fields(newcomer: Newcomer, fields: tuple[str, ...] | set[str]) -> dict[str, Any]:
    return {f: getattr(newcomer, f) for f in CASE_MANAGER_FIELDS if f in fields}


def case_view(
    session: Session, *, actor: Actor, reference: str, today: date | None = None
) -> CaseView:
    """Everything about one case that the actor may see."""
    require_person_access(actor)
    today = _today(today)
    soon = get_settings().due_soon_days
    case = session.scalars(
        select(Case)
        .where(Case.reference == reference.strip().upper())
        .options(
            selectinload(Case.steps).selectinload(Step.handoffs).selectinload(Handoff.organisation),
            selectinload(Case.steps).selectinload(Step.owner),
            selectinload(Case.newcomer),
            selectinload(Case.case_manager),
        )
    ).one_or_none()
    if case is None:
        raise NotFoundError(
            "No case with reference '{reference}'.",
            reference=reference,
        )
    steps = case.steps
    finished = frozenset(s.key for s in steps if s.state in FINISHED_STEP_STATES)
    consents: list[ConsentView] = []
    if actor.is_partner:
        if not partner_may_see_case(session, actor, case_id=case.id, newcomer_id=case.newcomer_id):
            # Same message as a missing case: a partner learns nothing about cases not handed to it.
            raise NotFoundError(
                "No case with reference '{reference}'.",
                reference=reference,
            )
        steps = partner_steps(actor, steps)
        newcomer = _newcomer_fields(case.newcomer, partner_fields(s.key for s in steps))
        newcomer_version = None
    elif actor.manages_cases:
        newcomer = _newcomer_fields(case.newcomer, CASE_MANAGER_FIELDS)
        newcomer_version = case.newcomer.version
        org_names = {o.id: (o.key, o.name) for o in session.scalars(select(Organisation))}
        for c in session.scalars(
            select(Consent)
            .where(Consent.newcomer_id == case.newcomer_id)
            .order_by(Consent.given_at)
        ):
            key, name = org_names[c.organisation_id]
            consents.append(
                ConsentView(
                    organisation=key,
                    organisation_name=name,
                    method=c.method,
                    notice_language=c.notice_language,
                    given_at=c.given_at,
                    revoked_at=c.revoked_at,
                )
            )
    else:
        raise PermissionDenied(
            "{role} may not read cases.",
            role=actor.role,
        )
    access_log.note(session, actor, [case.id], "case")
    return CaseView(
        reference=case.reference,
        status=case.status,
        pathway=case.pathway_key,
        pathway_version=case.pathway_version,
        profile=profile_for(eu_citizen=case.newcomer.eu_citizen, purpose=case.newcomer.purpose),
        case_manager=case.case_manager.username if case.case_manager else None,
        opened_at=case.opened_at,
        closed_at=case.closed_at,
        version=case.version,
        newcomer=newcomer,
        newcomer_version=newcomer_version,
        # A partner sees its own organisation's handoffs only, never another's reasons.
        steps=[
            _step_view(
                s, today, soon, actor.organisation_id if actor.is_partner else None, finished
            )
            for s in steps
        ],
        consents=consents,
    )


def list_cases(
    session: Session,
    *,
    actor: Actor,
    manager: str | None = None,
    status: CaseStatus | None = CaseStatus.open,
    pathway: str | None = None,
    stage: str | None = None,
    due: str | None = None,
    attention: bool = False,
    search: str | None = None,
    today: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[CaseRow]:
    """A case manager's list: filtered, sorted by the earliest due date of an active step.

    ``due`` is ``overdue`` or ``due_soon``; ``attention`` keeps cases with a blocked step or a
    handoff that is held, declined or returned and not yet handed on again.
    """
    # Who may see case lists at all is checked by case_filters, before anything is read.
    today = _today(today)
    manager_user = aliased(User)
    stmt = (
        select(
            Case.id,
            Case.reference,
            Newcomer.given_name,
            Newcomer.family_name,
            Case.pathway_key,
            Case.status,
            manager_user.username,
            Case.opened_at,
            Case.next_due,
        )
        .join(Newcomer, Case.newcomer_id == Newcomer.id)
        .outerjoin(manager_user, Case.case_manager_id == manager_user.id)
    )
    stmt = stmt.where(
        *case_filters(
            session,
            actor=actor,
            manager=manager,
            status=status,
            pathway=pathway,
            stage=stage,
            due=due,
            attention=attention,
            search=search,
            today=today,
        )
    )
    stmt = (
        stmt.order_by(Case.next_due.asc().nulls_last(), Case.opened_at, Case.id)
        .limit(limit)
        .offset(offset)
    )
    rows = session.execute(stmt).all()
    ids = [r.id for r in rows]
    access_log.note(session, actor, ids, "list")
    active_by_case: dict[int, list[str]] = {i: [] for i in ids}
    overdue_by_case: dict[int, int] = dict.fromkeys(ids, 0)
    # Progress: how many of the case's steps are finished (done or skipped), of how many.
    finished_by_case: dict[int, int] = dict.fromkeys(ids, 0)
    total_by_case: dict[int, int] = dict.fromkeys(ids, 0)
    if ids:
        for case_id, key, state, due_date in session.execute(
            select(Step.case_id, Step.key, Step.state, Step.due_date)
            .where(Step.case_id.in_(ids))
            .order_by(Step.case_id, Step.position)
        ):
            total_by_case[case_id] += 1
            if state in FINISHED_STEP_STATES:
                finished_by_case[case_id] += 1
            if state not in ACTIVE_STEP_STATES:
                continue
            active_by_case[case_id].append(key)
            if due_date is not None and due_date < today:
                overdue_by_case[case_id] += 1
    soon = get_settings().due_soon_days
    result = []
    for r in rows:
        status_now = clocks.due_status(
            state="open", due=r.next_due, today=today, due_soon_days=soon
        )
        result.append(
            CaseRow(
                reference=r.reference,
                given_name=r.given_name,
                family_name=r.family_name,
                pathway=r.pathway_key,
                status=r.status,
                case_manager=r.username,
                opened_at=r.opened_at,
                active_steps=active_by_case[r.id],
                next_due=r.next_due,
                due_status=status_now if r.status == CaseStatus.open else "none",
                overdue_steps=overdue_by_case[r.id],
                steps_finished=finished_by_case[r.id],
                steps_total=total_by_case[r.id],
            )
        )
    return result


def count_cases(
    session: Session,
    *,
    actor: Actor,
    manager: str | None = None,
    status: CaseStatus | None = CaseStatus.open,
    pathway: str | None = None,
    stage: str | None = None,
    due: str | None = None,
    attention: bool = False,
    search: str | None = None,
    today: date | None = None,
) -> int:
    """How many cases ``list_cases`` finds with the same filters, over all its pages."""
    # Who may see case lists at all is checked by case_filters, before anything is read.
    where = case_filters(
        session,
        actor=actor,
        manager=manager,
        status=status,
        pathway=pathway,
        stage=stage,
        due=due,
        attention=attention,
        search=search,
        today=_today(today),
    )
    stmt = select(func.count()).select_from(Case)
    if search:  # only a search reads the person
        stmt = stmt.join(Newcomer, Case.newcomer_id == Newcomer.id)
    return int(session.scalar(stmt.where(*where)) or 0)


def partner_queue(
    session: Session,
    *,
    actor: Actor,
    organisation: str | None = None,
    states: tuple[HandoffState, ...] = PARTNER_QUEUE_STATES,
    due: str | None = None,
    search: str | None = None,
    today: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[QueueItem]:
    """An organisation's handoff queue, most urgent first, with only the fields each step needs."""
    today = _today(today)
    # The page is chosen first from the narrow rows of ix_handoffs_org_state_due (the handoff's
    # id and sort keys; the step's due date is copied onto the handoff by the database), and
    # only its rows are then read in full: ordering a busy organisation's whole queue by each
    # step's due date took a lookup per handoff (5,500 for stadt-bochum at 100,000 newcomers).
    urgency = (
        Handoff.step_due_date.is_(None),
        Handoff.step_due_date,
        Handoff.offered_at,
        Handoff.id,
    )
    where = queue_filters(
        session,
        actor=actor,
        organisation=organisation,
        states=states,
        due=due,
        search=search,
        today=today,
    )
    page = select(Handoff.id).where(*where).order_by(*urgency).limit(limit).offset(offset)
    stmt = (
        select(Handoff, Step, Case.reference, Newcomer)
        .join(Step, Handoff.step_id == Step.id)
        .join(Case, Handoff.case_id == Case.id)
        .join(Newcomer, Case.newcomer_id == Newcomer.id)
        .where(Handoff.id.in_(page))
        .order_by(*urgency)
    )
    catalogue = get_registry().catalogue
    soon = get_settings().due_soon_days
    items = []
    seen: list[int] = []
    for handoff, step, reference, newcomer in session.execute(stmt):
        seen.append(handoff.case_id)
        entry = catalogue.get(step.key)
        fields = partner_fields([step.key])
        items.append(
            QueueItem(
                handoff_id=handoff.id,
                handoff_version=handoff.version,
                reference=reference,
                step=step.key,
                step_title_de=entry.title.de if entry else step.key,
                step_title_en=entry.title.en if entry else step.key,
                state=handoff.state,
                step_state=step.state,
                offered_at=handoff.offered_at,
                accepted_at=handoff.accepted_at,
                age_days=(
                    (today - clocks.local_today(handoff.offered_at)).days
                    if handoff.offered_at
                    else None
                ),
                due_date=step.due_date,
                legal_due=step.legal_due,
                legal_reference=step.legal_reference,
                due_status=clocks.due_status(
                    state=step.state, due=step.due_date, today=today, due_soon_days=soon
                ),
                newcomer=_newcomer_fields(newcomer, fields),
            )
        )
    access_log.note(session, actor, seen, "queue")
    return items


def partner_queue_counts(
    session: Session,
    *,
    actor: Actor,
    organisation: str | None = None,
    states: tuple[HandoffState, ...] = PARTNER_QUEUE_STATES,
    due: str | None = None,
    search: str | None = None,
    today: date | None = None,
) -> dict[str, int]:
    """How many handoffs ``partner_queue`` finds with the same filters, over all its pages: per
    state (``offered``, ``accepted`` ...), and how many of them are ``overdue``."""
    today = _today(today)
    where = queue_filters(
        session,
        actor=actor,
        organisation=organisation,
        states=states,
        due=due,
        search=search,
        today=today,
    )
    counts = {str(state): 0 for state in states}
    counts["overdue"] = 0
    for state, n, overdue in session.execute(
        select(Handoff.state, func.count(), func.count().filter(Handoff.step_due_date < today))
        .where(*where)
        .group_by(Handoff.state)
    ):
        counts[str(state)] = int(n)
        counts["overdue"] += int(overdue or 0)
    return counts


def timeline(session: Session, *, actor: Actor, reference: str) -> list[TimelineEntry]:
    """The case's history from the audit trail, oldest first."""
    require_person_access(actor)
    if not actor.manages_cases:
        raise PermissionDenied("Only case managers see a case's full timeline.")
    case_id = session.scalar(select(Case.id).where(Case.reference == reference.strip().upper()))
    if case_id is None:
        raise NotFoundError(
            "No case with reference '{reference}'.",
            reference=reference,
        )
    access_log.note(session, actor, [case_id], "timeline")
    events = session.scalars(
        select(AuditEvent)
        .where(AuditEvent.case_id == case_id)
        .order_by(AuditEvent.occurred_at, AuditEvent.id)
    )
    return [
        TimelineEntry(
            occurred_at=e.occurred_at,
            actor=e.actor,
            action=e.action,
            step=(e.details or {}).get("step"),
            reason=e.reason,
            details=e.details or {},
        )
        for e in events
    ]


def count_newcomers(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Newcomer)) or 0


def database_counts(session: Session) -> dict[str, Any]:
    """How much the tracker holds: newcomers, and cases by status (no personal data)."""
    by_status = {
        str(status): n
        for status, n in session.execute(select(Case.status, func.count()).group_by(Case.status))
    }
    return {"newcomers": count_newcomers(session), "cases": by_status}


def case_tags(session: Session, *, reference: str) -> list[str]:
    """Tags for a case's Prefect runs: its pathway and the partners involved, never a name."""
    row = session.execute(
        select(Case.id, Case.pathway_key).where(Case.reference == reference.strip().upper())
    ).one_or_none()
    if row is None:
        raise NotFoundError(
            "No case with reference '{reference}'.",
            reference=reference,
        )
    partners = session.scalars(
        select(Organisation.key)
        .join(Step, Step.owner_org_id == Organisation.id)
        .where(Step.case_id == row.id, Organisation.receives_handoffs.is_(True))
        .distinct()
        .order_by(Organisation.key)
    )
    return [f"pathway:{row.pathway_key}", *(f"partner:{key}" for key in partners)]


def active_steps(session: Session, *, reference: str) -> list[str]:
    """The keys of a case's open, in-progress and blocked steps (no personal data)."""
    return list(
        session.scalars(
            select(Step.key)
            .join(Case, Step.case_id == Case.id)
            .where(
                Case.reference == reference.strip().upper(),
                Step.state.in_(list(ACTIVE_STEP_STATES)),
            )
            .order_by(Step.position)
        )
    )


class AdvanceProgress(BaseModel):
    """Whether a case still waits for its advance after a change, and what is open now."""

    pending: bool
    active: list[str]


def advance_pending(session: Session, *, reference: str) -> bool:
    """Whether an open case still waits for the advance a change asked for (system use: the
    CLI's ``--wait`` asks the tracker, the system of record, rather than Prefect's run state,
    which reaches Prefect's database only after its event pipeline)."""
    row = session.execute(
        select(Case.advance_requested_at, Case.status).where(
            Case.reference == reference.strip().upper()
        )
    ).one_or_none()
    return (
        row is not None and row.advance_requested_at is not None and row.status == CaseStatus.open
    )


def advance_progress(session: Session, *, actor: Actor, reference: str) -> AdvanceProgress:
    """For the screen that saved a change: has the advance it asked for run yet (the case's
    request is cleared), and which steps are open, in progress or blocked now."""
    require_case_manager(actor, "follow a case's advance")
    requested = session.execute(
        select(Case.advance_requested_at, Case.status).where(
            Case.reference == reference.strip().upper()
        )
    ).one_or_none()
    if requested is None:
        raise NotFoundError(
            "No case with reference '{reference}'.",
            reference=reference,
        )
    pending = requested.advance_requested_at is not None and requested.status == CaseStatus.open
    return AdvanceProgress(pending=pending, active=active_steps(session, reference=reference))


def case_counts(
    session: Session, *, actor: Actor, manager: str | None = None, today: date | None = None
) -> dict[str, int]:
    """The numbers at the top of "My cases": open, overdue, due soon, needing attention."""
    require_person_access(actor)
    if not actor.manages_cases:
        raise PermissionDenied("Only case managers see case counts.")
    today = _today(today)
    soon_limit = today + timedelta(days=get_settings().due_soon_days)
    stmt = select(
        func.count(),
        func.count().filter(Case.next_due < today),
        func.count().filter(Case.next_due >= today, Case.next_due <= soon_limit),
    ).where(Case.status == CaseStatus.open)
    if manager:
        username = actor.username if manager == "me" else manager
        stmt = stmt.join(User, Case.case_manager_id == User.id).where(User.username == username)
    total, overdue, due_soon = session.execute(stmt).one()
    attention = session.execute(
        stmt.with_only_columns(func.count()).where(Case.id.in_(attention_case_ids()))
    ).scalar_one()
    return {
        "open": int(total),
        "overdue": int(overdue),
        "due_soon": int(due_soon),
        "attention": attention,
    }
