"""The relay: moves committed outbox rows to the broker, in order, at least once.

The outbox is split into partitions by aggregate; a relay publishes only the partitions
it holds leases on, oldest row first, so the events of one aggregate leave in the order
they were written. Several relays share the partitions (each takes its fair share of
those held by live relays); when one dies, its leases run out and the others take its
partitions over. A row is marked published only after the broker confirmed it: a crash
in between publishes it again, and consumers de-duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import Settings
from payflow.db import read
from payflow.events import leases, models
from payflow.events.brokers import Broker
from payflow.events.consumers import OUTAGE_RETRY_S_MAX, backoff_s, sleep_or_stop
from payflow.events.feed import event_of
from payflow.events.outbox import PARTITIONS
from payflow.events.signals import wait_for_events
from payflow.timestamps import now_ns

log = logging.getLogger(__name__)

MEMBER_PREFIX = "relay-member:"
PARTITION_PREFIX = "relay-partition:"


def _registered() -> dict[str, frozenset[str]]:
    from payflow.events.registry import all_consumers

    return {name: c.event_types for name, c in all_consumers().items()}


class Relay:
    def __init__(
        self,
        engine: AsyncEngine,
        broker: Broker,
        settings: Settings,
        *,
        subscribers: dict[str, frozenset[str]] | None = None,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.settings = settings
        # Consumers whose durable groups must exist before anything is published: a
        # RabbitMQ queue only holds what was published after it was declared.
        self.subscribers = subscribers if subscribers is not None else _registered()
        self.declared = False
        self.owner = leases.new_owner_id()
        self.partitions: set[int] = set()
        self.renew_at = 0.0
        self.published = 0

    async def rebalance(self) -> None:
        """Renew this relay's membership and partitions; take or give up partitions so
        that every live relay holds about the same number.

        Each lease is taken in its own short transaction: relays rebalancing at the same
        time never hold one lease while waiting for another (no deadlocks)."""
        ttl_s = self.settings.events_lease_s
        async with self.engine.begin() as conn:
            await leases.acquire(conn, MEMBER_PREFIX + self.owner, owner=self.owner, ttl_s=ttl_s)
            members = await leases.live_owners(conn, MEMBER_PREFIX)
        share = math.ceil(PARTITIONS / max(1, len(members)))
        keep = sorted(self.partitions)[:share]
        extra = [PARTITION_PREFIX + str(p) for p in self.partitions if p not in keep]
        if extra:
            async with self.engine.begin() as conn:
                await leases.release(conn, extra, owner=self.owner)
        held: set[int] = set()
        for partition in keep + [p for p in range(PARTITIONS) if p not in keep]:
            if len(held) >= share:
                break
            async with self.engine.begin() as conn:
                name = PARTITION_PREFIX + str(partition)
                if await leases.acquire(conn, name, owner=self.owner, ttl_s=ttl_s):
                    held.add(partition)
        self.partitions = held
        self.renew_at = time.monotonic() + ttl_s / 3

    async def relay_once(self) -> int:
        """Publish one batch of this relay's unpublished events; how many."""
        if time.monotonic() >= self.renew_at:
            await self.rebalance()
        if not self.partitions:
            return 0
        table = models.outbox
        async with read(self.engine) as conn:
            rows = (
                await conn.execute(
                    select(table)
                    .where(
                        table.c.published_at.is_(None),
                        table.c.partition.in_(sorted(self.partitions)),
                    )
                    .order_by(table.c.sequence)
                    .limit(self.settings.relay_batch_size_max)
                )
            ).all()
        if not rows:
            return 0
        if not self.declared:
            for consumer, event_types in self.subscribers.items():
                await self.broker.subscribe(consumer, event_types)
            self.declared = True
        await self.broker.publish([event_of(row) for row in rows])
        async with self.engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.c.sequence.in_([row.sequence for row in rows]))
                .values(published_at=now_ns())
            )
        self.published += len(rows)
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; broker or database outages are waited out."""
        poll_s = self.settings.events_poll_interval_ms / 1000
        failures = 0
        idle = 0
        while not stop.is_set():
            try:
                count = await self.relay_once()
                failures = 0
                idle = 0 if count else idle + 1
                if count < self.settings.relay_batch_size_max:
                    # Idle, the outbox is polled less and less often (up to 8× the
                    # interval); in-process commits wake the relay at once anyway.
                    await wait_for_events(poll_s * 2 ** min(max(idle - 1, 0), 3))
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                self.declared = False
                delay_s = min(OUTAGE_RETRY_S_MAX, backoff_s(failures, 200))
                log.exception("relay: retrying in %.1f s", delay_s)
                await sleep_or_stop(stop, delay_s)

    async def close(self) -> None:
        """Give up this relay's leases so others take its partitions at once."""
        names = [PARTITION_PREFIX + str(p) for p in self.partitions]
        async with self.engine.begin() as conn:
            await leases.release(conn, [*names, MEMBER_PREFIX + self.owner], owner=self.owner)
        self.partitions = set()
