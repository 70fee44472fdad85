"""Realistic demo data: Bochum's partners, users for every role, and newcomers at every stage.

Histories are simulated step by step with the same pathway graph and clock rules the services
use, then written in bulk (one statement per table and batch) because a demo load of 100,000
people through the ORM would take many minutes. Same seed and same ``as_of`` day: same data.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, cast

from faker import Faker
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.db import Database
from tracker.enums import CaseStatus, HandoffState, OutboxStatus, Purpose, Role, StepState
from tracker.models import (
    AuditEvent,
    Case,
    Consent,
    Handoff,
    Newcomer,
    Organisation,
    OutboxMessage,
    Step,
    User,
)
from tracker.passwords import hash_password
from tracker.pathway import Pathway, PathwayRegistry, get_registry
from tracker.schemas import match_key
from tracker.services._base import REFERENCE_ALPHABET, utcnow
from tracker.services.admin import SETUP, add_user, seed_organisations

DEMO_PASSWORD = "willkommen"  # demo data only; never used outside `onboarding demo`

# username, display name, role, organisation
DEMO_USERS: list[tuple[str, str, Role, str | None]] = [
    ("admin", "Admin (Demo)", Role.admin, None),
    ("cm.mueller", "Sabine Müller", Role.case_manager, "kim-bochum"),
    ("cm.yilmaz", "Deniz Yılmaz", Role.case_manager, "kim-bochum"),
    ("cm.kowalski", "Marta Kowalski", Role.case_manager, "kim-bochum"),
    ("lead.schmidt", "Dr. Jörg Schmidt", Role.leadership, None),
    ("stadt.weber", "Jana Weber", Role.partner_agent, "stadt-bochum"),
    ("ihk.hoffmann", "Lukas Hoffmann", Role.partner_agent, "ihk-mr"),
    ("afa.becker", "Miriam Becker", Role.partner_agent, "afa-bochum"),
    ("hwk.wagner", "Tobias Wagner", Role.partner_agent, "hwk-do"),
    ("thga.nowak", "Ewa Nowak", Role.partner_agent, "thga"),
    ("vbw.schulz", "Peter Schulz", Role.partner_agent, "vbw"),
    ("akafoe.fischer", "Lea Fischer", Role.partner_agent, "akafoe"),
]
PARTNER_BY_ORG = {org: name for name, _, role, org in DEMO_USERS if role == Role.partner_agent}
CASE_MANAGERS = [name for name, _, role, _ in DEMO_USERS if role == Role.case_manager]

# Faker locale -> nationality. Weighted toward the groups Bochum actually sees.
NON_EU = [
    ("en_IN", "IN", 14),
    ("tr_TR", "TR", 10),
    ("uk_UA", "UA", 8),
    ("ar_EG", "EG", 5),
    ("fa_IR", "IR", 5),
    ("vi_VN", "VN", 6),
    ("zh_CN", "CN", 6),
    ("pt_BR", "BR", 5),
    ("es_MX", "MX", 3),
    ("id_ID", "ID", 4),
    ("en_PH", "PH", 4),
    ("ne_NP", "NP", 4),
    ("bn_BD", "BD", 4),
    ("ka_GE", "GE", 3),
    ("en_NG", "NG", 5),
    ("en_PK", "PK", 4),
    ("sq_AL", "AL", 2),
    ("ar_JO", "SY", 3),
]
EU = [
    ("pl_PL", "PL", 6),
    ("it_IT", "IT", 4),
    ("es_ES", "ES", 4),
    ("ro_RO", "RO", 6),
    ("el_GR", "GR", 3),
    ("hr_HR", "HR", 3),
    ("bg_BG", "BG", 3),
    ("nl_NL", "NL", 1),
]
LANG_BY_LOCALE = {"uk_UA": "uk", "tr_TR": "tr", "ar_EG": "ar", "ar_JO": "ar", "fa_IR": "fa"}

# Typical durations in days (low, mode, high) from shared/domain.md.
DURATIONS: dict[str, tuple[float, float, float]] = {
    "recognition": (45, 95, 160),
    "job_offer": (5, 13, 35),
    "visa": (14, 30, 75),
    "housing": (5, 25, 120),
    "registration": (1, 7, 28),
    "tax_id": (10, 21, 100),
    "bank_account": (2, 7, 30),
    "health_insurance": (2, 6, 20),
    "residence_title": (25, 42, 85),
    "integration_course": (30, 90, 250),
    "fit_enrollment": (5, 20, 60),
    "job_entry": (20, 90, 300),
}
STUDENT_JOB_ENTRY = (300, 620, 1000)  # after graduation
BLOCK_REASONS = [
    "Unterlagen unvollständig / documents incomplete",
    "Termin erst in einigen Wochen frei / no appointment slot yet",
    "Übersetzung des Zeugnisses fehlt / certificate translation missing",
    "Arbeitgeberangaben unvollständig / employer data incomplete",
]
SKIP_REASONS = {
    "integration_course": "Kein Anspruch: Hochschulabschluss / no entitlement (academic degree)",
    "recognition": "Abschluss in anabin als vergleichbar gelistet / degree listed as comparable",
}
NOT_AT_THGA = (
    "Studium an der RUB: FIT@THGA nicht zutreffend / studies at RUB, FIT@THGA does not apply"
)
DECLINE_REASONS = [
    "Nicht zuständig: Handwerksberuf, bitte an HWK / not ours: crafts occupation, please HWK",
    "Keine Kapazität in diesem Monat / no capacity this month",
]


@lru_cache(maxsize=1)
def _demo_hash() -> str:
    # One Argon2 hash for the shared demo password keeps test setup fast.
    return hash_password(DEMO_PASSWORD)


def ensure_demo_users(session: Session, *, now: datetime | None = None) -> list[str]:
    """Create the demo sign-ins that are missing; returns the usernames added."""
    existing = set(session.scalars(select(User.username)))
    added = []
    for username, display, role, org in DEMO_USERS:
        if username in existing:
            continue
        add_user(
            session,
            actor=SETUP,
            username=username,
            display_name=display,
            role=role,
            organisation=org,
            email=f"{username}@demo.invalid",
            password_hash=_demo_hash(),
            now=now,
        )
        added.append(username)
    return added


@dataclass
class _Ids:
    """Next free primary key per table, so related rows can be written in one batch."""

    next: dict[str, int] = field(default_factory=dict)

    def take(self, table: str) -> int:
        value = self.next[table]
        self.next[table] = value + 1
        return value


@dataclass
class _Batch:
    rows: dict[str, list[dict[str, Any]]] = field(
        default_factory=lambda: {
            t: []
            for t in (
                "newcomers",
                "cases",
                "steps",
                "handoffs",
                "consents",
                "audit_events",
                "outbox",
            )
        }
    )


def _at(day: date, rng: random.Random) -> datetime:
    return datetime.combine(day, time(rng.randint(7, 16), rng.randint(0, 59)), tzinfo=UTC)


def _tri(rng: random.Random, spec: tuple[float, float, float]) -> int:
    low, mode, high = spec
    return max(0, round(rng.triangular(low, high, mode)))


def _topological(pathway: Pathway) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(sid: str) -> None:
        if sid in seen:
            return
        seen.add(sid)
        for need in pathway.step(sid).needs:
            visit(need)
        order.append(sid)

    for s in pathway.steps:
        visit(s.id)
    return order


class DemoGenerator:
    def __init__(
        self,
        *,
        registry: PathwayRegistry,
        orgs: dict[str, tuple[int, bool]],
        users: dict[str, int],
        ids: _Ids,
        seed: int,
        as_of: date,
        existing_refs: set[str],
    ) -> None:
        self.registry = registry
        self.orgs = orgs  # key -> (id, receives_handoffs)
        self.users = users
        self.ids = ids
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.refs = existing_refs
        self.fakers: dict[str, Faker] = {}
        for loc, _, _ in NON_EU + EU:
            fk = Faker(loc)
            fk.seed_instance(seed)
            self.fakers[loc] = fk
        self.pathways = {p.profile.value: p for p in registry.latest()}
        self.orders = {k: _topological(p) for k, p in self.pathways.items()}

    # -- people ---------------------------------------------------------------------------

    def _reference(self) -> str:
        while True:
            body = "".join(self.rng.choice(REFERENCE_ALPHABET) for _ in range(8))
            ref = f"WO-{body[:4]}-{body[4:]}"
            if ref not in self.refs:
                self.refs.add(ref)
                return ref

    def _pick(self, pool: list[tuple[str, str, int]]) -> tuple[str, str]:
        loc, country, _ = self.rng.choices(pool, weights=[w for *_, w in pool])[0]
        return loc, country

    def person(self, batch: _Batch, *, fit_cohort: bool) -> None:
        rng = self.rng
        if fit_cohort:
            profile = "student"
        else:
            profile = rng.choices(["skilled_worker", "student", "eu_citizen"], [45, 40, 15])[0]
        loc, country = self._pick(EU if profile == "eu_citizen" else NON_EU)
        fk = self.fakers[loc]
        given, family = fk.first_name(), fk.last_name()
        age = rng.randint(19, 27) if profile == "student" else rng.randint(24, 52)
        start = date(2024, 1, 2)
        span = (self.as_of - start).days - 2
        if fit_cohort:
            first_contact = date(2023, 9, 1) + timedelta(days=rng.randint(0, 270))
        else:
            first_contact = start + timedelta(days=int(span * rng.random() ** 0.8))
        birth = first_contact - timedelta(days=age * 365 + rng.randint(0, 364))
        lang = LANG_BY_LOCALE.get(loc) or ("en" if rng.random() < 0.7 else "de")
        accelerated = profile == "skilled_worker" and rng.random() < 0.35
        purpose = Purpose.study if profile == "student" else Purpose.work
        # FIT@THGA is for THGA students: the 2024 cohort, and part of the later intake.
        at_thga = fit_cohort or (first_contact.year >= 2025 and rng.random() < 0.45)
        arrival = None
        if profile != "skilled_worker":
            arrival = first_contact - timedelta(days=rng.randint(0, 20))

        newcomer_id = self.ids.take("newcomers")
        case_id = self.ids.take("cases")
        manager = rng.choice(CASE_MANAGERS)
        manager_id = self.users[manager]
        opened_at = _at(first_contact, rng)
        pathway = self.pathways[profile]
        reference = self._reference()

        audit = batch.rows["audit_events"]
        outbox = batch.rows["outbox"]

        def event(
            when: datetime,
            actor: str,
            action: str,
            etype: str,
            eid: int | None,
            reason: str | None = None,
            **details: Any,
        ) -> None:
            audit.append(
                {
                    "id": self.ids.take("audit_events"),
                    "occurred_at": when,
                    "actor_id": self.users.get(actor),
                    "actor": actor,
                    "action": action,
                    "case_id": case_id,
                    "entity_type": etype,
                    "entity_id": eid,
                    "reason": reason,
                    "details": details,
                }
            )

        def message(key: str, kind: str, when: datetime, **recipient: Any) -> None:
            outbox.append(
                {
                    "id": self.ids.take("outbox"),
                    "idempotency_key": key,
                    "kind": kind,
                    "case_id": case_id,
                    "recipient_org_id": recipient.get("org"),
                    "recipient_user_id": recipient.get("user"),
                    "recipient_newcomer_id": recipient.get("newcomer"),
                    "language": lang,
                    "context": {"reference": reference},
                    "status": OutboxStatus.sent.value,
                    "attempts": 1,
                    "last_error": None,
                    "created_at": when,
                    "next_attempt_at": when,
                    "sent_at": when + timedelta(minutes=1),
                }
            )

        event(opened_at, manager, "newcomer.registered", "newcomer", newcomer_id, profile=profile)
        event(
            opened_at,
            manager,
            "case.opened",
            "case",
            case_id,
            pathway=pathway.key,
            version=pathway.version,
        )
        message(f"welcome:{case_id}", "welcome", opened_at, newcomer=newcomer_id)

        # Consent per receiving organisation, given at first contact; a few are missing.
        partner_orgs = sorted({s.owner for s in pathway.steps if self.orgs[s.owner][1]})
        hesitant = partner_orgs and not fit_cohort and rng.random() < 0.06
        missing = rng.choice(partner_orgs) if hesitant else None
        consented: set[str] = set()
        # Most people who hesitate consent a few weeks later; the rest never do.
        late_at = opened_at + timedelta(days=rng.randint(3, 30), hours=rng.randint(0, 5))
        late = missing is not None and late_at.date() <= self.as_of and rng.random() < 0.85
        for org in partner_orgs:
            if org == missing:
                continue
            cid = self.ids.take("consents")
            batch.rows["consents"].append(
                {
                    "id": cid,
                    "newcomer_id": newcomer_id,
                    "organisation_id": self.orgs[org][0],
                    "purpose": "case_sharing",
                    "method": rng.choice(["signed_form", "signed_form", "online_form", "email"]),
                    "notice_language": lang
                    if lang in ("de", "en", "ar", "uk", "tr", "fa")
                    else "en",
                    "given_at": opened_at,
                    "recorded_by_id": manager_id,
                    "revoked_at": None,
                    "revoked_by_id": None,
                    "version": 1,
                }
            )
            consented.add(org)
            event(opened_at, manager, "consent.given", "consent", cid, organisation=org)

        done_at: dict[str, datetime] = {}
        finished: set[str] = set()
        facts: dict[str, Any] = {"arrival": arrival, "permit_expiry": None, "move_in": None}
        permit_expiry: date | None = None
        move_in: date | None = None
        step_rows = []
        all_finished = True
        for position, sid in enumerate(self.orders[profile]):
            ps = pathway.step(sid)
            org_key = ps.owner
            org_id, receives = self.orgs[org_key]
            step_id = self.ids.take("steps")
            clock = ps.legal_clock
            legal_days = None
            if clock:
                legal_days = (
                    clock.days_accelerated
                    if (accelerated and clock.days_accelerated)
                    else clock.days
                )
            row: dict[str, Any] = {
                "id": step_id,
                "case_id": case_id,
                "key": sid,
                "position": position,
                "needs": list(ps.needs),
                "owner_org_id": org_id,
                "state": StepState.pending.value,
                "opened_at": None,
                "started_at": None,
                "done_at": None,
                "service_days": ps.service_days,
                "legal_basis": clock.basis if clock else None,
                "legal_days": legal_days,
                "legal_reference": clock.reference if clock else None,
                "service_due": None,
                "legal_due": None,
                "due_date": None,
                "blocked_reason": None,
                "skip_reason": None,
                "outcome": None,
                "version": 1,
            }
            step_rows.append(row)
            if not all(n in finished for n in ps.needs):
                all_finished = False
                continue
            opened = max([opened_at, *(done_at[n] for n in ps.needs)])
            if opened.date() > self.as_of:
                all_finished = False
                continue
            row["state"] = StepState.open.value
            row["opened_at"] = opened
            event(opened, manager, "step.opened", "step", step_id, step=sid, owner=org_key)
            if sid == "fit_enrollment" and not at_thga:
                row.update(state=StepState.skipped.value, skip_reason=NOT_AT_THGA, done_at=opened)
                event(
                    opened, manager, "step.skipped", "step", step_id, reason=NOT_AT_THGA, step=sid
                )
                finished.add(sid)
                done_at[sid] = opened
                continue
            actor = manager
            started = opened + timedelta(hours=rng.randint(1, 30))
            handoff: dict[str, Any] | None = None
            if receives:
                actor = PARTNER_BY_ORG.get(org_key, manager)
                handoff = {
                    "id": self.ids.take("handoffs"),
                    "case_id": case_id,
                    "step_id": step_id,
                    "organisation_id": org_id,
                    "state": HandoffState.offered.value,
                    "hold_reason": None,
                    "reason": None,
                    "created_at": opened,
                    "offered_at": opened,
                    "accepted_at": None,
                    "closed_at": None,
                    "created_by_id": self.users[manager],
                    "accepted_by_id": None,
                    "version": 1,
                }
                if org_key not in consented:
                    event(
                        opened,
                        manager,
                        "handoff.held",
                        "handoff",
                        handoff["id"],
                        reason="consent_missing",
                        step=sid,
                        organisation=org_key,
                    )
                    if not late:
                        handoff.update(
                            state=HandoffState.held.value,
                            hold_reason="consent_missing",
                            offered_at=None,
                        )
                        batch.rows["handoffs"].append(handoff)
                        self._dues(row, facts, accelerated)
                        all_finished = False
                        continue
                    # Consent came later: record it and release the handoff then.
                    consent_at = max(late_at, opened)
                    cid = self.ids.take("consents")
                    batch.rows["consents"].append(
                        {
                            "id": cid,
                            "newcomer_id": newcomer_id,
                            "organisation_id": org_id,
                            "purpose": "case_sharing",
                            "method": "signed_form",
                            "notice_language": "de" if lang == "de" else "en",
                            "given_at": consent_at,
                            "recorded_by_id": manager_id,
                            "revoked_at": None,
                            "revoked_by_id": None,
                            "version": 1,
                        }
                    )
                    consented.add(org_key)
                    event(
                        consent_at, manager, "consent.given", "consent", cid, organisation=org_key
                    )
                    event(
                        consent_at,
                        manager,
                        "handoff.released",
                        "handoff",
                        handoff["id"],
                        step=sid,
                        organisation=org_key,
                    )
                    handoff["offered_at"] = consent_at
                    opened = consent_at
                else:
                    event(
                        opened,
                        manager,
                        "handoff.offered",
                        "handoff",
                        handoff["id"],
                        step=sid,
                        organisation=org_key,
                    )
                message(f"handoff_offered:{handoff['id']}", "handoff_offered", opened, org=org_id)
                if rng.random() < 0.03:
                    # Declined once, then handed to the same partner again two days later.
                    declined_at = opened + timedelta(days=1)
                    reason = rng.choice(DECLINE_REASONS)
                    handoff.update(
                        state=HandoffState.declined.value, reason=reason, closed_at=declined_at
                    )
                    if declined_at.date() <= self.as_of:
                        event(
                            declined_at,
                            actor,
                            "handoff.declined",
                            "handoff",
                            handoff["id"],
                            reason=reason,
                            step=sid,
                            organisation=org_key,
                        )
                        batch.rows["handoffs"].append(handoff)
                        opened = declined_at + timedelta(days=1)
                        handoff = dict(
                            handoff,
                            id=self.ids.take("handoffs"),
                            state=HandoffState.offered.value,
                            reason=None,
                            closed_at=None,
                            created_at=opened,
                            offered_at=opened,
                        )
                        started = opened + timedelta(hours=rng.randint(1, 30))
                        if opened.date() <= self.as_of:
                            event(
                                opened,
                                manager,
                                "handoff.offered",
                                "handoff",
                                handoff["id"],
                                step=sid,
                                organisation=org_key,
                            )
                    else:
                        handoff.update(
                            state=HandoffState.offered.value, reason=None, closed_at=None
                        )
                started = opened + timedelta(
                    days=rng.choice([0, 0, 1, 1, 2, 3, 5, 8]), hours=rng.randint(1, 8)
                )
            # Facts that the clocks count from.
            if sid == "registration" and move_in is None:
                move_in = (done_at.get("housing") or opened).date()
            if started.date() > self.as_of:
                if handoff:
                    batch.rows["handoffs"].append(handoff)
                self._dues(row, facts, accelerated)
                all_finished = False
                continue
            row["state"] = StepState.in_progress.value
            row["started_at"] = started
            if handoff:
                handoff.update(
                    state=HandoffState.accepted.value,
                    accepted_at=started,
                    accepted_by_id=self.users.get(actor),
                )
                event(
                    started,
                    actor,
                    "handoff.accepted",
                    "handoff",
                    handoff["id"],
                    step=sid,
                    organisation=org_key,
                )
            else:
                event(started, actor, "step.started", "step", step_id, step=sid)
            # How long the step takes, and whether it is waived.
            skip = sid in SKIP_REASONS and rng.random() < (
                0.35 if sid == "integration_course" else 0.1
            )
            spec = (
                STUDENT_JOB_ENTRY
                if (sid == "job_entry" and profile == "student")
                else DURATIONS[sid]
            )
            duration = _tri(rng, spec)
            if sid == "registration" and move_in is not None:
                base = max(started, _at(move_in, rng))
                finish = base + timedelta(days=duration)
            else:
                finish = started + timedelta(days=duration, hours=rng.randint(0, 6))
            if fit_cohort and sid == "fit_enrollment":
                # The 2024 cohort: enrolled during 2024 (108 participants in the real programme).
                finish = max(started, datetime(2024, 1, 15, 10, tzinfo=UTC))
                finish += timedelta(days=rng.randint(0, 20))
            self._dues(row, {**facts, "started": started}, accelerated)
            if finish.date() > self.as_of:
                if rng.random() < 0.08:
                    reason = rng.choice(BLOCK_REASONS)
                    row["state"] = StepState.blocked.value
                    row["blocked_reason"] = reason
                    blocked_at = min(started + timedelta(days=3), _at(self.as_of, rng))
                    event(
                        blocked_at, actor, "step.blocked", "step", step_id, reason=reason, step=sid
                    )
                if handoff:
                    batch.rows["handoffs"].append(handoff)
                all_finished = False
                continue
            finished.add(sid)
            done_at[sid] = finish
            row["done_at"] = finish
            if skip:
                reason = SKIP_REASONS[sid]
                row["state"] = StepState.skipped.value
                row["skip_reason"] = reason
                event(finish, manager, "step.skipped", "step", step_id, reason=reason, step=sid)
                if handoff:
                    handoff.update(
                        state=HandoffState.withdrawn.value, reason="step_skipped", closed_at=finish
                    )
            else:
                row["state"] = StepState.done.value
                row["outcome"] = self._outcome(sid)
                event(
                    finish,
                    actor,
                    "step.completed",
                    "step",
                    step_id,
                    step=sid,
                    outcome=row["outcome"],
                    done_on=finish.date().isoformat(),
                )
                if handoff:
                    handoff.update(state=HandoffState.completed.value, closed_at=finish)
            if handoff:
                batch.rows["handoffs"].append(handoff)
            facts[f"done:{sid}"] = finish
            if sid == "housing":
                move_in = finish.date()
                facts["move_in"] = move_in
            if sid == "visa":
                arrival = (finish + timedelta(days=rng.randint(5, 25))).date()
                facts["arrival"] = arrival
                permit_expiry = finish.date() + timedelta(days=180)
            if sid == "housing" and profile == "student" and permit_expiry is None:
                permit_expiry = (arrival or first_contact) + timedelta(days=90)
            facts["permit_expiry"] = permit_expiry

        # Clocks that count from facts learned later (move-in, permit expiry) are set now.
        for row in step_rows:
            if row["state"] in ("open", "in_progress", "blocked"):
                self._dues(row, {**facts, "started": row["started_at"]}, accelerated)
        batch.rows["steps"].extend(step_rows)

        closed_at = max(done_at.values()) if all_finished and done_at else None
        if closed_at:
            event(closed_at, manager, "case.closed", "case", case_id)
            message(f"case_closed:{case_id}", "case_closed", closed_at, user=manager_id)
        batch.rows["cases"].append(
            {
                "id": case_id,
                "reference": reference,
                "newcomer_id": newcomer_id,
                "pathway_key": pathway.key,
                "pathway_version": pathway.version,
                "case_manager_id": manager_id,
                "status": (CaseStatus.closed if closed_at else CaseStatus.open).value,
                "opened_at": opened_at,
                "closed_at": closed_at,
                "next_due": clocks.earliest(
                    *(
                        r["due_date"]
                        for r in step_rows
                        if r["state"] in ("open", "in_progress", "blocked")
                    )
                ),
                "version": 1,
            }
        )
        email_name = (
            "".join(ch for ch in fk.user_name() if ch.isascii() and ch.isalnum()) or "person"
        )
        batch.rows["newcomers"].append(
            {
                "id": newcomer_id,
                "given_name": given,
                "family_name": family,
                "birth_date": birth,
                "nationality": country,
                "eu_citizen": profile == "eu_citizen",
                "purpose": purpose.value,
                "accelerated_procedure": accelerated,
                "email": f"{email_name}{newcomer_id}@example.org",
                "phone": None,
                "preferred_language": lang,
                "first_contact_date": first_contact,
                "arrival_date": arrival,
                "move_in_date": move_in,
                "permit_expiry": permit_expiry,
                "match_key": match_key(family, given, birth),
                "created_at": opened_at,
                "version": 1,
            }
        )

    def _outcome(self, sid: str) -> str | None:
        r = self.rng.random()
        if sid == "recognition":
            return "full" if r < 0.68 else ("partial" if r < 0.92 else "none")
        if sid == "job_offer":
            return "approved" if r < 0.95 else "refused"
        if sid == "visa":
            return "granted"
        if sid == "residence_title":
            return "issued"
        if sid == "job_entry":
            return "probation_passed" if r < 0.85 else "started"
        return None

    def _dues(self, row: dict[str, Any], facts: dict[str, Any], accelerated: bool) -> None:
        own = {
            **facts,
            "opened": row["opened_at"],
            "started": facts.get("started", row["started_at"]),
        }
        service = clocks.service_due(opened=row["opened_at"], days=row["service_days"])
        legal = clocks.legal_due(basis=row["legal_basis"], days=row["legal_days"], facts=own)
        row["service_due"], row["legal_due"] = service, legal
        row["due_date"] = clocks.earliest(service, legal)


TABLES: list[tuple[str, Table]] = [
    (name, cast(Table, model.__table__))
    for name, model in [
        ("newcomers", Newcomer),
        ("cases", Case),
        ("steps", Step),
        ("handoffs", Handoff),
        ("consents", Consent),
        ("audit_events", AuditEvent),
        ("outbox", OutboxMessage),
    ]
]


def load_demo(
    db: Database,
    *,
    people: int,
    seed: int = 2025,
    as_of: date | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    registry: PathwayRegistry | None = None,
) -> dict[str, int]:
    """Load ``people`` newcomers with full histories; returns row counts written per table."""
    registry = registry or get_registry()
    as_of = as_of or utcnow().date()
    now = datetime.combine(as_of, time(6, 0), tzinfo=UTC)
    with db.transaction() as session:
        seed_organisations(session, registry=registry, now=now)
        ensure_demo_users(session, now=now)
    with db.read() as session:
        orgs = {
            o.key: (o.id, o.receives_handoffs and o.active)
            for o in session.scalars(select(Organisation))
        }
        users = {u.username: u.id for u in session.scalars(select(User))}
        ids = _Ids(
            {
                name: (session.scalar(select(func.max(table.c.id))) or 0) + 1
                for name, table in TABLES
            }
        )
        refs = set(session.scalars(select(Case.reference)))
    gen = DemoGenerator(
        registry=registry,
        orgs=orgs,
        users=users,
        ids=ids,
        seed=seed,
        as_of=as_of,
        existing_refs=refs,
    )
    fit_cohort = 108 if people >= 360 else round(people * 0.3)
    counts = {name: 0 for name, _ in TABLES}
    done = 0
    while done < people:
        batch = _Batch()
        size = min(batch_size, people - done)
        for i in range(size):
            gen.person(batch, fit_cohort=(done + i) < fit_cohort)
        with db.transaction() as session:
            for name, table in TABLES:
                rows = batch.rows[name]
                if rows:
                    session.execute(insert(table), rows)
                    counts[name] += len(rows)
        done += size
        if progress:
            progress(size)
    if not db.is_sqlite:
        with db.transaction() as session:
            for name, _ in TABLES:
                session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"COALESCE((SELECT MAX(id) FROM {name}), 1))"
                    )
                )
    with db.transaction() as session:
        from tracker import audit

        audit.record(
            session,
            actor=Actor(username="system:demo", role=Role.admin),
            action="demo.loaded",
            entity_type="system",
            entity_id=None,
            now=utcnow(),
            details={"people": people, "seed": seed, "as_of": as_of.isoformat()},
        )
    return counts
