"""`onboarding fit`: FIT@THGA participants, offers, places, jobs, working days and permits."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import typer

from tracker.cli.common import (
    AsUser,
    Json,
    Version,
    Wait,
    change,
    err,
    follow_up,
    friendly,
    out,
    print_json,
    read,
    safe,
    table,
)
from tracker.config import get_settings
from tracker.enums import (
    FitChannel,
    FitStatus,
    JobKind,
    OfferKind,
    PermitKind,
    RegistrationStatus,
)

fit_app = typer.Typer(
    help="FIT@THGA: participants, offers with places and waiting lists, jobs, days, permits.",
    no_args_is_help=True,
)
fit_offer_app = typer.Typer(help="Plan FIT@THGA offers.", no_args_is_help=True)
fit_job_app = typer.Typer(help="Jobs of FIT@THGA participants.", no_args_is_help=True)
fit_permit_app = typer.Typer(help="Permits of FIT@THGA participants.", no_args_is_help=True)
fit_app.add_typer(fit_offer_app, name="offer")
fit_app.add_typer(fit_job_app, name="job")
fit_app.add_typer(fit_permit_app, name="permit")


def _fit_day(value: str, option: str) -> date:
    """A date option, or one clear line and exit code 1 (inside ``_friendly``)."""
    from tracker.errors import ValidationFailed

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(
            "{option}: '{value}' is not a date (YYYY-MM-DD).",
            option=option,
            value=value,
        ) from None


def _fit_moment(value: str, option: str) -> datetime:
    """A date and time in the office's time zone (or with an explicit offset)."""
    from zoneinfo import ZoneInfo

    from tracker.errors import ValidationFailed

    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        raise ValidationFailed(
            "{option}: '{value}' is not a date and time (YYYY-MM-DD HH:MM).",
            option=option,
            value=value,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(get_settings().timezone))
    return moment


@fit_app.command("enrol")
def fit_enrol(
    user: AsUser,
    reference: str,
    channel: Annotated[FitChannel, typer.Option(help="How the student came to the programme.")],
    programme: Annotated[str, typer.Option(help="Study programme, e.g. Maschinenbau.")],
    semester: Annotated[int, typer.Option(help="Semester at enrolment (1-20).")],
    on: Annotated[
        str | None, typer.Option(help="Enrolment day (YYYY-MM-DD), default today.")
    ] = None,
    wait: Wait = False,
) -> None:
    """Enrol the student of a case in FIT@THGA; the case's FIT step is done with it."""
    from tracker import fit

    with friendly():
        day = _fit_day(on, "--on") if on else None
    participant = change(
        user,
        fit.enrol,
        reference=reference,
        channel=channel,
        study_programme=programme,
        semester=semester,
        enrolled_on=day,
    )
    out.print(f"{safe(reference.upper())}: enrolled in FIT@THGA as participant {participant.id}.")
    follow_up(reference, wait=wait)


@fit_app.command("participants")
def fit_participants(
    user: AsUser,
    year: Annotated[int | None, typer.Option(help="Only those enrolled in this year.")] = None,
    status: Annotated[FitStatus | None, typer.Option(help="Only this status.")] = None,
    as_json: Json = False,
) -> None:
    """The programme's participants (programme staff)."""
    from tracker.fit import queries as fit_queries

    rows = read(user, fit_queries.participants, year=year, status=status.value if status else None)
    if as_json:
        print_json(rows)
        return
    columns = ("id", "reference", "name", "enrolled", "programme", "sem.", "status", "job")
    cells = [
        (
            r.id,
            r.reference,
            f"{r.given_name} {r.family_name}",
            r.enrolled_on,
            r.study_programme,
            r.semester,
            r.status,
            r.job_started_on,
        )
        for r in rows
    ]
    out.print(table(*columns, rows=cells, title=f"{len(rows)} FIT@THGA participants"))


@fit_offer_app.command("add")
def fit_offer_add(
    user: AsUser,
    kind: Annotated[OfferKind, typer.Option(help="What kind of offer.")],
    title: Annotated[str, typer.Option(help="Title as the students see it.")],
    starts: Annotated[str, typer.Option(help="Start, YYYY-MM-DD HH:MM (Bochum time).")],
    ends: Annotated[str, typer.Option(help="End, YYYY-MM-DD HH:MM (Bochum time).")],
    place: Annotated[str, typer.Option(help="Where it takes place.")],
    capacity: Annotated[int, typer.Option(help="How many places.")],
    company: Annotated[str | None, typer.Option(help="The company, if any.")] = None,
    as_json: Json = False,
) -> None:
    """Plan an offer with a number of places."""
    from tracker import fit

    with friendly():
        starts_at = _fit_moment(starts, "--starts")
        ends_at = _fit_moment(ends, "--ends")
    offer = change(
        user,
        fit.create_offer,
        kind=kind,
        title=title,
        starts_at=starts_at,
        ends_at=ends_at,
        place=place,
        capacity=capacity,
        company=company,
    )
    if as_json:
        print_json({"offer_id": offer.id, "capacity": offer.capacity})
        return
    out.print(f"Offer {offer.id} planned: {safe(offer.title)} ({offer.capacity} places).")


@fit_app.command("offers")
def fit_offers(
    user: AsUser,
    year: Annotated[int | None, typer.Option(help="Only offers starting in this year.")] = None,
    as_json: Json = False,
) -> None:
    """The offers with places taken, the waiting list and attendance."""
    from tracker.fit import queries as fit_queries

    rows = read(user, fit_queries.offers, year=year)
    if as_json:
        print_json(rows)
        return
    columns = ("id", "starts", "kind", "title", "place", "places", "waiting", "came", "status")
    cells = [
        (
            r.id,
            r.starts_at.astimezone(_office_zone()),
            r.kind,
            r.title,
            r.place,
            f"{r.places_taken}/{r.capacity}",
            r.waitlisted,
            r.attended if r.status == "held" else "–",
            r.status,
        )
        for r in rows
    ]
    out.print(table(*columns, rows=cells, title=f"{len(rows)} FIT@THGA offers"))


def _office_zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(get_settings().timezone)


@fit_app.command("register")
def fit_register(user: AsUser, offer_id: int, participant_id: int, as_json: Json = False) -> None:
    """A place on an offer if one is free, otherwise the end of its waiting list."""
    from tracker import fit

    registration = change(user, fit.register, offer_id=offer_id, participant_id=participant_id)
    if as_json:
        print_json({"registration_id": registration.id, "status": str(registration.status)})
        return
    where = (
        "has a place"
        if registration.status == RegistrationStatus.registered
        else "is on the waiting list"
    )
    out.print(
        f"Participant {participant_id} {where} for offer {offer_id} "
        f"(registration {registration.id})."
    )


@fit_app.command("cancel")
def fit_cancel(
    user: AsUser,
    registration_id: int,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why.")
    ] = "cancelled by the student",
) -> None:
    """Give a place (or a waiting-list turn) back; the next on the waiting list moves up."""
    from tracker import fit

    change(user, fit.cancel_registration, registration_id=registration_id, reason=reason)
    out.print(f"Registration {registration_id} is cancelled.")


@fit_app.command("attendance")
def fit_attendance(
    user: AsUser,
    offer_id: int,
    attended: Annotated[
        list[int] | None,
        typer.Option("--attended", help="A participant who came (repeat for each)."),
    ] = None,
) -> None:
    """After an offer: who came; everyone else with a place did not show."""
    from tracker import fit

    came = sorted(set(attended or []))
    change(user, fit.record_attendance, offer_id=offer_id, attended=came)
    out.print(f"Offer {offer_id}: attendance recorded, {len(came)} came.")


@fit_app.command("status")
def fit_status(
    user: AsUser,
    participant_id: int,
    status: Annotated[FitStatus, typer.Argument(help="graduated, dropped_out or withdrawn.")],
    on: Annotated[str | None, typer.Option(help="The day (YYYY-MM-DD), default today.")] = None,
    expected_version: Version = None,
) -> None:
    """Graduated, dropped out or withdrawn; leaving frees the places still to come."""
    from tracker import fit

    with friendly():
        day = _fit_day(on, "--on") if on else None
    change(
        user,
        fit.change_status,
        participant_id=participant_id,
        status=status,
        on=day,
        expected_version=expected_version,
    )
    out.print(f"Participant {participant_id} is now {status.value}.")


@fit_job_app.command("add")
def fit_job_add(
    user: AsUser,
    participant_id: int,
    employer: Annotated[str, typer.Option(help="The employer.")],
    kind: Annotated[JobKind, typer.Option(help="Kind of job (decides whether days count).")],
    starts: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")],
    ends: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD.")] = None,
    in_region: Annotated[
        bool, typer.Option("--in-region/--outside-region", help="In Bochum / the Ruhr?")
    ] = True,
    offer: Annotated[int | None, typer.Option(help="The placement offer it came from.")] = None,
    as_json: Json = False,
) -> None:
    """Record a job while studying (working student, internship, assistant job)."""
    from tracker import fit
    from tracker.enums import JOBS_NOT_COUNTED

    with friendly():
        starts_on = _fit_day(starts, "--starts")
        ends_on = _fit_day(ends, "--ends") if ends else None
    job = change(
        user,
        fit.add_job,
        participant_id=participant_id,
        employer=employer,
        kind=kind,
        starts_on=starts_on,
        ends_on=ends_on,
        in_region=in_region,
        offer_id=offer,
    )
    if as_json:
        print_json({"job_id": job.id})
        return
    counts = "do not count" if kind in JOBS_NOT_COUNTED else "count"
    out.print(f"Job {job.id} recorded; its working days {counts} against the yearly limit.")


def _weekdays(first: date, last: date) -> list[date]:
    from datetime import timedelta

    days = (last - first).days + 1
    return [first + timedelta(n) for n in range(days) if (first + timedelta(n)).weekday() < 5]


@fit_app.command("days")
def fit_days(
    user: AsUser,
    job_id: int,
    first: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    last: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD.")],
    half: Annotated[bool, typer.Option("--half", help="Half days (up to four hours).")] = False,
    as_json: Json = False,
) -> None:
    """Record the weekdays from --from to --to as worked (full, or half with --half)."""
    from tracker import fit
    from tracker.errors import ValidationFailed

    with friendly():
        start, end = _fit_day(first, "--from"), _fit_day(last, "--to")
        if end < start:
            raise ValidationFailed("--to lies before --from.")
        days = _weekdays(start, end)
        if not days:
            raise ValidationFailed("There is no weekday from --from to --to.")
    count = change(user, fit.record_work_days, job_id=job_id, days=days, half=half)
    if as_json:
        print_json(
            {
                "recorded": len(days),
                "year": count.year if count else None,
                "used": count.used if count else None,
                "remaining": count.remaining if count else None,
                "warning": count.warning if count else False,
                "over": count.over if count else False,
            }
        )
        return
    kind = "half" if half else "full"
    out.print(f"Recorded {len(days)} {kind} days for job {job_id}.")
    if count is None:
        out.print("This kind of job does not count against the yearly limit.")
        return
    out.print(
        f"{count.year}: {count.used:g} of {count.limit} days used, "
        f"{max(count.remaining, 0):g} left."
    )
    if count.over:
        err.print(
            f"[bold red]Warning:[/] over the limit of {count.limit} days in {count.year}. "
            "The student and the case manager are told (once a year for each level)."
        )
    elif count.warning:
        err.print(
            f"[yellow]Warning:[/] near the limit of {count.limit} days in {count.year}. "
            "The student and the case manager are told (once a year for each level)."
        )


@fit_app.command("count")
def fit_count(
    user: AsUser,
    participant_id: int,
    year: Annotated[int | None, typer.Option(help="Calendar year, default this year.")] = None,
    as_json: Json = False,
) -> None:
    """Working days in a year that count against the limit (140 full or 280 half)."""
    from tracker import clocks
    from tracker.fit import queries as fit_queries

    count = read(
        user,
        fit_queries.work_day_count,
        participant_id=participant_id,
        year=year or clocks.local_today().year,
    )
    if as_json:
        print_json(count)
        return
    out.print(
        f"Participant {participant_id}, {count.year}: {count.used:g} of {count.limit} days "
        f"({count.full} full, {count.half} half), {max(count.remaining, 0):g} left."
    )
    if count.over:
        err.print(f"[bold red]Warning:[/] over the limit of {count.limit} days.")
    elif count.warning:
        err.print(f"[yellow]Warning:[/] near the limit of {count.limit} days.")


@fit_permit_app.command("add")
def fit_permit_add(
    user: AsUser,
    participant_id: int,
    kind: Annotated[PermitKind, typer.Option(help="student (§16b), job_search (§20) or work.")],
    valid_from: Annotated[str, typer.Option("--from", help="Valid from, YYYY-MM-DD.")],
    valid_until: Annotated[
        str | None, typer.Option("--until", help="Valid until, YYYY-MM-DD.")
    ] = None,
) -> None:
    """Record a permit; the student is reminded before it ends."""
    from tracker import fit

    with friendly():
        start = _fit_day(valid_from, "--from")
        until = _fit_day(valid_until, "--until") if valid_until else None
    permit = change(
        user,
        fit.add_permit,
        participant_id=participant_id,
        kind=kind,
        valid_from=start,
        valid_until=until,
    )
    out.print(f"Permit {permit.id} recorded for participant {participant_id}.")
