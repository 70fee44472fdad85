"""Configuration from the environment, with embedded defaults that need nothing installed."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
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

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'onboarding.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
