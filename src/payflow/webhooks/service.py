"""Endpoints' use cases. Each takes the caller's connection and never commits.

`owner_id=None` means "whoever owns it" (operators reading); otherwise an endpoint of
someone else is answered as an unknown one: ids cannot be probed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.errors import PayFlowError
from payflow.events.outbox import emit
from payflow.ids import uuid7
from payflow.ledger import Cursor
from payflow.pagination import newest_first
from payflow.timestamps import now_ns
from payflow.webhooks import models
from payflow.webhooks.domain import (
    CANCELLED,
    DISABLED,
    ENABLED,
    FAILED,
    NS_PER_S,
    OWNER,
    PENDING,
    Endpoint,
    new_secret,
)
from payflow.webhooks.events import endpoint_disabled

_table = models.endpoints


def endpoint_of(row: Any) -> Endpoint:
    """The endpoint in a row of the endpoints table."""
    return endpoint_from(row._mapping)


def endpoint_from(mapping: Mapping[Any, Any]) -> Endpoint:
    """The endpoint in a mapping of the endpoints table's column names to values."""
    values = {name: mapping[name] for name in Endpoint.__dataclass_fields__}
    values["event_types"] = json.loads(values["event_types"])
    return Endpoint(**values)


def _live(owner_id: uuid.UUID | None) -> Select[Any]:
    query = select(_table).where(_table.c.deleted_at.is_(None))
    return query if owner_id is None else query.where(_table.c.owner_id == owner_id)


async def create_endpoint(
    conn: AsyncConnection,
    *,
    owner_id: uuid.UUID,
    url: str,
    event_types: list[str],
    description: str | None,
    endpoints_max: int,
) -> Endpoint:
    """A new, enabled endpoint with a fresh secret; at most `endpoints_max` per owner."""
    count = (
        await conn.execute(
            select(func.count()).where(_table.c.owner_id == owner_id, _table.c.deleted_at.is_(None))
        )
    ).scalar_one()
    if count >= endpoints_max:
        raise PayFlowError(
            "endpoint_limit_reached",
            f"an owner has at most {endpoints_max} webhook endpoints; delete one first",
            http_status=409,
        )
    at = now_ns()
    endpoint_id = uuid7()
    values = {
        "id": endpoint_id,
        "owner_id": owner_id,
        "url": url,
        "description": description,
        "event_types": json.dumps(event_types),
        "status": ENABLED,
        "disabled_reason": None,
        "disabled_at": None,
        "secret": new_secret(),
        "previous_secret": None,
        "previous_secret_expires_at": None,
        "failing_since": None,
        "failed_deliveries": 0,
        "created_at": at,
        "updated_at": at,
        "deleted_at": None,
    }
    await conn.execute(_table.insert().values(**values))
    found = await get_endpoint(conn, endpoint_id, owner_id=owner_id)
    assert found is not None
    return found


async def get_endpoint(
    conn: AsyncConnection, endpoint_id: uuid.UUID, *, owner_id: uuid.UUID | None
) -> Endpoint | None:
    """The endpoint, unless deleted or (with `owner_id`) someone else's."""
    row = (await conn.execute(_live(owner_id).where(_table.c.id == endpoint_id))).first()
    return endpoint_of(row) if row is not None else None


async def list_endpoints(
    conn: AsyncConnection, *, owner_id: uuid.UUID | None, limit: int, after: Cursor | None
) -> tuple[list[Endpoint], Cursor | None]:
    """Endpoints, newest first: the owner's, or (None) everybody's."""
    rows, cursor = await newest_first(conn, _table, _live(owner_id), limit=limit, after=after)
    return [endpoint_of(row) for row in rows], cursor


async def update_endpoint(
    conn: AsyncConnection,
    endpoint_id: uuid.UUID,
    *,
    owner_id: uuid.UUID,
    changes: dict[str, Any],
) -> Endpoint | None:
    """Change `url`, `event_types`, `description` and/or `enabled`. Enabling again starts
    the failure count afresh; disabling by the owner stops deliveries without notice."""
    endpoint = await get_endpoint(conn, endpoint_id, owner_id=owner_id)
    if endpoint is None:
        return None
    at = now_ns()
    values: dict[str, Any] = {k: v for k, v in changes.items() if k in ("url", "description")}
    if "event_types" in changes:
        values["event_types"] = json.dumps(changes["event_types"])
    enabled = changes.get("enabled")
    if enabled is True and endpoint.status == DISABLED:
        values.update(
            status=ENABLED,
            disabled_reason=None,
            disabled_at=None,
            failing_since=None,
            failed_deliveries=0,
        )
    if values:
        values["updated_at"] = at
        await conn.execute(update(_table).where(_table.c.id == endpoint_id).values(**values))
    if enabled is False:
        await disable(conn, endpoint, reason=OWNER, at=at)
    return await get_endpoint(conn, endpoint_id, owner_id=owner_id)


async def delete_endpoint(
    conn: AsyncConnection, endpoint_id: uuid.UUID, *, owner_id: uuid.UUID
) -> bool:
    """Delete the endpoint; its pending deliveries are cancelled. False if unknown."""
    at = now_ns()
    result = await conn.execute(
        update(_table)
        .where(
            _table.c.id == endpoint_id,
            _table.c.owner_id == owner_id,
            _table.c.deleted_at.is_(None),
        )
        .values(deleted_at=at, updated_at=at)
    )
    if result.rowcount == 0:
        return False
    await _stop_pending(
        conn, endpoint_id, status=CANCELLED, error="the endpoint was deleted", at=at
    )
    return True


async def rotate_secret(
    conn: AsyncConnection, endpoint_id: uuid.UUID, *, owner_id: uuid.UUID, overlap_s: int
) -> Endpoint | None:
    """A new secret; the current one keeps signing too for `overlap_s` (0: not at all).
    A secret still in an earlier overlap is dropped: at most two sign at once."""
    endpoint = await get_endpoint(conn, endpoint_id, owner_id=owner_id)
    if endpoint is None:
        return None
    at = now_ns()
    await conn.execute(
        update(_table)
        .where(_table.c.id == endpoint_id)
        .values(
            secret=new_secret(),
            previous_secret=endpoint.secret if overlap_s > 0 else None,
            previous_secret_expires_at=at + overlap_s * NS_PER_S if overlap_s > 0 else None,
            updated_at=at,
        )
    )
    return await get_endpoint(conn, endpoint_id, owner_id=owner_id)


async def disable(conn: AsyncConnection, endpoint: Endpoint, *, reason: str, at: int) -> bool:
    """Disable an enabled endpoint and fail its pending deliveries. Unless its owner did
    it, emit `webhook_endpoint.disabled` (the owner is told). False if it was disabled
    already (by a concurrent dispatcher, say): nothing happens twice."""
    result = await conn.execute(
        update(_table)
        .where(_table.c.id == endpoint.id, _table.c.status == ENABLED)
        .values(status=DISABLED, disabled_reason=reason, disabled_at=at, updated_at=at)
    )
    if result.rowcount == 0:
        return False
    await _stop_pending(conn, endpoint.id, status=FAILED, error="the endpoint is disabled", at=at)
    if reason != OWNER:
        await emit(conn, [endpoint_disabled(endpoint, reason=reason, at=at)])
    return True


async def _stop_pending(
    conn: AsyncConnection, endpoint_id: uuid.UUID, *, status: str, error: str, at: int
) -> None:
    table = models.deliveries
    await conn.execute(
        update(table)
        .where(table.c.endpoint_id == endpoint_id, table.c.status == PENDING)
        .values(status=status, last_error=error, updated_at=at)
    )
