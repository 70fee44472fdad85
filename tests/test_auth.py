"""Signing in: right and wrong passwords, lockout after repeated failures, unknown users."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import NOW
from tracker.auth import MAX_FAILURES, SignInFailed, actor_for_email, sign_in
from tracker.demo import DEMO_PASSWORD
from tracker.enums import Role
from tracker.models import AuditEvent


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
    assert wrong.error == unknown.error


def test_repeated_failures_lock_the_account_then_it_opens_again(db):
    for _ in range(MAX_FAILURES):
        assert _try(db, "cm.mueller", "guess").actor is None
    locked = _try(db, "cm.mueller", DEMO_PASSWORD)
    assert locked.actor is None and "Minuten" in locked.error
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
