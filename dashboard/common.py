"""What every page shares: the database, the signed-in person, translations, running a change."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import streamlit as st

from dashboard.i18n import DEFAULT, gettext_for
from tracker import auth
from tracker.access import Actor
from tracker.config import get_settings
from tracker.db import Database, get_database
from tracker.errors import ConcurrentEditError, NotFoundError, PermissionDenied, TrackerError

T = TypeVar("T")
# What the session remembers of the sign-in (st.session_state keys).
SESSION_KEYS = ("username", "signed_in_at", "last_seen", "session_stamp")


def lang() -> str:
    return str(st.session_state.get("lang", DEFAULT))


def _(text: str) -> str:
    """Translate a UI string into the chosen language."""
    return str(gettext_for(lang())(text))


def database() -> Database:
    return _database(get_settings().resolved_database_url)


@st.cache_resource
def _database(url: str) -> Database:
    # One engine per process and database, created on first use, never at import.
    return get_database(url)


@st.cache_resource(show_spinner=False)
def _production_checked(environment: str, url: str, secret: str) -> bool:
    # Once per process and configuration: the demo-password check costs an Argon2 verify.
    # A refusal raises and is not cached, so fixing the setup needs no restart.
    auth.check_production(get_settings(), _database(url))
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
        st.error(str(exc))
        st.stop()


@st.cache_data(ttl=5, show_spinner=False)
def _actor(username: str, stamp: str, url: str) -> Actor:
    # Briefly cached: a deactivation, lockout, new password or role change made elsewhere ends
    # or changes the session within seconds.
    with _database(url).read() as session:
        return auth.session_actor(session, username=username, stamp=stamp)


def sign_in_as(actor: Actor, stamp: str | None = None) -> None:
    """Start a session; ``stamp`` is what ``tracker.auth.sign_in`` returned (read if not given)."""
    if stamp is None:
        with database().read() as session:
            stamp = auth.stamp_for(session, actor.username)
    now = datetime.now(UTC)
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
    now = datetime.now(UTC)
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
            with _database(url).read() as session:
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


def read(fn: Callable[..., T], /, **kwargs: Any) -> T | None:
    """Run a query for the signed-in person; show what went wrong instead of a traceback."""
    actor = require_actor()
    try:
        with database().read() as session:
            return fn(session, actor=actor, **kwargs)
    except PermissionDenied as exc:
        st.error(_("Not allowed:") + f" {exc}")
    except NotFoundError as exc:
        st.warning(str(exc))
    return None


def change(fn: Callable[..., T], /, **kwargs: Any) -> T | None:
    """Run one tracker service as one transaction; a refusal is shown with what to do next."""
    actor = require_actor()
    try:
        with database().transaction() as session:
            result = fn(session, actor=actor, **kwargs)
    except ConcurrentEditError:
        st.error(
            _(
                "Someone else changed this record while you were looking at it. "
                "Nothing was saved. Reload the page to see the current state, then try again."
            )
        )
        return None
    except TrackerError as exc:
        st.error(_("Not saved:") + f" {exc}")
        return None
    st.cache_data.clear()
    return result


def follow_up(reference: str) -> None:
    """After a change: ask for the case's advance (a Prefect run) and say how it went."""
    from tracker.orchestration import request_advance

    wait = min(get_settings().advance_wait_seconds, 10)
    request = request_advance([reference], wait=wait, db=database())
    if request.state == "completed":
        st.session_state["flash"] = ("success", _("Saved. The next steps are up to date."))
    elif request.state in ("unreachable", "failed", "crashed"):
        st.session_state["flash"] = (
            "warning",
            _("Saved. The next steps will open when the scheduler runs again.")
            + f" ({request.message})",
        )
    else:
        st.session_state["flash"] = ("info", _("Saved. The next steps are being opened …"))
    st.cache_data.clear()


def show_flash() -> None:
    flash = st.session_state.pop("flash", None)
    if flash:
        kind, message = flash
        getattr(st, kind)(message)


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
    return f"{due} · {names.get(status, '')}".strip(" ·")


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
