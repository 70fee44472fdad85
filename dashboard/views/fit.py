"""FIT@THGA: the talent programme's figures, its participants and its offers, for programme staff.

Programme staff are THGA's partner agents, case managers and admins (the service layer's
`require_programme_staff`); leadership sees the programme as aggregates on Outcomes and Reports.
Every change is one `tracker.fit` service call through `change`; every read is one
`tracker.fit.queries` function, which checks the actor first and returns plain data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, NoReturn
from zoneinfo import ZoneInfo

import streamlit as st

from dashboard.common import (
    _,
    change,
    choose,
    database,
    database_at,
    date_format,
    follow_up,
    lang,
    local_time,
    plain,
    remember_versions,
    require_actor,
    seen_versions,
    show_flash,
)
from dashboard.formatting import date_text, number_text, time_text
from dashboard.lists import page_window, pager
from tracker import fit
from tracker.access import Actor, figure_scope
from tracker.audit import data_version
from tracker.clocks import local_today
from tracker.config import get_settings
from tracker.enums import (
    PLACE_HOLDING,
    ContactKind,
    FitChannel,
    FitStatus,
    JobKind,
    OfferKind,
    OfferStatus,
    PermitKind,
    RegistrationStatus,
)
from tracker.errors import PermissionDenied
from tracker.fit import queries as fit_queries

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def word(value: str) -> str:
    """The programme's data words (enum values) in the chosen language."""
    return _words(lang()).get(value, value)


@functools.cache
def _words(language: str) -> dict[str, str]:
    """Built once per run and language (this page runs anew each time): a table of thousands
    of rows asks for a word per cell, and each ``_`` reads the session's language."""
    return {
        # FitChannel
        "orientation_week": _("orientation week"),
        "international_office": _("International Office"),
        "lecturer": _("lecturer"),
        "fellow_student": _("fellow student"),
        "welcome_office": _("Welcome Office"),
        "social_media": _("social media"),
        "other": _("other"),
        # FitStatus
        "enrolled": _("enrolled"),
        "graduated": _("graduated"),
        "dropped_out": _("dropped out"),
        "withdrawn": _("left the programme"),
        # OfferKind
        "application_training": _("application training"),
        "salary_training": _("salary negotiation training"),
        "work_culture_seminar": _("seminar on German work culture"),
        "excursion": _("excursion or company visit"),
        "job_fair": _("job fair"),
        "working_student_placement": _("working-student placement"),
        # JobKind
        "working_student": _("working student"),
        "voluntary_internship": _("voluntary internship"),
        "mandatory_internship": _("mandatory internship"),
        "university_assistant": _("university assistant job"),
        # ContactKind
        "company_visit": _("company visit"),
        "job_fair_talk": _("talk at a job fair"),
        "application": _("application"),
        "interview": _("interview"),
        "mentoring": _("mentoring"),
        # PermitKind
        "student": _("student permit (§16b)"),
        "job_search": _("job-search permit (§20)"),
        "work": _("work permit (§18b / Blue Card)"),
    }


def offer_state(value: str) -> str:
    states = {"planned": _("planned"), "held": _("held"), "cancelled": _("called off")}
    return states.get(value, value)


def registration_state(value: str) -> str:
    states = {
        "registered": _("has a place"),
        "waitlisted": _("waiting list"),
        "cancelled": _("deregistered"),
        "attended": _("attended"),
        "no_show": _("did not come"),
    }
    return states.get(value, value)


def _zone() -> ZoneInfo:
    return ZoneInfo(get_settings().timezone)


def days_text(days: float) -> str:
    """Working days as the language writes them: 12, 12,5."""
    return number_text(int(days) if days == int(days) else days)


def days_used(count: fit_queries.DayCountView) -> str:
    """Days used of the limit (e.g. 12,5 / 140), marked when near or over it."""
    return f"{days_text(count.used)} / {count.limit}" + (" ⚠" if count.warning else "")


def weekdays(first: date, last: date) -> list[date]:
    """Monday to Friday from ``first`` to ``last``, both included."""
    span = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [d for d in span if d.weekday() < 5]


def record_days(session: Session, *, actor: Actor, **kwargs: Any) -> tuple[fit.DayCount | None]:
    """`record_work_days` answers None for a job that does not count against the limit; the
    tuple tells that apart from a refusal, for which `change` answers None."""
    return (fit.record_work_days(session, actor=actor, **kwargs),)


def done(message: str, kind: str = "success") -> NoReturn:
    """After a change: say what happened, and show the new state."""
    st.session_state["flash"] = (kind, message)
    st.rerun()


def save(fn: Callable[..., object], /, **kwargs: Any) -> None:
    """One service call as one transaction; a refusal stays on screen with its reason."""
    if change(fn, **kwargs) is not None:
        done(_("Saved."))


# Figures and offers name nobody: they are cached by what they depend on about the viewer
# (role and organisation: ``figure_scope``) and by the data's version, so a change shows on the
# next run, from whichever process made it, and one scope's figures never reach another's. The
# actor itself is not part of the key (``_actor``); every viewer of a scope gets the same.
Scope = tuple[str, int | None]


@st.cache_data(ttl=300, max_entries=100, show_spinner=False)
def cached_years(scope: Scope, version: str, url: str, this_year: int, _actor: Actor) -> list[int]:
    with database_at(url).read() as session:
        return fit_queries.programme_years(session, actor=_actor)


@st.cache_data(ttl=300, max_entries=100, show_spinner=False)
def cached_counts(
    scope: Scope, version: str, url: str, year: int, _actor: Actor
) -> fit_queries.ProgrammeCounts:
    with database_at(url).read() as session:
        return fit_queries.programme_counts(session, actor=_actor, year=year)


@st.cache_data(ttl=300, max_entries=100, show_spinner=False)
def cached_warnings(
    scope: Scope, version: str, url: str, year: int, _actor: Actor
) -> dict[int, fit_queries.DayCountView]:
    with database_at(url).read() as session:
        return fit_queries.day_limit_warnings(session, actor=_actor, year=year)


@st.cache_data(ttl=300, max_entries=100, show_spinner=False)
def cached_offers(
    scope: Scope, version: str, url: str, _actor: Actor
) -> list[fit_queries.OfferRow]:
    with database_at(url).read() as session:
        return fit_queries.offers(session, actor=_actor, latest_first=True)


actor = require_actor("partner_agent", "case_manager", "admin")
try:
    fit.require_programme_staff(actor, "use the FIT@THGA page")
except PermissionDenied:
    # Other partners do not run the programme; the services and reads refuse them anyway.
    st.error(_("This page is not available for your role."))
    st.stop()

show_flash()
today = local_today()
zone = _zone()
prev_participants = seen_versions("fit-participants")
prev_offers = seen_versions("fit-offers")

st.title(_("FIT@THGA"))
st.caption(_("The talent programme: its figures, its participants and its offers."))

url = get_settings().resolved_database_url
scope = figure_scope(actor)
with database().read() as session:
    version = data_version(session)
years = cached_years(scope, version, url, today.year, actor)
year = int(
    st.selectbox(
        _("Year"), years, index=years.index(today.year), key="fit_year", placeholder=choose()
    )
    or today.year
)
figures = cached_counts(scope, version, url, year, actor)

tiles = st.columns(5)
tiles[0].metric(_("Enrolled"), figures.enrolled)
tiles[1].metric(_("Offers held"), figures.offers_held)
tiles[2].metric(_("Attended"), figures.attended)
tiles[3].metric(_("No-shows"), figures.no_show)
tiles[4].metric(_("Company contacts"), figures.company_contacts)
tiles = st.columns(5)
tiles[0].metric(_("Working-student jobs"), figures.working_student_jobs)
tiles[1].metric(_("Graduates"), figures.graduated)
tiles[2].metric(_("Dropouts"), figures.dropped_out)
tiles[3].metric(_("Job entries"), figures.job_entries)

# Only the open tab is drawn (``on_change="rerun"``): a hidden tab reads nothing.
tab_people, tab_offers, tab_enrol = st.tabs(
    [_("Participants"), _("Offers"), _("Enrol")], key="fit_tabs", on_change="rerun"
)
PEOPLE = "fit_people"  # the participant list's paging state
participants: list[fit_queries.ParticipantRow] = []
by_id: dict[int, fit_queries.ParticipantRow] = {}


def person(participant_id: int) -> str:
    return f"{by_id[participant_id].name} · {by_id[participant_id].reference}"


# --- Participants: the table, and what happened to one of them ----------------------------------

with tab_people:
    days: dict[int, fit_queries.DayCountView] = {}
    near: list[fit_queries.ParticipantRow] = []
    total, search = 0, ""
    if tab_people.open:
        search = st.text_input(
            _("Search name or reference"), key="fit_search", placeholder=_("Name or case number")
        ).strip()
        # One page of the list, with its days: thousands of participants are never read at once.
        with database().read() as session:
            total = fit_queries.count_participants(session, actor=actor, search=search or None)
            offset, limit = page_window(PEOPLE, total, filters=search)
            participants = fit_queries.participants(
                session,
                actor=actor,
                order="name",
                search=search or None,
                limit=limit,
                offset=offset,
            )
            days = fit_queries.day_counts(
                session, actor=actor, year=year, participant_ids=[p.id for p in participants]
            )
            # Who is near the limit is counted over everyone (cached); only they are named.
            warned = cached_warnings(scope, version, url, year, actor)
            if warned:
                near = fit_queries.participants(
                    session, actor=actor, order="name", ids=list(warned)
                )
        by_id = {p.id: p for p in participants}
        remember_versions("fit-participants", {str(p.id): p.version for p in participants})
    days_column = _("Days worked {year}").format(year=year)
    st.dataframe(
        [
            {
                _("Name"): p.name,
                _("Reference"): p.reference,
                _("Study programme"): p.study_programme,
                _("Semester"): p.semester,
                _("Channel"): word(p.channel),
                _("Status"): word(p.status) + (f" ({date_text(p.ended_on)})" if p.ended_on else ""),
                _("Enrolled on"): date_text(p.enrolled_on),
                days_column: days_used(days[p.id]),
                _("Job entry"): (
                    f"{p.job_employer} ({date_text(p.job_started_on)})" if p.job_employer else ""
                ),
            }
            for p in participants
        ],
        hide_index=True,
        width="stretch",
        key="fit_people_table",
    )
    pager(PEOPLE, total, len(participants))
    if near:
        st.warning(
            _("Near or over the limit of {limit} working days in {year}:").format(
                limit=fit.DAY_LIMIT, year=year
            )
            + " "
            + ", ".join(f"{plain(p.name)} ({days_text(warned[p.id].used)})" for p in near)
        )
    if not tab_people.open:
        pass  # drawn when the tab is opened
    elif not participants:
        st.info(
            _("None match.")
            if search
            else _("No participants yet: enrol a student in the Enrol tab.")
        )
    else:
        pid = int(
            st.selectbox(
                _("Participant"),
                list(by_id),
                format_func=person,
                key="fit_participant",
                placeholder=choose(),
            )
            or participants[0].id
        )
        chosen = by_id[pid]

        with st.expander(_("Status"), expanded=False), st.form("fit_form_status"):
            cols = list(st.columns(2))
            status = cols[0].selectbox(
                _("New status"),
                [
                    FitStatus.graduated,
                    FitStatus.dropped_out,
                    FitStatus.withdrawn,
                    FitStatus.enrolled,
                ],
                index=None,  # nothing preset: a status is a decision, never a default
                format_func=word,
                key="fit_status",
                placeholder=choose(),
            )
            status_on = cols[1].date_input(
                _("On"), value=today, key="fit_status_on", format=date_format()
            )
            if st.form_submit_button(_("Save status"), key="fit_status_submit"):
                if status is None:
                    st.warning(_("Choose the new status first."))
                else:
                    save(
                        fit.change_status,
                        participant_id=pid,
                        status=status,
                        on=status_on,
                        expected_version=prev_participants.get(str(pid), chosen.version),
                    )

        with st.expander(_("Job entry"), expanded=False), st.form("fit_form_job_entry"):
            cols = list(st.columns(3))
            employer = cols[0].text_input(_("Employer"), key="fit_entry_employer")
            started_on = cols[1].date_input(
                _("Started on"), value=today, key="fit_entry_on", format=date_format()
            )
            in_region = cols[2].checkbox(
                _("In Bochum / the Ruhr"), value=True, key="fit_entry_region"
            )
            if st.form_submit_button(_("Save job entry"), key="fit_entry_submit"):
                save(
                    fit.record_job_entry,
                    participant_id=pid,
                    employer=employer,
                    started_on=started_on,
                    in_region=in_region,
                )

        with st.expander(_("Company contact"), expanded=False), st.form("fit_form_contact"):
            cols = list(st.columns(3))
            company = cols[0].text_input(_("Company"), key="fit_contact_company")
            contact_kind = cols[1].selectbox(
                _("Kind"),
                list(ContactKind),
                format_func=word,
                key="fit_contact_kind",
                placeholder=choose(),
            )
            contact_on = cols[2].date_input(
                _("On"), value=today, max_value=today, key="fit_contact_on", format=date_format()
            )
            if st.form_submit_button(_("Add contact"), key="fit_contact_submit"):
                save(
                    fit.add_contact,
                    participant_id=pid,
                    company=company,
                    kind=contact_kind,
                    contact_on=contact_on,
                )

        with st.expander(_("Jobs and working days"), expanded=False):
            with database().read() as session:
                jobs = {j.id: j for j in fit_queries.jobs(session, actor=actor, participant_id=pid)}
            if jobs:
                st.dataframe(
                    [
                        {
                            _("Employer"): j.employer,
                            _("Kind"): word(j.kind),
                            _("From"): date_text(j.starts_on),
                            _("Until"): date_text(j.ends_on),
                            _("Full days"): j.full_days,
                            _("Half days"): j.half_days,
                        }
                        for j in jobs.values()
                    ],
                    hide_index=True,
                    width="stretch",
                    key="fit_jobs_table",
                )
            st.caption(
                _(
                    "{used} of {limit} days used in {year}: two half days count as one; "
                    "mandatory internships and university assistant jobs do not count."
                ).format(used=days_text(days[pid].used), limit=days[pid].limit, year=year)
            )
            with st.form("fit_form_job"):
                cols = list(st.columns(3))
                job_employer = cols[0].text_input(_("Employer"), key="fit_job_employer")
                job_kind = cols[1].selectbox(
                    _("Kind"),
                    list(JobKind),
                    format_func=word,
                    key="fit_job_kind",
                    placeholder=choose(),
                )
                job_region = cols[2].checkbox(
                    _("In Bochum / the Ruhr"), value=True, key="fit_job_region"
                )
                cols = list(st.columns(2))
                job_from = cols[0].date_input(
                    _("From"), value=today, key="fit_job_from", format=date_format()
                )
                job_until = cols[1].date_input(
                    _("Until (empty: open-ended)"),
                    value=None,
                    key="fit_job_until",
                    format=date_format(),
                )
                if st.form_submit_button(_("Add job"), key="fit_job_submit"):
                    save(
                        fit.add_job,
                        participant_id=pid,
                        employer=job_employer,
                        kind=job_kind,
                        starts_on=job_from,
                        ends_on=job_until,
                        in_region=job_region,
                    )
            if jobs:
                with st.form("fit_form_days"):
                    job_id = st.selectbox(
                        _("Job"),
                        list(jobs),
                        format_func=lambda i: f"{jobs[i].employer} · {word(jobs[i].kind)}",
                        key=f"fit_days_job_{pid}",
                        placeholder=choose(),
                    )
                    cols = list(st.columns(3))
                    days_from = cols[0].date_input(
                        _("From"),
                        value=today,
                        max_value=today,
                        key="fit_days_from",
                        format=date_format(),
                    )
                    days_until = cols[1].date_input(
                        _("Until"),
                        value=today,
                        max_value=today,
                        key="fit_days_until",
                        format=date_format(),
                    )
                    half = cols[2].checkbox(_("Half days"), key="fit_days_half")
                    st.caption(_("Records every weekday (Monday to Friday) in the range."))
                    if st.form_submit_button(_("Record days"), key="fit_days_submit"):
                        worked = weekdays(days_from, days_until)
                        if not worked:
                            st.error(
                                _("Not saved:") + " " + _("There is no weekday in that range.")
                            )
                        elif (
                            result := change(record_days, job_id=job_id, days=worked, half=half)
                        ) is not None:
                            count = result[0]
                            if count is None:
                                done(_("Saved. These days do not count against the limit."))
                            done(
                                _("Saved. Days used in {year}: {used} of {limit}.").format(
                                    year=count.year, used=days_text(count.used), limit=count.limit
                                ),
                                "warning" if count.warning else "success",
                            )

        with st.expander(_("Permit"), expanded=False), st.form("fit_form_permit"):
            cols = list(st.columns(3))
            permit_kind = cols[0].selectbox(
                _("Kind"),
                list(PermitKind),
                format_func=word,
                key="fit_permit_kind",
                placeholder=choose(),
            )
            valid_from = cols[1].date_input(
                _("Valid from"), value=today, key="fit_permit_from", format=date_format()
            )
            valid_until = cols[2].date_input(
                _("Valid until"), value=None, key="fit_permit_until", format=date_format()
            )
            if st.form_submit_button(_("Add permit"), key="fit_permit_submit"):
                save(
                    fit.add_permit,
                    participant_id=pid,
                    kind=permit_kind,
                    valid_from=valid_from,
                    valid_until=valid_until,
                )

# --- Offers: the list, a new one, and one offer's registrations -------------------------------

with tab_offers:
    offers = cached_offers(scope, version, url, actor) if tab_offers.open else []
    if tab_offers.open:
        remember_versions("fit-offers", {str(o.id): o.version for o in offers})
    st.dataframe(
        [
            {
                _("Kind"): word(o.kind),
                _("Title"): o.title,
                _("Date"): local_time(o.starts_at),
                _("Place"): o.place,
                _("Capacity"): o.capacity,
                _("Registered"): o.places_taken,
                _("Waiting list"): o.waitlisted,
                _("Status"): offer_state(o.status),
            }
            for o in offers
        ],
        hide_index=True,
        width="stretch",
        key="fit_offers_table",
    )

    with st.expander(_("New offer"), expanded=not offers), st.form("fit_form_offer"):
        cols = list(st.columns(2))
        offer_kind = cols[0].selectbox(
            _("Kind"), list(OfferKind), format_func=word, key="fit_offer_kind", placeholder=choose()
        )
        offer_title = cols[1].text_input(_("Title"), key="fit_offer_title")
        cols = list(st.columns(3))
        offer_day = cols[0].date_input(
            _("Date"), value=today, key="fit_offer_day", format=date_format()
        )
        offer_start = cols[1].time_input(_("From"), value=time(10, 0), key="fit_offer_start")
        offer_end = cols[2].time_input(_("Until"), value=time(12, 0), key="fit_offer_end")
        cols = list(st.columns(3))
        offer_place = cols[0].text_input(_("Place"), key="fit_offer_place")
        offer_capacity = cols[1].number_input(
            _("Places"), min_value=1, max_value=10_000, value=20, step=1, key="fit_offer_capacity"
        )
        offer_company = cols[2].text_input(_("Company (optional)"), key="fit_offer_company")
        if st.form_submit_button(_("Create offer"), key="fit_offer_submit"):
            save(
                fit.create_offer,
                kind=offer_kind,
                title=offer_title,
                starts_at=datetime.combine(offer_day, offer_start or time(0), tzinfo=zone),
                ends_at=datetime.combine(offer_day, offer_end or time(0), tzinfo=zone),
                place=offer_place,
                capacity=int(offer_capacity),
                company=offer_company or None,
            )

    if offers:
        offers_by_id = {o.id: o for o in offers}
        oid = int(
            st.selectbox(
                _("Offer"),
                list(offers_by_id),
                # Date and title only: a label that changes with the offer's state would leave
                # the chosen option showing the old one.
                format_func=lambda i: (
                    f"{local_time(offers_by_id[i].starts_at)} · {offers_by_id[i].title}"
                ),
                key="fit_offer",
                placeholder=choose(),
            )
            or offers[0].id
        )
        offer = offers_by_id[oid]
        with database().read() as session:
            registrations = fit_queries.registrations(session, actor=actor, offer_id=oid)
        # Title, place and company were typed: plain() keeps them text in the Markdown line.
        st.markdown(
            f"**{plain(offer.title)}** · {word(offer.kind)} · {local_time(offer.starts_at)}–"
            f"{time_text(offer.ends_at)} · {plain(offer.place)}"
            + (f" · {plain(offer.company)}" if offer.company else "")
        )
        st.caption(
            _("{registered} of {capacity} places taken, {waiting} on the waiting list.").format(
                registered=offer.places_taken, capacity=offer.capacity, waiting=offer.waitlisted
            )
        )
        if registrations:
            st.dataframe(
                [
                    {
                        _("Name"): r.name,
                        _("Reference"): r.reference,
                        _("Status"): registration_state(r.status),
                        _("Registered on"): local_time(r.registered_at),
                    }
                    for r in registrations
                ],
                hide_index=True,
                width="stretch",
                key=f"fit_registrations_{oid}",
            )
        else:
            st.caption(_("Nobody has registered yet."))

        enrolled: list[int] = []
        if offer.status == OfferStatus.planned:
            with database().read() as session:
                by_id = {
                    p.id: p
                    for p in fit_queries.participants(
                        session, actor=actor, status=FitStatus.enrolled, order="name"
                    )
                }
            enrolled = list(by_id)
        if offer.status == OfferStatus.planned and enrolled:
            with st.form(f"fit_form_register_{oid}"):
                who = st.selectbox(
                    _("Participant"),
                    enrolled,
                    format_func=person,
                    key=f"fit_register_who_{oid}",
                    placeholder=choose(),
                )
                if st.form_submit_button(_("Register"), key=f"fit_register_submit_{oid}"):
                    made = change(fit.register, offer_id=oid, participant_id=who)
                    if made is not None and who is not None:
                        if made.status == RegistrationStatus.registered:
                            done(_("{name} has a place.").format(name=by_id[who].name))
                        done(
                            _("The offer is full: {name} is on the waiting list.").format(
                                name=by_id[who].name
                            ),
                            "info",
                        )

        active = {
            r.id: r
            for r in registrations
            if r.status in (RegistrationStatus.registered, RegistrationStatus.waitlisted)
        }
        if active:
            with st.form(f"fit_form_unregister_{oid}"):
                cols = list(st.columns(2))
                registration_id = cols[0].selectbox(
                    _("Registration"),
                    list(active),
                    # The name only: a label that changes with the state (a place freed up)
                    # would no longer match the option chosen on the screen.
                    format_func=lambda i: active[i].name,
                    key=f"fit_unregister_which_{oid}",
                    placeholder=choose(),
                )
                why = cols[1].text_input(_("Reason"), key=f"fit_unregister_reason_{oid}")
                if st.form_submit_button(
                    _("Cancel registration"), key=f"fit_unregister_submit_{oid}"
                ):
                    save(
                        fit.cancel_registration,
                        registration_id=registration_id,
                        reason=why.strip() or "cancelled by the student",
                    )

        holding = {str(s) for s in PLACE_HOLDING}
        holders = {r.participant_id: r.name for r in registrations if r.status in holding}
        if holders and offer.status != OfferStatus.cancelled:
            with st.form(f"fit_form_attendance_{oid}"):
                came = st.multiselect(
                    _("Attended"),
                    list(holders),
                    default=[
                        r.participant_id
                        for r in registrations
                        if r.status == RegistrationStatus.attended
                    ],
                    format_func=holders.__getitem__,
                    key=f"fit_attended_{oid}",
                    placeholder=choose(),
                )
                st.caption(_("Everyone else with a place is recorded as not having come."))
                if st.form_submit_button(_("Save attendance"), key=f"fit_attendance_submit_{oid}"):
                    save(fit.record_attendance, offer_id=oid, attended=came)

        if offer.status == OfferStatus.planned:
            with st.form(f"fit_form_capacity_{oid}"):
                capacity = st.number_input(
                    _("Places"),
                    min_value=1,
                    max_value=10_000,
                    value=offer.capacity,
                    step=1,
                    key=f"fit_capacity_{oid}",
                )
                if st.form_submit_button(_("Change places"), key=f"fit_capacity_submit_{oid}"):
                    save(
                        fit.change_capacity,
                        offer_id=oid,
                        capacity=int(capacity),
                        expected_version=prev_offers.get(str(oid), offer.version),
                    )
            with st.form(f"fit_form_cancel_{oid}"):
                reason = st.text_input(_("Reason"), key=f"fit_cancel_reason_{oid}")
                if st.form_submit_button(_("Cancel offer"), key=f"fit_cancel_submit_{oid}"):
                    save(fit.cancel_offer, offer_id=oid, reason=reason)

# --- Enrol: a student of a case joins the programme -------------------------------------------

with tab_enrol:
    st.caption(
        _(
            "Enrolling records the case's FIT@THGA step as done; THGA needs the accepted "
            "handoff (and so the student's consent)."
        )
    )
    with st.form("fit_form_enrol"):
        cols = list(st.columns(2))
        reference = cols[0].text_input(_("Case reference"), key="fit_enrol_reference")
        channel = cols[1].selectbox(
            _("Channel"),
            list(FitChannel),
            format_func=word,
            key="fit_enrol_channel",
            placeholder=choose(),
        )
        cols = list(st.columns(3))
        programme = cols[0].text_input(_("Study programme"), key="fit_enrol_programme")
        semester = cols[1].number_input(
            _("Semester"), min_value=1, max_value=20, value=1, step=1, key="fit_enrol_semester"
        )
        enrolled_on = cols[2].date_input(
            _("Enrolled on"), value=today, max_value=today, key="fit_enrol_on", format=date_format()
        )
        if st.form_submit_button(_("Enrol"), key="fit_enrol_submit"):
            ref = reference.strip().upper()
            if (
                change(
                    fit.enrol,
                    reference=ref,
                    channel=channel,
                    study_programme=programme,
                    semester=int(semester),
                    enrolled_on=enrolled_on,
                )
                is not None
            ):
                follow_up(ref)  # the case's next steps may open now; it sets the message
                st.rerun()
