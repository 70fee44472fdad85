"""Realistic demo data: Bochum's partners, users for every role, and newcomers at every stage.

Each person's whole journey is drawn first, from random streams of their own
(``"<seed>:<index>"``, index counting the newcomers already in the database) and without
looking at the cut-off day (only a first contact that would lie after it is drawn again), with
the same pathway graph, clock rules and state changes the services use. The journey is then cut
at the end of ``as_of``: what has not happened by then is pending, open or in progress. Loading
the same seed on a later day therefore gives the same people with the same past, further along.

Rows are written in bulk (tracker.bulk: COPY on PostgreSQL, one executemany per table and
batch on SQLite) because a demo load of 100,000 people through the ORM would take many minutes,
so this module itself keeps the rules the services enforce (consistent facts, consent before
sharing, outbox messages, clocks). A large load draws the journeys in a forked second process
while this one writes them; the rows are the same as drawn in one.
"""

from __future__ import annotations

import multiprocessing
import random
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from queue import Empty
from typing import Any, TypeGuard, cast
from zoneinfo import ZoneInfo

from faker import Faker
from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.bulk import BulkWriter, as_values
from tracker.config import get_settings
from tracker.db import Database
from tracker.enums import (
    JOBS_NOT_COUNTED,
    PLACE_HOLDING,
    CaseStatus,
    ContactKind,
    FitChannel,
    FitStatus,
    HandoffState,
    JobKind,
    OfferKind,
    OfferStatus,
    OutboxStatus,
    PermitKind,
    Purpose,
    RegistrationStatus,
    Role,
    StepState,
)
from tracker.errors import PermissionDenied, ValidationFailed
from tracker.models import (
    AuditEvent,
    Case,
    Consent,
    FitContact,
    FitJob,
    FitOffer,
    FitParticipant,
    FitPermit,
    FitRegistration,
    FitWorkDay,
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
from tracker.services.fit import DAY_LIMIT, JOB_SEARCH_MONTHS
from tracker.services.fit import FIT_STEP as FIT_STEP_KEY
from tracker.services.fit import PROGRAMME_ORG as FIT_PROGRAMME_ORG

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
# Only what names and user names draw on ({{year}} in some user names): loading all of
# Faker's providers for 26 locales took seconds, and the draws are the same.
FAKER_PROVIDERS = [
    "faker.providers.person",
    "faker.providers.internet",
    "faker.providers.date_time",
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


def refuse_in_production() -> None:
    """Demo data carries sign-ins with a published password: never in production."""
    if get_settings().environment == "production":
        raise PermissionDenied(
            "ONBOARDING_ENVIRONMENT=production: demo data (and its sign-ins with a published "
            "password) is refused; load it on a development machine."
        )


def ensure_demo_users(session: Session, *, now: datetime | None = None) -> list[str]:
    """Create the demo sign-ins that are missing; returns the usernames added."""
    refuse_in_production()
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
        self.fakers = {loc: Faker(loc, providers=FAKER_PROVIDERS) for loc, _, _ in NON_EU + EU}
        self.pathways = {p.profile.value: p for p in registry.latest()}
        self.orders = {k: _topological(p) for k, p in self.pathways.items()}
        self.fit: _FitDemo | None = None  # set by load_demo when the pathways have FIT

    @property
    def has_fit(self) -> bool:
        student = self.pathways.get("student")
        return student is not None and "fit_enrollment" in student.step_ids

    def person(self, batch: _Batch, *, index: int, fit_cohort: bool) -> None:
        """Draw person number ``index`` and write their journey as it stands at ``as_of``."""
        story = self.simulate(index, fit_cohort=fit_cohort)
        story.reference = self._reference(random.Random(f"{self.seed}:{index}:reference"))
        cut = _Cut(self, batch, story)
        cut.write()
        if self.fit is not None:
            self.fit.collect(index, story, cut)

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


# -- FIT@THGA: the programme's own records of the students whose FIT step is done ---------------
#
# Drawn like the journeys: each participant from random streams of their own
# ("<seed>:<index>:fit..."), the offers from a fixed programme calendar, all without looking at
# the cut-off day, then cut at the end of ``as_of``. Places go to registrations in the order
# they came, offer by offer, exactly as tracker/services/fit.py hands them out (a waiting list,
# moving up when someone cancels or leaves); the messages and audit events are the ones those
# services and the fit-daily flow would have written.

FIT_STAFF = PARTNER_BY_ORG.get(FIT_PROGRAMME_ORG, "thga.nowak")
FIT_PROGRAMMES: list[tuple[str, int]] = [
    ("Geoingenieurwesen und Nachbergbau", 18),
    ("Maschinenbau", 22),
    ("Elektro- und Informationstechnik", 18),
    ("Angewandte Materialwissenschaften", 8),
    ("Wirtschaftsingenieurwesen", 16),
    ("Vermessung und Geoinformatik", 10),
    ("Rohstoffingenieurwesen", 8),
]
FIT_CHANNELS: list[tuple[FitChannel, int]] = [
    (FitChannel.orientation_week, 30),
    (FitChannel.international_office, 24),
    (FitChannel.lecturer, 12),
    (FitChannel.fellow_student, 15),
    (FitChannel.welcome_office, 11),
    (FitChannel.social_media, 6),
    (FitChannel.other, 2),
]
# Companies of the programme's network (invented): name, town, in the region (Bochum / Ruhr).
FIT_COMPANIES: list[tuple[str, str, bool]] = [
    ("Ruhr Tunnelbau GmbH", "Bochum", True),
    ("Emscher Geotechnik GmbH", "Gelsenkirchen", True),
    ("Bochumer Maschinenwerke AG", "Bochum", True),
    ("Westfalen Energienetze GmbH", "Dortmund", True),
    ("Revier Vermessung und Geodaten GmbH", "Herne", True),
    ("Grubenwasser Consult GmbH", "Essen", True),
    ("Kohlenpott Automation GmbH", "Bochum", True),
    ("RuhrMaterials Prüflabor GmbH", "Essen", True),
    ("Lippe Wasserbau GmbH", "Lünen", True),
    ("Hattinger Stahlguss GmbH", "Hattingen", True),
    ("Bergbau-Nachsorge Ruhr gGmbH", "Bochum", True),
    ("Sauerland Rohstoffe GmbH", "Arnsberg", False),
    ("Rheinische Bohrtechnik GmbH", "Köln", False),
    ("Nordsee Windtechnik GmbH", "Bremerhaven", False),
    ("Lausitz Energie Service GmbH", "Cottbus", False),
    ("Bayern Geoinformatik AG", "München", False),
]
FIT_ASSISTANT_EMPLOYERS = [
    "THGA – Forschungszentrum Nachbergbau",
    "THGA – Institut für Maschinenbau",
    "THGA – Labor für Elektrotechnik",
]
FIT_OFFER_YEARS = (2024, 2025, 2026)
# kind, months, titles (taken in turn), local start, hours, place, capacity range
FIT_CALENDAR: list[
    tuple[OfferKind, tuple[int, ...], list[str], time, float, str, tuple[int, int]]
] = [
    (
        OfferKind.application_training,
        (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12),
        [
            "Bewerbungstraining: Lebenslauf und Anschreiben",
            "Bewerbungstraining: Vorstellungsgespräche üben",
            "Bewerbungstraining: Online-Profile und Initiativbewerbung",
        ],
        time(14, 0),
        3.5,
        "THGA, Haus 1, Raum 104",
        (16, 20),
    ),
    (
        OfferKind.salary_training,
        (2, 5, 7, 11),
        ["Gehaltsverhandlung für den Berufseinstieg"],
        time(15, 0),
        3,
        "THGA, Haus 2, Raum 201",
        (12, 15),
    ),
    (
        OfferKind.work_culture_seminar,
        (1, 4, 6, 10, 12),
        [
            "Arbeitskultur in Deutschland: Kommunikation, Hierarchie, Feedback",
            "Arbeiten in Deutschland: Verträge, Probezeit, Arbeitszeit",
        ],
        time(9, 30),
        6.5,
        "THGA, Haus 3, Seminarraum",
        (20, 25),
    ),
    (OfferKind.excursion, (3, 6, 9, 11), [], time(8, 30), 7, "", (18, 24)),
    (
        OfferKind.job_fair,
        (5, 11),
        ["Karrieretag Ruhr", "THGA-Firmenkontaktmesse"],
        time(10, 0),
        6,
        "",
        (80, 150),
    ),
    (
        OfferKind.working_student_placement,
        (3, 10),
        ["Speed-Dating: Werkstudierendenstellen in der Region"],
        time(16, 0),
        2.5,
        "THGA, Haus 1, Foyer",
        (12, 16),
    ),
]
FIT_FAIR_PLACES = {
    "Karrieretag Ruhr": "RuhrCongress Bochum",
    "THGA-Firmenkontaktmesse": "THGA, Audimax",
}
FIT_OFFER_CANCEL_RATE = 0.04
FIT_OFFER_CANCEL_REASONS = [
    "Referentin erkrankt / speaker ill",
    "Unternehmen hat den Termin abgesagt / the company cancelled",
]
FIT_INTEREST = {
    OfferKind.application_training: 1.0,
    OfferKind.salary_training: 0.8,
    OfferKind.work_culture_seminar: 0.9,
    OfferKind.excursion: 1.3,
    OfferKind.job_fair: 2.2,
    OfferKind.working_student_placement: 1.1,
}
FIT_CONTACT_KIND = {
    OfferKind.excursion: (ContactKind.company_visit, 0.6),
    OfferKind.job_fair: (ContactKind.job_fair_talk, 0.7),
    OfferKind.working_student_placement: (ContactKind.interview, 0.4),
}
FIT_STUDENT_CANCEL = "cancelled by the student"  # the service's default reason
FIT_LEFT = "left the programme"
# How a working student works: full days a week, half days a week, full-time months (breaks).
FIT_WORK_PATTERNS: list[tuple[str, int, int, tuple[int, ...], int]] = [
    ("light", 2, 0, (), 45),
    ("half", 0, 4, (), 20),
    ("moderate", 2, 0, (8, 9), 23),
    ("heavy", 3, 0, (3, 8, 9), 12),
]
# A few heavy workers go over the limit (a case for the warnings); everyone else stops at it.
FIT_OVER_RATE = 0.2


@dataclass
class _FitOfferPlan:
    kind: OfferKind
    title: str
    starts_at: datetime
    ends_at: datetime
    place: str
    company: str | None
    capacity: int
    created_at: datetime
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    id: int | None = None
    existing: bool = False
    taken_before: int = 0  # places held by registrations from an earlier load


@dataclass
class _FitPerson:
    index: int
    newcomer_id: int
    case_id: int
    reference: str
    language: str
    manager_id: int
    enrolled_at: datetime  # the FIT step was done
    enrol_actor: str
    job_entry: datetime | None  # the case's job_entry step is done (in the whole story)
    residence_title: datetime | None
    # Drawn in FitDemo.participant:
    id: int = 0
    leaves_at: datetime | None = None  # graduated, dropped out or withdrawn: no longer enrolled
    status: FitStatus = FitStatus.enrolled
    studies_end: date | None = None


@dataclass
class _FitReg:
    person: _FitPerson
    registered_at: datetime
    cancel_at: datetime | None
    cancel_reason: str
    attends: bool
    row: dict[str, Any] | None = None


def _fit_weekday(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _fit_catalogue(zone: ZoneInfo) -> list[_FitOfferPlan]:
    """The programme calendar 2024-2026: the same on every load, whatever the seed."""
    rng = random.Random("fit-offers")
    plans = []
    for year in FIT_OFFER_YEARS:
        for kind, months, titles, start, hours, place, (low, high) in FIT_CALENDAR:
            for n, month in enumerate(months):
                day = _fit_weekday(date(year, month, rng.randint(4, 24)))
                starts = datetime.combine(day, start, tzinfo=zone).astimezone(UTC)
                company_name, town, _ = rng.choice(FIT_COMPANIES)
                company: str | None = None
                if kind == OfferKind.excursion:
                    title, company, where = f"Exkursion: {company_name}", company_name, town
                elif kind == OfferKind.job_fair:
                    title = f"{titles[n % len(titles)]} {year}"
                    where = FIT_FAIR_PLACES[titles[n % len(titles)]]
                else:
                    title, where = titles[(year + n) % len(titles)], place
                created = starts - timedelta(days=rng.randint(40, 80), hours=rng.randint(0, 5))
                plan = _FitOfferPlan(
                    kind=kind,
                    title=title,
                    starts_at=starts,
                    ends_at=starts + timedelta(hours=hours),
                    place=where if kind != OfferKind.excursion else f"{company_name}, {where}",
                    company=company,
                    capacity=rng.randint(low, high),
                    created_at=max(created, SETUP_TIME + timedelta(days=1)),
                )
                if rng.random() < FIT_OFFER_CANCEL_RATE:
                    plan.cancelled_at = starts - timedelta(days=rng.randint(3, 10), hours=2)
                    plan.cancel_reason = rng.choice(FIT_OFFER_CANCEL_REASONS)
                plans.append(plan)
    return sorted(plans, key=lambda p: (p.starts_at, p.title))


class _FitDemo:
    """Collects the participants while the journeys are written; writes the FIT rows after."""

    TABLE_NAMES = (
        "fit_offers",
        "fit_participants",
        "fit_registrations",
        "fit_contacts",
        "fit_jobs",
        "fit_work_days",
        "fit_permits",
    )

    def __init__(self, gen: DemoGenerator, session: Session) -> None:
        self.gen = gen
        self.seed = gen.seed
        self.zone = ZoneInfo(get_settings().timezone)
        self.end = datetime.combine(gen.as_of + timedelta(days=1), time(0), tzinfo=UTC)
        self.margin = get_settings().fit_day_warning_margin
        self.people: list[_FitPerson] = []
        self.rows: dict[str, list[dict[str, Any]]] = {
            name: [] for name in (*self.TABLE_NAMES, "audit_events", "outbox")
        }
        self.plans = _fit_catalogue(self.zone)
        known = {
            (title, starts.astimezone(UTC)): (oid, status)
            for oid, title, starts, status in session.execute(
                select(FitOffer.id, FitOffer.title, FitOffer.starts_at, FitOffer.status)
            )
        }
        taken = dict(
            session.execute(
                select(FitRegistration.offer_id, func.count())
                .where(FitRegistration.status.in_([s.value for s in PLACE_HOLDING]))
                .group_by(FitRegistration.offer_id)
            ).all()
        )
        for plan in self.plans:
            found = known.get((plan.title, plan.starts_at))
            if found:
                plan.id, plan.existing = found[0], True
                plan.taken_before = int(taken.get(found[0], 0))
                if found[1] == OfferStatus.cancelled and plan.cancelled_at is None:
                    plan.cancelled_at = plan.created_at
        self.registrations: dict[int, list[_FitReg]] = {}
        self._left_counts: dict[int, int] = {}  # participant -> registrations their leaving freed
        self._counted: dict[int, dict[int, list[tuple[date, bool]]]] = {}  # recorded, counting
        self._warned: set[str] = set()
        self._attended: set[tuple[int, int]] = set()  # (participant, offer) who came

    def happened(self, moment: datetime | None) -> TypeGuard[datetime]:
        return moment is not None and moment < self.end

    def collect(self, index: int, story: _Story, cut: _Cut) -> None:
        """Remember a person whose FIT step is done by the cut: they are a participant."""
        step = story.step(FIT_STEP_KEY)
        if step is None or not step.done or not cut.happened(step.finished):
            return
        job = story.step("job_entry")
        title = story.step("residence_title")
        self.people.append(
            _FitPerson(
                index=index,
                newcomer_id=cut.newcomer_id,
                case_id=cut.case_id,
                reference=story.reference,
                language=story.lang,
                manager_id=cut.manager_id,
                enrolled_at=step.finished,
                enrol_actor=step.actor,
                job_entry=job.finished if job and job.done else None,
                residence_title=title.finished if title and title.done else None,
            )
        )

    # -- writing ------------------------------------------------------------------------------

    def write(self) -> dict[str, list[dict[str, Any]]]:
        for plan in sorted(self.plans, key=lambda p: p.created_at):
            self.offer(plan)
        for person in self.people:
            self.participant(person)
        for plan in self.plans:
            self.run_offer(plan)
        self.status_events()
        self._attended = {
            (r.person.id, offer_id)
            for offer_id, regs in self.registrations.items()
            for r in regs
            if r.row is not None and r.row["status"] == RegistrationStatus.attended.value
        }
        for person in self.people:
            self.contacts(person)
            self.jobs(person)
            self.permits(person)
        return self.rows

    def offer(self, plan: _FitOfferPlan) -> None:
        if plan.existing or not self.happened(plan.created_at):
            return
        plan.id = self.gen.ids.take("fit_offers")
        self.rows["fit_offers"].append(
            {
                "id": plan.id,
                "kind": plan.kind.value,
                "title": plan.title,
                "starts_at": plan.starts_at,
                "ends_at": plan.ends_at,
                "place": plan.place,
                "company": plan.company,
                "capacity": plan.capacity,
                "status": OfferStatus.planned.value,
                "created_at": plan.created_at,
                "version": 1,
            }
        )
        self.event(
            plan.created_at,
            FIT_STAFF,
            "fit.offer_created",
            "fit_offer",
            plan.id,
            None,
            kind=plan.kind.value,
            capacity=plan.capacity,
        )

    def participant(self, p: _FitPerson) -> None:
        rng = random.Random(f"{self.seed}:{p.index}:fit")
        channel = rng.choices([c for c, _ in FIT_CHANNELS], [w for _, w in FIT_CHANNELS])[0]
        programme = rng.choices([n for n, _ in FIT_PROGRAMMES], [w for _, w in FIT_PROGRAMMES])[0]
        semester = rng.choices([1, 2, 3, 4], [60, 20, 12, 8])[0]
        engagement = rng.choices([0.02, 0.08, 0.15, 0.25, 0.4], [8, 25, 35, 22, 10])[0]
        reliability = rng.uniform(0.6, 0.97)
        fate, fate_days, before_job, alone = (
            rng.random(),
            rng.randint(150, 700),
            rng.randint(30, 240),
            rng.randint(420, 1100),
        )
        employer = rng.choice(FIT_COMPANIES)
        enrolled = p.enrolled_at.date()
        p.id = self.gen.ids.take("fit_participants")
        if fate < 0.05:
            status, on = FitStatus.dropped_out, enrolled + timedelta(days=fate_days)
            p.studies_end = on
        elif fate < 0.09:
            status, on = FitStatus.withdrawn, enrolled + timedelta(days=fate_days // 2 + 60)
            p.studies_end = enrolled + timedelta(days=alone)
        else:
            status = FitStatus.graduated
            if p.job_entry is not None:
                job_day = p.job_entry.date()
                on = max(job_day - timedelta(days=before_job), enrolled + timedelta(days=120))
                on = min(on, job_day)
            else:
                on = enrolled + timedelta(days=alone)
            p.studies_end = on
        p.leaves_at = datetime.combine(on, time(10, rng.randint(0, 59)), tzinfo=UTC)
        p.status = status
        if p.studies_end is not None and status == FitStatus.graduated:
            # The semester fits the time left to the degree: a 7-semester bachelor's, or a
            # 3-semester master's for those who finish within a year and a half.
            left = max(1, -(-(p.studies_end - enrolled).days // 182))
            semester = max(1, (7 if left > 3 else 3) - left + 1)
        row: dict[str, Any] = {
            "id": p.id,
            "newcomer_id": p.newcomer_id,
            "case_id": p.case_id,
            "enrolled_on": enrolled,
            "channel": channel.value,
            "study_programme": programme,
            "semester": semester,
            "status": FitStatus.enrolled.value,
            "graduated_on": None,
            "left_on": None,
            "job_employer": None,
            "job_started_on": None,
            "job_in_region": None,
            "created_at": p.enrolled_at,
            "version": 1,
        }
        self.rows["fit_participants"].append(row)
        self.event(
            p.enrolled_at,
            p.enrol_actor,
            "fit.enrolled",
            "fit_participant",
            p.id,
            p.case_id,
            channel=channel.value,
            semester=semester,
        )
        if self.happened(p.leaves_at):
            row["status"] = status.value
            row["graduated_on" if status == FitStatus.graduated else "left_on"] = on
        if self.happened(p.job_entry):
            # As the case's job_entry step: THGA records it the day the Welcome Office does.
            name, _town, in_region = employer
            row.update(
                job_employer=name, job_started_on=p.job_entry.date(), job_in_region=in_region
            )
            self.event(
                p.job_entry,
                FIT_STAFF,
                "fit.job_entry",
                "fit_participant",
                p.id,
                p.case_id,
                started_on=p.job_entry.date().isoformat(),
                in_region=in_region,
            )
        # Which offers they sign up for: a fixed number of draws per offer of the calendar.
        for plan in self.plans:
            interest, lead, cancels, when, attends = (rng.random() for _ in range(5))
            starts = plan.starts_at
            registered = starts - timedelta(days=3 + int(lead * 32), hours=int(lead * 7))
            registered = max(registered, plan.created_at, p.enrolled_at) + timedelta(minutes=30)
            if (
                plan.id is None
                or interest >= engagement * FIT_INTEREST[plan.kind]
                or registered > starts - timedelta(days=2)
                or registered >= p.leaves_at
                or (plan.cancelled_at is not None and registered >= plan.cancelled_at)
            ):
                continue
            cancel_at = None
            if cancels < 0.08:
                cancel_at = registered + (starts - timedelta(days=1) - registered) * when
            self.registrations.setdefault(plan.id, []).append(
                _FitReg(
                    person=p,
                    registered_at=registered,
                    cancel_at=cancel_at,
                    cancel_reason=FIT_STUDENT_CANCEL,
                    attends=attends < reliability,
                )
            )

    def run_offer(self, plan: _FitOfferPlan) -> None:
        """Hand out the offer's places in the order things happened, up to the cut."""
        if plan.id is None:
            return
        regs = self.registrations.get(plan.id, [])
        local_start = plan.starts_at.astimezone(self.zone).date()
        local_end = plan.ends_at.astimezone(self.zone).date()
        timeline: list[tuple[datetime, int, int, str, _FitReg | None]] = []
        for n, reg in enumerate(regs):
            timeline.append((reg.registered_at, 0, n, "register", reg))
            if reg.cancel_at is not None:
                timeline.append((reg.cancel_at, 1, n, "cancel", reg))
            leaves = reg.person.leaves_at
            if reg.person.status != FitStatus.graduated and leaves and leaves < plan.starts_at:
                timeline.append((leaves, 1, n, "left", reg))
        if plan.cancelled_at is not None:
            timeline.append((plan.cancelled_at, 2, 0, "offer_cancelled", None))
        else:
            timeline.append((self._morning(local_start - timedelta(days=1)), 3, 0, "remind", None))
            timeline.append((plan.ends_at + timedelta(minutes=30), 4, 0, "attendance", None))
            timeline.append((self._morning(local_end + timedelta(days=1)), 5, 0, "feedback", None))
        holders = plan.taken_before
        waiting: list[_FitReg] = []
        status = OfferStatus.planned
        left_count: dict[int, int] = {}
        for at, _, _, what, item in sorted(timeline, key=lambda e: e[:3]):
            if not self.happened(at):
                break
            if what == "register" and item is not None:
                if status != OfferStatus.planned:
                    continue
                has_place = holders < plan.capacity
                if not has_place and len(waiting) >= max(3, plan.capacity // 4):
                    continue  # told the waiting list is long, they do not sign up
                item.row = self.registration(plan, item, has_place)
                if has_place:
                    holders += 1
                else:
                    waiting.append(item)
            elif what in ("cancel", "left") and item is not None and item.row is not None:
                if item.row["status"] not in ("registered", "waitlisted"):
                    continue
                had_place = item.row["status"] == "registered"
                reason = FIT_LEFT if what == "left" else item.cancel_reason
                item.row.update(status=RegistrationStatus.cancelled.value, updated_at=at)
                self.event(
                    at,
                    FIT_STAFF,
                    "fit.registration_cancelled",
                    "fit_registration",
                    item.row["id"],
                    item.person.case_id,
                    reason,
                    offer_id=plan.id,
                )
                if what == "left":
                    left_count[item.person.id] = left_count.get(item.person.id, 0) + 1
                if had_place:
                    holders -= 1
                    holders += self.promote(plan, waiting, holders, at)
                else:
                    waiting.remove(item)
            elif what == "offer_cancelled":
                status = OfferStatus.cancelled
                for r in regs:
                    if r.row is not None and r.row["status"] in ("registered", "waitlisted"):
                        r.row.update(status=RegistrationStatus.cancelled.value, updated_at=at)
                if not plan.existing:
                    self.event(
                        at,
                        FIT_STAFF,
                        "fit.offer_cancelled",
                        "fit_offer",
                        plan.id,
                        None,
                        plan.cancel_reason,
                    )
            elif what == "remind":
                for r in regs:
                    if r.row is not None and r.row["status"] == "registered":
                        key = f"fit_reminder:{r.row['id']}:{plan.starts_at.date().isoformat()}"
                        self.tell(r.person, key, "fit_offer_reminder", at, _offer_context(plan))
            elif what == "attendance":
                status = OfferStatus.held
                came = missed = 0
                for r in regs:
                    if r.row is not None and r.row["status"] == "registered":
                        value = (
                            RegistrationStatus.attended if r.attends else RegistrationStatus.no_show
                        )
                        r.row.update(status=value.value, updated_at=at)
                        came += r.attends
                        missed += not r.attends
                if not plan.existing:
                    self.event(
                        at,
                        FIT_STAFF,
                        "fit.attendance",
                        "fit_offer",
                        plan.id,
                        None,
                        attended=came,
                        no_show=missed,
                    )
            elif what == "feedback":
                for r in regs:
                    if r.row is not None and r.row["status"] in ("registered", "attended"):
                        key = f"fit_feedback:{r.row['id']}"
                        self.tell(r.person, key, "fit_feedback", at, _offer_context(plan))
        if not plan.existing:
            for row in self.rows["fit_offers"]:
                if row["id"] == plan.id:
                    row["status"] = status.value
        for person_id, count in left_count.items():
            self._left_counts[person_id] = self._left_counts.get(person_id, 0) + count

    def promote(
        self, plan: _FitOfferPlan, waiting: list[_FitReg], holders: int, at: datetime
    ) -> int:
        """fit._promote: the first on the waiting list get the free places (if still enrolled)."""
        moved = 0
        for reg in list(waiting[: max(plan.capacity - holders, 0)]):
            leaves = reg.person.leaves_at
            if leaves is not None and leaves <= at:
                continue
            assert reg.row is not None
            reg.row.update(status=RegistrationStatus.registered.value, placed_at=at, updated_at=at)
            waiting.remove(reg)
            moved += 1
            self.event(
                at,
                FIT_STAFF,
                "fit.moved_up",
                "fit_registration",
                reg.row["id"],
                reg.person.case_id,
                offer_id=plan.id,
            )
            key = f"fit_place:{reg.row['id']}:{at.date().isoformat()}"
            self.tell(reg.person, key, "fit_place_freed", at, _offer_context(plan))
        return moved

    def registration(self, plan: _FitOfferPlan, reg: _FitReg, has_place: bool) -> dict[str, Any]:
        status = RegistrationStatus.registered if has_place else RegistrationStatus.waitlisted
        row: dict[str, Any] = {
            "id": self.gen.ids.take("fit_registrations"),
            "offer_id": plan.id,
            "participant_id": reg.person.id,
            "status": status.value,
            "registered_at": reg.registered_at,
            "placed_at": reg.registered_at if has_place else None,
            "updated_at": reg.registered_at,
        }
        self.rows["fit_registrations"].append(row)
        self.event(
            reg.registered_at,
            FIT_STAFF,
            f"fit.{status.value}",
            "fit_registration",
            row["id"],
            reg.person.case_id,
            offer_id=plan.id,
        )
        return row

    def contacts(self, p: _FitPerson) -> None:
        """Company contacts: at fairs and visits they came to, and a few mentorings."""
        rng = random.Random(f"{self.seed}:{p.index}:fit-contacts")
        for plan in self.plans:
            chance, lag, pick = rng.random(), rng.randint(0, 3), rng.choice(FIT_COMPANIES)
            came = (p.id, plan.id) in self._attended
            if not came or plan.kind not in FIT_CONTACT_KIND:
                continue
            kind, rate = FIT_CONTACT_KIND[plan.kind]
            if chance < rate:
                day = plan.starts_at.astimezone(self.zone).date()
                self.contact(p, plan.company or pick[0], kind, day, lag, plan.id)
        mentor, after, company, lag = (
            rng.random(),
            rng.randint(30, 240),
            rng.choice(FIT_COMPANIES),
            rng.randint(0, 3),
        )
        if mentor < 0.15:
            day = p.enrolled_at.date() + timedelta(days=after)
            if p.leaves_at is None or day < p.leaves_at.date():
                self.contact(p, company[0], ContactKind.mentoring, day, lag, None)

    def contact(
        self,
        p: _FitPerson,
        company: str,
        kind: ContactKind,
        day: date,
        lag: int,
        offer_id: int | None,
    ) -> None:
        at = datetime.combine(day + timedelta(days=lag), time(11), tzinfo=UTC)
        if not self.happened(at) or day > at.date():
            return
        cid = self.gen.ids.take("fit_contacts")
        self.rows["fit_contacts"].append(
            {
                "id": cid,
                "participant_id": p.id,
                "company": company,
                "kind": kind.value,
                "contact_on": day,
                "offer_id": offer_id,
                "created_at": at,
            }
        )
        self.event(at, FIT_STAFF, "fit.contact", "fit_contact", cid, p.case_id, kind=kind.value)

    def jobs(self, p: _FitPerson) -> None:
        """Jobs while studying, their working days recorded month by month, and the warnings."""
        rng = random.Random(f"{self.seed}:{p.index}:fit-jobs")
        # A fixed number of draws, in a fixed order, whatever is used.
        working, voluntary, mandatory, assistant = (rng.random() for _ in range(4))
        ws_start, ws_length = rng.randint(45, 400), rng.randint(120, 700)
        pattern = rng.choices(FIT_WORK_PATTERNS, [w for *_, w in FIT_WORK_PATTERNS])[0]
        over, over_by = rng.random(), rng.randint(2, 6)
        ws_employer = rng.choice(FIT_COMPANIES)
        chosen_days = rng.sample(range(5), 3)
        vacation = {rng.randint(10, 30), rng.randint(31, 50), 52, 1}
        lag = rng.randint(0, 3)
        intern_start, intern_weeks = rng.randint(120, 500), rng.randint(8, 12)
        intern_employer = rng.choice(FIT_COMPANIES)
        assistant_start, assistant_length = rng.randint(60, 300), rng.randint(120, 365)
        assistant_employer = rng.choice(FIT_ASSISTANT_EMPLOYERS)
        applied, interview = rng.randint(20, 60), rng.randint(5, 19)

        enrolled = p.enrolled_at.date()
        last = (p.studies_end or enrolled + timedelta(days=1500)) - timedelta(days=1)
        if working < 0.4:
            name, full, half, breaks, _ = pattern
            start = _fit_weekday(enrolled + timedelta(days=ws_start))
            end = min(start + timedelta(days=ws_length), last)
            # Students stop at the limit; a few heavy workers go over it (the demo's warnings).
            cap = DAY_LIMIT + (over_by if name == "heavy" and over < FIT_OVER_RATE else 0)
            weekdays = {0, 1, 2, 3} if half else set(chosen_days[:full])
            days: list[tuple[date, bool]] = []
            used: dict[int, float] = {}
            for day in _fit_weekdays(start, end):
                full_time = day.month in breaks
                if day.isocalendar().week in vacation or not (
                    full_time or day.weekday() in weekdays
                ):
                    continue
                is_half = bool(half) and not full_time
                if used.get(day.year, 0.0) + (0.5 if is_half else 1.0) <= cap:
                    used[day.year] = used.get(day.year, 0.0) + (0.5 if is_half else 1.0)
                    days.append((day, is_half))
            if end >= start + timedelta(days=28):
                company, _, in_region = ws_employer
                job = self.job(p, company, JobKind.working_student, start, end, in_region)
                if job is not None:
                    for contact_kind, day in (
                        (ContactKind.application, start - timedelta(days=applied)),
                        (ContactKind.interview, start - timedelta(days=interview)),
                    ):
                        if day >= enrolled:
                            self.contact(p, company, contact_kind, day, 1, None)
                    self.record_days(p, job, days, lag, counts=True)
        elif voluntary < 0.15:
            # A voluntary internship counts against the limit: some weeks full time.
            start = _fit_weekday(enrolled + timedelta(days=intern_start))
            end = min(start + timedelta(weeks=intern_weeks), last)
            company, _, in_region = intern_employer
            if end > start:
                job = self.job(p, company, JobKind.voluntary_internship, start, end, in_region)
                if job is not None:
                    full_days = [(d, False) for d in _fit_weekdays(start, end)]
                    self.record_days(p, job, full_days, lag, counts=True)
        if mandatory < 0.15:
            # The internship the study regulations require does not count.
            start = _fit_weekday(enrolled + timedelta(days=intern_start + 30))
            end = min(start + timedelta(weeks=intern_weeks), last)
            company, _, in_region = intern_employer
            if end > start:
                job = self.job(p, company, JobKind.mandatory_internship, start, end, in_region)
                if job is not None:
                    full_days = [(d, False) for d in _fit_weekdays(start, end)]
                    self.record_days(p, job, full_days, lag, counts=False)
        if assistant < 0.12:
            # A student assistant at THGA (two half days a week): does not count either.
            start = _fit_weekday(enrolled + timedelta(days=assistant_start))
            end = min(start + timedelta(days=assistant_length), last)
            if end > start:
                kind = JobKind.university_assistant
                job = self.job(p, assistant_employer, kind, start, end, True)
                if job is not None:
                    halves = [(d, True) for d in _fit_weekdays(start, end) if d.weekday() in (1, 3)]
                    self.record_days(p, job, halves, lag, counts=False)

    def _job_created(self, p: _FitPerson, start: date) -> datetime:
        created = datetime.combine(start - timedelta(days=7), time(10), tzinfo=UTC)
        return max(created, p.enrolled_at + timedelta(hours=1))

    def job(
        self, p: _FitPerson, employer: str, kind: JobKind, start: date, end: date, in_region: bool
    ) -> int | None:
        created = self._job_created(p, start)
        if not self.happened(created):
            return None
        jid = self.gen.ids.take("fit_jobs")
        self.rows["fit_jobs"].append(
            {
                "id": jid,
                "participant_id": p.id,
                "employer": employer,
                "kind": kind.value,
                "starts_on": start,
                "ends_on": end,
                "in_region": in_region,
                "offer_id": None,
                "created_at": created,
            }
        )
        self.event(
            created,
            FIT_STAFF,
            "fit.job",
            "fit_job",
            jid,
            p.case_id,
            kind=kind.value,
            counts=kind not in JOBS_NOT_COUNTED,
        )
        return jid

    def record_days(
        self, p: _FitPerson, jid: int, days: list[tuple[date, bool]], lag: int, *, counts: bool
    ) -> None:
        """THGA records a month's days early in the next month (one call per month and kind
        of day); after each call for a counting job, the year's count is checked."""
        months: dict[tuple[int, int, bool], list[date]] = {}
        for day, half in days:
            months.setdefault((day.year, day.month, half), []).append(day)
        for (year, month, half), chunk in sorted(months.items()):
            first = date(year + month // 12, month % 12 + 1, 1)
            at = datetime.combine(first + timedelta(days=lag), time(10, 15), tzinfo=UTC)
            if not self.happened(at):
                continue
            for day in chunk:
                self.rows["fit_work_days"].append(
                    {
                        "id": self.gen.ids.take("fit_work_days"),
                        "job_id": jid,
                        "day": day,
                        "half": half,
                    }
                )
            self.event(
                at,
                FIT_STAFF,
                "fit.work_days",
                "fit_job",
                jid,
                p.case_id,
                days=len(chunk),
                half=half,
            )
            if counts:
                self._counted.setdefault(p.id, {}).setdefault(year, []).extend(
                    (day, half) for day in chunk
                )
                self.warn(p, year, at)

    def warn(self, p: _FitPerson, year: int, at: datetime) -> None:
        """fit.warn_day_limit, once per participant, year and level."""
        days = self._counted[p.id][year]
        half = sum(1 for _, h in days if h)
        used = (len(days) - half) + half / 2
        if used < DAY_LIMIT - self.margin:
            return
        level = "over" if used > DAY_LIMIT else "near"
        key = f"fit_days:{p.id}:{year}:{level}"
        if key in self._warned:
            return
        self._warned.add(key)
        remaining = DAY_LIMIT - used
        context = {
            "year": year,
            "used": used,
            "limit": DAY_LIMIT,
            "remaining": max(remaining, 0),
            "level": level,
        }
        self.tell(p, key, "fit_day_limit", at, context)
        self.message(
            f"fit_days_cm:{p.id}:{year}:{level}",
            "fit_day_limit_manager",
            at,
            case_id=p.case_id,
            user=p.manager_id,
            context={**context, "reference": p.reference},
        )

    def permits(self, p: _FitPerson) -> None:
        """The student permit (extended while studying), then §20 job search or a work permit."""
        rng = random.Random(f"{self.seed}:{p.index}:fit-permits")
        lags = [rng.randint(5, 55) for _ in range(6)]
        search_after, search_lag = rng.randint(3, 20), rng.randint(0, 3)
        if p.residence_title is None:
            return
        plans: list[tuple[PermitKind, date, date | None, datetime]] = []
        start = p.residence_title.date()
        created = max(p.residence_title, p.enrolled_at) + timedelta(hours=2)
        studies_end = p.studies_end or start + timedelta(days=2000)
        for lag in lags:
            until = clocks.add_months(start, 24) - timedelta(days=1)
            plans.append((PermitKind.student, start, until, created))
            if studies_end <= until - timedelta(days=30):
                break
            start = until + timedelta(days=1)
            created = datetime.combine(until - timedelta(days=lag), time(9, 30), tzinfo=UTC)
        if p.status == FitStatus.graduated and p.studies_end is not None:
            job_day = p.job_entry.date() if p.job_entry else None
            if job_day is None or job_day > p.studies_end + timedelta(days=30):
                begins = p.studies_end + timedelta(days=search_after)
                ends = clocks.add_months(begins, JOB_SEARCH_MONTHS) - timedelta(days=1)
                at = datetime.combine(begins + timedelta(days=search_lag), time(10), tzinfo=UTC)
                plans.append((PermitKind.job_search, begins, ends, at))
            if job_day is not None:
                at = datetime.combine(job_day + timedelta(days=1), time(10), tzinfo=UTC)
                plans.append((PermitKind.work, job_day, clocks.add_months(job_day, 48), at))
        written: list[tuple[int, PermitKind, date, date | None, datetime]] = []
        for kind, valid_from, valid_until, at in plans:
            if not self.happened(at):
                continue
            pid = self.gen.ids.take("fit_permits")
            written.append((pid, kind, valid_from, valid_until, at))
            self.rows["fit_permits"].append(
                {
                    "id": pid,
                    "participant_id": p.id,
                    "kind": kind.value,
                    "valid_from": valid_from,
                    "valid_until": valid_until,
                    "created_at": at,
                }
            )
            self.event(
                at,
                FIT_STAFF,
                "fit.permit",
                "fit_permit",
                pid,
                p.case_id,
                kind=kind.value,
                valid_until=valid_until.isoformat() if valid_until else None,
            )
        window = timedelta(days=get_settings().fit_permit_warning_days)
        for pid, kind, since, ends_on, at in written:
            if ends_on is None:
                continue
            # The first morning run that sees the permit within the window warns, unless a
            # newer permit is recorded by then (fit.send_daily).
            day = max(ends_on - window, at.astimezone(self.zone).date())
            run = self._morning(day)
            if run < at:
                day += timedelta(days=1)
                run = self._morning(day)
            newer = any(b > since and a <= run for q, _, b, _, a in written if q != pid)
            if day > ends_on or newer or not self.happened(run):
                continue
            context = {
                "permit": kind.value,
                "valid_until": ends_on.isoformat(),
                "days_left": (ends_on - day).days,
            }
            self.tell(
                p, f"fit_permit:{pid}:{ends_on.isoformat()}", "fit_permit_ending", run, context
            )

    def status_events(self) -> None:
        """Graduation, dropping out, withdrawal: with the places it freed (counted by then)."""
        for p in self.people:
            if not self.happened(p.leaves_at):
                continue
            on = p.leaves_at.date()
            self.event(
                p.leaves_at,
                FIT_STAFF,
                f"fit.{p.status.value}",
                "fit_participant",
                p.id,
                p.case_id,
                on=on.isoformat(),
                registrations_cancelled=self._left_counts.get(p.id, 0),
            )

    # -- helpers --------------------------------------------------------------------------------

    def _morning(self, day: date) -> datetime:
        """When the fit-daily flow runs on ``day`` (08:00 in Bochum)."""
        return datetime.combine(day, time(8), tzinfo=self.zone).astimezone(UTC)

    def tell(
        self, p: _FitPerson, key: str, kind: str, at: datetime, context: dict[str, Any]
    ) -> None:
        self.message(
            key,
            kind,
            at,
            case_id=p.case_id,
            newcomer=p.newcomer_id,
            language=p.language,
            context=context,
        )

    def message(
        self,
        key: str,
        kind: str,
        at: datetime,
        *,
        case_id: int,
        context: dict[str, Any],
        language: str = "de",
        newcomer: int | None = None,
        user: int | None = None,
    ) -> None:
        self.rows["outbox"].append(
            {
                "id": self.gen.ids.take("outbox"),
                "idempotency_key": key,
                "kind": kind,
                "case_id": case_id,
                "recipient_org_id": None,
                "recipient_user_id": user,
                "recipient_newcomer_id": newcomer,
                "language": language,
                "context": context,
                "status": OutboxStatus.sent.value,
                "attempts": 1,
                "last_error": None,
                "created_at": at,
                "next_attempt_at": at,
                "sent_at": at + timedelta(minutes=1),
            }
        )

    def event(
        self,
        when: datetime,
        actor: str,
        action: str,
        etype: str,
        eid: int | None,
        case_id: int | None,
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
                "case_id": case_id,
                "entity_type": etype,
                "entity_id": eid,
                "reason": reason,
                "details": details,
            }
        )


def _fit_weekdays(start: date, end: date) -> list[date]:
    return [
        start + timedelta(days=n)
        for n in range((end - start).days + 1)
        if (start + timedelta(days=n)).weekday() < 5
    ]


def _offer_context(plan: _FitOfferPlan) -> dict[str, Any]:
    """fit._offer_context: what the student needs to come, no one else's data."""
    return {
        "offer_title": plan.title,
        "offer_kind": plan.kind.value,
        "starts_at": plan.starts_at.isoformat(),
        "ends_at": plan.ends_at.isoformat(),
        "place": plan.place,
    }


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

FIT_TABLES: list[tuple[str, Table]] = [
    (name, cast(Table, model.__table__))
    for name, model in [
        ("fit_offers", FitOffer),
        ("fit_participants", FitParticipant),
        ("fit_registrations", FitRegistration),
        ("fit_contacts", FitContact),
        ("fit_jobs", FitJob),
        ("fit_work_days", FitWorkDay),
        ("fit_permits", FitPermit),
    ]
]
_TABLE_BY_NAME = dict(TABLES + FIT_TABLES)


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


# From this many people the journeys are drawn in a second process while this one writes.
PARALLEL_FROM = 5_000
LOAD_CACHE_KIB = 64 * 1024  # SQLite's page cache while loading
_Values = dict[str, tuple[list[str], list[list[Any]]]]


@dataclass(frozen=True)
class _Draw:
    """Which people to draw, in batches of how many, converted for which driver."""

    people: int
    first_index: int
    fit_cohort: int
    batch_size: int
    sqlite: bool


def _draw(gen: DemoGenerator, plan: _Draw) -> Iterator[tuple[int, _Values]]:
    """The rows to write, batch by batch: (people in the batch, rows per table in the order
    they can be written, converted for the driver of the database, SQLite or not); the
    FIT@THGA rows last (0 people)."""
    writer = BulkWriter()

    def prepared(rows: dict[str, list[dict[str, Any]]], names: list[str]) -> _Values:
        return {
            name: writer.prepare(_TABLE_BY_NAME[name], *as_values(rows[name]), sqlite=plan.sqlite)
            for name in names
        }

    done = 0
    while done < plan.people:
        batch = _Batch()
        size = min(plan.batch_size, plan.people - done)
        for i in range(done, done + size):
            gen.person(batch, index=plan.first_index + i, fit_cohort=i < plan.fit_cohort)
        yield size, prepared(batch.rows, [name for name, _ in TABLES])
        done += size
    if gen.fit is not None:
        rows = gen.fit.write()
        yield 0, prepared(rows, [*_FitDemo.TABLE_NAMES, "audit_events", "outbox"])


def _can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _draw_to(queue: Any, gen: DemoGenerator, plan: _Draw) -> None:
    try:
        for item in _draw(gen, plan):
            queue.put(item)
        queue.put(None)
    except BaseException:
        queue.put(traceback.format_exc())
        raise


def _draw_in_child(gen: DemoGenerator, plan: _Draw) -> Iterator[tuple[int, _Values]]:
    """``_draw`` in a forked process, a few batches ahead of the writing here.

    Drawing the journeys and writing the rows each take most of a core; on two cores they
    overlap. The child draws everything in order (ids, references, FIT places), exactly as
    ``_draw`` here would, and touches no database: it sends the rows converted for the driver
    (strings travel between processes much faster than datetimes), so this side only writes.
    """
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue(maxsize=3)
    child = ctx.Process(target=_draw_to, args=(queue, gen, plan), daemon=True)
    child.start()
    try:
        while True:
            try:
                item = queue.get(timeout=5)
            except Empty:
                if not child.is_alive():
                    raise RuntimeError(
                        f"the demo generator stopped (exit code {child.exitcode})"
                    ) from None
                continue
            if item is None:
                break
            if isinstance(item, str):
                raise RuntimeError(f"the demo generator failed:\n{item}")
            yield item
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        queue.close()


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
    refuse_in_production()
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
                for name, table in TABLES + FIT_TABLES
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
    if gen.has_fit:
        with db.read() as session:
            gen.fit = _FitDemo(gen, session)
    # The FIT 2024 cohort is 108 students in all: top it up to that, never beyond.
    room = people if people >= 360 else round(people * 0.3)
    fit_cohort = min(max(0, FIT_COHORT_SIZE - fit_done), room) if gen.has_fit else 0
    counts = {name: 0 for name, _ in TABLES}
    draw = _draw_in_child if people >= PARALLEL_FROM and _can_fork() else _draw
    plan = _Draw(people, first_index, fit_cohort, batch_size, sqlite=db.is_sqlite)
    # One transaction per batch of people; FIT@THGA last, in one (places go to registrations
    # in the order they came, so it needs everyone).
    try:
        for size, values in draw(gen, plan):
            with db.transaction() as session:
                conn = session.connection()
                if db.is_sqlite:
                    # The indexes being filled outgrow SQLite's 2 MiB page cache within a few
                    # thousand people; from then on each batch read its pages back from the OS
                    # (100k people: half the system time; 64 MiB did as well as 256 MiB).
                    # Dropped with the pool below.
                    conn.exec_driver_sql(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
                for name, (columns, rows) in values.items():
                    BulkWriter.write(conn, _TABLE_BY_NAME[name], columns, rows)
                    counts[name] = counts.get(name, 0) + len(rows)
            if progress and size:
                progress(size)
    finally:
        if db.is_sqlite:
            db.writer.dispose()  # the load's connections, with their large page caches
    if not db.is_sqlite:
        with db.transaction() as session:
            for name, _ in TABLES + FIT_TABLES:
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
    if not db.is_sqlite:
        # Fresh planner statistics: right after a bulk load autovacuum has not analysed the
        # tables yet, and a year's figures took 12 s on a plan made without them (17 ms after).
        # VACUUM as well: until the visibility map is set, PostgreSQL cannot answer a partner's
        # queue page from its covering index alone. (Outside a transaction, as VACUUM must be.)
        with db.writer.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
    return counts
