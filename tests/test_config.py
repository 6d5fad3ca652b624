"""Settings: read from PAYFLOW_* environment variables, URLs normalized, bounds enforced."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from payflow.config import DATABASE_URL_DEFAULT, Settings, get_settings, normalize_database_url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No PAYFLOW_* variables from the outside, and a fresh settings cache before and after."""
    for name in list(os.environ):
        if name.startswith("PAYFLOW_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


class TestNormalizeDatabaseUrl:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
            ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
            ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
            ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
            ("sqlite:///./payflow.db", "sqlite+aiosqlite:///./payflow.db"),
            ("sqlite:////abs/path.db", "sqlite+aiosqlite:////abs/path.db"),
            ("sqlite://", "sqlite+aiosqlite://"),
            ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
            ("mysql://u@h/db", "mysql://u@h/db"),
        ],
    )
    def test_normalize(self, url: str, expected: str) -> None:
        assert normalize_database_url(url) == expected


class TestSettings:
    def test_defaults(self, clean_env: pytest.MonkeyPatch) -> None:
        settings = Settings()
        assert settings.database_url == DATABASE_URL_DEFAULT
        assert settings.default_currency == "INR"
        assert settings.database_pool_size == 30
        assert settings.api_batch_concurrency == 2
        assert settings.idempotency_ttl_s == 86_400
        assert settings.access_token_ttl_s == 900
        assert settings.redis_url is None
        assert settings.ledger_batch_size_max == 8190
        assert settings.ledger_retries_max == 8
        assert settings.ledger_expiry_batch_size == 1000
        assert settings.broker_url is None
        assert settings.redis_url is None

    def test_from_env(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv("PAYFLOW_DATABASE_URL", "postgresql://app@db:5432/payflow")
        clean_env.setenv("PAYFLOW_DATABASE_POOL_SIZE", "25")
        clean_env.setenv("PAYFLOW_LEDGER_BATCH_SIZE_MAX", "100")
        clean_env.setenv("PAYFLOW_LEDGER_RETRIES_MAX", "0")
        clean_env.setenv("PAYFLOW_LEDGER_EXPIRY_BATCH_SIZE", "7")
        clean_env.setenv("PAYFLOW_DEFAULT_CURRENCY", "JPY")
        clean_env.setenv("PAYFLOW_REDIS_URL", "redis://localhost:6379/0")
        clean_env.setenv("PAYFLOW_NOT_A_SETTING", "ignored")
        settings = Settings()
        assert settings.database_url == "postgresql+asyncpg://app@db:5432/payflow"
        assert settings.database_pool_size == 25
        assert settings.ledger_batch_size_max == 100
        assert settings.ledger_retries_max == 0
        assert settings.ledger_expiry_batch_size == 7
        assert settings.default_currency == "JPY"
        assert settings.redis_url == "redis://localhost:6379/0"

    def test_sqlite_url_from_env_is_normalized(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv("PAYFLOW_DATABASE_URL", "sqlite:///./local.db")
        assert Settings().database_url == "sqlite+aiosqlite:///./local.db"

    def test_url_passed_directly_is_normalized(self, clean_env: pytest.MonkeyPatch) -> None:
        assert Settings(database_url="postgres://x/y").database_url == "postgresql+asyncpg://x/y"

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("PAYFLOW_DATABASE_POOL_SIZE", "0"),
            ("PAYFLOW_DATABASE_POOL_SIZE", "201"),
            ("PAYFLOW_LEDGER_BATCH_SIZE_MAX", "0"),
            ("PAYFLOW_LEDGER_BATCH_SIZE_MAX", "100001"),
            ("PAYFLOW_LEDGER_RETRIES_MAX", "-1"),
            ("PAYFLOW_LEDGER_RETRIES_MAX", "101"),
            ("PAYFLOW_LEDGER_EXPIRY_BATCH_SIZE", "0"),
            ("PAYFLOW_LEDGER_EXPIRY_BATCH_SIZE", "100001"),
            ("PAYFLOW_DATABASE_POOL_SIZE", "ten"),
            # Idempotency-Keys must be kept at least a day (the IETF draft's retry window).
            ("PAYFLOW_IDEMPOTENCY_TTL_S", "86399"),
            ("PAYFLOW_API_BATCH_SIZE_MAX", "0"),
            ("PAYFLOW_API_BATCH_SIZE_MAX", "4096"),
            ("PAYFLOW_ACCESS_TOKEN_TTL_S", "29"),
            ("PAYFLOW_PASSWORD_HASH_TIME_COST", "0"),
            ("PAYFLOW_RATE_LIMIT_REQUESTS", "0"),
            ("PAYFLOW_API_PORT", "70000"),
        ],
    )
    def test_out_of_bounds(self, clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
        clean_env.setenv(name, value)
        with pytest.raises(ValidationError):
            Settings()

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("PAYFLOW_DATABASE_POOL_SIZE", "1"),
            ("PAYFLOW_DATABASE_POOL_SIZE", "200"),
            ("PAYFLOW_LEDGER_BATCH_SIZE_MAX", "1"),
            ("PAYFLOW_LEDGER_BATCH_SIZE_MAX", "100000"),
            ("PAYFLOW_LEDGER_RETRIES_MAX", "0"),
            ("PAYFLOW_LEDGER_RETRIES_MAX", "100"),
            ("PAYFLOW_LEDGER_EXPIRY_BATCH_SIZE", "1"),
            ("PAYFLOW_LEDGER_EXPIRY_BATCH_SIZE", "100000"),
        ],
    )
    def test_at_bounds(self, clean_env: pytest.MonkeyPatch, name: str, value: str) -> None:
        clean_env.setenv(name, value)
        settings = Settings()
        field = name.removeprefix("PAYFLOW_").lower()
        assert getattr(settings, field) == int(value)

    def test_get_settings_is_read_once(self, clean_env: pytest.MonkeyPatch) -> None:
        clean_env.setenv("PAYFLOW_LEDGER_RETRIES_MAX", "3")
        first = get_settings()
        clean_env.setenv("PAYFLOW_LEDGER_RETRIES_MAX", "4")
        assert get_settings() is first
        assert first.ledger_retries_max == 3
        get_settings.cache_clear()
        assert get_settings().ledger_retries_max == 4
