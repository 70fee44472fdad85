"""FIT@THGA in figures: an enrolment year's participants, time to a job, the programme's year.

The panel follows the participants of one enrolment year (in work within 12 / 18 months, their
cases); the programme counts what happened in a calendar year (offers, contacts, jobs).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy import and_, distinct, extract, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from tracker import clocks
from tracker.access import Actor
from tracker.config import get_settings
from tracker.enums import (
    JOBS_NOT_COUNTED,
    CaseStatus,
    OfferKind,
    OfferStatus,
    RegistrationStatus,
    StepState,
)
from tracker.models import (
    Case,
    FitContact,
    FitJob,
    FitOffer,
    FitParticipant,
    FitRegistration,
    Step,
)
from tracker.reporting.base import (
    Figure,
    count_if,
    days_between,
    require_leadership,
    utc_date,
    year_bounds,
)
from tracker.reporting.journeys import TimeTo, build_time_to
from tracker.reporting.suppression import any_hidden, share_of, suppress

FIT_FIRST_YEAR = 2023  # FIT@THGA's first cohort the tracker knows


class FitPanel(Figure):
    """FIT@THGA for one enrolment year. Grows by fields (and rows) as offers and attendance come.

    "followed_12m" are the participants enrolled at least 12 months before ``today``: only for
    them is "employed within 12 months" already decided, so it is the base of that share.
    """

    year: int
    today: date
    participants: int | None
    followed_12m: int | None
    employed_12m: int | None
    share_employed_12m: float | None
    followed_18m: int | None
    employed_18m: int | None
    share_employed_18m: float | None
    employed_so_far: int | None
    case_open: int | None
    case_closed: int | None
    case_cancelled: int | None
    suppressed: bool

    # indicator -> (outcome area of the FIT programme line, base indicator of its share)
    INDICATORS: ClassVar[tuple[tuple[str, str, str | None, str | None], ...]] = (
        ("participants", "access", None, None),
        ("followed_12m", "employability", "participants", None),
        ("employed_12m", "employability", "followed_12m", "share_employed_12m"),
        ("followed_18m", "employability", "participants", None),
        ("employed_18m", "employability", "followed_18m", "share_employed_18m"),
        ("employed_so_far", "employability", "participants", None),
        ("case_open", "staying", "participants", None),
        ("case_closed", "staying", "participants", None),
        ("case_cancelled", "staying", "participants", None),
    )

    def rows(self) -> list[dict[str, Any]]:
        data = self.model_dump()
        out = []
        for name, area, base, share_field in self.INDICATORS:
            count = data[name]
            if share_field:
                share = data[share_field]
            else:
                share = share_of(count, data[base]) if base else None
            out.append(
                {
                    "year": self.year,
                    "area": area,
                    "indicator": name,
                    "count": count,
                    "base": base,
                    "share": share,
                    "suppressed": count is None,
                }
            )
        return out


def _month_index(day: ColumnElement[date]) -> ColumnElement[Any]:
    return extract("year", day) * 12 + extract("month", day)


def _within_months(start: ColumnElement[date], end: ColumnElement[date], months: int) -> Any:
    """SQL: end <= clocks.add_months(start, months), the month's last day standing in for a
    missing day (Aug 31 + 6 months = Feb 28/29), on both backends without date arithmetic."""
    return or_(
        _month_index(end) < _month_index(start) + months,
        and_(
            _month_index(end) == _month_index(start) + months,
            extract("day", end) <= extract("day", start),
        ),
    )


def _latest_start(today: date, months: int) -> date:
    """The last day from which ``months`` months have fully passed by ``today``."""
    day = clocks.add_months(today, -months)
    while clocks.add_months(day + timedelta(days=1), months) <= today:
        day += timedelta(days=1)
    return day


def fit_panel(session: Session, *, actor: Actor, year: int, today: date | None = None) -> FitPanel:
    """FIT@THGA participants of one year (enrolment done that year) and what became of them."""
    require_leadership(actor)
    today = today or clocks.local_today()
    start, end = year_bounds(year)
    job = Step.__table__.alias("job")
    fit_day = utc_date(Step.done_at)
    job_day = utc_date(job.c.done_at)
    employed = job.c.state == StepState.done.value

    followed_12 = fit_day <= _latest_start(today, 12)
    followed_18 = fit_day <= _latest_start(today, 18)
    stmt = (
        select(
            func.count(),
            count_if(followed_12),
            count_if(followed_12, employed, _within_months(fit_day, job_day, 12)),
            count_if(followed_18),
            count_if(followed_18, employed, _within_months(fit_day, job_day, 18)),
            count_if(employed),
            count_if(Case.status == CaseStatus.open),
            count_if(Case.status == CaseStatus.closed),
            count_if(Case.status == CaseStatus.cancelled),
        )
        .select_from(Step)
        .join(Case, Step.case_id == Case.id)
        .outerjoin(job, and_(job.c.case_id == Step.case_id, job.c.key == "job_entry"))
        .where(
            Step.key == "fit_enrollment",
            Step.state == StepState.done,
            Step.done_at >= start,
            Step.done_at < end,
        )
    )
    row = [int(x) for x in session.execute(stmt).one()]
    values = dict(
        zip(
            (
                "participants",
                "followed_12m",
                "employed_12m",
                "followed_18m",
                "employed_18m",
                "employed_so_far",
                "case_open",
                "case_closed",
                "case_cancelled",
            ),
            row,
            strict=True,
        )
    )
    values["_not_employed_12m"] = values["followed_12m"] - values["employed_12m"]
    values["_not_employed_18m"] = values["followed_18m"] - values["employed_18m"]
    values["_not_employed"] = values["participants"] - values["employed_so_far"]
    values["_not_followed_12m"] = values["participants"] - values["followed_12m"]
    values["_not_followed_18m"] = values["participants"] - values["followed_18m"]
    equations = [
        ("participants", "case_open", "case_closed", "case_cancelled"),
        ("participants", "followed_12m", "_not_followed_12m"),
        ("participants", "followed_18m", "_not_followed_18m"),
        ("participants", "employed_so_far", "_not_employed"),
        ("followed_12m", "employed_12m", "_not_employed_12m"),
        ("followed_18m", "employed_18m", "_not_employed_18m"),
    ]
    if values["followed_12m"] == values["followed_18m"]:
        # Followed alike, the two differ by those who found work in months 13 to 18.
        values["_employed_13_18m"] = values["employed_18m"] - values["employed_12m"]
        equations.append(("employed_18m", "employed_12m", "_employed_13_18m"))
    shown = suppress(values, equations)
    return FitPanel(
        year=year,
        today=today,
        share_employed_12m=share_of(shown["employed_12m"], shown["followed_12m"]),
        share_employed_18m=share_of(shown["employed_18m"], shown["followed_18m"]),
        suppressed=any_hidden(shown),
        **shown,
    )


class QuarterRow(BaseModel):
    quarter: int
    participants: int | None
    suppressed: bool


class FitYearFigures(BaseModel):
    """Everything the yearly FIT@THGA programme report shows."""

    year: int
    today: date
    panel: FitPanel
    quarters: list[QuarterRow]  # enrolments per quarter of the year
    # Days from FIT enrolment to job entry, for every participant with a job (a job begun
    # before the enrolment counts as 0 days, so the count is the panel's employed_so_far).
    enrolment_to_job: TimeTo
    # The two years before: only for them can "in work within 12 / 18 months" be decided
    # when the report comes out early in the following year.
    follow_up: list[FitPanel]
    programme: FitProgramme  # offers, attendance, contacts, jobs, outcomes of the year


def fit_year_figures(session: Session, *, actor: Actor, year: int, today: date) -> FitYearFigures:
    """The FIT@THGA programme's year: the panel, enrolments by quarter, time to a job."""
    require_leadership(actor)
    start, end = year_bounds(year)
    fit_day = utc_date(Step.done_at)
    enrolled = and_(
        Step.key == "fit_enrollment",
        Step.state == StepState.done,
        Step.done_at >= start,
        Step.done_at < end,
    )
    by_month = session.execute(
        select(extract("month", fit_day), func.count())
        .where(enrolled)
        .group_by(extract("month", fit_day))
    ).all()
    per_quarter = {q: 0 for q in range(1, 5)}
    for m, n in by_month:
        per_quarter[(int(m) - 1) // 3 + 1] += int(n)
    names = {q: f"q{q}" for q in per_quarter}
    values = {names[q]: n for q, n in per_quarter.items()}
    shown = suppress(
        {"participants": sum(per_quarter.values()), **values},
        [("participants", *names.values())],
    )
    quarters = [
        QuarterRow(quarter=q, participants=shown[names[q]], suppressed=shown[names[q]] is None)
        for q in per_quarter
    ]
    job = Step.__table__.alias("job")
    days = days_between(fit_day, utc_date(job.c.done_at))
    found = session.execute(
        select(days, func.count())
        .select_from(Step)
        .join(job, and_(job.c.case_id == Step.case_id, job.c.key == "job_entry"))
        .where(enrolled, job.c.state == StepState.done.value)
        .group_by(days)
    ).all()
    freq: dict[int, int] = defaultdict(int)
    for d, n in found:
        freq[max(int(d), 0)] += int(n)  # a job begun before the enrolment: 0 days
    return FitYearFigures(
        year=year,
        today=today,
        panel=fit_panel(session, actor=actor, year=year, today=today),
        quarters=quarters,
        enrolment_to_job=build_time_to(sorted(freq.items()), "job_entry", year, "student"),
        follow_up=[
            fit_panel(session, actor=actor, year=y, today=today)
            for y in (year - 1, year - 2)
            if y >= FIT_FIRST_YEAR
        ],
        programme=fit_programme(session, actor=actor, year=year),
    )


class OfferKindRow(BaseModel):
    """Offers of one kind that took place in the year, and who came."""

    kind: str
    offers_held: int  # offers, not people: never suppressed
    places: int  # places offered at the held offers
    attended: int | None  # attendances (a person at two offers counts twice)
    no_show: int | None
    suppressed: bool


class FitProgramme(Figure):
    """What the programme did in a year: offers and attendance, contacts, jobs, outcomes.

    People counts of 1-4 are hidden like everywhere; counts of offers are not about people."""

    year: int
    offers: list[OfferKindRow]
    participants_reached: int | None  # distinct participants who attended at least one offer
    company_contacts: int | None  # contacts recorded in the year
    companies: int | None  # distinct companies among them (not people: shown)
    working_student_jobs: int | None  # jobs while studying that began in the year
    placements: int | None  # ... of them found through a placement offer
    graduated: int | None
    dropped_out: int | None
    withdrawn: int | None
    job_entries: int | None  # participants who started a job in the year
    job_entries_in_region: int | None  # ... in Bochum / the Ruhr
    suppressed: bool

    def rows(self) -> list[dict[str, Any]]:
        head = {"year": self.year}
        out = [{**head, "section": "offers", **r.model_dump()} for r in self.offers]
        for name in (
            "participants_reached",
            "company_contacts",
            "companies",
            "working_student_jobs",
            "placements",
            "graduated",
            "dropped_out",
            "withdrawn",
            "job_entries",
            "job_entries_in_region",
        ):
            value = getattr(self, name)
            out.append(
                {
                    **head,
                    "section": "programme",
                    "indicator": name,
                    "count": value,
                    "suppressed": value is None,
                }
            )
        return out


def fit_programme(session: Session, *, actor: Actor, year: int) -> FitProgramme:
    """The FIT@THGA programme's activity in one calendar year (Europe/Berlin dates)."""
    require_leadership(actor)
    # Offers happen at a time of day: the year is Bochum's (00:30 on 1 January belongs to it).
    zone = ZoneInfo(get_settings().timezone)
    start, end = datetime(year, 1, 1, tzinfo=zone), datetime(year + 1, 1, 1, tzinfo=zone)
    first, last = date(year, 1, 1), date(year, 12, 31)
    held = and_(
        FitOffer.status == OfferStatus.held, FitOffer.starts_at >= start, FitOffer.starts_at < end
    )
    per_kind: dict[str, dict[str, int]] = {
        k.value: {"offers_held": 0, "places": 0, "attended": 0, "no_show": 0} for k in OfferKind
    }
    for kind, n, places in session.execute(
        select(FitOffer.kind, func.count(), func.coalesce(func.sum(FitOffer.capacity), 0))
        .where(held)
        .group_by(FitOffer.kind)
    ):
        per_kind[str(kind)]["offers_held"] = int(n)
        per_kind[str(kind)]["places"] = int(places)
    for kind, status, n in session.execute(
        select(FitOffer.kind, FitRegistration.status, func.count())
        .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
        .where(
            held,
            FitRegistration.status.in_(
                [RegistrationStatus.attended.value, RegistrationStatus.no_show.value]
            ),
        )
        .group_by(FitOffer.kind, FitRegistration.status)
    ):
        per_kind[str(kind)][str(status)] = int(n)
    offers = []
    for kind_key, c in per_kind.items():
        shown = suppress({"attended": c["attended"], "no_show": c["no_show"]})
        offers.append(
            OfferKindRow(
                kind=kind_key,
                offers_held=c["offers_held"],
                places=c["places"],
                suppressed=any_hidden(shown),
                **shown,
            )
        )
    reached = session.scalar(
        select(func.count(distinct(FitRegistration.participant_id)))
        .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
        .where(held, FitRegistration.status == RegistrationStatus.attended)
    )
    contacts, companies = session.execute(
        select(func.count(), func.count(distinct(func.lower(FitContact.company)))).where(
            FitContact.contact_on >= first, FitContact.contact_on <= last
        )
    ).one()
    jobs, placements = session.execute(
        select(func.count(), func.count(FitJob.offer_id)).where(
            FitJob.starts_on >= first,
            FitJob.starts_on <= last,
            # Jobs while studying that count against the day limit: working-student jobs,
            # voluntary internships, other jobs (the same kinds the staff page counts).
            FitJob.kind.not_in([k.value for k in JOBS_NOT_COUNTED]),
        )
    ).one()

    def people(*conds: Any) -> int:
        return int(
            session.scalar(select(func.count()).select_from(FitParticipant).where(*conds)) or 0
        )

    in_year = lambda col: and_(col >= first, col <= last)  # noqa: E731
    values = {
        "participants_reached": int(reached or 0),
        "company_contacts": int(contacts or 0),
        "working_student_jobs": int(jobs or 0),
        "placements": int(placements or 0),
        "graduated": people(
            FitParticipant.status == "graduated", in_year(FitParticipant.graduated_on)
        ),
        "dropped_out": people(
            FitParticipant.status == "dropped_out", in_year(FitParticipant.left_on)
        ),
        "withdrawn": people(FitParticipant.status == "withdrawn", in_year(FitParticipant.left_on)),
        "job_entries": people(in_year(FitParticipant.job_started_on)),
        "job_entries_in_region": people(
            in_year(FitParticipant.job_started_on), FitParticipant.job_in_region.is_(True)
        ),
    }
    values["_jobs_elsewhere"] = values["job_entries"] - values["job_entries_in_region"]
    values["_jobs_not_placed"] = values["working_student_jobs"] - values["placements"]
    shown = suppress(
        values,
        [
            ("job_entries", "job_entries_in_region", "_jobs_elsewhere"),
            ("working_student_jobs", "placements", "_jobs_not_placed"),
        ],
    )
    return FitProgramme(
        year=year,
        offers=offers,
        companies=int(companies or 0),
        suppressed=any_hidden(shown) or any(r.suppressed for r in offers),
        **shown,
    )
