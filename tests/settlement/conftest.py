"""Settlement fixtures: the API on each backend, a real bank simulator (the payouts
tests' `bank`), and the `payouts` and `settlement` consumers with the payouts bank caller,
sweeper and settlement cycle running in this process, timings compressed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from payflow.events.runtime import EventsRuntime, start_runtime
from payflow.payouts.handlers import CONSUMER as PAYOUTS
from payflow.settlement.handlers import CONSUMER as SETTLEMENT
from tests.api.conftest import Server, start_server
from tests.bank import Bank
from tests.conftest import assert_audit_passes
from tests.payouts.conftest import payout_settings
from tests.services import ensure_redis

POLL_INTERVAL_S = 0.1


@dataclass
class World:
    api: Server
    bank: Bank
    runtime: EventsRuntime


@pytest.fixture(scope="session")
async def settlement_world(database_url: str, backend: str, bank: Bank) -> AsyncIterator[World]:
    if backend == "postgresql":
        ensure_redis()
    settings = payout_settings(
        database_url, backend, bank.url, settlement_poll_interval_s=POLL_INTERVAL_S
    )
    api, stop = await start_server(settings, backend)
    consumers = {PAYOUTS.name: PAYOUTS, SETTLEMENT.name: SETTLEMENT}
    runtime = await start_runtime(settings, consumers=consumers, relay=False)
    yield World(api, bank, runtime)
    await runtime.close()
    await runtime.engine.dispose()
    await stop()


@pytest.fixture
async def world(settlement_world: World) -> AsyncIterator[World]:
    """One test's view: no bank faults left over; the ledger audit passing after."""
    await settlement_world.bank.clear_faults()
    yield settlement_world
    await settlement_world.bank.clear_faults()
    await assert_audit_passes(settlement_world.api.engine)
