"""What every page shares: the database, the signed-in person, translations, running a change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import streamlit as st

from dashboard.i18n import DEFAULT, gettext_for
from tracker.access import Actor, actor_for
from tracker.config import get_settings
from tracker.db import Database, get_database
from tracker.errors import ConcurrentEditError, NotFoundError, PermissionDenied, TrackerError

T = TypeVar("T")
SESSION_HOURS = 8


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


@st.cache_data(ttl=5, show_spinner=False)
def _actor(username: str, url: str) -> Actor:
    # Briefly cached: a deactivation or role change made elsewhere applies within seconds.
    with _database(url).read() as session:
        return actor_for(session, username)


def sign_in_as(actor: Actor) -> None:
    st.session_state["username"] = actor.username
    st.session_state["signed_in_at"] = datetime.now(UTC)


def sign_out() -> None:
    for key in ("username", "signed_in_at"):
        st.session_state.pop(key, None)


def current_actor() -> Actor | None:
    """The signed-in person, re-read from the users table (a role may have changed)."""
    username = st.session_state.get("username")
    if not username:
        return None
    signed_in = st.session_state.get("signed_in_at")
    if signed_in is None or datetime.now(UTC) - signed_in > timedelta(hours=SESSION_HOURS):
        sign_out()
        st.session_state["expired"] = True
        return None
    try:
        return _actor(username, get_settings().resolved_database_url)
    except (NotFoundError, PermissionDenied):
        sign_out()
        return None


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
