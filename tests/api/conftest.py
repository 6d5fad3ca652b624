"""End-to-end fixtures: a real PayFlow API server (uvicorn on a loopback port) per
backend — PostgreSQL with Redis, and SQLite with the in-process limiter — and httpx
clients talking HTTP to it. The ledger audit runs after every test.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.api.app import create_app
from payflow.config import Settings
from payflow.db import create_engine
from tests.conftest import assert_audit_passes
from tests.services import REDIS_HOST, REDIS_PORT, ensure_redis, free_port

# Cheap password hashing for tests (argon2id still; production cost is in config.py).
os.environ.setdefault("PAYFLOW_PASSWORD_HASH_TIME_COST", "1")
os.environ.setdefault("PAYFLOW_PASSWORD_HASH_MEMORY_KIB", "256")
os.environ.setdefault("PAYFLOW_PASSWORD_HASH_PARALLELISM", "1")

PASSWORD = "correct-horse-1"


@dataclass
class Server:
    """A running API server and what tests need to talk to it and check its database."""

    base_url: str
    settings: Settings
    engine: AsyncEngine
    backend: str
    client: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(base_url=self.base_url, timeout=30)


async def start_server(
    settings: Settings, backend: str
) -> tuple[Server, Callable[[], Awaitable[None]]]:
    """Start uvicorn in this event loop; returns the server and a stop function that
    shuts it down gracefully (as SIGTERM would)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
        # Longer than the test client's keep-alive expiry (httpx: 5 s, as uvicorn's
        # default): otherwise the server may close an idle connection just as the client
        # sends on it, and the request fails with a ReadError (seen in CI).
        timeout_keep_alive=60,
    )
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    while not uv.started:
        if task.done():
            await task
            raise RuntimeError("the API server did not start")
        await asyncio.sleep(0.02)
    server = Server(
        f"http://127.0.0.1:{port}", settings, create_engine(settings.database_url), backend
    )

    async def stop() -> None:
        await server.client.aclose()
        uv.should_exit = True
        await task
        await server.engine.dispose()

    return server, stop


def settings_for(database_url: str, backend: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": f"redis://{REDIS_HOST}:{REDIS_PORT}/0" if backend == "postgresql" else None,
        "rate_limit_requests": 100_000,
        "rate_limit_auth_requests": 100_000,
        "audit_interval_s": 0,
        "sweep_interval_s": 0.2,
        # Several servers share one PostgreSQL in a run: keep few idle connections each.
        "database_pool_size": 10,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
async def server(database_url: str, backend: str) -> AsyncIterator[Server]:
    """The API on this backend (PostgreSQL + Redis, or SQLite), for the whole session."""
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


@dataclass
class User:
    """A registered, logged-in user with their wallet."""

    id: str
    email: str
    handle: str
    role: str
    access_token: str
    refresh_token: str
    wallet_id: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}

    @property
    def address(self) -> str:
        return f"{self.handle}@payflow"


def unique_handle(prefix: str = "u") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def register(
    client: httpx.AsyncClient, *, role: str = "customer", handle: str | None = None
) -> User:
    handle = handle or unique_handle()
    email = f"{handle}@example.com"
    response = await client.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "name": handle.title(),
            "handle": handle,
            "role": role,
        },
    )
    assert response.status_code == 201, response.text
    user_id = response.json()["id"]
    return await login(client, email=email, handle=handle, user_id=user_id, role=role)


async def login(
    client: httpx.AsyncClient, *, email: str, handle: str, user_id: str, role: str
) -> User:
    tokens = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    wallets = await client.get(
        "/v1/wallets", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert wallets.status_code == 200, wallets.text
    wallet_id = wallets.json()[0]["id"] if wallets.json() else ""
    return User(
        user_id, email, handle, role, body["access_token"], body["refresh_token"], wallet_id
    )


async def create_operator(server: Server) -> User:
    """Operators are made by the CLI's function, then log in over HTTP."""
    from payflow.identity import service
    from payflow.identity.domain import Role

    handle = unique_handle("op")
    email = f"{handle}@example.com"
    from payflow.identity.passwords import hash_password

    password_hash = await hash_password(PASSWORD)
    async with server.engine.begin() as conn:
        user = await service.create_user(
            conn,
            email=email,
            password_hash=password_hash,
            name="Operator",
            handle=handle,
            role=Role.OPERATOR,
        )
    return await login(
        server.client, email=email, handle=handle, user_id=f"usr_{user.id.hex}", role="operator"
    )


async def topup(client: httpx.AsyncClient, user: User, amount: int) -> httpx.Response:
    response = await client.post(
        f"/v1/wallets/{user.wallet_id}/topups",
        json={"amount": amount},
        headers={**user.auth, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    return response


async def balance(client: httpx.AsyncClient, user: User) -> dict[str, int]:
    response = await client.get(f"/v1/wallets/{user.wallet_id}", headers=user.auth)
    assert response.status_code == 200, response.text
    result: dict[str, int] = response.json()["balance"]
    return result


def key() -> dict[str, str]:
    """A fresh Idempotency-Key header."""
    return {"Idempotency-Key": uuid.uuid4().hex}
