"""Payout fixtures: the real bank simulator (tests/bank.py), the API on each backend, and
the `payouts` consumer with its bank caller and sweeper running in this process, with the
saga's timings compressed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select

from payflow.events.runtime import EventsRuntime, start_runtime
from payflow.ledger import lookup_accounts
from payflow.payouts import models
from payflow.payouts.handlers import CONSUMER
from payflow.wallets.domain import SystemAccount
from payflow.wallets.service import system_account_id
from payflow.webhooks.handlers import CONSUMER as WEBHOOKS
from tests.api.conftest import (
    Server,
    User,
    register,
    settings_for,
    start_server,
)
from tests.bank import CURRENCY, Bank
from tests.conftest import assert_audit_passes
from tests.services import ensure_redis
from tests.webhooks.conftest import WEBHOOK_SETTINGS

# The client gives up on the bank after this (the bank holds timed-out calls longer).
BANK_TIMEOUT_S = 0.5
DEADLINE_S = 3.0


def payout_settings(database_url: str, backend: str, bank_url: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "bank_url": bank_url,
        "bank_timeout_s": BANK_TIMEOUT_S,
        "payout_deadline_s": DEADLINE_S,
        "payout_retry_base_s": 0.05,
        "payout_retry_cap_s": 0.3,
        "payout_poll_interval_ms": 20,
        "payout_sweep_interval_s": 0.2,
        "events_poll_interval_ms": 20,
        "consumer_backoff_ms": 10,
        **WEBHOOK_SETTINGS,
    }
    values.update(overrides)
    return settings_for(database_url, backend, **values)


@dataclass
class Payouts:
    """The API plus the payouts consumer, bank caller and sweeper, and the bank."""

    api: Server
    bank: Bank
    runtime: EventsRuntime


@pytest.fixture(scope="session")
async def payouts_server(database_url: str, backend: str, bank: Bank) -> AsyncIterator[Payouts]:
    if backend == "postgresql":
        ensure_redis()
    settings = payout_settings(database_url, backend, bank.url)
    api, stop = await start_server(settings, backend)
    # Payouts, and webhooks so their receivers hear every step.
    consumers = {c.name: c for c in (CONSUMER, WEBHOOKS)}
    runtime = await start_runtime(settings, consumers=consumers, relay=False)
    yield Payouts(api, bank, runtime)
    await runtime.close()
    await runtime.engine.dispose()
    await stop()


@pytest.fixture
async def world(payouts_server: Payouts) -> AsyncIterator[Payouts]:
    """One test's view: no faults left over; sagas ended and the audit passing after."""
    await payouts_server.bank.clear_faults()
    yield payouts_server
    await payouts_server.bank.clear_faults()
    await assert_audit_passes(payouts_server.api.engine)


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def funded_user(api: Server, amount: int = 100_000) -> User:
    user = await register(api.client)
    response = await api.client.post(
        f"/v1/wallets/{user.wallet_id}/topups",
        json={"amount": amount},
        headers={**user.auth, **key()},
    )
    assert response.status_code == 201, response.text
    return user


async def balance(api: Server, user: User) -> dict[str, int]:
    response = await api.client.get("/v1/wallets", headers=user.auth)
    assert response.status_code == 200, response.text
    [wallet] = [w for w in response.json() if w["id"] == user.wallet_id]
    return dict(wallet["balance"])


async def start_payout(
    api: Server, user: User, amount: int, destination: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/payouts",
        json={
            "amount": amount,
            "currency": CURRENCY,
            "destination": destination or {"vpa": "asha@okbank"},
        },
        headers={**user.auth, **key()},
    )
    assert response.status_code == 202, response.text
    body = dict(response.json())
    assert body["status"] == "processing"
    return body


async def wait_until_ended(
    api: Server, user: User, payout_id: str, *, timeout_s: float = 20
) -> dict[str, Any]:
    """The payout once its saga ended (completed or failed), timeline included."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await api.client.get(f"/v1/payouts/{payout_id}", headers=user.auth)
        assert response.status_code == 200, response.text
        body = dict(response.json())
        if body["status"] != "processing":
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"payout still processing: {body}")
        await asyncio.sleep(0.05)


def steps(payout: dict[str, Any]) -> list[str]:
    return [entry["step"] for entry in payout["timeline"]]


def calls(payout: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (attempt["operation"], attempt["outcome"])
        for entry in payout["timeline"]
        for attempt in entry["attempts"]
    ]


async def transit_balance(api: Server) -> dict[str, int]:
    """The transit account's counters: pending debits in flight, posted ones sent out."""
    async with api.engine.connect() as conn:
        [account] = await lookup_accounts(
            conn, [system_account_id(SystemAccount.PAYOUTS_TRANSIT, CURRENCY)]
        )
    return {"pending": account.credits_pending, "posted": account.credits_posted}


async def open_sagas(api: Server) -> int:
    table = models.payouts
    async with api.engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    select(func.count()).where(
                        table.c.step.not_in(("TRANSACTION_COMPLETED", "TRANSACTION_FAILED"))
                    )
                )
            ).scalar_one()
        )
