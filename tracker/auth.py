"""Signing in: local accounts with Argon2 hashes and a lockout, or an identity provider's e-mail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor, actor_for
from tracker.errors import TrackerError
from tracker.models import User
from tracker.passwords import hash_password, verify_password
from tracker.services._base import utcnow

MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
# Verifying against a real hash for unknown users keeps the answer time the same, so the
# sign-in form does not reveal which usernames exist.
_DUMMY_HASH = hash_password("no-such-user-placeholder")


class SignInFailed(TrackerError):
    """The one message a person sees for any failed sign-in."""


WRONG = "Benutzername oder Passwort ist falsch. / Wrong username or password."


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in. Failures are returned, not raised, so that the caller commits
    the failure count and its audit event."""

    actor: Actor | None
    error: str | None = None


def sign_in(
    session: Session, *, username: str, password: str, now: datetime | None = None
) -> SignIn:
    """Check a username and password; repeated failures lock the account for a while."""
    now = now or utcnow()
    name = (username or "").strip().lower()
    user = session.scalars(select(User).where(func.lower(User.username) == name)).one_or_none()
    if user is None or not user.active:
        verify_password(_DUMMY_HASH, password or "")
        return SignIn(None, WRONG)
    if user.locked_until is not None and user.locked_until > now:
        minutes = max(1, int((user.locked_until - now).total_seconds() // 60) + 1)
        return SignIn(
            None,
            f"Zu viele Fehlversuche: bitte in {minutes} Minuten erneut versuchen. / "
            f"Too many failed attempts: try again in {minutes} minutes.",
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
        return SignIn(None, WRONG)
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
    return SignIn(actor_for(session, user.username))


def actor_for_email(session: Session, email: str) -> Actor:
    """The tracker user behind an identity provider's verified e-mail address (OIDC sign-in)."""
    user = session.scalars(
        select(User).where(func.lower(User.email) == (email or "").strip().lower())
    ).one_or_none()
    if user is None or not user.active:
        raise SignInFailed(
            "Für diese Adresse gibt es kein Konto im Tracker. / "
            "There is no tracker account for this address."
        )
    return actor_for(session, user.username)
