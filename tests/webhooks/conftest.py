"""Webhook fixtures: per backend, a real API server and, beside it, the event runtime with
the webhooks consumer and its dispatcher, all on the test database, with the retry
schedule compressed to fractions of a second and loopback allow-listed (receivers run on
127.0.0.1). The ledger audit runs after every test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from payflow.events.runtime import EventsRuntime, start_runtime
from payflow.webhooks import CONSUMER
from tests.api.conftest import Server, User, register, settings_for, start_server
from tests.conftest import assert_audit_passes
from tests.services import ensure_redis
from tests.webhooks.receiver import Receiver

WEBHOOK_SETTINGS: dict[str, Any] = {
    # Six attempts within about 1.2 s.
    "webhook_retry_schedule_s": [0.05, 0.1, 0.2, 0.4],
    "webhook_attempts_max": 6,
    # Long enough that an answer at once is never timed out on a loaded CI machine (the
    # receiver, the API and the dispatcher share one event loop), short enough that the
    # test of a slow receiver does not drag.
    "webhook_timeout_s": 2.0,
    # Two given-up deliveries in a row disable an endpoint: tests that mean to fail do it
    # on endpoints of their own. The time rule is far off, so that on a loaded machine it
    # never races the count rule (tests/webhooks/test_dispatcher.py covers it).
    "webhook_disable_after_s": 60.0,
    "webhook_disable_after_failed_deliveries": 2,
    "webhook_allowed_private": ["127.0.0.0/8", "::1/128"],
    "webhook_endpoints_per_owner_max": 3,
    "webhook_poll_interval_s": 0.02,
    "webhook_replay_max": 5,
    "events_poll_interval_ms": 20.0,
    "consumer_backoff_ms": 10.0,
}


@dataclass
class Hooks:
    """The API server and the runtime delivering its events to webhook endpoints."""

    server: Server
    runtime: EventsRuntime


@pytest.fixture(scope="session")
async def hooks_server(database_url: str, backend: str) -> AsyncIterator[Hooks]:
    if backend == "postgresql":
        ensure_redis()
    settings = settings_for(database_url, backend, **WEBHOOK_SETTINGS)
    server, stop = await start_server(settings, backend)
    runtime = await start_runtime(
        settings, consumers={CONSUMER.name: CONSUMER}, relay=False, engine=server.engine
    )
    yield Hooks(server, runtime)
    await runtime.close()
    await stop()


@pytest.fixture
async def hooks(hooks_server: Hooks) -> AsyncIterator[Server]:
    """The server for one test; the ledger audit must pass when the test is done."""
    yield hooks_server.server
    await assert_audit_passes(hooks_server.server.engine)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A started receiver; give it the endpoint's secret with `receiver.secrets`."""
    started = await Receiver().start()
    yield started
    await started.stop()


async def customer(server: Server) -> User:
    return await register(server.client, handle=f"w_{uuid.uuid4().hex[:12]}")
