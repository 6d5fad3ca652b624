"""Idempotent consumers: each event's effect happens once, however often it arrives.

A consumer's handler runs inside a transaction the runner owns. The runner first records
`(consumer, event_id)` in `events_processed` (doing nothing if the record exists), then
runs the handler, then commits; only then is the delivery acknowledged. A delivery that
keeps failing is retried with back-off and finally parked as a dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.config import Settings
from payflow.db import is_postgresql, is_retryable, run_in_transaction
from payflow.events import models
from payflow.events.brokers import Broker, Delivery
from payflow.events.dead_letters import park
from payflow.events.domain import Event
from payflow.events.signals import outbox_committed
from payflow.timestamps import now_ns

log = logging.getLogger(__name__)

Handler = Callable[[AsyncConnection, Event], Awaitable[None]]
Locker = Callable[[AsyncConnection, Sequence[Event]], Awaitable[None]]
BACKOFF_S_MAX = 30.0
# A broker or database outage is retried at least this often, so service resumes within
# seconds of the outage ending.
OUTAGE_RETRY_S_MAX = 5.0
# How long one `receive` may wait for a first delivery (brokers block server-side; the
# embedded log polls): also how long a stopping worker may take to notice.
RECEIVE_WAIT_S = 1.0


@dataclass(frozen=True, slots=True)
class Consumer:
    """A named, durable subscriber to some event types.

    `handle(conn, event)` runs in the runner's transaction (never commit in it), must not
    call the network, and derives any ids it creates from the event, so a retry after a
    rollback writes the same rows. Raising means "not now": the event is retried, then
    parked.
    """

    name: str
    event_types: frozenset[str]
    handle: Handler
    # Fewer events per transaction than PAYFLOW_CONSUMER_BATCH_SIZE_MAX, for consumers
    # that move money: their transaction holds wallet locks that payments wait for.
    batch_size_max: int | None = None
    # Consumers that move money lock every ledger account a batch will touch before the
    # first handler runs (one ordered statement, as the ledger's own batches do), so the
    # batch can never deadlock with payments locking the same wallets.
    lock: Locker | None = None

    def __post_init__(self) -> None:
        assert self.name and self.name.replace("_", "").isalnum(), self.name
        assert self.event_types, "a consumer subscribes to at least one event type"


def _insert_processed(conn: AsyncConnection) -> postgresql.Insert | sqlite.Insert:
    if is_postgresql(conn):
        return postgresql.insert(models.processed).on_conflict_do_nothing()
    return sqlite.insert(models.processed).on_conflict_do_nothing()


async def _claim(conn: AsyncConnection, consumer: Consumer, event: Event) -> bool:
    """Record the event as processed by `consumer`; False if it already was.

    On PostgreSQL a concurrent worker's uncommitted record makes this wait for its commit
    and then answer False: two workers never both apply one event.
    """
    result = await conn.execute(
        _insert_processed(conn).values(
            consumer=consumer.name, event_id=event.id, processed_at=now_ns()
        )
    )
    return result.rowcount == 1


async def _claim_all(conn: AsyncConnection, consumer: Consumer, events: list[Event]) -> set[object]:
    """`_claim` for a whole batch in one statement: the ids recorded now (the others were
    processed already)."""
    at = now_ns()
    rows = [{"consumer": consumer.name, "event_id": e.id, "processed_at": at} for e in events]
    statement = _insert_processed(conn).values(rows).returning(models.processed.c.event_id)
    return set((await conn.execute(statement)).scalars())


async def _processed(conn: AsyncConnection, consumer: Consumer, events: list[Event]) -> set[object]:
    table = models.processed
    query = select(table.c.event_id).where(
        table.c.consumer == consumer.name, table.c.event_id.in_([e.id for e in events])
    )
    return set((await conn.execute(query)).scalars())


async def apply_events(
    conn: AsyncConnection, consumer: Consumer, events: Sequence[Event], *, isolate: bool
) -> dict[object, str]:
    """Apply `events` not yet processed by `consumer`, in the caller's transaction.

    Without `isolate` the batch is claimed in one statement and the first failure
    propagates (the caller's transaction then rolls back, claims included). With it,
    each event is claimed and applied in its own savepoint, and the failures are returned
    (event id → error) while the others stand.
    """
    unique = list({e.id: e for e in events}.values())
    if not unique:
        return {}
    if consumer.lock is not None:
        await consumer.lock(conn, unique)
    if not isolate:
        claimed = await _claim_all(conn, consumer, unique)
        for event in unique:
            if event.id in claimed:
                await consumer.handle(conn, event)
        return {}
    done = await _processed(conn, consumer, unique)
    failures: dict[object, str] = {}
    for event in unique:
        if event.id in done:
            continue
        try:
            async with conn.begin_nested():
                if await _claim(conn, consumer, event):
                    await consumer.handle(conn, event)
        except Exception as error:
            if is_retryable(error):
                raise
            failures[event.id] = f"{type(error).__name__}: {error}"
    return failures


def backoff_s(attempt: int, first_ms: float) -> float:
    """Exponential back-off with full jitter before attempt `attempt + 1`."""
    ceiling = min(BACKOFF_S_MAX, first_ms / 1000 * 2 ** min(attempt - 1, 30))
    return random.uniform(ceiling / 2, ceiling)


async def process(
    engine: AsyncEngine, consumer: Consumer, events: Sequence[Event], settings: Settings
) -> dict[object, str]:
    """Apply `events` with retries; returns those still failing after the last attempt."""
    if not events:
        return {}
    try:
        # Optimistically one transaction, no savepoints: the common case costs least.
        await run_in_transaction(
            engine, lambda conn: apply_events(conn, consumer, events, isolate=False)
        )
        return {}
    except Exception as error:
        if len(events) == 1:
            failures: dict[object, str] = {events[0].id: f"{type(error).__name__}: {error}"}
        else:
            failures = await run_in_transaction(
                engine, lambda conn: apply_events(conn, consumer, events, isolate=True)
            )
    attempt = 1
    while failures and attempt < settings.consumer_attempts_max:
        await asyncio.sleep(backoff_s(attempt, settings.consumer_backoff_ms))
        attempt += 1
        failures = await _retry(engine, consumer, [e for e in events if e.id in failures])
    return failures


async def _retry(engine: AsyncEngine, consumer: Consumer, events: list[Event]) -> dict[object, str]:
    async def attempt(conn: AsyncConnection) -> dict[object, str]:
        return await apply_events(conn, consumer, events, isolate=True)

    return await run_in_transaction(engine, attempt)


async def handle_deliveries(
    engine: AsyncEngine,
    broker: Broker,
    consumer: Consumer,
    deliveries: list[Delivery],
    settings: Settings,
) -> None:
    """Process a batch of deliveries, park what cannot be processed, then acknowledge all."""
    wanted: dict[object, Event] = {}
    bodies: dict[object, bytes] = {}
    for delivery in deliveries:
        if delivery.event is None:
            await park(
                engine,
                consumer=consumer.name,
                body=delivery.body,
                event=None,
                error=delivery.error or "malformed event",
                attempts=1,
            )
        elif delivery.event.type in consumer.event_types:
            wanted.setdefault(delivery.event.id, delivery.event)
            bodies[delivery.event.id] = delivery.body
    failures = await process(engine, consumer, list(wanted.values()), settings)
    for event_id, error in failures.items():
        log.warning("consumer %s parks event %s: %s", consumer.name, event_id, error)
        await park(
            engine,
            consumer=consumer.name,
            body=bodies[event_id],
            event=wanted[event_id],
            error=error,
            attempts=settings.consumer_attempts_max,
        )
    await broker.ack(consumer.name, deliveries)


async def run_consumer(
    engine: AsyncEngine,
    broker: Broker,
    consumer: Consumer,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    """Receive and process `consumer`'s deliveries until `stop` is set.

    A broker or database outage is waited out: the loop backs off and tries again, and
    whatever was not acknowledged is delivered again.
    """
    count_max = min(settings.consumer_batch_size_max, consumer.batch_size_max or 1_000_000)
    failures = 0
    subscribed = False
    while not stop.is_set():
        try:
            if not subscribed:
                await broker.subscribe(consumer.name, consumer.event_types)
                subscribed = True
            deliveries = await broker.receive(
                consumer.name, count_max=count_max, timeout_s=RECEIVE_WAIT_S
            )
            if deliveries:
                await handle_deliveries(engine, broker, consumer, deliveries, settings)
                # Handlers write events and work for other local loops (the relay, the
                # payouts bank caller): wake them rather than have them wait for a poll.
                outbox_committed()
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception:
            failures += 1
            delay_s = min(OUTAGE_RETRY_S_MAX, backoff_s(min(failures, 10), 100))
            log.exception("consumer %s: retrying in %.1f s", consumer.name, delay_s)
            subscribed = False
            await sleep_or_stop(stop, delay_s)


async def sleep_or_stop(stop: asyncio.Event, delay_s: float) -> None:
    """Wait `delay_s`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=delay_s)
