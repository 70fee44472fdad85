"""`onboarding pathways`: list, show and check the pathways."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tracker.cli.common import (
    Json,
    friendly,
    literal,
    out,
    print_json,
    table,
)
from tracker.pathway import get_registry, load_registry

pathway_app = typer.Typer(
    help="The pathways: which steps, in which order, with which clocks.", no_args_is_help=True
)


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
        print_json(rows)
        return
    cells = [
        (r["key"], r["version"], r["profile"], r["title"], " → ".join(r["steps"])) for r in rows
    ]
    columns = ("key", "version", "profile", "title", "steps")
    out.print(table(*columns, rows=cells, title="Pathways"))


@pathway_app.command("show")
def pathways_show(
    key: str, version: Annotated[int | None, typer.Option()] = None, as_json: Json = False
) -> None:
    """One pathway's steps, owners, prerequisites and clocks."""
    with friendly():
        pathway = get_registry().get(key, version)
    if as_json:
        print_json(pathway)
        return
    cells = []
    for s in pathway.steps:
        clock = "–"
        if s.legal_clock:
            c = s.legal_clock
            fast = f" ({c.days_accelerated} accelerated)" if c.days_accelerated is not None else ""
            clock = f"{c.days} days from {c.basis}{fast}; {c.reference}"
        target = f"{s.service_days} days" if s.service_days is not None else "–"
        cells.append((s.id, s.owner, ", ".join(s.needs) or "–", target, clock))
    title = literal(f"{pathway.title.de} / {pathway.title.en} (v{pathway.version})", "table.title")
    columns = ("step", "owner", "needs", "service target", "legal clock")
    out.print(table(*columns, rows=cells, title=title))


@pathway_app.command("check")
def pathways_check(
    folder: Annotated[
        Path | None, typer.Argument(help="Extra folder of pathway files to check.")
    ] = None,
) -> None:
    """Validate the pathway files (and organisations in the database, if it exists)."""
    from tracker.pathway import BUILTIN_DIR

    with friendly():
        registry = load_registry(BUILTIN_DIR, folder) if folder else load_registry(BUILTIN_DIR)
    out.print(f"{len(registry.pathways)} pathway versions are valid.")
