"""Fixtures for the payments tests: a real API server per backend (PostgreSQL + Redis, or
SQLite), for the whole session; the ledger audit runs after every test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.api.conftest import Server, settings_for, start_server
from tests.conftest import assert_audit_passes
from tests.services import ensure_redis


@pytest.fixture(scope="session")
async def server(database_url: str, backend: str) -> AsyncIterator[Server]:
    """The API on this backend, for every payments test of the session."""
    if backend == "postgresql":
        ensure_redis()
    running, stop = await start_server(settings_for(database_url, backend), backend)
    yield running
    await stop()


@pytest.fixture
async def api(server: Server) -> AsyncIterator[Server]:
    """The server for one test; the ledger audit must pass when the test is done."""
    yield server
    await assert_audit_passes(server.engine)
