"""Newest-first keyset pagination over a table's (created_at, id), for API lists."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, Table, and_, or_
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.ledger import Cursor


async def newest_first(
    conn: AsyncConnection, table: Table, query: Select[Any], *, limit: int, after: Cursor | None
) -> tuple[list[Row[Any]], Cursor | None]:
    """Up to `limit` rows of `query` older than `after`, newest first, and the cursor of
    the next page (None at the end). One indexed range scan; no OFFSET."""
    if after is not None:
        query = query.where(
            or_(
                table.c.created_at < after.timestamp,
                and_(table.c.created_at == after.timestamp, table.c.id < after.id),
            )
        )
    ordered = query.order_by(table.c.created_at.desc(), table.c.id.desc()).limit(limit + 1)
    rows = list(await conn.execute(ordered))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, Cursor(rows[-1].created_at, rows[-1].id) if more else None
