"""Authorization expiry on both backends: a server whose authorizations last one second;
its background sweep releases the money and fails the payment, which then cannot be
captured or canceled; the service function's sweep in bounded batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from payflow.payments.events import PAYMENT_FAILED
from payflow.payments.sweep import fail_expired_authorizations
from payflow.timestamps import now_ns
from tests.api.conftest import Server, settings_for, start_server
from tests.conftest import assert_audit_passes
from tests.payments.support import (
    assert_problem,
    authorized,
    cancel,
    capture,
    customer,
    funds,
    get_payment,
    merchant,
    snapshot,
    wallet_funds,
)
from tests.payments.test_events import event_of
from tests.services import ensure_redis


@pytest.fixture(scope="module")
async def short(database_url: str, backend: str) -> AsyncIterator[Server]:
    """The API with one-second authorizations and a sweep every 0.1 s."""
    if backend == "postgresql":
        ensure_redis()
    settings = settings_for(
        database_url, backend, payment_authorization_expiry_s=1, sweep_interval_s=0.1
    )
    running, stop = await start_server(settings, backend)
    yield running
    await assert_audit_passes(running.engine)
    await stop()


async def until_failed(api: Server, auth: dict[str, str], payment_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 5
    while True:
        payment = await get_payment(api, auth, payment_id)
        if payment["status"] != "INITIATED":
            return payment
        assert time.monotonic() < deadline, "the authorization did not expire within 5 s"
        await asyncio.sleep(0.1)


class TestExpiry:
    async def test_an_expired_authorization_releases_the_money(
        self, short: Server, api: Server
    ) -> None:
        payer, shop = await customer(short), await merchant(short)
        expiring = await authorized(short, payer, shop, 3_000)
        # Made through the main server: a seven-day authorization, untouched.
        keeper = await authorized(api, payer, shop, 1_000)
        payment = await until_failed(short, payer.auth, expiring)
        assert (payment["status"], payment["failure_reason"]) == (
            "FAILED",
            "authorization_expired",
        )
        assert payment["failed_at"] is not None
        assert await wallet_funds(short, payer) == funds(10_000, pending=1_000)
        assert await wallet_funds(short, shop.user) == funds(0)
        event = await event_of(short, expiring, PAYMENT_FAILED)
        assert event.data["failure_reason"] == "authorization_expired"
        before = await snapshot(short, payer, shop, expiring, keeper)
        assert_problem(await capture(short, shop.auth, expiring), 409, "payment_already_failed")
        assert_problem(await cancel(short, shop.auth, expiring), 409, "payment_already_failed")
        assert await snapshot(short, payer, shop, expiring, keeper) == before
        assert (await get_payment(short, payer.auth, keeper))["status"] == "INITIATED"
        assert (await capture(api, shop.auth, keeper)).status_code == 200

    async def test_capture_after_expiry_before_the_sweep_is_refused(
        self, short: Server, api: Server
    ) -> None:
        payer, shop = await customer(short), await merchant(short)
        payment_id = await authorized(short, payer, shop, 2_000)
        await asyncio.sleep(1.05)
        response = await capture(short, shop.auth, payment_id)
        assert response.status_code == 409, response.text
        assert response.json()["code"] in ("authorization_expired", "payment_already_failed")
        payment = await until_failed(short, payer.auth, payment_id)
        assert payment["failure_reason"] == "authorization_expired"
        assert await wallet_funds(short, payer) == funds(10_000)

    async def test_the_sweep_works_in_bounded_batches(self, short: Server, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        ids = [await authorized(api, payer, shop, 100) for _ in range(3)]
        # Seven days from now the authorizations made through `api` have expired.
        later = now_ns() + 8 * 86_400 * 1_000_000_000
        async with api.engine.begin() as conn:
            assert await fail_expired_authorizations(conn, now=later, limit=2) == 2
        async with api.engine.begin() as conn:
            assert await fail_expired_authorizations(conn, now=later, limit=2) >= 1
        for payment_id in ids:
            payment = await get_payment(api, payer.auth, payment_id)
            assert payment["failure_reason"] == "authorization_expired"
        assert await wallet_funds(api, payer) == funds(10_000)
