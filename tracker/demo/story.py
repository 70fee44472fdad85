"""A demo person's journey as drawn: the demo period, typical durations and rates, the records.

Each person's whole journey is drawn first (tracker.demo.journeys) without looking at the
cut-off day, then cut (tracker.demo.cut): these records hold the journey between the two.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from tracker.clocks import local_today
from tracker.errors import ValidationFailed
from tracker.pathway import PathwayStep

# The demo period. First contacts are drawn from a fixed window and only kept when the case
# opens before the cut (drawn again otherwise), so the moment of the cut never moves anyone's
# past.
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


@dataclass
class HandoffStory:
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
class StepStory:
    spec: PathwayStep
    position: int
    opened: datetime | None = None  # None: never opens (a prerequisite never finishes)
    offers: list[HandoffStory] = field(default_factory=list)
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
class Story:
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
    steps: list[StepStory] = field(default_factory=list)
    reference: str = ""

    def step(self, key: str) -> StepStory | None:
        return next((s for s in self.steps if s.key == key), None)

    @property
    def move_in(self) -> date | None:
        housing = self.step("housing")
        return housing.finished.date() if housing and housing.done and housing.finished else None

    def fit_done_in(self, year: int) -> bool:
        fit = self.step("fit_enrollment")
        return bool(fit and fit.done and fit.finished and fit.finished.year == year)


def cut_moment(as_of: date, now: datetime) -> datetime:
    """Where the demo's journeys are cut: at the end of ``as_of``, or at ``now`` on the day the
    demo is loaded, so that nothing in it happens after the moment it was loaded."""
    today = local_today(now)
    if as_of > today:
        raise ValidationFailed(
            "The demo day {day} lies in the future (today is {today}); choose today or an "
            "earlier day.",
            day=as_of,
            today=today,
        )
    first_day_over = datetime.combine(DEMO_START + timedelta(days=1), time(0), tzinfo=UTC)
    if as_of < DEMO_START or now < first_day_over:
        raise ValidationFailed(
            "Demo data starts on {start}; choose that day or a later one (once it is over).",
            start=DEMO_START,
        )
    return min(datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=UTC), now)


def office_clock(rng: random.Random) -> time:
    """A time of day when the office (or a partner) records something."""
    return time(rng.randint(7, 16), rng.randint(0, 59))


def some_time_on(day: date, rng: random.Random) -> datetime:
    return datetime.combine(day, office_clock(rng), tzinfo=UTC)


def triangular_days(rng: random.Random, spec: tuple[float, float, float]) -> int:
    low, mode, high = spec
    return max(0, round(rng.triangular(low, high, mode)))
