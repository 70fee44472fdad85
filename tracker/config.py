"""Configuration from the environment, with embedded defaults that need nothing installed."""

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting can be overridden by an ``ONBOARDING_*`` environment variable."""

    model_config = SettingsConfigDict(env_prefix="ONBOARDING_", extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / "data", description="Where local state lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to a SQLite file in data_dir.",
    )
    sqlite_synchronous: str = Field(
        default="FULL", description="SQLite synchronous pragma; FULL makes every commit durable."
    )
    due_soon_days: int = Field(
        default=3, ge=0, description="Days before a due date that count as due soon."
    )
    pathways_dir: Path | None = Field(
        default=None, description="Extra folder of pathway YAML files (added to the built-in ones)."
    )
    office_name: str = "Welcome Office Bochum"
    handoff_accept_days: int = Field(
        default=5, ge=1, description="Days a partner has to answer a handoff before escalation."
    )
    orchestration: Literal["prefect", "inline"] = Field(
        default="prefect",
        description="How the advance after a change runs: as a Prefect background task, or "
        "inline (in the process that made the change).",
    )
    prefect_api_url: str = Field(
        default_factory=lambda: os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api"),
        description="The Prefect server the tracker talks to (default: PREFECT_API_URL or local).",
    )
    prefect_ui_url: str | None = Field(
        default=None,
        description="Where people's browsers open the Prefect UI, when it differs from the API "
        "host the services use (e.g. in docker compose); default: the API URL without /api.",
    )
    work_pool: str = Field(
        default="onboarding",
        description="The Prefect work pool that `onboarding-flows deploy` registers the "
        "deployments in and `onboarding-flows worker` takes flow runs from.",
    )
    worker_limit: int = Field(
        default=4, ge=1, description="How many flow runs one worker runs at once."
    )
    advance_wait_seconds: float = Field(
        default=15,
        ge=0,
        description=(
            "How long the CLI's --wait waits for a case's queued advance to finish, and how long"
            " the case page watches for the steps it opens."
        ),
    )
    catch_up_grace_seconds: int = Field(
        default=60, ge=0, description="How old an advance request must be for the sweep to take it."
    )
    sweep_interval_minutes: int = Field(default=10, ge=1)
    delivery_interval_seconds: int = Field(default=60, ge=5)
    delivery_max_attempts: int = Field(default=6, ge=1)
    digest_cron: str = Field(default="0 7 * * 1-5", description="Partner digest (Europe/Berlin).")
    fit_day_warning_margin: int = Field(
        default=20,
        ge=0,
        description="Warn a student this many working days before the 140-day limit is reached.",
    )
    fit_permit_warning_days: int = Field(
        default=60, ge=1, description="Remind a FIT student this many days before a permit ends."
    )
    fit_daily_cron: str = Field(
        default="0 8 * * *", description="FIT reminders, feedback requests, permit warnings."
    )
    monthly_report_cron: str = Field(
        default="0 6 1 * *", description="The last month's outcomes report (Europe/Berlin)."
    )
    fit_report_cron: str = Field(
        default="0 6 15 1 *", description="The last year's FIT@THGA report (Europe/Berlin)."
    )
    mail_dir: Path | None = Field(
        default=None,
        description="Where the file mail drop writes messages (default data_dir/mail).",
    )
    timezone: str = "Europe/Berlin"
    # SMTP: unset host means the file drop (tracker.messages.senders.default_sender chooses).
    smtp_host: str | None = Field(
        default=None, description="SMTP server; when set, mail goes out by SMTP."
    )
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_user: str | None = Field(default=None, description="Log in as this user (if set).")
    # SecretStr: the password shows as '**********' in any repr, log line or error message.
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(default=False, description="Upgrade the connection with STARTTLS.")
    smtp_from: str = "Welcome Office Bochum <welcome@localhost>"
    smtp_timeout: float = Field(
        default=10, gt=0, description="Seconds to wait on each SMTP connect, read or write."
    )
    dashboard_port: int = Field(default=8501, ge=1, le=65535)
    # Privacy and sign-in.
    environment: Literal["development", "production"] = Field(
        default="development",
        description="'production' refuses to start without a secret key and refuses demo data.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Server secret (at least 32 characters); required in production. It keys "
        "the hashes that let a tombstone be matched to a case reference without storing it.",
    )
    session_hours: float = Field(
        default=8, gt=0, description="A dashboard sign-in ends this many hours after it began."
    )
    session_idle_minutes: float = Field(
        default=30, gt=0, description="A dashboard sign-in ends after this long without a click."
    )
    retention_months: int = Field(
        default=12,
        ge=1,
        description="Closed and cancelled cases are anonymised this many months after they end.",
    )
    retention_cron: str = Field(
        default="30 2 * * *", description="When the retention run anonymises expired cases."
    )
    access_log_window_minutes: int = Field(
        default=15,
        ge=0,
        description="A repeated view of the same person by the same user for the same purpose "
        "within this window is logged once.",
    )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'onboarding.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def prefect_environment(settings: Settings | None = None) -> dict[str, str]:
    """Environment for every Prefect process and client: local, quiet, nothing phones home."""
    settings = settings or get_settings()
    return {
        "PREFECT_HOME": str(settings.data_dir / "prefect"),
        "PREFECT_API_URL": settings.prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # The serving process looks for new runs every 2 s (default 10 s): a case manager
        # waits for the next steps to open after each click.
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        # The advance task runs outside any flow run: its log lines stay in the worker's
        # output (Prefect would warn on each that it cannot send them to the API).
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    }
