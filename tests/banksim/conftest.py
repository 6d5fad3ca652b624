"""The bank simulator as a real HTTP server (uvicorn on a loopback port, in this event
loop), on its SQLite store and on PostgreSQL; httpx clients talk HTTP to it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from payflow.banksim import BankSimConfig, serve
from tests.services import PG_ADMIN_URL, PG_HOST, PG_PORT, ensure_postgresql, free_port

BACKENDS = ("sqlite", "postgresql")
FAR_FUTURE = 4_102_444_800  # 2100-01-01: a `not_after` that never passes in these tests
HOLD_S = 0.4
# Tests that look inside a hold make it long enough for a loaded machine.
LONG_HOLD_S = 1.5


@dataclasses.dataclass
class Bank:
    """A running simulator and a client for it."""

    url: str
    config: BankSimConfig
    http: httpx.AsyncClient
    backend: str

    async def credit(self, **overrides: Any) -> httpx.Response:
        """POST /v1/credits with a valid body to asha@okbank, changed by `overrides`."""
        return await self.http.post("/v1/credits", json=credit_body(**overrides))

    async def fault(self, operation: str, kind: str, times: int = 1, **extra: Any) -> None:
        body = {"operation": operation, "kind": kind, "times": times, **extra}
        response = await self.http.post("/sim/faults", json=body)
        assert response.status_code == 201, response.text

    async def first_seen(self, ref: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
        """The outcome of `ref` as soon as the bank has recorded it."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            response = await self.http.get(f"/v1/credits/{ref}")
            if response.status_code == 200:
                outcome: dict[str, Any] = response.json()
                return outcome
            assert response.status_code == 404, response.text
            assert asyncio.get_running_loop().time() < deadline, f"{ref} never recorded"
            await asyncio.sleep(0.01)

    async def configure(self, **values: Any) -> None:
        response = await self.http.put("/sim/config", json=values)
        assert response.status_code == 200, response.text


def reference(prefix: str = "t") -> str:
    """A reference no other test uses."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def account_number() -> str:
    """An account number no other test uses (12 digits)."""
    return str(uuid.uuid4().int % 10**12).zfill(12)


def credit_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reference": reference(),
        "amount": 12_345,
        "currency": "INR",
        "destination": {"vpa": "asha@okbank"},
        "not_after": FAR_FUTURE,
        "narrative": "payout",
    }
    body.update(overrides)
    return body


@contextlib.asynccontextmanager
async def running_bank(config: BankSimConfig, backend: str) -> AsyncIterator[Bank]:
    """Serve `config` on a free loopback port until the block ends."""
    config = dataclasses.replace(config, host="127.0.0.1", port=free_port())
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(config, stop=stop, started=started))
    starting = asyncio.create_task(started.wait())
    await asyncio.wait({task, starting}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        starting.cancel()
        await task
    url = f"http://{config.host}:{config.port}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        try:
            yield Bank(url=url, config=config, http=http, backend=backend)
        finally:
            stop.set()
            await task


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """Makes PostgreSQL databases for simulators; drops them all at the end."""
    ensure_postgresql()
    names: list[str] = []

    def make() -> str:
        name = f"payflow_banksim_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        names.append(name)
        return f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"

    yield make
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


BankFactory = Callable[..., AbstractAsyncContextManager[Bank]]


@pytest.fixture
def new_bank(tmp_path: Path, pg_database: Callable[[], str]) -> BankFactory:
    """`async with new_bank(backend, **config) as bank`: a simulator with a store of its
    own (for tests that need an empty book, or a restart on the same store)."""

    def make(backend: str = "sqlite", *, database_url: str | None = None, **values: Any) -> Any:
        if database_url is None:
            database_url = (
                pg_database()
                if backend == "postgresql"
                else f"sqlite+aiosqlite:///{tmp_path / uuid.uuid4().hex}.db"
            )
        config = BankSimConfig(database_url=database_url, **{"timeout_hold_s": HOLD_S, **values})
        return running_bank(config, backend)

    return make


@pytest.fixture(scope="session", params=BACKENDS)
async def shared_bank(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: Callable[[], str],
) -> AsyncIterator[Bank]:
    """One simulator per backend for the whole session."""
    backend = str(request.param)
    if backend == "postgresql":
        url = pg_database()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('banksim') / 'bank.db'}"
    async with running_bank(
        BankSimConfig(database_url=url, timeout_hold_s=HOLD_S), backend
    ) as bank:
        yield bank


@pytest.fixture
async def bank(shared_bank: Bank) -> AsyncIterator[Bank]:
    """The shared simulator with no faults, no latency and no discrepancies configured;
    whatever a test configures is undone after it."""
    yield shared_bank
    await shared_bank.http.delete("/sim/faults")
    defaults = {
        "latency_ms": 0,
        "failure_rate": 0,
        "timeout_rate": 0,
        "lost_response_rate": 0,
        "unavailable_rate": 0,
        "timeout_hold_s": HOLD_S,
        "fee_per_credit": 0,
        "missing_line_rate": 0,
        "unexpected_line_rate": 0,
        "seed": None,
    }
    response = await shared_bank.http.put("/sim/config", json=defaults)
    assert response.status_code == 200, response.text
