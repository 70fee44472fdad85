"""Signing in: local accounts with Argon2 hashes and a lockout, or an identity provider's e-mail;
the rules that end a session; and the checks a production start must pass."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, inspect, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, actor_for
from tracker.admin.passwords import hash_password, verify_password
from tracker.clocks import utcnow
from tracker.config import Settings, get_settings
from tracker.errors import N_, TrackerError
from tracker.models import User

if TYPE_CHECKING:
    from tracker.db import Database

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verifying against a real hash for unknown users keeps the answer time the same, so the
    # sign-in form does not reveal which usernames exist. Made on first use, not at import.
    return hash_password("no-such-user-placeholder")


class SignInFailed(TrackerError):
    """The one message a person sees for any failed sign-in (the screen translates it)."""


WRONG = N_("Wrong username or password.")


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in. Failures are returned, not raised, so that the caller commits
    the failure count and its audit event. ``stamp`` identifies the credentials signed in with
    (see ``session_stamp``); ``error`` says why a sign-in failed (``str`` of it in English)."""

    actor: Actor | None
    error: SignInFailed | None = None
    stamp: str | None = None


def sign_in(
    session: Session, *, username: str, password: str, now: datetime | None = None
) -> SignIn:
    """Check a username and password; repeated failures lock the account for a while."""
    now = now or utcnow()
    name = (username or "").strip().lower()
    # The row stays locked until the caller commits: concurrent attempts on one account are
    # counted one after the other (PostgreSQL; SQLite's writer transactions are serial anyway),
    # so a storm of parallel guesses cannot get past the lockout or lose failure counts.
    user = session.scalars(
        select(User).where(func.lower(User.username) == name).with_for_update()
    ).one_or_none()
    if user is None or not user.active:
        verify_password(_dummy_hash(), password or "")
        return SignIn(None, SignInFailed(WRONG))
    if user.locked_until is not None and user.locked_until > now:
        minutes = max(1, int((user.locked_until - now).total_seconds() // 60) + 1)
        return SignIn(
            None,
            SignInFailed(
                "Too many failed attempts: try again in {minutes} minutes.", minutes=minutes
            ),
        )
    if not verify_password(user.password_hash, password or ""):
        user.failed_logins = (user.failed_logins or 0) + 1
        locked = user.failed_logins >= MAX_FAILURES
        if locked:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
        audit.record(
            session,
            actor=Actor(username=user.username, role=user.role, user_id=user.id),
            action="user.locked" if locked else "user.sign_in_failed",
            entity_type="user",
            entity_id=user.id,
            now=now,
        )
        session.flush()
        return SignIn(None, SignInFailed(WRONG))
    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    audit.record(
        session,
        actor=Actor(username=user.username, role=user.role, user_id=user.id),
        action="user.signed_in",
        entity_type="user",
        entity_id=user.id,
        now=now,
    )
    session.flush()
    return SignIn(actor_for(session, user.username), stamp=session_stamp(user))


def actor_for_email(session: Session, email: str) -> Actor:
    """The tracker user behind an identity provider's verified e-mail address (OIDC sign-in)."""
    user = session.scalars(
        select(User).where(func.lower(User.email) == (email or "").strip().lower())
    ).one_or_none()
    if user is None or not user.active:
        raise SignInFailed("There is no tracker account for this address.")
    return actor_for(session, user.username)


# -- sessions ----------------------------------------------------------------------------------

SessionState = Literal["valid", "expired", "idle"]


def session_state(
    signed_in_at: datetime | None,
    last_seen: datetime | None,
    now: datetime,
    settings: Settings | None = None,
) -> SessionState:
    """Whether a sign-in still holds: ``expired`` from ``session_hours`` after it began (whatever
    happened since), ``idle`` after ``session_idle_minutes`` without a request, else ``valid``.

    A sign-in without a start time is expired; one without a last request counts from its start.
    Reaching a limit exactly ends the session."""
    settings = settings or get_settings()
    if signed_in_at is None:
        return "expired"
    if now - signed_in_at >= timedelta(hours=settings.session_hours):
        return "expired"
    if now - (last_seen or signed_in_at) >= timedelta(minutes=settings.session_idle_minutes):
        return "idle"
    return "valid"


SessionEndReason = Literal["changed", "locked", "deactivated"]


class SessionEnded(TrackerError):
    """A signed-in session no longer holds: the account was changed, locked or deactivated."""

    def __init__(self, reason: SessionEndReason, template: str, /, **params: Any) -> None:
        super().__init__(template, **params)
        self.reason: SessionEndReason = reason


def session_stamp(user: User) -> str:
    """What a session remembers of the credentials it was opened with: a digest of the user's id
    and password hash (never the hash itself). A new password changes it; so does a new account
    that reuses the username."""
    material = f"{user.id}:{user.password_hash or ''}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def stamp_for(session: Session, username: str) -> str:
    """The current stamp of a user (for a sign-in that did not go through ``sign_in``)."""
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None:
        raise SessionEnded("deactivated", "No user called '{username}'.", username=username)
    return session_stamp(user)


def session_actor(
    session: Session, *, username: str, stamp: str, now: datetime | None = None
) -> Actor:
    """The actor of a signed-in session, re-read from the users table; raises ``SessionEnded``
    when the password changed since the sign-in, the account is locked (someone is guessing its
    password) or deactivated, or the user is gone."""
    now = now or utcnow()
    user = session.scalars(select(User).where(User.username == username)).one_or_none()
    if user is None or not user.active:
        raise SessionEnded("deactivated", "User '{username}' is deactivated.", username=username)
    if session_stamp(user) != stamp:
        raise SessionEnded(
            "changed", "The password of '{username}' was changed.", username=username
        )
    if user.locked_until is not None and user.locked_until > now:
        raise SessionEnded("locked", "User '{username}' is locked.", username=username)
    return actor_for(session, username)


# -- the production start guard ------------------------------------------------------------------

SECRET_VARIABLE = "ONBOARDING_SECRET_KEY"
SECRET_MIN_LENGTH = 32
# Lower-cased, letters and digits only; a secret containing one of these is a placeholder.
_PLACEHOLDER_WORDS = (
    "changeme",
    "replaceme",
    "changethis",
    "placeholder",
    "yoursecret",
    "secretkey",
    "mysecret",
    "notsecret",
    "insecure",
    "example",
    "default",
    "password",
    "willkommen",
    "onboarding",
    "fixme",
    "xxxxxxxx",
    "12345678",
    "abcdefgh",
)
# Random 32 hex digits have fewer than 8 different characters with a chance below 1e-6.
_MIN_DISTINCT_CHARACTERS = 8


class ProductionNotReady(TrackerError):
    """A production start refused: the message says what to set or remove (never a value)."""


def check_production_secret(settings: Settings) -> None:
    """In production, refuse a missing, short or placeholder ``ONBOARDING_SECRET_KEY``."""
    if settings.environment != "production":
        return
    value = settings.secret_key.get_secret_value() if settings.secret_key else ""
    how = "e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if not value.strip():
        raise ProductionNotReady(
            "ONBOARDING_ENVIRONMENT=production needs {variable}: it is not set ({how}).",
            variable=SECRET_VARIABLE,
            how=how,
        )
    if len(value) < SECRET_MIN_LENGTH:
        raise ProductionNotReady(
            "{variable} is too short ({length} characters; at least {minimum} in "
            "production: {how}).",
            variable=SECRET_VARIABLE,
            length=len(value),
            minimum=SECRET_MIN_LENGTH,
            how=how,
        )
    plain = re.sub(r"[^a-z0-9]", "", value.lower())
    if (
        any(word in plain for word in _PLACEHOLDER_WORDS)
        or len(set(value)) < _MIN_DISTINCT_CHARACTERS
    ):
        raise ProductionNotReady(
            "{variable} is a placeholder, not a secret: set a random value ({how}).",
            variable=SECRET_VARIABLE,
            how=how,
        )


def demo_password_users(session: Session) -> list[str]:
    """Active users who still sign in with the demo password (sorted usernames).

    Checked by verifying the demo password against stored hashes, which costs one Argon2 verify
    (about 0.15 s) per distinct hash. Only the accounts demo data creates are checked: the demo
    usernames, the ``@demo.invalid`` addresses, and any hash several users share (demo data
    hashes its one password once; a hash made for one person has a salt of its own). Each
    distinct hash is verified once."""
    from tracker.demo.people import DEMO_PASSWORD, DEMO_USERS

    if not inspect(session.connection()).has_table(User.__tablename__):
        return []  # not migrated yet: no users at all
    demo_names = [name for name, *_ in DEMO_USERS]
    shared = (  # counted over all accounts: the other copies may have been deactivated
        select(User.password_hash)
        .where(User.password_hash.is_not(None))
        .group_by(User.password_hash)
        .having(func.count() > 1)
    )
    rows = session.execute(
        select(User.username, User.password_hash).where(
            User.active.is_(True),
            User.password_hash.is_not(None),
            or_(
                User.username.in_(demo_names),
                func.lower(User.email).like("%@demo.invalid"),
                User.password_hash.in_(shared),
            ),
        )
    ).all()
    by_hash: dict[str, list[str]] = {}
    for username, password_hash in rows:
        if password_hash:
            by_hash.setdefault(password_hash, []).append(username)
    found = [
        name
        for password_hash, names in by_hash.items()
        if verify_password(password_hash, DEMO_PASSWORD)
        for name in names
    ]
    return sorted(found)


def check_production(settings: Settings | None = None, database: Database | None = None) -> None:
    """Refuse to start in production without a proper secret or with demo sign-ins.

    Every production entry point calls this first (``onboarding run``, ``onboarding-flows
    serve``, the dashboard). In development it does nothing, so a laptop needs no secret."""
    settings = settings or get_settings()
    if settings.environment != "production":
        return
    check_production_secret(settings)
    from tracker.db import get_database

    database = database or get_database(settings.resolved_database_url)
    try:
        with database.read() as session:
            demo = demo_password_users(session)
    except (SQLAlchemyError, TrackerError) as exc:
        raise ProductionNotReady(
            "Cannot check the tracker's users before a production start: {detail}",
            detail=exc,
        ) from exc
    if demo:
        raise ProductionNotReady(
            "ONBOARDING_ENVIRONMENT=production, but {count} active user(s) still sign in "
            "with the demo password ({users}): deactivate them or set new passwords. Demo "
            "data belongs on a development machine.",
            count=len(demo),
            users=", ".join(demo),
        )
