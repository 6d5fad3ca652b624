"""Event tests reuse the API tests' real server (PostgreSQL + Redis, SQLite), and crash
tests get a fresh PostgreSQL database each, copied from a migrated template."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from payflow.migrate import upgrade
from tests.api.conftest import api, server
from tests.services import PG_ADMIN_URL, PG_HOST, PG_PORT, ensure_postgresql

__all__ = ["api", "fresh_pg_url", "server"]


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated database nobody connects to, to copy fresh databases from."""
    ensure_postgresql()
    name = f"payflow_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    upgrade(f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}")
    yield name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_url(pg_template: str) -> Iterator[str]:
    """A new, migrated, empty PostgreSQL database for one test; dropped afterwards."""
    name = f"payflow_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
