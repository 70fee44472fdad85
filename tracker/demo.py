"""Realistic demo data: Bochum's partners, users for every role, and newcomers at every stage.

Each person's whole journey is drawn first, from random streams of their own
(``"<seed>:<index>"``, index counting the newcomers already in the database) and without
looking at the cut-off day (only a first contact that would lie after it is drawn again), with
the same pathway graph, clock rules and state changes the services use. The journey is then cut
at the end of ``as_of``: what has not happened by then is pending, open or in progress. Loading
the same seed on a later day therefore gives the same people with the same past, further along.

Rows are written in bulk (one statement per table and batch) because a demo load of 100,000
people through the ORM would take many minutes, so this module itself keeps the rules the
services enforce (consistent facts, consent before sharing, outbox messages, clocks).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, TypeGuard, cast

from faker import Faker
from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.db import Database
from tracker.enums import CaseStatus, HandoffState, OutboxStatus, Purpose, Role, StepState
from tracker.errors import ValidationFailed
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
from tracker.pathway import Pathway, PathwayRegistry, PathwayStep, get_registry
from tracker.schemas import LANGUAGES, match_key
from tracker.services._base import REFERENCE_ALPHABET, utcnow
from tracker.services.admin import SETUP, add_user, seed_organisations
from tracker.services.cases import HOLD_CONSENT_MISSING

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
PROFILES = ["skilled_worker", "student", "eu_citizen"]
PROFILE_WEIGHTS = [45, 40, 15]

# The demo period. First contacts are drawn from a fixed window and only kept when they lie on
# or before ``as_of`` (drawn again otherwise), so the day of the cut never moves anyone's past.
DEMO_START = date(2024, 1, 2)
CONTACT_WINDOW_END = date(2028, 12, 31)
# Organisations and demo users exist from before the first demo case (same rows on any day).
SETUP_TIME = datetime(2024, 1, 1, 8, 0, tzinfo=UTC)
# Birth dates count back from a fixed day, not from the first contact.
AGE_REFERENCE = date(2025, 7, 1)

# FIT@THGA supported 108 international THGA students in 2024 (shared/domain.md).
FIT_COHORT_YEAR = 2024
FIT_COHORT_SIZE = 108
FIT_COHORT_CONTACT = (date(2024, 1, 2), date(2024, 6, 28))

# Typical durations in days (low, mode, high) from shared/domain.md.
DURATIONS: dict[str, tuple[float, float, float]] = {
    "recognition": (40, 80, 140),
    "job_offer": (3, 9, 30),
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
STUDENT_JOB_ENTRY: tuple[float, float, float] = (300, 620, 1000)  # after graduation
# Days from the offer until the partner accepts a handoff (and work starts).
ACCEPT_LAG_DAYS = (0, 0, 1, 1, 2, 3, 5, 8)
# Anmeldung within 14 days of moving in (§17 BMG); a booked appointment counts, so most make it.
REGISTRATION_ON_TIME = 0.88
# A skilled worker arrives this many days after the visa is granted.
ARRIVAL_AFTER_VISA = (5, 25)
# The entry visa is valid about six months: from arrival (students) or the decision (workers).
VISA_VALID_DAYS = (178, 186)

DOCUMENTS_INCOMPLETE = "Unterlagen unvollständig / documents incomplete"
NO_APPOINTMENT = "Termin erst in einigen Wochen frei / no appointment slot yet"
BLOCK_REASONS: dict[str, list[str]] = {
    "recognition": [
        DOCUMENTS_INCOMPLETE,
        "Übersetzung des Zeugnisses fehlt / certificate translation missing",
    ],
    "job_offer": ["Arbeitgeberangaben unvollständig / employer data incomplete"],
    "visa": [NO_APPOINTMENT, DOCUMENTS_INCOMPLETE],
    "registration": [NO_APPOINTMENT],
    "residence_title": [NO_APPOINTMENT, DOCUMENTS_INCOMPLETE],
}
BLOCK_RATE = {"recognition": 0.15, "visa": 0.08, "registration": 0.03, "job_entry": 0.0}
DEFAULT_BLOCK_RATE = 0.05
RESUME_AFTER_DAYS = (7, 45)

SKIP_REASONS = {
    "integration_course": "Kein Anspruch: Hochschulabschluss / no entitlement (academic degree)",
    "recognition": "Abschluss in anabin als vergleichbar gelistet / degree listed as comparable",
}
SKIP_RATE = {"integration_course": 0.35, "recognition": 0.1}
NOT_AT_THGA = (
    "Studium an der RUB: FIT@THGA nicht zutreffend / studies at RUB, FIT@THGA does not apply"
)
CRAFTS_DECLINE = (
    "Nicht zuständig: Handwerksberuf, bitte an HWK / not ours: crafts occupation, please HWK"
)
CAPACITY_DECLINE = "Keine Kapazität in diesem Monat / no capacity this month"
DECLINE_REASONS = [CRAFTS_DECLINE, CAPACITY_DECLINE]
CRAFTS_ORG = "hwk-do"
# Recognition files sent to the IHK are now and then crafts occupations (the HWK's task).
DECLINE_RATE = {"recognition": 0.08}
DEFAULT_DECLINE_RATE = 0.02


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


_PENDING, _OPEN, _IN_PROGRESS, _BLOCKED, _DONE, _SKIPPED = (
    StepState.pending.value,
    StepState.open.value,
    StepState.in_progress.value,
    StepState.blocked.value,
    StepState.done.value,
    StepState.skipped.value,
)
_ACTIVE = frozenset({_OPEN, _IN_PROGRESS, _BLOCKED})


# -- a person's whole journey, drawn without looking at the cut-off day ------------------------


@dataclass
class _Offer:
    """One handoff of a step to an organisation, from creation to its end."""

    org: str
    created_at: datetime
    held: bool = False  # created while consent for the organisation was missing
    offered_at: datetime | None = None  # None: held, and consent never came
    declined_at: datetime | None = None
    reason: str | None = None
    accepted_at: datetime | None = None
    actor: str = ""  # the partner agent who answers it


@dataclass
class _StepStory:
    spec: PathwayStep
    position: int
    opened: datetime | None = None  # None: never opens (a prerequisite never finishes)
    offers: list[_Offer] = field(default_factory=list)
    started: datetime | None = None
    blocked: datetime | None = None
    block_reason: str | None = None
    resumed: datetime | None = None
    finished: datetime | None = None  # done, or skipped when skip_reason is set
    skip_reason: str | None = None
    outcome: str | None = None
    actor: str = ""  # who works the step: the accepting partner or the case manager

    @property
    def key(self) -> str:
        return self.spec.id

    @property
    def done(self) -> bool:
        return self.finished is not None and self.skip_reason is None


@dataclass
class _Story:
    profile: str
    country: str
    given: str
    family: str
    email_name: str
    birth: date
    lang: str
    accelerated: bool
    manager: str
    first_contact: date
    opened_at: datetime
    at_thga: bool
    # Facts, each with the moment it became known (the cut shows only what is known by then).
    arrival: date | None = None
    arrival_known: datetime | None = None
    permit_expiry: date | None = None
    permit_known: datetime | None = None
    # Consent per organisation: (given at, method); absent = never given.
    consents: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    steps: list[_StepStory] = field(default_factory=list)
    reference: str = ""

    def step(self, key: str) -> _StepStory | None:
        return next((s for s in self.steps if s.key == key), None)

    @property
    def move_in(self) -> date | None:
        housing = self.step("housing")
        return housing.finished.date() if housing and housing.done and housing.finished else None

    def fit_done_in(self, year: int) -> bool:
        fit = self.step("fit_enrollment")
        return bool(fit and fit.done and fit.finished and fit.finished.year == year)


def _check_day(as_of: date) -> None:
    if as_of < DEMO_START:
        raise ValidationFailed(
            f"Demo data starts on {DEMO_START.isoformat()}; choose that day or a later one."
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
        _check_day(as_of)
        self.registry = registry
        self.orgs = orgs  # key -> (id, receives_handoffs)
        self.users = users
        self.ids = ids
        self.seed = seed
        self.as_of = as_of
        self.refs = existing_refs
        self.fakers = {loc: Faker(loc) for loc, _, _ in NON_EU + EU}
        self.pathways = {p.profile.value: p for p in registry.latest()}
        self.orders = {k: _topological(p) for k, p in self.pathways.items()}

    @property
    def has_fit(self) -> bool:
        student = self.pathways.get("student")
        return student is not None and "fit_enrollment" in student.step_ids

    def person(self, batch: _Batch, *, index: int, fit_cohort: bool) -> None:
        """Draw person number ``index`` and write their journey as it stands at ``as_of``."""
        story = self.simulate(index, fit_cohort=fit_cohort)
        story.reference = self._reference(random.Random(f"{self.seed}:{index}:reference"))
        _Cut(self, batch, story).write()

    def simulate(self, index: int, *, fit_cohort: bool) -> _Story:
        """The person's whole journey, drawn from the seed and the index alone.

        Only the first contact looks at ``as_of`` (it must not lie after it); everything else
        is drawn relative to it, so a later cut-off shows the same journey further along.
        """
        for attempt in range(100):
            salt = f"{self.seed}:{index}" + (f":{attempt}" if attempt else "")
            rng = random.Random(salt)
            story = self._draw_person(rng, random.Random(f"{salt}:contact"), fit_cohort)
            self._play(story, rng)
            # The 2024 FIT cohort must enrol in 2024; a journey that runs late is drawn again.
            if not fit_cohort or story.fit_done_in(FIT_COHORT_YEAR):
                return story
        raise RuntimeError(f"could not draw a FIT {FIT_COHORT_YEAR} participant")

    def _reference(self, rng: random.Random) -> str:
        while True:
            body = "".join(rng.choice(REFERENCE_ALPHABET) for _ in range(8))
            ref = f"WO-{body[:4]}-{body[4:]}"
            if ref not in self.refs:
                self.refs.add(ref)
                return ref

    def _first_contact(self, rng: random.Random, first: date, last: date) -> date:
        # Draws from a fixed window until a day on or before as_of comes up. A cut-off one day
        # later changes only a first contact whose first usable draw is that very day.
        days = (last - first).days + 1
        limit = (self.as_of - first).days
        while True:
            offset = int(rng.random() * days)
            if offset <= limit:
                return first + timedelta(days=offset)

    def _draw_person(
        self, rng: random.Random, contact_rng: random.Random, fit_cohort: bool
    ) -> _Story:
        profile = "student" if fit_cohort else rng.choices(PROFILES, PROFILE_WEIGHTS)[0]
        pool = EU if profile == "eu_citizen" else NON_EU
        loc, country, _ = rng.choices(pool, weights=[w for *_, w in pool])[0]
        fk = self.fakers[loc]
        fk.seed_instance(rng.getrandbits(64))
        given, family = fk.first_name(), fk.last_name()
        email_name = "".join(ch for ch in fk.user_name() if ch.isascii() and ch.isalnum())
        age = rng.randint(19, 27) if profile == "student" else rng.randint(24, 52)
        birth = AGE_REFERENCE - timedelta(days=age * 365 + rng.randint(0, 364))
        lang = LANG_BY_LOCALE.get(loc) or ("en" if rng.random() < 0.7 else "de")
        accelerated = profile == "skilled_worker" and rng.random() < 0.35
        manager = rng.choice(CASE_MANAGERS)
        thga_draw = rng.random()
        window = FIT_COHORT_CONTACT if fit_cohort else (DEMO_START, CONTACT_WINDOW_END)
        first_contact = self._first_contact(contact_rng, *window)
        story = _Story(
            profile=profile,
            country=country,
            given=given,
            family=family,
            email_name=email_name or "person",
            birth=birth,
            lang=lang,
            accelerated=accelerated,
            manager=manager,
            first_contact=first_contact,
            opened_at=_at(first_contact, rng),
            # FIT@THGA is for THGA students: the 2024 cohort, and part of the later intake.
            at_thga=fit_cohort or (first_contact.year > FIT_COHORT_YEAR and thga_draw < 0.45),
        )
        if profile != "skilled_worker":
            # Students and EU citizens come to the Welcome Office after arriving; a student's
            # entry visa is valid about six months from arrival.
            story.arrival = first_contact - timedelta(days=rng.randint(0, 20))
            story.arrival_known = story.opened_at
            if profile == "student":
                story.permit_expiry = story.arrival + timedelta(days=rng.randint(*VISA_VALID_DAYS))
                story.permit_known = story.opened_at
        self._draw_consents(story, rng, hesitant_allowed=not fit_cohort)
        return story

    def _draw_consents(self, story: _Story, rng: random.Random, *, hesitant_allowed: bool) -> None:
        """Consent per receiving organisation at first contact; a few hesitate, most agree later."""
        pathway = self.pathways[story.profile]
        partner_orgs = sorted({s.owner for s in pathway.steps if self.orgs[s.owner][1]})
        missing = None
        if partner_orgs and hesitant_allowed and rng.random() < 0.06:
            missing = rng.choice(partner_orgs)
        for org in partner_orgs:
            method = rng.choice(["signed_form", "signed_form", "online_form", "email"])
            if org != missing:
                story.consents[org] = (story.opened_at, method)
        if missing is not None and rng.random() < 0.85:
            later = timedelta(days=rng.randint(3, 30), hours=rng.randint(0, 5))
            story.consents[missing] = (story.opened_at + later, "signed_form")

    def _play(self, story: _Story, rng: random.Random) -> None:
        """Walk the pathway: each step opens once its prerequisites are finished."""
        pathway = self.pathways[story.profile]
        finished: dict[str, datetime] = {}
        for position, sid in enumerate(self.orders[story.profile]):
            st = _StepStory(spec=pathway.step(sid), position=position)
            story.steps.append(st)
            if not all(n in finished for n in st.spec.needs):
                continue
            st.opened = max([story.opened_at, *(finished[n] for n in st.spec.needs)])
            self._play_step(story, st, rng)
            if st.finished is None:
                continue
            finished[sid] = st.finished
            if sid == "visa" and st.done:
                self._visa_granted(story, st.finished, rng)

    def _play_step(self, story: _Story, st: _StepStory, rng: random.Random) -> None:
        assert st.opened is not None
        sid = st.key
        waived: tuple[str, datetime] | None = None
        if sid == "fit_enrollment" and not story.at_thga:
            waived = (NOT_AT_THGA, st.opened + timedelta(hours=rng.randint(1, 30)))
        elif sid in SKIP_REASONS and rng.random() < SKIP_RATE[sid]:
            later = timedelta(days=rng.randint(1, 10), hours=rng.randint(0, 6))
            waived = (SKIP_REASONS[sid], st.opened + later)
        st.actor = story.manager
        if self.orgs[st.spec.owner][1]:
            started = self._hand_on(story, st, rng, until=waived[1] if waived else None)
        else:
            started = st.opened + timedelta(hours=rng.randint(1, 30))
        if waived:
            st.skip_reason, st.finished = waived
            return
        if started is None:
            return  # held for a consent that never came
        st.started = started
        if rng.random() < BLOCK_RATE.get(sid, DEFAULT_BLOCK_RATE):
            # Blocked (documents missing ...), resumed once the file is complete: a clock that
            # counts from the start counts from the resumption, and the work takes its time then.
            st.blocked = started + timedelta(days=rng.randint(1, 5), hours=rng.randint(0, 6))
            st.block_reason = rng.choice(BLOCK_REASONS.get(sid, [DOCUMENTS_INCOMPLETE]))
            st.resumed = st.blocked + timedelta(
                days=rng.randint(*RESUME_AFTER_DAYS), hours=rng.randint(0, 6)
            )
        st.finished = self._finish(story, st, rng, st.resumed or started)
        st.outcome = self._outcome(rng, sid)

    def _offer(self, story: _Story, org: str, at: datetime) -> _Offer:
        """A handoff to ``org`` at ``at``: offered at once, or held until consent is given."""
        consent = story.consents.get(org)
        actor = PARTNER_BY_ORG.get(org, story.manager)
        if consent is not None and consent[0] <= at:
            return _Offer(org=org, created_at=at, offered_at=at, actor=actor)
        return _Offer(
            org=org,
            created_at=at,
            held=True,
            offered_at=consent[0] if consent else None,
            actor=actor,
        )

    def _hand_on(
        self, story: _Story, st: _StepStory, rng: random.Random, *, until: datetime | None
    ) -> datetime | None:
        """Hand the step to its owner; returns when the partner accepts it (work starts).

        ``until``: the step is waived then, so the handoff is only withdrawn. A declined
        handoff goes to the HWK when the partner says it is a crafts occupation, else back to
        the same partner, a day later.
        """
        assert st.opened is not None
        offer = self._offer(story, st.spec.owner, st.opened)
        st.offers.append(offer)
        if until is not None:
            if offer.offered_at is not None and offer.offered_at >= until:
                offer.offered_at = None
            return None
        if offer.offered_at is None:
            return None
        if rng.random() < DECLINE_RATE.get(st.key, DEFAULT_DECLINE_RATE):
            reasons = DECLINE_REASONS if st.key == "recognition" else [CAPACITY_DECLINE]
            offer.reason = rng.choice(reasons)
            offer.declined_at = offer.offered_at + timedelta(days=1, hours=rng.randint(0, 4))
            again = offer.declined_at + timedelta(days=1, hours=rng.randint(0, 4))
            org = offer.org
            if offer.reason == CRAFTS_DECLINE and self.orgs.get(CRAFTS_ORG, (0, False))[1]:
                org = CRAFTS_ORG
                if org not in story.consents:
                    # The case manager asks for consent to share with the HWK first.
                    story.consents[org] = (again - timedelta(minutes=5), "signed_form")
            offer = self._offer(story, org, again)
            st.offers.append(offer)
        if offer.offered_at is None:
            return None
        lag = timedelta(days=rng.choice(ACCEPT_LAG_DAYS), hours=rng.randint(1, 8))
        offer.accepted_at = offer.offered_at + lag
        st.actor = offer.actor
        return offer.accepted_at

    def _finish(
        self, story: _Story, st: _StepStory, rng: random.Random, work_from: datetime
    ) -> datetime:
        """When the step is done, given when work (last) started."""
        sid = st.key
        if sid == "registration" and story.move_in is not None:
            # Counted from moving in; most get an appointment inside the 14 days.
            if rng.random() < REGISTRATION_ON_TIME:
                days = rng.randint(1, 14)
            else:
                days = rng.randint(15, 45)
            appointment = _at(story.move_in + timedelta(days=days), rng)
            return max(work_from + timedelta(hours=rng.randint(1, 4)), appointment)
        if sid == "job_entry" and story.profile == "student":
            spec = STUDENT_JOB_ENTRY
        else:
            spec = DURATIONS.get(sid, (5, 20, 60))
        finish = work_from + timedelta(days=_tri(rng, spec), hours=rng.randint(0, 6))
        if sid == "housing" and story.arrival and st.opened and story.arrival > st.opened.date():
            # Found from abroad: the newcomer moves in after arriving, never before.
            moving = _at(story.arrival + timedelta(days=rng.randint(0, 7)), rng)
            finish = max(finish, moving)
        return finish

    def _visa_granted(self, story: _Story, granted: datetime, rng: random.Random) -> None:
        decided = granted.date()
        story.arrival = decided + timedelta(days=rng.randint(*ARRIVAL_AFTER_VISA))
        # The case manager records the arrival on the day; the visa's validity on the decision.
        story.arrival_known = datetime.combine(story.arrival, time(0), tzinfo=UTC)
        story.permit_expiry = decided + timedelta(days=rng.randint(*VISA_VALID_DAYS))
        story.permit_known = granted

    @staticmethod
    def _outcome(rng: random.Random, sid: str) -> str | None:
        r = rng.random()
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


# -- the journey as it stands at the end of as_of ----------------------------------------------


class _Cut:
    """Writes one story's rows as the services would have left them at the end of ``as_of``."""

    def __init__(self, gen: DemoGenerator, batch: _Batch, story: _Story) -> None:
        self.gen = gen
        self.rows = batch.rows
        self.story = story
        self.end = datetime.combine(gen.as_of + timedelta(days=1), time(0), tzinfo=UTC)
        self.newcomer_id = gen.ids.take("newcomers")
        self.case_id = gen.ids.take("cases")
        self.manager = story.manager
        self.manager_id = gen.users[story.manager]

    def happened(self, moment: datetime | None) -> TypeGuard[datetime]:
        return moment is not None and moment < self.end

    def write(self) -> None:
        s = self.story
        pathway = self.gen.pathways[s.profile]
        opened = s.opened_at
        self.event(
            opened,
            self.manager,
            "newcomer.registered",
            "newcomer",
            self.newcomer_id,
            profile=s.profile,
        )
        self.event(
            opened,
            self.manager,
            "case.opened",
            "case",
            self.case_id,
            pathway=pathway.key,
            version=pathway.version,
        )
        self.message(
            f"welcome:{self.case_id}", "welcome", opened, language=s.lang, newcomer=self.newcomer_id
        )
        self.write_consents()
        steps = [self.write_step(st) for st in s.steps]
        self.rows["steps"].extend(steps)
        finished = [st.finished for st in s.steps if self.happened(st.finished)]
        closed_at = max(finished) if finished and len(finished) == len(s.steps) else None
        if closed_at:
            self.event(closed_at, self.manager, "case.closed", "case", self.case_id)
            self.message(
                f"case_closed:{self.case_id}", "case_closed", closed_at, user=self.manager_id
            )
        self.rows["cases"].append(
            {
                "id": self.case_id,
                "reference": s.reference,
                "newcomer_id": self.newcomer_id,
                "pathway_key": pathway.key,
                "pathway_version": pathway.version,
                "case_manager_id": self.manager_id,
                "status": (CaseStatus.closed if closed_at else CaseStatus.open).value,
                "opened_at": opened,
                "closed_at": closed_at,
                "next_due": clocks.earliest(
                    *(r["due_date"] for r in steps if r["state"] in _ACTIVE)
                ),
                # Demo cases are fully advanced: no advance is waiting.
                "advance_requested_at": None,
                "version": 1,
            }
        )
        self.write_newcomer()

    def write_newcomer(self) -> None:
        s = self.story
        facts = self.facts(self.end)
        self.rows["newcomers"].append(
            {
                "id": self.newcomer_id,
                "given_name": s.given,
                "family_name": s.family,
                "birth_date": s.birth,
                "nationality": s.country,
                "eu_citizen": s.profile == "eu_citizen",
                "purpose": (Purpose.study if s.profile == "student" else Purpose.work).value,
                "accelerated_procedure": s.accelerated,
                "email": f"{s.email_name}{self.newcomer_id}@example.org",
                "phone": None,
                "preferred_language": s.lang,
                "first_contact_date": s.first_contact,
                "arrival_date": facts["arrival"],
                "move_in_date": facts["move_in"],
                "permit_expiry": facts["permit_expiry"],
                "match_key": match_key(s.family, s.given, s.birth),
                "created_at": s.opened_at,
                "version": 1,
            }
        )

    def write_consents(self) -> None:
        s = self.story
        notice = s.lang if s.lang in LANGUAGES else "en"
        for org, (given_at, method) in sorted(s.consents.items(), key=lambda kv: kv[1][0]):
            if not self.happened(given_at):
                continue
            cid = self.gen.ids.take("consents")
            self.rows["consents"].append(
                {
                    "id": cid,
                    "newcomer_id": self.newcomer_id,
                    "organisation_id": self.gen.orgs[org][0],
                    "purpose": "case_sharing",
                    "method": method,
                    "notice_language": notice,
                    "given_at": given_at,
                    "recorded_by_id": self.manager_id,
                    "revoked_at": None,
                    "revoked_by_id": None,
                    "version": 1,
                }
            )
            self.event(
                given_at,
                self.manager,
                "consent.given",
                "consent",
                cid,
                organisation=org,
                method=method,
                notice_language=notice,
            )

    def write_step(self, st: _StepStory) -> dict[str, Any]:
        step_id = self.gen.ids.take("steps")
        clock = st.spec.legal_clock
        legal_days, legal_months = (
            clock.length(accelerated=self.story.accelerated) if clock else (None, None)
        )
        row: dict[str, Any] = {
            "id": step_id,
            "case_id": self.case_id,
            "key": st.key,
            "position": st.position,
            "needs": list(st.spec.needs),
            "owner_org_id": self.gen.orgs[st.spec.owner][0],
            "state": _PENDING,
            "opened_at": None,
            "started_at": None,
            "done_at": None,
            "service_days": st.spec.service_days,
            "legal_basis": clock.basis if clock else None,
            "legal_days": legal_days,
            "legal_months": legal_months,
            "clock_started_at": None,
            "legal_reference": clock.reference if clock else None,
            "service_due": None,
            "legal_due": None,
            "due_date": None,
            "blocked_reason": None,
            "skip_reason": None,
            "outcome": None,
            "version": 1,
        }
        if not self.happened(st.opened):
            return row
        row.update(state=_OPEN, opened_at=st.opened)
        self.step_event(st.opened, self.manager, "step.opened", step_id, st, owner=st.spec.owner)
        handoff_id = self.write_handoffs(st, step_id, row)
        if self.happened(st.started):
            # Accepting a handoff or starting the step starts the work and the clock.
            row.update(state=_IN_PROGRESS, started_at=st.started, clock_started_at=st.started)
            if not st.offers:
                self.step_event(st.started, st.actor, "step.started", step_id, st)
        if self.happened(st.blocked):
            row.update(state=_BLOCKED, blocked_reason=st.block_reason)
            self.step_event(st.blocked, st.actor, "step.blocked", step_id, st, st.block_reason)
        if self.happened(st.resumed):
            # Resuming with a complete file restarts a clock that counts from the start.
            row.update(state=_IN_PROGRESS, blocked_reason=None, clock_started_at=st.resumed)
            self.step_event(st.resumed, st.actor, "step.resumed", step_id, st)
        if self.happened(st.finished):
            row["done_at"] = st.finished
            if st.skip_reason:
                row.update(state=_SKIPPED, skip_reason=st.skip_reason)
                self.step_event(
                    st.finished,
                    self.manager,
                    "step.skipped",
                    step_id,
                    st,
                    st.skip_reason,
                    handoff_id=handoff_id,
                )
            else:
                row.update(state=_DONE, outcome=st.outcome)
                self.step_event(
                    st.finished,
                    st.actor,
                    "step.completed",
                    step_id,
                    st,
                    outcome=st.outcome,
                    done_on=st.finished.date().isoformat(),
                    handoff_id=handoff_id,
                )
        self.set_dues(row, st.finished if self.happened(st.finished) else self.end)
        return row

    def set_dues(self, row: dict[str, Any], until: datetime) -> None:
        """Due dates as the services last computed them: now, or as the step finished."""
        basis = row["legal_basis"]
        # Only a clock counting from a fact or another step needs the facts known by then.
        facts = self.facts(until) if basis not in (None, "opened", "started") else {}
        own = {**facts, "opened": row["opened_at"], "started": row["clock_started_at"]}
        service = clocks.service_due(opened=row["opened_at"], days=row["service_days"])
        legal = clocks.legal_due(
            basis=basis, days=row["legal_days"], months=row["legal_months"], facts=own
        )
        row.update(service_due=service, legal_due=legal, due_date=clocks.earliest(service, legal))

    def write_handoffs(self, st: _StepStory, step_id: int, step_row: dict[str, Any]) -> int | None:
        """The step's handoffs made by the cut, each in its state then; returns the last id."""
        live: dict[str, Any] | None = None
        owner = st.spec.owner
        for offer in st.offers:
            if not self.happened(offer.created_at):
                break
            org_id = self.gen.orgs[offer.org][0]
            live = self.write_handoff(st, step_id, offer, org_id)
            if offer.org != owner:
                # Handing the step to another organisation makes that organisation its owner.
                step_row["owner_org_id"] = org_id
                changed = {"from": owner, "to": offer.org}
                self.step_event(
                    offer.created_at, self.manager, "step.owner_changed", step_id, st, **changed
                )
                owner = offer.org
        if live is None:
            return None
        if self.happened(st.finished) and live["state"] != HandoffState.declined.value:
            # The live handoff ends with the step: completed by the partner, or withdrawn.
            if st.skip_reason:
                live.update(state=HandoffState.withdrawn.value, reason="step_skipped")
            else:
                live["state"] = HandoffState.completed.value
            live["closed_at"] = st.finished
        return int(live["id"])

    def write_handoff(
        self, st: _StepStory, step_id: int, offer: _Offer, org_id: int
    ) -> dict[str, Any]:
        hid = self.gen.ids.take("handoffs")
        row: dict[str, Any] = {
            "id": hid,
            "case_id": self.case_id,
            "step_id": step_id,
            "organisation_id": org_id,
            "state": HandoffState.offered.value,
            "hold_reason": None,
            "reason": None,
            "created_at": offer.created_at,
            "offered_at": None,
            "accepted_at": None,
            "closed_at": None,
            "created_by_id": self.manager_id,
            "accepted_by_id": None,
            "version": 1,
        }
        self.rows["handoffs"].append(row)
        details = {"step": st.key, "organisation": offer.org}
        if offer.held:
            row.update(state=HandoffState.held.value, hold_reason=HOLD_CONSENT_MISSING)
            self.event(
                offer.created_at,
                self.manager,
                "handoff.held",
                "handoff",
                hid,
                HOLD_CONSENT_MISSING,
                **details,
            )
            self.tell_manager("handoff_held", hid, offer.created_at, details)
        if not self.happened(offer.offered_at):
            return row
        row.update(state=HandoffState.offered.value, hold_reason=None, offered_at=offer.offered_at)
        action = "handoff.released" if offer.held else "handoff.offered"
        self.event(offer.offered_at, self.manager, action, "handoff", hid, **details)
        self.message(
            _offer_key(hid, offer.created_at, offer.offered_at),
            "handoff_offered",
            offer.offered_at,
            org=org_id,
            context={"step": st.key, "handoff_id": hid},
        )
        if self.happened(offer.declined_at):
            row.update(
                state=HandoffState.declined.value, reason=offer.reason, closed_at=offer.declined_at
            )
            self.event(
                offer.declined_at,
                offer.actor,
                "handoff.declined",
                "handoff",
                hid,
                offer.reason,
                **details,
            )
            self.tell_manager("handoff_declined", hid, offer.declined_at, details)
        elif self.happened(offer.accepted_at):
            row.update(
                state=HandoffState.accepted.value,
                accepted_at=offer.accepted_at,
                accepted_by_id=self.gen.users.get(offer.actor),
            )
            self.event(
                offer.accepted_at, offer.actor, "handoff.accepted", "handoff", hid, **details
            )
        return row

    # -- helpers -----------------------------------------------------------------------------

    def facts(self, until: datetime) -> dict[str, Any]:
        """The newcomer's facts and done steps as known before ``until``."""
        s = self.story
        facts: dict[str, Any] = {
            "arrival": s.arrival if self.known(s.arrival_known, until) else None,
            "permit_expiry": s.permit_expiry if self.known(s.permit_known, until) else None,
            "move_in": None,
        }
        for st in s.steps:
            if st.done and self.known(st.finished, until):
                facts[f"done:{st.key}"] = st.finished
                if st.key == "housing":
                    facts["move_in"] = st.finished.date()
        return facts

    @staticmethod
    def known(moment: datetime | None, until: datetime) -> TypeGuard[datetime]:
        return moment is not None and moment < until

    def event(
        self,
        when: datetime,
        actor: str,
        action: str,
        etype: str,
        eid: int | None,
        reason: str | None = None,
        **details: Any,
    ) -> None:
        self.rows["audit_events"].append(
            {
                "id": self.gen.ids.take("audit_events"),
                "occurred_at": when,
                "actor_id": self.gen.users.get(actor),
                "actor": actor,
                "action": action,
                "case_id": self.case_id,
                "entity_type": etype,
                "entity_id": eid,
                "reason": reason,
                "details": details,
            }
        )

    def step_event(
        self,
        when: datetime,
        actor: str,
        action: str,
        step_id: int,
        st: _StepStory,
        reason: str | None = None,
        **details: Any,
    ) -> None:
        self.event(when, actor, action, "step", step_id, reason, step=st.key, **details)

    def tell_manager(self, kind: str, hid: int, when: datetime, details: dict[str, str]) -> None:
        """The message the services send the case manager about a handoff (held, declined)."""
        self.message(f"{kind}:{hid}", kind, when, user=self.manager_id, context=details)

    def message(
        self,
        key: str,
        kind: str,
        when: datetime,
        *,
        language: str = "de",
        context: dict[str, Any] | None = None,
        org: int | None = None,
        user: int | None = None,
        newcomer: int | None = None,
    ) -> None:
        self.rows["outbox"].append(
            {
                "id": self.gen.ids.take("outbox"),
                "idempotency_key": key,
                "kind": kind,
                "case_id": self.case_id,
                "recipient_org_id": org,
                "recipient_user_id": user,
                "recipient_newcomer_id": newcomer,
                "language": language,
                "context": {"reference": self.story.reference, **(context or {})},
                "status": OutboxStatus.sent.value,
                "attempts": 1,
                "last_error": None,
                "created_at": when,
                "next_attempt_at": when,
                "sent_at": when + timedelta(minutes=1),
            }
        )


def _offer_key(handoff_id: int, created_at: datetime, offered_at: datetime) -> str:
    """The outbox key ``notify_offer`` (tracker/services/cases.py) gives an offer: an offer made
    later than the handoff was created (released once consent came) carries its time."""
    key = f"handoff_offered:{handoff_id}"
    if offered_at != created_at:
        key += f":{offered_at.astimezone(UTC):%Y%m%dT%H%M%S}"
    return key


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


def _fit_done_in(session: Session, year: int) -> int:
    start = datetime(year, 1, 1, tzinfo=UTC)
    return (
        session.scalar(
            select(func.count())
            .select_from(Step)
            .where(
                Step.key == "fit_enrollment",
                Step.state == StepState.done,
                Step.done_at >= start,
                Step.done_at < start.replace(year=year + 1),
            )
        )
        or 0
    )


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
    """Load ``people`` newcomers with full histories; returns row counts written per table.

    Person number n (counting the newcomers already in the database) always has the same
    journey for a seed; ``as_of`` (default today) only decides how far along it is.
    """
    registry = registry or get_registry()
    as_of = as_of or utcnow().date()
    _check_day(as_of)
    with db.transaction() as session:
        seed_organisations(session, registry=registry, now=SETUP_TIME)
        ensure_demo_users(session, now=SETUP_TIME)
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
        first_index = session.scalar(select(func.count()).select_from(Newcomer)) or 0
        fit_done = _fit_done_in(session, FIT_COHORT_YEAR)
    gen = DemoGenerator(
        registry=registry,
        orgs=orgs,
        users=users,
        ids=ids,
        seed=seed,
        as_of=as_of,
        existing_refs=refs,
    )
    # The FIT 2024 cohort is 108 students in all: top it up to that, never beyond.
    room = people if people >= 360 else round(people * 0.3)
    fit_cohort = min(max(0, FIT_COHORT_SIZE - fit_done), room) if gen.has_fit else 0
    counts = {name: 0 for name, _ in TABLES}
    done = 0
    while done < people:
        batch = _Batch()
        size = min(batch_size, people - done)
        for i in range(done, done + size):
            gen.person(batch, index=first_index + i, fit_cohort=i < fit_cohort)
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
