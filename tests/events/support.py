"""Helpers for event tests: events to write, and a consumer whose effect can be counted.

The echo consumer's effect is another event (`test.echoed`) with a fresh random id, so an
event applied twice would leave two echoes: counting echoes per source tells exactly-once
from at-least-once.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.events import models
from payflow.events.consumers import Consumer
from payflow.events.domain import Event
from payflow.events.outbox import emit
from payflow.ids import uuid7
from payflow.timestamps import now_ns

ECHOED = "test.echoed"


def unique_type() -> str:
    """An event type of this test's own, so other tests' events never reach its consumer."""
    return f"test.t{uuid.uuid4().hex[:12]}"


def make_events(event_type: str, count: int, *, aggregates: int = 1) -> list[Event]:
    return [
        Event(
            id=uuid7(),
            type=event_type,
            aggregate_type="sample",
            aggregate_id=f"agg_{i % aggregates}",
            occurred_at=now_ns(),
            data={"n": i},
        )
        for i in range(count)
    ]


async def write(engine: AsyncEngine, events: Sequence[Event]) -> None:
    async with engine.begin() as conn:
        await emit(conn, events)


def echo_consumer(name: str, event_type: str, *, fail_on: set[int] | None = None) -> Consumer:
    """Echoes each event; raises for events whose data `n` is in `fail_on` (mutable: tests
    empty it to let a replay succeed)."""
    failing = fail_on if fail_on is not None else set()

    async def handle(conn: AsyncConnection, event: Event) -> None:
        if event.data.get("n") in failing:
            raise RuntimeError(f"refusing event n={event.data['n']}")
        await emit(
            conn,
            [
                Event(
                    id=uuid7(),
                    type=ECHOED,
                    aggregate_type="echo",
                    aggregate_id=f"{name}:{event.id.hex}"[:64],
                    occurred_at=now_ns(),
                    data={"source": str(event.id), "consumer": name},
                )
            ],
        )

    return Consumer(name=name, event_types=frozenset({event_type}), handle=handle)


async def echo_counts(engine: AsyncEngine, consumer: str) -> Counter[str]:
    """How many echoes `consumer` wrote per source event id."""
    table = models.outbox
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(table.c.aggregate_id).where(
                    table.c.type == ECHOED, table.c.aggregate_id.startswith(f"{consumer}:")
                )
            )
        ).scalars()
        return Counter(rows)


def echo_key(consumer: str, event: Event) -> str:
    return f"{consumer}:{event.id.hex}"[:64]
