"""docker-compose.yml and the Dockerfile, checked without a Docker engine: against the Compose
Specification, and against the code they start (entry points, settings, ports, databases).

docker/compose-spec.json is a copy of the official Compose Specification schema
(https://github.com/compose-spec/compose-spec, schema/compose-spec.json) as kept in
../shared/schemas/compose-spec.json; the copy lets a clean clone run this test on its own.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import typer
import yaml
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import tracker
from tests.ci import IN_CI
from tracker.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "docker" / "compose-spec.json"
# ../shared beside the project: every developer's checkout and every CI clone have it (read-only
# in CI). Looked for beside the resolved project, beside the path it was reached by (a clone
# behind a symbolic link), and beside the working directory `make test` runs in.
SHARED_CANDIDATES = tuple(
    dict.fromkeys(
        root.parent / "shared" / "schemas" / "compose-spec.json"
        for root in (ROOT, Path(os.path.abspath(__file__)).parent.parent, Path.cwd())
    )
)
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
INIT_SCRIPT_TARGET = "/docker-entrypoint-initdb.d"
WEASYPRINT_PACKAGES = (
    "libpango-1.0-0",
    "libpangoft2-1.0-0",
    "libharfbuzz-subset0",
    "fonts-dejavu-core",
)
PROJECT_EXECUTABLES = {"onboarding", "onboarding-flows", "streamlit", "prefect"}

# `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?err}`, bare `$NAME`, or `$$`.
_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


# The secrets `docker compose` requires (`${NAME:?message}`), as scripts/make-env.sh writes them
# into .env; the tests interpolate the file with these stand-ins.
REQUIRED_SECRETS = (
    "POSTGRES_PASSWORD",
    "TRACKER_DB_PASSWORD",
    "PREFECT_DB_PASSWORD",
    "ONBOARDING_SECRET_KEY",
)
TEST_ENV = {
    "POSTGRES_PASSWORD": "0f1e2d3c4b5a69788796a5b4c3d2e1f0aa11bb22cc33dd44",
    "TRACKER_DB_PASSWORD": "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081",
    "PREFECT_DB_PASSWORD": "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928",
    "ONBOARDING_SECRET_KEY": "3b9c0d7e1f2a4b6c8d0e2f4a6b8c0d1e3f5a7b9c1d3e5f7a9b1c3d5e7f9a1b3c",
}
MAKE_ENV = ROOT / "scripts" / "make-env.sh"


def _interpolate(value: str, *, strict: bool) -> str:
    """The value Compose uses with the test environment (TEST_ENV) as .env: a required variable
    (`${NAME:?message}`) takes its TEST_ENV value, an optional one its default (empty without
    one, as Compose does; `strict` refuses that instead)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        if match.group("op") in (":?", "?"):
            assert name in TEST_ENV, f"{match.group(0)}: give the tests a value in TEST_ENV"
            return TEST_ENV[name]
        if match.group("op") in (":-", "-"):
            return match.group("arg")
        if strict:
            raise AssertionError(f"{match.group(0)} has no default: `docker compose up` needs one")
        return ""

    return _INTERPOLATION.sub(replace, value)


def _resolve(node: Any, *, strict: bool = False) -> Any:
    if isinstance(node, dict):
        return {key: _resolve(value, strict=strict) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve(value, strict=strict) for value in node]
    if isinstance(node, str):
        return _interpolate(node, strict=strict)
    return node


RAW: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
COMPOSE: dict[str, Any] = _resolve(RAW)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def _is_project_image(service: dict[str, Any]) -> bool:
    """Built from the Dockerfile: runs the project's code, reads its settings and Prefect's."""
    return "build" in service


PROJECT_SERVICES = sorted(name for name, service in SERVICES.items() if _is_project_image(service))
# Of those, the ones that run the tracker's own code and read its settings; the rest (the
# Prefect server) run only Prefect from the same image.
TRACKER_SERVICES = [
    name for name in PROJECT_SERVICES if _argv(SERVICES[name].get("command"))[:1] != ["prefect"]
]


def _ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Published ports as (host ip, host port, container port)."""
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append((entry["host_ip"], int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        assert len(parts) == 3, f"{entry}: publish as HOST_IP:HOST_PORT:CONTAINER_PORT"
        found.append((parts[0], int(parts[1]), int(parts[2])))
    return found


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# -- the Compose Specification ----------------------------------------------------------------


def test_the_compose_file_follows_the_compose_specification():
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    draft = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    draft.check_schema(schema)
    validator = draft(schema, format_checker=draft.FORMAT_CHECKER)
    errors = [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(RAW)
    ]
    assert errors == []
    assert "version" not in RAW, "`version:` is obsolete in the Compose Specification"


def test_the_schema_copy_is_the_shared_schema():
    assert SCHEMA.read_text(encoding="utf-8").strip().startswith("{")
    shared = next((path for path in SHARED_CANDIDATES if path.is_file()), None)
    if shared is None:
        where = ", ".join(str(path) for path in SHARED_CANDIDATES)
        if IN_CI:  # CI lays shared/ beside its clone: missing there, the comparison is lost
            pytest.fail(f"the shared Compose schema is not beside the project ({where})")
        pytest.skip(f"no ../shared beside this checkout ({where})")
    assert SCHEMA.read_bytes() == shared.read_bytes(), (
        f"refresh the copy: cp {shared} {SCHEMA.relative_to(ROOT)}"
    )


# -- no secrets in the repository ---------------------------------------------------------------


def _variables(text: str) -> list[re.Match[str]]:
    return [m for m in _INTERPOLATION.finditer(text) if m.group(0) != "$$"]


def test_every_variable_in_the_compose_file_is_required_with_a_message():
    _resolve(RAW, strict=True)  # raises on a variable that would silently be empty
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    found = _variables(text)
    assert found, "passwords come from the environment"
    for match in found:
        assert match.group("op") == ":?", f"{match.group(0)}: require it (${{NAME:?message}})"
        assert "scripts/make-env.sh" in match.group("arg"), f"{match.group(0)}: say how to set it"
    assert {m.group("name") for m in found} == set(REQUIRED_SECRETS)


def _secret_like(key: str) -> bool:
    return bool(re.search(r"PASSWORD|SECRET|TOKEN|(^|_)KEY$|CREDENTIAL", key, re.IGNORECASE))


def test_the_compose_file_holds_no_password_or_secret():
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    # No default of any kind: `${NAME:-value}` / `${NAME-value}` would be a committed secret.
    assert not re.search(r"\$\{\w+:?-", text), "a variable with a default"
    checked = 0
    for name, service in RAW["services"].items():
        for key, value in _environment(service).items():
            if _secret_like(key):
                checked += 1
                assert re.fullmatch(r"\$\{" + key + r":\?[^}]+\}", value), f"{name}: {key}={value}"
            userinfo = re.match(r"[\w+]+://[^:/@]*:(?P<password>[^@]*)@", value)
            if userinfo:  # a URL's password is a required variable too
                checked += 1
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", userinfo["password"]), f"{name}: {key}"
    assert checked >= len(REQUIRED_SECRETS) + 2
    # And none of the stand-in values was pasted into the file.
    for secret in TEST_ENV.values():
        assert secret not in text


def test_the_tracker_services_run_in_production_with_the_secret_key():
    from tracker.admin.auth import check_production_secret

    for name in TRACKER_SERVICES:
        raw = _environment(RAW["services"][name])
        assert raw["ONBOARDING_ENVIRONMENT"] == "production", name
        assert raw["ONBOARDING_SECRET_KEY"].startswith("${ONBOARDING_SECRET_KEY:?"), name
        env = _environment(SERVICES[name])
        settings = Settings(
            environment=env["ONBOARDING_ENVIRONMENT"], secret_key=env["ONBOARDING_SECRET_KEY"]
        )
        check_production_secret(settings)  # the values make-env.sh writes pass the guard
    # The image itself starts the tracker in production mode, compose or not.
    assert "ONBOARDING_ENVIRONMENT=production" in DOCKERFILE.read_text(encoding="utf-8")


def _run_make_env(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(MAKE_ENV), str(target)], capture_output=True, text=True, timeout=60
    )


def test_make_env_writes_fresh_random_secrets_and_never_overwrites(tmp_path):
    from tracker.admin.auth import check_production_secret

    first, second = tmp_path / "one.env", tmp_path / "two.env"
    assert _run_make_env(first).returncode == 0
    assert _run_make_env(second).returncode == 0
    assert first.stat().st_mode & 0o077 == 0, "readable by its owner only"
    values = []
    for path in (first, second):
        env = dict(
            line.split("=", 1)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")
        )
        assert set(env) == set(REQUIRED_SECRETS)
        for key, value in env.items():
            assert re.fullmatch(r"[0-9a-f]{48,}", value), key  # URL-safe, long, random
        check_production_secret(
            Settings(environment="production", secret_key=env["ONBOARDING_SECRET_KEY"])
        )
        values.append(env)
    assert all(values[0][key] != values[1][key] for key in REQUIRED_SECRETS)
    assert len(set(values[0].values())) == len(REQUIRED_SECRETS)

    before = first.read_bytes()
    again = _run_make_env(first)
    assert again.returncode == 0, "`scripts/make-env.sh && docker compose up` works every time"
    assert "not overwriting" in again.stderr
    assert first.read_bytes() == before
    assert not list(tmp_path.glob("one.env.*")), "no temporary file left behind"


def test_the_env_file_is_ignored_by_git():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored
    assert ".streamlit/secrets.toml" in ignored


# -- every command is a real entry point --------------------------------------------------------


def _project_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return pyproject["project"]["scripts"]


def _check_typer_command(argv: list[str]) -> None:
    scripts = _project_scripts()
    assert argv[0] in scripts, f"{argv[0]} is not in pyproject [project.scripts]"
    module, _, attribute = scripts[argv[0]].partition(":")
    app = getattr(importlib.import_module(module), attribute)
    assert isinstance(app, typer.Typer), scripts[argv[0]]
    words = [word for word in argv[1:] if not word.startswith("-")]
    options = [word.split("=", 1)[0] for word in argv[1:] if word.startswith("--")]

    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"{' '.join(argv)}: {result.output}"

    # The words name a command, not a group that would only print its help.
    # (Typer brings its own copy of Click: a group is whatever has sub-commands.)
    command: Any = typer.main.get_command(app)
    for word in words:
        assert hasattr(command, "commands"), f"{' '.join(argv)}: {word} is an argument?"
        assert word in command.commands, f"{' '.join(argv)}: no command {word}"
        command = command.commands[word]
    assert not hasattr(command, "commands"), f"{' '.join(argv)} names a group"
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    assert set(options) <= known, f"{' '.join(argv)}: unknown options {set(options) - known}"


def _check_streamlit_command(argv: list[str]) -> None:
    from streamlit import config

    assert argv[1] == "run", argv
    script = argv[2]
    assert not PurePosixPath(script).is_absolute(), "relative to WORKDIR, the repository root"
    assert (ROOT / script).is_file(), f"streamlit run {script}: no such file"
    for word in argv[3:]:
        if word.startswith("--"):
            config.get_option(word[2:])  # RuntimeError for an option Streamlit does not know


def _check_prefect_command(argv: list[str], home: Path) -> None:
    assert argv[1:3] == ["server", "start"], argv
    # Prefect's CLI in a process of its own: its settings and profiles stay out of this one.
    result = subprocess.run(
        [sys.executable, "-c", "from prefect.cli import app; app()", "server", "start", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "PREFECT_HOME": str(home)},
    )
    assert result.returncode == 0, result.stderr
    for word in argv[3:]:
        if word.startswith("--"):
            assert word in result.stdout, f"prefect server start has no {word}"


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_every_project_service_runs_a_real_entry_point(name, tmp_path):
    service = SERVICES[name]
    assert "entrypoint" not in service, "the image has no entrypoint to override"
    argv = _argv(service.get("command"))
    assert argv, f"{name} says what it runs"
    executable = argv[0]
    assert executable in PROJECT_EXECUTABLES, f"{name}: {executable} is not checked here"
    console_scripts = {ep.name for ep in importlib.metadata.entry_points(group="console_scripts")}
    assert executable in console_scripts, f"{executable} is not installed by the project"
    if executable in ("onboarding", "onboarding-flows"):
        _check_typer_command(argv)
    elif executable == "streamlit":
        _check_streamlit_command(argv)
    else:
        _check_prefect_command(argv, tmp_path)


def test_the_services_run_what_the_local_launcher_runs():
    from tracker.cli.launcher import plan_services

    settings = Settings()
    services = plan_services(settings, start_server=True, with_dashboard=True)
    planned = {service.name: service.command for service in services}
    assert _argv(SERVICES["migrate"]["command"]) == ["onboarding", "db", "upgrade"]
    # One machine serves the deployments in one process (`serve`); compose registers them in a
    # work pool once and runs scalable workers on it.
    assert Path(planned["flows"][0]).name == "onboarding-flows"
    assert planned["flows"][1:] == ["serve"]
    assert _argv(SERVICES["deploy"]["command"]) == ["onboarding-flows", "deploy"]
    assert _argv(SERVICES["worker"]["command"])[:2] == ["onboarding-flows", "worker"]
    # `serve` runs the advance task beside the deployments; compose gives it scalable workers.
    assert _argv(SERVICES["task-worker"]["command"])[:2] == ["onboarding-flows", "tasks"]
    assert _argv(SERVICES["prefect-server"]["command"])[:3] == ["prefect", "server", "start"]

    # The dashboard: the launcher's flags (headless, no usage statistics), on all interfaces.
    local = planned["dashboard"]
    compose = _argv(SERVICES["dashboard"]["command"])
    assert compose[:2] == [Path(local[0]).name, "run"]
    assert ROOT / compose[2] == Path(local[2])
    local_flags = dict(zip(local[3::2], local[4::2], strict=True))
    compose_flags = dict(zip(compose[3::2], compose[4::2], strict=True))
    assert local_flags.pop("--server.address") == "127.0.0.1"
    assert compose_flags.pop("--server.address") == "0.0.0.0"
    assert compose_flags == local_flags
    assert compose_flags["--browser.gatherUsageStats"] == "false"
    assert compose_flags["--server.headless"] == "true"


# -- configuration by environment ------------------------------------------------------------


def test_the_tracker_services_and_the_prefect_server_are_told_apart():
    assert set(TRACKER_SERVICES) == {"migrate", "deploy", "worker", "task-worker", "dashboard"}
    assert set(PROJECT_SERVICES) - set(TRACKER_SERVICES) == {"prefect-server"}


@pytest.mark.parametrize("name", TRACKER_SERVICES)
def test_every_onboarding_variable_is_a_setting(name, monkeypatch):
    prefix = Settings.model_config["env_prefix"]
    env = _environment(SERVICES[name])
    ours = {key: value for key, value in env.items() if key.startswith(prefix)}
    # The tracker's code finds its database and its Prefect server only through these.
    assert {f"{prefix}DATABASE_URL", f"{prefix}PREFECT_API_URL"} <= set(ours), name
    for key in ours:
        field = key.removeprefix(prefix).lower()
        assert field in Settings.model_fields, f"{name}: {key} is read by nothing"

    # And the values parse as the settings they are.
    for key in list(os.environ):
        if key.startswith(prefix) or key.startswith("PREFECT_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    for key, value in ours.items():
        field = key.removeprefix(prefix).lower()
        parsed = getattr(settings, field)
        if isinstance(parsed, SecretStr):
            parsed = parsed.get_secret_value()
        assert str(parsed) == value, key


def test_the_prefect_server_is_given_none_of_the_trackers_settings_or_secrets():
    """It runs only Prefect: the tracker's secret key and database password stay out of it."""
    prefix = Settings.model_config["env_prefix"]
    env = _environment(SERVICES["prefect-server"])
    assert [key for key in env if key.startswith(prefix)] == []
    tracker_only = {"ONBOARDING_SECRET_KEY", "TRACKER_DB_PASSWORD", "POSTGRES_PASSWORD"}
    for secret in tracker_only:
        assert not any(TEST_ENV[secret] in value for value in env.values()), secret
    # What it does get: its own database, with the Prefect password.
    assert TEST_ENV["PREFECT_DB_PASSWORD"] in env["PREFECT_API_DATABASE_CONNECTION_URL"]


@pytest.mark.parametrize("name", PROJECT_SERVICES)
def test_every_prefect_variable_is_a_prefect_setting(name, monkeypatch, tmp_path):
    import prefect.settings

    env = _environment(SERVICES[name])
    for key in env:
        if key.startswith("PREFECT_"):
            try:
                getattr(prefect.settings, key)
            except AttributeError:
                pytest.fail(f"{name}: {key} is not a Prefect setting")
    for key in list(os.environ):
        if key.startswith("PREFECT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = prefect.settings.Settings()  # the values validate
    assert settings.server.analytics_enabled is False, name


def test_nothing_phones_home():
    server = _environment(SERVICES["prefect-server"])
    assert server["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert server["DO_NOT_TRACK"] == "1"
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    for setting in (
        "PREFECT_SERVER_ANALYTICS_ENABLED=false",
        "DO_NOT_TRACK=1",
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false",
        "PYTHONUNBUFFERED=1",
    ):
        assert setting in dockerfile, setting
    assert _environment(SERVICES["mailpit"]).get("MP_DISABLE_VERSION_CHECK") == "true"


def test_the_tracker_and_the_prefect_client_use_the_compose_prefect_server():
    server_argv = _argv(SERVICES["prefect-server"]["command"])
    port = int(_option(server_argv, "--port"))
    assert port == 4200
    assert _option(server_argv, "--host") == "0.0.0.0"
    for name in TRACKER_SERVICES:
        env = _environment(SERVICES[name])
        assert env["PREFECT_API_URL"] == env["ONBOARDING_PREFECT_API_URL"], name
        assert env["PREFECT_API_URL"] == f"http://prefect-server:{port}/api", name
        assert env["ONBOARDING_ORCHESTRATION"] == "prefect", name


# -- ports -----------------------------------------------------------------------------------


def test_published_ports_listen_on_loopback_only():
    for name, service in SERVICES.items():
        for host_ip, _, _ in _ports(service):
            assert host_ip == "127.0.0.1", name


def test_the_dashboard_port_is_the_settings_default():
    default = Settings.model_fields["dashboard_port"].default
    assert _ports(SERVICES["dashboard"]) == [("127.0.0.1", default, default)]
    assert int(_option(_argv(SERVICES["dashboard"]["command"]), "--server.port")) == default


def test_the_prefect_ui_is_published_where_its_api_url_says():
    server = SERVICES["prefect-server"]
    port = int(_option(_argv(server["command"]), "--port"))
    assert _ports(server) == [("127.0.0.1", port, port)]
    assert _environment(server)["PREFECT_UI_API_URL"] == f"http://127.0.0.1:{port}/api"


def test_mail_goes_to_mailpit():
    mailpit_ports = {target for _, _, target in _ports(SERVICES["mailpit"])}
    for name in ("worker", "dashboard", "migrate"):
        env = _environment(SERVICES[name])
        assert env["ONBOARDING_SMTP_HOST"] == "mailpit", name
        assert int(env["ONBOARDING_SMTP_PORT"]) == 1025, name  # Mailpit's SMTP port
        assert int(env["ONBOARDING_SMTP_PORT"]) in mailpit_ports, name
    assert 8025 in mailpit_ports  # its web UI


# -- PostgreSQL: two databases -------------------------------------------------------------


def _init_script() -> Path:
    for volume in SERVICES["postgres"]["volumes"]:
        source, target = str(volume).split(":")[:2]
        if target.startswith(INIT_SCRIPT_TARGET):
            path = ROOT / source
            assert path.is_file(), f"{source}: no such file"
            assert path.suffix in (".sh", ".sql"), source
            return path
    raise AssertionError(f"postgres mounts no init script into {INIT_SCRIPT_TARGET}")


def _created_databases() -> dict[str, str]:
    """Database name -> owner, as the init script creates them."""
    text = _init_script().read_text(encoding="utf-8")
    return dict(re.findall(r"CREATE DATABASE (\w+) OWNER (\w+);", text))


def test_postgres_keeps_its_data_in_a_named_volume_and_creates_two_databases():
    postgres = SERVICES["postgres"]
    assert postgres["image"].split(":")[0] == "postgres"
    assert postgres["image"].split(":")[1].split(".")[0] == "16"
    named = [v for v in postgres["volumes"] if str(v).endswith(":/var/lib/postgresql/data")]
    assert len(named) == 1
    assert named[0].split(":")[0] in COMPOSE["volumes"]
    databases = _created_databases()
    assert len(databases) == 2, databases
    script = _init_script().read_text(encoding="utf-8")
    for owner in databases.values():
        assert f"CREATE ROLE {owner} LOGIN PASSWORD" in script, owner


def _database_urls() -> list[tuple[str, str, str, str]]:
    """(service, variable, resolved URL, URL as written) for every database URL."""
    found = []
    for name, service in SERVICES.items():
        written = RAW["services"][name].get("environment") or {}
        for key, value in _environment(service).items():
            if value.startswith("postgresql"):
                found.append((name, key, value, str(written[key])))
    return found


def test_the_database_urls_point_at_the_databases_the_init_script_creates():
    databases = _created_databases()
    postgres_env = RAW["services"]["postgres"]["environment"]
    script = _init_script().read_text(encoding="utf-8")
    urls = _database_urls()
    variables = {(service, key) for service, key, _, _ in urls}
    assert ("migrate", "ONBOARDING_DATABASE_URL") in variables
    assert ("prefect-server", "PREFECT_API_DATABASE_CONNECTION_URL") in variables
    used = set()
    for service, key, resolved, written in urls:
        url = make_url(resolved)
        assert url.host == "postgres", f"{service} {key}"
        assert url.port in (None, 5432), f"{service} {key}"
        assert url.database in databases, f"{service} {key}: {url.database} is not created"
        assert url.username == databases[url.database], f"{service} {key}: not the owner"
        used.add(url.database)
        expected_driver = "asyncpg" if key.startswith("PREFECT_") else "psycopg"
        assert url.drivername == f"postgresql+{expected_driver}", f"{service} {key}"
        # The password is the same required variable, with the same message, that the init
        # script uses.
        password = re.search(r"\$\{(\w+):\?[^}]*\}", make_url(written).password or "")
        assert password, f"{service} {key}: the password comes from the environment"
        assert postgres_env[password.group(1)] == password.group(0), f"{service} {key}"
        assert f"${{{password.group(1)}" in script, password.group(1)
    assert used == set(databases), "each database is used by a service"


# -- scaling, start-up order, health -----------------------------------------------------------


def test_the_worker_can_be_scaled_on_one_work_pool():
    worker = SERVICES["worker"]
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert not worker.get("ports"), "a fixed host port would clash between replicas"
    assert "deploy" not in worker or "replicas" not in worker["deploy"]
    # Every worker takes from the pool the deploy service registers the deployments in.
    pools = {_environment(SERVICES[name])["ONBOARDING_WORK_POOL"] for name in ("deploy", "worker")}
    assert len(pools) == 1
    # Workers start once the deployments exist; the deployments once the server is up.
    assert worker["depends_on"]["deploy"]["condition"] == "service_completed_successfully"
    assert SERVICES["deploy"].get("restart") == "no"
    assert SERVICES["deploy"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    # Its health check asks the worker's own /health, which listens inside the container only.
    env = _environment(worker)
    assert env["PREFECT_WORKER_WEBSERVER_HOST"] == "127.0.0.1"
    assert "--healthcheck" in _argv(worker["command"])
    probe = " ".join(worker["healthcheck"]["test"])
    assert f"127.0.0.1:{env['PREFECT_WORKER_WEBSERVER_PORT']}/health" in probe


def test_the_task_worker_can_be_scaled_and_reports_its_health():
    """Each queued advance goes to one connected task worker; the advance is safe to repeat,
    so any number may run. The health check asks the worker's own status server."""
    tasks = SERVICES["task-worker"]
    assert "container_name" not in tasks and "hostname" not in tasks
    assert not tasks.get("ports"), "a fixed host port would clash between replicas"
    (port,) = [
        w.split("=", 1)[1] for w in _argv(tasks["command"]) if w.startswith("--status-port=")
    ]
    probe = " ".join(tasks["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/status" in probe
    # It runs the tracker's code against the tracker's database, in production.
    assert _environment(tasks) == _environment(SERVICES["dashboard"])
    assert tasks["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert tasks["depends_on"]["prefect-server"]["condition"] == "service_healthy"


def test_services_start_when_what_they_need_is_ready():
    for name, service in SERVICES.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: long form, with conditions"
        for dependency, spec in depends_on.items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            if dependency == "postgres":
                assert spec["condition"] == "service_healthy", name
            if "healthcheck" in SERVICES[dependency]:
                assert spec["condition"] == "service_healthy", f"{name} -> {dependency}"
    for name in ("worker", "task-worker", "dashboard"):
        condition = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name
    for name in ("migrate", "prefect-server", "deploy", "worker", "task-worker", "dashboard"):
        assert "postgres" in SERVICES[name]["depends_on"], name
    assert SERVICES["migrate"].get("restart") == "no"


def test_long_running_services_have_health_checks():
    prefect_port = _option(_argv(SERVICES["prefect-server"]["command"]), "--port")
    expected = {
        "postgres": "pg_isready",
        "prefect-server": f":{prefect_port}/api/health",
        "dashboard": f":{Settings.model_fields['dashboard_port'].default}/_stcore/health",
        "mailpit": "readyz",
    }
    for name, probe in expected.items():
        healthcheck = SERVICES[name].get("healthcheck")
        assert healthcheck and not healthcheck.get("disable"), name
        test = healthcheck["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), name
        assert probe in " ".join(test), name
    # Over TCP: during first-time initialisation the server listens on its socket only.
    assert "127.0.0.1" in SERVICES["postgres"]["healthcheck"]["test"]


# -- the image -----------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def _copied() -> dict[str, PurePosixPath]:
    """Each COPY source -> where it lands in the image."""
    workdir = PurePosixPath("/")
    landed: dict[str, PurePosixPath] = {}
    for instruction, args in _instructions():
        if instruction == "WORKDIR":
            workdir = workdir / args
        if instruction == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            *sources, destination = words
            for source in sources:
                target = workdir / destination
                if destination.endswith("/") and len(sources) == 1 and source.endswith("/"):
                    landed[source.rstrip("/")] = target
                elif destination.endswith("/") or destination in (".", "./"):
                    landed[source.rstrip("/")] = target / PurePosixPath(source).name
                else:
                    landed[source.rstrip("/")] = target
    return landed


def _final(instruction: str) -> str:
    return [args for name, args in _instructions() if name == instruction][-1]


def test_the_image_has_what_weasyprint_needs():
    installs = [args for name, args in _instructions() if name == "RUN" and "apt-get" in args]
    assert installs, "the Dockerfile installs system packages"
    run = installs[0]
    assert "--no-install-recommends" in run
    for package in WEASYPRINT_PACKAGES:
        assert re.search(rf"(?<![\w.-]){re.escape(package)}(?![\w.-])", run), package
    assert "rm -rf /var/lib/apt/lists/*" in run
    assert _instructions()[0] == ("FROM", "python:3.11-slim-bookworm")


def test_the_image_keeps_the_source_layout_the_code_expects():
    from tracker.messages import rendering

    landed = _copied()
    for source in landed:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
    for needed in ("tracker", "flows", "dashboard", "templates", "pyproject.toml"):
        assert needed in landed, f"the image needs {needed}"
    # Building the project reads the files pyproject.toml names (readme, licence): without
    # them `pip install -e .` fails inside the image.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for named in (project["readme"], *project.get("license-files", [])):
        assert named in landed, f"pip install -e . needs {named}"
        assert landed[named].parent == landed["pyproject.toml"].parent, named
    workdir = PurePosixPath(_final("WORKDIR"))
    # The renderer finds templates/ beside the tracker package, in the project root.
    package_dir = Path(tracker.__file__).resolve().parent
    relative = os.path.relpath(rendering.TEMPLATES_DIR, package_dir)
    assert PurePosixPath(os.path.normpath(landed["tracker"] / relative)) == landed["templates"]
    assert landed["tracker"] == workdir / "tracker"
    assert landed["dashboard"] == workdir / "dashboard"
    assert landed["pyproject.toml"].parent == workdir
    # `streamlit run dashboard/app.py` in compose is relative to the WORKDIR.
    assert "working_dir" not in SERVICES["dashboard"]


def test_the_image_installs_the_project_in_place_without_dev_extras():
    runs = [args for name, args in _instructions() if name == "RUN" and "pip install" in args]
    project = [run for run in runs if re.search(r"pip install (-e|--editable) \.(\s|$)", run)]
    assert project, "an editable install keeps tracker/ next to templates/ in /app"
    assert not any("[dev]" in run or "requirements-dev" in run for run in runs)
    user = _final("USER")
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))


def test_the_dockerignore_keeps_local_state_out():
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".venv", "data", ".git", ".pytest_cache", ".ruff_cache", ".mypy_cache"):
        assert entry in ignored, entry
    assert ".streamlit/secrets.toml" in ignored
    assert not set(_copied()) & ignored, "a COPY source is ignored"
