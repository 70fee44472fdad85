"""Writing the demo: the bulk writer, the forked drawing process, and the public entry point.

Rows are written in bulk (tracker.bulk: COPY on PostgreSQL, one executemany per table and
batch on SQLite) because a demo load of 100,000 people through the ORM would take many minutes,
so the demo itself keeps the rules the services enforce (consistent facts, consent before
sharing, outbox messages, clocks). A large load draws the journeys in a forked second process
while this one writes them; the rows are the same as drawn in one.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from queue import Empty
from typing import Any, cast

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from tracker import audit
from tracker.access import Actor
from tracker.admin.organisations import seed_organisations
from tracker.bulk import BulkWriter, as_values
from tracker.clocks import local_today, utcnow
from tracker.db import Database
from tracker.demo.cut import Cut
from tracker.demo.fit import FitDemo
from tracker.demo.fit_programme import FitLedger
from tracker.demo.journeys import DemoGenerator
from tracker.demo.ledger import Ids, Ledger
from tracker.demo.people import ensure_demo_users, refuse_in_production
from tracker.demo.story import FIT_COHORT_SIZE, FIT_COHORT_YEAR, SETUP_TIME, cut_moment
from tracker.enums import Role, StepState
from tracker.models import (
    AuditEvent,
    Case,
    Consent,
    FitContact,
    FitJob,
    FitOffer,
    FitParticipant,
    FitPermit,
    FitRegistration,
    FitWorkDay,
    Handoff,
    Newcomer,
    Organisation,
    OutboxMessage,
    Step,
    User,
)
from tracker.pathway import PathwayRegistry, get_registry

TABLES: list[tuple[str, Table]] = [
    (name, cast(Table, model.__table__))
    for name, model in [
        ("newcomers", Newcomer),
        ("cases", Case),
        ("steps", Step),
        ("handoffs", Handoff),
        ("consents", Consent),
        ("audit_events", AuditEvent),
        ("outbox", OutboxMessage),
    ]
]

FIT_TABLES: list[tuple[str, Table]] = [
    (name, cast(Table, model.__table__))
    for name, model in [
        ("fit_offers", FitOffer),
        ("fit_participants", FitParticipant),
        ("fit_registrations", FitRegistration),
        ("fit_contacts", FitContact),
        ("fit_jobs", FitJob),
        ("fit_work_days", FitWorkDay),
        ("fit_permits", FitPermit),
    ]
]
TABLE_BY_NAME = dict(TABLES + FIT_TABLES)


def fit_done_in(session: Session, year: int) -> int:
    start = datetime(year, 1, 1, tzinfo=UTC)
    return (
        session.scalar(
            select(func.count())
            .select_from(Step)
            .where(
                Step.key == "fit_enrollment",
                Step.state == StepState.done,
                Step.done_at >= start,
                Step.done_at < start.replace(year=year + 1),
            )
        )
        or 0
    )


# From this many people the journeys are drawn in a second process while this one writes.
PARALLEL_FROM = 5_000
LOAD_CACHE_KIB = 64 * 1024  # SQLite's page cache while loading
Values = dict[str, tuple[list[str], list[list[Any]]]]


@dataclass(frozen=True)
class DrawPlan:
    """Which people to draw, in batches of how many, converted for which driver."""

    people: int
    first_index: int
    fit_cohort: int
    batch_size: int
    sqlite: bool


def draw(gen: DemoGenerator, fit: FitDemo | None, plan: DrawPlan) -> Iterator[tuple[int, Values]]:
    """The rows to write, batch by batch: (people in the batch, rows per table in the order
    they can be written, converted for the driver of the database, SQLite or not); the
    FIT@THGA rows last (0 people), when the pathways have the FIT step."""
    writer = BulkWriter()

    def prepared(rows: dict[str, list[dict[str, Any]]], names: list[str]) -> Values:
        return {
            name: writer.prepare(TABLE_BY_NAME[name], *as_values(rows[name]), sqlite=plan.sqlite)
            for name in names
        }

    done = 0
    while done < plan.people:
        batch = Ledger(gen.ids, gen.users, (name for name, _ in TABLES), end=gen.cut)
        size = min(plan.batch_size, plan.people - done)
        for i in range(done, done + size):
            index = plan.first_index + i
            cut = Cut(gen, batch, gen.person(index, fit_cohort=i < plan.fit_cohort))
            cut.write()
            if fit is not None:
                fit.collect(index, cut.story, cut)
        yield size, prepared(batch.rows, [name for name, _ in TABLES])
        done += size
    if fit is not None:
        rows = fit.write()
        yield 0, prepared(rows, [*FitLedger.TABLE_NAMES, "audit_events", "outbox"])


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def draw_to(queue: Any, gen: DemoGenerator, fit: FitDemo | None, plan: DrawPlan) -> None:
    try:
        for item in draw(gen, fit, plan):
            queue.put(item)
        queue.put(None)
    except BaseException:
        queue.put(traceback.format_exc())
        raise


def draw_in_child(
    gen: DemoGenerator, fit: FitDemo | None, plan: DrawPlan
) -> Iterator[tuple[int, Values]]:
    """``draw`` in a forked process, a few batches ahead of the writing here.

    Drawing the journeys and writing the rows each take most of a core; on two cores they
    overlap. The child draws everything in order (ids, references, FIT places), exactly as
    ``draw`` here would, and touches no database: it sends the rows converted for the driver
    (strings travel between processes much faster than datetimes), so this side only writes.
    """
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue(maxsize=3)
    child = ctx.Process(target=draw_to, args=(queue, gen, fit, plan), daemon=True)
    child.start()
    try:
        while True:
            try:
                item = queue.get(timeout=5)
            except Empty:
                if not child.is_alive():
                    raise RuntimeError(
                        f"the demo generator stopped (exit code {child.exitcode})"
                    ) from None
                continue
            if item is None:
                break
            if isinstance(item, str):
                raise RuntimeError(f"the demo generator failed:\n{item}")
            yield item
    finally:
        if child.is_alive():
            child.terminate()
        child.join()
        queue.close()


def load_demo(
    db: Database,
    *,
    people: int,
    seed: int = 2025,
    as_of: date | None = None,
    now: datetime | None = None,
    batch_size: int = 1000,
    progress: Callable[[int], None] | None = None,
    registry: PathwayRegistry | None = None,
) -> dict[str, int]:
    """Load ``people`` newcomers with full histories; returns row counts written per table.

    Person number n (counting the newcomers already in the database) always has the same
    journey for a seed; ``as_of`` (default today) only decides how far along it is: to the end
    of that day, or on the day itself to ``now`` (default the current time), the moment of the
    load, so that nothing in the demo happens after it.
    """
    refuse_in_production()
    registry = registry or get_registry()
    now = now or utcnow()
    as_of = as_of or local_today(now)
    cut = cut_moment(as_of, now)
    with db.transaction() as session:
        seed_organisations(session, registry=registry, now=SETUP_TIME)
        ensure_demo_users(session, now=SETUP_TIME)
    with db.read() as session:
        orgs = {
            o.key: (o.id, o.receives_handoffs and o.active)
            for o in session.scalars(select(Organisation))
        }
        users = {u.username: u.id for u in session.scalars(select(User))}
        ids = Ids(
            {
                name: (session.scalar(select(func.max(table.c.id))) or 0) + 1
                for name, table in TABLES + FIT_TABLES
            }
        )
        refs = set(session.scalars(select(Case.reference)))
        first_index = session.scalar(select(func.count()).select_from(Newcomer)) or 0
        fit_done = fit_done_in(session, FIT_COHORT_YEAR)
    gen = DemoGenerator(
        registry=registry,
        orgs=orgs,
        users=users,
        ids=ids,
        seed=seed,
        cut=cut,
        existing_refs=refs,
    )
    fit = None
    if gen.has_fit:
        with db.read() as session:
            fit = FitDemo(gen, session)
    # The FIT 2024 cohort is 108 students in all: top it up to that, never beyond.
    room = people if people >= 360 else round(people * 0.3)
    fit_cohort = min(max(0, FIT_COHORT_SIZE - fit_done), room) if gen.has_fit else 0
    counts = {name: 0 for name, _ in TABLES}
    drawing = draw_in_child if people >= PARALLEL_FROM and can_fork() else draw
    plan = DrawPlan(people, first_index, fit_cohort, batch_size, sqlite=db.is_sqlite)
    # One transaction per batch of people; FIT@THGA last, in one (places go to registrations
    # in the order they came, so it needs everyone).
    try:
        for size, values in drawing(gen, fit, plan):
            with db.transaction() as session:
                conn = session.connection()
                if db.is_sqlite:
                    # The indexes being filled outgrow SQLite's 2 MiB page cache within a few
                    # thousand people; from then on each batch read its pages back from the OS
                    # (100k people: half the system time; 64 MiB did as well as 256 MiB).
                    # Dropped with the pool below.
                    conn.exec_driver_sql(f"PRAGMA cache_size=-{LOAD_CACHE_KIB}")
                for name, (columns, rows) in values.items():
                    BulkWriter.write(conn, TABLE_BY_NAME[name], columns, rows)
                    counts[name] = counts.get(name, 0) + len(rows)
            if progress and size:
                progress(size)
    finally:
        if db.is_sqlite:
            db.writer.dispose()  # the load's connections, with their large page caches
    if not db.is_sqlite:
        with db.transaction() as session:
            for name, _ in TABLES + FIT_TABLES:
                session.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"COALESCE((SELECT MAX(id) FROM {name}), 1))"
                    )
                )
    with db.transaction() as session:
        audit.record(
            session,
            actor=Actor(username="system:demo", role=Role.admin),
            action="demo.loaded",
            entity_type="system",
            entity_id=None,
            now=now,
            details={"people": people, "seed": seed, "as_of": as_of.isoformat()},
        )
    if not db.is_sqlite:
        # Fresh planner statistics: right after a bulk load autovacuum has not analysed the
        # tables yet, and a year's figures took 12 s on a plan made without them (17 ms after).
        # VACUUM as well: until the visibility map is set, PostgreSQL cannot answer a partner's
        # queue page from its covering index alone. (Outside a transaction, as VACUUM must be.)
        with db.writer.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE)"))
    return counts
