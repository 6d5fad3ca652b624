"""NATS JetStream: one stream of all events, one durable pull consumer per PayFlow consumer.

Names: the stream `<NAMESPACE>_EVENTS` (stream names cannot hold dots) takes the subjects
`<namespace>.events.>`; an event is published on `<namespace>.events.<type>` with the
header `Nats-Msg-Id` set to its id, so JetStream drops a copy published again within the
duplicate window (a relay retrying after a lost acknowledgement).

What this means for the relay and consumers:
- Retention is by limits, oldest first: at most `stream_length_max` events, none older
  than `retention_s` (7 days, as the outbox keeps them), none larger than
  `MSG_BYTES_MAX`; file storage. Consumers that fall that far behind lose events from
  the broker; the outbox and the feed still have them.
- A consumer created for the first time receives every event still in the stream.
- Durable consumers take every subject: nats-server 2.9 filters on one subject only, so a
  consumer also receives event types it does not subscribe to and the consumer runner
  acknowledges those without handling them.
- A delivery not acknowledged within `ack_wait_s` goes to another worker, without limit
  on redeliveries (PayFlow parks failing events itself). `close` gives back what this
  object received and did not acknowledge, so another worker gets it at once.
- `ack` returns once the server has applied the acknowledgements: all but the last are
  sent without waiting, the last waits for the server's reply (one round trip per
  batch), so an acknowledged batch is not redelivered.
- The client reconnects on its own while the server is down. Meanwhile `publish` raises
  at once (also when the connection drops before a batch is acknowledged), `receive`
  returns nothing and `ack` times out; what the client buffered and sends after
  reconnecting is de-duplicated by the stream or redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any, Final

import nats
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    PubAck,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError

from payflow.events.brokers import Delivery
from payflow.events.domain import DATA_BYTES_MAX, Event

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
# JetStream API calls (stream and consumer declarations) and acknowledgement flushes.
API_TIMEOUT_S: Final = 5.0
# A batch without all its acknowledgements by then counts as failed (the relay retries).
PUBLISH_TIMEOUT_S: Final = 10.0
# Copies of one event id published within this window are dropped. It covers a relay's
# retries and a crashed relay's successor (events_lease_s); consumers de-duplicate
# anything later. The server keeps every id of the window in memory.
DUPLICATE_WINDOW_S: Final = 120.0
# The envelope around the data (ids, types, times) stays well below 4 KiB.
MSG_BYTES_MAX: Final = DATA_BYTES_MAX + 4096
# Unacknowledged deliveries per consumer, over all its workers (≥ workers × batch).
ACK_PENDING_MAX: Final = 20_000
# JetStream refuses a pull request that expires at once.
FETCH_TIMEOUT_S_MIN: Final = 0.01
# The stream's config says it already exists with other limits: update it.
STREAM_NAME_IN_USE: Final = 10058


async def _log_error(error: Exception) -> None:
    log.warning("NATS: %s", str(error) or type(error).__name__)


class NatsBroker:
    """PayFlow's events on NATS JetStream (see the module docstring)."""

    name = "nats"

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        stream_length_max: int = 1_000_000,
        retention_s: float = 7 * 86_400,
        ack_wait_s: float = 30.0,
    ) -> None:
        assert stream_length_max >= 1 and retention_s > DUPLICATE_WINDOW_S and ack_wait_s > 0
        self._url = url
        self.stream_name = f"{namespace.upper()}_EVENTS"
        self.subject_prefix = f"{namespace}.events"
        self._stream_length_max = stream_length_max
        self._retention_s = retention_s
        self._ack_wait_s = ack_wait_s
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._stream_declared = False
        self._subscriptions: dict[str, JetStreamContext.PullSubscription] = {}
        # Deliveries handed out and not acknowledged, by reply subject (unique per delivery).
        self._unacked: dict[str, Msg] = {}
        self._lock = asyncio.Lock()
        # Done when the current connection drops; replaced when it is back.
        self._connection_lost: asyncio.Future[None] | None = None

    async def start(self) -> None:
        await self._jetstream()

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        self._stream_declared = False
        self._subscriptions.clear()
        unacked, self._unacked = list(self._unacked.values()), {}
        if nc is None or nc.is_closed:
            return
        # Hand back what this worker holds, so another one need not wait for the ack wait.
        with contextlib.suppress(nats.errors.Error, OSError):
            for msg in unacked if nc.is_connected else []:
                await msg.nak()
        # Closing flushes what is buffered, which fails while the server is away; the
        # client is closed all the same.
        with contextlib.suppress(OSError):
            await nc.close()

    async def _jetstream(self) -> JetStreamContext:
        """The JetStream context of a live connection, with the stream declared."""
        async with self._lock:
            if self._nc is None or self._nc.is_closed:
                self._nc = await self._connect()
                self._js = self._nc.jetstream(timeout=API_TIMEOUT_S)
                self._stream_declared = False
                self._subscriptions.clear()
                self._unacked.clear()
            assert self._js is not None
            if not self._stream_declared:
                await self._declare_stream(self._js)
                self._stream_declared = True
            return self._js

    async def _connect(self) -> NATS:
        nc = NATS()
        self._connection_lost = asyncio.get_running_loop().create_future()

        async def on_disconnected() -> None:
            if self._connection_lost is not None and not self._connection_lost.done():
                self._connection_lost.set_result(None)

        async def on_reconnected() -> None:
            self._connection_lost = asyncio.get_running_loop().create_future()

        try:
            # Once connected, the client reconnects forever; the first connection must
            # come within the timeout, or the caller hears of it.
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await nc.connect(
                    self._url,
                    connect_timeout=int(CONNECT_TIMEOUT_S),
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    error_cb=_log_error,
                    disconnected_cb=on_disconnected,
                    reconnected_cb=on_reconnected,
                )
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        return nc

    async def _declare_stream(self, js: JetStreamContext) -> None:
        config = StreamConfig(
            name=self.stream_name,
            subjects=[f"{self.subject_prefix}.>"],
            storage=StorageType.FILE,
            max_msgs=self._stream_length_max,
            max_age=self._retention_s,
            max_msg_size=MSG_BYTES_MAX,
            duplicate_window=DUPLICATE_WINDOW_S,
        )
        try:
            await js.add_stream(config)
        except BadRequestError as error:
            if error.err_code != STREAM_NAME_IN_USE:
                raise
            await js.update_stream(config)

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        js = await self._jetstream()
        if self._nc is None or not self._nc.is_connected:
            # While the client reconnects it would buffer the messages and wait for the
            # timeout: fail at once instead, the relay retries.
            raise ConnectionError("NATS: the connection is down, reconnecting")
        lost = self._connection_lost
        assert lost is not None, "set on connecting"
        futures: list[asyncio.Future[PubAck]] = []
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                # Messages leave in order on one connection; the acknowledgements are
                # awaited together, one round trip per batch rather than per event.
                for event in events:
                    future = await js.publish_async(
                        f"{self.subject_prefix}.{event.type}",
                        event.encode(),
                        stream=self.stream_name,
                        headers={"Nats-Msg-Id": f"evt_{event.id.hex}"},
                    )
                    futures.append(future)
                # With return_exceptions, cancelling the futures below leaves no error
                # unread.
                acks = asyncio.gather(*futures, return_exceptions=True)
                # Acknowledgements do not survive a lost connection: stop waiting then.
                waiting: set[asyncio.Future[Any]] = {acks, lost}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if not acks.done():
                raise ConnectionError("NATS: the connection was lost before the batch's acks")
            for ack in acks.result():
                if isinstance(ack, BaseException):
                    raise ack
        finally:
            for future in futures:
                future.cancel()

    async def subscribe(self, consumer: str, event_types: frozenset[str]) -> None:
        js = await self._jetstream()
        async with self._lock:
            if consumer in self._subscriptions:
                return
            config = ConsumerConfig(
                durable_name=consumer,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self._ack_wait_s,
                max_deliver=-1,
                max_ack_pending=ACK_PENDING_MAX,
                filter_subject=f"{self.subject_prefix}.>",
            )
            # Creating an existing durable consumer with another ack wait updates it.
            await js.add_consumer(self.stream_name, config)
            self._subscriptions[consumer] = await js.pull_subscribe_bind(
                durable=consumer, stream=self.stream_name
            )

    async def receive(self, consumer: str, *, count_max: int, timeout_s: float) -> list[Delivery]:
        assert count_max >= 1, count_max
        subscription = self._subscriptions.get(consumer)
        if subscription is None:
            raise ConnectionError(f"NATS: {consumer} is not subscribed on a live connection")
        try:
            msgs = await subscription.fetch(count_max, timeout=max(timeout_s, FETCH_TIMEOUT_S_MIN))
        except TimeoutError:
            # No message within the timeout (nats-py raises its own subclass, or the
            # builtin one when the deadline passed between its two pull requests).
            return []
        for msg in msgs:
            self._unacked[msg.reply] = msg
        # Only an optimisation for `close`: a caller that never acknowledges must not make
        # it grow without bound, so the oldest are forgotten (the ack wait still applies).
        while len(self._unacked) > ACK_PENDING_MAX:
            del self._unacked[next(iter(self._unacked))]
        return [Delivery.of(msg.data, handle=msg) for msg in msgs]

    async def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        msgs: list[Msg] = [delivery.handle for delivery in deliveries]
        for msg in msgs[:-1]:
            await msg.ack()
        # The consumer applies acknowledgements in order: once the last one is confirmed,
        # all are, for one round trip per batch.
        await msgs[-1].ack_sync(timeout=API_TIMEOUT_S)
        for msg in msgs:
            self._unacked.pop(msg.reply, None)
