"""FIT@THGA demo data: the participants' company contacts, jobs and working days while they
study (with the day-limit warnings), and their residence permits."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta

from tracker import clocks
from tracker.config import get_settings
from tracker.demo.fit_programme import (
    FIT_ASSISTANT_EMPLOYERS,
    FIT_COMPANIES,
    FIT_CONTACT_KIND,
    FIT_OVER_RATE,
    FIT_STAFF,
    FIT_WORK_PATTERNS,
    FitLedger,
    FitOfferPlan,
    FitPerson,
    next_weekday,
    weekdays_between,
)
from tracker.enums import JOBS_NOT_COUNTED, ContactKind, FitStatus, JobKind, PermitKind
from tracker.fit import DAY_LIMIT, JOB_SEARCH_MONTHS, DayCount


class FitWork:
    """What each participant does beside the offers, in the order the ids are taken: company
    contacts, jobs with their working days and warnings, permits."""

    def __init__(
        self,
        ledger: FitLedger,
        *,
        seed: int,
        plans: list[FitOfferPlan],
        attended: set[tuple[int, int]],
    ) -> None:
        self.ledger = ledger
        self.seed = seed
        self.plans = plans
        self.attended = attended  # (participant, offer) who came
        self._counted: dict[int, dict[int, list[tuple[date, bool]]]] = {}  # recorded, counting
        self._warned: set[str] = set()

    def contacts(self, p: FitPerson) -> None:
        """Company contacts: at fairs and visits they came to, and a few mentorings."""
        rng = random.Random(f"{self.seed}:{p.index}:fit-contacts")
        for plan in self.plans:
            chance, lag, pick = rng.random(), rng.randint(0, 3), rng.choice(FIT_COMPANIES)
            came = (p.id, plan.id) in self.attended
            if not came or plan.kind not in FIT_CONTACT_KIND:
                continue
            kind, rate = FIT_CONTACT_KIND[plan.kind]
            if chance < rate:
                day = plan.starts_at.astimezone(self.ledger.zone).date()
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
        p: FitPerson,
        company: str,
        kind: ContactKind,
        day: date,
        lag: int,
        offer_id: int | None,
    ) -> None:
        at = datetime.combine(day + timedelta(days=lag), time(11), tzinfo=UTC)
        if not self.ledger.happened(at) or day > at.date():
            return
        cid = self.ledger.ids.take("fit_contacts")
        self.ledger.rows["fit_contacts"].append(
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
        self.ledger.event(
            at, FIT_STAFF, "fit.contact", "fit_contact", cid, p.case_id, kind=kind.value
        )

    def jobs(self, p: FitPerson) -> None:
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
            start = next_weekday(enrolled + timedelta(days=ws_start))
            end = min(start + timedelta(days=ws_length), last)
            # Students stop at the limit; a few heavy workers go over it (the demo's warnings).
            cap = DAY_LIMIT + (over_by if name == "heavy" and over < FIT_OVER_RATE else 0)
            weekdays = {0, 1, 2, 3} if half else set(chosen_days[:full])
            days: list[tuple[date, bool]] = []
            used: dict[int, float] = {}
            for day in weekdays_between(start, end):
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
            start = next_weekday(enrolled + timedelta(days=intern_start))
            end = min(start + timedelta(weeks=intern_weeks), last)
            company, _, in_region = intern_employer
            if end > start:
                job = self.job(p, company, JobKind.voluntary_internship, start, end, in_region)
                if job is not None:
                    full_days = [(d, False) for d in weekdays_between(start, end)]
                    self.record_days(p, job, full_days, lag, counts=True)
        if mandatory < 0.15:
            # The internship the study regulations require does not count.
            start = next_weekday(enrolled + timedelta(days=intern_start + 30))
            end = min(start + timedelta(weeks=intern_weeks), last)
            company, _, in_region = intern_employer
            if end > start:
                job = self.job(p, company, JobKind.mandatory_internship, start, end, in_region)
                if job is not None:
                    full_days = [(d, False) for d in weekdays_between(start, end)]
                    self.record_days(p, job, full_days, lag, counts=False)
        if assistant < 0.12:
            # A student assistant at THGA (two half days a week): does not count either.
            start = next_weekday(enrolled + timedelta(days=assistant_start))
            end = min(start + timedelta(days=assistant_length), last)
            if end > start:
                kind = JobKind.university_assistant
                job = self.job(p, assistant_employer, kind, start, end, True)
                if job is not None:
                    every = weekdays_between(start, end)
                    halves = [(d, True) for d in every if d.weekday() in (1, 3)]
                    self.record_days(p, job, halves, lag, counts=False)

    def _job_created(self, p: FitPerson, start: date) -> datetime:
        created = datetime.combine(start - timedelta(days=7), time(10), tzinfo=UTC)
        return max(created, p.enrolled_at + timedelta(hours=1))

    def job(
        self, p: FitPerson, employer: str, kind: JobKind, start: date, end: date, in_region: bool
    ) -> int | None:
        created = self._job_created(p, start)
        if not self.ledger.happened(created):
            return None
        jid = self.ledger.ids.take("fit_jobs")
        self.ledger.rows["fit_jobs"].append(
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
        self.ledger.event(
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
        self, p: FitPerson, jid: int, days: list[tuple[date, bool]], lag: int, *, counts: bool
    ) -> None:
        """THGA records a month's days early in the next month (one call per month and kind
        of day); after each call for a counting job, the year's count is checked."""
        months: dict[tuple[int, int, bool], list[date]] = {}
        for day, half in days:
            months.setdefault((day.year, day.month, half), []).append(day)
        for (year, month, half), chunk in sorted(months.items()):
            first = date(year + month // 12, month % 12 + 1, 1)
            at = datetime.combine(first + timedelta(days=lag), time(10, 15), tzinfo=UTC)
            if not self.ledger.happened(at):
                continue
            for day in chunk:
                self.ledger.rows["fit_work_days"].append(
                    {
                        "id": self.ledger.ids.take("fit_work_days"),
                        "job_id": jid,
                        "day": day,
                        "half": half,
                    }
                )
            self.ledger.event(
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

    def warn(self, p: FitPerson, year: int, at: datetime) -> None:
        """fit.warn_day_limit, once per participant, year and level: the count and its levels
        are the service's own DayCount."""
        days = self._counted[p.id][year]
        half = sum(1 for _, h in days if h)
        count = DayCount(year=year, full=len(days) - half, half=half)
        if not count.warning:
            return
        level = "over" if count.over else "near"
        key = f"fit_days:{p.id}:{year}:{level}"
        if key in self._warned:
            return
        self._warned.add(key)
        context = {
            "year": year,
            "used": count.used,
            "limit": count.limit,
            "remaining": max(count.remaining, 0),
            "level": level,
        }
        self.ledger.tell(p, key, "fit_day_limit", at, context)
        self.ledger.message(
            f"fit_days_cm:{p.id}:{year}:{level}",
            "fit_day_limit_manager",
            at,
            case_id=p.case_id,
            user=p.manager_id,
            context={**context, "reference": p.reference},
        )

    def permits(self, p: FitPerson) -> None:
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
            if not self.ledger.happened(at):
                continue
            pid = self.ledger.ids.take("fit_permits")
            written.append((pid, kind, valid_from, valid_until, at))
            self.ledger.rows["fit_permits"].append(
                {
                    "id": pid,
                    "participant_id": p.id,
                    "kind": kind.value,
                    "valid_from": valid_from,
                    "valid_until": valid_until,
                    "created_at": at,
                }
            )
            self.ledger.event(
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
            day = max(ends_on - window, at.astimezone(self.ledger.zone).date())
            run = self.ledger.morning(day)
            if run < at:
                day += timedelta(days=1)
                run = self.ledger.morning(day)
            newer = any(b > since and a <= run for q, _, b, _, a in written if q != pid)
            if day > ends_on or newer or not self.ledger.happened(run):
                continue
            context = {
                "permit": kind.value,
                "valid_until": ends_on.isoformat(),
                "days_left": (ends_on - day).days,
            }
            self.ledger.tell(
                p, f"fit_permit:{pid}:{ends_on.isoformat()}", "fit_permit_ending", run, context
            )
