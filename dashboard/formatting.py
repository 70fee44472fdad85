"""How every page writes dates, times, numbers and data words: in the screen's language (Babel's
formats and names), in the office's time zone, never as raw values (``True``, ``IR``, ``work``,
``2026-12-07T03:00:05``, ``system:advance``)."""

from __future__ import annotations

import re
from datetime import date, datetime, time
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import streamlit as st
from babel import Locale
from babel.dates import format_date, format_skeleton, format_time, get_datetime_format
from babel.numbers import format_decimal

from dashboard.common import _, database_at, lang, require_actor
from tracker.access import actor_for
from tracker.admin import queries as admin_queries
from tracker.config import get_settings

# The locale each screen language formats with: German as written in Germany; English as
# written in Britain (day before month, a 24-hour clock), which reads right in a German office.
LOCALES = {"de": "de_DE", "en": "en_GB"}


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(LOCALES.get(language, LOCALES["de"]))


def locale() -> Locale:
    """The Babel locale of the chosen screen language."""
    return _locale(lang())


def local(moment: datetime) -> datetime:
    """A moment on the office's clock. A moment without a zone is already local time."""
    zone = ZoneInfo(get_settings().timezone)
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)


def _parsed(value: date | datetime | str) -> date | datetime:
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        return datetime.fromisoformat(text) if len(text) > 10 else date.fromisoformat(text)
    return value


def date_text(value: date | datetime | str | None) -> str:
    """A day: ``07.12.2026`` on German screens, ``7 Dec 2026`` on English ones; a moment as the
    office's day; nothing for no date."""
    if value is None or value == "":
        return ""
    day = _parsed(value)
    if isinstance(day, datetime):
        day = local(day).date()
    return format_date(day, "medium", locale=locale())


def time_text(value: datetime | time | str | None) -> str:
    """A time of day on the office's clock: ``04:00``."""
    if value is None or value == "":
        return ""
    moment = _parsed(value) if isinstance(value, str) else value
    if isinstance(moment, datetime):
        moment = local(moment).time()
    elif isinstance(moment, date):
        return ""
    return format_time(moment.replace(tzinfo=None), "short", locale=locale())


def datetime_text(value: datetime | str | None) -> str:
    """A moment as day and time on the office's clock: ``07.12.2026, 04:00``."""
    if value is None or value == "":
        return ""
    moment = _parsed(value)
    if not isinstance(moment, datetime):
        return date_text(moment)
    moment = local(moment)
    pattern = get_datetime_format("medium", locale=locale())
    return str(pattern).replace("{1}", date_text(moment)).replace("{0}", time_text(moment))


def month_text(period: str) -> str:
    """A month given as ``2026-11``: ``November 2026``; a year stays a year."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", period.strip())
    if not match:
        return period
    day = date(int(match[1]), int(match[2]), 1)
    return format_skeleton("yMMMM", day, locale=locale())


def number_text(value: float | int | Decimal | None, *, decimals: int | None = None) -> str:
    """A number as the language writes it: ``1.234`` and ``62,0`` in German. Whole numbers
    without decimals; other numbers with at least one (``62,0``, ``12,5``) unless ``decimals``
    says how many. None is "–" (a figure not shown)."""
    if value is None:
        return "–"
    if decimals is not None:
        pattern = "#,##0" + ("." + "0" * decimals if decimals else "")
    elif isinstance(value, int):
        pattern = "#,##0"
    else:
        pattern = "#,##0.0##"
    return format_decimal(value, format=pattern, locale=locale())


def yes_no(value: object) -> str:
    return _("Yes") if value else _("No")


def country_name(code: str | None) -> str:
    """An ISO 3166 country code as the country's name: ``IR`` is Iran."""
    if not code:
        return ""
    return str(locale().territories.get(code.strip().upper(), code))


def language_name(code: str | None) -> str:
    """A language code as the language's name: ``fa`` is Persisch / Persian."""
    if not code:
        return ""
    name = str(locale().languages.get(code.strip().lower(), code))
    return name[:1].upper() + name[1:]


# Newcomer facts that hold a code or a vocabulary word rather than text someone typed.
_COUNTRY_FIELDS = {"nationality"}
_LANGUAGE_FIELDS = {"preferred_language", "notice_language"}
_WORD_FIELDS = {"purpose", "profile", "pathway"}


def fact_text(field: str, value: Any) -> str:
    """A newcomer's fact as the screen shows it: a date, yes/no, a country or language name,
    a translated vocabulary word; typed text as it is."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return yes_no(value)
    if field in _COUNTRY_FIELDS:
        return country_name(str(value))
    if field in _LANGUAGE_FIELDS:
        return language_name(str(value))
    if field in _WORD_FIELDS:
        return _(str(value))
    if isinstance(value, date | datetime):
        return datetime_text(value) if isinstance(value, datetime) else date_text(value)
    if isinstance(value, int | float | Decimal):
        return number_text(value)
    if field.endswith(("_date", "_expiry")) and isinstance(value, str):
        try:
            return date_text(value)
        except ValueError:
            return value
    return str(value)


def system_text(job: str) -> str:
    """Scheduled work (``system:<job>``) as a label, not a key."""
    names = {
        "advance": _("System (next steps)"),
        "sweep": _("System (clock check)"),
        "digest": _("System (daily digest)"),
        "retention": _("System (retention)"),
        "fit-daily": _("System (FIT@THGA daily run)"),
        "reports": _("System (reports)"),
        "setup": _("System (setup)"),
        "demo": _("System (demo data)"),
    }
    return names.get(job, _("System"))


def run_state_text(state: str) -> str:
    """A Prefect run's state (its own English word) in the screen's language."""
    names = {
        "Completed": _("Completed"),
        "Running": _("Running"),
        "Scheduled": _("Scheduled"),
        "Pending": _("Waiting"),
        "Late": _("Late"),
        "Failed": _("Failed"),
        "Crashed": _("Crashed"),
        "Cancelled": _("Cancelled"),
        "Cancelling": _("Cancelling"),
        "Paused": _("Paused"),
        "AwaitingRetry": _("Waiting to retry"),
        "Retrying": _("Retrying"),
    }
    key = state.strip()
    return names.get(key) or names.get(key.title()) or key


@st.cache_data(ttl=10, show_spinner=False)
def _staff(username: str, url: str) -> dict[str, tuple[str, str | None]]:
    # A few dozen rows, read at most every few seconds; a rename shows within seconds.
    with database_at(url).read() as session:
        names = admin_queries.staff_names(session, actor=actor_for(session, username))
    return {k: (v.display_name, v.organisation_name) for k, v in names.items()}


def staff_names() -> dict[str, tuple[str, str | None]]:
    """Display name and organisation name of every account, by username."""
    return _staff(require_actor().username, get_settings().resolved_database_url)


def person_text(username: str | None, *, organisation: bool = True) -> str:
    """Who did something: a person of staff by display name with the organisation
    (``Sabine Müller · Kommunales Integrationsmanagement Bochum (KIM)``), scheduled work as
    a label (``System (next steps)``); a name no account has any more stays as stored."""
    if not username:
        return ""
    if username.startswith("system:"):
        return system_text(username.removeprefix("system:"))
    found = staff_names().get(username)
    if found is None:
        return username
    name, org = found
    return f"{name} · {org}" if organisation and org else name
