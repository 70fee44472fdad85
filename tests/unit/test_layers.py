"""The house's shape, in code: one-way arrows between the layers, rooms by domain inside
`tracker/`, and modules that use only each other's public names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("tracker", "flows", "dashboard")
# The shared kernel at the top of tracker/; everything else lives in a domain package.
KERNEL = {
    "__init__",
    "access",
    "audit",
    "bulk",
    "clocks",
    "config",
    "db",
    "enums",
    "errors",
    "migrate",
    "models",
    "pathway",
    "records",
    "schemas",
}
PACKAGES = {
    "admin",
    "casework",
    "cli",
    "demo",
    "fit",
    "journeys",
    "messages",
    "privacy",
    "reporting",
}
MAX_LINES = 800


def _sources(package: str) -> list[Path]:
    return sorted(
        p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.relative_to(ROOT).parts
    )


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in _sources(package):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def _private(name: str) -> bool:
    # `_` alone is gettext's translation function by convention, not a private name.
    return (
        name.startswith("_") and name != "_" and not (name.startswith("__") and name.endswith("__"))
    )


def _absolute(node: ast.ImportFrom, own: str, is_package: bool) -> str | None:
    """The module an import names, relative imports resolved against this module's package."""
    if node.level == 0:
        return node.module
    parts = own.split(".") if is_package else own.split(".")[:-1]
    base = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
    return ".".join([*base, *([node.module] if node.module else [])])


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"]; None for anything but names and attributes."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return None if head is None else [*head, node.attr]
    return None


def private_uses(path: Path) -> list[str]:
    """Private names this module takes from another module: imported by name (absolute or
    relative), read as an attribute of a module it imported (``mod._x``, ``pkg.mod._x``), or
    asked for from one of them by ``getattr(mod, "_x")``."""
    own = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: dict[str, str] = {}  # local name -> module it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = _absolute(node, own, is_package)
            if not module or module.split(".")[0] not in LAYERS or module == own:
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{module}.{alias.name} (line {node.lineno})")
                else:
                    modules[alias.asname or alias.name] = f"{module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in LAYERS:
                    continue
                if alias.asname:
                    modules[alias.asname] = alias.name
                else:  # `import tracker.journeys.steps` binds `tracker`
                    modules.setdefault(alias.name.split(".")[0], alias.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            chain = _dotted(node.value)
            if chain and chain[0] in modules:
                target = ".".join([modules[chain[0]], *chain[1:]])
                if target != own:
                    found.append(f"{target}.{node.attr} (line {node.lineno})")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
            and (chain := _dotted(node.args[0])) is not None
            and chain[0] in modules  # one of our modules (the standard library's are not ours)
        ):
            found.append(f"getattr(..., {node.args[1].value!r}) (line {node.lineno})")
    return found


def test_tracker_imports_none_of_the_layers_above_it():
    for path, names in _imports("tracker").items():
        assert not names & {"flows", "dashboard"}, path


def test_only_the_cli_package_is_the_cli():
    for path, names in _imports("tracker").items():
        if not path.startswith("tracker/cli/"):
            assert "typer" not in names, path


def test_flows_and_dashboard_never_import_each_other():
    for path, names in _imports("flows").items():
        assert "dashboard" not in names, path
    for path, names in _imports("dashboard").items():
        assert "flows" not in names, path


@pytest.mark.parametrize("layer", LAYERS)
def test_no_module_uses_another_modules_private_names(layer):
    offences = {
        str(path.relative_to(ROOT)): uses
        for path in _sources(layer)
        if (uses := private_uses(path))
    }
    assert not offences


def test_the_private_name_check_catches_both_ways_of_reaching_in(tmp_path, monkeypatch):
    """The check above would pass on an empty tree; here it must find what it is written for."""
    fake = tmp_path / "tracker" / "journeys"
    fake.mkdir(parents=True)
    module = fake / "x.py"
    module.write_text(
        "import tracker.messages.outbox\n"
        "from tracker.journeys.steps import _secret, public\n"
        "from tracker.fit import programme\n"
        "from .steps import _relative\n"
        "from . import handoffs\n"
        "programme._promote()\n"
        "programme.public()\n"
        "handoffs._current()\n"
        "tracker.messages.outbox._key()\n"
        "getattr(programme, '_hidden')\n"
    )
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    uses = private_uses(module)
    assert sorted(u.split(" ")[0] for u in uses) == sorted(
        [
            "tracker.journeys.steps._secret",
            "tracker.journeys.steps._relative",
            "tracker.fit.programme._promote",
            "tracker.journeys.handoffs._current",
            "tracker.messages.outbox._key",
            "getattr(...,",
        ]
    )


def test_tracker_is_a_kernel_and_domain_packages():
    """New modules land in a room: the kernel stays small, every other module in a package."""
    top = {p.stem for p in (ROOT / "tracker").glob("*.py")}
    assert top == KERNEL
    dirs = {
        p.name
        for p in (ROOT / "tracker").iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name != "migrations"
    }
    assert dirs == PACKAGES


def test_the_kernel_imports_no_domain_package_but_the_access_log_at_the_commit():
    """The kernel is what the packages build on, so it reaches into none of them. One named
    exception: the transaction boundary (db) writes the access log in the same commit as the
    reads it records, which privacy/access_log keeps (it imports only the kernel itself)."""
    allowed = {("tracker/db.py", "tracker.privacy")}
    reached = set()
    for path in (ROOT / "tracker").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[0] == "tracker" and len(parts) > 1 and parts[1] in PACKAGES:
                    reached.add((str(path.relative_to(ROOT)), ".".join(parts[:2])))
    assert reached == allowed
    log = ast.parse((ROOT / "tracker/privacy/access_log.py").read_text(encoding="utf-8"))
    uses = {
        node.module.split(".")[1]
        for node in ast.walk(log)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tracker.")
    }
    assert uses and uses <= KERNEL


def test_no_tracker_module_grows_past_the_size_a_reader_can_hold():
    sizes = {
        str(path.relative_to(ROOT)): n
        for path in _sources("tracker")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not sizes
