"""The payouts loops a worker runs next to the `payouts` consumer: the bank caller and the
sweeper. Both are safe to run in any number of processes at once."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.banksim.client import BankClient
from payflow.config import Settings
from payflow.events.consumers import sleep_or_stop
from payflow.events.signals import wait_for_events
from payflow.payouts import bank_calls, models, service
from payflow.payouts.domain import TERMINAL, Payout, Step
from payflow.payouts.handlers import lock_payout_accounts
from payflow.timestamps import now_ns

log = logging.getLogger(__name__)

table = models.payouts
NS = 1_000_000_000
# Steps a consumer takes on hearing the step's event; the sweeper takes them itself when
# the event has waited longer than the deadline (no worker, broker outage, parked event).
EVENT_DRIVEN = tuple(s.value for s in Step if s not in TERMINAL and s is not Step.CREDIT_DUE)


async def _call_one(
    engine: AsyncEngine, settings: Settings, client: BankClient, payout: Payout
) -> None:
    started_at = now_ns()
    answer = await bank_calls.call_bank(client, payout)
    async with engine.begin() as conn:
        await bank_calls.record(conn, settings, payout, answer, started_at=started_at)


async def call_due_once(
    engine: AsyncEngine, settings: Settings, client: BankClient, *, now: int | None = None
) -> int:
    """Claim the payouts whose bank call is due and make the calls, concurrently."""
    async with engine.begin() as conn:
        claimed = await bank_calls.claim_due(
            conn, settings, limit=settings.payout_batch_size_max, now=now
        )
    if claimed:
        results = await asyncio.gather(
            *(_call_one(engine, settings, client, p) for p in claimed), return_exceptions=True
        )
        for payout, result in zip(claimed, results, strict=True):
            if isinstance(result, Exception):
                # Recorded nowhere: the claim runs out and the call is made again.
                log.error(
                    "payout %s: recording the bank's answer failed: %r", payout.reference, result
                )
    return len(claimed)


async def run_bank_caller(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    """Make due bank calls until `stop`; polls, and wakes at once on local commits."""
    poll_s = settings.payout_poll_interval_ms / 1000
    async with BankClient(settings.bank_url, timeout_s=settings.bank_timeout_s) as client:
        while not stop.is_set():
            try:
                count = await call_due_once(engine, settings, client)
            except Exception:
                log.exception("payouts bank caller: retrying in 1 s")
                await sleep_or_stop(stop, 1.0)
                continue
            if count < settings.payout_batch_size_max:
                await wait_for_events(poll_s)


async def sweep_once(engine: AsyncEngine, settings: Settings, *, now: int | None = None) -> int:
    """Resolve sagas stuck past the deadline; returns how many were moved or nudged."""
    now = now or now_ns()
    deadline_ns = int(settings.payout_deadline_s * NS)
    limit = settings.payout_batch_size_max
    async with engine.begin() as conn:
        ids = (
            (
                await conn.execute(
                    select(table.c.id)
                    .where(table.c.step.in_(EVENT_DRIVEN), table.c.updated_at <= now - deadline_ns)
                    .order_by(table.c.updated_at)
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
    moved = 0
    for payout_id in ids:
        async with engine.begin() as conn:
            await lock_payout_accounts(conn, [payout_id])
            payout = await service.get_payout(conn, payout_id, for_update=True)
            if payout is not None and payout.step.value in EVENT_DRIVEN:
                moved += await service.advance(conn, payout) is not None
    # Past `not_after` the bank can no longer act on a credit it has not received, so its
    # answer is final: ask now rather than after the back-off.
    async with engine.begin() as conn:
        result = await conn.execute(
            update(table)
            .where(
                table.c.step == Step.CREDIT_DUE.value,
                table.c.not_after * NS <= now,
                table.c.inquire.is_(False),
                table.c.next_attempt_at > now,
                table.c.updated_at <= now - deadline_ns,
            )
            .values(inquire=True, next_attempt_at=now)
        )
    return moved + int(result.rowcount or 0)


async def run_sweeper(engine: AsyncEngine, settings: Settings, stop: asyncio.Event) -> None:
    interval_s = settings.payout_sweep_interval_s
    while not stop.is_set():
        try:
            await sweep_once(engine, settings)
        except Exception:
            log.exception("payouts sweeper failed; retrying")
        await sleep_or_stop(stop, interval_s)
