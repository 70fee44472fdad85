"""Step completions, and a completion followed by its advance (the inline CLI's path), on a
freshly loaded demo: the suite's two measures of a single change, without its other parts.

    .venv/bin/python bench/change_advance.py --people 10000 --backend sqlite postgresql \
        --label "after 19f66b4"

Writes bench/results/change-advance-PEOPLE-BACKEND-LABEL.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from _harness import machine, markdown_table, scratch_dir
from suite import (
    COMPLETION_SECONDS,
    RESULTS,
    in_child,
    measure_change_and_advance,
    measure_completions,
    tracker_env,
)
from sweep import load, tracker_url


def section(found: list[dict[str, Any]]) -> list[str]:
    """The benchmarks document's section: each labelled run's completions alone and completions
    followed by their advance, by backend and code."""

    def rate(c: dict[str, Any] | None, cpu_key: str) -> str:
        if not c or not c.get("per_second"):
            return "–"
        cpu = c.get(cpu_key)
        if cpu_key == "cpu_seconds_this_process" and cpu is not None:
            cpu = round(cpu * 1000 / c["completed"], 2)
        return f"{c['per_second']:,.0f}/s, {cpu} ms CPU"

    rows = [
        [
            f"{r['people']:,}",
            r["backend"],
            r["label"],
            r["started"][:16],
            rate(r.get("completions"), "cpu_seconds_this_process"),
            rate(r.get("change_and_advance_full"), "cpu_ms_each"),
            rate(r.get("change_and_advance_normal"), "cpu_ms_each"),
        ]
        for r in found
    ]
    if not rows:
        return []
    header = [
        "people",
        "backend",
        "code",
        "started",
        "completions alone",
        "completion + advance (FULL)",
        "completion + advance (NORMAL)",
    ]
    return [
        "## One change at a time: completions, and completions followed by their advance",
        "",
        "`bench/change_advance.py --label …` on a freshly loaded demo, one process, a commit",
        "per change (the advance in its own transaction, as the inline CLI does it). Targets:",
        "completion + advance ≥ 500/s and ≤ 1.5 ms CPU with FULL, ≥ 800/s with NORMAL,",
        "≥ 300/s on PostgreSQL; completions alone ≥ 1,500/s (SQLite), ≥ 600/s (PostgreSQL).",
        "",
        markdown_table(header, rows),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--seconds", type=float, default=COMPLETION_SECONDS)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--label", required=True, help="which code this is")
    args = parser.parse_args()
    slug = "".join(c if c.isalnum() else "-" for c in args.label.lower()).strip("-")
    for backend in args.backend:
        result: dict[str, object] = {
            "people": args.people,
            "backend": backend,
            "label": args.label,
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine(),
        }
        day = datetime.now().date().isoformat()
        with scratch_dir(False) as root, tracker_url(root, backend) as url:
            env = tracker_env(url, root)
            result["load"] = in_child(load, url, args.people, args.seed, day)
            result["completions"] = in_child(measure_completions, url, env, args.seed, args.seconds)
            for sync in ("FULL", "NORMAL") if backend == "sqlite" else ("FULL",):
                result[f"change_and_advance_{sync.lower()}"] = in_child(
                    measure_change_and_advance, url, env, args.seed, args.seconds, sync
                )
        out = RESULTS / f"change-advance-{args.people}-{backend}-{slug}.json"
        out.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "machine"}, default=str)[:3000])
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
