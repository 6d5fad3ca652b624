"""Bounded cleanup: old events and consumers' old records are deleted in rounds.

An event is deleted once it is older than the retention and nobody needs it: with a
broker, once the relay published it; in the embedded log, once every consumer's position
is past it. Each round deletes at most `events_cleanup_batch_max` rows per table, so a
backlog is worked off over several rounds instead of one long transaction.
"""

from __future__ import annotations

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.config import Settings
from payflow.events import models
from payflow.timestamps import now_ns


async def cleanup_once(conn: AsyncConnection, settings: Settings, *, local_log: bool) -> int:
    """Delete one bounded round of expired rows; how many rows went."""
    cutoff = now_ns() - settings.events_retention_s * 1_000_000_000
    limit = settings.events_cleanup_batch_max
    outbox = models.outbox
    expired = select(outbox.c.sequence).where(outbox.c.occurred_at < cutoff)
    if local_log:
        offsets = models.offsets
        slowest = (
            await conn.execute(
                select(offsets.c.txid, offsets.c.sequence)
                .order_by(offsets.c.txid, offsets.c.sequence)
                .limit(1)
            )
        ).first()
        if slowest is None:
            return 0
        expired = expired.where(
            or_(
                outbox.c.txid < slowest.txid,
                and_(outbox.c.txid == slowest.txid, outbox.c.sequence <= slowest.sequence),
            )
        )
    else:
        expired = expired.where(outbox.c.published_at.is_not(None))
    deleted = await conn.execute(
        delete(outbox).where(outbox.c.sequence.in_(expired.limit(limit).scalar_subquery()))
    )
    processed = models.processed
    old_records = (
        select(processed.c.consumer, processed.c.event_id)
        .where(processed.c.processed_at < cutoff)
        .limit(limit)
    )
    records = (await conn.execute(old_records)).all()
    for consumer in {r.consumer for r in records}:
        ids = [r.event_id for r in records if r.consumer == consumer]
        await conn.execute(
            delete(processed).where(processed.c.consumer == consumer, processed.c.event_id.in_(ids))
        )
    return deleted.rowcount + len(records)


async def backlog(conn: AsyncConnection) -> dict[str, int]:
    """Unpublished events and the oldest one's age, for /metrics and `payflow events`."""
    outbox = models.outbox
    row = (
        await conn.execute(
            select(func.count(), func.min(outbox.c.occurred_at)).where(
                outbox.c.published_at.is_(None)
            )
        )
    ).one()
    oldest_ns = row[1]
    return {
        "unpublished": int(row[0]),
        "oldest_unpublished_age_ms": (now_ns() - oldest_ns) // 1_000_000 if oldest_ns else 0,
    }
