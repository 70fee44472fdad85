"""Alembic migrations build exactly the schema the models declare, and go down and up again."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from tracker.migrate import current_revision, downgrade, head_revision, upgrade
from tracker.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    from tests.conftest import _worker, create_pg_database, drop_pg_database

    url_base = request.getfixturevalue("pg_url")  # skips when PostgreSQL is unreachable
    assert url_base
    name = f"onboarding_migr_{_worker()}"
    yield create_pg_database(name)
    drop_pg_database(name)


def test_migrations_match_the_models_and_can_be_undone(blank_url):
    upgrade(blank_url)
    engine = create_engine(blank_url)
    try:
        assert current_revision(engine) == head_revision(blank_url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
        downgrade(blank_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(blank_url)
        assert {t.name for t in Base.metadata.sorted_tables} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_display_names_are_filled_on_a_filled_database_and_then_required(blank_url):
    """0008 on a database in use at 0007: every row survives with its id, a blank name becomes
    the username, padded names are trimmed, and from then on the database refuses a blank one."""
    from tests.conftest import NOW
    from tests.helpers import start_case
    from tracker.access import actor_for
    from tracker.admin.organisations import seed_organisations
    from tracker.admin.queries import staff_names
    from tracker.admin.users import rename_user
    from tracker.db import Database
    from tracker.demo.people import ensure_demo_users

    upgrade(blank_url, "0007")
    db = Database(blank_url)
    with db.transaction() as s:
        seed_organisations(s, now=NOW)
        ensure_demo_users(s, now=NOW)
    with db.read() as s:
        manager = actor_for(s, "cm.mueller")
    start_case(db, manager, now=NOW)  # a case and audit events that point at users
    with db.transaction() as s:  # what the admin form let through before 0008
        s.execute(text("UPDATE users SET display_name = '' WHERE username = 'ihk.hoffmann'"))
        s.execute(text("UPDATE users SET display_name = '   ' WHERE username = 'afa.becker'"))
        s.execute(
            text("UPDATE users SET display_name = '  Jana Weber ' WHERE username = 'stadt.weber'")
        )
    users_sql = text(
        "SELECT id, username, display_name, role, organisation_id, active, version "
        "FROM users ORDER BY id"
    )
    counts_sql = text(
        "SELECT (SELECT count(*) FROM audit_events WHERE actor_id IS NOT NULL), "
        "(SELECT count(*) FROM cases WHERE case_manager_id = "
        "(SELECT id FROM users WHERE username = 'cm.mueller'))"
    )
    with db.read() as s:
        before = [tuple(r) for r in s.execute(users_sql)]
        counts_before = tuple(s.execute(counts_sql).one())
    db.dispose()
    assert counts_before[0] > 0 and counts_before[1] == 1

    upgrade(blank_url)
    db = Database(blank_url)
    try:
        with db.read() as s:
            after = [tuple(r) for r in s.execute(users_sql)]
            assert tuple(s.execute(counts_sql).one()) == counts_before
        names = {r[1]: r[2] for r in after}
        assert names["ihk.hoffmann"] == "ihk.hoffmann"
        assert names["afa.becker"] == "afa.becker"
        assert names["stadt.weber"] == "Jana Weber"
        assert names["cm.mueller"] == "Sabine Müller"
        # Everything but the filled names is as it was: ids, roles, organisations, versions.
        assert [r[:2] + r[3:] for r in after] == [r[:2] + r[3:] for r in before]

        for blank in ("", "   "):
            with pytest.raises(IntegrityError), db.transaction() as s:
                s.execute(
                    text("UPDATE users SET display_name = :n WHERE username = 'cm.mueller'"),
                    {"n": blank},
                )
        with pytest.raises(IntegrityError), db.transaction() as s:
            s.execute(
                text(
                    "INSERT INTO users (username, display_name, role, active, created_at, "
                    "failed_logins, version) VALUES ('no.name', '', 'case_manager', true, "
                    ":t, 0, 1)"
                ),
                {"t": NOW},
            )

        # The administrator gives the filled account its real name; screens read it.
        with db.transaction() as s:
            admin = actor_for(s, "admin")
            rename_user(s, actor=admin, username="ihk.hoffmann", display_name=" Lukas  Hoffmann ")
        with db.read() as s:
            shown = staff_names(s, actor=admin)
        assert shown["ihk.hoffmann"].display_name == "Lukas Hoffmann"
        assert shown["ihk.hoffmann"].organisation_name == "IHK Mittleres Ruhrgebiet"
    finally:
        db.dispose()
    downgrade(blank_url, "0007")
    engine = create_engine(blank_url)
    try:
        with engine.connect() as conn:
            assert len(conn.execute(users_sql).all()) == len(after)
    finally:
        engine.dispose()


def test_the_handoff_state_indexes_are_added_to_a_filled_database(blank_url):
    """0009 on a database in use at 0008: every handoff survives as it was, the inbox reads the
    same, and the indexes are there (and gone again after a downgrade, rows kept)."""
    from tests.conftest import NOW
    from tests.helpers import start_case
    from tracker.access import actor_for
    from tracker.admin.organisations import seed_organisations
    from tracker.db import Database
    from tracker.demo.people import ensure_demo_users
    from tracker.journeys import handoffs
    from tracker.journeys.inbox import needs_me

    upgrade(blank_url, "0008")
    db = Database(blank_url)
    with db.transaction() as s:
        seed_organisations(s, now=NOW)
        ensure_demo_users(s, now=NOW)
    with db.read() as s:
        manager, partner = actor_for(s, "cm.mueller"), actor_for(s, "vbw.schulz")
    refs = [start_case(db, manager, now=NOW, nationality="PL") for _ in range(3)]
    for ref in refs[:2]:  # housing is handed to the housing company with consent
        with db.transaction() as s:
            handoffs.accept_handoff(s, actor=partner, reference=ref, step_key="housing")
    with db.transaction() as s:
        handoffs.return_handoff(
            s, actor=partner, reference=refs[0], step_key="housing", reason="Keine Wohnung frei"
        )
    rows_sql = text("SELECT id, step_id, state, reason, version FROM handoffs ORDER BY id")
    with db.read() as s:
        before = [tuple(r) for r in s.execute(rows_sql)]
        inbox_before = needs_me(s, actor=manager, today=NOW.date())
    db.dispose()
    assert inbox_before.counts["returned"] == 1 and len(before) >= 3

    upgrade(blank_url)
    db = Database(blank_url)
    try:
        with db.read() as s:
            assert [tuple(r) for r in s.execute(rows_sql)] == before
            assert needs_me(s, actor=manager, today=NOW.date()) == inbox_before
        assert {"ix_handoffs_state_step", "ix_handoffs_state_closed"} <= {
            i["name"] for i in inspect(db.writer).get_indexes("handoffs")
        }
    finally:
        db.dispose()
    downgrade(blank_url, "0008")
    engine = create_engine(blank_url)
    try:
        assert not {"ix_handoffs_state_step", "ix_handoffs_state_closed"} & {
            i["name"] for i in inspect(engine).get_indexes("handoffs")
        }
        with engine.connect() as conn:
            assert [tuple(r) for r in conn.execute(rows_sql)] == before
    finally:
        engine.dispose()
