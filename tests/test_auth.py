"""Signing in: right and wrong passwords, lockout after repeated failures (also under a storm of
parallel guesses), unknown users, and the rules that end a session."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from argon2 import extract_parameters
from argon2.profiles import RFC_9106_LOW_MEMORY
from sqlalchemy import select, update

from tests.conftest import NOW
from tracker.admin.auth import (
    MAX_FAILURES,
    WRONG,
    SessionEnded,
    SignInFailed,
    actor_for_email,
    session_actor,
    session_state,
    sign_in,
)
from tracker.admin.passwords import hash_password, verify_password
from tracker.config import Settings
from tracker.demo.people import DEMO_PASSWORD
from tracker.enums import Role
from tracker.models import AuditEvent, User


def _try(db, username, password, now=NOW):
    with db.transaction() as s:
        return sign_in(s, username=username, password=password, now=now)


def test_the_right_password_signs_in_with_role_and_organisation(db):
    result = _try(db, "Stadt.Weber", DEMO_PASSWORD)
    assert result.error is None
    assert result.actor.role == Role.partner_agent
    assert result.actor.organisation_key == "stadt-bochum"


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(db):
    wrong = _try(db, "stadt.weber", "nope")
    unknown = _try(db, "nobody", "nope")
    assert wrong.actor is None and unknown.actor is None
    assert str(wrong.error) == str(unknown.error) == WRONG


def test_repeated_failures_lock_the_account_then_it_opens_again(db):
    for _ in range(MAX_FAILURES):
        assert _try(db, "cm.mueller", "guess").actor is None
    locked = _try(db, "cm.mueller", DEMO_PASSWORD)
    assert locked.actor is None and locked.error is not None
    assert locked.error.template == "Too many failed attempts: try again in {minutes} minutes."
    assert locked.error.params == {"minutes": 16}  # 15 minutes left, counted up
    later = _try(db, "cm.mueller", DEMO_PASSWORD, now=NOW + timedelta(minutes=16))
    assert later.actor is not None
    with db.read() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.entity_type == "user")).all()
    assert actions.count("user.sign_in_failed") == MAX_FAILURES - 1
    assert "user.locked" in actions and "user.signed_in" in actions


def test_an_identity_provider_email_maps_to_the_tracker_user(db):
    with db.read() as s:
        assert actor_for_email(s, "LEAD.SCHMIDT@demo.invalid").role == Role.leadership
        with pytest.raises(SignInFailed):
            actor_for_email(s, "stranger@example.org")


def test_a_storm_of_parallel_wrong_passwords_locks_the_account_and_loses_no_count(db):
    """Ten guesses at once on one account: each is counted (the user row is locked while one
    attempt is checked), the fifth locks the account, and none fails with an error."""
    attempts = 2 * MAX_FAILURES
    start = threading.Barrier(attempts)

    def attempt(i: int) -> str | None:
        start.wait()
        with db.transaction() as s:
            error = sign_in(s, username="cm.mueller", password=f"guess-{i}", now=NOW).error
            return str(error) if error else None

    with ThreadPoolExecutor(attempts) as pool:
        errors = list(pool.map(attempt, range(attempts)))
    assert errors.count(WRONG) == MAX_FAILURES
    assert sum("Too many failed attempts" in (e or "") for e in errors) == attempts - MAX_FAILURES
    with db.read() as s:
        user = s.scalars(select(User).where(User.username == "cm.mueller")).one()
        assert user.locked_until is not None and user.locked_until > NOW
        actions = s.scalars(
            select(AuditEvent.action).where(
                AuditEvent.entity_type == "user",
                AuditEvent.entity_id == user.id,
                AuditEvent.action != "user.added",
            )
        ).all()
    assert sorted(actions) == ["user.locked"] + ["user.sign_in_failed"] * (MAX_FAILURES - 1)
    # Locked means locked, also for the right password.
    assert _try(db, "cm.mueller", DEMO_PASSWORD).actor is None


def test_every_failed_sign_in_costs_a_full_argon2id_verify(db, monkeypatch):
    """Guessing online is slow: a wrong password, and a username that does not exist, each cost
    one verify against a hash made with RFC 9106's low-memory profile (Argon2id, 3 passes over
    64 MiB, 4 lanes), never a cheaper check. (How long one takes is a benchmark's business.)"""
    from tracker.admin import auth

    verified: list[str] = []

    def counted(password_hash: str | None, password: str) -> bool:
        verified.append(password_hash or "")
        return verify_password(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counted)
    assert str(_try(db, "cm.mueller", "a-wrong-guess").error) == WRONG
    assert str(_try(db, "nobody-here", "a-wrong-guess").error) == WRONG
    assert len(verified) == 2
    for stored in verified:
        assert extract_parameters(stored) == RFC_9106_LOW_MEMORY
        assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert verified[0] != verified[1]  # the user's own hash, then the stand-in for nobody
    assert not verify_password(hash_password("the-real-password"), "a-guess")


# -- session rules -------------------------------------------------------------------------------

SETTINGS = Settings(session_hours=8, session_idle_minutes=30)
SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("since_sign_in", "since_last_click", "expected"),
    [
        (timedelta(0), None, "valid"),  # fresh, no click yet
        (timedelta(minutes=5), timedelta(minutes=1), "valid"),
        (timedelta(hours=1), timedelta(minutes=30) - SECOND, "valid"),  # idle just under
        (timedelta(hours=1), timedelta(minutes=30), "idle"),  # idle reached
        (timedelta(hours=1), timedelta(minutes=30) + SECOND, "idle"),  # idle just over
        (timedelta(minutes=30) + SECOND, None, "idle"),  # no click since sign-in
        (timedelta(hours=8) - SECOND, timedelta(minutes=1), "valid"),  # expiry just under
        (timedelta(hours=8), timedelta(0), "expired"),  # expiry reached, however busy
        (timedelta(hours=8) + SECOND, timedelta(0), "expired"),  # expiry just over
        (timedelta(hours=9), timedelta(hours=2), "expired"),  # expired wins over idle
    ],
)
def test_session_state(since_sign_in, since_last_click, expected):
    last_seen = None if since_last_click is None else NOW - since_last_click
    assert session_state(NOW - since_sign_in, last_seen, NOW, SETTINGS) == expected


def test_a_session_without_a_start_is_expired_and_the_limits_come_from_the_settings():
    assert session_state(None, NOW, NOW, SETTINGS) == "expired"
    short = Settings(session_hours=0.5, session_idle_minutes=5)
    assert session_state(NOW - timedelta(minutes=4), None, NOW, short) == "valid"
    assert session_state(NOW - timedelta(minutes=6), None, NOW, short) == "idle"
    assert session_state(NOW - timedelta(minutes=31), NOW, NOW, short) == "expired"


def _signed_in(db, username="cm.mueller"):
    result = _try(db, username, DEMO_PASSWORD)
    assert result.actor is not None and result.stamp
    return result.stamp


def _session(db, stamp, username="cm.mueller", now=NOW):
    with db.read() as s:
        return session_actor(s, username=username, stamp=stamp, now=now)


def test_a_session_holds_while_the_account_is_unchanged(db):
    stamp = _signed_in(db)
    assert _session(db, stamp).username == "cm.mueller"
    # Signing in again (elsewhere) does not end the first session.
    assert _signed_in(db) == stamp
    assert _session(db, stamp).role == Role.case_manager


def test_a_new_password_ends_the_session(db):
    stamp = _signed_in(db)
    with db.transaction() as s:
        s.execute(
            update(User)
            .where(User.username == "cm.mueller")
            .values(password_hash=hash_password(DEMO_PASSWORD))  # even the same password
        )
    with pytest.raises(SessionEnded) as ended:
        _session(db, stamp)
    assert ended.value.reason == "changed"


def test_a_lockout_ends_the_session_until_it_runs_out(db):
    stamp = _signed_in(db)
    for _ in range(MAX_FAILURES):
        _try(db, "cm.mueller", "guess")
    with pytest.raises(SessionEnded) as ended:
        _session(db, stamp)
    assert ended.value.reason == "locked"
    assert _session(db, stamp, now=NOW + timedelta(minutes=16)).username == "cm.mueller"


def test_a_deactivation_ends_the_session(db):
    stamp = _signed_in(db)
    with db.transaction() as s:
        s.execute(update(User).where(User.username == "cm.mueller").values(active=False))
    with pytest.raises(SessionEnded) as ended:
        _session(db, stamp)
    assert ended.value.reason == "deactivated"
