"""The broker adapters against real RabbitMQ, NATS JetStream and Redis.

Every test has a namespace of its own (exchange, queues, stream, stream key), removed
afterwards. Outage tests kill and restart brokers of their own (tests/services.py), never
the machine's shared ones. NATS and Redis run with a 1 s ack wait, so that what a worker
does not acknowledge comes back quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence

import aio_pika
import nats
import pytest
from nats.js.api import StorageType
from redis.asyncio import Redis

from payflow.events.brokers import Broker, Delivery
from payflow.events.brokers.nats import NatsBroker
from payflow.events.brokers.rabbitmq import RabbitMQBroker
from payflow.events.brokers.redis_streams import RedisStreamsBroker
from payflow.events.domain import Event
from payflow.timestamps import now_ns
from tests.services import (
    NATS_URL,
    RABBITMQ_URL,
    REDIS_URL,
    PrivateBroker,
    PrivateNats,
    PrivateRabbitMQ,
    PrivateRedis,
    ensure_nats,
    ensure_rabbitmq,
    ensure_redis,
)

pytestmark = pytest.mark.timeout(60)

KINDS = ("rabbitmq", "nats", "redis")
# The brokers with an ack wait: what a live worker holds too long goes to another.
KINDS_WITH_ACK_WAIT = ("nats", "redis")
ACK_WAIT_S = 1.0
POSTED = "transfer.posted"
FAILED = "transfer.failed"
LEDGER = "ledger"
MAILER = "mailer"
TYPES = frozenset({POSTED, FAILED})


def make_event(n: int, event_type: str = POSTED) -> Event:
    return Event(
        id=uuid.uuid4(),
        type=event_type,
        aggregate_type="transfer",
        aggregate_id=f"tr_{n}",
        occurred_at=now_ns(),
        data={"n": n, "amount": 100 + n, "currency": "EUR", "note": "café ☕"},
    )


def make_broker(kind: str, url: str, namespace: str) -> Broker:
    if kind == "rabbitmq":
        return RabbitMQBroker(url, namespace=namespace)
    if kind == "nats":
        return NatsBroker(url, namespace=namespace, stream_length_max=10_000, ack_wait_s=ACK_WAIT_S)
    return RedisStreamsBroker(
        url, namespace=namespace, stream_length_max=10_000, reclaim_idle_s=ACK_WAIT_S
    )


async def remove_namespace(kind: str, url: str, namespace: str) -> None:
    """Delete what the adapters declared for `namespace`."""
    if kind == "rabbitmq":
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel()
            for consumer in (LEDGER, MAILER):
                await channel.queue_delete(f"{namespace}.{consumer}")
            await channel.exchange_delete(f"{namespace}.events")
    elif kind == "nats":
        nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(f"{namespace.upper()}_EVENTS")
        await nc.close()
    else:
        client = Redis.from_url(url)
        await client.delete(f"{namespace}:events")
        await client.aclose()


async def publish_raw(kind: str, url: str, namespace: str, body: bytes) -> None:
    """Publish `body` as the relay would an event, without it being one."""
    if kind == "rabbitmq":
        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(f"{namespace}.events")
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await exchange.publish(message, routing_key=POSTED, mandatory=False)
    elif kind == "nats":
        nc = await nats.connect(url, connect_timeout=5, allow_reconnect=False)
        await nc.jetstream().publish(f"{namespace}.events.{POSTED}", body)
        await nc.close()
    else:
        client = Redis.from_url(url)
        await client.xadd(f"{namespace}:events", {"body": body})
        await client.aclose()


def new_namespace() -> str:
    return f"tbrokers{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def services() -> dict[str, str]:
    ensure_rabbitmq()
    ensure_nats()
    ensure_redis()
    return {"rabbitmq": RABBITMQ_URL, "nats": NATS_URL, "redis": REDIS_URL}


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Brokers:
    """Started broker objects on one fresh namespace; each object is a separate worker."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.namespace = new_namespace()
        self.made: list[Broker] = []

    async def new(self) -> Broker:
        broker = make_broker(self.kind, self.url, self.namespace)
        self.made.append(broker)
        await broker.start()
        return broker


@pytest.fixture
async def brokers(kind: str, services: dict[str, str]) -> AsyncIterator[Brokers]:
    made = Brokers(kind, services[kind])
    yield made
    for broker in made.made:
        await broker.close()
    await remove_namespace(kind, made.url, made.namespace)


async def collect(
    broker: Broker,
    consumer: str,
    count: int,
    *,
    ack: bool = True,
    count_max: int = 20,
    timeout_s: float = 10,
    into: list[Delivery] | None = None,
) -> list[Delivery]:
    """Receive until `count` deliveries arrived (or fail after `timeout_s`), into `into`."""
    deliveries: list[Delivery] = [] if into is None else into
    deadline = time.monotonic() + timeout_s
    while len(deliveries) < count:
        assert time.monotonic() < deadline, f"got {len(deliveries)} of {count} deliveries"
        batch = await broker.receive(consumer, count_max=count_max, timeout_s=0.5)
        assert len(batch) <= count_max
        if ack:
            await broker.ack(consumer, batch)
        deliveries += batch
    return deliveries


async def receive_nothing(broker: Broker, consumer: str, wait_s: float) -> None:
    """Assert that nothing arrives within `wait_s`."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        batch = await broker.receive(consumer, count_max=50, timeout_s=0.3)
        assert batch == [], [d.event for d in batch]


def ids(deliveries: Sequence[Delivery]) -> list[uuid.UUID]:
    return [d.event.id for d in deliveries if d.event is not None]


async def test_a_batch_arrives_in_order_and_intact(brokers: Brokers) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, TYPES)
    events = [make_event(n, POSTED if n % 3 else FAILED) for n in range(60)]
    await broker.publish(events[:40])
    await broker.publish(events[40:])
    await broker.publish([])

    deliveries = await collect(broker, LEDGER, len(events))

    assert ids(deliveries) == [e.id for e in events]
    assert [d.event for d in deliveries] == events
    assert [d.body for d in deliveries] == [e.encode() for e in events]
    assert all(d.error is None for d in deliveries)


async def test_a_new_group_hears_what_is_published_after_it_subscribed(
    kind: str, brokers: Brokers
) -> None:
    broker = await brokers.new()
    before = [make_event(n) for n in range(5)]
    await broker.publish(before)
    await broker.subscribe(LEDGER, TYPES)
    after = [make_event(n) for n in range(5, 10)]
    await broker.publish(after)

    if kind == "rabbitmq":
        # A queue holds only what was published once it existed.
        deliveries = await collect(broker, LEDGER, len(after))
        assert ids(deliveries) == [e.id for e in after]
    else:
        # A stream's new group starts at the stream's beginning.
        deliveries = await collect(broker, LEDGER, len(before + after))
        assert ids(deliveries) == [e.id for e in before + after]
    await receive_nothing(broker, LEDGER, 0.5)


async def test_subscribe_declares_without_taking_deliveries(brokers: Brokers) -> None:
    # The relay may declare every consumer's group before it publishes.
    relay = await brokers.new()
    await relay.subscribe(LEDGER, TYPES)
    events = [make_event(n) for n in range(10)]
    await relay.publish(events)

    worker = await brokers.new()
    await worker.subscribe(LEDGER, TYPES)
    deliveries = await collect(worker, LEDGER, len(events))

    assert ids(deliveries) == [e.id for e in events]


async def test_subscribe_is_idempotent(brokers: Brokers) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, frozenset({POSTED}))
    await broker.subscribe(LEDGER, frozenset({POSTED}))
    await broker.subscribe(LEDGER, TYPES)
    events = [make_event(0, POSTED), make_event(1, FAILED)]
    await broker.publish(events)

    deliveries = await collect(broker, LEDGER, 2)

    assert ids(deliveries) == [e.id for e in events]
    await receive_nothing(broker, LEDGER, 0.5)


async def test_unacknowledged_deliveries_go_to_the_next_worker(
    brokers: Brokers,
) -> None:
    first = await brokers.new()
    await first.subscribe(LEDGER, TYPES)
    events = [make_event(n) for n in range(10)]
    await first.publish(events)
    received = await collect(first, LEDGER, 10, ack=False, count_max=10)
    await first.ack(LEDGER, received[:4])
    await first.close()

    second = await brokers.new()
    await second.subscribe(LEDGER, TYPES)
    redelivered = await collect(second, LEDGER, 6)

    assert sorted(ids(redelivered)) == sorted(e.id for e in events[4:])
    # Acknowledged is done: nothing comes back, even after the ack wait.
    await receive_nothing(second, LEDGER, ACK_WAIT_S * 2)


@pytest.mark.parametrize("kind", KINDS_WITH_ACK_WAIT)
async def test_a_stuck_worker_loses_its_deliveries_after_the_ack_wait(
    brokers: Brokers,
) -> None:
    stuck = await brokers.new()
    await stuck.subscribe(LEDGER, TYPES)
    events = [make_event(n) for n in range(5)]
    await stuck.publish(events)
    await collect(stuck, LEDGER, 5, ack=False)

    other = await brokers.new()
    await other.subscribe(LEDGER, TYPES)
    started = time.monotonic()
    redelivered = await collect(other, LEDGER, 5)

    assert sorted(ids(redelivered)) == sorted(e.id for e in events)
    assert time.monotonic() - started >= ACK_WAIT_S * 0.5


async def test_competing_workers_share_a_group_without_loss_or_duplicates(
    brokers: Brokers,
) -> None:
    workers = [await brokers.new(), await brokers.new()]
    for worker in workers:
        await worker.subscribe(LEDGER, TYPES)
    events = [make_event(n) for n in range(60)]
    await workers[0].publish(events)

    got: list[list[uuid.UUID]] = [[], []]
    deadline = time.monotonic() + 20
    while sum(map(len, got)) < len(events):
        assert time.monotonic() < deadline, got
        for worker, mine in zip(workers, got, strict=True):
            batch = await worker.receive(LEDGER, count_max=5, timeout_s=0.1)
            await worker.ack(LEDGER, batch)
            mine += ids(batch)

    everything = got[0] + got[1]
    assert len(everything) == len(set(everything)) == len(events)
    assert set(everything) == {e.id for e in events}
    assert got[0] and got[1], "both workers took part"
    for worker in workers:
        await receive_nothing(worker, LEDGER, 0.3)


async def test_each_group_gets_every_event(brokers: Brokers) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, TYPES)
    await broker.subscribe(MAILER, TYPES)
    events = [make_event(n) for n in range(20)]
    await broker.publish(events)

    for consumer in (LEDGER, MAILER):
        deliveries = await collect(broker, consumer, len(events))
        assert ids(deliveries) == [e.id for e in events]


async def test_a_republished_event(kind: str, brokers: Brokers) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, TYPES)
    event, other = make_event(1), make_event(2)
    await broker.publish([event])
    await broker.publish([event, other])

    if kind == "nats":
        # JetStream drops a copy with the same Nats-Msg-Id within the duplicate window.
        deliveries = await collect(broker, LEDGER, 2)
        assert ids(deliveries) == [event.id, other.id]
    else:
        # Delivered twice: the consumer runner de-duplicates on the event id.
        deliveries = await collect(broker, LEDGER, 3)
        assert ids(deliveries) == [event.id, event.id, other.id]
    await receive_nothing(broker, LEDGER, 0.5)


async def test_a_malformed_body_arrives_as_a_delivery_without_event(
    kind: str, brokers: Brokers
) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, TYPES)
    good = make_event(1)
    bodies = [b"\xff not json", b'{"id": "evt_nothex", "data": {}}', b"[]"]
    for body in bodies:
        await publish_raw(kind, brokers.url, brokers.namespace, body)
    await broker.publish([good])

    deliveries = await collect(broker, LEDGER, 4)

    assert [d.body for d in deliveries[:3]] == bodies
    assert all(d.event is None and d.error for d in deliveries[:3])
    assert deliveries[3].event == good


async def test_event_types_a_group_does_not_subscribe_to(kind: str, brokers: Brokers) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, frozenset({POSTED}))
    posted, failed = make_event(1, POSTED), make_event(2, FAILED)
    await broker.publish([posted, failed])

    if kind == "rabbitmq":
        # The queue is bound to the subscribed types only.
        deliveries = await collect(broker, LEDGER, 1)
        assert ids(deliveries) == [posted.id]
    else:
        # One stream for all: the consumer runner acknowledges what it does not handle.
        deliveries = await collect(broker, LEDGER, 2)
        assert ids(deliveries) == [posted.id, failed.id]
    await receive_nothing(broker, LEDGER, 0.5)


async def test_receive_is_bounded_in_count_and_time(brokers: Brokers) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, TYPES)

    started = time.monotonic()
    assert await broker.receive(LEDGER, count_max=3, timeout_s=0.3) == []
    assert time.monotonic() - started < 2

    events = [make_event(n) for n in range(7)]
    await broker.publish(events)
    deliveries = await collect(broker, LEDGER, 7, count_max=3)
    assert ids(deliveries) == [e.id for e in events]


async def test_receive_without_subscribe_raises(brokers: Brokers) -> None:
    broker = await brokers.new()
    with pytest.raises(ConnectionError):
        await broker.receive(LEDGER, count_max=1, timeout_s=0.1)


async def test_close_is_idempotent(brokers: Brokers) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, TYPES)
    await broker.close()
    await broker.close()


@pytest.mark.parametrize("kind", ["nats"])
async def test_nats_stream_is_bounded_and_de_duplicates(brokers: Brokers) -> None:
    broker = await brokers.new()
    nc = await nats.connect(brokers.url, connect_timeout=5, allow_reconnect=False)
    info = await nc.jetstream().stream_info(f"{brokers.namespace.upper()}_EVENTS")
    await nc.close()

    assert info.config.subjects == [f"{brokers.namespace}.events.>"]
    assert info.config.storage == StorageType.FILE
    assert info.config.max_msgs == 10_000
    assert info.config.max_age == 7 * 86_400
    assert info.config.duplicate_window == 120
    await broker.close()


# Redis Streams: a member's own pending entries, and entries trimmed while pending.


@pytest.mark.parametrize("kind", ["redis"])
async def test_redis_member_gets_back_its_pending_entries_after_subscribing_again(
    brokers: Brokers,
) -> None:
    broker = await brokers.new()
    await broker.subscribe(LEDGER, TYPES)
    events = [make_event(n) for n in range(5)]
    await broker.publish(events)
    await collect(broker, LEDGER, 5, ack=False)

    # What the consumer runner does after an error: subscribe again, receive again.
    await broker.subscribe(LEDGER, TYPES)
    again = await collect(broker, LEDGER, 5, count_max=2)

    assert ids(again) == [e.id for e in events]
    await receive_nothing(broker, LEDGER, ACK_WAIT_S * 1.5)


@pytest.mark.parametrize("kind", ["redis"])
async def test_redis_entries_trimmed_while_pending_are_reported_not_delivered(
    brokers: Brokers, caplog: pytest.LogCaptureFixture
) -> None:
    first = await brokers.new()
    await first.subscribe(LEDGER, TYPES)
    events = [make_event(n) for n in range(4)]
    await first.publish(events)
    held = await collect(first, LEDGER, 4, ack=False)
    client = Redis.from_url(brokers.url)
    key = f"{brokers.namespace}:events"
    await client.xdel(key, held[0].handle, held[1].handle)

    # Its own pending entries, read again after subscribing again.
    await first.subscribe(LEDGER, TYPES)
    mine = await first.receive(LEDGER, count_max=10, timeout_s=0.1)
    assert ids(mine) == [events[2].id, events[3].id]
    assert "2 events were trimmed" in caplog.text

    # Another member's, reclaimed after the idle time.
    await client.xdel(key, held[2].handle)
    caplog.clear()
    second = await brokers.new()
    await second.subscribe(LEDGER, TYPES)
    reclaimed = await collect(second, LEDGER, 1, timeout_s=5)
    assert ids(reclaimed) == [events[3].id]
    assert "1 events were trimmed" in caplog.text
    pending = await client.xpending(key, LEDGER)
    await client.aclose()
    assert pending["pending"] == 0


@pytest.mark.parametrize("kind", ["redis"])
async def test_redis_members_without_pending_entries_leave_on_close(brokers: Brokers) -> None:
    done, holding = await brokers.new(), await brokers.new()
    for broker in (done, holding):
        await broker.subscribe(LEDGER, TYPES)
    await done.publish([make_event(1), make_event(2)])
    await done.ack(LEDGER, await done.receive(LEDGER, count_max=1, timeout_s=1))
    await holding.receive(LEDGER, count_max=1, timeout_s=1)
    await done.close()
    await holding.close()

    client = Redis.from_url(brokers.url)
    members = await client.xinfo_consumers(f"{brokers.namespace}:events", LEDGER)
    await client.aclose()
    # The member holding an entry stays, so that the entry can be reclaimed from it.
    assert [m["pending"] for m in members] == [1]


# Outages, on brokers of the tests' own.


@pytest.fixture
def private_broker(kind: str) -> Iterator[PrivateBroker]:
    classes: dict[str, type[PrivateBroker]] = {
        "rabbitmq": PrivateRabbitMQ,
        "nats": PrivateNats,
        "redis": PrivateRedis,
    }
    broker = classes[kind](tempfile.mkdtemp(prefix=f"payflow-{kind}-"))
    try:
        broker.start()
        yield broker
    finally:
        broker.destroy()


async def eventually(action: Callable[[], Awaitable[None]], timeout_s: float) -> None:
    """Retry `action` as the relay and the consumer runner do, until it succeeds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await action()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.timeout(120)
async def test_a_broker_outage_raises_then_heals(kind: str, private_broker: PrivateBroker) -> None:
    broker = make_broker(kind, private_broker.url, new_namespace())
    await broker.start()
    try:
        await broker.subscribe(LEDGER, TYPES)
        before = [make_event(n) for n in range(5)]
        await broker.publish(before)
        spare = make_broker(kind, private_broker.url, new_namespace())
        await spare.start()
        await spare.subscribe(LEDGER, TYPES)

        private_broker.crash()
        try:
            started = time.monotonic()
            with pytest.raises(Exception):  # noqa: B017 - each client has its own errors
                await broker.publish([make_event(99)])
            assert time.monotonic() - started < 15
            await spare.close()  # even while the broker is away
        finally:
            private_broker.start()

        after = [make_event(n) for n in range(5, 10)]
        await eventually(lambda: broker.publish(after), timeout_s=30)
        received: list[Delivery] = []

        async def receive_all() -> None:
            # The consumer runner subscribes again after any error.
            await broker.subscribe(LEDGER, TYPES)
            await collect(broker, LEDGER, 10, timeout_s=5, into=received)

        await eventually(receive_all, timeout_s=30)
        # The broker kept what it had confirmed before it was killed.
        assert set(ids(received)) == {e.id for e in before + after}
    finally:
        await broker.close()
