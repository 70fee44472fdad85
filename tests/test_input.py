"""Bad input that only the database would trip over, refused before it gets there (the schema
checks are in tests/unit/test_input.py)."""

from __future__ import annotations

import pytest

from tests.conftest import NOW
from tests.helpers import newcomer
from tracker.errors import ValidationFailed
from tracker.journeys.cases import register_newcomer


def test_names_too_long_once_case_folded_are_refused_before_the_database_is(db, actors):
    person = newcomer(given_name="ß" * 200, family_name="ﬃ" * 200)  # 200 each, 1,000 folded
    with db.transaction() as s, pytest.raises(ValidationFailed, match="too long"):
        register_newcomer(s, actor=actors["cm.mueller"], data=person, now=NOW)
