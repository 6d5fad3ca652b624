"""Running the event backbone: `payflow worker`, `payflow relay`, and both inside
`payflow up`. Stopping lets each loop finish the batch in hand, so nothing is left
half-done; a `kill -9` instead leaves unacknowledged deliveries to the broker, which
hands them out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import Settings
from payflow.db import create_engine
from payflow.events import leases
from payflow.events.brokers import Broker, broker_kind, create_broker
from payflow.events.cleanup import cleanup_once
from payflow.events.consumers import Consumer, apply_events, run_consumer, sleep_or_stop
from payflow.events.dead_letters import claim_replays, event_of, resolve
from payflow.events.relay import Relay

log = logging.getLogger(__name__)

REPLAY_INTERVAL_S = 1.0
REPLAY_BATCH_MAX = 100
STOP_TIMEOUT_S = 30.0


async def replay_once(engine: AsyncEngine, consumers: dict[str, Consumer]) -> int:
    """Apply dead letters operators asked to replay, for the consumers this worker runs."""
    async with engine.begin() as conn:
        letters = await claim_replays(conn, consumers=list(consumers), limit=REPLAY_BATCH_MAX)
        for letter in letters:
            event = event_of(letter)
            if event is None:
                await resolve(conn, letter, error="the event is unreadable")
                continue
            failures = await apply_events(conn, consumers[letter.consumer], [event], isolate=True)
            await resolve(conn, letter, error=failures.get(event.id))
    return len(letters)


async def _every(
    interval_s: float, name: str, stop: asyncio.Event, work: Callable[[], Awaitable[object]]
) -> None:
    while not stop.is_set():
        try:
            await work()
        except Exception:
            log.exception("%s failed; retrying in %.1f s", name, interval_s)
        await sleep_or_stop(stop, interval_s)


@dataclass
class EventsRuntime:
    """The loops of one process's share of the event backbone."""

    engine: AsyncEngine
    broker: Broker
    settings: Settings
    consumers: dict[str, Consumer]
    relay: Relay | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    owner: str = field(default_factory=leases.new_owner_id)

    async def _cleanup(self) -> None:
        local_log = self.broker.name == "local"
        while True:
            async with self.engine.begin() as conn:
                # One cleaner at a time across processes.
                if not await leases.acquire(
                    conn, "cleanup", owner=self.owner, ttl_s=self.settings.events_lease_s
                ):
                    return
                deleted = await cleanup_once(conn, self.settings, local_log=local_log)
            if deleted < self.settings.events_cleanup_batch_max:
                return

    def start(self) -> None:
        spawn = self.tasks.append
        for consumer in self.consumers.values():
            spawn(
                asyncio.create_task(
                    run_consumer(self.engine, self.broker, consumer, self.settings, self.stop)
                )
            )
        if self.consumers:
            spawn(
                asyncio.create_task(
                    _every(
                        REPLAY_INTERVAL_S,
                        "dead-letter replay",
                        self.stop,
                        lambda: replay_once(self.engine, self.consumers),
                    )
                )
            )
        if self.relay is not None:
            spawn(asyncio.create_task(self.relay.run(self.stop)))
        spawn(
            asyncio.create_task(
                _every(
                    self.settings.events_cleanup_interval_s,
                    "events cleanup",
                    self.stop,
                    self._cleanup,
                )
            )
        )
        for extra in _extra_loops(self):
            spawn(asyncio.create_task(extra))

    async def close(self) -> None:
        self.stop.set()
        _, pending = (
            await asyncio.wait(self.tasks, timeout=STOP_TIMEOUT_S) if self.tasks else ((), ())
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.relay is not None:
            with contextlib.suppress(Exception):
                await self.relay.close()
        with contextlib.suppress(Exception):
            await self.broker.close()


def _extra_loops(runtime: EventsRuntime) -> list[Coroutine[Any, Any, None]]:
    """Loops that belong with a consumer: the mailer sends what notifications queued, the
    payouts bank caller and sweeper move sagas the consumer cannot (bank calls)."""
    loops: list[Coroutine[Any, Any, None]] = []
    if "notifications" in runtime.consumers and runtime.settings.smtp_url:
        from payflow.notifications.mailer import run_mailer

        loops.append(run_mailer(runtime.engine, runtime.settings, runtime.stop))
    if "payouts" in runtime.consumers:
        # The saga's bank calls and its sweeper run where its consumer runs.
        from payflow.payouts.runner import run_bank_caller, run_sweeper

        loops.append(run_bank_caller(runtime.engine, runtime.settings, runtime.stop))
        loops.append(run_sweeper(runtime.engine, runtime.settings, runtime.stop))
    if "webhooks" in runtime.consumers:
        # The dispatcher sends, outside any transaction, what the webhooks consumer queued.
        from payflow.webhooks.dispatcher import run_dispatcher

        loops.append(run_dispatcher(runtime.engine, runtime.settings, runtime.stop))
    if "settlement" in runtime.consumers:
        # The cycle that makes settlements runs where the consumer that finishes them runs.
        from payflow.settlement.runner import run_cycles

        loops.append(run_cycles(runtime.engine, runtime.settings, runtime.stop))
    return loops


async def start_runtime(
    settings: Settings,
    *,
    consumers: dict[str, Consumer],
    relay: bool,
    engine: AsyncEngine | None = None,
) -> EventsRuntime:
    """Connect to the broker and start the loops; `relay` only matters with a broker."""
    engine = engine or create_engine(settings=settings)
    broker = create_broker(settings, engine)
    await broker.start()
    needs_relay = relay and broker_kind(settings.broker_url) != "local"
    runtime = EventsRuntime(
        engine=engine,
        broker=broker,
        settings=settings,
        consumers=consumers,
        relay=Relay(engine, broker, settings) if needs_relay else None,
    )
    runtime.start()
    return runtime


def serve(settings: Settings, *, consumers: dict[str, Consumer], relay: bool) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (the CLI's worker and relay)."""

    async def main() -> None:
        engine = create_engine(settings=settings)
        runtime = await start_runtime(settings, consumers=consumers, relay=relay, engine=engine)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()
        await runtime.close()
        await engine.dispose()

    asyncio.run(main())
