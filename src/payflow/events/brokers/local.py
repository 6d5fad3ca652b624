"""In-process delivery for the embedded default: the outbox table is the event log.

No relay and no broker: each consumer reads the outbox in feed order from its own
position (`events_offsets`), which acknowledging moves forward. A lease makes one
process at a time the reader of a consumer's log; after a crash another takes over from
the last acknowledged position, and the consumer's processed records absorb whatever is
delivered again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.config import Settings
from payflow.db import is_postgresql, read
from payflow.events import leases, models
from payflow.events.brokers import Delivery
from payflow.events.domain import Event
from payflow.events.feed import START, Position, read_after
from payflow.events.signals import wait_for_events
from payflow.timestamps import now_ns

IDLE_DOUBLINGS_MAX = 3


class LocalBroker:
    name = "local"

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        self.lease_s = settings.events_lease_s
        self.poll_s = settings.events_poll_interval_ms / 1000
        self.owner = leases.new_owner_id()
        self.subscriptions: dict[str, frozenset[str]] = {}
        self.renew_at: dict[str, float] = {}
        self.idle_polls: dict[str, int] = {}

    async def start(self) -> None:
        """Nothing to connect to: the log is the database."""

    async def close(self) -> None:
        async with self.engine.begin() as conn:
            names = [f"log:{consumer}" for consumer in self.subscriptions]
            await leases.release(conn, names, owner=self.owner)
        self.renew_at.clear()

    async def publish(self, events: Sequence[Event]) -> None:
        """Nothing to do: committed outbox rows are already the log consumers read."""

    async def subscribe(self, consumer: str, event_types: frozenset[str]) -> None:
        """Start `consumer`'s position at the oldest event kept, if it has none yet."""
        self.subscriptions[consumer] = event_types
        async with self.engine.begin() as conn:
            dialect = postgresql if is_postgresql(conn) else sqlite
            await conn.execute(
                dialect.insert(models.offsets)
                .values(consumer=consumer, txid=0, sequence=0, updated_at=now_ns())
                .on_conflict_do_nothing()
            )

    async def _holds_lease(self, consumer: str) -> bool:
        # Renewed a third of the way into the lease, not on every poll: each renewal is a
        # write, and SQLite has one writer to share with the API.
        if time.monotonic() < self.renew_at.get(consumer, 0.0):
            return True
        async with self.engine.begin() as conn:
            held = await leases.acquire(
                conn, f"log:{consumer}", owner=self.owner, ttl_s=self.lease_s
            )
        if held:
            self.renew_at[consumer] = time.monotonic() + self.lease_s / 3
        return held

    async def _read(self, conn: AsyncConnection, consumer: str, count_max: int) -> list[Delivery]:
        table = models.offsets
        row = (await conn.execute(select(table).where(table.c.consumer == consumer))).first()
        after = Position(row.txid, row.sequence) if row else START
        items, _ = await read_after(
            conn, after, limit=count_max, types=self.subscriptions[consumer]
        )
        return [Delivery(body=e.encode(), event=e, handle=p) for p, e in items]

    async def receive(self, consumer: str, *, count_max: int, timeout_s: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        while True:
            deliveries: list[Delivery] = []
            if await self._holds_lease(consumer):
                async with read(self.engine) as conn:
                    deliveries = await self._read(conn, consumer, count_max)
            left_s = deadline - time.monotonic()
            if deliveries:
                self.idle_polls[consumer] = 0
                return deliveries
            if left_s <= 0:
                return deliveries
            # An idle log is polled less and less often (up to 8× the interval): each poll
            # costs a query, and in-process writers wake readers at once anyway.
            idle = self.idle_polls.get(consumer, 0)
            self.idle_polls[consumer] = idle + 1
            await wait_for_events(min(left_s, self.poll_s * 2 ** min(idle, IDLE_DOUBLINGS_MAX)))

    async def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        """Move the position past `deliveries` (never backwards: a slow former reader
        acknowledging late must not rewind the one that took over)."""
        positions = [d.handle for d in deliveries if isinstance(d.handle, Position)]
        if not positions:
            return
        last = max(positions)
        table = models.offsets
        async with self.engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(
                    table.c.consumer == consumer,
                    or_(
                        table.c.txid < last.txid,
                        and_(table.c.txid == last.txid, table.c.sequence < last.sequence),
                    ),
                )
                .values(txid=last.txid, sequence=last.sequence, updated_at=now_ns())
            )
