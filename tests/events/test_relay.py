"""The relay over real brokers: every outbox row published, in order per aggregate,
partitions shared between relays, and consumers applying each event once."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.bench.events_brokers import remove_namespace
from payflow.config import Settings
from payflow.db import create_engine
from payflow.events import models
from payflow.events.brokers import Broker, create_broker
from payflow.events.consumers import run_consumer
from payflow.events.outbox import PARTITIONS
from payflow.events.registry import all_consumers
from payflow.events.relay import Relay
from tests.events.support import (
    echo_consumer,
    echo_counts,
    echo_key,
    make_events,
    unique_type,
    write,
)
from tests.services import (
    NATS_URL,
    RABBITMQ_URL,
    REDIS_URL,
    ensure_nats,
    ensure_rabbitmq,
    ensure_redis,
)

pytestmark = pytest.mark.timeout(120)

# Consumers this module's tests subscribed, for the namespace's removal afterwards.
TEST_CONSUMERS: list[str] = []

BROKERS = {
    "rabbitmq": (RABBITMQ_URL, ensure_rabbitmq),
    "nats": (NATS_URL, ensure_nats),
    "redis": (REDIS_URL, ensure_redis),
}


def broker_settings(database_url: str, kind: str, **overrides: object) -> Settings:
    url, ensure = BROKERS[kind]
    ensure()
    values: dict[str, object] = {
        "database_url": database_url,
        "broker_url": url,
        "broker_namespace": f"t{uuid.uuid4().hex[:12]}",
        "events_poll_interval_ms": 10,
        "events_lease_s": 1,
        "consumer_ack_wait_s": 2,
        "consumer_backoff_ms": 1,
        "relay_batch_size_max": 50,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(params=list(BROKERS))
async def setup(
    request: pytest.FixtureRequest, fresh_pg_url: str
) -> AsyncIterator[tuple[AsyncEngine, Settings]]:
    settings = broker_settings(fresh_pg_url, request.param)
    engine = create_engine(settings=settings)
    yield engine, settings
    await engine.dispose()
    # Relays declare every registered consumer's queue; tests' names start with "c".
    assert settings.broker_url is not None
    consumers = [*all_consumers(), "order_probe", *TEST_CONSUMERS]
    await remove_namespace(request.param, settings.broker_url, settings.broker_namespace, consumers)
    TEST_CONSUMERS.clear()


async def _wait_for(predicate: object, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _drain(broker: Broker, consumer: str, count: int) -> list[tuple[str, int]]:
    """(aggregate, n) of `count` deliveries, in the order the broker handed them out."""
    received: list[tuple[str, int]] = []
    while len(received) < count:
        deliveries = await broker.receive(consumer, count_max=100, timeout_s=5)
        assert deliveries, f"only {len(received)} of {count} arrived"
        received += [(d.event.aggregate_id, d.event.data["n"]) for d in deliveries if d.event]
        await broker.ack(consumer, deliveries)
    return received


async def test_two_relays_publish_everything_once_in_order_per_aggregate(
    setup: tuple[AsyncEngine, Settings],
) -> None:
    engine, settings = setup
    event_type = unique_type()
    probe = create_broker(settings, engine)
    await probe.start()
    await probe.subscribe("order_probe", frozenset({event_type}))
    # Each aggregate's events are numbered in writing order.
    events = make_events(event_type, 300, aggregates=12)
    for i in range(0, 300, 25):
        await write(engine, events[i : i + 25])
    relays = [Relay(engine, create_broker(settings, engine), settings) for _ in range(2)]
    for relay in relays:
        await relay.broker.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)) for relay in relays]

    async def all_published() -> bool:
        async with engine.connect() as conn:
            left = await conn.scalar(
                select(func.count()).where(models.outbox.c.published_at.is_(None))
            )
        return left == 0

    await _wait_for(all_published)
    received = await _drain(probe, "order_probe", len(events))
    by_aggregate: dict[str, list[int]] = defaultdict(list)
    for aggregate, n in received:
        by_aggregate[aggregate].append(n)
    for numbers in by_aggregate.values():
        # Duplicates are allowed (a relay may publish twice), disorder is not.
        deduplicated = list(dict.fromkeys(numbers))
        assert deduplicated == sorted(deduplicated)
    assert {n for _, n in received} == set(range(300))

    # With both alive, they end up holding half the partitions each.
    for relay in relays:
        relay.renew_at = 0
    for _ in range(3):
        for relay in relays:
            await relay.rebalance()
    first, second = (relay.partitions for relay in relays)
    assert not first & second
    assert len(first) == len(second) == PARTITIONS // 2
    stop.set()
    await asyncio.gather(*tasks)
    for relay in relays:
        await relay.close()
        await relay.broker.close()
    await probe.close()


async def test_a_dead_relays_partitions_are_taken_over(setup: tuple[AsyncEngine, Settings]) -> None:
    engine, settings = setup
    dead = Relay(engine, create_broker(settings, engine), settings)
    await dead.rebalance()
    assert len(dead.partitions) == PARTITIONS
    # It "dies": no close, no release. A new relay gets nothing until the leases expire.
    survivor = Relay(engine, create_broker(settings, engine), settings)
    await survivor.rebalance()
    assert survivor.partitions == set()
    await asyncio.sleep(settings.events_lease_s + 0.2)
    await survivor.rebalance()
    assert len(survivor.partitions) == PARTITIONS


async def test_consumers_behind_a_broker_apply_each_event_once(
    setup: tuple[AsyncEngine, Settings],
) -> None:
    engine, settings = setup
    event_type = unique_type()
    name = f"c{uuid.uuid4().hex[:10]}"
    TEST_CONSUMERS.append(name)
    consumer = echo_consumer(name, event_type)
    stop = asyncio.Event()
    workers = [create_broker(settings, engine) for _ in range(2)]
    for broker in workers:
        await broker.start()
        await broker.subscribe(name, consumer.event_types)
    relay = Relay(engine, create_broker(settings, engine), settings)
    await relay.broker.start()
    tasks = [
        asyncio.create_task(run_consumer(engine, broker, consumer, settings, stop))
        for broker in workers
    ]
    tasks.append(asyncio.create_task(relay.run(stop)))
    events = make_events(event_type, 200, aggregates=7)
    for i in range(0, 200, 20):
        await write(engine, events[i : i + 20])
    # Duplicates straight onto the broker, reordered: still one effect each.
    await relay.broker.publish(list(reversed(events[:30])))

    async def all_applied() -> bool:
        return len(await echo_counts(engine, name)) == len(events)

    await _wait_for(all_applied)
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    assert await echo_counts(engine, name) == {echo_key(name, e): 1 for e in events}
    for broker in [*workers, relay.broker]:
        await broker.close()
