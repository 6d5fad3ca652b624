"""`kill -9` of relays and workers at random moments during thousands of events, on each
broker and on the embedded log: afterwards nothing is lost and nothing doubled."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.events.scenario import (
    chaos,
    check_exactly_once,
    pay,
    prepare,
    shutdown,
    start_processes,
    unique_namespace,
    wait_until_drained,
)
from tests.services import (
    NATS_URL,
    RABBITMQ_URL,
    REDIS_URL,
    ensure_nats,
    ensure_rabbitmq,
    ensure_redis,
)

pytestmark = pytest.mark.timeout(240)

# Enough traffic for several kills of every process kind while it flows (~450 events).
PAYMENTS = 240
KILLS_MIN = 5

BROKERS = {
    "rabbitmq": (RABBITMQ_URL, ensure_rabbitmq),
    "nats": (NATS_URL, ensure_nats),
    "redis": (REDIS_URL, ensure_redis),
}


async def _run(database_url: str, backend: str, tmp_path: Path, broker_url: str | None) -> None:
    scenario = await prepare(database_url, backend)
    try:
        start_processes(
            scenario,
            tmp_path,
            relays=2 if broker_url else 0,
            workers=2,
            broker_url=broker_url,
            broker_namespace=unique_namespace(),
        )
        stop = asyncio.Event()
        killer = asyncio.create_task(chaos(scenario, stop, seed=len(str(tmp_path))))
        await pay(scenario, PAYMENTS)
        # Keep killing while the backlog drains, until the run has seen enough kills.
        for _ in range(100):  # at most 20 s
            if sum(p.kills for p in scenario.processes) >= KILLS_MIN:
                break
            await asyncio.sleep(0.2)
        stop.set()
        await killer
        for process in scenario.processes:
            if not process.alive():
                process.start()
        await wait_until_drained(scenario)
        assert sum(p.kills for p in scenario.processes) >= KILLS_MIN
        await check_exactly_once(scenario)
    finally:
        await shutdown(scenario)


@pytest.mark.parametrize("broker", list(BROKERS))
async def test_kill_9_relays_and_workers_on_a_broker(
    broker: str, fresh_pg_url: str, tmp_path: Path
) -> None:
    url, ensure = BROKERS[broker]
    ensure()
    await _run(fresh_pg_url, "postgresql", tmp_path, url)


async def test_kill_9_workers_on_the_embedded_log(tmp_path: Path) -> None:
    """The embedded default: SQLite, no broker; workers read the outbox as a log."""
    from payflow.migrate import upgrade_async

    url = f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}"
    await upgrade_async(url)
    await _run(url, "sqlite", tmp_path, None)
