"""Writing events: always into the outbox, in the transaction of the change they report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.events import models
from payflow.events.domain import Event, partition_of

# Fixed for the life of a database: changing it would move aggregates between relay
# partitions while events are in flight, and their order would no longer be kept.
PARTITIONS = 16


def outbox_row(event: Event) -> tuple[Table, dict[str, Any]]:
    """The outbox insert for `event`, for callers that batch their writes (the ledger batch)."""
    return models.outbox, {
        "id": event.id,
        "type": event.type,
        "version": event.version,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "partition": partition_of(event.aggregate_id, PARTITIONS),
        "occurred_at": event.occurred_at,
        "data": event.data_json(),
    }


async def emit(conn: AsyncConnection, events: Sequence[Event]) -> None:
    """Write `events` to the outbox in the caller's transaction (one statement)."""
    if events:
        await conn.execute(insert(models.outbox), [outbox_row(e)[1] for e in events])
