"""Bulk inserts of many rows (the demo, the batch services): COPY on PostgreSQL, executemany
on SQLite.

A demo load writes millions of rows. Through ``session.execute(insert(table), rows)``
SQLAlchemy runs each value through its column type's bind processor, which took about half of
the load; here the rows go to the driver directly, converted once per column kind the way the
column types store them (checked against them in tests/test_demo.py). Constant column
defaults are filled in; no ORM events apply, and a column with a computed default must be given.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    Date,
    DateTime,
    String,
    Table,
    Text,
    any_,
    bindparam,
    insert,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import coercions, roles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator, TypeEngine

# Keeps every IN list well below the bind-parameter limits of SQLite and PostgreSQL.
IN_CHUNK = 500
_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int = IN_CHUNK) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# Audit details and outbox contexts repeat a few shapes ({"step": "visa", "owner": "ihk-mr"}):
# encoding each shape once saves most of the JSON work. Bounded, as ids make some unique.
_JSON_MEMO_LIMIT = 200_000


def _sqlite_datetime(value: datetime) -> str:
    """UTC without the offset, in SQLAlchemy's SQLite DATETIME format (as UTCDateTime stores)."""
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]


def _sqlite_date(value: date) -> str:
    return value.isoformat()


def _base_type(column_type: TypeEngine[Any]) -> TypeEngine[Any]:
    while isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return column_type


def as_values(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """The column names (the first row's keys) and each row's values in their order."""
    if not rows:
        return [], []
    columns = list(rows[0])
    get = itemgetter(*columns)
    if len(columns) == 1:
        return columns, [[get(row)] for row in rows]
    return columns, [list(get(row)) for row in rows]


@lru_cache(maxsize=256)
def _layout(
    table: Table, columns: tuple[str, ...], sqlite: bool
) -> tuple[tuple[tuple[str, Any], ...], tuple[tuple[int, str], ...]]:
    """For rows of ``columns``: the columns left out that have a constant default, with it (as
    ``insert(table)`` would add them), and which columns the driver takes converted (JSON as
    text; on SQLite dates and times as SQLAlchemy stores them). Worked out once per layout: a
    single change's audit event is a batch of one."""
    added: list[tuple[str, Any]] = []
    for column in table.columns:
        default: Any = column.default
        if column.name in columns or default is None:
            continue
        if not default.is_scalar:
            raise ValueError(f"{table.name}.{column.name}: give a value (computed default)")
        added.append((column.name, default.arg))
    kinds: list[tuple[int, str]] = []
    for i, name in enumerate([*columns, *(name for name, _ in added)]):
        kind = _base_type(table.c[name].type)
        if isinstance(kind, JSON):
            kinds.append((i, "json"))
        elif sqlite and isinstance(kind, DateTime):
            kinds.append((i, "datetime"))
        elif sqlite and isinstance(kind, Date):
            kinds.append((i, "date"))
    return tuple(added), tuple(kinds)


class BulkWriter:
    """Inserts lists of row dicts into tables, in the transaction of the connection given."""

    def __init__(self) -> None:
        self._json_memo: dict[tuple[Any, ...], str] = {}

    def insert(
        self, connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Insert ``rows`` (each with the same keys, column names of ``table``)."""
        self.insert_values(connection, table, *as_values(rows))

    def insert_values(
        self, connection: Connection, table: Table, columns: list[str], values: list[list[Any]]
    ) -> None:
        """Insert ``values`` (lists in the order of ``columns``); converts them in place."""
        is_sqlite = connection.dialect.name == "sqlite"
        self.write(connection, table, *self.prepare(table, columns, values, sqlite=is_sqlite))

    def prepare(
        self, table: Table, columns: list[str], values: list[list[Any]], *, sqlite: bool
    ) -> tuple[list[str], list[list[Any]]]:
        """The columns and values as the driver takes them: constant defaults added, values
        converted in place. Needs no connection, so another process can do it (the demo)."""
        if not values:
            return columns, values
        added, kinds = _layout(table, tuple(columns), sqlite)
        if added:
            defaults = [arg for _, arg in added]
            for value in values:
                value.extend(defaults)
            columns = [*columns, *(name for name, _ in added)]
        convert = {"json": self._json, "datetime": _sqlite_datetime, "date": _sqlite_date}
        for i, kind in kinds:
            to_driver = convert[kind]
            for value in values:
                if value[i] is not None:
                    value[i] = to_driver(value[i])
        return columns, values

    @staticmethod
    def write(
        connection: Connection, table: Table, columns: list[str], values: list[list[Any]]
    ) -> None:
        """Hand prepared ``values`` to the driver, in the connection's transaction."""
        if not values:
            return
        raw: Any = connection.connection.driver_connection  # sqlite3 or psycopg
        names = ", ".join(columns)
        dbapi = connection.dialect.loaded_dbapi
        statement = f"COPY {table.name} ({names}) FROM STDIN"
        try:
            if connection.dialect.name == "sqlite":
                marks = ", ".join("?" * len(columns))
                statement = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
                raw.executemany(statement, values)
                return
            with raw.cursor() as cursor, cursor.copy(statement) as copy:
                for value in values:
                    copy.write_row(value)
        except dbapi.Error as exc:
            # As SQLAlchemy raises the driver's errors (IntegrityError, DataError, …), so that
            # callers handle a refused row the same way whichever path wrote it.
            raise DBAPIError.instance(
                statement, None, exc, dbapi.Error, hide_parameters=True, dialect=connection.dialect
            ) from exc

    def _json(self, value: Any) -> str:
        # As SQLAlchemy's JSON type stores it (json.dumps), once per distinct flat value.
        try:
            # With the types: 1, 1.0 and True are equal keys but encode differently.
            if isinstance(value, dict):
                key = (dict, *value.items(), *map(type, value.values()))
            elif isinstance(value, list):
                key = (list, *value, *map(type, value))
            else:
                return json.dumps(value)
            text = self._json_memo.get(key)
        except TypeError:  # a nested (unhashable) value
            return json.dumps(value)
        if text is None:
            if len(self._json_memo) >= _JSON_MEMO_LIMIT:
                self._json_memo.clear()
            text = self._json_memo[key] = json.dumps(value)
        return text


_NEW_IDS = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")


def insert_returning_ids(
    connection: Connection, table: Table, rows: list[dict[str, Any]], *, key: str
) -> list[int]:
    """Insert rows and return their new ids in the rows' order.

    PostgreSQL: the ids are drawn from the table's sequence in one statement, and the rows go
    in by COPY. A multi-row INSERT … RETURNING of 500 rows is a query psycopg parses anew for
    its thousands of placeholders each time (too long for its cache): 0.1 s per batch, a third
    of an import's time on the client.

    SQLite: multi-row INSERTs, each row's id matched by ``key`` (a column whose values differ
    within the batch), which RETURNING gives back with it. ``sort_by_parameter_order`` would do
    the same without a key, but SQLAlchemy can only keep that promise on SQLite one row per
    statement: a thousand statements where one serves. A batch whose keys repeat is inserted
    that way all the same."""
    if not rows:
        return []
    if connection.dialect.name == "postgresql":
        ids = sorted(connection.execute(_NEW_IDS, {"table": table.name, "n": len(rows)}).scalars())
        BulkWriter().insert(
            connection, table, [{**row, "id": i} for row, i in zip(rows, ids, strict=True)]
        )
        return ids
    keys = [row[key] for row in rows]
    if len(set(keys)) < len(keys):
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(connection.execute(stmt, rows).scalars())
    found: dict[Any, int] = dict(
        connection.execute(insert(table).returning(table.c[key], table.c.id), rows).all()
    )
    return [found[k] for k in keys]


class among(ColumnElement[bool]):
    """``column IN (the list given as parameter name)``, for statements built once and run with
    lists of any length.

    The list is one parameter, so the statement's text stays the same whatever its length.
    SQLite: ``column IN (SELECT value FROM json_each(:name))`` with the list as JSON text.
    PostgreSQL: ``column = ANY(:name)`` with the list as an array. An expanding IN of 500 values
    is a new text each time, which SQLAlchemy renders anew on every run and psycopg parses anew
    (too long for its cache). Other databases: an expanding IN."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a condition, not a boolean column: no "= 1" after it
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("name", InternalTraversal.dp_string),
    ]

    def __init__(self, column: Any, name: str) -> None:  # a column or a mapped attribute
        self.column: ColumnElement[Any] = coercions.expect(roles.ExpressionElementRole, column)
        self.name = name


@compiles(among)
def _among_in(element: among, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column.in_(bindparam(element.name, expanding=True)), **kw)


class _JsonList(TypeDecorator[list[Any]]):
    """A list bound as its JSON text, for SQLite's ``json_each``."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str:
        return json.dumps(list(value))


@compiles(among, "sqlite")
def _among_json(element: among, compiler: SQLCompiler, **kw: Any) -> str:
    # One parameter, whatever the list's length: an expanding IN is rendered anew (its
    # placeholders) on every run, which cost more than the query on the hot paths.
    column = compiler.process(element.column, **kw)
    values = compiler.process(bindparam(element.name, type_=_JsonList()), **kw)
    return f"{column} IN (SELECT value FROM json_each({values}))"


@compiles(among, "postgresql")
def _among_any(element: among, compiler: SQLCompiler, **kw: Any) -> str:
    kind = element.column.type
    if isinstance(kind, String) and kind.length:
        kind = String()  # VARCHAR(20)[] would cut a longer value to 20 and maybe match it
    values = bindparam(element.name, type_=ARRAY(kind))
    return compiler.process(element.column == any_(values), **kw)
