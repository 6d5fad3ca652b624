"""Brokers carry events from the relay to consumers; one adapter per broker, chosen by URL.

Every adapter gives the same guarantees, which the consumer runner and relay rely on:
- `publish` returns only once the broker has durably accepted every event (publisher
  confirms, JetStream acks, XADD replies), in the order given; otherwise it raises.
- `receive` hands out deliveries for one consumer group; each is redelivered (to this or
  another worker) until it is acknowledged, including after the worker crashes.
- `ack` is called only after the consumer's transaction committed.
Deliveries may arrive twice or out of order; consumers de-duplicate on the event id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.config import Settings
from payflow.events.domain import Event, EventError


@dataclass(slots=True)
class Delivery:
    """One message handed to a consumer. `event` is None when the body is malformed."""

    body: bytes
    event: Event | None
    error: str | None = None
    # Whatever the adapter needs to acknowledge it (a message object, a stream entry id).
    handle: Any = field(default=None, repr=False)

    @classmethod
    def of(cls, body: bytes, handle: Any = None) -> Delivery:
        try:
            return cls(body=body, event=Event.decode(body), handle=handle)
        except EventError as error:
            return cls(body=body, event=None, error=str(error), handle=handle)


class Broker(Protocol):
    """What the relay and consumers need from a broker (see the module docstring)."""

    name: str

    async def start(self) -> None:
        """Connect, and declare what publishing needs (exchange, stream)."""

    async def close(self) -> None:
        """Disconnect; unacknowledged deliveries go back to the broker."""

    async def publish(self, events: Sequence[Event]) -> None:
        """Durably hand `events` to the broker, in order; raise if any was not confirmed."""

    async def subscribe(self, consumer: str, event_types: frozenset[str]) -> None:
        """Declare `consumer`'s durable group (queue, durable consumer, consumer group)."""

    async def receive(self, consumer: str, *, count_max: int, timeout_s: float) -> list[Delivery]:
        """Up to `count_max` deliveries, waiting at most `timeout_s` for the first one."""

    async def ack(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge `deliveries` (their effects are committed)."""


def broker_kind(url: str | None) -> str:
    """`rabbitmq`, `nats`, `redis` or `local` (the embedded log) for a PAYFLOW_BROKER_URL."""
    if not url:
        return "local"
    scheme = url.split("://", 1)[0].lower()
    kinds = {"amqp": "rabbitmq", "amqps": "rabbitmq", "nats": "nats", "tls": "nats"}
    kinds |= {"redis": "redis", "rediss": "redis"}
    if scheme not in kinds:
        raise ValueError(
            f"PAYFLOW_BROKER_URL scheme {scheme!r} is not one of amqp, nats, redis"
            " (leave it unset for in-process delivery)"
        )
    return kinds[scheme]


def create_broker(settings: Settings, engine: AsyncEngine) -> Broker:
    """The broker PAYFLOW_BROKER_URL names; the embedded log on `engine` when it is unset."""
    kind = broker_kind(settings.broker_url)
    namespace = settings.broker_namespace
    if kind == "local":
        from payflow.events.brokers.local import LocalBroker

        return LocalBroker(engine, settings)
    assert settings.broker_url is not None
    if kind == "rabbitmq":
        from payflow.events.brokers.rabbitmq import RabbitMQBroker

        return RabbitMQBroker(
            settings.broker_url,
            namespace=namespace,
            queue_type=settings.broker_rabbitmq_queue_type,
        )
    if kind == "nats":
        from payflow.events.brokers.nats import NatsBroker

        return NatsBroker(
            settings.broker_url,
            namespace=namespace,
            stream_length_max=settings.broker_stream_length_max,
            retention_s=settings.events_retention_s,
            ack_wait_s=settings.consumer_ack_wait_s,
        )
    from payflow.events.brokers.redis_streams import RedisStreamsBroker

    return RedisStreamsBroker(
        settings.broker_url,
        namespace=namespace,
        stream_length_max=settings.broker_stream_length_max,
        reclaim_idle_s=settings.consumer_ack_wait_s,
    )
