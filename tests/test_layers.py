"""The house's one-way arrows: tracker imports no flows, dashboard or CLI; flows and dashboard
never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_tracker_imports_none_of_the_layers_above_it():
    for path, names in _imports("tracker").items():
        assert not names & {"flows", "dashboard"}, path


def test_only_the_cli_module_is_the_cli():
    for path, names in _imports("tracker").items():
        if path != "tracker/cli.py":
            assert "typer" not in names or path == "tracker/cli.py", path


def test_flows_and_dashboard_never_import_each_other():
    for path, names in _imports("flows").items():
        assert "dashboard" not in names, path
    if (ROOT / "dashboard").exists():
        for path, names in _imports("dashboard").items():
            assert "flows" not in names, path
