"""One delivery of `payflow bench events`: throughput, then latency, on a fresh database.

The relay (when there is a broker), the consumer runner and the producer run as asyncio
tasks on the bench's one event loop, as `payflow up` runs the relay and a worker in one
process. The relay and the consumer each get their own broker object (connection), as
`payflow relay` and `payflow worker` have. The producer does not send the in-process
wake-up the API sends after a commit (`events.signals.outbox_committed`): the relay and
the embedded log find new events by polling, as they do when the API is another process.

The bench consumer's effect is nothing beyond the processed record the runner writes in
its transaction: the figures are the backbone's own; real consumers add their work.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.bench.events_brokers import BrokerUnreachable
from payflow.bench.events_cpu import CpuMark, broker_pid, cpu_mark, cpu_shares
from payflow.bench.events_outbox import bench_wallets, transfer_event
from payflow.config import Settings
from payflow.db import create_engine, read
from payflow.events import models
from payflow.events.brokers import Broker, create_broker
from payflow.events.consumers import Consumer, run_consumer
from payflow.events.domain import Event
from payflow.events.outbox import emit
from payflow.events.relay import Relay
from payflow.ids import uuid7
from payflow.timestamps import now_ns

BENCH_EVENT_TYPE: Final = "bench.emitted"
CONSUMER_NAME: Final = "bench"
# Throughput: the backlog is written up front in transactions of this many events.
WRITE_TRANSACTION_EVENTS: Final = 500
# Latency: the producer commits what is due every tick (10 events at 500/s).
PRODUCER_TICK_S: Final = 0.02
# How often the bench counts processed records: one indexed count, cheap.
COUNT_POLL_S: Final = 0.05
# No new processed record for this long means the pipeline is stuck: the run fails.
STALL_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 10.0


async def _no_effect(conn: AsyncConnection, event: Event) -> None:
    """Nothing: the runner's processed record is the whole effect."""


BENCH_CONSUMER: Final = Consumer(
    name=CONSUMER_NAME, event_types=frozenset({BENCH_EVENT_TYPE}), handle=_no_effect
)


def bench_settings(
    *, database_url: str, broker_url: str | None, namespace: str, poll_ms: float
) -> Settings:
    """The settings of one delivery; the rest (batch sizes, leases) are PayFlow's defaults
    or the environment's PAYFLOW_* values."""
    return Settings(
        database_url=database_url,
        broker_url=broker_url,
        broker_namespace=namespace,
        events_poll_interval_ms=poll_ms,
    )


class EventMaker:
    """Bench events whose data is a P2P transfer's, as `transfer.completed` carries it."""

    def __init__(self) -> None:
        self._debit, self._credit = bench_wallets([uuid7(), uuid7()]).values()

    def make(self, count: int) -> list[Event]:
        at = now_ns()
        events = []
        for _ in range(count):
            data = transfer_event(uuid7(), self._debit, self._credit, amount=1, at=at).data
            events.append(
                Event(
                    id=uuid7(),
                    type=BENCH_EVENT_TYPE,
                    aggregate_type="transfer",
                    aggregate_id=data["id"],
                    occurred_at=at,
                    data=data,
                )
            )
        return events


@contextlib.asynccontextmanager
async def _brokers(
    settings: Settings, engine: AsyncEngine, kind: str
) -> AsyncIterator[tuple[Broker, Broker | None]]:
    """The consumer's broker, subscribed, and the relay's (None for the embedded log)."""
    consumer_broker = create_broker(settings, engine)
    relay_broker = None if kind == "local" else create_broker(settings, engine)
    started: list[Broker] = []
    try:
        for broker in (consumer_broker, relay_broker):
            if broker is None:
                continue
            try:
                await broker.start()
            except Exception as error:
                raise BrokerUnreachable(kind, settings.broker_url or "", error) from error
            started.append(broker)
        # RabbitMQ keeps only what is published after a queue exists: declare it before
        # the relay runs (the consumer runner's own `subscribe` then finds it).
        await consumer_broker.subscribe(CONSUMER_NAME, BENCH_CONSUMER.event_types)
        yield consumer_broker, relay_broker
    finally:
        for broker in started:
            with contextlib.suppress(Exception):
                await broker.close()


async def _processed_count(engine: AsyncEngine) -> int:
    table = models.processed
    async with read(engine) as conn:
        query = select(func.count()).select_from(table).where(table.c.consumer == CONSUMER_NAME)
        return int((await conn.execute(query)).scalar_one())


async def _wait_processed(
    engine: AsyncEngine, target: int, tasks: Sequence[asyncio.Task[None]]
) -> None:
    """Return once `target` events are processed; raise if the pipeline stalls or dies."""
    last, changed_at = -1, time.monotonic()
    while True:
        count = await _processed_count(engine)
        if count >= target:
            return
        for task in tasks:
            if task.done():
                task.result()  # raises what killed it
                raise RuntimeError("a pipeline task stopped early")
        if count != last:
            last, changed_at = count, time.monotonic()
        elif time.monotonic() - changed_at > STALL_TIMEOUT_S:
            raise RuntimeError(
                f"{count} of {target} events processed, none for {STALL_TIMEOUT_S:.0f} s"
            )
        await asyncio.sleep(COUNT_POLL_S)


async def _write_backlog(engine: AsyncEngine, maker: EventMaker, count: int) -> None:
    for start in range(0, count, WRITE_TRANSACTION_EVENTS):
        events = maker.make(min(WRITE_TRANSACTION_EVENTS, count - start))
        async with engine.begin() as conn:
            await emit(conn, events)


async def _produce(
    engine: AsyncEngine, maker: EventMaker, *, rate_per_s: float, seconds: float
) -> tuple[dict[uuid.UUID, int], float]:
    """Commit events at `rate_per_s` for `seconds` (on a fixed schedule: a late tick
    catches up); returns each event's commit time (ns) and how long producing took."""
    committed: dict[uuid.UUID, int] = {}
    began = time.monotonic()
    for tick in range(1, math.floor(seconds / PRODUCER_TICK_S) + 1):
        await asyncio.sleep(max(0.0, began + tick * PRODUCER_TICK_S - time.monotonic()))
        due = math.floor(rate_per_s * tick * PRODUCER_TICK_S) - len(committed)
        if due <= 0:
            continue
        events = maker.make(due)
        async with engine.begin() as conn:
            await emit(conn, events)
        committed_ns = time.time_ns()
        for event in events:
            committed[event.id] = committed_ns
    return committed, time.monotonic() - began


async def _latencies_ms(
    engine: AsyncEngine, committed: dict[uuid.UUID, int]
) -> tuple[list[float], list[float]]:
    """For each produced event, sorted: commit to processed record, and commit to the
    relay's `published_at` (stamped once the broker confirmed; none without a relay)."""
    processed, outbox = models.processed, models.outbox
    query = (
        select(processed.c.event_id, processed.c.processed_at, outbox.c.published_at)
        .join(outbox, outbox.c.id == processed.c.event_id)
        .where(processed.c.consumer == CONSUMER_NAME)
    )
    async with read(engine) as conn:
        rows = [row for row in (await conn.execute(query)).all() if row.event_id in committed]
    effect = sorted((row.processed_at - committed[row.event_id]) / 1e6 for row in rows)
    relayed = sorted(
        (row.published_at - committed[row.event_id]) / 1e6
        for row in rows
        if row.published_at is not None
    )
    return effect, relayed


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values (0 for none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


async def _mark(broker: int | None) -> CpuMark:
    # psutil walks every process: off the event loop, which runs the pipeline.
    return await asyncio.to_thread(cpu_mark, broker)


async def _stop(stop: asyncio.Event, tasks: list[asyncio.Task[None]], relay: Relay | None) -> None:
    stop.set()
    _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT_S)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if relay is not None:
        with contextlib.suppress(Exception):
            await relay.close()


async def measure_delivery(
    kind: str,
    settings: Settings,
    *,
    events: int,
    rate_per_s: float,
    seconds: float,
) -> dict[str, Any]:
    """Throughput of a backlog of `events`, then latency at `rate_per_s` for `seconds`."""
    engine = create_engine(settings=settings)
    maker = EventMaker()
    broker = await asyncio.to_thread(broker_pid, settings.broker_url)
    stop = asyncio.Event()
    try:
        async with _brokers(settings, engine, kind) as (consumer_broker, relay_broker):
            await _write_backlog(engine, maker, events)
            relay = None
            if relay_broker is not None:
                # The bench consumer is the only subscriber: the relay declares its group
                # alone, not those of PayFlow's registered consumers.
                subscribers = {CONSUMER_NAME: BENCH_CONSUMER.event_types}
                relay = Relay(engine, relay_broker, settings, subscribers=subscribers)
            opened = await _mark(broker)
            began = time.monotonic()
            tasks = [
                asyncio.create_task(
                    run_consumer(engine, consumer_broker, BENCH_CONSUMER, settings, stop)
                )
            ]
            if relay is not None:
                tasks.append(asyncio.create_task(relay.run(stop)))
            try:
                await _wait_processed(engine, events, tasks)
                throughput_s = time.monotonic() - began
                throughput_cpu = cpu_shares(opened, await _mark(broker))
                opened = await _mark(broker)
                committed, producing_s = await _produce(
                    engine, maker, rate_per_s=rate_per_s, seconds=seconds
                )
                await _wait_processed(engine, events + len(committed), tasks)
                latency_cpu = cpu_shares(opened, await _mark(broker))
            finally:
                await _stop(stop, tasks, relay)
        latencies, relayed = await _latencies_ms(engine, committed)
    finally:
        await engine.dispose()
    return {
        "delivery": kind,
        "events": events,
        "throughput_s": round(throughput_s, 3),
        "events_per_s": round(events / throughput_s, 1),
        "latency_events": len(latencies),
        "latency_rate_per_s": round(len(committed) / producing_s, 1),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "max_ms": round(latencies[-1] if latencies else 0.0, 2),
        # The relay's share: commit to the broker's confirmation (None without a relay).
        "relay_p50_ms": round(percentile(relayed, 0.50), 2) if relayed else None,
        "relay_p99_ms": round(percentile(relayed, 0.99), 2) if relayed else None,
        "cpu_throughput": throughput_cpu,
        "cpu_latency": latency_cpu,
    }
