"""The one settings object. Nothing else in PayFlow reads the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATABASE_URL_DEFAULT = "sqlite+aiosqlite:///./payflow.db"


def normalize_database_url(url: str) -> str:
    """Map the URLs people write (`postgresql://`, `sqlite:///`) to PayFlow's async drivers.

    asyncpg was chosen for PostgreSQL by measurement (docs/decisions.md).
    """
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


class Settings(BaseSettings):
    """PayFlow's configuration, read from `PAYFLOW_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="PAYFLOW_", extra="ignore")

    database_url: str = DATABASE_URL_DEFAULT
    broker_url: str | None = None
    redis_url: str | None = None
    default_currency: str = "INR"
    # Connections per process; a ledger batch holds one for a few milliseconds.
    database_pool_size: int = Field(default=10, ge=1, le=200)
    # TigerBeetle's batch is 8,190 transfers; ours is bounded the same way.
    ledger_batch_size_max: int = Field(default=8190, ge=1, le=100_000)
    ledger_retries_max: int = Field(default=8, ge=0, le=100)
    # A batch that locks more accounts than this first takes one ledger-wide lock on
    # PostgreSQL (see docs/decisions.md, "lock escalation").
    ledger_lock_escalation_accounts: int = Field(default=256, ge=1, le=1_000_000)
    ledger_expiry_batch_size: int = Field(default=1000, ge=1, le=100_000)

    @field_validator("database_url")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_database_url(value)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
