"""Redis as the idempotency fast path (PostgreSQL backend, where Redis is configured)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select

from payflow.api.idempotency_cache import ReplyCache
from payflow.api.models import idempotency_keys
from payflow.api.replies import Reply
from tests.api.conftest import Server, balance, register, settings_for, start_server, topup
from tests.conftest import assert_audit_passes
from tests.services import REDIS_HOST, REDIS_PORT, ensure_redis


@pytest.fixture
async def api(pg_url: str) -> AsyncIterator[Server]:
    """A PostgreSQL server with Redis configured (the SQLite one runs without Redis)."""
    ensure_redis()
    server, stop = await start_server(settings_for(pg_url, "postgresql"), "postgresql")
    yield server
    await assert_audit_passes(server.engine)
    await stop()


async def test_replay_is_served_from_redis_and_moves_nothing(api: Server) -> None:
    payer, payee = await register(api.client), await register(api.client)
    await topup(api.client, payer, 10_000)
    headers = {**payer.auth, "Idempotency-Key": uuid.uuid4().hex}
    body = {"to": payee.handle, "amount": 700, "currency": "INR"}
    first = await api.client.post("/v1/transfers", json=body, headers=headers)
    assert first.status_code == 201
    # Remove the database's copy: only Redis can answer the replay now.
    async with api.engine.begin() as conn:
        removed = await conn.execute(
            delete(idempotency_keys).where(idempotency_keys.c.key == headers["Idempotency-Key"])
        )
    assert removed.rowcount == 1
    replay = await api.client.post("/v1/transfers", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    reused = await api.client.post("/v1/transfers", json={**body, "amount": 701}, headers=headers)
    assert reused.status_code == 422
    assert reused.json()["code"] == "idempotency_key_reused"
    assert (await balance(api.client, payee))["posted"] == 700
    async with api.engine.connect() as conn:
        assert (
            await conn.scalar(
                select(idempotency_keys.c.id).where(
                    idempotency_keys.c.key == headers["Idempotency-Key"]
                )
            )
        ) is None


async def test_cache_down_is_a_miss_not_an_error() -> None:
    cache = ReplyCache("redis://127.0.0.1:1/0", ttl_s=60)
    try:
        assert await cache.get("usr_x", "k") is None
        await cache.put("usr_x", "k", "f" * 64, Reply(201, {"ok": True}))
    finally:
        await cache.close()


async def test_cache_round_trip() -> None:
    cache = ReplyCache(
        f"redis://{REDIS_HOST}:{REDIS_PORT}/0", ttl_s=60, prefix=f"t:{uuid.uuid4().hex}:"
    )
    try:
        await cache.put("usr_x", "k", "f" * 64, Reply(409, {"code": "x"}))
        assert await cache.get("usr_x", "k") == ("f" * 64, Reply(409, {"code": "x"}))
        assert await cache.get("usr_x", "other") is None
    finally:
        await cache.close()
