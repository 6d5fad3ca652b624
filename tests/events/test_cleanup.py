"""Cleanup deletes only what nobody needs any more, a bounded round at a time."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import Settings
from payflow.db import create_engine
from payflow.events import models
from payflow.events.brokers.local import LocalBroker
from payflow.events.cleanup import cleanup_once
from payflow.events.consumers import process
from payflow.migrate import upgrade_async
from tests.events.support import echo_consumer, make_events, unique_type, write

DAY_NS = 86_400 * 1_000_000_000


async def _fresh(tmp_path: Path) -> tuple[AsyncEngine, Settings]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cleanup.db'}"
    await upgrade_async(url)
    settings = Settings(database_url=url, events_retention_s=3600, events_cleanup_batch_max=4)
    return create_engine(url), settings


async def _count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)  # type: ignore[arg-type]


async def _age(engine: AsyncEngine, days: int) -> None:
    """Make every event and processed record `days` old."""
    async with engine.begin() as conn:
        await conn.execute(
            update(models.outbox).values(occurred_at=models.outbox.c.occurred_at - days * DAY_NS)
        )
        await conn.execute(
            update(models.processed).values(
                processed_at=models.processed.c.processed_at - days * DAY_NS
            )
        )


async def test_published_events_past_retention_go_in_bounded_rounds(tmp_path: Path) -> None:
    engine, settings = await _fresh(tmp_path)
    try:
        await write(engine, make_events(unique_type(), 10))
        await _age(engine, 1)
        async with engine.begin() as conn:
            # Unpublished events stay, however old: the relay still owes them to the broker.
            assert await cleanup_once(conn, settings, local_log=False) == 0
            await conn.execute(
                update(models.outbox).where(models.outbox.c.sequence <= 7).values(published_at=1)
            )
        async with engine.begin() as conn:
            assert await cleanup_once(conn, settings, local_log=False) == 4
        async with engine.begin() as conn:
            assert await cleanup_once(conn, settings, local_log=False) == 3
        assert await _count(engine, models.outbox) == 3
        await write(engine, make_events(unique_type(), 2))
        async with engine.begin() as conn:
            # Recent events stay too.
            await conn.execute(update(models.outbox).values(published_at=1))
            assert await cleanup_once(conn, settings, local_log=False) == 3
        assert await _count(engine, models.outbox) == 2
    finally:
        await engine.dispose()


async def test_the_embedded_log_keeps_what_a_consumer_has_not_passed(tmp_path: Path) -> None:
    engine, settings = await _fresh(tmp_path)
    settings = settings.model_copy(update={"events_cleanup_batch_max": 100})
    try:
        event_type = unique_type()
        name = f"c{uuid.uuid4().hex[:10]}"
        await write(engine, make_events(event_type, 6))
        broker = LocalBroker(engine, settings)
        await broker.subscribe(name, frozenset({event_type}))
        deliveries = await broker.receive(name, count_max=4, timeout_s=1)
        consumer = echo_consumer(name, event_type)
        events = [d.event for d in deliveries if d.event is not None]
        assert await process(engine, consumer, events, settings) == {}
        await broker.ack(name, deliveries)
        await _age(engine, 2)
        async with engine.begin() as conn:
            # The four acknowledged go, with their processed records; the two the
            # consumer has not reached stay (and the echoes, written after them).
            assert await cleanup_once(conn, settings, local_log=True) == 4 + 4
        assert await _count(engine, models.processed) == 0
        async with engine.connect() as conn:
            left = (await conn.execute(select(models.outbox.c.data))).scalars().all()
        assert sorted(left)[:2] == ['{"n":4}', '{"n":5}']
        await broker.close()
    finally:
        await engine.dispose()
