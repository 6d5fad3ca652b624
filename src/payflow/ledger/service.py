"""The ledger's use cases. Each takes the caller's connection and never commits.

`create_transfers` is the batch engine's entrypoint: two reads, one locking read in id
order and one write per batch, whatever the batch size.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.bulk import BulkWrite
from payflow.config import get_settings
from payflow.db import is_postgresql
from payflow.errors import PayFlowError
from payflow.ledger import models, repository
from payflow.ledger.batch import BatchEngine
from payflow.ledger.domain import (
    ACCOUNT_FLAGS_CREATABLE,
    CODE_MAX,
    METADATA_BYTES_MAX,
    NIL_ID,
    Account,
    AccountFlags,
    AccountResult,
    CloseResult,
    Transfer,
    TransferFlags,
    TransferOutcome,
    expiry_transfer_id,
)
from payflow.ledger.validation import check_fields
from payflow.money import is_currency

_RESOLUTION = int(TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING)


def _check_batch_size(size: int) -> None:
    size_max = get_settings().ledger_batch_size_max
    if size > size_max:
        raise PayFlowError(
            "batch_too_large",
            f"a batch holds at most {size_max} items, got {size}",
            http_status=413,
        )


def _batch_timestamp(now_ns: int | None, accounts_last: int) -> int:
    """A timestamp for the batch's first transfer: after every earlier transfer on the
    locked accounts, even if this process's clock is behind another's or stepped back.
    """
    return max(now_ns if now_ns is not None else time.time_ns(), accounts_last + 1)


def _accounts_to_lock(
    transfers: Sequence[Transfer], known: dict[uuid.UUID, Transfer]
) -> set[uuid.UUID]:
    ids: set[uuid.UUID] = set()
    for t in transfers:
        for account_id in (t.debit_account_id, t.credit_account_id):
            if isinstance(account_id, uuid.UUID):
                ids.add(account_id)
        pending = known.get(t.pending_id) if isinstance(t.pending_id, uuid.UUID) else None
        if pending is not None:
            assert pending.debit_account_id and pending.credit_account_id
            ids.add(pending.debit_account_id)
            ids.add(pending.credit_account_id)
    ids.discard(NIL_ID)
    return ids


async def create_transfers(
    conn: AsyncConnection,
    transfers: Sequence[Transfer],
    *,
    now_ns: int | None = None,
    allow_expiry: bool = False,
    with_writes: Callable[[list[TransferOutcome]], BulkWrite] | None = None,
) -> list[TransferOutcome]:
    """Apply a batch of transfers; one outcome per transfer, in order.

    Expected failures are outcome codes, never exceptions. May raise a retryable
    database error (see `payflow.db.run_in_transaction`) when a concurrent batch wrote
    the same transfer id first; the retry then reports `exists`.

    `with_writes` (pure: the transaction may be retried) turns the outcomes into the
    caller's own rows (records, events, replies), written by the batch's one write
    statement: no extra round trip while the accounts are locked.
    """
    _check_batch_size(len(transfers))
    if not transfers:
        if with_writes is not None:
            await with_writes([]).run(conn)
        return []
    field_codes = [check_fields(t, allow_expiry=allow_expiry) for t in transfers]
    wanted: set[uuid.UUID] = set()
    for t in transfers:
        if isinstance(t.id, uuid.UUID):
            wanted.add(t.id)
        if isinstance(t.pending_id, uuid.UUID):
            wanted.add(t.pending_id)
    # The locking statements order by id themselves; no need to sort here.
    resolving = any(isinstance(t.flags, int) and t.flags & _RESOLUTION for t in transfers)
    if resolving:
        # A post or void names only its pending transfer: read those first to learn
        # which accounts to lock.
        known, resolved = await repository.load_transfers(conn, wanted)
        to_lock = _accounts_to_lock(transfers, known)
        accounts, accounts_last = await repository.lock_accounts(conn, to_lock)
        if is_postgresql(conn):
            # Read again under the locks, in a new statement (a statement's snapshot
            # predates its own lock waits): a concurrent batch may have posted or voided
            # one of these pending transfers since the first read. Pending transfers never
            # change accounts, so the locks taken are the right ones. SQLite's one writer
            # cannot interleave like that.
            known, resolved = await repository.load_transfers(conn, wanted)
    else:
        known, resolved, accounts, accounts_last = await repository.load_and_lock(
            conn, wanted, _accounts_to_lock(transfers, {})
        )
    timestamp = _batch_timestamp(now_ns, accounts_last)
    engine = BatchEngine(
        accounts=accounts,
        known=known,
        resolved=resolved,
        timestamp=timestamp,
        allow_expiry=allow_expiry,
    )
    outcomes = engine.apply(transfers, field_codes)
    await repository.write_batch(
        conn,
        engine.writes,
        accounts.values(),
        last_timestamp=timestamp + len(transfers),
        also=with_writes(outcomes) if with_writes is not None else None,
    )
    return outcomes


def _check_account(account: Account) -> AccountResult | None:
    if not isinstance(account.id, uuid.UUID):
        return AccountResult.ID_INVALID
    if account.id == NIL_ID:
        return AccountResult.ID_MUST_NOT_BE_ZERO
    flags = account.flags
    if isinstance(flags, bool) or not isinstance(flags, int) or flags & ~ACCOUNT_FLAGS_CREATABLE:
        return AccountResult.FLAGS_INVALID
    both = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS
    if flags & both == both:
        return AccountResult.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if not is_currency(account.currency):
        return AccountResult.CURRENCY_UNKNOWN
    if type(account.code) is not int or not 0 <= account.code <= CODE_MAX:
        return AccountResult.CODE_INVALID
    if account.metadata is not None:
        if not isinstance(account.metadata, dict):
            return AccountResult.METADATA_INVALID
        try:
            size = len(json.dumps(account.metadata, allow_nan=False).encode())
        except (TypeError, ValueError):
            return AccountResult.METADATA_INVALID
        if size > METADATA_BYTES_MAX:
            return AccountResult.METADATA_INVALID
    if any(
        (
            account.debits_pending,
            account.debits_posted,
            account.credits_pending,
            account.credits_posted,
        )
    ):
        return AccountResult.FLAGS_INVALID
    return None


def _compare_account(account: Account, existing: Account) -> AccountResult:
    # A retry of an account created before it was closed is still the same account.
    if int(account.flags) != int(existing.flags) & ~int(AccountFlags.CLOSED):
        return AccountResult.EXISTS_WITH_DIFFERENT_FLAGS
    if account.code != existing.code:
        return AccountResult.EXISTS_WITH_DIFFERENT_CODE
    if account.currency != existing.currency:
        return AccountResult.EXISTS_WITH_DIFFERENT_CURRENCY
    if account.metadata != existing.metadata:
        return AccountResult.EXISTS_WITH_DIFFERENT_METADATA
    return AccountResult.EXISTS


async def create_accounts(
    conn: AsyncConnection, accounts: Sequence[Account], *, now_ns: int | None = None
) -> list[AccountResult]:
    """Create accounts; one result per account. A retry with equal fields is `exists`."""
    from payflow.ledger.queries import lookup_accounts

    _check_batch_size(len(accounts))
    ids = [a.id for a in accounts if isinstance(a.id, uuid.UUID)]
    existing = {a.id: a for a in await lookup_accounts(conn, ids)}
    timestamp = now_ns if now_ns is not None else time.time_ns()
    results: list[AccountResult] = []
    rows: list[dict[str, object]] = []
    for index, account in enumerate(accounts):
        code = _check_account(account)
        if code is None and account.metadata is not None:
            # Compare and store metadata as JSON gives it back (string keys, lists), so a
            # retry matches whether or not the first attempt is still in this batch.
            account = replace(account, metadata=json.loads(json.dumps(account.metadata)))
        if code is None and account.id in existing:
            code = _compare_account(account, existing[account.id])
        if code is None:
            stored = Account(
                id=account.id,
                currency=account.currency,
                code=account.code,
                flags=AccountFlags(account.flags),
                metadata=account.metadata,
                timestamp=timestamp + index,
            )
            existing[account.id] = stored
            rows.append(
                {
                    "id": account.id,
                    "currency": account.currency,
                    "code": account.code,
                    "flags": int(account.flags),
                    "metadata": account.metadata,
                    "timestamp": stored.timestamp,
                    "debits_pending": 0,
                    "debits_posted": 0,
                    "credits_pending": 0,
                    "credits_posted": 0,
                    "last_transfer_timestamp": 0,
                }
            )
        results.append(code or AccountResult.OK)
    if rows:
        await conn.execute(models.accounts.insert(), rows)
    return results


async def close_accounts(
    conn: AsyncConnection, account_ids: Sequence[uuid.UUID]
) -> list[CloseResult]:
    """Close accounts: no transfer may debit or credit them afterwards.

    An account with money on hold cannot close: its holds must be posted or voided first.
    """
    _check_batch_size(len(account_ids))
    locked, _ = await repository.lock_accounts(conn, set(account_ids))
    results: list[CloseResult] = []
    closing: set[uuid.UUID] = set()
    for account_id in account_ids:
        state = locked.get(account_id)
        if state is None:
            results.append(CloseResult.ACCOUNT_NOT_FOUND)
        elif state.flags & AccountFlags.CLOSED or account_id in closing:
            results.append(CloseResult.ACCOUNT_ALREADY_CLOSED)
        elif state.debits_pending or state.credits_pending:
            results.append(CloseResult.ACCOUNT_HAS_PENDING_TRANSFERS)
        else:
            closing.add(account_id)
            results.append(CloseResult.OK)
    if closing:
        table = models.accounts
        await conn.execute(
            update(table)
            .where(table.c.id.in_(closing))
            .values(flags=table.c.flags.op("|")(int(AccountFlags.CLOSED)))
        )
    return results


async def expire_pending_transfers(
    conn: AsyncConnection, *, now_ns: int | None = None, limit: int | None = None
) -> int:
    """Void pending transfers whose timeout has passed; returns how many expired.

    Each expiry is a void with a derived id, so two sweepers never expire one twice;
    on PostgreSQL they also skip each other's claimed rows.
    """
    now_ns = now_ns if now_ns is not None else time.time_ns()
    limit = limit or get_settings().ledger_expiry_batch_size
    table = models.pending_expiries
    query = (
        select(table.c.transfer_id)
        .where(table.c.expires_at <= now_ns)
        .order_by(table.c.expires_at)
        .limit(limit)
    )
    if is_postgresql(conn):
        query = query.with_for_update(skip_locked=True)
    due = [row[0] for row in await conn.execute(query)]
    if not due:
        return 0
    voids = [
        Transfer(
            id=expiry_transfer_id(pending_id),
            pending_id=pending_id,
            flags=int(TransferFlags.VOID_PENDING | TransferFlags.EXPIRY),
        )
        for pending_id in due
    ]
    outcomes = await create_transfers(conn, voids, now_ns=now_ns, allow_expiry=True)
    return sum(1 for outcome in outcomes if outcome.ok)


async def lock_accounts(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> None:
    """Lock these accounts (those that exist) until the caller's transaction ends, in id
    order with one statement.

    For callers that will make several ledger calls in one transaction: taking every lock
    up front, ordered like the ledger's own batches take theirs, means two transactions
    never wait for each other in a cycle.
    """
    await repository.lock_accounts(conn, set(ids))
