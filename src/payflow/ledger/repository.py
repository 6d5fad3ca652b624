"""Set-based reads and writes of a ledger batch: a constant number of statements per batch.

PostgreSQL passes each column as one array and expands it with `unnest`; SQLite (local,
no round trips) uses `executemany`. Both are written with the driver's own SQL because
this is the hottest path in PayFlow.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.bulk import BulkWrite
from payflow.config import get_settings
from payflow.db import driver_connection, is_postgresql
from payflow.ledger.batch import BatchWrites
from payflow.ledger.domain import (
    AccountState,
    PendingStatus,
    Transfer,
    pending_status_of,
)

_TRANSFER_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount, currency, code, flags, pending_id,"
    " timeout_s, timestamp"
)
_ACCOUNT_COLUMNS = (
    "id, currency, flags, debits_pending, debits_posted, credits_pending, credits_posted,"
    " last_transfer_timestamp"
)

_PG_LOAD_TRANSFERS = f"""
SELECT {_TRANSFER_COLUMNS},
       (SELECT r.flags FROM ledger_transfers r WHERE r.pending_id = t.id) AS resolution_flags
FROM ledger_transfers t WHERE t.id = ANY($1::uuid[])
"""
_PG_LOCK_ACCOUNTS = f"""
SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts
WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
"""
# Lock the accounts and read the batch's already-stored transfers in one round trip
# (when no transfer of the batch resolves a pending one, the accounts are known up
# front). Rows of kind 0 are accounts, kind 1 transfers, in one column layout.
_PG_LOAD_AND_LOCK = f"""
WITH locked AS (
  SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts
  WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE
)
SELECT 0, id, currency, flags, debits_pending, debits_posted, credits_pending,
       credits_posted, last_transfer_timestamp, NULL::uuid, NULL::uuid, NULL::uuid, NULL::int
FROM locked
UNION ALL
SELECT 1, t.id, t.currency, t.flags, t.amount, t.code, t.timeout_s, t.timestamp,
       NULL, t.debit_account_id, t.credit_account_id, t.pending_id,
       (SELECT r.flags FROM ledger_transfers r WHERE r.pending_id = t.id)
FROM ledger_transfers t WHERE t.id = ANY($2::uuid[])
"""
# One statement writes the whole batch. The sub-statements touch disjoint rows: the
# batch engine never adds and removes the same expiry row in one batch.
_PG_WRITE_BATCH = f"""
WITH new_transfers AS (
  INSERT INTO ledger_transfers ({_TRANSFER_COLUMNS})
  SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::text[],
                       $6::int[], $7::int[], $8::uuid[], $9::int[], $10::bigint[])
), updated_accounts AS (
  UPDATE ledger_accounts a
  SET debits_pending = u.dp, debits_posted = u.dpo, credits_pending = u.cp,
      credits_posted = u.cpo, last_transfer_timestamp = $16
  FROM unnest($11::uuid[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[])
       AS u(id, dp, dpo, cp, cpo)
  WHERE a.id = u.id
), new_history AS (
  INSERT INTO ledger_account_balances (account_id, timestamp, transfer_id, debits_pending,
                                       debits_posted, credits_pending, credits_posted)
  SELECT * FROM unnest($17::uuid[], $18::bigint[], $19::uuid[], $20::bigint[],
                       $21::bigint[], $22::bigint[], $23::bigint[])
), new_expiries AS (
  INSERT INTO ledger_pending_expiries (transfer_id, expires_at)
  SELECT * FROM unnest($24::uuid[], $25::bigint[])
), done_expiries AS (
  DELETE FROM ledger_pending_expiries WHERE transfer_id = ANY($26::uuid[])
)"""
_PG_WRITE_BATCH_PARAMS = 26


# The key of the ledger-wide advisory lock that large batches queue on.
LEDGER_ESCALATION_LOCK_KEY = 0x7061_7966_6C6F_7701  # "payflow" + 1


async def escalate_lock(conn: AsyncConnection, account_count: int) -> None:
    """Before a large batch locks its accounts, queue on one ledger-wide lock.

    Large batches over a shared set of accounts almost always overlap. Taking thousands
    of row locks concurrently, each waiter holds a prefix of its rows and, once the
    holder commits, re-checks every row that changed: a convoy that ran uniform batches
    of 1,000 at a third of their serial speed. Queued on one lock they run one after the
    other at full speed. Row locks are still taken, so correctness never depends on this.

    To keep lock order global (this lock, then rows) the lock is only taken by the first
    ledger statement of a transaction that locks rows; a later large batch in the same
    transaction skips it (it already holds rows).
    """
    if not is_postgresql(conn):
        return
    transaction = conn.sync_connection.get_transaction() if conn.sync_connection else None
    first = conn.info.get("payflow_ledger_locks_in") is not transaction
    conn.info["payflow_ledger_locks_in"] = transaction
    if first and account_count > get_settings().ledger_lock_escalation_accounts:
        driver = await driver_connection(conn)
        await driver.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_ESCALATION_LOCK_KEY)


def _sqlite_in(ids: Collection[uuid.UUID]) -> str:
    return json.dumps([value.hex for value in ids])


_SQLITE_LOAD_TRANSFERS = f"""
SELECT {_TRANSFER_COLUMNS},
       (SELECT r.flags FROM ledger_transfers r WHERE r.pending_id = t.id) AS resolution_flags
FROM ledger_transfers t WHERE t.id IN (SELECT value FROM json_each(?))
"""
_SQLITE_LOCK_ACCOUNTS = f"""
SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts
WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id
"""


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if value is None:
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(hex=value)


def _transfer_from_row(row: Sequence[Any]) -> Transfer:
    return Transfer(
        id=_uuid_or_none(row[0]),  # type: ignore[arg-type]
        debit_account_id=_uuid_or_none(row[1]),
        credit_account_id=_uuid_or_none(row[2]),
        amount=row[3],
        currency=row[4],
        code=row[5],
        flags=row[6],
        pending_id=_uuid_or_none(row[7]),
        timeout_s=row[8],
        timestamp=row[9],
    )


async def load_transfers(
    conn: AsyncConnection, ids: Collection[uuid.UUID]
) -> tuple[dict[uuid.UUID, Transfer], dict[uuid.UUID, PendingStatus]]:
    """Stored transfers among `ids`, and the status of those that are resolved pendings."""
    known: dict[uuid.UUID, Transfer] = {}
    resolved: dict[uuid.UUID, PendingStatus] = {}
    if not ids:
        return known, resolved
    result: Iterable[Sequence[Any]]
    if is_postgresql(conn):
        driver = await driver_connection(conn)
        result = await driver.fetch(_PG_LOAD_TRANSFERS, list(ids))
    else:
        result = await conn.exec_driver_sql(_SQLITE_LOAD_TRANSFERS, (_sqlite_in(ids),))
    for row in result:
        transfer = _transfer_from_row(row)
        known[transfer.id] = transfer
        if row[10] is not None:
            resolved[transfer.id] = pending_status_of(row[10])
    return known, resolved


async def lock_accounts(
    conn: AsyncConnection, ids: Collection[uuid.UUID]
) -> tuple[dict[uuid.UUID, AccountState], int]:
    """Lock the accounts among `ids` in id order, with one statement.

    Returns their states and the latest transfer timestamp among them. On SQLite the
    transaction's `BEGIN IMMEDIATE` already holds the database's write lock.
    """
    if not ids:
        return {}, 0
    result: Iterable[Sequence[Any]]
    if is_postgresql(conn):
        await escalate_lock(conn, len(ids))
        driver = await driver_connection(conn)
        result = await driver.fetch(_PG_LOCK_ACCOUNTS, list(ids))
    else:
        result = await conn.exec_driver_sql(_SQLITE_LOCK_ACCOUNTS, (_sqlite_in(ids),))
    return _account_states(result, offset=0)


def _account_states(
    rows: Iterable[Sequence[Any]], *, offset: int
) -> tuple[dict[uuid.UUID, AccountState], int]:
    states: dict[uuid.UUID, AccountState] = {}
    last_timestamp = 0
    o = offset
    for row in rows:
        account_id = row[o]
        if not isinstance(account_id, uuid.UUID):
            account_id = uuid.UUID(hex=account_id)
        states[account_id] = AccountState(
            account_id, row[o + 1], row[o + 2], row[o + 3], row[o + 4], row[o + 5], row[o + 6]
        )
        if row[o + 7] > last_timestamp:
            last_timestamp = row[o + 7]
    return states, last_timestamp


async def load_and_lock(
    conn: AsyncConnection, transfer_ids: Collection[uuid.UUID], account_ids: Collection[uuid.UUID]
) -> tuple[
    dict[uuid.UUID, Transfer],
    dict[uuid.UUID, PendingStatus],
    dict[uuid.UUID, AccountState],
    int,
]:
    """`load_transfers` and `lock_accounts` together; one round trip on PostgreSQL."""
    if not is_postgresql(conn):
        known, resolved = await load_transfers(conn, transfer_ids)
        accounts, last_timestamp = await lock_accounts(conn, account_ids)
        return known, resolved, accounts, last_timestamp
    await escalate_lock(conn, len(account_ids))
    driver = await driver_connection(conn)
    rows = await driver.fetch(_PG_LOAD_AND_LOCK, list(account_ids), list(transfer_ids))
    accounts, last_timestamp = _account_states((r for r in rows if r[0] == 0), offset=1)
    known = {}
    resolved = {}
    for row in rows:
        if row[0] == 1:
            transfer = Transfer(
                row[1], row[9], row[10], row[4], row[2], row[5], row[3], row[11], row[6], row[7]
            )
            known[transfer.id] = transfer
            if row[12] is not None:
                resolved[transfer.id] = pending_status_of(row[12])
    return known, resolved, accounts, last_timestamp


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to columns: PostgreSQL takes one array per column."""
    if not rows:
        return [[] for _ in range(width)]
    columns = [list(column) for column in zip(*rows, strict=True)]
    assert len(columns) == width
    return columns


async def write_batch(
    conn: AsyncConnection,
    writes: BatchWrites,
    accounts: Iterable[AccountState],
    *,
    last_timestamp: int,
    also: BulkWrite | None = None,
) -> None:
    """Write a batch's transfers, account counters, history and expiry changes, and
    `also` the caller's rows (in the same statement on PostgreSQL)."""
    if not writes.transfers:
        # Every transfer failed: the ledger changed nothing.
        if also is not None:
            await also.run(conn)
        return
    account_rows = [
        (a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in accounts
        if a.touched
    ]
    # A Transfer is a named tuple in column order: it is its own row.
    transfer_rows: list[tuple[Any, ...]] = writes.transfers  # type: ignore[assignment]
    history_rows = [
        (
            h.account_id,
            h.timestamp,
            h.transfer_id,
            h.debits_pending,
            h.debits_posted,
            h.credits_pending,
            h.credits_posted,
        )
        for h in writes.history
    ]
    expiry_rows = list(writes.expiries_added.items())
    if is_postgresql(conn):
        params = (
            *_columns(transfer_rows, 10),
            *_columns(account_rows, 5),
            last_timestamp,
            *_columns(history_rows, 7),
            *_columns(expiry_rows, 2),
            list(writes.expiries_removed),
        )
        parts, arguments = (
            also.ctes(conn, _PG_WRITE_BATCH_PARAMS + 1) if also is not None else ((), [])
        )
        result = also.result_sql() if also is not None else "SELECT 1"
        sql = ",\n".join((_PG_WRITE_BATCH, *parts)) + "\n" + result
        driver = await driver_connection(conn)
        value = await driver.fetchval(sql, *params, *arguments)
        if also is not None:
            also.check(value)
        return
    await _sqlite_write_batch(
        conn, transfer_rows, account_rows, history_rows, expiry_rows, writes, last_timestamp
    )
    if also is not None:
        await also.run(conn)


def _hex(value: Any) -> Any:
    return value.hex if isinstance(value, uuid.UUID) else value


def _hex_rows(rows: Iterable[Sequence[Any]]) -> list[tuple[Any, ...]]:
    return [tuple(_hex(value) for value in row) for row in rows]


async def _sqlite_write_batch(
    conn: AsyncConnection,
    transfer_rows: list[tuple[Any, ...]],
    account_rows: list[tuple[Any, ...]],
    history_rows: list[tuple[Any, ...]],
    expiry_rows: list[tuple[uuid.UUID, int]],
    writes: BatchWrites,
    last_timestamp: int,
) -> None:
    await conn.exec_driver_sql(
        f"INSERT INTO ledger_transfers ({_TRANSFER_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
        _hex_rows(transfer_rows),
    )
    await conn.exec_driver_sql(
        "UPDATE ledger_accounts SET debits_pending = ?, debits_posted = ?,"
        " credits_pending = ?, credits_posted = ?, last_transfer_timestamp = ? WHERE id = ?",
        [(*row[1:], last_timestamp, row[0].hex) for row in account_rows],
    )
    if history_rows:
        await conn.exec_driver_sql(
            "INSERT INTO ledger_account_balances (account_id, timestamp, transfer_id,"
            " debits_pending, debits_posted, credits_pending, credits_posted)"
            " VALUES (?,?,?,?,?,?,?)",
            _hex_rows(history_rows),
        )
    if expiry_rows:
        await conn.exec_driver_sql(
            "INSERT INTO ledger_pending_expiries (transfer_id, expires_at) VALUES (?, ?)",
            _hex_rows(expiry_rows),
        )
    if writes.expiries_removed:
        await conn.exec_driver_sql(
            "DELETE FROM ledger_pending_expiries WHERE transfer_id IN"
            " (SELECT value FROM json_each(?))",
            (_sqlite_in(writes.expiries_removed),),
        )
