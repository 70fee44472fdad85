"""FIT@THGA demo data: the programme's offers, participants, registrations and their statuses.

Collected while the journeys are written (every student whose FIT step is done by the cut is a
participant), written after them: places go to registrations in the order they came, which
needs everyone. The work while studying and the permits are tracker.demo.fit_work's.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.clocks import local_today
from tracker.config import get_settings
from tracker.demo.cut import Cut
from tracker.demo.fit_programme import (
    FIT_CHANNELS,
    FIT_COMPANIES,
    FIT_INTEREST,
    FIT_LEFT,
    FIT_PROGRAMMES,
    FIT_STAFF,
    FIT_STUDENT_CANCEL,
    FitLedger,
    FitOfferPlan,
    FitPerson,
    FitReg,
    fit_catalogue,
    offer_context,
)
from tracker.demo.fit_work import FitWork
from tracker.demo.journeys import DemoGenerator
from tracker.demo.story import Story
from tracker.enums import PLACE_HOLDING, FitStatus, OfferStatus, RegistrationStatus
from tracker.fit import FIT_STEP as FIT_STEP_KEY
from tracker.models import FitOffer, FitRegistration


class FitDemo:
    """Collects the participants while the journeys are written; writes the FIT rows after."""

    def __init__(self, gen: DemoGenerator, session: Session) -> None:
        self.gen = gen
        self.seed = gen.seed
        zone = ZoneInfo(get_settings().timezone)
        self.ledger = FitLedger(gen.ids, gen.users, end=gen.cut, zone=zone)
        self.people: list[FitPerson] = []
        self.plans = fit_catalogue(zone)
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
        self.registrations: dict[int, list[FitReg]] = {}
        self._left_counts: dict[int, int] = {}  # participant -> registrations their leaving freed

    def collect(self, index: int, story: Story, cut: Cut) -> None:
        """Remember a person whose FIT step is done by the cut: they are a participant."""
        step = story.step(FIT_STEP_KEY)
        if step is None or not step.done or not cut.happened(step.finished):
            return
        job = story.step("job_entry")
        title = story.step("residence_title")
        self.people.append(
            FitPerson(
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
        attended = {
            (r.person.id, offer_id)
            for offer_id, regs in self.registrations.items()
            for r in regs
            if r.row is not None and r.row["status"] == RegistrationStatus.attended.value
        }
        work = FitWork(self.ledger, seed=self.seed, plans=self.plans, attended=attended)
        for person in self.people:
            work.contacts(person)
            work.jobs(person)
            work.permits(person)
        return self.ledger.rows

    def offer(self, plan: FitOfferPlan) -> None:
        if plan.existing or not self.ledger.happened(plan.created_at):
            return
        plan.id = self.ledger.ids.take("fit_offers")
        self.ledger.rows["fit_offers"].append(
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
        self.ledger.event(
            plan.created_at,
            FIT_STAFF,
            "fit.offer_created",
            "fit_offer",
            plan.id,
            None,
            kind=plan.kind.value,
            capacity=plan.capacity,
        )

    def participant(self, p: FitPerson) -> None:
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
        p.id = self.ledger.ids.take("fit_participants")
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
        self.ledger.rows["fit_participants"].append(row)
        self.ledger.event(
            p.enrolled_at,
            p.enrol_actor,
            "fit.enrolled",
            "fit_participant",
            p.id,
            p.case_id,
            channel=channel.value,
            semester=semester,
        )
        if self.ledger.happened(p.leaves_at):
            row["status"] = status.value
            row["graduated_on" if status == FitStatus.graduated else "left_on"] = on
        if self.ledger.happened(p.job_entry):
            # As the case's job_entry step: THGA records it the day the Welcome Office does.
            name, _town, in_region = employer
            row.update(
                job_employer=name, job_started_on=p.job_entry.date(), job_in_region=in_region
            )
            self.ledger.event(
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
                FitReg(
                    person=p,
                    registered_at=registered,
                    cancel_at=cancel_at,
                    cancel_reason=FIT_STUDENT_CANCEL,
                    attends=attends < reliability,
                )
            )

    def run_offer(self, plan: FitOfferPlan) -> None:
        """Hand out the offer's places in the order things happened, up to the cut."""
        if plan.id is None:
            return
        regs = self.registrations.get(plan.id, [])
        local_start = plan.starts_at.astimezone(self.ledger.zone).date()
        local_end = plan.ends_at.astimezone(self.ledger.zone).date()
        timeline: list[tuple[datetime, int, int, str, FitReg | None]] = []
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
            morning = self.ledger.morning
            timeline.append((morning(local_start - timedelta(days=1)), 3, 0, "remind", None))
            timeline.append((plan.ends_at + timedelta(minutes=30), 4, 0, "attendance", None))
            timeline.append((morning(local_end + timedelta(days=1)), 5, 0, "feedback", None))
        holders = plan.taken_before
        waiting: list[FitReg] = []
        status = OfferStatus.planned
        left_count: dict[int, int] = {}
        for at, _, _, what, item in sorted(timeline, key=lambda e: e[:3]):
            if not self.ledger.happened(at):
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
                self.ledger.event(
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
                    self.ledger.event(
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
                        context = offer_context(plan)
                        self.ledger.tell(r.person, key, "fit_offer_reminder", at, context)
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
                    self.ledger.event(
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
                        self.ledger.tell(r.person, key, "fit_feedback", at, offer_context(plan))
        if not plan.existing:
            for row in self.ledger.rows["fit_offers"]:
                if row["id"] == plan.id:
                    row["status"] = status.value
        for person_id, count in left_count.items():
            self._left_counts[person_id] = self._left_counts.get(person_id, 0) + count

    def promote(self, plan: FitOfferPlan, waiting: list[FitReg], holders: int, at: datetime) -> int:
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
            self.ledger.event(
                at,
                FIT_STAFF,
                "fit.moved_up",
                "fit_registration",
                reg.row["id"],
                reg.person.case_id,
                offer_id=plan.id,
            )
            key = f"fit_place:{reg.row['id']}:{local_today(at).isoformat()}"
            self.ledger.tell(reg.person, key, "fit_place_freed", at, offer_context(plan))
        return moved

    def registration(self, plan: FitOfferPlan, reg: FitReg, has_place: bool) -> dict[str, Any]:
        status = RegistrationStatus.registered if has_place else RegistrationStatus.waitlisted
        row: dict[str, Any] = {
            "id": self.ledger.ids.take("fit_registrations"),
            "offer_id": plan.id,
            "participant_id": reg.person.id,
            "status": status.value,
            "registered_at": reg.registered_at,
            "placed_at": reg.registered_at if has_place else None,
            "updated_at": reg.registered_at,
        }
        self.ledger.rows["fit_registrations"].append(row)
        self.ledger.event(
            reg.registered_at,
            FIT_STAFF,
            f"fit.{status.value}",
            "fit_registration",
            row["id"],
            reg.person.case_id,
            offer_id=plan.id,
        )
        return row

    def status_events(self) -> None:
        """Graduation, dropping out, withdrawal: with the places it freed (counted by then)."""
        for p in self.people:
            if not self.ledger.happened(p.leaves_at):
                continue
            on = p.leaves_at.date()
            self.ledger.event(
                p.leaves_at,
                FIT_STAFF,
                f"fit.{p.status.value}",
                "fit_participant",
                p.id,
                p.case_id,
                on=on.isoformat(),
                registrations_cancelled=self._left_counts.get(p.id, 0),
            )
