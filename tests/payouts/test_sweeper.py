"""The sweeper: with no consumer hearing the saga's events, sagas past the deadline are
moved on by the sweeper itself; a credit past its `not_after` is asked about at once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import select, update

from payflow.banksim.client import BankClient
from payflow.migrate import upgrade_async
from payflow.payouts import models
from payflow.payouts.runner import call_due_once, sweep_once
from payflow.timestamps import now_ns
from tests.api.conftest import Server, start_server
from tests.conftest import assert_audit_passes
from tests.events.conftest import pg_template
from tests.payouts.conftest import Bank, balance, funded_user, payout_settings, start_payout
from tests.services import PG_ADMIN_URL, PG_HOST, PG_PORT

__all__ = ["pg_template"]

NS = 1_000_000_000


@pytest.fixture
async def lone_api(
    backend: str, pg_template: str, tmp_path: Path, bank: Bank
) -> AsyncIterator[Server]:
    """The API on a database of its own, with no worker running anywhere."""
    name = f"payflow_t_{uuid.uuid4().hex[:12]}"
    if backend == "postgresql":
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
        url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'lone.db'}"
        await upgrade_async(url)
    settings = payout_settings(url, backend, bank.url)
    api, stop = await start_server(settings, backend)
    yield api
    await assert_audit_passes(api.engine)
    await stop()
    if backend == "postgresql":
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _step(api: Server, payout_id: str) -> Any:
    table = models.payouts
    async with api.engine.connect() as conn:
        return (
            await conn.execute(
                select(table).where(table.c.id == uuid.UUID(payout_id.removeprefix("po_")))
            )
        ).one()


async def test_the_sweeper_runs_a_saga_nobody_hears(lone_api: Server, bank: Bank) -> None:
    api, settings = lone_api, lone_api.settings
    user = await funded_user(api, 10_000)
    payout = await start_payout(api, user, 2_000)
    # Before the deadline the sweeper leaves it to the consumer.
    assert await sweep_once(api.engine, settings) == 0
    assert (await _step(api, payout["id"])).step == "TRANSACTION_INITIATED"

    later = now_ns() + int(settings.payout_deadline_s * NS) + NS
    async with BankClient(bank.url, timeout_s=settings.bank_timeout_s) as client:
        for _ in range(10):
            row = await _step(api, payout["id"])
            if row.step == "TRANSACTION_COMPLETED":
                break
            if row.step == "CREDIT_DUE":
                await call_due_once(api.engine, settings, client)
            else:
                moved = await sweep_once(api.engine, settings, now=later + 10 * NS)
                assert moved >= 1, row.step
    row = await _step(api, payout["id"])
    assert row.step == "TRANSACTION_COMPLETED"
    assert (await balance(api, user))["available"] == 8_000


async def test_past_not_after_the_bank_is_asked_at_once(lone_api: Server, bank: Bank) -> None:
    api, settings = lone_api, lone_api.settings
    # The bank is shared by the whole run: a fault another test scripted and never used
    # up would answer this test's credit (unavailable: retried later, never refunded).
    await bank.clear_faults()
    user = await funded_user(api, 10_000)
    payout = await start_payout(api, user, 1_000)
    later = now_ns() + int(settings.payout_deadline_s * NS) + NS
    await sweep_once(api.engine, settings, now=later)  # debit
    await sweep_once(api.engine, settings, now=later)  # credit due
    row = await _step(api, payout["id"])
    assert row.step == "CREDIT_DUE"
    # As if the deadline had passed while an unavailable bank pushed the next credit off.
    table = models.payouts
    async with api.engine.begin() as conn:
        await conn.execute(
            update(table)
            .where(table.c.id == row.id)
            .values(next_attempt_at=later + 3600 * NS, not_after=now_ns() // NS - 10)
        )
    much_later = later + 5 * NS
    assert await sweep_once(api.engine, settings, now=much_later) == 1
    row = await _step(api, payout["id"])
    assert row.inquire is True
    assert row.next_attempt_at == much_later
    # The bank never received it, and it is past not_after: the credit sent now is
    # refused as expired, a final answer, so the saga refunds.
    async with BankClient(bank.url, timeout_s=settings.bank_timeout_s) as client:
        inquiry = await call_due_once(api.engine, settings, client, now=much_later)
        assert inquiry == 1  # not found: the credit is sent again...
        credit = await call_due_once(api.engine, settings, client, now=much_later + 3600 * NS)
        assert credit == 1  # ...and refused as expired
    for _ in range(4):
        await sweep_once(api.engine, settings, now=much_later + 3600 * NS)
    row = await _step(api, payout["id"])
    assert row.step == "TRANSACTION_FAILED"
    assert row.failure_reason == "expired"
    assert row.refunded_at is not None and row.credited_at is None
    assert (await balance(api, user))["available"] == 10_000
    async with httpx.AsyncClient(base_url=bank.url) as plain:
        credit = (await plain.get(f"/v1/credits/{payout['id']}")).json()
    assert credit["status"] == "rejected"
