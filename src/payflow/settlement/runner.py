"""Running the cycle: the worker's loop (`run_due`, next to the `settlement` consumer) and
an operator's run now (`run_now`). Safe in any number of processes at once (cycle.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.config import Settings
from payflow.db import read, run_in_transaction
from payflow.events.consumers import sleep_or_stop
from payflow.events.signals import outbox_committed
from payflow.settlement import models
from payflow.settlement.cycle import settle
from payflow.settlement.domain import Settlement
from payflow.timestamps import now_ns

log = logging.getLogger(__name__)


async def _settle_due(
    engine: AsyncEngine, settings: Settings, merchant_id: uuid.UUID, *, now: int
) -> list[Settlement]:
    async def work(conn: AsyncConnection) -> list[Settlement]:
        return await settle(conn, settings, merchant_ids=[merchant_id], now=now, force=False)

    return await run_in_transaction(engine, work)


async def run_due(
    engine: AsyncEngine, settings: Settings, *, now: int | None = None
) -> tuple[list[Settlement], bool]:
    """Settle the merchants whose cycle is due, each in its own transaction (its wallet
    is locked only while it is settled). Returns the settlements made, and whether more
    merchants may be due than one round takes."""
    now = now if now is not None else now_ns()
    table = models.schedules
    limit = settings.settlement_merchants_max
    async with read(engine) as conn:
        due = list(
            (
                await conn.execute(
                    select(table.c.merchant_id)
                    .where(table.c.next_run_at <= now)
                    .order_by(table.c.next_run_at)
                    .limit(limit)
                )
            ).scalars()
        )
    made: list[Settlement] = []
    for merchant_id in due:
        made += await _settle_due(engine, settings, merchant_id, now=now)
    if made:
        # Wake the local relay and the payouts consumer rather than wait for a poll.
        outbox_committed()
    return made, len(due) >= limit


async def run_now(
    conn: AsyncConnection, settings: Settings, *, merchant_id: uuid.UUID | None
) -> list[Settlement]:
    """An operator's run, in the caller's transaction: settle one merchant now whatever its
    schedule says, or (`None`) every merchant with unsettled payments, up to
    `settlement_merchants_max` of them."""
    if merchant_id is not None:
        ids = [merchant_id]
    else:
        items = models.items
        ids = list(
            (
                await conn.execute(
                    select(items.c.merchant_id)
                    .where(items.c.settlement_id.is_(None))
                    .group_by(items.c.merchant_id)
                    .order_by(items.c.merchant_id)
                    .limit(settings.settlement_merchants_max)
                )
            ).scalars()
        )
    if not ids:
        return []
    return await settle(conn, settings, merchant_ids=ids, now=now_ns(), force=True)


async def run_cycles(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Settle due merchants until `stop`: every `settlement_poll_interval_s`, or at once
    again while a round leaves merchants due."""
    while not stop.is_set():
        more = False
        try:
            _, more = await run_due(engine, settings)
        except Exception:
            log.exception("settlement cycle failed; retrying")
        if not more:
            await sleep_or_stop(stop, settings.settlement_poll_interval_s)
