"""The conditions behind the lists: whose cases, which filters, what a search box matches, and
which handoffs make an organisation's queue for the actor. A list and its count build their
statements from the same conditions, so "1–50 of 322" always counts the rows the pages show."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import ColumnElement, CompoundSelect, exists, or_, select
from sqlalchemy.orm import Session, aliased

from tracker.access import (
    PARTNER_VISIBLE_STATES,
    Actor,
    in_partner_queue,
    require_person_access,
)
from tracker.config import get_settings
from tracker.enums import ACTIVE_STEP_STATES, CaseStatus, HandoffState, StepState
from tracker.errors import NotFoundError, PermissionDenied, ValidationFailed
from tracker.models import Case, Handoff, Newcomer, Organisation, Step, User


def case_filters(
    session: Session,
    *,
    actor: Actor,
    manager: str | None,
    status: CaseStatus | None,
    pathway: str | None,
    stage: str | None,
    due: str | None,
    attention: bool,
    search: str | None,
    today: date,
) -> list[ColumnElement[bool]]:
    """The conditions of a case list (on ``Case`` joined with its ``Newcomer``), shared by the
    list, its count and the inbox so that all mean the same cases, and the rule of who sees
    case lists at all: case managers and administrators, never partners (they see a queue)."""
    require_person_access(actor)
    if not actor.manages_cases:
        raise PermissionDenied("Only case managers see case lists; partners see their queue.")
    soon_limit = today + timedelta(days=get_settings().due_soon_days)
    active = Step.state.in_(list(ACTIVE_STEP_STATES))
    where: list[ColumnElement[bool]] = []
    if manager:
        username = actor.username if manager == "me" else manager
        manager_id = session.scalar(select(User.id).where(User.username == username))
        if manager_id is None:
            raise NotFoundError(
                "No user called '{username}'.",
                username=username,
            )
        where.append(Case.case_manager_id == manager_id)
    if status:
        where.append(Case.status == status)
    if pathway:
        where.append(Case.pathway_key == pathway)
    if stage:
        where.append(Case.id.in_(select(Step.case_id).where(Step.key == stage, active)))
    # Case.next_due is the earliest due date of any active step, so "some step is overdue"
    # is "the earliest due date has passed".
    if due == "overdue":
        where.append(Case.next_due < today)
    elif due == "due_soon":
        where += [Case.next_due >= today, Case.next_due <= soon_limit]
    elif due is not None:
        raise ValidationFailed("due must be 'overdue' or 'due_soon'.")
    if attention:
        where.append(Case.id.in_(attention_case_ids()))
    if search:
        # A case manager sees birth dates: the search may match them too ("1994-05").
        where += search_words(search, birth_dates=True)
    return where


def _like_pattern(word: str) -> str:
    """``%word%`` for LIKE, with LIKE's own wildcards in the word taken literally."""
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_words(search: str, *, birth_dates: bool) -> list[ColumnElement[bool]]:
    """Conditions on ``Case`` and ``Newcomer`` for a search box: every word must be part of the
    case reference or of the person's name ("ola kowal" finds Ola Kowalski). With
    ``birth_dates`` a word may also match the birth date; without it (a partner, who may not see
    it for every step) a word with a digit matches references only."""
    where: list[ColumnElement[bool]] = []
    for word in search.casefold().split():
        pattern = _like_pattern(word)
        options: list[ColumnElement[bool]] = [Case.reference.ilike(pattern, escape="\\")]
        # The match key is "family|given|birth date", already case-folded.
        if birth_dates or not any(c.isdigit() or c == "|" for c in word):
            options.append(Newcomer.match_key.like(pattern, escape="\\"))
        where.append(or_(*options))
    return where


def attention_case_ids() -> CompoundSelect:
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


def queue_filters(
    session: Session,
    *,
    actor: Actor,
    organisation: str | None,
    states: tuple[HandoffState, ...],
    due: str | None,
    search: str | None,
    today: date,
) -> list[ColumnElement[bool]]:
    """The conditions on ``Handoff`` of an organisation's queue as the actor may see it, shared
    by the queue and its counts so that both always mean the same handoffs."""
    require_person_access(actor)
    if actor.is_partner:
        if organisation and organisation != actor.organisation_key:
            raise PermissionDenied("You may only see your own organisation's queue.")
        organisation = actor.organisation_key
    elif not actor.manages_cases:
        raise PermissionDenied(
            "{role} may not see handoff queues.",
            role=actor.role,
        )
    if not organisation:
        raise ValidationFailed("Name the organisation whose queue to show.")
    org_id = session.scalar(select(Organisation.id).where(Organisation.key == organisation))
    if org_id is None:
        raise NotFoundError(
            "No organisation with key '{key}'.",
            key=organisation,
        )
    wanted = (
        [s for s in states if s in PARTNER_VISIBLE_STATES] if actor.is_partner else list(states)
    )
    where: list[ColumnElement[bool]] = [Handoff.organisation_id == org_id]
    if actor.is_partner:
        # The newcomer looked up per handoff (primary key), not a join that lets PostgreSQL
        # hash the whole cases table for one organisation's queue.
        newcomer_id = (
            select(Case.newcomer_id)
            .where(Case.id == Handoff.case_id)
            .correlate(Handoff)
            .scalar_subquery()
        )
        where.append(in_partner_queue(newcomer_id, wanted))
    else:
        where.append(Handoff.state.in_(wanted))
    if due == "overdue":
        where.append(Handoff.step_due_date < today)
    elif due == "due_soon":
        where += [
            Handoff.step_due_date >= today,
            Handoff.step_due_date <= today + timedelta(days=get_settings().due_soon_days),
        ]
    elif due is not None:
        raise ValidationFailed("due must be 'overdue' or 'due_soon'.")
    if search:
        # The case and person looked up per handoff (primary keys), as for consent above. A
        # partner's search matches names and references only, never a birth date it may not see.
        where.append(
            exists().where(
                Case.id == Handoff.case_id,
                Newcomer.id == Case.newcomer_id,
                *search_words(search, birth_dates=actor.manages_cases),
            )
        )
    return where
