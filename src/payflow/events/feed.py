"""Reading the outbox in commit order: the event feed and the embedded event log.

Sequence numbers are assigned when rows are inserted, not when they commit, so a reader
paging by sequence alone could pass a row whose transaction commits later and never see
it. On PostgreSQL each row also records its transaction id, and readers stop below the
oldest transaction still running (the snapshot's xmin): every row before that point is
final, and every row after it has a larger (txid, sequence) than anything returned.
SQLite has one writer, which commits in sequence order, so `txid` is 0 and the
sequence alone orders the feed.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import Row, and_, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import is_postgresql
from payflow.errors import PayFlowError
from payflow.events import models
from payflow.events.domain import Event

BIGINT_MAX = 2**63 - 1
# The oldest transaction still running on the cluster: nothing below it can still commit.
_FRONTIER = text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A place in the feed: after the event written by transaction `txid` as `sequence`."""

    txid: int
    sequence: int

    def encode(self) -> str:
        raw = json.dumps([self.txid, self.sequence], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text_: str) -> Position:
        """Parse a cursor; anything malformed is a 422 `cursor_invalid`."""
        try:
            padded = text_ + "=" * (-len(text_) % 4)
            txid, sequence = json.loads(base64.urlsafe_b64decode(padded.encode()))
            if not all(type(v) is int and 0 <= v <= BIGINT_MAX for v in (txid, sequence)):
                raise ValueError("out of range")
            return cls(txid, sequence)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise PayFlowError(
                "cursor_invalid", "the cursor is not one this API returned", http_status=422
            ) from None


START = Position(0, 0)


def event_of(row: Row[tuple[object, ...]]) -> Event:
    return Event(
        id=row.id,
        type=row.type,
        version=row.version,
        aggregate_type=row.aggregate_type,
        aggregate_id=row.aggregate_id,
        occurred_at=row.occurred_at,
        data=json.loads(row.data),
    )


async def read_after(
    conn: AsyncConnection,
    after: Position,
    *,
    limit: int,
    types: Collection[str] | None = None,
) -> tuple[list[tuple[Position, Event]], Position | None]:
    """Up to `limit` committed events after `after` in feed order, each with its position,
    and the position to continue from (None when nothing more is ready yet).
    """
    table = models.outbox
    query = select(table).where(
        or_(
            table.c.txid > after.txid,
            and_(table.c.txid == after.txid, table.c.sequence > after.sequence),
        )
    )
    if is_postgresql(conn):
        query = query.where(table.c.txid < _FRONTIER)
    if types is not None:
        query = query.where(table.c.type.in_(list(types)))
    query = query.order_by(table.c.txid, table.c.sequence).limit(limit + 1)
    rows = (await conn.execute(query)).all()
    more = len(rows) > limit
    items = [(Position(row.txid, row.sequence), event_of(row)) for row in rows[:limit]]
    return items, (items[-1][0] if more else None)


async def get_event(conn: AsyncConnection, event_id: uuid.UUID) -> tuple[Position, Event] | None:
    table = models.outbox
    row = (await conn.execute(select(table).where(table.c.id == event_id))).first()
    return (Position(row.txid, row.sequence), event_of(row)) if row else None


async def oldest_position(conn: AsyncConnection) -> Position | None:
    """The first event still kept (older ones were cleaned up), or None if none is."""
    table = models.outbox
    row = (
        await conn.execute(
            select(table.c.txid, table.c.sequence).order_by(table.c.txid, table.c.sequence).limit(1)
        )
    ).first()
    return Position(row.txid, row.sequence) if row else None
