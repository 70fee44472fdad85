"""The `onboarding` command: what an operator or case manager types.

Each command group lives in a module of its own; this one assembles them into one app."""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer

from tracker.cli import handoffs, imports, privacy, system
from tracker.cli.cases import case_app
from tracker.cli.consent import consent_app
from tracker.cli.db import db_app
from tracker.cli.fit import fit_app
from tracker.cli.handoffs import handoff_app
from tracker.cli.newcomers import newcomer_app
from tracker.cli.organisations import org_app
from tracker.cli.pathways import pathway_app
from tracker.cli.reports import report_app
from tracker.cli.steps import step_app
from tracker.cli.users import user_app

app = typer.Typer(
    help="Welcome Office onboarding tracker: newcomers' journeys across the partners.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
ROOT_COMMANDS: list[tuple[str, Callable[..., None]]] = [
    ("demo", system.demo),
    ("serve", system.serve_flows),
    ("run", system.run_all),
    ("status", system.status),
    ("queue", handoffs.queue),
    ("import", imports.import_csv),
    ("export", privacy.export_person_data),
    ("erase", privacy.erase_person_data),
    ("erasures", privacy.erasure_check),
    ("access-log", privacy.access_log_show),
    ("retention", privacy.retention_run),
]
for name, command in ROOT_COMMANDS:
    app.command(name)(command)
for group, name in [
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
    app.add_typer(group, name=name)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
