"""Engines, sessions and the transaction boundary that every change goes through."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from tracker import access_log
from tracker.config import get_settings
from tracker.errors import ConcurrentEditError


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
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
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
    return create_engine(url, echo=echo, pool_pre_ping=True)


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
        return make_url(self.url).get_backend_name() == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits when the block ends normally, rolls back otherwise."""
        session = self._write_sessions()
        try:
            yield session
            views = access_log.take_pending(session)
            if views:
                access_log.write(session, views)
            session.commit()
        except StaleDataError as exc:
            session.rollback()
            raise ConcurrentEditError(
                "Someone else changed this record at the same time; reload and try again."
            ) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session for queries; anything it changed is rolled back.

        The people the queries showed are written to the access log when the block ends
        normally (in a short write transaction of its own)."""
        session = self._read_sessions()
        try:
            yield session
            views = access_log.take_pending(session)
        finally:
            session.rollback()
            session.close()
        if views:
            with self.transaction() as log_session:
                access_log.write(log_session, views)

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


@lru_cache(maxsize=4)
def get_database(url: str | None = None) -> Database:
    return Database(url or get_settings().resolved_database_url)
