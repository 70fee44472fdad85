"""What every page shares: the database, the signed-in person, translations, running a change."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import streamlit as st

from dashboard.i18n import DEFAULT, gettext_for
from tracker.access import Actor
from tracker.admin import auth
from tracker.clocks import utcnow
from tracker.config import get_settings
from tracker.db import Database, get_database
from tracker.errors import ConcurrentEditError, NotFoundError, PermissionDenied, TrackerError

T = TypeVar("T")
# What the session remembers of the sign-in (st.session_state keys).
SESSION_KEYS = ("username", "signed_in_at", "last_seen", "session_stamp")

# What starts Markdown, an entity (&...;), math ($...$) or HTML anywhere in a line; a backslash
# makes each one literal (CommonMark). With [ and ] escaped, ! and ( ) start nothing; a list
# marker, a quote or a numbered item only counts at the start of the line, escaped there.
_ACTIVE = re.compile(r"([\\`*_~\[\]<&$#])")
_LINE_START = re.compile(r"^(?:([-+>])|(\d+)([.)]))")
# Streamlit rewrites some text after the Markdown is parsed, when a backslash no longer counts:
# web and mail addresses become links (http://, www., a@b), ":streamlit:", ":material_x:" and
# emoji codes become pictures, and a free-standing "->", "--", ">=" ... an arrow or a dash. A
# colon followed by a letter also starts a directive (":red[...]"). An invisible word joiner
# after the character that starts each pattern leaves none of them to match.
_REWRITTEN = re.compile(
    r"(?i)(:(?=[\w+/-])|@(?=[\w-]+\.[\w-])|www(?=\.)|(?<!\S)[-<>~](?=[-=>]{1,2}(?!\S)))"
)
_WORD_JOINER = "\u2060"


def plain(text: object) -> str:
    """Text that people typed, made safe for any Streamlit element that renders Markdown
    (titles, captions, alerts, labels, st.table cells ...): it shows literally, as one line.

    A name such as ``![p](http://host/pixel.png)`` would otherwise load an image in every
    browser that opens the page, and ``[klick](http://host)`` or ``:red[...]`` would become a
    link or coloured text inside a trusted screen. st.text and st.dataframe cells need none.
    """
    if text is None:
        return ""
    line = " ".join(str(text).split())  # a line break or leading spaces start a block
    line = _REWRITTEN.sub(r"\1" + _WORD_JOINER, line)
    line = _ACTIVE.sub(r"\\\1", line)
    return _LINE_START.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", line)


def local_time(moment: datetime | None) -> str:
    """A stored moment as the office's clock shows it (not UTC, not the server's zone), written
    the screen's way (``07.12.2026, 04:00``); dashboard.formatting is the one path."""
    from dashboard.formatting import datetime_text

    return datetime_text(moment)


def lang() -> str:
    return str(st.session_state.get("lang", DEFAULT))


def _is_choice(value: object) -> bool:
    if isinstance(value, bool) or value is None:
        return False  # buttons, checkboxes: nothing is labelled
    if isinstance(value, list | tuple):
        return all(isinstance(v, str | int) and not isinstance(v, bool) for v in value)
    return isinstance(value, str | int | float)


def keep_choices() -> None:
    """When the language is switched: keep every select box's, radio's and multiselect's choice,
    relabelled in the new language.

    Streamlit remembers such a choice by its label, so after a switch the old language's label
    ("alle") would stay chosen and be read back as a value no option has. Setting each choice
    again by its value makes the widget label it anew. Values of widgets that may not be set
    (buttons, uploads, table selections) are no plain choices and stay untouched."""
    for key in list(st.session_state.keys()):
        if key == "lang":
            continue
        value = st.session_state[key]
        if _is_choice(value):
            st.session_state[key] = value


def _(text: str) -> str:
    """Translate a UI string into the chosen language."""
    return str(gettext_for(lang())(text))


# Streamlit's own words, said in the chosen language: every select box and multiselect passes
# placeholder=choose(), every date input format=date_format() (tests/test_dashboard_language.py).
def choose() -> str:
    """What a select box or multiselect shows while nothing is chosen."""
    return _("Choose …")


def date_format() -> str:
    """How a date input writes a day: 07.12.2026 on German screens, 07/12/2026 on English ones
    (British order, as dashboard.formatting writes dates)."""
    return "DD.MM.YYYY" if lang() == "de" else "DD/MM/YYYY"


def database() -> Database:
    return database_at(get_settings().resolved_database_url)


@st.cache_resource
def database_at(url: str) -> Database:
    # One engine per process and database, created on first use, never at import.
    return get_database(url)


@st.cache_resource(show_spinner=False)
def _production_checked(environment: str, url: str, secret: str) -> bool:
    # Once per process and configuration: the demo-password check costs an Argon2 verify.
    # A refusal raises and is not cached, so fixing the setup needs no restart.
    auth.check_production(get_settings(), database_at(url))
    return True


def refuse_unsafe_production() -> None:
    """In production, show why the dashboard may not run and stop before anything renders."""
    settings = get_settings()
    if settings.environment != "production":
        return
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    try:
        _production_checked(
            settings.environment,
            settings.resolved_database_url,
            hashlib.sha256(secret.encode()).hexdigest(),
        )
    except auth.ProductionNotReady as exc:
        st.error(plain(error_text(exc)))
        st.stop()


@st.cache_data(ttl=5, show_spinner=False)
def _actor(username: str, stamp: str, url: str) -> Actor:
    # Briefly cached: a deactivation, lockout, new password or role change made elsewhere ends
    # or changes the session within seconds.
    with database_at(url).read() as session:
        return auth.session_actor(session, username=username, stamp=stamp)


def sign_in_as(actor: Actor, stamp: str | None = None) -> None:
    """Start a session; ``stamp`` is what ``tracker.admin.auth.sign_in`` returned (read if not
    given)."""
    if stamp is None:
        with database().read() as session:
            stamp = auth.stamp_for(session, actor.username)
    now = utcnow()
    st.session_state["username"] = actor.username
    st.session_state["signed_in_at"] = now
    st.session_state["last_seen"] = now
    st.session_state["session_stamp"] = stamp
    st.session_state.pop("session_ended", None)


def sign_out(reason: str | None = None) -> None:
    """End the session; a reason (expired, idle, changed, locked, deactivated) is shown on the
    sign-in page."""
    for key in SESSION_KEYS:
        st.session_state.pop(key, None)
    if reason:
        st.session_state["session_ended"] = reason
    else:
        st.session_state.pop("session_ended", None)


def session_ended_text(reason: str) -> str:
    """Why the sign-in page is shown again, in the chosen language."""
    settings = get_settings()
    if reason == "idle":
        return _(
            "You were signed out after {minutes} minutes without activity. Please sign in again."
        ).format(minutes=f"{settings.session_idle_minutes:g}")
    if reason == "expired":
        return _(
            "Your session ended {hours} hours after you signed in. Please sign in again."
        ).format(hours=f"{settings.session_hours:g}")
    return _(
        "You were signed out because your password or account was changed or locked. "
        "Please sign in again."
    )


def current_actor() -> Actor | None:
    """The signed-in person, re-read from the users table (a role may have changed).

    The session ends (and the sign-in page says why) when it is older than ``session_hours``,
    idle for ``session_idle_minutes``, or the account's password changed, or it was locked or
    deactivated since the sign-in. Each page run counts as activity."""
    username = st.session_state.get("username")
    if not username:
        return None
    now = utcnow()
    state = auth.session_state(
        st.session_state.get("signed_in_at"), st.session_state.get("last_seen"), now
    )
    if state != "valid":
        sign_out(state)
        return None
    url = get_settings().resolved_database_url
    try:
        stamp = st.session_state.get("session_stamp")
        if stamp is None:
            # A session opened without sign_in_as (st.session_state is server-side, so only
            # this app's own code can do that): it takes the credentials as they are now.
            with database_at(url).read() as session:
                stamp = auth.stamp_for(session, username)
            st.session_state["session_stamp"] = stamp
        actor = _actor(username, stamp, url)
    except auth.SessionEnded as exc:
        sign_out(exc.reason)
        return None
    except (NotFoundError, PermissionDenied):
        sign_out("deactivated")
        return None
    st.session_state["last_seen"] = now
    return actor


def require_actor(*roles: str) -> Actor:
    """Stop the page unless someone with one of these roles is signed in."""
    actor = current_actor()
    if actor is None:
        st.warning(_("Please sign in."))
        st.stop()
    assert actor is not None
    if roles and actor.role not in roles:
        st.error(_("This page is not available for your role."))
        st.stop()
    return actor


# Error parameters that are words, by name (tracker/errors.py): shown translated, not raw.
_STEP_PARAMS = {"step"}
_STATE_PARAMS = {"state", "status", "wanted_state"}
_WORD_PARAMS = {"role", "what", "verb", "field"}


def _error_param(name: str, value: Any) -> Any:
    from babel.lists import format_list

    from dashboard.formatting import date_text, locale

    if isinstance(value, tuple | list):  # alternatives: "offered or held"
        words = [str(_error_param(name, v)) for v in value]
        return format_list(words, style="or", locale=locale())
    if isinstance(value, date):
        return date_text(value)
    if name in _STEP_PARAMS:
        return step_title(str(value))
    if name in _STATE_PARAMS:
        word = state_text(str(value))
        return word if word != str(value) else _(str(value))
    if name in _WORD_PARAMS:
        return _(str(value))
    return value


def error_text(exc: TrackerError) -> str:
    """A tracker error in the screen's language: its template translated, its parameters filled
    in (step keys as titles, states and roles as words, dates as the screen writes them)."""
    template = getattr(exc, "template", None)
    params = getattr(exc, "params", None) or {}
    if not template:
        return str(exc)
    try:
        if not params:
            return _(template)
        return _(template).format(**{k: _error_param(k, v) for k, v in params.items()})
    except (KeyError, IndexError, ValueError):  # a translation that does not fit: English
        return str(exc)


def read(fn: Callable[..., T], /, **kwargs: Any) -> T | None:
    """Run a query for the signed-in person; show what went wrong instead of a traceback."""
    actor = require_actor()
    try:
        with database().read() as session:
            return fn(session, actor=actor, **kwargs)
    except PermissionDenied as exc:
        st.error(_("Not allowed:") + " " + plain(error_text(exc)))
    except NotFoundError as exc:
        st.warning(plain(error_text(exc)))
    return None


def change(fn: Callable[..., T], /, *, in_callback: bool = False, **kwargs: Any) -> T | None:
    """Run one tracker service as one transaction; a refusal is shown with what to do next.

    From a widget's callback (``in_callback``), which runs before the page's script, the
    refusal is left for the run that follows (``show_flash``)."""
    actor = require_actor()
    try:
        with database().transaction() as session:
            result = fn(session, actor=actor, **kwargs)
    except ConcurrentEditError:
        refusal = _(
            "Someone else changed this record while you were looking at it. "
            "Nothing was saved. Reload the page to see the current state, then try again."
        )
    except TrackerError as exc:
        refusal = _("Not saved:") + " " + error_text(exc)
    else:
        refusal = ""
    if refusal:
        if in_callback:
            st.session_state["flash"] = ("error", refusal)
        else:
            st.error(plain(refusal))
        return None
    st.cache_data.clear()
    return result


@st.cache_data(ttl=3600, max_entries=1000, show_spinner=False)
def _chart_spec(key: Any, _build: Callable[[], Any]) -> dict[str, Any]:
    return dict(_build().to_dict())


def draw_chart(key: Any, build: Callable[[], Any], *, name: str) -> None:
    """An Altair chart drawn from its Vega-Lite spec, made once per ``key``: everything the chart
    shows (its data and labels, so also the language). Altair builds a chart anew and checks it
    against its schema on every run, about 0.2 s for a journey map, twice per save on the case
    page. ``name`` names the chart for screen readers."""
    st.vega_lite_chart(_chart_spec(key, _build=build), width="stretch", alt=name)


def follow_up(reference: str) -> None:
    """After a change: ask for the case's advance without waiting for it, and say "Saved".

    Inline the advance has run already. With Prefect, a background task opens the next steps
    within a second or so, and a case manager's case page watches for them
    (``watch_advance``); nobody waits in front of a spinner."""
    from tracker.journeys.orchestration import request_advance_soon

    actor = require_actor()
    before: list[str] | None = None
    if actor.manages_cases:
        from tracker.journeys.queries import advance_progress

        with database().read() as session:
            before = advance_progress(session, actor=actor, reference=reference).active
    asked = request_advance_soon(reference, db=database())
    if asked.done() and asked.result().state == "completed":
        st.session_state["flash"] = ("success", _("Saved. The next steps are up to date."))
    else:
        st.session_state["flash"] = ("success", _("Saved."))
        if before is not None:
            st.session_state["advance_watch"] = {
                "reference": reference.strip().upper(),
                "before": before,
                "until": None,  # set once the advance is queued
                "asked": asked,
            }
    st.cache_data.clear()


def watch_advance(reference: str) -> None:
    """On the case page after a save: look every second, for a few seconds, for the steps the
    advance opens, then show the page as it is now with what opened. Nothing is shown while
    waiting but a quiet line, and the page stays usable."""
    watch = st.session_state.get("advance_watch")
    if not watch or watch["reference"] != reference.strip().upper():
        return

    @st.fragment(run_every=1)
    def _look() -> None:
        from tracker.journeys.queries import advance_progress

        watch = st.session_state.get("advance_watch")
        if not watch:
            return
        actor = require_actor()
        with database().read() as session:
            now = advance_progress(session, actor=actor, reference=watch["reference"])
        asked = watch["asked"]
        refused = asked.done() and asked.result().state in ("unreachable", "failed", "crashed")
        if asked.done() and watch["until"] is None:
            # The window opens when the advance is queued: asking a busy Prefect can itself take
            # seconds (its own timeouts bound that). A task worker then takes well under a second,
            # so the window only runs out when no worker is running (the clock sweep then opens
            # the steps) or the workers are far behind.
            watch["until"] = time.monotonic() + get_settings().advance_wait_seconds
        waiting = watch["until"] is None or time.monotonic() < watch["until"]
        if now.pending and not refused and waiting:
            st.caption(_("Opening the next steps …"))
            return
        st.session_state.pop("advance_watch", None)
        if not now.pending:
            opened = [k for k in now.active if k not in watch["before"]]
            message = (
                _("Now open: {steps}").format(steps=", ".join(step_title(k) for k in opened))
                if opened
                else _("The next steps are up to date.")
            )
            st.session_state["flash"] = ("success", message)
        else:
            st.session_state["flash"] = (
                "warning",
                _("Saved. The next steps will open when the scheduler runs again."),
            )
        st.cache_data.clear()
        st.rerun(scope="app")

    _look()


def show_flash() -> None:
    """The message a change left for the next run; it is plain text (names, references and
    error messages in it show literally)."""
    flash = st.session_state.pop("flash", None)
    if flash:
        kind, message = flash
        getattr(st, kind)(plain(message))


def due_text(status: str, due: Any) -> str:
    """A due date with its standing, for active steps only (a finished step is not due)."""
    if not due or status == "none":
        return ""
    names = {
        "overdue": _("overdue"),
        "due_soon": _("due soon"),
        "on_track": _("on track"),
        "none": "",
    }
    from dashboard.formatting import date_text

    return f"{date_text(due)} · {names.get(status, '')}".strip(" ·")


def state_text(state: str) -> str:
    names = {
        "pending": _("pending"),
        "open": _("open"),
        "in_progress": _("in progress"),
        "blocked": _("blocked"),
        "done": _("done"),
        "skipped": _("skipped"),
        "held": _("held (no consent)"),
        "offered": _("offered"),
        "accepted": _("accepted"),
        "declined": _("declined"),
        "returned": _("returned"),
        "completed": _("completed"),
        "withdrawn": _("withdrawn"),
    }
    return names.get(state, state)


def step_title(key: str) -> str:
    """A step's title from the pathway catalogue, in the chosen language."""
    from tracker.pathway import get_registry

    entry = get_registry().catalogue.get(key)
    if entry is None:
        return key
    return entry.title.de if lang() == "de" else entry.title.en


VIEWS = __import__("pathlib").Path(__file__).parent / "views"


def page(name: str, title: str | None = None, *, default: bool = False) -> st.Page:
    """A page of the app; the same definition is used by the navigation and by `go`."""
    return st.Page(VIEWS / f"{name}.py", title=title, url_path=name, default=default)


def go(name: str) -> None:
    st.switch_page(page(name))


def seen_versions(kind: str) -> dict[str, int]:
    """The record versions the person saw on the previous screen (their edits are based on it).

    Each click reruns the page, and the page reads the database again before it acts. Using
    the versions from the screen the person actually looked at is what lets a stale edit be
    refused instead of silently applied on top of someone else's change.
    """
    return dict(st.session_state.get(f"seen:{kind}", {}))


def remember_versions(kind: str, versions: dict[str, int]) -> None:
    st.session_state[f"seen:{kind}"] = versions
