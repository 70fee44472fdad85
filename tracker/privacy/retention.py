"""Retention: people whose cases all ended long enough ago are anonymised; the figures stay."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, or_, select, update
from sqlalchemy import case as when
from sqlalchemy.orm import Session

from tracker import audit, clocks
from tracker.access import Actor
from tracker.bulk import chunks
from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.enums import CaseStatus
from tracker.errors import InvalidTransition
from tracker.models import (
    Case,
    FitJob,
    FitParticipant,
    FitPermit,
    Handoff,
    Newcomer,
    Step,
)
from tracker.privacy.erasure import ANONYMISED, Removal, Subject, remove_traces, write_tombstones
from tracker.records import new_references


def anonymise_person(
    session: Session,
    *,
    actor: Actor,
    newcomer_id: int,
    mail_dir: Path | None = None,
    now: datetime | None = None,
) -> Removal:
    """Remove what names or describes the person; keep what the figures count.

    ``anonymise_people`` for one person; raises InvalidTransition if they cannot be."""
    done = anonymise_people(
        session, actor=actor, newcomer_ids=[newcomer_id], mail_dir=mail_dir, now=now
    )
    if newcomer_id in done.refused:
        raise done.refused[newcomer_id]
    (removal,) = done.removed
    return removal


@dataclass
class Anonymised:
    """What ``anonymise_people`` did: a Removal per person anonymised, in the order given, and
    why the others were not (already anonymised, an open case, unknown)."""

    removed: list[Removal] = field(default_factory=list)
    refused: dict[int, InvalidTransition] = field(default_factory=dict)


# The person's columns that go, and what stands there instead.
_BLANKED: dict[str, Any] = {
    "birth_date": None,
    "nationality": None,
    "email": None,
    "phone": None,
    "first_contact_date": None,
    "move_in_date": None,
    "permit_expiry": None,
    "given_name": ANONYMISED,
    "family_name": ANONYMISED,
    "match_key": "",
}


def anonymise_people(
    session: Session,
    *,
    actor: Actor,
    newcomer_ids: Sequence[int],
    mail_dir: Path | None = None,
    now: datetime | None = None,
) -> Anonymised:
    """Anonymise many people at once: what names or describes them goes, what the figures
    count stays. A statement per kind of change for all of them; each person's Removal counts
    their own rows. The people and their cases are locked first (in id order) and checked
    again: someone anonymised or with an open case meanwhile is refused, not touched."""
    now = now or utcnow()
    session.flush()
    outcome = Anonymised()
    wanted = list(dict.fromkeys(newcomer_ids))
    found: dict[int, Any] = {}
    for chunk in chunks(sorted(wanted)):
        found.update(
            session.execute(
                select(Newcomer.id, Newcomer.anonymised_at)
                .where(Newcomer.id.in_(chunk))
                .order_by(Newcomer.id)
                .with_for_update()
            ).all()
        )
    cases: dict[int, list[Any]] = {n: [] for n in found}
    for chunk in chunks(sorted(found)):
        for row in session.execute(
            select(Case.id, Case.newcomer_id, Case.reference, Case.status)
            .where(Case.newcomer_id.in_(chunk))
            .order_by(Case.id)
            .with_for_update()
        ):
            cases[row.newcomer_id].append(row)
    people: list[Subject] = []
    for newcomer_id in wanted:
        if newcomer_id not in found:
            outcome.refused[newcomer_id] = InvalidTransition(
                "No newcomer {newcomer}.", newcomer=newcomer_id
            )
        elif found[newcomer_id] is not None:
            outcome.refused[newcomer_id] = InvalidTransition(
                "This person's data is already anonymised."
            )
        elif any(c.status == CaseStatus.open for c in cases[newcomer_id]):
            outcome.refused[newcomer_id] = InvalidTransition(
                "A person with an open case cannot be anonymised."
            )
        else:
            mine = cases[newcomer_id]
            result = Removal(basis="retention", reference=mine[0].reference if mine else "")
            result.removed["newcomers"] = 1
            people.append(Subject(newcomer_id, {c.id: c.reference for c in mine}, result))
    if not people:
        return outcome
    _blank(session, people, now)
    remove_traces(session, people, mail_dir)
    write_tombstones(session, actor, people, now)
    audit.record_entries(
        session,
        actor=actor,
        now=now,
        entries=[
            audit.Entry(
                action="case.anonymised",
                entity_type="case",
                entity_id=case_id,
                case_id=case_id,
                details={"basis": "retention", "removed": p.result.removed},
            )
            for p in people
            for case_id in p.references
        ],
    )
    session.expire_all()  # objects the session holds of these people are stale now
    outcome.removed = [p.result for p in people]
    return outcome


def _blank(session: Session, people: list[Subject], now: datetime) -> None:
    """The people's own columns, their cases' references (drawn anew), the free-text reasons
    of their steps and handoffs, their FIT@THGA employers and permits: counted per person."""
    conn = session.connection()
    newcomer_ids = [p.newcomer_id for p in people]
    of_case = {case_id: p for p in people for case_id in p.references}
    case_ids = sorted(of_case)
    for chunk in chunks(newcomer_ids):
        conn.execute(
            update(Newcomer)
            .where(Newcomer.id.in_(chunk))
            .values(**_BLANKED, anonymised_at=now, version=Newcomer.version + 1)
        )
    if case_ids:
        conn.execute(
            update(Case)
            .where(Case.id == bindparam("b_id"))
            .values(reference=bindparam("b_reference"), version=Case.version + 1),
            [
                {"b_id": case_id, "b_reference": reference}
                for case_id, reference in zip(
                    case_ids, new_references(session, len(case_ids)), strict=True
                )
            ],
        )
    for model, reasons in (
        (Step, (Step.blocked_reason, Step.skip_reason)),
        (Handoff, (Handoff.reason, Handoff.hold_reason)),
    ):
        with_reason = or_(*(r.is_not(None) for r in reasons))
        counts = Counter[int]()
        for chunk in chunks(case_ids):
            for case_id, n in conn.execute(
                select(model.case_id, func.count())
                .where(model.case_id.in_(chunk), with_reason)
                .group_by(model.case_id)
            ):
                counts[of_case[case_id].newcomer_id] += n
            conn.execute(
                update(model)
                .where(model.case_id.in_(chunk), with_reason)
                .values({r.key: None for r in reasons})
            )
        for p in people:
            p.result.removed[model.__tablename__] = counts[p.newcomer_id]
    participants: dict[int, Subject] = {}
    of_newcomer = {p.newcomer_id: p for p in people}
    for chunk in chunks(newcomer_ids):
        for participant_id, newcomer_id in conn.execute(
            select(FitParticipant.id, FitParticipant.newcomer_id).where(
                FitParticipant.newcomer_id.in_(chunk)
            )
        ):
            participants[participant_id] = of_newcomer[newcomer_id]
    if not participants:
        return
    jobs, permits = Counter[int](), Counter[int]()
    for chunk in chunks(sorted(participants)):
        conn.execute(
            update(FitParticipant).where(FitParticipant.id.in_(chunk)).values(job_employer=None)
        )
        for column, counted in (
            (FitJob.participant_id, jobs),
            (FitPermit.participant_id, permits),
        ):
            for participant_id, n in conn.execute(
                select(column, func.count()).where(column.in_(chunk)).group_by(column)
            ):
                counted[participants[participant_id].newcomer_id] += n
        conn.execute(
            update(FitJob).where(FitJob.participant_id.in_(chunk)).values(employer=ANONYMISED)
        )
        conn.execute(delete(FitPermit).where(FitPermit.participant_id.in_(chunk)))
    for p in {id(p): p for p in participants.values()}.values():
        p.result.removed["fit_jobs"] = jobs[p.newcomer_id]
        p.result.removed["fit_permits"] = permits[p.newcomer_id]


def _expired_before(now: datetime) -> Select[int]:
    """People whose cases all ended more than ``retention_months`` ago: one pass over the
    cases grouped by person (no query per person)."""
    day = clocks.add_months(clocks.local_today(now), -get_settings().retention_months)
    cutoff = datetime.combine(day, now.timetz())
    still_open = func.sum(when((Case.status == CaseStatus.open, 1), else_=0))
    return (
        select(Case.newcomer_id)
        .join(Newcomer, Case.newcomer_id == Newcomer.id)
        .where(Newcomer.anonymised_at.is_(None))
        .group_by(Case.newcomer_id)
        .having(still_open == 0, func.max(Case.closed_at) < cutoff)
    )


def expired_newcomers(session: Session, *, now: datetime, limit: int = 100) -> list[int]:
    """People whose cases all ended more than ``retention_months`` ago, oldest first."""
    stmt = _expired_before(now).order_by(func.max(Case.closed_at), Case.newcomer_id)
    return list(session.scalars(stmt.limit(limit)))


def count_expired(session: Session, *, now: datetime) -> int:
    """How many people the retention run would anonymise now (for screens and --dry-run)."""
    return session.scalar(select(func.count()).select_from(_expired_before(now).subquery())) or 0


# People anonymised per transaction by the retention run (the flow and the CLI): a batch costs
# a statement per kind of change, so it can be large; 500 keeps each IN list in one statement.
# 1,896 people of a 10k demo on SQLite: 1.95 s in batches of 100 (a commit each), 1.2 s in 500.
RETENTION_BATCH = 500


def anonymise_expired(
    session: Session,
    *,
    actor: Actor,
    now: datetime | None = None,
    limit: int = RETENTION_BATCH,
    mail_dir: Path | None = None,
) -> list[Removal]:
    """One batch of the retention run: anonymise up to ``limit`` people who are due.

    Safe to run twice and from several workers: each person is locked and checked again, and
    an already anonymised person is not due any more."""
    now = now or utcnow()
    due = expired_newcomers(session, now=now, limit=limit)
    # Those anonymised or reopened meanwhile by another worker are refused and left alone.
    return anonymise_people(
        session, actor=actor, newcomer_ids=due, mail_dir=mail_dir, now=now
    ).removed
