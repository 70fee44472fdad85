"""A production start: refused without a proper secret key or with demo sign-ins, at every entry
point (`onboarding run`, `onboarding-flows serve`, the dashboard); `onboarding demo` refuses."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from tests.conftest import NOW
from tracker.admin.auth import (
    ProductionNotReady,
    check_production,
    check_production_secret,
    demo_password_users,
)
from tracker.admin.organisations import SETUP
from tracker.admin.passwords import hash_password
from tracker.admin.users import add_user
from tracker.config import Settings, get_settings
from tracker.db import Database, get_database
from tracker.demo.people import DEMO_PASSWORD, DEMO_USERS
from tracker.enums import Role
from tracker.models import Newcomer, User

APP = str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py")
GOOD_SECRET = secrets.token_urlsafe(48)
DEMO_NAMES = sorted(name for name, *_ in DEMO_USERS)


def production(secret: str | None = GOOD_SECRET) -> Settings:
    return Settings(environment="production", secret_key=secret)


def _refusal(settings: Settings) -> str:
    with pytest.raises(ProductionNotReady) as refused:
        check_production_secret(settings)
    message = str(refused.value)
    assert "ONBOARDING_SECRET_KEY" in message
    secret = settings.secret_key.get_secret_value() if settings.secret_key else ""
    assert not secret.strip() or secret not in message, "the message never shows the value"
    return message


def _retire_demo_passwords(db: Database) -> None:
    """What an operator does before going live: every demo account gets a password of its own."""
    with db.transaction() as s:
        for name in DEMO_NAMES:
            s.execute(
                update(User)
                .where(User.username == name)
                .values(password_hash=hash_password(secrets.token_urlsafe(12)))
            )


# -- the secret key --------------------------------------------------------------------------------


def test_development_needs_no_secret(db):
    check_production_secret(Settings(environment="development"))
    check_production(Settings(environment="development", database_url="sqlite:////nonexistent"))


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_production_refuses_a_missing_secret(secret):
    assert "not set" in _refusal(production(secret))


def test_production_refuses_a_short_secret():
    assert "too short (31 characters" in _refusal(production(secrets.token_hex(16)[:31]))


@pytest.mark.parametrize(
    "secret",
    [
        "change-me-change-me-change-me-change-me",
        "CHANGEME_please_0123456789abcdefghijkl",
        "your-secret-key-goes-here-and-it-is-long",
        "replace_me_with_a_real_random_secret_value",
        "x" * 64,
        "ab" * 20,
        "12345678901234567890123456789012",
        "placeholder-" + secrets.token_hex(16),
        DEMO_PASSWORD * 4,
    ],
    ids=lambda secret: secret[:12],  # stable ids: xdist workers must collect the same tests
)
def test_production_refuses_a_placeholder_secret(secret):
    assert "placeholder" in _refusal(production(secret))


@pytest.mark.parametrize(
    "secret",
    [secrets.token_hex(16), secrets.token_hex(32), secrets.token_urlsafe(32), GOOD_SECRET],
    ids=["hex16", "hex32", "urlsafe32", "good"],
)
def test_production_accepts_a_random_secret(secret):
    check_production_secret(production(secret))


# -- demo sign-ins ---------------------------------------------------------------------------------


def test_production_refuses_while_a_user_has_the_demo_password(db):
    with pytest.raises(ProductionNotReady) as refused:
        check_production(production(), db)
    assert "demo password" in str(refused.value)
    assert all(name in str(refused.value) for name in DEMO_NAMES)
    # The secret is checked first, without touching the database.
    with pytest.raises(ProductionNotReady, match="ONBOARDING_SECRET_KEY"):
        check_production(production(None), db)


def test_production_starts_once_demo_passwords_are_gone(db):
    # One demo account is left with the demo password, but deactivated: it cannot sign in.
    with db.transaction() as s:
        s.execute(update(User).where(User.username == "admin").values(active=False))
    with db.read() as s:
        assert demo_password_users(s) == [name for name in DEMO_NAMES if name != "admin"]
    _retire_demo_passwords(db)
    started = time.perf_counter()
    check_production(production(), db)
    print(f"production guard: {(time.perf_counter() - started) * 1000:.0f} ms")


def test_a_reused_hash_is_found_whoever_has_it(db):
    """Demo data hashes its one password once; any account carrying a copy of that hash (not only
    the demo usernames) is found."""
    _retire_demo_passwords(db)
    demo_hash = hash_password(DEMO_PASSWORD)
    with db.transaction() as s:
        for name in ("real.one", "real.two"):
            add_user(
                s,
                actor=SETUP,
                username=name,
                display_name=name,
                role=Role.case_manager,
                organisation="kim-bochum",
                email=f"{name}@bochum.de",
                password_hash=demo_hash,
                now=NOW,
            )
    with db.read() as s:
        assert demo_password_users(s) == ["real.one", "real.two"]


def test_an_empty_or_unmigrated_database_has_no_demo_users(empty_db, tmp_path):
    check_production(production(), empty_db)
    fresh = Database(f"sqlite:///{tmp_path / 'new.db'}")
    try:
        check_production(production(), fresh)
    finally:
        fresh.dispose()


# -- the entry points ------------------------------------------------------------------------------


@pytest.fixture
def in_production(monkeypatch):
    """ONBOARDING_ENVIRONMENT=production and no secret key; returns a setter for the key."""
    monkeypatch.setenv("ONBOARDING_ENVIRONMENT", "production")
    monkeypatch.delenv("ONBOARDING_SECRET_KEY", raising=False)
    get_settings.cache_clear()

    def set_secret(value: str) -> None:
        monkeypatch.setenv("ONBOARDING_SECRET_KEY", value)
        get_settings.cache_clear()

    yield set_secret
    get_settings.cache_clear()


@pytest.fixture
def no_child_processes(monkeypatch):
    """`onboarding run` must not get as far as starting anything."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"started {args[0] if args else kwargs}")

    monkeypatch.setattr("tracker.cli.launcher.subprocess.Popen", refuse)


def test_onboarding_run_refuses_without_a_secret(cli, in_production, no_child_processes):
    code, out, _err = cli("run")
    assert code == 2
    assert "Refusing to start" in out and "ONBOARDING_SECRET_KEY" in out


def test_onboarding_run_refuses_with_demo_sign_ins(cli, in_production, no_child_processes):
    in_production(GOOD_SECRET)
    code, out, _err = cli("run")
    assert code == 2
    assert "demo password" in out


def test_onboarding_demo_refuses_in_production(cli, db, in_production):
    in_production(GOOD_SECRET)
    code, _out, err = cli("demo", "--people", "3")
    assert code == 1
    assert "production" in err
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Newcomer)) == 0


def test_onboarding_demo_still_works_in_development(cli, db):
    code, out, _err = cli("demo", "--people", "3", "--seed", "7")
    assert code == 0, out
    assert "Loaded 3 newcomers" in out


def test_onboarding_flows_serve_refuses_without_a_secret(db, monkeypatch, in_production):
    from flows.serve import app

    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    get_settings.cache_clear()
    get_database.cache_clear()

    def refuse() -> None:
        raise AssertionError("got as far as serving")

    monkeypatch.setattr("flows.serve.use_prefect_environment", refuse)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "ONBOARDING_SECRET_KEY" in result.stderr
    in_production(GOOD_SECRET)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "demo password" in result.stderr
    get_database.cache_clear()


# -- the dashboard ---------------------------------------------------------------------------------


@pytest.fixture
def dash(db, monkeypatch, in_production):
    from dashboard.common import _production_checked

    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "inline")
    monkeypatch.setattr("dashboard.common.DEFAULT", "en")
    get_settings.cache_clear()
    get_database.cache_clear()
    _production_checked.clear()  # a pass is kept per process: not from test to test
    yield db
    _production_checked.clear()
    get_database.cache_clear()


def _dashboard(username: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["lang"] = "en"
    if username:
        at.session_state["username"] = username
    return at.run()


def test_the_dashboard_renders_nothing_in_production_without_a_secret(dash):
    at = _dashboard()
    assert not at.exception
    # The alert is Markdown with the escapes of dashboard.common.plain ("ONBOARDING\\_SECRET...").
    assert len(at.error) == 1 and "ONBOARDING_SECRET_KEY" in at.error[0].value.replace("\\", "")
    assert not at.text_input, "no sign-in form"
    assert not at.title
    # Not even for a session that was signed in before.
    at = _dashboard("cm.mueller")
    assert "ONBOARDING_SECRET_KEY" in at.error[0].value.replace("\\", "")
    assert not at.metric and not at.button


def test_the_dashboard_refuses_demo_sign_ins_in_production(dash, in_production):
    in_production(GOOD_SECRET)
    at = _dashboard()
    assert not at.exception
    assert "demo password" in at.error[0].value
    assert not at.text_input


def test_the_dashboard_starts_in_production_with_a_secret_and_no_demo_passwords(
    dash, in_production
):
    in_production(GOOD_SECRET)
    _retire_demo_passwords(dash)
    at = _dashboard()
    assert not at.exception
    assert not at.error
    assert at.text_input(key="signin_user")


def test_the_demo_loader_itself_refuses_in_production(db, in_production):
    """Not only the CLI: tracker.demo refuses, whoever calls it."""
    from tracker.demo.load import load_demo
    from tracker.demo.people import ensure_demo_users
    from tracker.errors import PermissionDenied

    in_production(GOOD_SECRET)
    with pytest.raises(PermissionDenied, match="production"):
        load_demo(db, people=2)
    with db.transaction() as s, pytest.raises(PermissionDenied, match="production"):
        ensure_demo_users(s)


def test_the_first_administrator_of_a_fresh_installation(empty_db, monkeypatch):
    """Production has no demo sign-ins: `onboarding user bootstrap` creates the first admin,
    once, with a password that follows the length rule; the run is no longer refused for it."""
    from tracker.admin.auth import sign_in
    from tracker.cli.main import app

    monkeypatch.setenv("ONBOARDING_DATABASE_URL", empty_db.url)
    get_settings.cache_clear()
    get_database.cache_clear()

    def cli(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, list(args))
        return result.exit_code, result.stdout, result.stderr

    code, _out, err = cli(
        "user", "bootstrap", "dpo", "--display-name", "Data Protection", "--password", "short"
    )
    assert code == 1 and "at least 10 characters" in err
    code, out, err = cli(
        "user",
        "bootstrap",
        "dpo",
        "--display-name",
        "Data Protection",
        "--password",
        "a-long-pass-phrase",
    )
    assert code == 0, err
    assert "Added administrator dpo" in out
    code, _out, err = cli(
        "user",
        "bootstrap",
        "second",
        "--display-name",
        "Second",
        "--password",
        "another-long-phrase",
    )
    assert code == 1 and "exists already" in err
    with empty_db.transaction() as s:
        result = sign_in(s, username="dpo", password="a-long-pass-phrase")
    assert result.actor is not None and result.actor.role == "admin"
    get_database.cache_clear()
    get_settings.cache_clear()
