"""The dead-letter queue: events a consumer gave up on, kept for operators to replay.

Parked letters live in the database, whichever broker carried them, so operators see one
queue through the API and the CLI. Replaying one marks it `replaying`; a worker running
that consumer applies it in a transaction like any delivery and marks it `replayed`, or
parks it again with the new error.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.db import is_postgresql, run_in_transaction
from payflow.errors import PayFlowError
from payflow.events import models
from payflow.events.domain import Event, EventError
from payflow.ids import uuid7
from payflow.ledger import Cursor
from payflow.pagination import newest_first
from payflow.timestamps import now_ns

PARKED = "parked"
REPLAYING = "replaying"
REPLAYED = "replayed"
STATUSES = (PARKED, REPLAYING, REPLAYED)
ERROR_LENGTH_MAX = 2000
_UNREADABLE = uuid.UUID("3c0d9f7e-5a41-4f0b-9b7e-0f6a2d4c8e15")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: uuid.UUID
    consumer: str
    event_id: uuid.UUID
    event_type: str
    body: str
    status: str
    attempts: int
    error: str
    created_at: int
    parked_at: int
    replay_requested_at: int | None
    resolved_at: int | None


def _dead_letter(row: object) -> DeadLetter:
    return DeadLetter(**row._mapping)  # type: ignore[attr-defined]


async def park(
    engine: AsyncEngine,
    *,
    consumer: str,
    body: bytes,
    event: Event | None,
    error: str,
    attempts: int,
) -> None:
    """Park one delivery (a malformed body too: its id is then derived from its bytes)."""
    event_id = event.id if event else uuid.uuid5(_UNREADABLE, hashlib.sha256(body).hexdigest())
    row = {
        "id": uuid7(),
        "consumer": consumer,
        "event_id": event_id,
        "event_type": event.type if event else "unreadable",
        "body": body.decode("utf-8", errors="replace"),
        "status": PARKED,
        "attempts": attempts,
        "error": error[:ERROR_LENGTH_MAX],
        "created_at": now_ns(),
    }
    row["parked_at"] = row["created_at"]

    async def write(conn: AsyncConnection) -> None:
        dialect = postgresql if is_postgresql(conn) else sqlite
        statement = dialect.insert(models.dead_letters).values(**row)
        # Parked again (a redelivery after a crash): keep one letter, count the attempts.
        statement = statement.on_conflict_do_update(
            index_elements=["consumer", "event_id"],
            set_={
                "status": PARKED,
                "attempts": models.dead_letters.c.attempts + attempts,
                "error": row["error"],
                "parked_at": row["parked_at"],
                "resolved_at": None,
            },
        )
        await conn.execute(statement)

    await run_in_transaction(engine, write)


async def list_dead_letters(
    conn: AsyncConnection,
    *,
    consumer: str | None,
    status: str | None,
    after: Cursor | None,
    limit: int,
) -> tuple[list[DeadLetter], Cursor | None]:
    """Dead letters, newest first, optionally for one consumer and status."""
    table = models.dead_letters
    query = select(table)
    if consumer is not None:
        query = query.where(table.c.consumer == consumer)
    if status is not None:
        query = query.where(table.c.status == status)
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return [_dead_letter(row) for row in rows], cursor


async def get_dead_letter(conn: AsyncConnection, letter_id: uuid.UUID) -> DeadLetter | None:
    table = models.dead_letters
    row = (await conn.execute(select(table).where(table.c.id == letter_id))).first()
    return _dead_letter(row) if row else None


async def request_replay(conn: AsyncConnection, letter_id: uuid.UUID) -> DeadLetter:
    """Mark a parked letter for replay; 404 if unknown, 409 if it is not parked."""
    letter = await get_dead_letter(conn, letter_id)
    if letter is None:
        raise PayFlowError(
            "dead_letter_not_found", f"no such dead letter {letter_id}", http_status=404
        )
    if letter.status != PARKED:
        raise PayFlowError(
            "dead_letter_not_parked",
            f"the dead letter is {letter.status}, only parked letters are replayed",
            http_status=409,
        )
    table = models.dead_letters
    await conn.execute(
        update(table)
        .where(table.c.id == letter_id)
        .values(status=REPLAYING, replay_requested_at=now_ns())
    )
    return (await get_dead_letter(conn, letter_id)) or letter


async def request_replay_all(conn: AsyncConnection, *, consumer: str | None) -> int:
    """Mark every parked letter (of one consumer, or all) for replay; how many."""
    table = models.dead_letters
    statement = update(table).where(table.c.status == PARKED)
    if consumer is not None:
        statement = statement.where(table.c.consumer == consumer)
    result = await conn.execute(statement.values(status=REPLAYING, replay_requested_at=now_ns()))
    return result.rowcount


async def claim_replays(
    conn: AsyncConnection, *, consumers: Sequence[str], limit: int
) -> list[DeadLetter]:
    """Letters waiting for replay by one of `consumers`, locked for this transaction."""
    table = models.dead_letters
    query = (
        select(table)
        .where(table.c.status == REPLAYING, table.c.consumer.in_(list(consumers)))
        .order_by(table.c.replay_requested_at, table.c.id)
        .limit(limit)
    )
    if is_postgresql(conn):
        query = query.with_for_update(skip_locked=True)
    return [_dead_letter(row) for row in (await conn.execute(query)).all()]


async def resolve(conn: AsyncConnection, letter: DeadLetter, *, error: str | None) -> None:
    """After a replay: `replayed`, or parked again with the new error."""
    table = models.dead_letters
    values: dict[str, object]
    if error is None:
        values = {"status": REPLAYED, "resolved_at": now_ns()}
    else:
        values = {"status": PARKED, "attempts": letter.attempts + 1}
        values["error"] = error[:ERROR_LENGTH_MAX]
    await conn.execute(update(table).where(table.c.id == letter.id).values(**values))


def event_of(letter: DeadLetter) -> Event | None:
    try:
        return Event.decode(letter.body)
    except EventError:
        return None
