"""FIT@THGA as the demo draws it: the programme's calendar, companies and rates, a participant's
records, and the ledger the programme's rows go to.

Drawn like the journeys: each participant from random streams of their own
("<seed>:<index>:fit..."), the offers from a fixed programme calendar, all without looking at
the cut, then cut at the same moment as the journeys. Places go to registrations in the order
they came, offer by offer, exactly as the FIT services hand them out (a waiting list, moving up
when someone cancels or leaves); the messages and audit events are the ones those services and
the fit-daily flow would have written.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

from tracker.demo.ledger import Ids, Ledger
from tracker.demo.people import PARTNER_BY_ORG
from tracker.demo.story import SETUP_TIME
from tracker.enums import ContactKind, FitChannel, FitStatus, OfferKind
from tracker.fit import PROGRAMME_ORG as FIT_PROGRAMME_ORG

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
class FitOfferPlan:
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
class FitPerson:
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
class FitReg:
    person: FitPerson
    registered_at: datetime
    cancel_at: datetime | None
    cancel_reason: str
    attends: bool
    row: dict[str, Any] | None = None


def next_weekday(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def fit_catalogue(zone: ZoneInfo) -> list[FitOfferPlan]:
    """The programme calendar 2024-2026: the same on every load, whatever the seed."""
    rng = random.Random("fit-offers")
    plans = []
    for year in FIT_OFFER_YEARS:
        for kind, months, titles, start, hours, place, (low, high) in FIT_CALENDAR:
            for n, month in enumerate(months):
                day = next_weekday(date(year, month, rng.randint(4, 24)))
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
                plan = FitOfferPlan(
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


def weekdays_between(start: date, end: date) -> list[date]:
    return [
        start + timedelta(days=n)
        for n in range((end - start).days + 1)
        if (start + timedelta(days=n)).weekday() < 5
    ]


def offer_context(plan: FitOfferPlan) -> dict[str, Any]:
    """fit.offer_context: what the student needs to come, no one else's data."""
    return {
        "offer_title": plan.title,
        "offer_kind": plan.kind.value,
        "starts_at": plan.starts_at.isoformat(),
        "ends_at": plan.ends_at.isoformat(),
        "place": plan.place,
    }


class FitLedger(Ledger):
    """The programme's rows made by the cut, with its audit events and messages."""

    TABLE_NAMES = (
        "fit_offers",
        "fit_participants",
        "fit_registrations",
        "fit_contacts",
        "fit_jobs",
        "fit_work_days",
        "fit_permits",
    )

    def __init__(self, ids: Ids, users: dict[str, int], *, end: datetime, zone: ZoneInfo) -> None:
        super().__init__(ids, users, (*self.TABLE_NAMES, "audit_events", "outbox"), end=end)
        self.zone = zone

    def happened(self, moment: datetime | None) -> TypeGuard[datetime]:
        return moment is not None and moment < self.end

    def morning(self, day: date) -> datetime:
        """When the fit-daily flow runs on ``day`` (08:00 in Bochum)."""
        return datetime.combine(day, time(8), tzinfo=self.zone).astimezone(UTC)

    def tell(
        self, p: FitPerson, key: str, kind: str, at: datetime, context: dict[str, Any]
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
