"""Deliveries: queued by the consumer, listed and replayed through the API. Each
function takes the caller's connection and never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import is_postgresql
from payflow.errors import PayFlowError
from payflow.events.domain import Event
from payflow.ledger import Cursor
from payflow.pagination import newest_first
from payflow.timestamps import now_ns, to_rfc3339
from payflow.webhooks import models
from payflow.webhooks.domain import (
    PENDING,
    Attempt,
    Delivery,
    Endpoint,
    message_id,
    payload,
)

_table = models.deliveries
# The attempts one delivery's detail shows, newest first (a delivery replayed many times
# has more; the newest are what tell what is going on).
ATTEMPTS_SHOWN_MAX = 200


def delivery_of(row: Any) -> Delivery:
    values = dict(row._mapping)
    values.pop("payload", None)
    return Delivery(**values)


async def enqueue(conn: AsyncConnection, event: Event, endpoints: Sequence[Endpoint]) -> None:
    """Queue `event` for each of `endpoints`, in one statement. A delivery that exists
    (the event came again) is left as it is: one message per (endpoint, event)."""
    if not endpoints:
        return
    at = now_ns()
    body = payload(event.id, event.type, to_rfc3339(event.occurred_at), event.data)
    rows = [
        {
            "id": message_id(endpoint.id, event.id),
            "endpoint_id": endpoint.id,
            "event_id": event.id,
            "event_type": event.type,
            "occurred_at": event.occurred_at,
            "payload": body,
            "status": PENDING,
            "attempts": 0,
            "round_attempts": 0,
            "next_attempt_at": at,
            "last_attempt_at": None,
            "last_status_code": None,
            "last_error": None,
            "delivered_at": None,
            "created_at": at,
            "updated_at": at,
        }
        for endpoint in endpoints
    ]
    dialect = postgresql if is_postgresql(conn) else sqlite
    await conn.execute(dialect.insert(_table).on_conflict_do_nothing(), rows)


async def list_deliveries(
    conn: AsyncConnection,
    endpoint_id: uuid.UUID,
    *,
    status: str | None,
    event_type: str | None,
    limit: int,
    after: Cursor | None,
) -> tuple[list[Delivery], Cursor | None]:
    """An endpoint's deliveries, newest first, perhaps of one status or event type."""
    query = select(_table).where(_table.c.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(_table.c.status == status)
    if event_type is not None:
        query = query.where(_table.c.event_type == event_type)
    rows, cursor = await newest_first(conn, _table, query, limit=limit, after=after)
    return [delivery_of(row) for row in rows], cursor


async def get_delivery(
    conn: AsyncConnection, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> tuple[Delivery, str] | None:
    """One of the endpoint's deliveries and its payload."""
    row = (
        await conn.execute(
            select(_table).where(_table.c.id == delivery_id, _table.c.endpoint_id == endpoint_id)
        )
    ).first()
    return (delivery_of(row), row.payload) if row is not None else None


async def list_attempts(conn: AsyncConnection, delivery_id: uuid.UUID) -> list[Attempt]:
    """A delivery's attempts, newest first (at most `ATTEMPTS_SHOWN_MAX`)."""
    table = models.attempts
    rows = await conn.execute(
        select(table)
        .where(table.c.delivery_id == delivery_id)
        .order_by(table.c.attempted_at.desc(), table.c.id.desc())
        .limit(ATTEMPTS_SHOWN_MAX)
    )
    return [Attempt(**row._mapping) for row in rows]


def _replayed(at: int) -> dict[str, Any]:
    # A new round: the retry schedule starts over. `attempts` and the attempt log keep
    # the history; the message id, and so `webhook-id`, stay the same.
    return {
        "status": PENDING,
        "round_attempts": 0,
        "next_attempt_at": at,
        "last_error": None,
        "updated_at": at,
    }


async def replay(
    conn: AsyncConnection, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> Delivery | None:
    """Send the delivery again, now, whatever its status. None if unknown."""
    await conn.execute(
        update(_table)
        .where(_table.c.id == delivery_id, _table.c.endpoint_id == endpoint_id)
        .values(**_replayed(now_ns()))
    )
    found = await get_delivery(conn, endpoint_id, delivery_id)
    return found[0] if found is not None else None


async def replay_range(
    conn: AsyncConnection, endpoint_id: uuid.UUID, *, since: int, until: int, count_max: int
) -> int:
    """Send again every delivery of the endpoint whose event occurred in [since, until);
    how many. More than `count_max` is refused (422) and nothing is replayed."""
    in_range = (
        _table.c.endpoint_id == endpoint_id,
        _table.c.occurred_at >= since,
        _table.c.occurred_at < until,
    )
    count = (await conn.execute(select(func.count()).where(*in_range))).scalar_one()
    if count > count_max:
        raise PayFlowError(
            "replay_range_too_large",
            f"{count} deliveries are in the range; replay at most {count_max} at once "
            "(narrow `since`/`until`)",
            http_status=422,
        )
    if count:
        await conn.execute(update(_table).where(*in_range).values(**_replayed(now_ns())))
    return int(count)
