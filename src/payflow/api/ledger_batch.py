"""Money-moving requests, coalesced: one ledger batch, one transaction, many replies.

Each request's transfers, its extra rows (transfer records, holds, audit entries) and its
idempotency reply are written in the batch's single transaction, so a reply is stored
exactly when its effect is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.api.batcher import MicroBatcher
from payflow.api.idempotency import Claim, complete_claims
from payflow.api.replies import Completion, Reply
from payflow.config import Settings
from payflow.db import is_postgresql, run_in_transaction
from payflow.events.signals import outbox_committed
from payflow.ledger import Transfer, TransferOutcome, TransferResult, create_transfers


@dataclass(frozen=True, slots=True)
class LedgerWork:
    """One request's ledger transfers (a linked chain if several) and how to finish it.

    `complete` must be pure: the batch's transaction may be retried and call it again.
    """

    transfers: tuple[Transfer, ...]
    complete: Callable[[list[TransferOutcome]], Completion]
    claim: Claim | None = None


async def _apply(conn: AsyncConnection, items: list[LedgerWork]) -> list[Reply]:
    outcomes = await create_transfers(conn, [t for item in items for t in item.transfers])
    completions: list[Completion] = []
    start = 0
    for item in items:
        end = start + len(item.transfers)
        completion = item.complete(outcomes[start:end])
        if all(o.code is TransferResult.EXISTS for o in outcomes[start:end]):
            # Another attempt of this request (a takeover after its claim's lock ran out)
            # committed the transfers, and with them these rows: write them only once.
            completion = replace(completion, inserts=(), statements=())
        completions.append(completion)
        start = end
    rows_by_table: dict[Table, list[dict[str, Any]]] = defaultdict(list)
    for completion in completions:
        for target, row in completion.inserts:
            rows_by_table[target].append(row)
    for target, rows in rows_by_table.items():
        await conn.execute(insert(target), rows)
    for completion in completions:
        for statement in completion.statements:
            await conn.execute(statement)
    await complete_claims(
        conn,
        [
            (item.claim, completion.reply)
            for item, completion in zip(items, completions, strict=True)
            if item.claim is not None
        ],
    )
    return [completion.reply for completion in completions]


def create_ledger_batcher(
    engine: AsyncEngine, settings: Settings
) -> MicroBatcher[LedgerWork, Reply]:
    """The process's micro-batcher for money moves (one flusher on SQLite's one writer)."""

    async def flush(items: list[LedgerWork]) -> list[Reply]:
        replies = await run_in_transaction(engine, lambda conn: _apply(conn, items))
        outbox_committed()
        return replies

    return MicroBatcher(
        flush=flush,
        size_max=settings.api_batch_size_max,
        concurrency=settings.api_batch_concurrency if is_postgresql(engine) else 1,
        queue_max=settings.api_batch_queue_max,
        wait_s_max=settings.api_batch_wait_ms_max / 1000,
        name="ledger",
    )
