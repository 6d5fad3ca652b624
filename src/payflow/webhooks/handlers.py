"""What webhooks does when an event arrives: queue one delivery per endpoint that wants
it, in the consumer runner's transaction. Nothing is sent here: the dispatcher sends
outside any transaction, so a slow receiver can hold up neither this consumer nor the
payment that caused the event."""

from __future__ import annotations

from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.events.consumers import Consumer
from payflow.events.domain import Event
from payflow.webhooks import catalogue, models
from payflow.webhooks.deliveries import enqueue
from payflow.webhooks.domain import ENABLED, Endpoint, audience
from payflow.webhooks.service import endpoint_of

EVENT_TYPES: Final = frozenset(catalogue.EVENT_TYPES)


async def subscribers(conn: AsyncConnection, event: Event) -> list[Endpoint]:
    """The enabled endpoints of the event's audience whose filter takes its type and
    that existed when it occurred (consumers may run late: an endpoint created after an
    event, but before the consumer got to it, does not get it)."""
    users = audience(event.data)
    if not users:
        return []
    table = models.endpoints
    rows = await conn.execute(
        select(table).where(
            table.c.owner_id.in_(sorted(users)),
            table.c.status == ENABLED,
            table.c.deleted_at.is_(None),
        )
    )
    endpoints = [endpoint_of(row) for row in rows]
    return [
        e
        for e in endpoints
        if e.created_at <= event.occurred_at and catalogue.subscribes(e.event_types, event.type)
    ]


async def handle(conn: AsyncConnection, event: Event) -> None:
    """Queue `event` for its subscribers (a redelivery queues nothing new)."""
    await enqueue(conn, event, await subscribers(conn, event))


CONSUMER: Final = Consumer(name="webhooks", event_types=EVENT_TYPES, handle=handle)
