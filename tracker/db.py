"""Engines, sessions and the transaction boundary that every change goes through."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from tracker.config import get_settings
from tracker.errors import ConcurrentEditError, DatabaseUnavailable
from tracker.privacy import access_log

# SQLite result codes that mean "the file cannot be used right now", not "the SQL is wrong":
# BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN.
_SQLITE_UNAVAILABLE = {5, 6, 8, 10, 13, 14}
PG_CONNECT_TIMEOUT = 10  # seconds: an unreachable host fails with a message instead of hanging
PG_RANDOM_PAGE_COST = 1.1  # planner cost of a random page read: SSD or cached (see build_engine)


def _is_away(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    if isinstance(exc.orig, sqlite3.Error):
        return (getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF) in _SQLITE_UNAVAILABLE
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    # PostgreSQL: no SQLSTATE (no server answered), or a connection, resource, shutdown or
    # system error; not a deadlock or serialisation failure (class 40): that is a conflict.
    state = getattr(exc.orig, "sqlstate", None)
    return state is None or state[:2] in {"08", "53", "57", "58"}


def database_unavailable(
    exc: BaseException, *, committing: bool = False
) -> DatabaseUnavailable | None:
    """The error to show for ``exc`` if it means the database is away (refused, terminated,
    locked longer than the busy timeout), or None if it is any other error."""
    if not isinstance(exc, DBAPIError) or not _is_away(exc):
        return None
    lines = str(exc.orig or exc).strip().splitlines()
    detail = lines[0] if lines else type(exc.orig or exc).__name__
    if committing:
        # The COMMIT may have reached the server before the connection broke.
        return DatabaseUnavailable(
            "The connection to the database broke while saving ({detail}). The change may "
            "or may not have been saved: reload and check before trying again.",
            detail=detail,
        )
    return DatabaseUnavailable(
        "The database is not available ({detail}). Nothing was saved; try again once it is back.",
        detail=detail,
    )


def _configure_sqlite(engine: Engine, *, immediate: bool, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's "begin" event below decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front: a deferred transaction that later
        # upgrades to a write can fail with "database is locked" instead of waiting.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def build_engine(url: str, *, immediate: bool = True, echo: bool = False) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(
            engine, immediate=immediate, synchronous=get_settings().sqlite_synchronous
        )
        return engine
    connect: dict[str, object] = {}
    if "connect_timeout" not in parsed.query:
        connect["connect_timeout"] = PG_CONNECT_TIMEOUT
    if "options" not in parsed.query:
        # The tracker's working set lives in memory or on SSD: a random page read costs hardly
        # more than a sequential one. PostgreSQL's default (4, for spinning disks) makes the
        # planner hash whole tables for a page of a queue; the index plans measure 2-5x faster
        # (tests/test_query_plans.py). A URL's own ?options=... wins.
        connect["options"] = f"-c random_page_cost={PG_RANDOM_PAGE_COST}"
    return create_engine(url, echo=echo, pool_pre_ping=True, connect_args=connect)


def is_sqlite_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


@dataclass
class Database:
    """The tracker database: a writer engine for changes and a reader engine for screens."""

    url: str
    writer: Engine = field(init=False)
    reader: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.writer = build_engine(self.url, immediate=True)
        if self.is_sqlite:
            self.reader = build_engine(self.url, immediate=False)
        else:
            self.reader = self.writer
        self._write_sessions = sessionmaker(self.writer, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return is_sqlite_url(self.url)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits when the block ends normally, rolls back otherwise.

        A database that is away (refused, terminated, locked longer than the busy timeout)
        raises ``DatabaseUnavailable``, whose message says whether anything may have been saved.
        """
        session = self._write_sessions()
        committing = False
        try:
            yield session
            views = access_log.take_pending(session)
            if views:
                access_log.write(session, views)
            session.flush()  # a failure up to here leaves nothing saved
            committing = True
            session.commit()
        except StaleDataError as exc:
            session.rollback()
            raise ConcurrentEditError(
                "Someone else changed this record at the same time; reload and try again."
            ) from exc
        except DBAPIError as exc:
            session.rollback()
            away = database_unavailable(exc, committing=committing)
            if away is not None:
                raise away from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session for queries; anything it changed is rolled back.

        The people the queries showed are written to the access log when the block ends
        normally: this session checks what is new (a repeated view inside the window is not),
        and only then a short write transaction of its own appends it – so a repeated view
        never waits for SQLite's write lock."""
        session = self._read_sessions()
        rows: list[dict[str, object]] = []
        try:
            yield session
            views = access_log.take_pending(session)
            if views:
                rows = access_log.fresh_rows(session, views)
        except DBAPIError as exc:
            away = database_unavailable(exc)
            if away is not None:
                raise away from exc
            raise
        finally:
            session.rollback()
            session.close()
        if rows:
            with self.transaction() as log_session:
                access_log.insert_rows(log_session, rows)

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


@lru_cache(maxsize=4)
def get_database(url: str | None = None) -> Database:
    return Database(url or get_settings().resolved_database_url)
