"""Fixtures: database tests run on SQLite and on the machine's PostgreSQL, each test isolated."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from tests.ci import IN_CI
from tracker.access import Actor, actor_for
from tracker.admin.organisations import seed_organisations
from tracker.config import get_settings
from tracker.db import Database, get_database
from tracker.demo.people import ensure_demo_users
from tracker.migrate import upgrade
from tracker.models import Base

PG_ADMIN_DSN = os.environ.get("ONBOARDING_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres")

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _pg_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", connect_timeout=3):
            return None
    except Exception as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def pytest_sessionstart(session: pytest.Session) -> None:
    problem = _pg_available()
    session.config._pg_problem = problem  # type: ignore[attr-defined]
    if problem and IN_CI:
        raise pytest.UsageError(f"CI=true and PostgreSQL is not reachable: {problem}")


def _worker() -> str:
    # Unique per process, so two test runs on one machine never drop each other's databases.
    return f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_pg_database(name: str) -> str:
    """A new, empty PostgreSQL database (an old one of that name is dropped); its URL."""
    drop_pg_database(name)
    with psycopg.connect(PG_ADMIN_DSN + " dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@pytest.fixture(scope="session")
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    problem = request.config._pg_problem  # type: ignore[attr-defined]
    if problem:
        pytest.skip(f"PostgreSQL not reachable: {problem}")
    name = f"onboarding_test_{_worker()}"
    url = create_pg_database(name)
    upgrade(url)
    yield url
    drop_pg_database(name)


def _fresh(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Database:
    if backend == "sqlite":
        path = tmp_path / "tracker.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return Database(f"sqlite:///{path}")
    url = request.getfixturevalue("pg_url")
    db = Database(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.writer.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return db


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated, empty tracker database on each backend."""
    db = _fresh(request, request.param, tmp_path)
    yield db
    db.dispose()


@pytest.fixture
def db(empty_db: Database) -> Database:
    """A tracker database with the reference organisations and the demo users."""
    with empty_db.transaction() as session:
        seed_organisations(session, now=NOW)
        ensure_demo_users(session, now=NOW)
    return empty_db


class Actors:
    """Look up actors by demo username: ``actors['cm.mueller']``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[str, Actor] = {}

    def __getitem__(self, username: str) -> Actor:
        if username not in self._cache:
            with self._db.read() as session:
                self._cache[username] = actor_for(session, username)
        return self._cache[username]


@pytest.fixture
def actors(db: Database) -> Actors:
    return Actors(db)


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server for the whole session, quiet and local."""
    home = tmp_path_factory.mktemp("prefect-home")
    # These settings stay in os.environ while the session lasts; the end-to-end tests start their
    # servers without them (tests/e2e/_servers.py, inherited_environ).
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        }.items():
            env.setenv(name, value)
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture(autouse=True)
def _wide_cli_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's consoles take their width from COLUMNS when first imported, by whichever test
    comes first in the process: every test sees them wide enough that no table wraps a cell."""
    from tracker.cli import common

    for console in (common.out, common.err):
        monkeypatch.setattr(console, "_width", 200)


@pytest.fixture
def cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Invoke the `onboarding` CLI against the test database; returns (exit code, stdout,
    stderr). Changes advance inline (no Prefect)."""
    from typer.testing import CliRunner

    from tracker.cli.main import app

    runner = CliRunner()
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "inline")
    get_settings.cache_clear()
    get_database.cache_clear()

    def invoke(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    yield invoke
    get_database.cache_clear()
    get_settings.cache_clear()
