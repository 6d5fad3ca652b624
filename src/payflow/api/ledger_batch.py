"""Money-moving requests, coalesced: one ledger batch, one transaction, many replies.

Each request's Idempotency-Key claim, its transfers, its extra rows (transfer records,
holds, audit entries, outbox events) and its idempotency reply are written in the batch's
single transaction, so a reply is stored exactly when its effect is, and a crash leaves
neither.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.api.batcher import MicroBatcher
from payflow.api.idempotency import Claim, IdempotencyStore, KeyRequest, claim_completions
from payflow.api.replies import Completion, Reply
from payflow.bulk import BulkWrite, RowsTaken
from payflow.config import Settings
from payflow.db import HeldConnections, create_engine, is_postgresql
from payflow.errors import PayFlowError
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
    # The key to claim in the batch's transaction; `claim` is then provisional (its
    # resource id is `key.resource_id`). Without it, `claim` is already held.
    key: KeyRequest | None = None


@dataclass(frozen=True, slots=True)
class Replayed:
    """The key was used before for this very request: its stored reply."""

    reply: Reply


# What a request gets back from its batch: its reply; a replay; the 409/422 its key
# earned; or a stale claim of another attempt, now held, whose resource id the request
# must plan again with (its work was not applied).
BatchResult = Reply | Replayed | PayFlowError | Claim


async def _claim(
    conn: AsyncConnection, items: list[LedgerWork], keys: IdempotencyStore
) -> tuple[list[LedgerWork], list[BatchResult | None]]:
    """Claim the keys of the items that bring one: the items to apply (with their claims)
    and, for the others, what they get instead."""
    asking = [i for i, item in enumerate(items) if item.key is not None]
    results: list[BatchResult | None] = [None] * len(items)
    if not asking:
        return items, results
    claimed = await keys.claims(conn, [k for i in asking if (k := items[i].key) is not None])
    for i, outcome in zip(asking, claimed, strict=True):
        key = items[i].key
        assert key is not None
        if isinstance(outcome, Claim) and outcome.resource_id == key.resource_id:
            items[i] = replace(items[i], claim=outcome, key=None)
        elif isinstance(outcome, Reply):
            results[i] = Replayed(outcome)
        else:
            results[i] = outcome
    return [item for item, result in zip(items, results, strict=True) if result is None], results


async def _apply(
    conn: AsyncConnection, items: list[LedgerWork], keys: IdempotencyStore
) -> list[BatchResult]:
    """Claim the batch's keys, then apply the work of those claimed."""
    # The batch's transaction may be retried: claim on a copy of the list.
    applying, results = await _claim(conn, list(items), keys)
    replies = iter(await _apply_claimed(conn, applying, keys))
    return [next(replies) if result is None else result for result in results]


async def _apply_unclaimed(
    conn: AsyncConnection, items: list[LedgerWork], keys: IdempotencyStore
) -> list[BatchResult]:
    """Apply all the work and insert the new keys already complete, with the write: one
    statement and one round trip fewer than `_apply`, and no update of each key. Raises
    `RowsTaken` (the caller rolls back and runs `_apply`) if any key was there already: a
    replay, a request still in flight elsewhere, a key reused for another request."""
    return list(await _apply_claimed(conn, items, keys))


def _completions(items: list[LedgerWork], outcomes: list[TransferOutcome]) -> list[Completion]:
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
    return completions


def _rows(
    items: list[LedgerWork], completions: list[Completion], keys: IdempotencyStore
) -> BulkWrite:
    """The records, the events and the stored replies of the batch: into held claims, or
    with keys not claimed yet (inserted complete, guarded)."""
    rows_by_table: dict[Table, list[dict[str, Any]]] = defaultdict(list)
    for completion in completions:
        for target, row in completion.inserts:
            rows_by_table[target].append(row)
    held: list[tuple[Claim, Reply]] = []
    new: list[tuple[Claim, KeyRequest, Reply]] = []
    for item, completion in zip(items, completions, strict=True):
        if item.key is not None:
            assert item.claim is not None, "work with a key carries its provisional claim"
            new.append((item.claim, item.key, completion.reply))
        elif item.claim is not None:
            held.append((item.claim, completion.reply))
    return BulkWrite(rows_by_table, [claim_completions(held)], keys.completed(new) if new else None)


async def _apply_claimed(
    conn: AsyncConnection, items: list[LedgerWork], keys: IdempotencyStore
) -> list[Reply]:
    completions: list[Completion] = []

    def finish(outcomes: list[TransferOutcome]) -> BulkWrite:
        completions[:] = _completions(items, outcomes)
        return _rows(items, completions, keys)

    # The batch's rows go out with the ledger's own write statement (on PostgreSQL).
    await create_transfers(conn, [t for item in items for t in item.transfers], with_writes=finish)
    # Statements update rows of earlier requests (a hold, a payment), never these inserts.
    for completion in completions:
        for statement in completion.statements:
            await conn.execute(statement)
    return [completion.reply for completion in completions]


# Every statement of a ledger batch reads or writes a few rows by key, but PostgreSQL's
# statistics lag on young or fast-growing tables and it then scans whole tables per
# batch (docs/decisions.md, "Ledger batches are planned by key"). On the batches' own
# connections only, rows are looked up by index and joined by nested loop whatever the
# statistics say; every other query of PayFlow is planned as usual.
KEYED_PLANS = {"enable_seqscan": "off", "enable_hashjoin": "off", "enable_mergejoin": "off"}


def create_ledger_engine(engine: AsyncEngine, settings: Settings) -> AsyncEngine:
    """The engine the ledger batches run on: on PostgreSQL a pool of their own (one
    connection per concurrent batch) planned by key; on SQLite `engine` (one writer)."""
    if not is_postgresql(engine):
        return engine
    pool = settings.model_copy(update={"database_pool_size": settings.api_batch_concurrency})
    return create_engine(settings=pool, server_settings=KEYED_PLANS)


# Batches that claim their keys first after one found a key taken (see below).
CLAIM_FIRST_AFTER_TAKEN = 64


def create_ledger_batcher(
    engine: AsyncEngine, settings: Settings, keys: IdempotencyStore
) -> MicroBatcher[LedgerWork, BatchResult]:
    """The process's micro-batcher for money moves (one flusher on SQLite's one writer).

    Each flusher keeps its connection between batches. On PostgreSQL a batch first
    inserts its new keys complete with the write (`_apply_unclaimed`); when one is taken,
    that batch and the next `CLAIM_FIRST_AFTER_TAKEN` claim their keys first (`_apply`),
    so replays and duplicates cost at most one rolled-back attempt each that many batches.
    """
    batcher: MicroBatcher[LedgerWork, BatchResult] | None = None
    # Under load a batch's commit begins the next batch's transaction.
    connections = HeldConnections(engine, begin_ahead=lambda: bool(batcher and batcher.loaded))
    unclaimed_first = is_postgresql(engine)
    claims_first = 0  # batches left that claim their keys first

    async def flush(items: list[LedgerWork]) -> list[BatchResult]:
        nonlocal claims_first
        if claims_first > 0:
            claims_first -= 1
        elif unclaimed_first and any(item.key is not None for item in items):
            try:
                replies = await connections.run(
                    lambda conn: _apply_unclaimed(conn, items, keys), keep_on=(RowsTaken,)
                )
            except RowsTaken:
                claims_first = CLAIM_FIRST_AFTER_TAKEN
            else:
                outbox_committed()
                return replies
        replies = await connections.run(lambda conn: _apply(conn, items, keys))
        outbox_committed()
        return replies

    batcher = MicroBatcher(
        flush=flush,
        size_max=settings.api_batch_size_max,
        concurrency=settings.api_batch_concurrency if is_postgresql(engine) else 1,
        queue_max=settings.api_batch_queue_max,
        wait_s_max=settings.api_batch_wait_ms_max / 1000,
        name="ledger",
        on_close=connections.close,
    )
    return batcher
