"""Schema migrations (Alembic), run by `payflow migrate` and by tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from payflow.config import get_settings, normalize_database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config for `database_url`, with no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalize_database_url(database_url))
    return config


def upgrade(database_url: str | None = None, revision: str = "heads") -> None:
    """Bring the database at `database_url` (default: configured) up to `revision`."""
    command.upgrade(alembic_config(database_url or get_settings().database_url), revision)


async def upgrade_async(database_url: str | None = None, revision: str = "heads") -> None:
    """`upgrade` from async code: Alembic's env runs its own event loop, so use a thread."""
    await asyncio.to_thread(upgrade, database_url, revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    """Take the database at `database_url` down to `revision`."""
    command.downgrade(alembic_config(database_url or get_settings().database_url), revision)
