"""Expiring ownership in the database: one relay per partition, one reader per log.

A lease is a row (name, owner, expires_at). Taking one succeeds when it is free, expired
or already ours; holding it means renewing it before it expires. A process that dies
simply stops renewing, and another takes over once the lease runs out. This works the
same on PostgreSQL and SQLite, which advisory locks would not.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import is_postgresql
from payflow.events import models
from payflow.timestamps import now_ns


def new_owner_id() -> str:
    """This process's owner id: readable in the leases table, unique across restarts."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def acquire(conn: AsyncConnection, name: str, *, owner: str, ttl_s: float) -> bool:
    """Take or renew lease `name` for `ttl_s`; False if another owner holds it."""
    now = now_ns()
    expires_at = now + int(ttl_s * 1e9)
    table = models.leases
    result = await conn.execute(
        update(table)
        .where(table.c.name == name, (table.c.owner == owner) | (table.c.expires_at < now))
        .values(owner=owner, expires_at=expires_at)
    )
    if result.rowcount == 1:
        return True
    dialect = postgresql if is_postgresql(conn) else sqlite
    inserted = await conn.execute(
        dialect.insert(table)
        .values(name=name, owner=owner, expires_at=expires_at)
        .on_conflict_do_nothing()
    )
    return inserted.rowcount == 1


async def release(conn: AsyncConnection, names: Sequence[str], *, owner: str) -> None:
    """Give up leases we hold (on shutdown, or to let another process share the work)."""
    if names:
        table = models.leases
        await conn.execute(
            delete(table).where(table.c.name.in_(list(names)), table.c.owner == owner)
        )


async def live_owners(conn: AsyncConnection, prefix: str) -> set[str]:
    """Owners holding an unexpired lease whose name starts with `prefix`."""
    table = models.leases
    rows = await conn.execute(
        select(table.c.owner).where(
            table.c.name.startswith(prefix, autoescape=True), table.c.expires_at >= now_ns()
        )
    )
    return set(rows.scalars())
