"""The `onboarding` command: what an operator or case manager types."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from tracker import __version__, queries
from tracker.access import Actor, actor_for
from tracker.config import get_settings
from tracker.db import Database, database_unavailable, get_database
from tracker.enums import (
    CaseStatus,
    ConsentMethod,
    FitChannel,
    FitStatus,
    HandoffState,
    JobKind,
    OfferKind,
    OrgKind,
    PermitKind,
    Purpose,
    RegistrationStatus,
    Role,
)
from tracker.errors import TrackerError
from tracker.orchestration import AdvanceRequest
from tracker.pathway import get_registry, load_registry
from tracker.schemas import NewcomerIn, NewcomerUpdate

app = typer.Typer(
    help="Welcome Office onboarding tracker: newcomers' journeys across the partners.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Create and migrate the tracker database.", no_args_is_help=True)
newcomer_app = typer.Typer(help="Register newcomers and correct their facts.", no_args_is_help=True)
case_app = typer.Typer(
    help="Open, show and list cases (onboarding journeys).", no_args_is_help=True
)
step_app = typer.Typer(help="Move a step through its life cycle.", no_args_is_help=True)
handoff_app = typer.Typer(help="Hand steps to partners and answer handoffs.", no_args_is_help=True)
consent_app = typer.Typer(
    help="Record consent to share a case with a partner.", no_args_is_help=True
)
org_app = typer.Typer(help="Partner organisations (admin).", no_args_is_help=True)
user_app = typer.Typer(help="Users and their roles (admin).", no_args_is_help=True)
pathway_app = typer.Typer(
    help="The pathways: which steps, in which order, with which clocks.", no_args_is_help=True
)
report_app = typer.Typer(
    help="Reports for leadership and funders (aggregates only; leadership and admins).",
    no_args_is_help=True,
)
fit_app = typer.Typer(
    help="FIT@THGA: participants, offers with places and waiting lists, jobs, days, permits.",
    no_args_is_help=True,
)
fit_offer_app = typer.Typer(help="Plan FIT@THGA offers.", no_args_is_help=True)
fit_job_app = typer.Typer(help="Jobs of FIT@THGA participants.", no_args_is_help=True)
fit_permit_app = typer.Typer(help="Permits of FIT@THGA participants.", no_args_is_help=True)
fit_app.add_typer(fit_offer_app, name="offer")
fit_app.add_typer(fit_job_app, name="job")
fit_app.add_typer(fit_permit_app, name="permit")
for sub, name in [
    (db_app, "db"),
    (newcomer_app, "newcomer"),
    (case_app, "case"),
    (step_app, "step"),
    (handoff_app, "handoff"),
    (consent_app, "consent"),
    (org_app, "org"),
    (user_app, "user"),
    (pathway_app, "pathways"),
    (report_app, "report"),
    (fit_app, "fit"),
]:
    app.add_typer(sub, name=name)

out = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal
T = TypeVar("T")

AsUser = Annotated[
    str,
    typer.Option(
        "--as", envvar="ONBOARDING_USER", help="Act as this user (or set ONBOARDING_USER)."
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripting.")]
Version = Annotated[
    int | None,
    typer.Option(
        "--expected-version", help="Refuse the change if the record changed since this version."
    ),
]
Reason = Annotated[str, typer.Option("--reason", "-r", help="Why (required).")]


def _db() -> Database:
    return get_database()


@contextmanager
def _friendly() -> Iterator[None]:
    """Turn the tracker's errors into one clear line and a non-zero exit."""
    try:
        yield
    except TrackerError as exc:
        err.print(f"[bold red]Error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    except ValidationError as exc:
        for e in exc.errors():
            field = ".".join(str(p) for p in e["loc"]) or "input"
            err.print(f"[bold red]Error:[/] {escape(field)}: {escape(e['msg'])}")
        raise typer.Exit(1) from None
    except DBAPIError as exc:
        # Raised outside Database.transaction/read (e.g. a migration check): the same words.
        away = database_unavailable(exc)
        if away is not None:
            err.print(f"[bold red]Error:[/] {escape(str(away))}")
            raise typer.Exit(1) from None
        if "no such table" in str(exc) or "does not exist" in str(exc.orig or ""):
            err.print(
                "[bold red]Error:[/] The database has no tracker tables yet: "
                "run [bold]onboarding db upgrade[/]."
            )
            raise typer.Exit(1) from None
        raise


def _actor(username: str) -> Actor:
    with _db().read() as session:
        return actor_for(session, username)


def _change(as_user: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    """Run one service function as one transaction on behalf of a user."""
    with _friendly():
        actor = _actor(as_user)
        with _db().transaction() as session:
            return fn(session, actor=actor, **kwargs)


def _read(as_user: str, fn: Callable[..., T], /, **kwargs: Any) -> T:
    with _friendly():
        actor = _actor(as_user)
        with _db().read() as session:
            return fn(session, actor=actor, **kwargs)


def _print_json(value: Any) -> None:
    def plain(v: Any) -> Any:
        if isinstance(v, BaseModel):
            return v.model_dump(mode="json")
        if isinstance(v, list):
            return [plain(i) for i in v]
        return v

    out.print_json(json.dumps(plain(value), ensure_ascii=False, default=str))


def _write_file(content: bytes, name: str, output: Path | None) -> None:
    """Write a generated file: to ``output`` (a file, a folder for ``name``, or - for
    standard output), or to ``name`` here."""
    if output is not None and str(output) == "-":
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
        return
    target = output or Path(name)
    if target.is_dir():
        target = target / name
    target.write_bytes(content)
    err.print(f"Wrote {target} ({len(content):,} bytes).")


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if hasattr(value, "strftime"):
        return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "hour") else value.isoformat()
    return str(value)


DUE_STYLE = {"overdue": "bold red", "due_soon": "yellow", "on_track": "green", "none": "dim"}


# -- database ------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    seed: Annotated[
        bool, typer.Option(help="Add the reference organisations that are missing.")
    ] = True,
) -> None:
    """Create or migrate the database to the newest schema (Alembic)."""
    from tracker.migrate import upgrade
    from tracker.services.admin import seed_organisations

    database = _db()
    with _friendly():
        upgrade(database.url)
        added: list[str] = []
        if seed:
            with database.transaction() as session:
                added = seed_organisations(session)
    out.print(f"Database ready: [bold]{_safe_url(database.url)}[/]")
    if added:
        out.print(f"Added {len(added)} organisations: {', '.join(added)}")


@db_app.command("current")
def db_current(as_json: Json = False) -> None:
    """Show the schema revision of the database and the newest one available."""
    from tracker.migrate import current_revision, head_revision

    database = _db()
    with _friendly():
        info = {
            "database": _safe_url(database.url),
            "current": current_revision(database.writer),
            "newest": head_revision(database.url),
        }
    if as_json:
        _print_json(info)
        return
    out.print(f"database: {info['database']}")
    out.print(f"current:  {info['current'] or '(empty)'}")
    out.print(f"newest:   {info['newest']}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# -- demo ----------------------------------------------------------------------------------


def _progress(total: int, label: str) -> Progress:
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    )


@app.command()
def demo(
    people: Annotated[int, typer.Option(min=1, help="How many newcomers to create.")] = 2000,
    seed: Annotated[
        int,
        typer.Option(
            help="Random seed: the same seed gives the same people; "
            "the day only decides how far along they are."
        ),
    ] = 2025,
    as_of: Annotated[
        str | None, typer.Option(help="Pretend today is this day (YYYY-MM-DD).")
    ] = None,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if newcomers exist.")
    ] = False,
) -> None:
    """Load realistic demo data: partners, users for every role, newcomers at every stage."""
    import time

    if get_settings().environment == "production":
        err.print(
            "[bold red]Error:[/] ONBOARDING_ENVIRONMENT=production: demo data (and its sign-ins "
            "with a published password) is refused; load it on a development machine."
        )
        raise typer.Exit(1)

    from tracker.demo import load_demo
    from tracker.migrate import upgrade

    database = _db()
    with _friendly():
        upgrade(database.url)
        if if_empty:
            with database.read() as session:
                existing = queries.count_newcomers(session)
            if existing:
                out.print(f"Demo data not loaded: the database already holds {existing} newcomers.")
                _print_logins()
                return
        day = date.fromisoformat(as_of) if as_of else None
        started = time.perf_counter()
        with _progress(people, "Demo newcomers") as bar:
            task = bar.add_task("demo", total=people)
            counts = load_demo(
                database,
                people=people,
                seed=seed,
                as_of=day,
                progress=lambda n: bar.advance(task, n),
            )
        took = time.perf_counter() - started
    rows = sum(counts.values())
    out.print(
        f"Loaded {counts['newcomers']} newcomers ({rows:,} rows with their histories) "
        f"in {took:.1f} s."
    )
    _print_logins()


def _print_logins() -> None:
    from tracker.demo import DEMO_PASSWORD, DEMO_USERS

    table = Table(title="Demo sign-ins (demo data only)")
    for col in ("user", "role", "organisation", "password"):
        table.add_column(col)
    for username, _, role, org in DEMO_USERS:
        table.add_row(username, role.value, org or "–", DEMO_PASSWORD)
    out.print(table)


@app.command("serve")
def serve_flows(
    limit: Annotated[int, typer.Option(help="How many flow runs to run at once.")] = 4,
) -> None:
    """Serve the Prefect deployments with their schedules (runs `onboarding-flows serve`)."""
    import subprocess
    import sys
    from pathlib import Path

    from tracker.launcher import child_environment

    # A separate process: the CLI starts flows through Prefect, it never imports flow code.
    command = [
        str(Path(sys.executable).parent / "onboarding-flows"),
        "serve",
        "--limit",
        str(limit),
    ]
    raise typer.Exit(subprocess.call(command, env=child_environment()))


@app.command("run")
def run_all(
    dashboard: Annotated[bool, typer.Option(help="Also start the Streamlit dashboard.")] = True,
) -> None:
    """Start the local Prefect server, the flows and the dashboard; stop them with Ctrl-C."""
    from tracker.launcher import run

    if get_settings().environment != "production":
        _print_logins()
    code = run(say=out.print, with_dashboard=dashboard)
    raise typer.Exit(code)


@app.command()
def status(as_json: Json = False) -> None:
    """Where the data lives, what it holds, and how to start."""
    from tracker.migrate import current_revision, head_revision

    database = _db()
    counts = {}
    with _friendly():
        revision = current_revision(database.writer)
        if revision is not None:
            with database.read() as session:
                counts = queries.database_counts(session)
    if as_json:
        _print_json(
            {
                "version": __version__,
                "database": _safe_url(database.url),
                "schema": revision,
                "schema_newest": head_revision(database.url),
                **counts,
            }
        )
        return
    out.print(f"[bold]onboarding {__version__}[/] – {get_settings().office_name}")
    out.print(f"database: {_safe_url(database.url)}")
    if revision is None:
        out.print("The database is empty: run [bold]onboarding db upgrade[/].")
        return
    cases = ", ".join(f"{n} {s} cases" for s, n in sorted(counts["cases"].items()))
    out.print(f"schema {revision}; {counts['newcomers']} newcomers; {cases}")
    out.print(
        "\nTry:\n"
        "  onboarding case list --as cm.mueller --due overdue\n"
        "  onboarding queue --as stadt.weber\n"
        "  onboarding case show <REFERENCE> --as cm.mueller\n"
        "  onboarding step complete <REFERENCE> registration --as cm.mueller\n"
        "  onboarding --help"
    )


# -- newcomers and cases -------------------------------------------------------------------


@newcomer_app.command("add")
def newcomer_add(
    user: AsUser,
    given_name: Annotated[str, typer.Option(help="Given name(s), any script.")],
    family_name: Annotated[str, typer.Option(help="Family name(s), any script.")],
    birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    nationality: Annotated[
        str | None, typer.Option(help="Two-letter country code, e.g. IN.")
    ] = None,
    eu_citizen: Annotated[
        bool | None, typer.Option("--eu/--non-eu", help="Default: from nationality.")
    ] = None,
    purpose: Annotated[Purpose, typer.Option(help="Why the person came.")] = Purpose.work,
    accelerated: Annotated[
        bool, typer.Option(help="Accelerated skilled-worker procedure (§81a).")
    ] = False,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    language: Annotated[
        str, typer.Option(help="Preferred language: de, en, ar, uk, tr ...")
    ] = "de",
    arrival: Annotated[str | None, typer.Option(help="Arrival date YYYY-MM-DD.")] = None,
    move_in: Annotated[str | None, typer.Option(help="Move-in date YYYY-MM-DD.")] = None,
    permit_expiry: Annotated[
        str | None, typer.Option(help="Visa or permit expiry YYYY-MM-DD.")
    ] = None,
    open_case: Annotated[bool, typer.Option("--open-case/--no-open-case")] = True,
    case_manager: Annotated[str | None, typer.Option(help="Case manager (default: you).")] = None,
    as_json: Json = False,
) -> None:
    """Register a newcomer and (by default) open their case."""
    from tracker.services import open_case as open_case_service
    from tracker.services import register_newcomer

    with _friendly():
        data = NewcomerIn(
            given_name=given_name,
            family_name=family_name,
            birth_date=birth_date,
            nationality=nationality,
            eu_citizen=eu_citizen,
            purpose=purpose,
            accelerated_procedure=accelerated,
            email=email,
            phone=phone,
            preferred_language=language,
            arrival_date=arrival,
            move_in_date=move_in,
            permit_expiry=permit_expiry,
        )
        actor = _actor(user)
        with _db().transaction() as session:
            person = register_newcomer(session, actor=actor, data=data)
            reference = None
            if open_case:
                case = open_case_service(
                    session, actor=actor, newcomer_id=person.id, case_manager=case_manager
                )
                reference = case.reference
            newcomer_id = person.id
    request = _follow_up(reference, quiet=True) if reference else None
    if as_json:
        _print_json(
            {
                "newcomer_id": newcomer_id,
                "reference": reference,
                "advance": request.state if request else None,
            }
        )
        return
    out.print(f"Registered newcomer {newcomer_id}.")
    if reference and request:
        out.print(f"Opened case [bold]{reference}[/]: onboarding case show {reference}")
        if request.state in ("unreachable", "failed", "crashed"):
            err.print(f"[yellow]{escape(request.message)}[/]")


@newcomer_app.command("update")
def newcomer_update(
    user: AsUser,
    reference: str,
    arrival: Annotated[str | None, typer.Option(help="Arrival date YYYY-MM-DD.")] = None,
    move_in: Annotated[str | None, typer.Option(help="Move-in date YYYY-MM-DD.")] = None,
    permit_expiry: Annotated[
        str | None, typer.Option(help="Visa or permit expiry YYYY-MM-DD.")
    ] = None,
    email: Annotated[str | None, typer.Option()] = None,
    phone: Annotated[str | None, typer.Option()] = None,
    language: Annotated[str | None, typer.Option()] = None,
    expected_version: Version = None,
) -> None:
    """Correct or add a newcomer's facts; the clocks that count from them follow."""
    from tracker.services import update_newcomer

    given = {
        "arrival_date": arrival,
        "move_in_date": move_in,
        "permit_expiry": permit_expiry,
        "email": email,
        "phone": phone,
        "preferred_language": language,
    }
    with _friendly():
        changes = NewcomerUpdate.model_validate({k: v for k, v in given.items() if v is not None})
    _change(
        user,
        update_newcomer,
        reference=reference,
        changes=changes,
        expected_version=expected_version,
    )
    out.print(f"Updated the newcomer of {reference.upper()}.")


@case_app.command("open")
def case_open(
    user: AsUser,
    newcomer_id: int,
    case_manager: Annotated[str | None, typer.Option(help="Case manager (default: you).")] = None,
    pathway: Annotated[
        str | None, typer.Option(help="Pathway key (default: chosen by profile).")
    ] = None,
) -> None:
    """Open a case for a registered newcomer."""
    from tracker.services import open_case

    case = _change(
        user, open_case, newcomer_id=newcomer_id, case_manager=case_manager, pathway_key=pathway
    )
    out.print(
        f"Opened case [bold]{case.reference}[/] on pathway "
        f"{case.pathway_key} v{case.pathway_version}."
    )
    _follow_up(case.reference)


@case_app.command("show")
def case_show(user: AsUser, reference: str, as_json: Json = False) -> None:
    """A case: the newcomer, the journey as steps with clocks, and consents."""
    view = _read(user, queries.case_view, reference=reference)
    if as_json:
        _print_json(view)
        return
    out.print(
        f"[bold]{view.reference}[/]  {view.pathway} v{view.pathway_version}  status {view.status}  "
        f"case manager {view.case_manager or '–'}  (version {view.version})"
    )
    facts = ", ".join(f"{k}: {_fmt(v)}" for k, v in view.newcomer.items())
    out.print(facts)
    table = Table(show_lines=False)
    for col in ("step", "state", "owner", "handoff", "due", "legal clock", "note", "v"):
        table.add_column(col)
    for st in view.steps:
        note = st.blocked_reason or st.skip_reason or st.outcome or ""
        handoff = "–"
        if st.handoff:
            handoff = st.handoff.state + (
                f" ({st.handoff.hold_reason})" if st.handoff.hold_reason else ""
            )
        elif st.past_handoffs:
            last = st.past_handoffs[-1]
            handoff = f"{last.state}: {last.reason or ''}".strip()
        legal = (
            f"{_fmt(st.legal_due)} {st.legal_reference or ''}"
            if st.legal_due
            else (st.legal_reference or "–")
        )
        table.add_row(
            st.key,
            st.state,
            st.owner,
            handoff,
            f"[{DUE_STYLE[st.due_status]}]{_fmt(st.due_date)}[/]",
            legal,
            note,
            str(st.version),
        )
    out.print(table)
    if view.consents:
        given = [f"{c.organisation}{' (revoked)' if c.revoked_at else ''}" for c in view.consents]
        out.print("Consent: " + ", ".join(given))


@case_app.command("list")
def case_list(
    user: AsUser,
    manager: Annotated[
        str | None, typer.Option(help="Only this case manager's cases ('me' for yours).")
    ] = None,
    status: Annotated[str, typer.Option(help="open, closed, cancelled or all.")] = "open",
    pathway: Annotated[
        str | None, typer.Option(help="skilled_worker, student or eu_citizen.")
    ] = None,
    stage: Annotated[str | None, typer.Option(help="Only cases with this step active.")] = None,
    due: Annotated[str | None, typer.Option(help="overdue or due_soon.")] = None,
    attention: Annotated[bool, typer.Option(help="Only cases needing the case manager.")] = False,
    search: Annotated[str | None, typer.Option(help="Part of a name or reference.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Json = False,
) -> None:
    """List cases sorted by their earliest due date."""
    wanted = None if status == "all" else CaseStatus(status)
    rows = _read(
        user,
        queries.list_cases,
        manager=manager,
        status=wanted,
        pathway=pathway,
        stage=stage,
        due=due,
        attention=attention,
        search=search,
        limit=limit,
        offset=offset,
    )
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} cases")
    for col in ("reference", "name", "pathway", "manager", "active steps", "next due", "overdue"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.reference,
            f"{r.given_name} {r.family_name}",
            r.pathway,
            r.case_manager or "–",
            ", ".join(r.active_steps),
            f"[{DUE_STYLE[r.due_status]}]{_fmt(r.next_due)}[/]",
            str(r.overdue_steps or ""),
        )
    out.print(table)


@case_app.command("letter")
def case_letter(
    user: AsUser,
    reference: str,
    language: Annotated[
        str | None, typer.Option(help="de, en or ar (default: the newcomer's).")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="html or pdf (printable A4).")
    ] = "html",
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write here (a PDF goes to willkommen-REF.pdf if unset)."),
    ] = None,
) -> None:
    """The newcomer's welcome letter: their checklist, documents and deadlines."""
    from tracker.letters import welcome_letter
    from tracker.pdf import html_to_pdf

    if fmt not in ("html", "pdf"):
        err.print(f"[bold red]Error:[/] Unknown format {escape(fmt)!r}; choose html or pdf.")
        raise typer.Exit(1)
    html = _read(user, welcome_letter, reference=reference, language=language)
    if fmt == "html":
        if output:
            output.write_text(html, encoding="utf-8")
            err.print(f"Written to {output}")
        else:
            sys.stdout.write(html)
        return
    with _friendly():
        pdf = html_to_pdf(html)
    _write_file(pdf, f"willkommen-{reference}.pdf", output)


@case_app.command("timeline")
def case_timeline(user: AsUser, reference: str, as_json: Json = False) -> None:
    """The case's history from the audit trail."""
    events = _read(user, queries.timeline, reference=reference)
    if as_json:
        _print_json(events)
        return
    table = Table(title=f"Timeline of {reference.upper()}")
    for col in ("when", "who", "what", "step", "why"):
        table.add_column(col)
    for e in events:
        table.add_row(_fmt(e.occurred_at), e.actor, e.action, e.step or "", e.reason or "")
    out.print(table)


@case_app.command("advance")
def case_advance(user: AsUser, reference: str) -> None:
    """Open whatever has become possible; safe to run any number of times."""
    from tracker.services import advance_case

    result = _change(user, advance_case, reference=reference)
    out.print(f"{result.reference}: opened {result.opened or 'nothing'}; closed: {result.closed}")


@case_app.command("cancel")
def case_cancel(
    user: AsUser, reference: str, reason: Reason, expected_version: Version = None
) -> None:
    """End a journey early, with a reason; open offers to partners are withdrawn."""
    from tracker.services import cancel_case

    _change(
        user, cancel_case, reference=reference, reason=reason, expected_version=expected_version
    )
    out.print(f"{reference.upper()} is cancelled.")


@case_app.command("reassign")
def case_reassign(
    user: AsUser, reference: str, case_manager: str, expected_version: Version = None
) -> None:
    """Give a case to another case manager."""
    from tracker.services import reassign_case

    _change(
        user,
        reassign_case,
        reference=reference,
        case_manager=case_manager,
        expected_version=expected_version,
    )
    out.print(f"{reference.upper()} is now with {case_manager}.")


# -- steps and handoffs --------------------------------------------------------------------


def _follow_up(reference: str, *, quiet: bool = False) -> AdvanceRequest:
    """After a change has committed: ask for the case's advance and say what happened."""
    from tracker.orchestration import request_advance

    request = request_advance([reference])
    if quiet:
        return request
    if request.state == "completed":
        with _db().read() as session:
            active = queries.active_steps(session, reference=reference)
        out.print(f"Open now: {', '.join(active) if active else 'nothing – the case is closed'}")
    elif request.state in ("unreachable", "failed", "crashed"):
        err.print(f"[yellow]{escape(request.message)}[/]")
    else:
        out.print(escape(request.message))
    return request


def _report_step(reference: str, step: str, verb: str) -> None:
    out.print(f"{reference.upper()}: {step} {verb}.")
    _follow_up(reference)


@step_app.command("start")
def step_start(user: AsUser, reference: str, step: str, expected_version: Version = None) -> None:
    """Mark work on an open step as begun."""
    from tracker.services import start_step

    _change(user, start_step, reference=reference, step_key=step, expected_version=expected_version)
    out.print(f"{reference.upper()}: {step} in progress.")


@step_app.command("resume")
def step_resume(user: AsUser, reference: str, step: str, expected_version: Version = None) -> None:
    """Resume a blocked step."""
    step_start(user, reference, step, expected_version)


@step_app.command("complete")
def step_complete(
    user: AsUser,
    reference: str,
    step: str,
    outcome: Annotated[
        str | None, typer.Option(help="e.g. full/partial/none for recognition.")
    ] = None,
    on: Annotated[
        str | None, typer.Option(help="The day it happened (YYYY-MM-DD), default today.")
    ] = None,
    expected_version: Version = None,
) -> None:
    """Record a step as done; the steps it unlocks open and are handed on."""
    from tracker.services import complete_step

    with _friendly():
        day = date.fromisoformat(on) if on else None
    _change(
        user,
        complete_step,
        reference=reference,
        step_key=step,
        outcome=outcome,
        on=day,
        expected_version=expected_version,
    )
    _report_step(reference, step, "done")


@step_app.command("block")
def step_block(
    user: AsUser, reference: str, step: str, reason: Reason, expected_version: Version = None
) -> None:
    """Block a step with a reason, e.g. documents missing."""
    from tracker.services import block_step

    _change(
        user,
        block_step,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    out.print(f"{reference.upper()}: {step} blocked.")


@step_app.command("skip")
def step_skip(
    user: AsUser, reference: str, step: str, reason: Reason, expected_version: Version = None
) -> None:
    """Skip a step that does not apply, with a reason."""
    from tracker.services import skip_step

    _change(
        user,
        skip_step,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    _report_step(reference, step, "skipped")


@handoff_app.command("offer")
def handoff_offer(
    user: AsUser,
    reference: str,
    step: str,
    to: Annotated[
        str | None, typer.Option("--to", help="Organisation key (default: the step's owner).")
    ] = None,
) -> None:
    """Hand a step to a partner's queue (again, or to another partner)."""
    from tracker.services import offer_handoff

    handoff = _change(user, offer_handoff, reference=reference, step_key=step, organisation=to)
    note = (
        " (held: the newcomer has not consented to sharing yet)"
        if handoff.state == HandoffState.held
        else ""
    )
    out.print(f"{reference.upper()}: {step} handed to {handoff.organisation.key}{note}.")


@handoff_app.command("withdraw")
def handoff_withdraw(
    user: AsUser, reference: str, step: str, reason: Reason, expected_version: Version = None
) -> None:
    """Take back an unanswered or held handoff; the step stays with you."""
    from tracker.services import withdraw_handoff

    _change(
        user,
        withdraw_handoff,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    out.print(f"{reference.upper()}: the handoff of {step} is withdrawn.")
    _follow_up(reference, quiet=True)


@handoff_app.command("accept")
def handoff_accept(
    user: AsUser, reference: str, step: str, expected_version: Version = None
) -> None:
    """Take on a step offered to your organisation."""
    from tracker.services import accept_handoff

    _change(
        user, accept_handoff, reference=reference, step_key=step, expected_version=expected_version
    )
    out.print(f"{reference.upper()}: {step} accepted.")
    _follow_up(reference, quiet=True)


@handoff_app.command("decline")
def handoff_decline(
    user: AsUser, reference: str, step: str, reason: Reason, expected_version: Version = None
) -> None:
    """Decline an offered step, with a reason; it goes back to the case manager."""
    from tracker.services import decline_handoff

    _change(
        user,
        decline_handoff,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    out.print(f"{reference.upper()}: {step} declined; the case manager is told.")
    _follow_up(reference, quiet=True)


@handoff_app.command("return")
def handoff_return(
    user: AsUser, reference: str, step: str, reason: Reason, expected_version: Version = None
) -> None:
    """Give an accepted step back, with a reason."""
    from tracker.services import return_handoff

    _change(
        user,
        return_handoff,
        reference=reference,
        step_key=step,
        reason=reason,
        expected_version=expected_version,
    )
    out.print(f"{reference.upper()}: {step} returned; the case manager is told.")
    _follow_up(reference, quiet=True)


@handoff_app.command("complete")
def handoff_complete(
    user: AsUser,
    reference: str,
    step: str,
    outcome: Annotated[str | None, typer.Option()] = None,
    expected_version: Version = None,
) -> None:
    """Finish a step your organisation accepted."""
    from tracker.services import complete_handoff

    _change(
        user,
        complete_handoff,
        reference=reference,
        step_key=step,
        outcome=outcome,
        expected_version=expected_version,
    )
    _report_step(reference, step, "done")


@app.command()
def queue(
    user: AsUser,
    organisation: Annotated[
        str | None, typer.Argument(help="Organisation key (partners: their own).")
    ] = None,
    state: Annotated[
        list[HandoffState] | None, typer.Option(help="offered, accepted ... (repeatable)")
    ] = None,
    due: Annotated[str | None, typer.Option(help="overdue or due_soon.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    as_json: Json = False,
) -> None:
    """A partner organisation's handoff queue, most urgent first."""
    states = tuple(state) if state else (HandoffState.offered, HandoffState.accepted)
    items = _read(
        user,
        queries.partner_queue,
        organisation=organisation,
        states=states,
        due=due,
        limit=limit,
        offset=offset,
    )
    if as_json:
        _print_json(items)
        return
    table = Table(title=f"Queue: {len(items)} handoffs")
    for col in ("reference", "step", "state", "age (days)", "due", "legal clock", "newcomer"):
        table.add_column(col)
    for q in items:
        who = " ".join(str(q.newcomer.get(k, "")) for k in ("given_name", "family_name")).strip()
        table.add_row(
            q.reference,
            q.step,
            q.state,
            str(q.age_days if q.age_days is not None else "–"),
            f"[{DUE_STYLE[q.due_status]}]{_fmt(q.due_date)}[/]",
            f"{_fmt(q.legal_due)} {q.legal_reference or ''}" if q.legal_due else "–",
            who,
        )
    out.print(table)


# -- consent -------------------------------------------------------------------------------


@consent_app.command("give")
def consent_give(
    user: AsUser,
    reference: str,
    organisation: str,
    method: Annotated[
        ConsentMethod, typer.Option(help="How consent was given.")
    ] = ConsentMethod.signed_form,
    language: Annotated[str, typer.Option(help="Language of the notice shown.")] = "de",
) -> None:
    """Record the newcomer's consent to share the case with an organisation."""
    from tracker.services import give_consent

    _change(
        user,
        give_consent,
        reference=reference,
        organisation=organisation,
        method=method,
        notice_language=language,
    )
    out.print(f"{reference.upper()}: consent for {organisation} recorded; held handoffs released.")
    _follow_up(reference, quiet=True)


@consent_app.command("revoke")
def consent_revoke(user: AsUser, reference: str, organisation: str) -> None:
    """Record that the newcomer withdrew consent; sharing stops at once."""
    from tracker.services import revoke_consent

    _change(user, revoke_consent, reference=reference, organisation=organisation)
    out.print(f"{reference.upper()}: consent for {organisation} revoked; its handoffs are held.")
    _follow_up(reference, quiet=True)


# -- import --------------------------------------------------------------------------------


@app.command("import")
def import_csv(
    user: AsUser,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[bool, typer.Option(help="Check every row, write nothing.")] = False,
    skip_duplicates: Annotated[
        bool, typer.Option(help="Import the rest, list the duplicates.")
    ] = False,
    encoding: Annotated[str | None, typer.Option(help="e.g. latin-1 (default: UTF-8).")] = None,
    delimiter: Annotated[
        str | None, typer.Option(help="Column separator (default: detected).")
    ] = None,
    open_cases: Annotated[bool, typer.Option("--open-cases/--no-open-cases")] = True,
    case_manager: Annotated[
        str | None, typer.Option(help="Case manager for rows without one.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Import newcomers from a CSV file: all rows or none."""
    from tracker.importer import ImportFailed, import_newcomers

    with _friendly():
        actor = _actor(user)
        try:
            with _progress(0, "Importing") as bar, _db().transaction() as session:
                task = bar.add_task("import", total=None)
                report = import_newcomers(
                    session,
                    actor=actor,
                    source=path,
                    open_cases=open_cases,
                    skip_duplicates=skip_duplicates,
                    encoding=encoding,
                    delimiter=delimiter,
                    case_manager=case_manager,
                    dry_run=dry_run,
                    progress=lambda n: bar.advance(task, n),
                )
        except ImportFailed as exc:
            if as_json:
                _print_json(_report_dict(exc.report))
            else:
                err.print(escape(str(exc)), style="bold red")
            raise typer.Exit(1) from None
    references = [ref for _, ref in report.imported if isinstance(ref, str)]
    request = None
    if references and not dry_run:
        from tracker.orchestration import request_advance

        # One batch run for the whole file, never one run per case.
        request = request_advance(references, wait=0)
    if as_json:
        _print_json({**_report_dict(report), "advance": request.state if request else None})
        return
    verb = "would be imported (dry run)" if dry_run else "imported"
    out.print(f"{report.rows_read} rows read; {len(report.imported)} {verb}.")
    for line, message in report.skipped_duplicates:
        out.print(f"[yellow]skipped line {line}:[/] {escape(message)}")
    if request is not None:
        style = "yellow" if request.state in ("unreachable", "failed") else "default"
        out.print(f"[{style}]{escape(request.message)}[/]")


def _report_dict(report: Any) -> dict[str, Any]:
    if isinstance(report, BaseModel):
        return report.model_dump(mode="json")
    from dataclasses import asdict, is_dataclass

    return asdict(report) if is_dataclass(report) else dict(report)  # type: ignore[arg-type]


# -- organisations, users, pathways --------------------------------------------------------


@org_app.command("list")
def org_list(as_json: Json = False) -> None:
    """All organisations, active or not."""
    with _db().read() as session:
        rows = queries.organisations(session)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Organisations")
    for col in ("key", "name", "kind", "own queue", "active"):
        table.add_column(col)
    for o in rows:
        table.add_row(
            o.key,
            o.name,
            o.kind,
            "yes" if o.receives_handoffs else "no",
            "yes" if o.active else "no",
        )
    out.print(table)


@org_app.command("add")
def org_add(
    user: AsUser,
    key: str,
    name: str,
    kind: Annotated[OrgKind, typer.Option()] = OrgKind.network,
    own_queue: Annotated[bool, typer.Option("--own-queue/--no-own-queue")] = True,
    email: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Add a partner organisation."""
    from tracker.services import add_organisation

    _change(
        user,
        add_organisation,
        key=key,
        name=name,
        kind=kind,
        receives_handoffs=own_queue,
        email=email,
    )
    out.print(f"Added organisation {key}.")


@org_app.command("rename")
def org_rename(user: AsUser, key: str, name: str) -> None:
    """Rename an organisation (its key stays)."""
    from tracker.services import update_organisation

    _change(user, update_organisation, key=key, name=name)
    out.print(f"Renamed {key} to {name!r}.")


@org_app.command("deactivate")
def org_deactivate(user: AsUser, key: str) -> None:
    """Stop handing new steps to an organisation; its history stays."""
    from tracker.services import update_organisation

    _change(user, update_organisation, key=key, active=False)
    out.print(f"Deactivated {key}.")


@org_app.command("activate")
def org_activate(user: AsUser, key: str) -> None:
    """Reactivate an organisation."""
    from tracker.services import update_organisation

    _change(user, update_organisation, key=key, active=True)
    out.print(f"Activated {key}.")


@user_app.command("list")
def user_list(user: AsUser, as_json: Json = False) -> None:
    """All users with role and organisation."""
    rows = _read(user, queries.users)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Users")
    for col in ("username", "name", "role", "organisation", "active"):
        table.add_column(col)
    for u in rows:
        table.add_row(
            u.username, u.display_name, u.role, u.organisation or "–", "yes" if u.active else "no"
        )
    out.print(table)


@user_app.command("add")
def user_add(
    user: AsUser,
    username: str,
    display_name: Annotated[str, typer.Option(help="Full name.")],
    role: Annotated[Role, typer.Option()],
    organisation: Annotated[str | None, typer.Option(help="Organisation key.")] = None,
    email: Annotated[str | None, typer.Option()] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="ONBOARDING_NEW_PASSWORD",
            help="Initial password (or set ONBOARDING_NEW_PASSWORD).",
        ),
    ] = None,
) -> None:
    """Add a user with a role; the password is stored only as an Argon2 hash."""
    from tracker.passwords import hash_password
    from tracker.services import add_user

    with _friendly():
        hashed = hash_password(password) if password else None
    _change(
        user,
        add_user,
        username=username,
        display_name=display_name,
        role=role,
        organisation=organisation,
        email=email,
        password_hash=hashed,
    )
    out.print(f"Added user {username.lower()} ({role.value}).")


@user_app.command("bootstrap")
def user_bootstrap(
    username: str,
    display_name: Annotated[str, typer.Option(help="Full name.")],
    email: Annotated[str | None, typer.Option()] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="ONBOARDING_NEW_PASSWORD",
            help="The password (or set ONBOARDING_NEW_PASSWORD; asked for if neither).",
        ),
    ] = None,
) -> None:
    """Create the first administrator of a new installation (only while there is none)."""
    from tracker.passwords import hash_password
    from tracker.services.admin import bootstrap_admin

    if not password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with _friendly():
        hashed = hash_password(password)
        with _db().transaction() as session:
            bootstrap_admin(
                session,
                username=username,
                display_name=display_name,
                email=email,
                password_hash=hashed,
            )
    out.print(f"Added administrator {username.lower()}; sign in and add the other users.")


@pathway_app.command("list")
def pathways_list(as_json: Json = False) -> None:
    """The pathways and their versions."""
    registry = get_registry()
    rows: list[dict[str, Any]] = [
        {
            "key": p.key,
            "version": p.version,
            "profile": p.profile.value,
            "title": p.title.en,
            "steps": p.step_ids,
        }
        for p in sorted(registry.pathways.values(), key=lambda p: (p.key, p.version))
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Pathways")
    for col in ("key", "version", "profile", "title", "steps"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["key"], str(r["version"]), r["profile"], r["title"], " → ".join(r["steps"]))
    out.print(table)


@pathway_app.command("show")
def pathways_show(
    key: str, version: Annotated[int | None, typer.Option()] = None, as_json: Json = False
) -> None:
    """One pathway's steps, owners, prerequisites and clocks."""
    with _friendly():
        pathway = get_registry().get(key, version)
    if as_json:
        _print_json(pathway)
        return
    table = Table(title=f"{pathway.title.de} / {pathway.title.en} (v{pathway.version})")
    for col in ("step", "owner", "needs", "service target", "legal clock"):
        table.add_column(col)
    for s in pathway.steps:
        clock = "–"
        if s.legal_clock:
            c = s.legal_clock
            fast = f" ({c.days_accelerated} accelerated)" if c.days_accelerated is not None else ""
            clock = f"{c.days} days from {c.basis}{fast}; {c.reference}"
        target = f"{s.service_days} days" if s.service_days is not None else "–"
        table.add_row(s.id, s.owner, ", ".join(s.needs) or "–", target, clock)
    out.print(table)


@pathway_app.command("check")
def pathways_check(
    folder: Annotated[
        Path | None, typer.Argument(help="Extra folder of pathway files to check.")
    ] = None,
) -> None:
    """Validate the pathway files (and organisations in the database, if it exists)."""
    from tracker.pathway import BUILTIN_DIR

    with _friendly():
        registry = load_registry(BUILTIN_DIR, folder) if folder else load_registry(BUILTIN_DIR)
    out.print(f"{len(registry.pathways)} pathway versions are valid.")


ReportFormatOpt = Annotated[
    str, typer.Option("--format", "-f", help="html, pdf, csv or json.", case_sensitive=False)
]
ReportLanguage = Annotated[
    str, typer.Option("--language", "-l", help="Language of HTML and PDF (de, en, ...).")
]
ReportOut = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Write to this file or folder (default: the report's name here)."
    ),
]
Archive = Annotated[
    bool,
    typer.Option(
        "--archive",
        help="Also keep every format and language in the database, like the scheduled flow "
        "(replacing a kept one of the same period).",
    ),
]


def _report(
    as_user: str,
    *,
    kind: str,
    period: str,
    fmt: str,
    language: str,
    output: Path | None,
    archive: bool,
) -> None:
    from tracker import reports
    from tracker.services.reports import store_reports

    fmt = fmt.lower()
    with _friendly():
        actor = _actor(as_user)
        if fmt not in reports.REPORT_FORMATS:
            raise TrackerError(
                f"Unknown format {fmt!r}; choose one of {', '.join(reports.REPORT_FORMATS)}."
            )
        # Read once, render outside any transaction (a PDF takes seconds), store briefly.
        with _db().read() as session:
            data = reports.figures(session, actor=actor, kind=kind, period=period)
        if archive:
            files = reports.render_all(data, kind=kind, period=period)
            with _db().transaction() as session:
                kept = store_reports(session, actor=actor, files=files, replace=True)
            err.print(f"Kept {len(kept)} files of the report in the database.")
            wanted = [f for f in files if f.format == fmt and f.language in ("", language)]
        else:
            wanted = []
        file = (
            wanted[0]
            if wanted
            else reports.render(data, kind=kind, period=period, fmt=fmt, language=language)
        )
    _write_file(file.content, file.file_name, output)


@report_app.command("monthly")
def report_monthly(
    as_user: AsUser,
    month: Annotated[
        str | None,
        typer.Option("--month", "-m", help="YYYY-MM; default: the last complete month."),
    ] = None,
    fmt: ReportFormatOpt = "html",
    language: ReportLanguage = "de",
    output: ReportOut = None,
    archive: Archive = False,
) -> None:
    """The monthly outcomes report: caseload, legal deadlines, time to work, partner queues."""
    from tracker import clocks
    from tracker.reports import previous_month

    period = month or previous_month(clocks.local_today())
    _report(
        as_user,
        kind="monthly",
        period=period,
        fmt=fmt,
        language=language,
        output=output,
        archive=archive,
    )


@report_app.command("fit")
def report_fit(
    as_user: AsUser,
    year: Annotated[int, typer.Option("--year", "-y", help="The programme year, e.g. 2024.")],
    fmt: ReportFormatOpt = "html",
    language: ReportLanguage = "de",
    output: ReportOut = None,
    archive: Archive = False,
) -> None:
    """The yearly FIT@THGA programme report: participants, employment, time to work."""
    _report(
        as_user,
        kind="fit",
        period=f"{year:04d}",
        fmt=fmt,
        language=language,
        output=output,
        archive=archive,
    )


@report_app.command("list")
def report_list(as_user: AsUser, as_json: Json = False) -> None:
    """The reports kept in the database (from the schedule or --archive)."""
    from dataclasses import asdict

    from tracker.reports import stored_reports

    rows = _read(as_user, stored_reports)
    if as_json:
        _print_json([asdict(r) for r in rows])
        return
    table = Table("id", "report", "period", "language", "format", "size", "generated", "by")
    for r in rows:
        table.add_row(
            str(r.id),
            r.kind,
            r.period,
            r.language or "–",
            r.format,
            f"{r.size:,}",
            _fmt(r.generated_at),
            r.generated_by,
        )
    out.print(table)


@report_app.command("get")
def report_get(
    as_user: AsUser,
    report_id: Annotated[int, typer.Argument(help="The id from `onboarding report list`.")],
    output: ReportOut = None,
) -> None:
    """Write a kept report to a file."""
    from tracker.reports import stored_report

    file = _read(as_user, stored_report, report_id=report_id)
    _write_file(file.content, file.file_name, output)


# -- FIT@THGA --------------------------------------------------------------------------------


def _fit_day(value: str, option: str) -> date:
    """A date option, or one clear line and exit code 1 (inside ``_friendly``)."""
    from tracker.errors import ValidationFailed

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{option}: {value!r} is not a date (YYYY-MM-DD).") from None


def _fit_moment(value: str, option: str) -> datetime:
    """A date and time in the office's time zone (or with an explicit offset)."""
    from zoneinfo import ZoneInfo

    from tracker.errors import ValidationFailed

    try:
        moment = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
    except ValueError:
        raise ValidationFailed(
            f"{option}: {value!r} is not a date and time (YYYY-MM-DD HH:MM)."
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(get_settings().timezone))
    return moment


@fit_app.command("enrol")
def fit_enrol(
    user: AsUser,
    reference: str,
    channel: Annotated[FitChannel, typer.Option(help="How the student came to the programme.")],
    programme: Annotated[str, typer.Option(help="Study programme, e.g. Maschinenbau.")],
    semester: Annotated[int, typer.Option(help="Semester at enrolment (1-20).")],
    on: Annotated[
        str | None, typer.Option(help="Enrolment day (YYYY-MM-DD), default today.")
    ] = None,
) -> None:
    """Enrol the student of a case in FIT@THGA; the case's FIT step is done with it."""
    from tracker.services import fit

    with _friendly():
        day = _fit_day(on, "--on") if on else None
    participant = _change(
        user,
        fit.enrol,
        reference=reference,
        channel=channel,
        study_programme=programme,
        semester=semester,
        enrolled_on=day,
    )
    out.print(f"{reference.upper()}: enrolled in FIT@THGA as participant {participant.id}.")
    _follow_up(reference)


@fit_app.command("participants")
def fit_participants(
    user: AsUser,
    year: Annotated[int | None, typer.Option(help="Only those enrolled in this year.")] = None,
    status: Annotated[FitStatus | None, typer.Option(help="Only this status.")] = None,
    as_json: Json = False,
) -> None:
    """The programme's participants (programme staff)."""
    from tracker import fit_queries

    rows = _read(user, fit_queries.participants, year=year, status=status.value if status else None)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} FIT@THGA participants")
    for col in ("id", "reference", "name", "enrolled", "programme", "sem.", "status", "job"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r.id),
            r.reference,
            escape(f"{r.given_name} {r.family_name}"),
            _fmt(r.enrolled_on),
            escape(r.study_programme),
            str(r.semester),
            r.status,
            _fmt(r.job_started_on),
        )
    out.print(table)


@fit_offer_app.command("add")
def fit_offer_add(
    user: AsUser,
    kind: Annotated[OfferKind, typer.Option(help="What kind of offer.")],
    title: Annotated[str, typer.Option(help="Title as the students see it.")],
    starts: Annotated[str, typer.Option(help="Start, YYYY-MM-DD HH:MM (Bochum time).")],
    ends: Annotated[str, typer.Option(help="End, YYYY-MM-DD HH:MM (Bochum time).")],
    place: Annotated[str, typer.Option(help="Where it takes place.")],
    capacity: Annotated[int, typer.Option(help="How many places.")],
    company: Annotated[str | None, typer.Option(help="The company, if any.")] = None,
    as_json: Json = False,
) -> None:
    """Plan an offer with a number of places."""
    from tracker.services import fit

    with _friendly():
        starts_at = _fit_moment(starts, "--starts")
        ends_at = _fit_moment(ends, "--ends")
    offer = _change(
        user,
        fit.create_offer,
        kind=kind,
        title=title,
        starts_at=starts_at,
        ends_at=ends_at,
        place=place,
        capacity=capacity,
        company=company,
    )
    if as_json:
        _print_json({"offer_id": offer.id, "capacity": offer.capacity})
        return
    out.print(f"Offer {offer.id} planned: {escape(offer.title)} ({offer.capacity} places).")


@fit_app.command("offers")
def fit_offers(
    user: AsUser,
    year: Annotated[int | None, typer.Option(help="Only offers starting in this year.")] = None,
    as_json: Json = False,
) -> None:
    """The offers with places taken, the waiting list and attendance."""
    from tracker import fit_queries

    rows = _read(user, fit_queries.offers, year=year)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"{len(rows)} FIT@THGA offers")
    for col in ("id", "starts", "kind", "title", "place", "places", "waiting", "came", "status"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            str(r.id),
            _fmt(r.starts_at.astimezone(_office_zone())),
            r.kind,
            escape(r.title),
            escape(r.place),
            f"{r.places_taken}/{r.capacity}",
            str(r.waitlisted),
            str(r.attended) if r.status == "held" else "–",
            r.status,
        )
    out.print(table)


def _office_zone() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(get_settings().timezone)


@fit_app.command("register")
def fit_register(user: AsUser, offer_id: int, participant_id: int, as_json: Json = False) -> None:
    """A place on an offer if one is free, otherwise the end of its waiting list."""
    from tracker.services import fit

    registration = _change(user, fit.register, offer_id=offer_id, participant_id=participant_id)
    if as_json:
        _print_json({"registration_id": registration.id, "status": str(registration.status)})
        return
    where = (
        "has a place"
        if registration.status == RegistrationStatus.registered
        else "is on the waiting list"
    )
    out.print(
        f"Participant {participant_id} {where} for offer {offer_id} "
        f"(registration {registration.id})."
    )


@fit_app.command("cancel")
def fit_cancel(
    user: AsUser,
    registration_id: int,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why.")
    ] = "cancelled by the student",
) -> None:
    """Give a place (or a waiting-list turn) back; the next on the waiting list moves up."""
    from tracker.services import fit

    _change(user, fit.cancel_registration, registration_id=registration_id, reason=reason)
    out.print(f"Registration {registration_id} is cancelled.")


@fit_app.command("attendance")
def fit_attendance(
    user: AsUser,
    offer_id: int,
    attended: Annotated[
        list[int] | None,
        typer.Option("--attended", help="A participant who came (repeat for each)."),
    ] = None,
) -> None:
    """After an offer: who came; everyone else with a place did not show."""
    from tracker.services import fit

    came = sorted(set(attended or []))
    _change(user, fit.record_attendance, offer_id=offer_id, attended=came)
    out.print(f"Offer {offer_id}: attendance recorded, {len(came)} came.")


@fit_app.command("status")
def fit_status(
    user: AsUser,
    participant_id: int,
    status: Annotated[FitStatus, typer.Argument(help="graduated, dropped_out or withdrawn.")],
    on: Annotated[str | None, typer.Option(help="The day (YYYY-MM-DD), default today.")] = None,
    expected_version: Version = None,
) -> None:
    """Graduated, dropped out or withdrawn; leaving frees the places still to come."""
    from tracker.services import fit

    with _friendly():
        day = _fit_day(on, "--on") if on else None
    _change(
        user,
        fit.change_status,
        participant_id=participant_id,
        status=status,
        on=day,
        expected_version=expected_version,
    )
    out.print(f"Participant {participant_id} is now {status.value}.")


@fit_job_app.command("add")
def fit_job_add(
    user: AsUser,
    participant_id: int,
    employer: Annotated[str, typer.Option(help="The employer.")],
    kind: Annotated[JobKind, typer.Option(help="Kind of job (decides whether days count).")],
    starts: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")],
    ends: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD.")] = None,
    in_region: Annotated[
        bool, typer.Option("--in-region/--outside-region", help="In Bochum / the Ruhr?")
    ] = True,
    offer: Annotated[int | None, typer.Option(help="The placement offer it came from.")] = None,
    as_json: Json = False,
) -> None:
    """Record a job while studying (working student, internship, assistant job)."""
    from tracker.enums import JOBS_NOT_COUNTED
    from tracker.services import fit

    with _friendly():
        starts_on = _fit_day(starts, "--starts")
        ends_on = _fit_day(ends, "--ends") if ends else None
    job = _change(
        user,
        fit.add_job,
        participant_id=participant_id,
        employer=employer,
        kind=kind,
        starts_on=starts_on,
        ends_on=ends_on,
        in_region=in_region,
        offer_id=offer,
    )
    if as_json:
        _print_json({"job_id": job.id})
        return
    counts = "do not count" if kind in JOBS_NOT_COUNTED else "count"
    out.print(f"Job {job.id} recorded; its working days {counts} against the yearly limit.")


def _weekdays(first: date, last: date) -> list[date]:
    from datetime import timedelta

    days = (last - first).days + 1
    return [first + timedelta(n) for n in range(days) if (first + timedelta(n)).weekday() < 5]


@fit_app.command("days")
def fit_days(
    user: AsUser,
    job_id: int,
    first: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    last: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD.")],
    half: Annotated[bool, typer.Option("--half", help="Half days (up to four hours).")] = False,
    as_json: Json = False,
) -> None:
    """Record the weekdays from --from to --to as worked (full, or half with --half)."""
    from tracker.errors import ValidationFailed
    from tracker.services import fit

    with _friendly():
        start, end = _fit_day(first, "--from"), _fit_day(last, "--to")
        if end < start:
            raise ValidationFailed("--to lies before --from.")
        days = _weekdays(start, end)
        if not days:
            raise ValidationFailed("There is no weekday from --from to --to.")
    count = _change(user, fit.record_work_days, job_id=job_id, days=days, half=half)
    if as_json:
        _print_json(
            {
                "recorded": len(days),
                "year": count.year if count else None,
                "used": count.used if count else None,
                "remaining": count.remaining if count else None,
                "warning": count.warning if count else False,
                "over": count.over if count else False,
            }
        )
        return
    kind = "half" if half else "full"
    out.print(f"Recorded {len(days)} {kind} days for job {job_id}.")
    if count is None:
        out.print("This kind of job does not count against the yearly limit.")
        return
    out.print(
        f"{count.year}: {count.used:g} of {count.limit} days used, "
        f"{max(count.remaining, 0):g} left."
    )
    if count.over:
        err.print(
            f"[bold red]Warning:[/] over the limit of {count.limit} days in {count.year}. "
            "The student and the case manager are told (once a year for each level)."
        )
    elif count.warning:
        err.print(
            f"[yellow]Warning:[/] near the limit of {count.limit} days in {count.year}. "
            "The student and the case manager are told (once a year for each level)."
        )


@fit_app.command("count")
def fit_count(
    user: AsUser,
    participant_id: int,
    year: Annotated[int | None, typer.Option(help="Calendar year, default this year.")] = None,
    as_json: Json = False,
) -> None:
    """Working days in a year that count against the limit (140 full or 280 half)."""
    from tracker import clocks, fit_queries

    count = _read(
        user,
        fit_queries.work_day_count,
        participant_id=participant_id,
        year=year or clocks.local_today().year,
    )
    if as_json:
        _print_json(count)
        return
    out.print(
        f"Participant {participant_id}, {count.year}: {count.used:g} of {count.limit} days "
        f"({count.full} full, {count.half} half), {max(count.remaining, 0):g} left."
    )
    if count.over:
        err.print(f"[bold red]Warning:[/] over the limit of {count.limit} days.")
    elif count.warning:
        err.print(f"[yellow]Warning:[/] near the limit of {count.limit} days.")


@fit_permit_app.command("add")
def fit_permit_add(
    user: AsUser,
    participant_id: int,
    kind: Annotated[PermitKind, typer.Option(help="student (§16b), job_search (§20) or work.")],
    valid_from: Annotated[str, typer.Option("--from", help="Valid from, YYYY-MM-DD.")],
    valid_until: Annotated[
        str | None, typer.Option("--until", help="Valid until, YYYY-MM-DD.")
    ] = None,
) -> None:
    """Record a permit; the student is reminded before it ends."""
    from tracker.services import fit

    with _friendly():
        start = _fit_day(valid_from, "--from")
        until = _fit_day(valid_until, "--until") if valid_until else None
    permit = _change(
        user,
        fit.add_permit,
        participant_id=participant_id,
        kind=kind,
        valid_from=start,
        valid_until=until,
    )
    out.print(f"Permit {permit.id} recorded for participant {participant_id}.")


# --- rights of the person: Art. 15 export, Art. 17 erasure, access log, retention ----------


@app.command("export")
def export_person_data(
    user: AsUser,
    reference: str,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="json (complete, machine-readable), html or pdf.")
    ] = "json",
    language: Annotated[str, typer.Option("--language", "-l", help="de or en (html, pdf).")] = "de",
    output: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="A file, a folder, or - for standard output."),
    ] = None,
) -> None:
    """Everything held about the person behind a case (Art. 15 GDPR); the export is logged."""
    from tracker.privacy import render_export
    from tracker.services.privacy import export_person

    data = _change(user, export_person, reference=reference)
    with _friendly():
        file = render_export(data, fmt=fmt, language=language)
    _write_file(file.content, file.name, output)


@app.command("erase")
def erase_person_data(
    user: AsUser,
    reference: str,
    confirm: Annotated[
        str | None,
        typer.Option(help="The case reference again, to confirm without being asked."),
    ] = None,
) -> None:
    """Erase everything held about the person behind a case (Art. 17 GDPR; admins).

    Cannot be undone. Only a tombstone without personal data stays in the audit trail."""
    from tracker.services.privacy import erase_person

    if confirm is None:
        err.print(
            f"[bold red]Erasing {escape(reference)}[/] removes the person, all their cases, "
            "messages, FIT@THGA records, access log and history. This cannot be undone."
        )
        confirm = typer.prompt("Type the case reference again to confirm")
    from tracker.orchestration import forget_case_runs

    removal = _change(user, erase_person, reference=reference, confirm=confirm)
    counts = ", ".join(f"{table} {n}" for table, n in removal.removed.items() if n)
    out.print(f"Erased {removal.reference}: {counts}. Tombstone {removal.erasure_ids}.")
    runs = forget_case_runs(removal.reference)
    if runs is None:
        err.print(
            "[yellow]Prefect was not reachable:[/] its run history still names the case "
            f"reference (no personal data); run `onboarding erasures {removal.reference} "
            "--forget-runs` once it is back."
        )
    elif runs:
        out.print(f"Removed {runs} flow runs of the case from Prefect's history.")


@app.command("erasures")
def erasure_check(
    user: AsUser,
    reference: str,
    forget_runs: Annotated[
        bool,
        typer.Option(help="Also delete the erased case's runs from Prefect's history."),
    ] = False,
    as_json: Json = False,
) -> None:
    """Was the person behind this case reference erased or anonymised? (admins)"""
    from tracker.orchestration import forget_case_runs
    from tracker.services.privacy import erasures_for

    rows = [
        {"id": e.id, "erased_at": e.erased_at, "erased_by": e.erased_by, "basis": e.basis}
        for e in _read(user, erasures_for, reference=reference)
    ]
    if forget_runs and rows:
        runs = forget_case_runs(reference)
        err.print("Prefect is not reachable." if runs is None else f"Removed {runs} flow runs.")
    if as_json:
        _print_json(rows)
    elif not rows:
        out.print(f"No erasure recorded for {escape(reference)}.")
    for row in [] if as_json else rows:
        out.print(f"Tombstone {row['id']}: {row['basis']} on {_fmt(row['erased_at'])}.")


@app.command("access-log")
def access_log_show(user: AsUser, reference: str, as_json: Json = False) -> None:
    """Who has viewed the person behind a case, newest first."""
    from tracker.privacy import access_history

    rows = _read(user, access_history, reference=reference)
    if as_json:
        _print_json(rows)
        return
    table = Table("When", "Who", "Organisation", "What")
    for row in rows:
        table.add_row(_fmt(row.occurred_at), row.actor, row.organisation or "–", row.purpose)
    out.print(table)


@app.command("retention")
def retention_run(
    user: AsUser,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count who is due.")] = False,
    as_json: Json = False,
) -> None:
    """Anonymise the people whose cases all ended more than ONBOARDING_RETENTION_MONTHS ago
    (what the scheduled retention flow does; admins)."""
    from tracker.access import require_admin
    from tracker.services._base import utcnow
    from tracker.services.privacy import anonymise_expired, count_expired

    with _friendly():
        require_admin(_actor(user), "run the retention")
    now = utcnow()
    if dry_run:
        with _db().read() as session:
            due = count_expired(session, now=now)
        _print_json({"due": due}) if as_json else out.print(f"{due} people are due.")
        return
    done = 0
    while batch := _change(user, anonymise_expired, now=now, limit=100):
        done += len(batch)
    _print_json({"anonymised": done}) if as_json else out.print(f"Anonymised {done} people.")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
