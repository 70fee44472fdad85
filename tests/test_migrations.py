"""Alembic migrations build exactly the schema the models declare, and go down and up again."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

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
