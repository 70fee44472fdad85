"""Who may do what: one table of actions × actors that proves every permission and every denial.

The table below is the documentation. Each cell becomes one test (``case_view-thga.nowak-
other_org-not_found``) that runs the real query or service against a small world and proves the
outcome:

* ``allow``: the call went through and really did its work (a state, a row, a result);
* ``deny``: it raised ``PermissionDenied`` and changed nothing (audit events and every table's
  rows and versions are the same after the refusal as before it);
* ``not_found``: it raised ``NotFoundError`` with exactly the message of a case (or a FIT
  participant, or a job) that does not exist, so a partner learns nothing about cases that were
  not handed to it or people who no longer share with it; nothing changed.

Actors are resolved the way every entry point resolves them (``actor_for``), so the deactivated
account is refused at that door. The world is built once per backend; every cell runs in a
transaction that is rolled back, and checks afterwards that the world is exactly as built.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.orm import Session

from tests.conftest import NOW, _fresh
from tests.helpers import advance, newcomer, start_case
from tests.test_fit import enrolled_by_thga
from tracker.access import Actor, actor_for
from tracker.admin import queries as admin_queries
from tracker.admin.organisations import add_organisation, seed_organisations, update_organisation
from tracker.admin.users import add_user
from tracker.clocks import local_today
from tracker.db import Database
from tracker.demo.people import ensure_demo_users
from tracker.enums import (
    ACTIVE_HANDOFF_STATES,
    CaseStatus,
    ConsentMethod,
    FitStatus,
    HandoffState,
    JobKind,
    OfferKind,
    RegistrationStatus,
    Role,
    StepState,
)
from tracker.errors import NotFoundError, PermissionDenied
from tracker.fit import queries as fitq
from tracker.fit.offers import create_offer, record_attendance, register
from tracker.fit.participants import change_status
from tracker.fit.work_days import add_job, record_work_days
from tracker.journeys import queries
from tracker.journeys.advance import advance_case
from tracker.journeys.cases import (
    cancel_case,
    open_case,
    reassign_case,
    register_newcomer,
    update_newcomer,
)
from tracker.journeys.consent import give_consent, revoke_consent
from tracker.journeys.handoffs import (
    accept_handoff,
    complete_handoff,
    decline_handoff,
    offer_handoff,
    return_handoff,
    withdraw_handoff,
)
from tracker.journeys.importer import import_newcomers
from tracker.journeys.inbox import needs_me
from tracker.journeys.steps import block_step, complete_step, skip_step, start_step
from tracker.models import (
    AuditEvent,
    Case,
    Consent,
    FitOffer,
    FitParticipant,
    FitRegistration,
    FitWorkDay,
    Handoff,
    Newcomer,
    Organisation,
    Step,
    StoredReport,
    User,
)
from tracker.privacy.erasure import erase_person, export_person
from tracker.privacy.queries import access_history
from tracker.reporting import journeys as journey_figures
from tracker.reporting import partners as partner_figures
from tracker.reporting import reports
from tracker.reporting.archive import store_reports
from tracker.schemas import NewcomerUpdate

# --- The actors: the table's columns ------------------------------------------------------------

ACTORS: dict[str, str] = {
    "admin": "admin",
    "cm_own": "cm.mueller",  # case manager of case A, the case every case action is about
    "cm_other": "cm.yilmaz",  # another case manager (case B is his) acting on case A
    "leadership": "lead.schmidt",
    "holder": "ihk.hoffmann",  # IHK holds case A's recognition step, with the newcomer's consent
    "other_org": "thga.nowak",  # THGA: consent on file, but never handed case A (has case B);
    # it runs FIT@THGA, whose participant is case C's student
    "revoked": "afa.becker",  # AfA accepted case A's job_offer; then consent was revoked
    "deactivated": "cm.former",  # a case manager whose account was switched off
}

# --- The table ----------------------------------------------------------------------------------
# Step and handoff actions are about case A's recognition step (IHK's). The revoked partner tries
# the step it used to hold, job_offer, since that is the one it could have touched.

TABLE = """
action                    admin  cm_own cm_other leadership holder other_org  revoked    deactivated
# Reading cases: partners see only what was handed to them, leadership no person at all.
case_view                 allow  allow  allow    deny       allow  not_found  not_found  deny
list_cases                allow  allow  allow    deny       deny   deny       deny       deny
count_cases               allow  allow  allow    deny       deny   deny       deny       deny
needs_me                  allow  allow  allow    deny       deny   deny       deny       deny
timeline                  allow  allow  allow    deny       deny   deny       deny       deny
# Queues: a partner its own organisation's only; case managers may look at any.
partner_queue_own         allow  allow  allow    deny       allow  allow      allow      deny
partner_queue_other       allow  allow  allow    deny       deny   deny       deny       deny
# Answering a handoff: the receiving organisation, with consent (and an administrator). A
# partner never handed the case (or no longer consented to) hears what a missing case gets.
handoff_accept            allow  deny   deny     deny       allow  not_found  not_found  deny
handoff_decline           allow  deny   deny     deny       allow  not_found  not_found  deny
handoff_return            allow  deny   deny     deny       allow  not_found  not_found  deny
handoff_complete          allow  deny   deny     deny       allow  not_found  not_found  deny
# Routing a handoff is the case manager's.
handoff_offer             allow  allow  allow    deny       deny   deny       deny       deny
handoff_withdraw          allow  allow  allow    deny       deny   deny       deny       deny
# Working a step: case managers, and the partner that accepted it; waiving it: case managers.
step_start                allow  allow  allow    deny       allow  not_found  not_found  deny
step_complete             allow  allow  allow    deny       allow  not_found  not_found  deny
step_block                allow  allow  allow    deny       allow  not_found  not_found  deny
step_skip                 allow  allow  allow    deny       deny   deny       deny       deny
# Consent, people and cases: case managers (any case manager, not only the case's own).
consent_give              allow  allow  allow    deny       deny   deny       deny       deny
consent_revoke            allow  allow  allow    deny       deny   deny       deny       deny
register_newcomer         allow  allow  allow    deny       deny   deny       deny       deny
open_case                 allow  allow  allow    deny       deny   deny       deny       deny
newcomer_update           allow  allow  allow    deny       deny   deny       deny       deny
case_advance              allow  allow  allow    deny       deny   deny       deny       deny
case_reassign             allow  allow  allow    deny       deny   deny       deny       deny
case_cancel               allow  allow  allow    deny       deny   deny       deny       deny
import_newcomers          allow  allow  allow    deny       deny   deny       deny       deny
# Reference data: administrators; the user list is also for case managers.
org_add                   allow  deny   deny     deny       deny   deny       deny       deny
org_update                allow  deny   deny     deny       deny   deny       deny       deny
user_add                  allow  deny   deny     deny       deny   deny       deny       deny
user_list                 allow  allow  allow    deny       deny   deny       deny       deny
# Aggregates: leadership (and administrators) only.
outcomes_funnel           allow  deny   deny     allow      deny   deny       deny       deny
outcomes_backlog          allow  deny   deny     allow      deny   deny       deny       deny
# Progress per partner: case managers exactly, leadership with small cells hidden.
outcomes_partner_progress allow  allow  allow    allow      deny   deny       deny       deny
report_generate           allow  deny   deny     allow      deny   deny       deny       deny
report_store              allow  deny   deny     allow      deny   deny       deny       deny
report_list               allow  deny   deny     allow      deny   deny       deny       deny
# Rights of the person: export and who-looked for case managers, erasure for administrators.
person_export             allow  allow  allow    deny       deny   deny       deny       deny
access_history            allow  allow  allow    deny       deny   deny       deny       deny
person_erase              allow  deny   deny     deny       deny   deny       deny       deny
# FIT@THGA: programme staff are THGA's agents, helped by case managers and administrators.
fit_offers                allow  allow  allow    deny       deny   allow      deny       deny
fit_create_offer          allow  allow  allow    deny       deny   allow      deny       deny
# A participant, in three worlds: as built; _revoked, the student's consent to THGA revoked;
# _regiven, given again. Lists are allowed in all three (THGA's then leaves the student out).
fit_counts                allow  allow  allow    deny       deny   allow      deny       deny
fit_counts_revoked        allow  allow  allow    deny       deny   allow      deny       deny
fit_counts_regiven        allow  allow  allow    deny       deny   allow      deny       deny
fit_participants          allow  allow  allow    deny       deny   allow      deny       deny
fit_participants_revoked  allow  allow  allow    deny       deny   allow      deny       deny
fit_participants_regiven  allow  allow  allow    deny       deny   allow      deny       deny
fit_day_counts            allow  allow  allow    deny       deny   allow      deny       deny
fit_day_counts_revoked    allow  allow  allow    deny       deny   allow      deny       deny
fit_day_counts_regiven    allow  allow  allow    deny       deny   allow      deny       deny
fit_registrations         allow  allow  allow    deny       deny   allow      deny       deny
fit_registrations_revoked allow  allow  allow    deny       deny   allow      deny       deny
fit_registrations_regiven allow  allow  allow    deny       deny   allow      deny       deny
# Naming the student (or their job): THGA hears "not found" while the consent is revoked.
fit_jobs                  allow  allow  allow    deny       deny   allow      deny       deny
fit_jobs_revoked          allow  allow  allow    deny       deny   not_found  deny       deny
fit_jobs_regiven          allow  allow  allow    deny       deny   allow      deny       deny
fit_day_count             allow  allow  allow    deny       deny   allow      deny       deny
fit_day_count_revoked     allow  allow  allow    deny       deny   not_found  deny       deny
fit_day_count_regiven     allow  allow  allow    deny       deny   allow      deny       deny
fit_status                allow  allow  allow    deny       deny   allow      deny       deny
fit_status_revoked        allow  allow  allow    deny       deny   not_found  deny       deny
fit_status_regiven        allow  allow  allow    deny       deny   allow      deny       deny
fit_work_days             allow  allow  allow    deny       deny   allow      deny       deny
fit_work_days_revoked     allow  allow  allow    deny       deny   not_found  deny       deny
fit_work_days_regiven     allow  allow  allow    deny       deny   allow      deny       deny
fit_attendance            allow  allow  allow    deny       deny   allow      deny       deny
fit_attendance_revoked    allow  allow  allow    deny       deny   not_found  deny       deny
fit_attendance_regiven    allow  allow  allow    deny       deny   allow      deny       deny
"""

OUTCOMES = ("allow", "deny", "not_found")


@dataclass(frozen=True)
class Cell:
    action: str
    kind: str
    outcome: str

    @property
    def username(self) -> str:
        return ACTORS[self.kind]

    @property
    def id(self) -> str:
        return f"{self.action}-{self.username}-{self.kind}-{self.outcome}"


def parse_table(table: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The header's actor kinds, and each action's row of outcomes (comments left out)."""
    lines = [line.split() for line in table.strip().splitlines()]
    header, *rows = [words for words in lines if words and not words[0].startswith("#")]
    return header[1:], [(action, outcomes_) for action, *outcomes_ in rows]


KINDS, ROWS = parse_table(TABLE)
CELLS = [
    Cell(action, kind, outcome)
    for action, outcomes_ in ROWS
    for kind, outcome in zip(KINDS, outcomes_, strict=False)
]

# --- The world ----------------------------------------------------------------------------------

FAMILY_A = "Okonkwo"  # the newcomer of case A: no refusal may name them
FAMILY_C = "Pham"  # the FIT participant of case C: nor them
MISSING = "WO-2222-2222"  # a reference no case has
MISSING_ID = "987654"  # an id no FIT participant or job has


@dataclass
class World:
    db: Database
    case_a: str  # cm.mueller's skilled-worker case
    case_b: str  # cm.yilmaz's student case, its FIT step offered to THGA
    case_c: str  # cm.yilmaz's student case, enrolled in FIT@THGA by THGA
    participant: int  # case C's student in FIT: a place on the offer, a job with two days
    offer: int
    job: int
    fingerprint_sql: str
    baseline: dict[str, int]
    # Where an erasure looks for mail-drop copies (never the checkout's data/mail).
    mail_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="perm-mail-")))


def fingerprint_sql(db: Database) -> str:
    """One query for every table's row count and the sum of its rows' versions: any insert,
    delete or update of a versioned row shows in it."""
    insp = inspect(db.writer)
    columns = []
    for name in sorted(insp.get_table_names()):
        if name == "alembic_version":
            continue
        columns.append(f"(SELECT COUNT(*) FROM {name}) AS {name}")
        if "version" in {c["name"] for c in insp.get_columns(name)}:
            columns.append(f"(SELECT COALESCE(SUM(version), 0) FROM {name}) AS {name}_versions")
    return "SELECT " + ", ".join(columns)


def build_world(db: Database) -> World:
    """Case A (cm.mueller, skilled worker): recognition offered to IHK with consent; job_offer
    accepted by AfA, whose consent was then revoked (the handoff is held); consent for THGA, which
    was never handed the case. Case B (cm.yilmaz, student): its FIT step offered to THGA. Case C
    (cm.yilmaz, student): enrolled in FIT@THGA by THGA through the handoff, with a place on the
    FIT offer and a working-student job. Plus a deactivated case manager and a stored report."""
    with db.transaction() as s:
        seed_organisations(s, now=NOW)
        ensure_demo_users(s, now=NOW)
    with db.transaction() as s:
        admin = actor_for(s, "admin")
        add_user(
            s,
            actor=admin,
            username="cm.former",
            display_name="Former case manager",
            role=Role.case_manager,
            organisation="kim-bochum",
            now=NOW,
        )
        # No service switches a user off (an operator does it in the database): set the flag.
        s.scalars(select(User).where(User.username == "cm.former")).one().active = False
    with db.read() as s:
        who = {u: actor_for(s, u) for u in ("admin", "cm.mueller", "cm.yilmaz", "afa.becker")}
        thga = actor_for(s, "thga.nowak")
    mueller, yilmaz = who["cm.mueller"], who["cm.yilmaz"]

    case_a = start_case(
        db,
        mueller,
        now=NOW,
        consent_to=["ihk-mr", "afa-bochum", "thga"],
        given_name="Amara",
        family_name=FAMILY_A,
        nationality="NG",
    )
    with db.transaction() as s:
        accept_handoff(s, actor=who["afa.becker"], reference=case_a, step_key="job_offer", now=NOW)
    with db.transaction() as s:
        revoke_consent(s, actor=mueller, reference=case_a, organisation="afa-bochum", now=NOW)

    case_b = start_case(
        db,
        yilmaz,
        now=NOW,
        consent_to=["akafoe", "stadt-bochum", "thga"],
        purpose="study",
        given_name="Linh",
        family_name="Tran",
        nationality="VN",
    )
    for step in ("housing", "registration"):
        with db.transaction() as s:
            complete_step(s, actor=yilmaz, reference=case_b, step_key=step, now=NOW)
        advance(db, yilmaz, case_b, now=NOW)

    with db.transaction() as s:
        store_reports(
            s,
            actor=who["admin"],
            files=[reports.ReportFile("monthly", "2026-01", "", "json", b'{"report": 1}')],
            now=NOW,
        )
        offer = create_offer(
            s,
            actor=thga,
            kind=OfferKind.application_training,
            title="Bewerbungstraining März",
            starts_at=NOW + timedelta(days=10),
            ends_at=NOW + timedelta(days=10, hours=3),
            place="THGA, Raum 101",
            capacity=12,
            now=NOW,
        ).id
    case_c, participant, job = fit_participant(db, yilmaz, thga, offer)

    sql = fingerprint_sql(db)
    with db.read() as s:
        baseline = dict(s.execute(text(sql)).mappings().one())
        # The world is what the table's comments say it is.
        a = {h.step.key: h for h in _handoffs(s, case_a)}
        assert (a["recognition"].organisation.key, a["recognition"].state) == ("ihk-mr", "offered")
        assert (a["job_offer"].state, a["job_offer"].hold_reason) == ("held", "consent_revoked")
        b = {h.step.key: h for h in _handoffs(s, case_b) if h.state in ACTIVE_HANDOFF_STATES}
        assert (b["fit_enrollment"].organisation.key, b["fit_enrollment"].state) == (
            "thga",
            "offered",
        )
        c = {h.step.key: h for h in _handoffs(s, case_c)}
        assert (c["fit_enrollment"].organisation.key, c["fit_enrollment"].state) == (
            "thga",
            "completed",
        )
    return World(
        db=db,
        case_a=case_a,
        case_b=case_b,
        case_c=case_c,
        participant=participant,
        offer=offer,
        job=job,
        fingerprint_sql=sql,
        baseline=baseline,
    )


def fit_participant(db: Database, manager: Actor, thga: Actor, offer: int) -> tuple[str, int, int]:
    """Case C: a student THGA enrolled through its handoff, registered for the offer, with a
    working-student job and two days worked."""
    case_c = start_case(
        db,
        manager,
        now=NOW,
        consent_to=["akafoe", "stadt-bochum", "thga"],
        purpose="study",
        given_name="Minh",
        family_name=FAMILY_C,
        nationality="VN",
    )
    for step in ("housing", "registration"):
        with db.transaction() as s:
            complete_step(s, actor=manager, reference=case_c, step_key=step, now=NOW)
        advance(db, manager, case_c, now=NOW)
    participant = enrolled_by_thga(db, thga, case_c)
    with db.transaction() as s:
        register(s, actor=thga, offer_id=offer, participant_id=participant, now=NOW)
        job = add_job(
            s,
            actor=thga,
            participant_id=participant,
            employer="Emscher Geotechnik GmbH",
            kind=JobKind.working_student,
            starts_on=date(2026, 1, 5),
            now=NOW,
        ).id
        record_work_days(
            s, actor=thga, job_id=job, days=[date(2026, 2, 2), date(2026, 2, 3)], now=NOW
        )
    return case_c, participant, job


def snapshot(session: Session, world: World) -> dict[str, int]:
    return dict(session.execute(text(world.fingerprint_sql)).mappings().one())


def _without_access_log(fingerprint: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in fingerprint.items() if not k.startswith("access_log")}


def _handoffs(s: Session, reference: str) -> list[Handoff]:
    return list(
        s.scalars(
            select(Handoff).join(Case).where(Case.reference == reference).order_by(Handoff.id)
        )
    )


def _step(s: Session, reference: str, key: str) -> Step:
    return s.scalars(
        select(Step).join(Case).where(Case.reference == reference, Step.key == key)
    ).one()


def _active(step: Step) -> Handoff | None:
    return next((h for h in step.handoffs if h.state in ACTIVE_HANDOFF_STATES), None)


def _audit_count(s: Session) -> int:
    return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


# --- The actions: how each row is carried out, and how an allowed call proves it happened ------


@dataclass(frozen=True)
class Call:
    """One cell's call: who, on which world, about which case (its reference) or which FIT
    participant or job (its id)."""

    actor: Actor
    kind: str
    world: World
    reference: str

    @property
    def step(self) -> str:
        return "job_offer" if self.kind == "revoked" else "recognition"


Run = Callable[[Session, Call], Any]
Check = Callable[[Session, Call, Any], None]
Prepare = Callable[[Session, World], None]
Subject = Callable[[World], str]


def case_a(world: World) -> str:
    return world.case_a


@dataclass(frozen=True)
class Action:
    name: str
    run: Run
    check: Check
    prepare: Prepare | None
    writes: bool
    # The call names one person's record (a case, or a FIT participant or job): a partner
    # outside its scope hears what a missing one gets.
    case_scoped: bool
    subject: Subject = case_a  # what the call names in the world
    missing: str = MISSING  # what it names when nothing has that name


ACTIONS: dict[str, Action] = {}


def action(
    name: str,
    *,
    check: Check,
    prepare: Prepare | None = None,
    writes: bool = True,
    case_scoped: bool = False,
    subject: Subject = case_a,
    missing: str = MISSING,
) -> Callable[[Run], Run]:
    def register(run: Run) -> Run:
        assert name not in ACTIONS, name
        ACTIONS[name] = Action(name, run, check, prepare, writes, case_scoped, subject, missing)
        return run

    return register


def as_user(s: Session, username: str) -> Actor:
    return actor_for(s, username)


# Preparations run in the cell's own transaction, before the call, as the people who would.


def ihk_accepted(s: Session, world: World) -> None:
    accept_handoff(
        s, actor=as_user(s, "ihk.hoffmann"), reference=world.case_a, step_key="recognition", now=NOW
    )


def ihk_accepted_then_blocked(s: Session, world: World) -> None:
    ihk_accepted(s, world)
    block_step(
        s,
        actor=as_user(s, "cm.mueller"),
        reference=world.case_a,
        step_key="recognition",
        reason="Zeugnisübersetzung fehlt",
        now=NOW,
    )


def prerequisites_of_visa_finished(s: Session, world: World) -> None:
    cm = as_user(s, "cm.mueller")
    skip_step(
        s, actor=cm, reference=world.case_a, step_key="recognition", reason="anabin: H+", now=NOW
    )
    complete_step(s, actor=cm, reference=world.case_a, step_key="job_offer", now=NOW)


def newcomer_registered(s: Session, world: World) -> None:
    register_newcomer(s, actor=as_user(s, "admin"), data=newcomer(given_name="Noor"), now=NOW)


def _refs(items: list[Any]) -> set[tuple[str, str]]:
    return {(i.reference, i.step) for i in items}


# Reading cases


def _check_case_view(s: Session, call: Call, view: Any) -> None:
    assert view.reference == call.world.case_a
    if call.actor.is_partner:
        assert [st.key for st in view.steps] == ["recognition"]
        assert view.consents == [] and "email" not in view.newcomer
    else:
        assert len(view.steps) == 11 and view.consents
        assert view.newcomer["family_name"] == FAMILY_A


@action("case_view", check=_check_case_view, writes=False, case_scoped=True)
def _case_view(s: Session, call: Call) -> Any:
    return queries.case_view(s, actor=call.actor, reference=call.reference, today=NOW.date())


def _check_list(s: Session, call: Call, rows: Any) -> None:
    assert {call.world.case_a, call.world.case_b} <= {r.reference for r in rows}


@action("list_cases", check=_check_list, writes=False)
def _list_cases(s: Session, call: Call) -> Any:
    return queries.list_cases(s, actor=call.actor, status=None, today=NOW.date())


def _check_count(s: Session, call: Call, n: Any) -> None:
    assert n >= 2  # cases A and B at least


@action("count_cases", check=_check_count, writes=False)
def _count_cases(s: Session, call: Call) -> Any:
    return queries.count_cases(s, actor=call.actor, status=None, today=NOW.date())


def _check_inbox(s: Session, call: Call, found: Any) -> None:
    # Case A's job offer is held since its consent to AfA was revoked.
    assert ("held", call.world.case_a, "job_offer") in {
        (i.kind, i.reference, i.step) for i in found.items
    }


@action("needs_me", check=_check_inbox, writes=False)
def _needs_me(s: Session, call: Call) -> Any:
    return needs_me(s, actor=call.actor, manager=None, today=NOW.date(), limit=500)


def _check_timeline(s: Session, call: Call, entries: Any) -> None:
    actions = [e.action for e in entries]
    assert actions[0] == "case.opened"
    assert {"handoff.accepted", "consent.revoked", "handoff.held"} <= set(actions)


@action("timeline", check=_check_timeline, writes=False, case_scoped=True)
def _timeline(s: Session, call: Call) -> Any:
    return queries.timeline(s, actor=call.actor, reference=call.reference)


# Queues


def _check_own_queue(s: Session, call: Call, items: Any) -> None:
    seen = _refs(items)
    world = call.world
    if call.kind == "other_org":  # THGA: its step of case B, nothing of case A
        assert seen == {(world.case_b, "fit_enrollment")}
    elif call.kind == "revoked":  # AfA's handoff of case A is held: gone from its queue
        assert world.case_a not in {ref for ref, _ in seen}
    else:  # IHK's queue, the partner's own or looked at by a case manager
        assert seen == {(world.case_a, "recognition")}
        assert all(
            set(i.newcomer) <= {"given_name", "family_name", "birth_date", "nationality"}
            for i in items
        )


@action("partner_queue_own", check=_check_own_queue, writes=False)
def _queue_own(s: Session, call: Call) -> Any:
    # A partner's own queue (no organisation named); case managers have none, they look at IHK's.
    org = None if call.actor.is_partner or call.actor.role == Role.leadership else "ihk-mr"
    return queries.partner_queue(s, actor=call.actor, organisation=org, today=NOW.date())


def _check_other_queue(s: Session, call: Call, items: Any) -> None:
    assert _refs(items) == {(call.world.case_a, "recognition")}


@action("partner_queue_other", check=_check_other_queue, writes=False)
def _queue_other(s: Session, call: Call) -> Any:
    org = "afa-bochum" if call.actor.organisation_key == "ihk-mr" else "ihk-mr"
    return queries.partner_queue(s, actor=call.actor, organisation=org, today=NOW.date())


# Answering handoffs


def _recognition(s: Session, call: Call) -> Step:
    return _step(s, call.world.case_a, "recognition")


def _last_handoff(s: Session, call: Call) -> Handoff:
    return _recognition(s, call).handoffs[-1]


def _check_accepted(s: Session, call: Call, result: Any) -> None:
    handoff = _last_handoff(s, call)
    assert (handoff.state, handoff.accepted_by_id) == (HandoffState.accepted, call.actor.user_id)
    assert _recognition(s, call).state == StepState.in_progress


@action("handoff_accept", check=_check_accepted, case_scoped=True)
def _accept(s: Session, call: Call) -> Any:
    return accept_handoff(
        s, actor=call.actor, reference=call.reference, step_key=call.step, now=NOW
    )


def _check_declined(s: Session, call: Call, result: Any) -> None:
    handoff = _last_handoff(s, call)
    assert (handoff.state, handoff.reason) == (HandoffState.declined, "Nicht zuständig")


@action("handoff_decline", check=_check_declined, case_scoped=True)
def _decline(s: Session, call: Call) -> Any:
    return decline_handoff(
        s,
        actor=call.actor,
        reference=call.reference,
        step_key=call.step,
        reason="Nicht zuständig",
        now=NOW,
    )


def _check_returned(s: Session, call: Call, result: Any) -> None:
    assert _last_handoff(s, call).state == HandoffState.returned
    assert _recognition(s, call).state == StepState.open


@action("handoff_return", check=_check_returned, prepare=ihk_accepted, case_scoped=True)
def _return(s: Session, call: Call) -> Any:
    return return_handoff(
        s,
        actor=call.actor,
        reference=call.reference,
        step_key=call.step,
        reason="Unterlagen unvollständig",
        now=NOW,
    )


def _check_handoff_completed(s: Session, call: Call, result: Any) -> None:
    step = _recognition(s, call)
    assert (step.state, step.outcome, step.done_at) == (StepState.done, "full", NOW)
    assert step.handoffs[-1].state == HandoffState.completed


@action("handoff_complete", check=_check_handoff_completed, prepare=ihk_accepted, case_scoped=True)
def _complete_handoff(s: Session, call: Call) -> Any:
    return complete_handoff(
        s, actor=call.actor, reference=call.reference, step_key=call.step, outcome="full", now=NOW
    )


# Routing handoffs


def _check_offered(s: Session, call: Call, result: Any) -> None:
    step = _recognition(s, call)
    current = _active(step)
    assert current is not None and current.organisation.key == "hwk-do"
    assert current.state == HandoffState.held  # no consent for HWK yet: held, not offered
    assert step.handoffs[-2].reason == "rerouted_to:hwk-do"


@action("handoff_offer", check=_check_offered, case_scoped=True)
def _offer(s: Session, call: Call) -> Any:
    return offer_handoff(
        s,
        actor=call.actor,
        reference=call.reference,
        step_key=call.step,
        organisation="hwk-do",
        now=NOW,
    )


def _check_withdrawn(s: Session, call: Call, result: Any) -> None:
    step = _recognition(s, call)
    assert _active(step) is None
    assert step.handoffs[-1].state == HandoffState.withdrawn


@action("handoff_withdraw", check=_check_withdrawn, case_scoped=True)
def _withdraw(s: Session, call: Call) -> Any:
    return withdraw_handoff(
        s,
        actor=call.actor,
        reference=call.reference,
        step_key=call.step,
        reason="Klären wir selbst",
        now=NOW,
    )


# Working steps


def _state_is(state: StepState) -> Check:
    def check(s: Session, call: Call, result: Any) -> None:
        step = _recognition(s, call)
        assert step.state == state
        if state == StepState.done:
            assert step.done_at == NOW
        if state in (StepState.in_progress, StepState.done):
            assert step.blocked_reason is None

    return check


@action(
    "step_start",
    check=_state_is(StepState.in_progress),
    prepare=ihk_accepted_then_blocked,
    case_scoped=True,
)
def _start(s: Session, call: Call) -> Any:
    return start_step(s, actor=call.actor, reference=call.reference, step_key=call.step, now=NOW)


@action("step_complete", check=_state_is(StepState.done), prepare=ihk_accepted, case_scoped=True)
def _complete(s: Session, call: Call) -> Any:
    return complete_step(s, actor=call.actor, reference=call.reference, step_key=call.step, now=NOW)


@action("step_block", check=_state_is(StepState.blocked), prepare=ihk_accepted, case_scoped=True)
def _block(s: Session, call: Call) -> Any:
    return block_step(
        s,
        actor=call.actor,
        reference=call.reference,
        step_key=call.step,
        reason="Unterlagen fehlen",
        now=NOW,
    )


def _check_skipped(s: Session, call: Call, result: Any) -> None:
    step = _recognition(s, call)
    assert (step.state, step.skip_reason) == (StepState.skipped, "anabin: H+")
    assert _active(step) is None


@action("step_skip", check=_check_skipped, case_scoped=True)
def _skip(s: Session, call: Call) -> Any:
    return skip_step(
        s,
        actor=call.actor,
        reference=call.reference,
        step_key=call.step,
        reason="anabin: H+",
        now=NOW,
    )


# Consent


def _consents(s: Session, call: Call, org: str) -> list[Consent]:
    return list(
        s.scalars(
            select(Consent)
            .join(Organisation, Consent.organisation_id == Organisation.id)
            .join(Case, Case.newcomer_id == Consent.newcomer_id)
            .where(Case.reference == call.world.case_a, Organisation.key == org)
        )
    )


def _check_consent_given(s: Session, call: Call, result: Any) -> None:
    (consent,) = _consents(s, call, "hwk-do")
    assert consent.revoked_at is None and consent.recorded_by_id == call.actor.user_id


@action("consent_give", check=_check_consent_given, case_scoped=True)
def _give(s: Session, call: Call) -> Any:
    return give_consent(
        s,
        actor=call.actor,
        reference=call.reference,
        organisation="hwk-do",
        method=ConsentMethod.signed_form,
        notice_language="en",
        now=NOW,
    )


def _check_consent_revoked(s: Session, call: Call, result: Any) -> None:
    assert all(c.revoked_at is not None for c in _consents(s, call, "ihk-mr"))
    current = _active(_recognition(s, call))
    assert current is not None
    assert (current.state, current.hold_reason) == (HandoffState.held, "consent_revoked")


@action("consent_revoke", check=_check_consent_revoked, case_scoped=True)
def _revoke(s: Session, call: Call) -> Any:
    return revoke_consent(
        s, actor=call.actor, reference=call.reference, organisation="ihk-mr", now=NOW
    )


# People and cases


def _check_registered(s: Session, call: Call, result: Any) -> None:
    assert s.scalar(select(Newcomer.id).where(Newcomer.given_name == "Samir")) is not None


@action("register_newcomer", check=_check_registered)
def _register(s: Session, call: Call) -> Any:
    return register_newcomer(s, actor=call.actor, data=newcomer(given_name="Samir"), now=NOW)


def _check_opened(s: Session, call: Call, result: Any) -> None:
    case = s.scalars(select(Case).join(Newcomer).where(Newcomer.given_name == "Noor")).one()
    assert case.status == CaseStatus.open and len(case.steps) == 11


@action("open_case", check=_check_opened, prepare=newcomer_registered)
def _open(s: Session, call: Call) -> Any:
    person = s.scalars(select(Newcomer).where(Newcomer.given_name == "Noor")).one()
    return open_case(s, actor=call.actor, newcomer_id=person.id, now=NOW)


def _case_a(s: Session, call: Call) -> Case:
    return s.scalars(select(Case).where(Case.reference == call.world.case_a)).one()


def _check_updated(s: Session, call: Call, result: Any) -> None:
    assert _case_a(s, call).newcomer.phone == "+49 234 555"


@action("newcomer_update", check=_check_updated, case_scoped=True)
def _update(s: Session, call: Call) -> Any:
    return update_newcomer(
        s,
        actor=call.actor,
        reference=call.reference,
        changes=NewcomerUpdate(phone="+49 234 555"),
        now=NOW,
    )


def _check_advanced(s: Session, call: Call, result: Any) -> None:
    assert result.opened == ["visa"]
    assert _step(s, call.world.case_a, "visa").state == StepState.open


@action(
    "case_advance",
    check=_check_advanced,
    prepare=prerequisites_of_visa_finished,
    case_scoped=True,
)
def _advance(s: Session, call: Call) -> Any:
    return advance_case(s, actor=call.actor, reference=call.reference, now=NOW)


def _check_reassigned(s: Session, call: Call, result: Any) -> None:
    manager = _case_a(s, call).case_manager
    assert manager is not None and manager.username == "cm.yilmaz"


@action("case_reassign", check=_check_reassigned, case_scoped=True)
def _reassign(s: Session, call: Call) -> Any:
    return reassign_case(
        s, actor=call.actor, reference=call.reference, case_manager="cm.yilmaz", now=NOW
    )


def _check_cancelled(s: Session, call: Call, result: Any) -> None:
    assert _case_a(s, call).status == CaseStatus.cancelled
    assert all(h.state not in ACTIVE_HANDOFF_STATES for h in _handoffs(s, call.world.case_a))


@action("case_cancel", check=_check_cancelled, case_scoped=True)
def _cancel(s: Session, call: Call) -> Any:
    return cancel_case(
        s, actor=call.actor, reference=call.reference, reason="Umzug nach Hamburg", now=NOW
    )


CSV = b"given_name,family_name,birth_date,nationality,purpose\nImran,Qureshi,1990-01-02,PK,work\n"


def _check_imported(s: Session, call: Call, report: Any) -> None:
    ((_line, reference),) = report.imported
    case = s.scalars(select(Case).where(Case.reference == reference)).one()
    assert case.newcomer.family_name == "Qureshi"
    assert case.case_manager is not None and case.case_manager.username == "cm.mueller"


@action("import_newcomers", check=_check_imported)
def _import(s: Session, call: Call) -> Any:
    return import_newcomers(s, actor=call.actor, source=CSV, case_manager="cm.mueller", now=NOW)


# Reference data


def _check_org_added(s: Session, call: Call, result: Any) -> None:
    org = s.scalars(select(Organisation).where(Organisation.key == "caritas-bochum")).one()
    assert org.active and org.receives_handoffs


@action("org_add", check=_check_org_added)
def _org_add(s: Session, call: Call) -> Any:
    return add_organisation(
        s, actor=call.actor, key="caritas-bochum", name="Caritas Bochum", now=NOW
    )


def _check_org_updated(s: Session, call: Call, result: Any) -> None:
    org = s.scalars(select(Organisation).where(Organisation.key == "ihk-mr")).one()
    assert org.email == "queue@ihk.invalid" and org.version == 2


@action("org_update", check=_check_org_updated)
def _org_update(s: Session, call: Call) -> Any:
    return update_organisation(
        s, actor=call.actor, key="ihk-mr", email="queue@ihk.invalid", now=NOW
    )


def _check_user_added(s: Session, call: Call, result: Any) -> None:
    user = s.scalars(select(User).where(User.username == "ihk.neu")).one()
    assert user.role == Role.partner_agent and user.active


@action("user_add", check=_check_user_added)
def _user_add(s: Session, call: Call) -> Any:
    return add_user(
        s,
        actor=call.actor,
        username="ihk.neu",
        display_name="Neue Kollegin",
        role=Role.partner_agent,
        organisation="ihk-mr",
        now=NOW,
    )


def _check_users(s: Session, call: Call, rows: Any) -> None:
    listed = {u.username: u.active for u in rows}
    assert listed["cm.former"] is False and listed["ihk.hoffmann"] is True


@action("user_list", check=_check_users, writes=False)
def _user_list(s: Session, call: Call) -> Any:
    return admin_queries.users(s, actor=call.actor)


# Aggregates


def _check_funnel(s: Session, call: Call, funnel: Any) -> None:
    assert [r.step for r in funnel.steps][:3] == ["recognition", "job_offer", "visa"]


@action("outcomes_funnel", check=_check_funnel, writes=False)
def _funnel(s: Session, call: Call) -> Any:
    return journey_figures.funnel(s, actor=call.actor, pathway="skilled_worker")


def _check_backlog(s: Session, call: Call, backlog: Any) -> None:
    assert {"ihk-mr", "thga"} <= {p.organisation for p in backlog.partners}


@action("outcomes_backlog", check=_check_backlog, writes=False)
def _backlog(s: Session, call: Call) -> Any:
    return partner_figures.partner_backlog(s, actor=call.actor, today=NOW.date())


def _check_progress(s: Session, call: Call, progress: Any) -> None:
    assert progress.suppressed == (call.actor.role == Role.leadership)
    assert "ihk-mr" in {r.organisation for r in progress.partners}


@action("outcomes_partner_progress", check=_check_progress, writes=False)
def _partner_progress(s: Session, call: Call) -> Any:
    return partner_figures.partner_progress(s, actor=call.actor, today=NOW.date())


def _check_generated(s: Session, call: Call, file: Any) -> None:
    payload = json.loads(file.content)
    assert (payload["report"], payload["period"]) == ("monthly", "2026-02")


@action("report_generate", check=_check_generated, writes=False)
def _generate(s: Session, call: Call) -> Any:
    return reports.generate(
        s, actor=call.actor, kind="monthly", period="2026-02", fmt="json", today=NOW.date()
    )


def _check_stored(s: Session, call: Call, result: Any) -> None:
    row = s.scalars(select(StoredReport).where(StoredReport.period == "2026-02")).one()
    assert row.generated_by == call.actor.username and row.content == b"a,b\n"


@action("report_store", check=_check_stored)
def _store(s: Session, call: Call) -> Any:
    file = reports.ReportFile("monthly", "2026-02", "", "csv", b"a,b\n")
    return store_reports(s, actor=call.actor, files=[file], now=NOW)


def _check_report_list(s: Session, call: Call, rows: Any) -> None:
    assert [(r.kind, r.period, r.format) for r in rows] == [("monthly", "2026-01", "json")]


@action("report_list", check=_check_report_list, writes=False)
def _report_list(s: Session, call: Call) -> Any:
    return reports.stored_reports(s, actor=call.actor)


# Rights of the person


def _check_export(s: Session, call: Call, data: Any) -> None:
    assert data["person"]["family_name"] == FAMILY_A
    assert data["cases"][0]["reference"] == call.world.case_a


@action("person_export", check=_check_export, case_scoped=True)
def _person_export(s: Session, call: Call) -> Any:
    return export_person(s, actor=call.actor, reference=call.reference, now=NOW)


def _check_access(s: Session, call: Call, rows: Any) -> None:
    assert isinstance(rows, list)


@action("access_history", check=_check_access, writes=False, case_scoped=True)
def _access_history(s: Session, call: Call) -> Any:
    return access_history(s, actor=call.actor, reference=call.reference)


def _check_erased(s: Session, call: Call, removal: Any) -> None:
    assert removal.removed["cases"] == 1
    gone = select(func.count()).select_from(Case).where(Case.reference == call.reference)
    assert s.scalar(gone) == 0
    tombstone = select(func.count()).where(AuditEvent.action == "person.erased")
    assert s.scalar(tombstone) == 1


@action("person_erase", check=_check_erased, case_scoped=True)
def _person_erase(s: Session, call: Call) -> Any:
    return erase_person(
        s,
        actor=call.actor,
        reference=call.reference,
        confirm=call.reference,
        mail_dir=call.world.mail_dir,
        now=NOW,
    )


# FIT@THGA


def _check_fit_offers(s: Session, call: Call, rows: Any) -> None:
    assert [r.title for r in rows] == ["Bewerbungstraining März"]


@action("fit_offers", check=_check_fit_offers, writes=False)
def _fit_offers(s: Session, call: Call) -> Any:
    return fitq.offers(s, actor=call.actor, year=2026)


def _check_offer_created(s: Session, call: Call, result: Any) -> None:
    titles = set(s.scalars(select(FitOffer.title)))
    assert "Firmenbesuch Mai" in titles


@action("fit_create_offer", check=_check_offer_created)
def _fit_create(s: Session, call: Call) -> Any:
    return create_offer(
        s,
        actor=call.actor,
        kind=OfferKind.excursion,
        title="Firmenbesuch Mai",
        starts_at=NOW + timedelta(days=60),
        ends_at=NOW + timedelta(days=60, hours=4),
        place="Bochum",
        capacity=20,
        now=NOW,
    )


# FIT@THGA participants. Each surface runs in three worlds: as built (the student of case C
# consents to sharing with THGA), after the case manager recorded the revocation of that
# consent, and after it was given again. A list leaves the student out exactly when THGA's agent
# reads it after the revocation; a call that names them is then answered as for a missing one.


def thga_consent_revoked(s: Session, world: World) -> None:
    revoke_consent(
        s, actor=as_user(s, "cm.yilmaz"), reference=world.case_c, organisation="thga", now=NOW
    )


def thga_consent_given_again(s: Session, world: World) -> None:
    thga_consent_revoked(s, world)
    give_consent(
        s,
        actor=as_user(s, "cm.yilmaz"),
        reference=world.case_c,
        organisation="thga",
        method=ConsentMethod.signed_form,
        notice_language="en",
        now=NOW + timedelta(hours=1),
    )


FIT_WORLDS: dict[str, Prepare | None] = {
    "": None,
    "_revoked": thga_consent_revoked,
    "_regiven": thga_consent_given_again,
}
# Check of a list: the result, and whether the student of case C should be in it.
ListCheck = Callable[[Session, Call, Any, bool], None]


def participant(world: World) -> str:
    return str(world.participant)


def fit_list(name: str, check: ListCheck) -> Callable[[Run], Run]:
    """A FIT read that lists people, in the three worlds; THGA's agent after the revocation
    must not find case C's student in it, everyone else must."""

    def register(run: Run) -> Run:
        for suffix, prepare in FIT_WORLDS.items():
            shown = suffix != "_revoked"

            def checked(s: Session, call: Call, result: Any, shown: bool = shown) -> None:
                check(s, call, result, shown or not call.actor.is_partner)

            action(name + suffix, check=checked, prepare=prepare, writes=False)(run)
        return run

    return register


def fit_subject(
    name: str, check: Check, *, writes: bool = True, subject: Subject = participant
) -> Callable[[Run], Run]:
    """A FIT read or change that names case C's student (or their job), in the three worlds."""

    def register(run: Run) -> Run:
        for suffix, prepare in FIT_WORLDS.items():
            action(
                name + suffix,
                check=check,
                prepare=prepare,
                writes=writes,
                case_scoped=True,
                subject=subject,
                missing=MISSING_ID,
            )(run)
        return run

    return register


def _check_participants(s: Session, call: Call, rows: Any, shown: bool) -> None:
    listed = {r.id: (r.reference, r.family_name) for r in rows}
    expected = {call.world.participant: (call.world.case_c, FAMILY_C)} if shown else {}
    assert listed == expected


def _check_counts(s: Session, call: Call, counts: Any, shown: bool) -> None:
    # Case C's student is the programme's one participant: a partner's totals leave them out
    # with the list, or "enrolled 1" beside an empty list would give them away.
    assert (counts.year, counts.enrolled) == (2026, 1 if shown else 0)


@fit_list("fit_counts", _check_counts)
def _fit_counts(s: Session, call: Call) -> Any:
    return fitq.programme_counts(s, actor=call.actor, year=2026)


@fit_list("fit_participants", _check_participants)
def _fit_participants(s: Session, call: Call) -> Any:
    return fitq.participants(s, actor=call.actor)


def _check_day_counts(s: Session, call: Call, counts: Any, shown: bool) -> None:
    assert {pid: c.full for pid, c in counts.items()} == (
        {call.world.participant: 2} if shown else {}
    )


@fit_list("fit_day_counts", _check_day_counts)
def _fit_day_counts(s: Session, call: Call) -> Any:
    return fitq.day_counts(s, actor=call.actor, year=2026)


def _check_registrations(s: Session, call: Call, rows: Any, shown: bool) -> None:
    listed = [(r.participant_id, r.family_name, r.status) for r in rows]
    assert listed == ([(call.world.participant, FAMILY_C, "registered")] if shown else [])


@fit_list("fit_registrations", _check_registrations)
def _fit_registrations(s: Session, call: Call) -> Any:
    return fitq.registrations(s, actor=call.actor, offer_id=call.world.offer)


def _check_jobs(s: Session, call: Call, rows: Any) -> None:
    assert [(j.employer, j.full_days) for j in rows] == [("Emscher Geotechnik GmbH", 2)]


@fit_subject("fit_jobs", _check_jobs, writes=False)
def _fit_jobs(s: Session, call: Call) -> Any:
    return fitq.jobs(s, actor=call.actor, participant_id=int(call.reference))


def _check_day_count(s: Session, call: Call, count: Any) -> None:
    assert (count.participant_id, count.full, count.used) == (call.world.participant, 2, 2)


@fit_subject("fit_day_count", _check_day_count, writes=False)
def _fit_day_count(s: Session, call: Call) -> Any:
    return fitq.work_day_count(s, actor=call.actor, participant_id=int(call.reference), year=2026)


def _check_graduated(s: Session, call: Call, result: Any) -> None:
    assert s.get_one(FitParticipant, call.world.participant).status == FitStatus.graduated


@fit_subject("fit_status", _check_graduated)
def _fit_status(s: Session, call: Call) -> Any:
    return change_status(
        s,
        actor=call.actor,
        participant_id=int(call.reference),
        status=FitStatus.graduated,
        on=local_today(NOW),
        now=NOW,
    )


def _check_work_days(s: Session, call: Call, result: Any) -> None:
    days = s.scalars(select(FitWorkDay.day).where(FitWorkDay.job_id == call.world.job))
    assert sorted(days) == [date(2026, 2, 2), date(2026, 2, 3), date(2026, 2, 4)]


@fit_subject("fit_work_days", _check_work_days, subject=lambda world: str(world.job))
def _fit_work_days(s: Session, call: Call) -> Any:
    return record_work_days(
        s, actor=call.actor, job_id=int(call.reference), days=[date(2026, 2, 4)], now=NOW
    )


def _check_attended(s: Session, call: Call, result: Any) -> None:
    registration = s.scalars(
        select(FitRegistration).where(FitRegistration.offer_id == call.world.offer)
    ).one()
    assert registration.status == RegistrationStatus.attended
    assert s.get_one(FitOffer, call.world.offer).status == "held"


@fit_subject("fit_attendance", _check_attended)
def _fit_attendance(s: Session, call: Call) -> Any:
    return record_attendance(
        s,
        actor=call.actor,
        offer_id=call.world.offer,
        attended=[int(call.reference)],
        now=NOW + timedelta(days=11),
    )


# --- The world fixture: one per backend, never changed by a cell -----------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    db = _fresh(request, request.param, tmp_path_factory.mktemp("permissions"))
    try:
        yield build_world(db)
    finally:
        db.dispose()


class _RollBack(Exception):
    """Raised at the end of every cell so that its transaction leaves the world as it was."""


@pytest.mark.parametrize("cell", CELLS, ids=[c.id for c in CELLS])
def test_cell(world: World, cell: Cell) -> None:
    act = ACTIONS[cell.action]
    try:
        with world.db.transaction() as s:
            if act.prepare is not None:
                act.prepare(s, world)
                s.flush()
            before = snapshot(s, world)
            audit_before = _audit_count(s)
            subject = act.subject(world)
            if cell.outcome == "allow":
                call = Call(as_user(s, cell.username), cell.kind, world, subject)
                result = act.run(s, call)
                s.flush()
                act.check(s, call, result)
                audit_after = _audit_count(s)
                if act.name == "person_erase":  # the case's events go; a tombstone stays
                    assert audit_after < audit_before
                elif act.writes:
                    assert audit_after > audit_before, "an allowed change left no audit event"
                else:  # a read changes nothing (it may note the access in access_log)
                    assert _without_access_log(snapshot(s, world)) == _without_access_log(before)
            else:
                expected = PermissionDenied if cell.outcome == "deny" else NotFoundError
                with pytest.raises(expected) as refused:
                    call = Call(as_user(s, cell.username), cell.kind, world, subject)
                    act.run(s, call)
                assert type(refused.value) is expected
                # Anything the refused call left in the session is flushed by these reads.
                assert _audit_count(s) == audit_before
                assert snapshot(s, world) == before
                message = str(refused.value)
                assert FAMILY_A not in message and FAMILY_C not in message
                if cell.outcome == "not_found":
                    with pytest.raises(NotFoundError) as missing:
                        act.run(s, Call(call.actor, cell.kind, world, act.missing))
                    assert message == str(missing.value).replace(act.missing, subject)
            raise _RollBack
    except _RollBack:
        pass
    with world.db.read() as s:
        assert snapshot(s, world) == world.baseline, "the cell changed the shared world"


WRONG_STATE = {  # a verb, and a preparation that leaves the handoff in a state it does not fit
    "handoff_accept": ihk_accepted,
    "handoff_decline": ihk_accepted,
    "handoff_return": None,  # still offered
    "handoff_complete": None,
}


@pytest.mark.parametrize("verb", list(WRONG_STATE))
def test_a_partner_that_is_not_the_receiver_is_refused_before_it_hears_the_handoffs_state(
    world: World, verb: str
) -> None:
    """THGA was never handed case A: whatever state IHK's handoff is in, THGA hears only what a
    missing case gets."""
    prepare = WRONG_STATE[verb]
    try:
        with world.db.transaction() as s:
            if prepare is not None:
                prepare(s, world)
            call = Call(as_user(s, "thga.nowak"), "other_org", world, world.case_a)
            with pytest.raises(NotFoundError) as refused:
                ACTIONS[verb].run(s, call)
            assert "it is" not in str(refused.value)
            raise _RollBack
    except _RollBack:
        pass


# --- The table itself ---------------------------------------------------------------------------


def test_the_table_has_every_action_and_actor_exactly_once() -> None:
    assert list(ACTORS) == KINDS, "the table's columns are the actors, in order"
    assert sorted(a for a, _ in ROWS) == sorted(ACTIONS), "one row per action, one action per row"
    short_or_long = [a for a, outcomes_ in ROWS if len(outcomes_) != len(KINDS)]
    assert short_or_long == [], "rows without exactly one outcome per actor"
    counts = Counter((c.action, c.kind) for c in CELLS)
    assert set(counts) == {(a, k) for a in ACTIONS for k in KINDS}
    assert set(counts.values()) == {1}
    assert {c.outcome for c in CELLS} <= set(OUTCOMES)
    # "Not found" is how a case hides; only an action that names a case can answer it.
    assert all(ACTIONS[c.action].case_scoped for c in CELLS if c.outcome == "not_found")
    # Leadership reads aggregates and nothing else; a deactivated account does nothing.
    aggregates = {a for a in ACTIONS if a.startswith(("outcomes_", "report_"))}
    assert {c.action for c in CELLS if c.kind == "leadership" and c.outcome == "allow"} == (
        aggregates
    )
    assert {c.action for c in CELLS if c.kind == "deactivated" and c.outcome != "deny"} == set()
