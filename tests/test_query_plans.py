"""Query plans of the hot queries on PostgreSQL: no sequential scan of a big table.

A demo database of a few thousand people is loaded and analysed, each hot query function runs
once while the SQL it sends is captured, and every captured SELECT is explained with its own
parameters. A ``Seq Scan`` of one of the big tables fails the test unless it is listed in
``ALLOWED`` with the reason; the leadership aggregates may scan (they read a whole year) but
never once per row (a sequential scan on the inner side of a nested loop or in a correlated
subplan). Run with ``-s`` to see the table of plans.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import pytest
from psycopg import sql as psycopg_sql
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from tracker.access import Actor, actor_for
from tracker.db import PG_RANDOM_PAGE_COST, Database
from tracker.demo.load import load_demo
from tracker.enums import CaseStatus, HandoffState
from tracker.fit import queries as fit_queries
from tracker.journeys import inbox, queries, sweep
from tracker.messages import delivery
from tracker.models import Base, Case, Handoff, Organisation, Step
from tracker.privacy import export as privacy
from tracker.privacy import queries as privacy_queries
from tracker.privacy.retention import expired_newcomers
from tracker.reporting import figures as outcomes
from tracker.reporting import fit as fit_figures
from tracker.reporting import partners as partner_figures

pytestmark = pytest.mark.postgres

PEOPLE = 4000  # ~13 s to load; enough rows that an index beats a scan on its merits
AS_OF = date(2026, 10, 31)
NOW = datetime(2026, 10, 31, 12, 0, tzinfo=UTC)
FIT_YEAR = 2025
RANDOM_PAGE_COST = PG_RANDOM_PAGE_COST  # set by the tracker's engine; see _explain

BIG_TABLES = frozenset(
    {
        "newcomers",
        "cases",
        "steps",
        "handoffs",
        "consents",
        "audit_events",
        "outbox",
        "access_log",
        "fit_participants",
        "fit_registrations",
        "fit_work_days",
    }
)

# query -> {table: reason} for sequential scans that are right; "*" allows every big table.
ALLOWED: dict[str, dict[str, str]] = {
    # The leadership figures aggregate a whole year (or all years: cohorts, backlog) of cases,
    # steps, handoffs and FIT records: reading the table once is cheaper than an index lookup
    # per row. They are still checked not to scan once per row (see _rescanned).
    "outcomes.year_figures": {"*": "whole-year aggregate over every row of the year"},
    # The retention run groups every person's cases (a person expires only when all of their
    # cases ended long enough ago): one daily pass over all cases, by design.
    "retention.expired_newcomers": {
        "cases": "daily whole-table pass grouping every person's cases",
        "newcomers": "daily whole-table pass, joined to the grouped cases",
    },
    # A year's working days are about a third of the table (it holds three years): reading it
    # once beats an index range over a third of it.
    "fit_queries.day_counts": {"fit_work_days": "a year's days are ~40% of the table"},
    # A year's participants are ~4% of all cases at any scale (FIT students are ~12% of the
    # people, a year a third of them); hashing cases and newcomers once is as cheap as ~160
    # index probes and stays so as the tables grow together.
    "fit_queries.participants": {
        "cases": "hash join for a year's participants (~4% of cases)",
        "newcomers": "hash join for a year's participants (~4% of people)",
    },
    # The same for the panel's case status: its steps must come from ix_steps_key_state_done.
    "fit_figures.fit_panel": {"cases": "hash join for a year's participants (~4% of cases)"},
    # A search box matches any part of a name ("ann" in "Johanna"): no B-tree index serves
    # LIKE '%ann%', so the planner may read the people once rather than probe per case.
    "queries.count_cases(me,search)": {"newcomers": "substring search of names"},
}


@dataclass
class Statement:
    sql: str
    params: Any
    plan: dict[str, Any] = field(default_factory=dict)


@dataclass
class Checked:
    name: str
    seconds: float
    statements: list[Statement]


def _nodes(node: dict[str, Any], rescanned: bool = False) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every plan node, with whether it runs once per outer row (inner side of a nested loop,
    or inside a correlated subplan)."""
    yield node, rescanned
    text_of_node = json.dumps({k: v for k, v in node.items() if k != "Plans"})
    for child in node.get("Plans", []):
        relation = child.get("Parent Relationship")
        if node["Node Type"] in {"Materialize", "Hash"}:
            again = False  # the child runs once; its rows are kept and re-read from memory
        else:
            again = rescanned or (node["Node Type"] == "Nested Loop" and relation == "Inner")
        if relation == "SubPlan" and f"hashed {child.get('Subplan Name')}" not in text_of_node:
            again = True  # a correlated subplan runs once per row (a hashed one only once)
        yield from _nodes(child, again)


def _seq_scans(plan: dict[str, Any]) -> list[tuple[str, bool]]:
    return [
        (n["Relation Name"], rescanned)
        for n, rescanned in _nodes(plan)
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in BIG_TABLES
    ]


def _describe(plan: dict[str, Any]) -> str:
    parts = []
    for n, rescanned in _nodes(plan):
        kind = n["Node Type"]
        if "Relation Name" not in n and "Index Name" not in n:
            continue
        label = kind.replace(" Scan", "")
        target = n.get("Index Name") or n.get("Relation Name")
        parts.append(f"{label}:{target}{'*' if rescanned else ''}")
    return ", ".join(parts) or "(no table)"


@contextmanager
def _capture(db: Database) -> Iterator[list[Statement]]:
    captured: list[Statement] = []

    def before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        head = statement.lstrip().split(None, 1)[0].upper()
        if not executemany and head in {"SELECT", "WITH"}:
            captured.append(Statement(statement, parameters))

    event.listen(db.writer, "before_cursor_execute", before)
    try:
        yield captured
    finally:
        event.remove(db.writer, "before_cursor_execute", before)


def _explain(db: Database, statements: list[Statement]) -> None:
    with db.writer.connect() as conn:
        # The tracker's engine sets random_page_cost for SSD/cached data on every connection
        # (tracker/db.py build_engine): plan exactly as the tracker's own sessions do. With
        # PostgreSQL's default of 4 (spinning disks) the planner hash-joins a few hundred rows
        # against a whole table at this size, although the index plans measure 2-5x faster.
        shown = conn.exec_driver_sql("SHOW random_page_cost").scalar_one()
        assert float(shown) == RANDOM_PAGE_COST, f"the engine did not set it: {shown}"
        for st in statements:
            raw = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + st.sql, st.params).scalar_one()
            doc = json.loads(raw) if isinstance(raw, str) else raw
            st.plan = doc[0]["Plan"]
        conn.rollback()


@dataclass
class World:
    db: Database
    actors: dict[str, Actor]
    reference: str  # an open case in stadt-bochum's queue, with a history
    load_seconds: float


def _hot_queries(w: World) -> dict[str, Callable[[Session], object]]:
    a, ref = w.actors, w.reference
    return {
        "queries.partner_queue": lambda s: queries.partner_queue(
            s, actor=a["stadt.weber"], today=AS_OF
        ),
        "queries.partner_queue(overdue)": lambda s: queries.partner_queue(
            s, actor=a["stadt.weber"], due="overdue", today=AS_OF
        ),
        "queries.case_view": lambda s: queries.case_view(
            s, actor=a["cm.mueller"], reference=ref, today=AS_OF
        ),
        "queries.timeline": lambda s: queries.timeline(s, actor=a["cm.mueller"], reference=ref),
        "queries.list_cases(me)": lambda s: queries.list_cases(
            s, actor=a["cm.mueller"], manager="me", today=AS_OF
        ),
        "queries.list_cases(me,overdue)": lambda s: queries.list_cases(
            s, actor=a["cm.mueller"], manager="me", due="overdue", today=AS_OF
        ),
        "queries.count_cases(me)": lambda s: queries.count_cases(
            s, actor=a["cm.mueller"], manager="me", today=AS_OF
        ),
        "queries.count_cases(me,search)": lambda s: queries.count_cases(
            s, actor=a["cm.mueller"], manager="me", search="ann", today=AS_OF
        ),
        "queries.partner_queue_counts": lambda s: queries.partner_queue_counts(
            s, actor=a["stadt.weber"], today=AS_OF
        ),
        "queries.partner_queue(search)": lambda s: queries.partner_queue(
            s, actor=a["stadt.weber"], search="ann", today=AS_OF
        ),
        "inbox.needs_me(me)": lambda s: inbox.needs_me(s, actor=a["cm.mueller"], today=AS_OF),
        "partners.partner_progress": lambda s: partner_figures.partner_progress(
            s, actor=a["cm.mueller"], today=AS_OF
        ),
        "sweep.sweep_clocks": _sweep_clocks_two_batches,
        "sweep.sweep_handoffs": lambda s: sweep.sweep_handoffs(s, now=NOW, limit=500),
        "delivery.claim_messages": lambda s: delivery.claim_messages(s, now=NOW, limit=100),
        "fit_queries.participants": lambda s: fit_queries.participants(
            s, actor=a["thga.nowak"], year=FIT_YEAR
        ),
        "fit_queries.day_counts": lambda s: fit_queries.day_counts(
            s, actor=a["thga.nowak"], year=FIT_YEAR
        ),
        "privacy.subject_data": lambda s: privacy.subject_data(
            s, actor=a["cm.mueller"], reference=ref, now=NOW
        ),
        "privacy.access_history": lambda s: privacy_queries.access_history(
            s, actor=a["cm.mueller"], reference=ref
        ),
        "retention.expired_newcomers": lambda s: expired_newcomers(s, now=NOW),
        "outcomes.year_figures": lambda s: outcomes.year_figures(
            s, actor=a["lead.schmidt"], year=2026, today=AS_OF
        ),
        # A year's FIT@THGA enrolments are a few hundred steps: found by index (key, state,
        # done_at), not by reading every step done in the year. Not a whole-year aggregate.
        "fit_figures.fit_panel": lambda s: fit_figures.fit_panel(
            s, actor=a["lead.schmidt"], year=FIT_YEAR, today=AS_OF
        ),
    }


def _sweep_clocks_two_batches(s: Session) -> object:
    first = sweep.sweep_clocks(s, today=AS_OF, now=NOW, limit=500)
    assert first.next_cursor is not None, "the demo should have more than one batch of clocks"
    return sweep.sweep_clocks(s, today=AS_OF, now=NOW, after_step_id=first.next_cursor, limit=500)


def _add_access_log(db: Database) -> None:
    """The demo writes no access log: add a realistic one (a few views per case)."""
    with db.writer.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO access_log (occurred_at, actor, actor_id, organisation_id, case_id,"
                " purpose) SELECT c.opened_at + make_interval(days => g * 7), u.username, u.id,"
                " u.organisation_id, c.id, 'case' FROM cases c CROSS JOIN generate_series(1, 5) g"
                " JOIN users u ON u.username = (ARRAY['cm.mueller', 'cm.yilmaz', 'stadt.weber',"
                " 'ihk.hoffmann', 'afa.becker'])[g]"
            )
        )


def _truncate(db: Database) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.writer.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="module")
def world(pg_url: str) -> Iterator[World]:
    db = Database(pg_url)
    _truncate(db)
    started = time.perf_counter()
    load_demo(db, people=PEOPLE, seed=7, as_of=AS_OF)
    _add_access_log(db)
    with db.writer.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    load_seconds = time.perf_counter() - started
    with db.read() as s:
        actors = {
            u: actor_for(s, u) for u in ("stadt.weber", "cm.mueller", "thga.nowak", "lead.schmidt")
        }
        # The stadt-bochum case with the longest history, among those in its queue.
        reference = s.scalars(
            select(Case.reference)
            .join(Handoff, Handoff.case_id == Case.id)
            .join(Organisation, Handoff.organisation_id == Organisation.id)
            .where(
                Organisation.key == "stadt-bochum",
                Handoff.state.in_([HandoffState.offered, HandoffState.accepted]),
                Case.status == CaseStatus.open,
            )
            .order_by(Case.id)
            .limit(1)
        ).one()
    try:
        yield World(db, actors, reference, load_seconds)
    finally:
        _truncate(db)
        db.dispose()


@pytest.fixture(scope="module")
def checked(world: World) -> dict[str, Checked]:
    results: dict[str, Checked] = {}
    for name, run in _hot_queries(world).items():
        session = Session(world.db.writer, expire_on_commit=False)
        try:
            with _capture(world.db) as statements:
                started = time.perf_counter()
                run(session)
                seconds = time.perf_counter() - started
        finally:
            session.rollback()  # the sweep and the claim write; leave the data as loaded
            session.close()
        assert statements, f"{name} sent no SELECT"
        _explain(world.db, statements)
        results[name] = Checked(name, seconds, statements)
    _print_table(world, results)
    return results


def _print_table(world: World, results: dict[str, Checked]) -> None:
    print(f"\nquery plans ({PEOPLE} people loaded and analysed in {world.load_seconds:.1f} s;")
    print(" * = runs once per outer row)")
    for c in results.values():
        print(f"{c.name}  [{c.seconds * 1000:.0f} ms]")
        for i, st in enumerate(c.statements, 1):
            print(f"  {i}. {_describe(st.plan)}")


HOT = [
    "queries.partner_queue",
    "queries.partner_queue(overdue)",
    "queries.case_view",
    "queries.timeline",
    "queries.list_cases(me)",
    "queries.list_cases(me,overdue)",
    "queries.count_cases(me)",
    "queries.count_cases(me,search)",
    "queries.partner_queue_counts",
    "queries.partner_queue(search)",
    "inbox.needs_me(me)",
    "partners.partner_progress",
    "sweep.sweep_clocks",
    "sweep.sweep_handoffs",
    "delivery.claim_messages",
    "fit_queries.participants",
    "fit_queries.day_counts",
    "privacy.subject_data",
    "privacy.access_history",
    "retention.expired_newcomers",
    "outcomes.year_figures",
    "fit_figures.fit_panel",
]


def test_every_hot_query_is_checked(world: World) -> None:
    assert set(HOT) == set(_hot_queries(world))


@pytest.mark.parametrize("name", HOT)
def test_no_sequential_scan_of_a_big_table(checked: dict[str, Checked], name: str) -> None:
    allowed = ALLOWED.get(name, {})
    problems = []
    for i, st in enumerate(checked[name].statements, 1):
        for table, rescanned in _seq_scans(st.plan):
            if rescanned:
                problems.append(
                    f"statement {i} scans {table} sequentially once per outer row "
                    f"(nested loop / correlated subplan): {_describe(st.plan)}"
                )
            elif table not in allowed and "*" not in allowed:
                problems.append(f"statement {i} does a Seq Scan on {table}: {_describe(st.plan)}")
    if problems:
        sql = "\n\n".join(f"{i}. {st.sql}" for i, st in enumerate(checked[name].statements, 1))
        pytest.fail(f"{name}:\n  " + "\n  ".join(problems) + f"\n\nSQL:\n{sql}")


# --- the write path's reads, as prepared statements -----------------------------------------------
#
# psycopg prepares a statement the fifth time a connection runs it, and PostgreSQL then often
# plans it once for any parameters (a generic plan), not knowing how long the list in
# ``= ANY($1)`` is. The set-wise services' reads (tracker.bulk.among) must plan well that way
# too. The completion's read of a case's steps, joined to the case and the newcomer, is the
# one to watch: with PostgreSQL's default random_page_cost of 4 its generic plan hashes every
# case (6 ms on 10,000 cases, growing with the table); with the tracker's 1.1 (tracker.db) it
# joins by index, as this test holds it to.


def _change_path(w: World) -> dict[str, Callable[[Session], object]]:
    from tracker.journeys.advance import advance_cases
    from tracker.journeys.steps import complete_step

    cm, ref = w.actors["cm.mueller"], w.reference

    def complete(s: Session) -> object:
        key = s.scalars(
            select(Step.key)
            .join(Case, Step.case_id == Case.id)
            .where(Case.reference == ref, Step.state.in_(["open", "in_progress"]))
            .limit(1)
        ).one()
        return complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)

    return {
        "completion.complete_step": complete,
        "advance.advance_cases": lambda s: advance_cases(s, actor=cm, references=[ref], now=NOW),
    }


def _generic_plan(db: Database, st: Statement) -> dict[str, Any]:
    """The plan PostgreSQL keeps for the statement once prepared: forced generic, with the
    parameters as positional ones of the types the planner infers."""
    names: list[str] = []

    def positional(match: Any) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", positional, st.sql)
    with db.writer.connect() as conn:
        raw = conn.connection.driver_connection
        values = ", ".join(psycopg_sql.Literal(st.params[n]).as_string(raw) for n in names)
        conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        conn.exec_driver_sql(f"PREPARE generic AS {sql}")
        try:
            doc = conn.exec_driver_sql(
                f"EXPLAIN (FORMAT JSON) EXECUTE generic({values})"
                if values
                else "EXPLAIN (FORMAT JSON) EXECUTE generic"
            ).scalar_one()
        finally:
            conn.exec_driver_sql("DEALLOCATE generic")
            conn.rollback()
    doc = json.loads(doc) if isinstance(doc, str) else doc
    return doc[0]["Plan"]


def test_the_write_paths_reads_scan_no_big_table_when_prepared(world: World) -> None:
    problems = []
    for name, run in _change_path(world).items():
        session = Session(world.db.writer, expire_on_commit=False)
        try:
            with _capture(world.db) as statements:
                run(session)
        finally:
            session.rollback()
            session.close()
        assert statements, f"{name} sent no SELECT"
        for i, st in enumerate(statements, 1):
            plan = _generic_plan(world.db, st)
            scans = _seq_scans(plan)
            print(f"{name} {i}. {_describe(plan)}")
            if scans:
                problems.append(f"{name}, statement {i}: {_describe(plan)}\n{st.sql}")
    assert not problems, "\n\n".join(problems)
