"""Idempotent consumers over the embedded event log: once per event, whatever arrives."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import Settings
from payflow.events import dead_letters, models
from payflow.events.brokers import Delivery
from payflow.events.brokers.local import LocalBroker
from payflow.events.consumers import handle_deliveries, process, run_consumer
from payflow.events.runtime import replay_once
from tests.events.support import (
    echo_consumer,
    echo_counts,
    echo_key,
    make_events,
    unique_type,
    write,
)


def _settings(engine: AsyncEngine, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": str(engine.url.render_as_string(hide_password=False)),
        "consumer_backoff_ms": 1,
        "consumer_attempts_max": 3,
        "events_poll_interval_ms": 10,
        "events_lease_s": 2,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _name() -> str:
    return f"c{uuid.uuid4().hex[:12]}"


async def _letters(engine: AsyncEngine, consumer: str) -> list[dead_letters.DeadLetter]:
    async with engine.connect() as conn:
        letters, _ = await dead_letters.list_dead_letters(
            conn, consumer=consumer, status=None, after=None, limit=100
        )
    return letters


async def test_each_event_takes_effect_once_however_often_it_is_processed(
    db: AsyncEngine,
) -> None:
    name, event_type = _name(), unique_type()
    consumer = echo_consumer(name, event_type)
    events = make_events(event_type, 10)
    settings = _settings(db)
    assert await process(db, consumer, events, settings) == {}
    # Again, reversed, and with duplicates inside one batch.
    assert await process(db, consumer, list(reversed(events)) + events[:3], settings) == {}
    counts = await echo_counts(db, name)
    assert counts == {echo_key(name, e): 1 for e in events}


async def test_a_failing_event_is_retried_then_parked_and_the_rest_apply(db: AsyncEngine) -> None:
    name, event_type = _name(), unique_type()
    consumer = echo_consumer(name, event_type, fail_on={3})
    events = make_events(event_type, 6)
    failures = await process(db, consumer, events, _settings(db))
    assert list(failures) == [events[3].id]
    assert "refusing event n=3" in failures[events[3].id]
    counts = await echo_counts(db, name)
    assert set(counts) == {echo_key(name, e) for i, e in enumerate(events) if i != 3}
    async with db.connect() as conn:
        recorded = set(
            (
                await conn.execute(
                    select(models.processed.c.event_id).where(models.processed.c.consumer == name)
                )
            ).scalars()
        )
    assert recorded == {e.id for i, e in enumerate(events) if i != 3}


async def test_deliveries_park_poison_and_malformed_messages_then_replay(
    db: AsyncEngine,
) -> None:
    name, event_type = _name(), unique_type()
    failing = {1}
    consumer = echo_consumer(name, event_type, fail_on=failing)
    settings = _settings(db)
    broker = LocalBroker(db, settings)
    events = make_events(event_type, 3)
    deliveries = [Delivery.of(e.encode()) for e in events] + [Delivery.of(b"{not json")]
    await handle_deliveries(db, broker, consumer, deliveries, settings)
    letters = {letter.event_type: letter for letter in await _letters(db, name)}
    assert set(letters) == {event_type, "unreadable"}
    poisoned = letters[event_type]
    assert poisoned.status == "parked"
    assert poisoned.attempts == settings.consumer_attempts_max
    assert poisoned.event_id == events[1].id
    assert "malformed" in letters["unreadable"].error

    # Replaying while the cause persists parks it again, one attempt more.
    async with db.begin() as conn:
        await dead_letters.request_replay(conn, poisoned.id)
    assert await replay_once(db, {name: consumer}) == 1
    [again] = [x for x in await _letters(db, name) if x.id == poisoned.id]
    assert (again.status, again.attempts) == ("parked", poisoned.attempts + 1)

    # Once the cause is fixed, a replay applies it exactly once.
    failing.clear()
    async with db.begin() as conn:
        await dead_letters.request_replay(conn, poisoned.id)
    assert await replay_once(db, {name: consumer}) == 1
    [done] = [x for x in await _letters(db, name) if x.id == poisoned.id]
    assert done.status == "replayed"
    assert await echo_counts(db, name) == {echo_key(name, e): 1 for e in events}
    # A replayed letter cannot be replayed again; an unknown one is not found.
    async with db.begin() as conn:
        with pytest.raises(Exception, match="only parked"):
            await dead_letters.request_replay(conn, poisoned.id)
        with pytest.raises(Exception, match="no such dead letter"):
            await dead_letters.request_replay(conn, uuid.uuid4())


@pytest.fixture
async def stop() -> AsyncIterator[asyncio.Event]:
    event = asyncio.Event()
    yield event
    event.set()


async def _wait_for(predicate: object, timeout_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_running_consumers_on_the_embedded_log_apply_every_event_once(
    db: AsyncEngine, stop: asyncio.Event
) -> None:
    """Two processes' worth of readers of one consumer (each with its own broker object)
    share one position: every event applies once, none is missed."""
    name, event_type = _name(), unique_type()
    consumer = echo_consumer(name, event_type)
    settings = _settings(db, consumer_batch_size_max=7)
    brokers = [LocalBroker(db, settings), LocalBroker(db, settings)]
    tasks = [
        asyncio.create_task(run_consumer(db, broker, consumer, settings, stop))
        for broker in brokers
    ]
    events = make_events(event_type, 60, aggregates=5)
    for i in range(0, 60, 6):
        await write(db, events[i : i + 6])

    async def all_applied() -> bool:
        return len(await echo_counts(db, name)) == len(events)

    await _wait_for(all_applied)
    stop.set()
    await asyncio.gather(*tasks)
    assert await echo_counts(db, name) == {echo_key(name, e): 1 for e in events}
    async with db.connect() as conn:
        offset = (
            await conn.execute(select(models.offsets).where(models.offsets.c.consumer == name))
        ).one()
    assert offset.sequence > 0
    for broker in brokers:
        await broker.close()


async def test_a_new_reader_resumes_from_the_last_acknowledged_position(
    db: AsyncEngine,
) -> None:
    name, event_type = _name(), unique_type()
    settings = _settings(db, events_lease_s=0.5)
    first = LocalBroker(db, settings)
    await first.subscribe(name, frozenset({event_type}))
    events = make_events(event_type, 5)
    await write(db, events)
    got = await first.receive(name, count_max=2, timeout_s=1)
    assert [d.event.id for d in got if d.event] == [e.id for e in events[:2]]
    await first.ack(name, got)
    # The first reader dies without releasing its lease; the next takes over once it
    # runs out and starts after what was acknowledged.
    second = LocalBroker(db, settings)
    await second.subscribe(name, frozenset({event_type}))
    assert await second.receive(name, count_max=10, timeout_s=0.05) == []
    await asyncio.sleep(0.6)
    rest = await second.receive(name, count_max=10, timeout_s=1)
    assert [d.event.id for d in rest if d.event] == [e.id for e in events[2:]]
    # A late acknowledgement from the former reader never moves the position back.
    await first.ack(name, got[:1])
    await second.ack(name, rest)
    assert await second.receive(name, count_max=10, timeout_s=0.05) == []
    await second.close()
