"""Walking the pathways: each demo person's whole journey, drawn without looking at the cut.

Each person's journey is drawn from random streams of their own (``"<seed>:<index>"``, index
counting the newcomers already in the database), with the same pathway graph and the same rule
of what opens next as the services (``prerequisites_met``). Only the first contact looks at the
cut: a case that would open after it is drawn again.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

from faker import Faker

from tracker.demo.ledger import Ids
from tracker.demo.people import (
    CASE_MANAGERS,
    EU,
    FAKER_PROVIDERS,
    LANG_BY_LOCALE,
    NON_EU,
    PARTNER_BY_ORG,
    PROFILE_WEIGHTS,
    PROFILES,
)
from tracker.demo.story import (
    ACCEPT_LAG_DAYS,
    AGE_REFERENCE,
    ARRIVAL_AFTER_VISA,
    BLOCK_RATE,
    BLOCK_REASONS,
    CAPACITY_DECLINE,
    CONTACT_WINDOW_END,
    CRAFTS_DECLINE,
    CRAFTS_ORG,
    DECLINE_RATE,
    DECLINE_REASONS,
    DEFAULT_BLOCK_RATE,
    DEFAULT_DECLINE_RATE,
    DEMO_START,
    DOCUMENTS_INCOMPLETE,
    DURATIONS,
    FIT_COHORT_CONTACT,
    FIT_COHORT_YEAR,
    NOT_AT_THGA,
    REGISTRATION_ON_TIME,
    RESUME_AFTER_DAYS,
    SKIP_RATE,
    SKIP_REASONS,
    STUDENT_JOB_ENTRY,
    VISA_VALID_DAYS,
    HandoffStory,
    StepStory,
    Story,
    office_clock,
    some_time_on,
    triangular_days,
)
from tracker.journeys.advance import prerequisites_met
from tracker.pathway import Pathway, PathwayRegistry
from tracker.records import random_reference


def topological_order(pathway: Pathway) -> list[str]:
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
    """Draws demo people: the same person for the same seed and index, whatever the day."""

    def __init__(
        self,
        *,
        registry: PathwayRegistry,
        orgs: dict[str, tuple[int, bool]],
        users: dict[str, int],
        ids: Ids,
        seed: int,
        cut: datetime,
        existing_refs: set[str],
    ) -> None:
        self.registry = registry
        self.orgs = orgs  # key -> (id, receives_handoffs)
        self.users = users
        self.ids = ids
        self.seed = seed
        self.cut = cut  # the journeys as they stand at this moment (story.cut_moment)
        self.refs = existing_refs
        self.fakers = {loc: Faker(loc, providers=FAKER_PROVIDERS) for loc, _, _ in NON_EU + EU}
        self.pathways = {p.profile.value: p for p in registry.latest()}
        self.orders = {k: topological_order(p) for k, p in self.pathways.items()}

    @property
    def has_fit(self) -> bool:
        student = self.pathways.get("student")
        return student is not None and "fit_enrollment" in student.step_ids

    def person(self, index: int, *, fit_cohort: bool) -> Story:
        """Person number ``index``: their whole journey, and their case's reference."""
        story = self.simulate(index, fit_cohort=fit_cohort)
        story.reference = self.reference(random.Random(f"{self.seed}:{index}:reference"))
        return story

    def simulate(self, index: int, *, fit_cohort: bool) -> Story:
        """The person's whole journey, drawn from the seed and the index alone.

        Only the first contact looks at the cut (the case must open before it); everything
        else is drawn relative to it, so a later cut shows the same journey further along.
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

    def reference(self, rng: random.Random) -> str:
        while True:
            ref = random_reference(rng)
            if ref not in self.refs:
                self.refs.add(ref)
                return ref

    def _first_contact(self, rng: random.Random, first: date, last: date, clock: time) -> date:
        # Draws from a fixed window until a day comes up whose case, opened at ``clock``, opens
        # before the cut. A later cut changes only a first contact whose first usable draw is
        # that very day.
        days = (last - first).days + 1
        while True:
            day = first + timedelta(days=int(rng.random() * days))
            if datetime.combine(day, clock, tzinfo=UTC) < self.cut:
                return day

    def _draw_person(
        self, rng: random.Random, contact_rng: random.Random, fit_cohort: bool
    ) -> Story:
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
        clock = office_clock(rng)
        first_contact = self._first_contact(contact_rng, *window, clock)
        story = Story(
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
            opened_at=datetime.combine(first_contact, clock, tzinfo=UTC),
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

    def _draw_consents(self, story: Story, rng: random.Random, *, hesitant_allowed: bool) -> None:
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

    def _play(self, story: Story, rng: random.Random) -> None:
        """Walk the pathway: each step opens once its prerequisites are finished."""
        pathway = self.pathways[story.profile]
        finished: dict[str, datetime] = {}
        for position, sid in enumerate(self.orders[story.profile]):
            st = StepStory(spec=pathway.step(sid), position=position)
            story.steps.append(st)
            if not prerequisites_met(st.spec.needs, finished):
                continue
            st.opened = max([story.opened_at, *(finished[n] for n in st.spec.needs)])
            self._play_step(story, st, rng)
            if st.finished is None:
                continue
            finished[sid] = st.finished
            if sid == "visa" and st.done:
                self._visa_granted(story, st.finished, rng)

    def _play_step(self, story: Story, st: StepStory, rng: random.Random) -> None:
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

    def _offer(self, story: Story, org: str, at: datetime) -> HandoffStory:
        """A handoff to ``org`` at ``at``: offered at once, or held until consent is given."""
        consent = story.consents.get(org)
        actor = PARTNER_BY_ORG.get(org, story.manager)
        if consent is not None and consent[0] <= at:
            return HandoffStory(org=org, created_at=at, offered_at=at, actor=actor)
        return HandoffStory(
            org=org,
            created_at=at,
            held=True,
            offered_at=consent[0] if consent else None,
            actor=actor,
        )

    def _hand_on(
        self, story: Story, st: StepStory, rng: random.Random, *, until: datetime | None
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
        self, story: Story, st: StepStory, rng: random.Random, work_from: datetime
    ) -> datetime:
        """When the step is done, given when work (last) started."""
        sid = st.key
        if sid == "registration" and story.move_in is not None:
            # Counted from moving in; most get an appointment inside the 14 days.
            if rng.random() < REGISTRATION_ON_TIME:
                days = rng.randint(1, 14)
            else:
                days = rng.randint(15, 45)
            appointment = some_time_on(story.move_in + timedelta(days=days), rng)
            return max(work_from + timedelta(hours=rng.randint(1, 4)), appointment)
        if sid == "job_entry" and story.profile == "student":
            spec = STUDENT_JOB_ENTRY
        else:
            spec = DURATIONS.get(sid, (5, 20, 60))
        finish = work_from + timedelta(days=triangular_days(rng, spec), hours=rng.randint(0, 6))
        if sid == "housing" and story.arrival and st.opened and story.arrival > st.opened.date():
            # Found from abroad: the newcomer moves in after arriving, never before.
            moving = some_time_on(story.arrival + timedelta(days=rng.randint(0, 7)), rng)
            finish = max(finish, moving)
        return finish

    def _visa_granted(self, story: Story, granted: datetime, rng: random.Random) -> None:
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
