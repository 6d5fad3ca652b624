"""On PostgreSQL a ledger batch inserts its new Idempotency-Keys complete, with its write
(`ledger_batch._apply_unclaimed`); a key found there already rolls the batch back, and
that batch and the next few claim their keys first (`ledger_batch._apply`).

Over HTTP against a server in this process with no Redis, so every replay reaches the
database; spies on the two ways of applying a batch show which one ran.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from payflow.api import ledger_batch
from payflow.api.models import idempotency_keys
from tests.api.conftest import (
    Server,
    User,
    assert_audit_passes,
    balance,
    register,
    settings_for,
    start_server,
    topup,
)


@pytest.fixture
async def server(pg_url: str) -> AsyncIterator[Server]:
    """A server of its own (the session's has Redis, which answers replays itself)."""
    running, stop = await start_server(
        settings_for(pg_url, "postgresql", redis_url=None), "postgresql"
    )
    try:
        yield running
        await assert_audit_passes(running.engine)
    finally:
        await stop()


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """ "unclaimed" or "claimed first" for each batch attempt, in order."""
    seen: list[str] = []
    unclaimed, claimed = ledger_batch._apply_unclaimed, ledger_batch._apply

    async def spy_unclaimed(*args: Any) -> Any:
        seen.append("unclaimed")
        return await unclaimed(*args)

    async def spy_claimed(*args: Any) -> Any:
        seen.append("claimed first")
        return await claimed(*args)

    monkeypatch.setattr(ledger_batch, "_apply_unclaimed", spy_unclaimed)
    monkeypatch.setattr(ledger_batch, "_apply", spy_claimed)
    return seen


async def _pair(server: Server) -> tuple[User, User]:
    payer, payee = await register(server.client), await register(server.client)
    await topup(server.client, payer, 10_000)
    return payer, payee


async def _pay(server: Server, payer: User, payee: User, key: str, amount: int = 100) -> Any:
    return await server.client.post(
        "/v1/transfers",
        json={"to": payee.handle, "amount": amount, "currency": "INR"},
        headers={**payer.auth, "Idempotency-Key": key},
    )


async def _stored(server: Server, key: str) -> Any:
    async with server.engine.connect() as conn:
        return (
            await conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == key))
        ).one()


async def test_a_new_key_is_stored_complete_with_the_batch(
    server: Server, applied: list[str]
) -> None:
    payer, payee = await _pair(server)
    applied.clear()
    key = uuid.uuid4().hex
    response = await _pay(server, payer, payee, key)
    assert response.status_code == 201, response.text
    assert applied == ["unclaimed"]
    stored = await _stored(server, key)
    assert stored.status == "completed"
    assert stored.response_status == 201
    assert stored.response_body == response.text
    assert (await balance(server.client, payee))["posted"] == 100


async def test_a_replay_rolls_its_batch_back_and_replays_the_stored_reply(
    server: Server, applied: list[str]
) -> None:
    payer, payee = await _pair(server)
    key = uuid.uuid4().hex
    first = await _pay(server, payer, payee, key)
    assert first.status_code == 201, first.text
    applied.clear()
    replay = await _pay(server, payer, payee, key)
    assert replay.status_code == 201, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert applied == ["unclaimed", "claimed first"]
    assert (await balance(server.client, payee))["posted"] == 100
    assert (await balance(server.client, payer))["posted"] == 10_000 - 100


async def test_a_key_reused_for_another_request_is_422_and_moves_nothing(
    server: Server, applied: list[str]
) -> None:
    payer, payee = await _pair(server)
    key = uuid.uuid4().hex
    assert (await _pay(server, payer, payee, key)).status_code == 201
    applied.clear()
    reused = await _pay(server, payer, payee, key, amount=7)
    assert reused.status_code == 422, reused.text
    assert reused.json()["code"] == "idempotency_key_reused"
    assert applied == ["unclaimed", "claimed first"]
    assert (await balance(server.client, payee))["posted"] == 100


async def test_after_a_taken_key_batches_claim_first_for_a_while(
    server: Server, applied: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_batch, "CLAIM_FIRST_AFTER_TAKEN", 2)
    payer, payee = await _pair(server)
    key = uuid.uuid4().hex
    assert (await _pay(server, payer, payee, key)).status_code == 201
    applied.clear()
    assert (await _pay(server, payer, payee, key)).status_code == 201  # a replay
    for _ in range(3):
        response = await _pay(server, payer, payee, uuid.uuid4().hex)
        assert response.status_code == 201, response.text
    assert applied == ["unclaimed", "claimed first", "claimed first", "claimed first", "unclaimed"]
    assert (await balance(server.client, payee))["posted"] == 4 * 100
