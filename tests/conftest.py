"""Fixtures: a fresh PostgreSQL database and a fresh SQLite file per test run.

Every test that takes `db` runs against both, and the ledger audit runs after it: the
invariants must hold after every test that moves money.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.db import create_engine
from payflow.ledger import audit
from payflow.migrate import upgrade
from tests.bank import bank
from tests.services import PG_ADMIN_URL, PG_HOST, PG_PORT, ensure_postgresql

# One bank simulator per backend for the whole run, shared by every package (tests/bank.py).
__all__ = ["bank"]

BACKENDS = ("sqlite", "postgresql")


@contextlib.contextmanager
def migrated_pg_database(prefix: str) -> Iterator[str]:
    """A new PostgreSQL database, migrated, for the block; dropped after it."""
    ensure_postgresql()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this run's own, migrated; dropped at the end."""
    with migrated_pg_database("payflow_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file of this run's own, migrated."""
    path: Path = tmp_path_factory.mktemp("sqlite") / "payflow.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(url)
    return url


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest) -> str:
    fixture = "pg_url" if backend == "postgresql" else "sqlite_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def assert_audit_passes(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        report = await audit(conn)
    assert report.ok, report.violations


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The engine for one test; the ledger audit must pass when the test is done."""
    yield engine
    await assert_audit_passes(engine)


@pytest.fixture(scope="session")
async def pg_engine(pg_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(pg_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def pg_db(pg_engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """PostgreSQL only (row locks across connections and processes); audited afterwards."""
    yield pg_engine
    await assert_audit_passes(pg_engine)
