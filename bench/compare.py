"""Before and after: the write path's benchmarks for this checkout and for the commit before
it, in the same run on the same machine, written to the benchmarks document side by side.

The commit compared against (``--base``, by default ``HEAD~1``) is checked out into a
temporary git worktree. This checkout's benchmark scripts run both, with this checkout's
virtualenv: for "before" the worktree comes first on PYTHONPATH, so ``tracker`` is imported
from there (each script prints where it imported it from). The two are run one after the
other for each measure, so that both see the machine in the same state; figures from
different runs are not comparable on a shared machine. With ``--rounds N`` each pair runs N
times, "after" first in every second round, labelled #1, #2, …: a drift of the machine during
a run then shows as a difference between rounds instead of hiding in the comparison.

Measures (each labelled "before <sha>" and "after <sha>"):

- ``bench/import_100k.py --only-import``: a CSV import, writing the rows and opening the new
  cases' first steps inline, for each size and backend;
- ``bench/change_advance.py``: step completions, and completions followed by their advance,
  on a demo of ``--change-people`` newcomers.

    .venv/bin/python bench/compare.py                      # HEAD~1 against HEAD, 10k and 100k
    .venv/bin/python bench/compare.py --base 1fc2c9e --rows 10000 --backend sqlite
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def short_sha(rev: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def dirty() -> bool:
    status = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return bool(status.strip())


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """``rev`` checked out in a temporary folder, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="bench-base-") as folder:
        path = Path(folder) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev],
            check=True,
        )
        try:
            yield path
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False
            )


def run(code: Path, script: str, *args: str) -> None:
    """One of this checkout's benchmark scripts on the tracker of ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    where = subprocess.run(
        [PYTHON, "-c", "import tracker; print(tracker.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd="/",  # with -c the current folder comes first on the path
    ).stdout.strip()
    if not where.startswith(str(code)):
        raise SystemExit(f"tracker was imported from {where}, not from {code}")
    print(f"$ {script} {' '.join(args)}  # tracker from {code}", file=sys.stderr, flush=True)
    subprocess.run([PYTHON, str(ROOT / "bench" / script), *args], check=True, env=env, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="the commit to compare against")
    parser.add_argument(
        "--rows", type=int, nargs="*", default=[10_000, 100_000], help="none: no import"
    )
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--change-people", type=int, default=10_000)
    parser.add_argument("--no-change", action="store_true", help="the import only")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run each pair this often, the order of before and after swapped each round",
    )
    args = parser.parse_args()

    base, head = short_sha(args.base), short_sha("HEAD")
    after = f"after {head}" + (" with uncommitted changes" if dirty() else "")
    results = ROOT / "bench" / "results"
    with worktree(args.base) as tree:

        def pairs(round_: int) -> list[tuple[Path, str]]:
            """Before and after, swapped in every second round (the machine drifts)."""
            mark = f" #{round_ + 1}" if args.rounds > 1 else ""
            pair = [(tree, f"before {base}{mark}"), (ROOT, after + mark)]
            return pair[::-1] if round_ % 2 else pair

        for round_, rows in ((r, n) for r in range(args.rounds) for n in args.rows):
            for backend in args.backend:
                for code, label in pairs(round_):
                    slug = "".join(c if c.isalnum() else "-" for c in label).strip("-")
                    out = results / f"import-{rows}-{backend}-{slug}.json"
                    run(
                        code,
                        "import_100k.py",
                        f"--rows={rows}",
                        f"--tracker={backend}",
                        "--only-import",
                        f"--label={label}",
                        f"--out={out}",
                    )
        for round_ in range(0 if args.no_change else args.rounds):
            for code, label in pairs(round_):
                run(
                    code,
                    "change_advance.py",
                    f"--people={args.change_people}",
                    "--backend",
                    *args.backend,
                    f"--label={label}",
                )
    subprocess.run([PYTHON, str(ROOT / "bench" / "suite.py"), "--doc-only"], check=True)


if __name__ == "__main__":
    main()
