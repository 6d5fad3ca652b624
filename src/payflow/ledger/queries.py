"""Reads: lookups, an account's transfers and history, balance at a point in time."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.errors import PayFlowError
from payflow.ledger import models
from payflow.ledger.domain import (
    Account,
    AccountFlags,
    BalanceSnapshot,
    PendingStatus,
    Transfer,
    TransferFlags,
    pending_status_of,
)

T = TypeVar("T")
_CURSOR_RE = re.compile(r"^(\d{1,19})\.([0-9a-f]{32})$", re.ASCII)
PAGE_SIZE_MAX = 1000
_LOOKUP_MAX = 8190


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in an account's timeline: after (timestamp, id)."""

    timestamp: int
    id: uuid.UUID

    def encode(self) -> str:
        return f"{self.timestamp}.{self.id.hex}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        match = _CURSOR_RE.match(text) if isinstance(text, str) else None
        try:
            # Timestamps are BIGINT: a larger one is no position in any timeline.
            if match is None or int(match.group(1)) > 2**63 - 1:
                raise ValueError(text)
            return cls(int(match.group(1)), uuid.UUID(hex=match.group(2)))
        except ValueError:
            raise PayFlowError(
                "cursor_invalid", f"{text!r} is not a cursor", http_status=422
            ) from None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: Cursor | None


def _check_limit(limit: int) -> None:
    if type(limit) is not int or not 1 <= limit <= PAGE_SIZE_MAX:
        raise PayFlowError("limit_invalid", f"limit must be 1..{PAGE_SIZE_MAX}", http_status=422)


def _account(row: object) -> Account:
    m = row._mapping  # type: ignore[attr-defined]
    return Account(
        id=m["id"],
        currency=m["currency"],
        code=m["code"],
        flags=AccountFlags(m["flags"]),
        metadata=m["metadata"],
        debits_pending=m["debits_pending"],
        debits_posted=m["debits_posted"],
        credits_pending=m["credits_pending"],
        credits_posted=m["credits_posted"],
        timestamp=m["timestamp"],
    )


def _transfer(row: object) -> Transfer:
    # The table's columns are the record's fields, by name.
    return Transfer(**row._mapping)  # type: ignore[attr-defined]


def _after(timestamp: ColumnElement[int], tiebreak: ColumnElement[Any], cursor: Cursor) -> Any:
    """Rows strictly after `cursor` in (timestamp, id) order."""
    return or_(
        timestamp > cursor.timestamp,
        and_(timestamp == cursor.timestamp, tiebreak > cursor.id),
    )


def _page(items: list[T], limit: int, position: Callable[[T], Cursor]) -> Page[T]:
    """The first `limit` of `items` (fetched with one more to learn if more follow)."""
    if len(items) <= limit:
        return Page(items, None)
    return Page(items[:limit], position(items[limit - 1]))


async def lookup_accounts(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[Account]:
    """The accounts among `ids` that exist, in the order asked."""
    if len(ids) > _LOOKUP_MAX:
        raise PayFlowError("batch_too_large", f"at most {_LOOKUP_MAX} ids", http_status=413)
    if not ids:
        return []
    table = models.accounts
    rows = await conn.execute(select(table).where(table.c.id.in_(set(ids))))
    found = {account.id: account for account in map(_account, rows)}
    return [found[i] for i in ids if i in found]


async def lookup_transfers(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> list[Transfer]:
    """The transfers among `ids` that exist, in the order asked."""
    if len(ids) > _LOOKUP_MAX:
        raise PayFlowError("batch_too_large", f"at most {_LOOKUP_MAX} ids", http_status=413)
    if not ids:
        return []
    table = models.transfers
    rows = await conn.execute(select(table).where(table.c.id.in_(set(ids))))
    found = {transfer.id: transfer for transfer in map(_transfer, rows)}
    return [found[i] for i in ids if i in found]


async def get_pending_status(conn: AsyncConnection, pending_id: uuid.UUID) -> PendingStatus | None:
    """What became of a pending transfer; None when `pending_id` is not a pending transfer."""
    table = models.transfers
    pending = await conn.execute(select(table.c.flags).where(table.c.id == pending_id))
    flags = pending.scalar_one_or_none()
    if flags is None or not flags & TransferFlags.PENDING:
        return None
    resolution = await conn.execute(select(table.c.flags).where(table.c.pending_id == pending_id))
    return pending_status_of(resolution.scalar_one_or_none())


async def get_account_transfers(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    *,
    limit: int = 100,
    after: Cursor | None = None,
) -> Page[Transfer]:
    """Transfers debiting or crediting `account_id`, oldest first, a page at a time."""
    _check_limit(limit)
    table = models.transfers
    pages = []
    # Two index range scans (debit side, credit side) merged, instead of an OR that
    # would not use the (account, timestamp) indexes.
    for column in (table.c.debit_account_id, table.c.credit_account_id):
        query = select(table).where(column == account_id)
        if after is not None:
            query = query.where(_after(table.c.timestamp, table.c.id, after))
        pages.append(query.order_by(table.c.timestamp, table.c.id).limit(limit + 1))
    rows = [
        *await conn.execute(pages[0]),
        *await conn.execute(pages[1]),
    ]
    items = sorted(map(_transfer, rows), key=lambda t: (t.timestamp, t.id.int))[: limit + 1]
    return _page(items, limit, lambda t: Cursor(t.timestamp, t.id))


def _snapshot(row: object) -> BalanceSnapshot:
    return BalanceSnapshot(**row._mapping)  # type: ignore[attr-defined]


async def get_account_history(
    conn: AsyncConnection,
    account_id: uuid.UUID,
    *,
    limit: int = 100,
    after: Cursor | None = None,
) -> Page[BalanceSnapshot]:
    """Running balances of a `history` account after each of its transfers, oldest first."""
    _check_limit(limit)
    table = models.account_balances
    query = select(table).where(table.c.account_id == account_id)
    if after is not None:
        query = query.where(_after(table.c.timestamp, table.c.transfer_id, after))
    rows = await conn.execute(
        query.order_by(table.c.timestamp, table.c.transfer_id).limit(limit + 1)
    )
    items = [_snapshot(row) for row in rows]
    return _page(items, limit, lambda s: Cursor(s.timestamp, s.transfer_id))


async def get_account_balance_at(
    conn: AsyncConnection, account_id: uuid.UUID, timestamp: int
) -> BalanceSnapshot | None:
    """An account's counters as they were at `timestamp` (Unix ns); None if no such account.

    `history` accounts read their snapshot; others are summed from their transfers.
    """
    accounts = await lookup_accounts(conn, [account_id])
    if not accounts:
        return None
    if accounts[0].flags & AccountFlags.HISTORY:
        table = models.account_balances
        row = (
            await conn.execute(
                select(table)
                .where(table.c.account_id == account_id, table.c.timestamp <= timestamp)
                .order_by(table.c.timestamp.desc(), table.c.transfer_id.desc())
                .limit(1)
            )
        ).first()
        if row is not None:
            return _snapshot(row)
        return BalanceSnapshot(account_id, uuid.UUID(int=0), timestamp, 0, 0, 0, 0)
    return await _balance_from_transfers(conn, account_id, timestamp)


async def _balance_from_transfers(
    conn: AsyncConnection, account_id: uuid.UUID, timestamp: int
) -> BalanceSnapshot:
    t = models.transfers
    resolution = models.transfers.alias("resolution")
    pending_flag = int(TransferFlags.PENDING)
    void = int(TransferFlags.VOID_PENDING)
    # Posted: single-phase transfers and posts. Pending: pending transfers not resolved
    # by `timestamp`.
    is_posted = (t.c.flags.op("&")(pending_flag | void)) == 0
    unresolved = (
        ~select(resolution.c.id)
        .where(resolution.c.pending_id == t.c.id, resolution.c.timestamp <= timestamp)
        .exists()
    )
    is_pending = and_(t.c.flags.op("&")(pending_flag) != 0, unresolved)
    sums = []
    for side in (t.c.debit_account_id, t.c.credit_account_id):
        query = select(
            func.coalesce(func.sum(t.c.amount).filter(is_pending), 0),
            func.coalesce(func.sum(t.c.amount).filter(is_posted), 0),
        ).where(side == account_id, t.c.timestamp <= timestamp)
        row = (await conn.execute(query)).one()
        sums.append((int(row[0]), int(row[1])))
    (dp, dpo), (cp, cpo) = sums
    return BalanceSnapshot(account_id, uuid.UUID(int=0), timestamp, dp, dpo, cp, cpo)
