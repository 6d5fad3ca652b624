"""A broker stopped and started again during traffic: payments keep succeeding, the
outbox holds what could not be published, and once the broker is back it drains and the
consumers resume. Each test runs a broker of its own (tests/services.py), so the shared
ones are never touched."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from payflow.events.cleanup import backlog
from tests.events.scenario import (
    check_exactly_once,
    pay,
    prepare,
    shutdown,
    start_processes,
    unique_namespace,
    wait_until_drained,
)
from tests.services import PrivateBroker, PrivateNats, PrivateRabbitMQ, PrivateRedis

pytestmark = pytest.mark.timeout(300)

PRIVATE = {"rabbitmq": PrivateRabbitMQ, "nats": PrivateNats, "redis": PrivateRedis}


async def _unpublished(scenario_engine: object) -> int:
    async with scenario_engine.connect() as conn:  # type: ignore[attr-defined]
        return int((await backlog(conn))["unpublished"])


@pytest.mark.parametrize("kind", list(PRIVATE))
async def test_payments_go_on_while_the_broker_is_down(
    kind: str, fresh_pg_url: str, tmp_path: Path
) -> None:
    # Not under tmp_path: RabbitMQ runs as its own user, who cannot enter pytest's
    # private temporary directories.
    broker: PrivateBroker = PRIVATE[kind](tempfile.mkdtemp(prefix=f"payflow-{kind}-"))
    broker.start()
    scenario = await prepare(fresh_pg_url, "postgresql", customers=6)
    try:
        start_processes(
            scenario,
            tmp_path,
            relays=1,
            workers=1,
            broker_url=broker.url,
            broker_namespace=unique_namespace(),
        )
        await pay(scenario, 60)
        await wait_until_drained(scenario)

        broker.crash()
        # The API neither knows nor cares: every payment still succeeds at once...
        await pay(scenario, 120)
        # ...and what the relay could not publish waits in the outbox.
        assert await _unpublished(scenario.server.engine) > 0

        broker.start()
        await pay(scenario, 60)
        await wait_until_drained(scenario, timeout_s=120)
        assert await _unpublished(scenario.server.engine) == 0
        await check_exactly_once(scenario)
    finally:
        await shutdown(scenario)
        broker.destroy()
        await asyncio.sleep(0)
