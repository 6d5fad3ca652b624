"""The inbox's use cases. Each takes the caller's connection and never commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import is_postgresql
from payflow.events.domain import Event
from payflow.identity.domain import User
from payflow.ledger import Cursor
from payflow.notifications import models
from payflow.notifications.domain import QUEUED, Notice, Notification, email_id, inbox_id
from payflow.pagination import newest_first
from payflow.timestamps import now_ns


def _notification(row: object) -> Notification:
    return Notification(**row._mapping)  # type: ignore[attr-defined]


async def store(
    conn: AsyncConnection, event: Event, notices: Sequence[Notice], people: dict[uuid.UUID, User]
) -> None:
    """Write `notices` to the inbox and queue their e-mails: one statement each, and rows
    that exist already (a redelivery) are left as they are."""
    if not notices:
        return
    dialect = postgresql if is_postgresql(conn) else sqlite
    inbox_rows = [
        {
            "id": inbox_id(event.id, n.user_id),
            "user_id": n.user_id,
            "event_id": event.id,
            "event_type": event.type,
            "title": n.title,
            "body": n.body,
            "created_at": event.occurred_at,
            "read_at": None,
        }
        for n in notices
    ]
    await conn.execute(dialect.insert(models.inbox).on_conflict_do_nothing(), inbox_rows)
    queued_at = now_ns()
    email_rows = [
        {
            "id": email_id(event.id, n.user_id),
            "user_id": n.user_id,
            "event_id": event.id,
            "event_type": event.type,
            "to_address": people[n.user_id].email,
            "subject": n.email.subject,
            "body": n.email.body,
            "status": QUEUED,
            "attempts": 0,
            "next_attempt_at": queued_at,
            "last_error": None,
            "created_at": queued_at,
            "sent_at": None,
        }
        for n in notices
        if n.email is not None
    ]
    if email_rows:
        await conn.execute(dialect.insert(models.emails).on_conflict_do_nothing(), email_rows)


async def list_inbox(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    unread_only: bool,
    limit: int,
    after: Cursor | None,
) -> tuple[list[Notification], Cursor | None]:
    """A user's notifications, newest first, perhaps only the unread ones."""
    table = models.inbox
    query = select(table).where(table.c.user_id == user_id)
    if unread_only:
        query = query.where(table.c.read_at.is_(None))
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return [_notification(row) for row in rows], cursor


async def unread_count(conn: AsyncConnection, *, user_id: uuid.UUID) -> int:
    table = models.inbox
    query = select(func.count()).where(table.c.user_id == user_id, table.c.read_at.is_(None))
    return int((await conn.execute(query)).scalar_one())


async def get_notification(
    conn: AsyncConnection, *, user_id: uuid.UUID, notification_id: uuid.UUID
) -> Notification | None:
    """The user's notification; None for an unknown id and for anybody else's."""
    table = models.inbox
    row = (
        await conn.execute(
            select(table).where(table.c.id == notification_id, table.c.user_id == user_id)
        )
    ).first()
    return _notification(row) if row is not None else None


async def mark_read(
    conn: AsyncConnection, *, user_id: uuid.UUID, notification_id: uuid.UUID
) -> Notification | None:
    """Mark one of the user's notifications read (once: a second call keeps the first
    time). None if the user has no such notification."""
    table = models.inbox
    await conn.execute(
        update(table)
        .where(
            table.c.id == notification_id,
            table.c.user_id == user_id,
            table.c.read_at.is_(None),
        )
        .values(read_at=now_ns())
    )
    return await get_notification(conn, user_id=user_id, notification_id=notification_id)


async def mark_all_read(conn: AsyncConnection, *, user_id: uuid.UUID) -> int:
    """Mark every unread notification of the user read; how many were unread."""
    table = models.inbox
    result = await conn.execute(
        update(table)
        .where(table.c.user_id == user_id, table.c.read_at.is_(None))
        .values(read_at=now_ns())
    )
    return result.rowcount
