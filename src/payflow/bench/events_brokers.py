"""The deliveries `payflow bench events` compares, and the broker chores around a run:
checking that a broker answers before anything is created, and removing what a run
declared on it (exchange and queues, JetStream stream, Redis stream key).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import nats
import nats.js.errors
from redis.asyncio import Redis

DELIVERIES: Final = ("local", "rabbitmq", "nats", "redis")
PROBE_TIMEOUT_S: Final = 5.0


class BrokerUnreachable(Exception):
    """A broker the run needs did not answer; the message names it and its URL."""

    def __init__(self, kind: str, url: str, error: BaseException) -> None:
        detail = str(error) or type(error).__name__
        password = urlsplit(url).password
        if password:
            detail = detail.replace(password, "***")
        others = ",".join(d for d in DELIVERIES if d != kind)
        super().__init__(
            f"{kind} is unreachable at {safe_url(url)}: {detail}. Start it, or leave it"
            f" out with --brokers {others}"
        )


def safe_url(url: str) -> str:
    """`url` with its password masked, for messages and reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


async def probe(kind: str, url: str) -> None:
    """Connect to the broker and disconnect; raise `BrokerUnreachable` if it does not answer.

    Nothing is declared: a run that stops here leaves nothing behind on any broker.
    """
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            if kind == "rabbitmq":
                connection = await aio_pika.connect(url, timeout=PROBE_TIMEOUT_S)
                await connection.close()
            elif kind == "nats":
                nc = await nats.connect(
                    url,
                    connect_timeout=int(PROBE_TIMEOUT_S),
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                )
                await nc.close()
            else:
                client = Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S)
                try:
                    await client.ping()
                finally:
                    await client.aclose()
    except Exception as error:
        raise BrokerUnreachable(kind, url, error) from error


async def remove_namespace(kind: str, url: str, namespace: str, consumers: Iterable[str]) -> None:
    """Delete what PayFlow's adapters declare for `namespace` on the `kind` broker: the
    exchange and `consumers`' queues (RabbitMQ), the stream with its consumers (NATS
    JetStream), the stream key with its groups (Redis). Missing objects are fine.
    """
    if kind == "rabbitmq":
        connection = await aio_pika.connect(url, timeout=PROBE_TIMEOUT_S)
        async with connection:
            channel = await connection.channel()
            for consumer in consumers:
                await channel.queue_delete(f"{namespace}.{consumer}")
            await channel.exchange_delete(f"{namespace}.events")
    elif kind == "nats":
        nc = await nats.connect(url, connect_timeout=int(PROBE_TIMEOUT_S), allow_reconnect=False)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(f"{namespace.upper()}_EVENTS")
        finally:
            await nc.close()
    elif kind == "redis":
        client = Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_S)
        try:
            await client.delete(f"{namespace}:events")
        finally:
            await client.aclose()
