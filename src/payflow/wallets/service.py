"""Wallets' use cases. Each takes the caller's connection and never commits."""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Sequence

from sqlalchemy import Engine, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import lock_name
from payflow.errors import PayFlowError
from payflow.events.outbox import emit
from payflow.ids import uuid7
from payflow.ledger import Account, AccountFlags, AccountResult, create_accounts, lookup_accounts
from payflow.money import is_currency
from payflow.timestamps import now_ns
from payflow.wallets import models
from payflow.wallets.domain import (
    ADDRESS_DOMAIN,
    SYSTEM_ACCOUNT_CODES,
    SYSTEM_ACCOUNT_FLAGS,
    AccountCode,
    Balance,
    SystemAccount,
    Wallet,
)
from payflow.wallets.events import wallet_opened

_SYSTEM_NAMESPACE = uuid.UUID("6d1b8a52-4f0e-4c55-9f43-2f1f0c1d7a10")


# Wallets never change once opened (no renames, no closing yet), so lookups by owner,
# handle or id are cached per process: a money-moving request then resolves both its
# wallets without a database round trip. Bounded; cleared whole when full.
_WALLET_CACHE_MAX = 100_000
_wallet_cache: dict[tuple[object, object, str], Wallet] = {}


# Each engine's database, rendered once: a URL object hashes by rendering itself, which
# cost more than the lookup it keys.
_databases: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def _cache_key(conn: AsyncConnection, kind: object, value: str) -> tuple[object, object, str]:
    engine = conn.engine.sync_engine
    database = _databases.get(engine)
    if database is None:
        database = _databases[engine] = engine.url.render_as_string()
    return (database, kind, value)


def _remember(conn: AsyncConnection, wallet: Wallet) -> Wallet:
    if len(_wallet_cache) >= _WALLET_CACHE_MAX:
        _wallet_cache.clear()
    _wallet_cache[_cache_key(conn, wallet.user_id, wallet.currency)] = wallet
    _wallet_cache[_cache_key(conn, wallet.handle, wallet.currency)] = wallet
    _wallet_cache[_cache_key(conn, wallet.id, "")] = wallet
    return wallet


def system_account_id(name: SystemAccount, currency: str) -> uuid.UUID:
    """System accounts have derived ids: every process agrees on them without a lookup."""
    return uuid.uuid5(_SYSTEM_NAMESPACE, f"{name.value}:{currency}")


def _wallet(row: object) -> Wallet:
    return Wallet(**row._mapping)  # type: ignore[attr-defined]


def check_currency(currency: str) -> None:
    if not is_currency(currency):
        raise PayFlowError(
            "currency_unknown", f"{currency!r} is not an ISO 4217 currency", http_status=422
        )


async def ensure_system_accounts(conn: AsyncConnection, currency: str) -> None:
    """Create the platform's accounts for `currency` if missing (idempotent).

    Deliberately not cached per process: the caller's transaction may still roll back,
    and a cache entry that outlived it would let wallets open in a currency whose system
    accounts do not exist. Checking costs one read when they are all there. Callers
    that find some missing take turns (API processes starting together, two users
    opening the first wallets in a currency): otherwise both would insert them.
    """
    table = models.system_accounts
    names = select(table.c.name).where(table.c.currency == currency)
    if len(set((await conn.execute(names)).scalars())) == len(SYSTEM_ACCOUNT_CODES):
        # Each name's row commits with its account.
        return
    await lock_name(conn, f"system-accounts:{currency}")
    accounts = [
        Account(
            id=system_account_id(name, currency),
            currency=currency,
            code=int(code),
            flags=SYSTEM_ACCOUNT_FLAGS.get(name, AccountFlags.NONE),
        )
        for name, code in SYSTEM_ACCOUNT_CODES.items()
    ]
    results = await create_accounts(conn, accounts)
    assert all(r in (AccountResult.OK, AccountResult.EXISTS) for r in results), results
    known = set((await conn.execute(names)).scalars())
    rows = [
        {
            "name": a_name.value,
            "currency": currency,
            "account_id": account.id,
            "created_at": now_ns(),
        }
        for a_name, account in zip(SYSTEM_ACCOUNT_CODES, accounts, strict=True)
        if a_name.value not in known
    ]
    if rows:
        await conn.execute(insert(table), rows)


async def list_system_accounts(conn: AsyncConnection) -> list[tuple[str, Account]]:
    """Every system account with its counters, by name and currency."""
    table = models.system_accounts
    rows = (await conn.execute(select(table).order_by(table.c.currency, table.c.name))).all()
    accounts = {a.id: a for a in await lookup_accounts(conn, [r.account_id for r in rows])}
    return [(r.name, accounts[r.account_id]) for r in rows if r.account_id in accounts]


async def open_wallet(
    conn: AsyncConnection, *, user_id: uuid.UUID, handle: str, currency: str
) -> Wallet:
    """A wallet for the user in `currency`; 409 `wallet_exists` if they have one."""
    check_currency(currency)
    table = models.wallets
    existing = await conn.scalar(
        select(table.c.id).where(table.c.user_id == user_id, table.c.currency == currency)
    )
    if existing is not None:
        raise PayFlowError(
            "wallet_exists", f"you already have a {currency} wallet", http_status=409
        )
    await ensure_system_accounts(conn, currency)
    wallet = Wallet(
        id=uuid7(), user_id=user_id, handle=handle, currency=currency, created_at=now_ns()
    )
    flags = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY
    [result] = await create_accounts(
        conn, [Account(id=wallet.id, currency=currency, code=int(AccountCode.WALLET), flags=flags)]
    )
    assert result is AccountResult.OK, result
    await conn.execute(
        insert(table).values(
            id=wallet.id,
            user_id=user_id,
            handle=handle,
            currency=currency,
            created_at=wallet.created_at,
        )
    )
    await emit(conn, [wallet_opened(wallet)])
    return wallet


async def get_wallet(conn: AsyncConnection, wallet_id: uuid.UUID) -> Wallet | None:
    cached = _wallet_cache.get(_cache_key(conn, wallet_id, ""))
    if cached is not None:
        return cached
    row = (
        await conn.execute(select(models.wallets).where(models.wallets.c.id == wallet_id))
    ).first()
    return _remember(conn, _wallet(row)) if row is not None else None


async def get_wallets(conn: AsyncConnection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Wallet]:
    if not ids:
        return {}
    rows = await conn.execute(select(models.wallets).where(models.wallets.c.id.in_(set(ids))))
    return {row.id: _wallet(row) for row in rows}


async def list_wallets(conn: AsyncConnection, *, user_id: uuid.UUID) -> list[Wallet]:
    table = models.wallets
    rows = await conn.execute(
        select(table).where(table.c.user_id == user_id).order_by(table.c.created_at)
    )
    return [_wallet(row) for row in rows]


async def wallet_of(conn: AsyncConnection, *, user_id: uuid.UUID, currency: str) -> Wallet:
    """The user's wallet in `currency`; 404 `wallet_not_found` if they have none."""
    cached = _wallet_cache.get(_cache_key(conn, user_id, currency))
    if cached is not None:
        return cached
    table = models.wallets
    row = (
        await conn.execute(
            select(table).where(table.c.user_id == user_id, table.c.currency == currency)
        )
    ).first()
    if row is None:
        raise PayFlowError("wallet_not_found", f"you have no {currency} wallet", http_status=404)
    return _remember(conn, _wallet(row))


async def balances(
    conn: AsyncConnection, wallet_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Balance]:
    return {a.id: Balance.of(a) for a in await lookup_accounts(conn, list(wallet_ids))}


def _recipient_not_found(to: str) -> PayFlowError:
    return PayFlowError("recipient_not_found", f"no PayFlow wallet for {to!r}", http_status=404)


def _wallet_id_in(to: str) -> uuid.UUID | None:
    """The wallet id `to` spells (`wal_<uuid>` or a dashed UUID), else None.

    Anything else is a handle or an address, even when it starts with `wal_` (a valid
    handle such as `wal_ji`). No handle spells a wallet id: handles are at most 32
    characters, wallet ids at least 36.
    """
    if not (to.startswith("wal_") or (len(to) == 36 and to.count("-") == 4)):
        return None
    try:
        return uuid.UUID(to.removeprefix("wal_"))
    except ValueError:
        return None


async def resolve_recipient(conn: AsyncConnection, to: str, *, currency: str) -> Wallet:
    """The wallet `to` names: a wallet id (`wal_…`), an address `handle@payflow`, or a
    handle. Addresses at other banks are payouts, not on-us transfers.
    """
    table = models.wallets
    to = to.strip()
    wallet_id = _wallet_id_in(to)
    if wallet_id is not None:
        wallet = await get_wallet(conn, wallet_id)
        if wallet is None:
            raise _recipient_not_found(to)
        if wallet.currency != currency:
            raise PayFlowError(
                "currency_mismatch",
                f"that wallet holds {wallet.currency}, not {currency}",
                http_status=422,
            )
        return wallet
    handle, at, domain = to.lower().partition("@")
    if at and domain != ADDRESS_DOMAIN:
        raise PayFlowError(
            "recipient_off_us",
            f"{to!r} is at another bank; payouts to other banks use POST /v1/payouts",
            http_status=422,
        )
    cached = _wallet_cache.get(_cache_key(conn, handle, currency))
    if cached is not None:
        return cached
    row = (
        await conn.execute(
            select(table).where(table.c.handle == handle, table.c.currency == currency)
        )
    ).first()
    if row is None:
        raise _recipient_not_found(to)
    return _remember(conn, _wallet(row))
