"""Reads for screens, the CLI and reports: scoped to the acting user, returning plain data."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from tracker import access_log, clocks
from tracker.access import (
    VISIBLE_TO_PARTNER,
    Actor,
    has_consent_clause,
    partner_may_see_case,
    require_person_access,
)
from tracker.config import get_settings
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    ACTIVE_STEP_STATES,
    CaseStatus,
    HandoffState,
    Role,
    StepState,
)
from tracker.errors import NotFoundError, PermissionDenied, ValidationFailed
from tracker.models import AuditEvent, Case, Consent, Handoff, Newcomer, Organisation, Step, User
from tracker.pathway import get_registry, profile_for
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


class OrganisationRow(BaseModel):
    key: str
    name: str
    kind: str
    receives_handoffs: bool
    active: bool
    version: int


class UserRow(BaseModel):
    username: str
    display_name: str
    role: str
    organisation: str | None
    active: bool


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
        raise NotFoundError(f"No case with reference {reference!r}.")
    steps = case.steps
    finished = frozenset(s.key for s in steps if s.state in (StepState.done, StepState.skipped))
    consents: list[ConsentView] = []
    if actor.is_partner:
        if not partner_may_see_case(session, actor, case_id=case.id, newcomer_id=case.newcomer_id):
            # Same message as a missing case: a partner learns nothing about cases not handed to it.
            raise NotFoundError(f"No case with reference {reference!r}.")
        steps = [
            s
            for s in steps
            if any(
                h.organisation_id == actor.organisation_id and h.state in VISIBLE_TO_PARTNER
                for h in s.handoffs
            )
        ]
        catalogue = get_registry().catalogue
        fields: set[str] = set()
        for s in steps:
            if s.key in catalogue:
                fields.update(catalogue[s.key].partner_fields)
        newcomer = _newcomer_fields(case.newcomer, fields)
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
        raise PermissionDenied(f"{actor.role} may not read cases.")
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
    require_person_access(actor)
    if not actor.manages_cases:
        raise PermissionDenied("Only case managers see case lists; partners see their queue.")
    today = _today(today)
    soon_limit = today + timedelta(days=get_settings().due_soon_days)
    active = Step.state.in_(list(ACTIVE_STEP_STATES))
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
    if manager:
        username = actor.username if manager == "me" else manager
        manager_id = session.scalar(select(User.id).where(User.username == username))
        if manager_id is None:
            raise NotFoundError(f"No user called {username!r}.")
        stmt = stmt.where(Case.case_manager_id == manager_id)
    if status:
        stmt = stmt.where(Case.status == status)
    if pathway:
        stmt = stmt.where(Case.pathway_key == pathway)
    if stage:
        stmt = stmt.where(Case.id.in_(select(Step.case_id).where(Step.key == stage, active)))
    # Case.next_due is the earliest due date of any active step, so "some step is overdue"
    # is "the earliest due date has passed".
    if due == "overdue":
        stmt = stmt.where(Case.next_due < today)
    elif due == "due_soon":
        stmt = stmt.where(Case.next_due >= today, Case.next_due <= soon_limit)
    elif due is not None:
        raise ValidationFailed("due must be 'overdue' or 'due_soon'.")
    if attention:
        stmt = stmt.where(Case.id.in_(_attention_case_ids()))
    if search:
        pattern = f"%{search.strip().casefold()}%"
        stmt = stmt.where(
            or_(
                Case.reference.ilike(pattern),
                Newcomer.match_key.like(pattern),
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
    if ids:
        for case_id, key, due_date in session.execute(
            select(Step.case_id, Step.key, Step.due_date)
            .where(Step.case_id.in_(ids), active)
            .order_by(Step.case_id, Step.position)
        ):
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
            )
        )
    return result


def _attention_case_ids():  # type: ignore[no-untyped-def]
    """Cases needing their case manager: a blocked step, or a step whose handoff is held, or was
    declined, returned or withdrawn and not handed on again."""
    active = Step.state.in_(list(ACTIVE_STEP_STATES))
    newer = aliased(Handoff)
    blocked = select(Step.case_id).where(Step.state == StepState.blocked)
    held = select(Handoff.case_id).where(Handoff.state == HandoffState.held)
    bounced = (
        select(Handoff.case_id)
        .join(Step, Handoff.step_id == Step.id)
        .where(
            Handoff.state.in_(
                (HandoffState.declined, HandoffState.returned, HandoffState.withdrawn)
            ),
            active,
            ~exists().where(newer.step_id == Handoff.step_id, newer.id > Handoff.id),
        )
    )
    return blocked.union(held, bounced)


def partner_queue(
    session: Session,
    *,
    actor: Actor,
    organisation: str | None = None,
    states: tuple[HandoffState, ...] = (HandoffState.offered, HandoffState.accepted),
    due: str | None = None,
    today: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[QueueItem]:
    """An organisation's handoff queue, most urgent first, with only the fields each step needs."""
    require_person_access(actor)
    today = _today(today)
    if actor.is_partner:
        if organisation and organisation != actor.organisation_key:
            raise PermissionDenied("You may only see your own organisation's queue.")
        organisation = actor.organisation_key
    elif not actor.manages_cases:
        raise PermissionDenied(f"{actor.role} may not see handoff queues.")
    if not organisation:
        raise ValidationFailed("Name the organisation whose queue to show.")
    org_id = session.scalar(select(Organisation.id).where(Organisation.key == organisation))
    if org_id is None:
        raise NotFoundError(f"No organisation with key {organisation!r}.")
    wanted = [s for s in states if s in VISIBLE_TO_PARTNER] if actor.is_partner else list(states)
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
    page = select(Handoff.id).where(Handoff.organisation_id == org_id, Handoff.state.in_(wanted))
    if actor.is_partner:
        # The newcomer looked up per handoff (primary key), not a join that lets PostgreSQL
        # hash the whole cases table for one organisation's queue.
        newcomer_id = (
            select(Case.newcomer_id)
            .where(Case.id == Handoff.case_id)
            .correlate(Handoff)
            .scalar_subquery()
        )
        page = page.where(has_consent_clause(newcomer_id, Handoff.organisation_id))
    if due == "overdue":
        page = page.where(Handoff.step_due_date < today)
    elif due == "due_soon":
        page = page.where(
            Handoff.step_due_date >= today,
            Handoff.step_due_date <= today + timedelta(days=get_settings().due_soon_days),
        )
    elif due is not None:
        raise ValidationFailed("due must be 'overdue' or 'due_soon'.")
    page = page.order_by(*urgency).limit(limit).offset(offset)
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
        fields = set(entry.partner_fields) if entry else {"given_name", "family_name"}
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
                age_days=(today - handoff.offered_at.date()).days if handoff.offered_at else None,
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


def timeline(session: Session, *, actor: Actor, reference: str) -> list[TimelineEntry]:
    """The case's history from the audit trail, oldest first."""
    require_person_access(actor)
    if not actor.manages_cases:
        raise PermissionDenied("Only case managers see a case's full timeline.")
    case_id = session.scalar(select(Case.id).where(Case.reference == reference.strip().upper()))
    if case_id is None:
        raise NotFoundError(f"No case with reference {reference!r}.")
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


def organisations(session: Session, *, include_inactive: bool = True) -> list[OrganisationRow]:
    stmt = select(Organisation).order_by(Organisation.kind, Organisation.key)
    if not include_inactive:
        stmt = stmt.where(Organisation.active.is_(True))
    return [
        OrganisationRow(
            key=o.key,
            name=o.name,
            kind=o.kind,
            receives_handoffs=o.receives_handoffs,
            active=o.active,
            version=o.version,
        )
        for o in session.scalars(stmt)
    ]


def users(session: Session, *, actor: Actor) -> list[UserRow]:
    if actor.role not in (Role.admin, Role.case_manager):
        raise PermissionDenied("Only administrators and case managers may list users.")
    rows = session.execute(
        select(User, Organisation.key)
        .outerjoin(Organisation, User.organisation_id == Organisation.id)
        .order_by(User.role, User.username)
    )
    return [
        UserRow(
            username=u.username,
            display_name=u.display_name,
            role=u.role,
            organisation=key,
            active=u.active,
        )
        for u, key in rows
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
        raise NotFoundError(f"No case with reference {reference!r}.")
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
        stmt.with_only_columns(func.count()).where(Case.id.in_(_attention_case_ids()))
    ).scalar_one()
    return {
        "open": int(total),
        "overdue": int(overdue),
        "due_soon": int(due_soon),
        "attention": attention,
    }
