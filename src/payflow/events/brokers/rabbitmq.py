"""RabbitMQ: one durable topic exchange, one durable queue per consumer.

Names: the exchange is `<namespace>.events`, the routing key of an event is its type, and
consumer `c` reads the queue `<namespace>.c`, bound once per event type it subscribes to.

What this means for the relay and consumers:
- A queue holds only events published after it was declared, so a consumer hears an
  event type from its first `subscribe` on. `subscribe` only declares (no message flows
  before `receive`), so the relay can call it for every registered consumer when it
  starts, and no event is published before the queues that want it exist. Events no
  queue is bound to are dropped by the broker (publishing is not mandatory): the outbox
  and the feed still have them. The stream brokers need none of this: a new group there
  starts at the beginning of the stream.
- Messages are persistent and published with publisher confirms; `publish` awaits the
  confirms of the whole batch. A channel keeps the order of its publishes.
- Queues are durable classic queues by default (they survive a broker restart with
  their persistent messages; confirms come once a message is on disk), or quorum queues
  (`PAYFLOW_BROKER_RABBITMQ_QUEUE_TYPE=quorum`): replicated on a cluster. On RabbitMQ
  before 3.13 a single node's quorum queues may elect no leader after a crash (seen
  here with 3.10: every publish then waits forever), hence the default. RabbitMQ 4
  drops a quorum-queue message redelivered more than its delivery limit (20); PayFlow
  parks failing events itself, so only repeated worker crashes redeliver that often,
  but operators may raise the limit by policy.
- Each consumer's channel prefetches at most twice the batch its first `receive` asks
  for; a consumer callback feeds an in-process queue that `receive` drains.
- No automatic reconnection: a connection lost to a broker restart makes the next
  `receive` or `ack` raise; `publish` and `subscribe` open a new connection, and a
  publish that failed or timed out drops its connection so the retry starts afresh. The consumer
  runner subscribes again after an error, and unacknowledged messages of the lost
  connection are redelivered by the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
)

from payflow.events.brokers import Delivery
from payflow.events.domain import Event

CONNECT_TIMEOUT_S: Final = 10.0
# A batch that the broker has not confirmed by then counts as failed (the relay retries).
PUBLISH_TIMEOUT_S: Final = 10.0
# basic.qos takes a 16-bit count.
PREFETCH_COUNT_MAX: Final = 65_535


@dataclass(slots=True)
class _Subscription:
    """One consumer's channel, queue and the messages its callback has buffered."""

    channel: AbstractChannel
    queue: AbstractQueue
    # Bounded by the prefetch count. None marks the channel's closing: whatever was
    # buffered then is redelivered by the broker.
    inbox: asyncio.Queue[AbstractIncomingMessage | None]
    bound: set[str] = field(default_factory=set)
    consuming: bool = False


class RabbitMQBroker:
    """PayFlow's events on RabbitMQ (see the module docstring)."""

    name = "rabbitmq"

    def __init__(self, url: str, *, namespace: str, queue_type: str = "classic") -> None:
        assert queue_type in ("classic", "quorum"), queue_type
        self._url = url
        self._queue_arguments: dict[str, Any] = {"x-queue-type": queue_type}
        self._namespace = namespace
        self.exchange_name = f"{namespace}.events"
        self._connection: AbstractConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._subscriptions: dict[str, _Subscription] = {}
        # One (re)connection and one declaration at a time.
        self._lock = asyncio.Lock()

    def queue_name(self, consumer: str) -> str:
        """The durable queue of `consumer`."""
        return f"{self._namespace}.{consumer}"

    async def start(self) -> None:
        await self._publish_exchange()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._exchange = None
        self._subscriptions.clear()
        if connection is not None and not connection.is_closed:
            await connection.close()

    async def _connected(self) -> AbstractConnection:
        """The live connection, opening a new one if there is none (call under the lock)."""
        connection = self._connection
        # A connection the broker closed is not `is_closed` until closed here as well.
        if connection is None or connection.is_closed or not connection.connected.is_set():
            # Channels die with their connection: forget them, callers open new ones.
            self._exchange = None
            self._subscriptions.clear()
            self._connection = None
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()
            connection = await aio_pika.connect(self._url, timeout=CONNECT_TIMEOUT_S)
            self._connection = connection
        return connection

    async def _declare_exchange(self, channel: AbstractChannel) -> AbstractExchange:
        return await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def _publish_exchange(self) -> AbstractExchange:
        """The exchange on a channel with publisher confirms, declared if need be."""
        async with self._lock:
            connection = await self._connected()
            channel = self._publish_channel
            if self._exchange is None or channel is None or channel.is_closed:
                channel = await connection.channel(publisher_confirms=True)
                self._exchange = await self._declare_exchange(channel)
                self._publish_channel = channel
            return self._exchange

    async def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        exchange = await self._publish_exchange()
        messages = [
            aio_pika.Message(
                event.encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=f"evt_{event.id.hex}",
            )
            for event in events
        ]
        # All publishes start in order and queue on the channel's lock in that order, so
        # the broker receives them in order; waiting for the confirms together costs one
        # round trip per batch instead of one per event.
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                results = await asyncio.gather(
                    *(
                        exchange.publish(message, routing_key=event.type, mandatory=False)
                        for message, event in zip(messages, events, strict=True)
                    ),
                    return_exceptions=True,
                )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except BaseException:
            # A channel whose confirms timed out or failed may never confirm again (seen
            # after a broker restart while quorum queues recovered): the next attempt
            # starts on a new connection rather than waiting on this one forever.
            await self._forget_publish_connection()
            raise

    async def _forget_publish_connection(self) -> None:
        async with self._lock:
            connection, self._connection = self._connection, None
            self._exchange = None
            self._publish_channel = None
            self._subscriptions.clear()
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()

    async def subscribe(self, consumer: str, event_types: frozenset[str]) -> None:
        async with self._lock:
            connection = await self._connected()
            subscription = self._subscriptions.get(consumer)
            if subscription is None or subscription.channel.is_closed:
                subscription = await self._open_subscription(connection, consumer)
                self._subscriptions[consumer] = subscription
            for event_type in sorted(event_types - subscription.bound):
                await subscription.queue.bind(self.exchange_name, routing_key=event_type)
                subscription.bound.add(event_type)

    async def _open_subscription(
        self, connection: AbstractConnection, consumer: str
    ) -> _Subscription:
        channel = await connection.channel(publisher_confirms=False)
        await self._declare_exchange(channel)
        queue = await channel.declare_queue(
            self.queue_name(consumer), durable=True, arguments=self._queue_arguments
        )
        inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        channel.close_callbacks.add(lambda _channel, _error: inbox.put_nowait(None))
        return _Subscription(channel=channel, queue=queue, inbox=inbox)

    def _subscription(self, consumer: str) -> _Subscription:
        subscription = self._subscriptions.get(consumer)
        if subscription is None or subscription.channel.is_closed:
            raise ConnectionError(f"RabbitMQ: {consumer} is not subscribed on a live channel")
        return subscription

    async def receive(self, consumer: str, *, count_max: int, timeout_s: float) -> list[Delivery]:
        assert count_max >= 1, count_max
        subscription = self._subscription(consumer)
        if not subscription.consuming:
            # The first batch size bounds the prefetch: the broker keeps the rest.
            prefetch_count = min(2 * count_max, PREFETCH_COUNT_MAX)
            await subscription.channel.set_qos(prefetch_count=prefetch_count)
            inbox = subscription.inbox

            async def on_message(message: AbstractIncomingMessage) -> None:
                inbox.put_nowait(message)

            await subscription.queue.consume(on_message, no_ack=False)
            subscription.consuming = True
        try:
            async with asyncio.timeout(max(timeout_s, 0)):
                first = await subscription.inbox.get()
        except TimeoutError:
            return []
        messages = [first]
        while len(messages) < count_max and not subscription.inbox.empty():
            messages.append(subscription.inbox.get_nowait())
        if None in messages:
            raise ConnectionError(f"RabbitMQ: the channel of {consumer} closed")
        return [Delivery.of(message.body, handle=message) for message in messages if message]

    async def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        # One basic.ack per message: acknowledging "multiple" up to the last one would
        # also cover deliveries another batch of this channel has not finished.
        for delivery in deliveries:
            message: AbstractIncomingMessage = delivery.handle
            await message.ack()
