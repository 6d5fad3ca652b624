"""Accounts at the bank: PayFlow's nostro account (credits are paid from it) and the
accounts at "other banks" that credits go to. Functions take the connection first and
never commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.banksim import models
from payflow.banksim.domain import Account, CreditRequest
from payflow.errors import PayFlowError

NOSTRO_BANK_CODE = "SIMB0000001"
NOSTRO_ACCOUNT_NUMBER = "000100000001"
NOSTRO_NAME = "PayFlow nostro"
# PayFlow's funding at the bank when the account is opened (minor units).
NOSTRO_OPENING_BALANCE = 10**13

DEMO_ACCOUNTS: tuple[dict[str, Any], ...] = (
    {
        "bank_code": "OKBK0000001",
        "account_number": "100000000001",
        "name": "Asha Rao",
        "vpa": "asha@okbank",
    },
    {
        "bank_code": "OKBK0000001",
        "account_number": "100000000002",
        "name": "Ravi Kumar",
        "vpa": "ravi@okbank",
    },
    {
        "bank_code": "OKBK0000001",
        "account_number": "100000000003",
        "name": "Meera Iyer",
        "vpa": "meera@okbank",
    },
    {"bank_code": "HDFC0001234", "account_number": "50100012345678", "name": "Kirana Stores"},
    {"bank_code": "SBIN0004321", "account_number": "30001234567", "name": "Chai Point"},
    {
        "bank_code": "SBIN0004321",
        "account_number": "30007654321",
        "name": "Old Account",
        "closed": True,
    },
)


async def ensure_schema(engine: AsyncEngine) -> None:
    """Create the bank's tables if they are missing (its own store: no migrations)."""
    async with engine.begin() as conn:
        await conn.run_sync(models.metadata.create_all)


async def ensure_accounts(conn: AsyncConnection, *, currency: str, demo: bool, now_ns: int) -> None:
    """Open PayFlow's nostro account, and the demo accounts if asked, unless they exist."""
    await _open_if_missing(
        conn,
        bank_code=NOSTRO_BANK_CODE,
        account_number=NOSTRO_ACCOUNT_NUMBER,
        name=NOSTRO_NAME,
        currency=currency,
        nostro=True,
        opening_balance=NOSTRO_OPENING_BALANCE,
        now_ns=now_ns,
    )
    for account in DEMO_ACCOUNTS if demo else ():
        await _open_if_missing(conn, currency=currency, now_ns=now_ns, **account)


async def _open_if_missing(conn: AsyncConnection, **values: Any) -> None:
    found = await conn.scalar(
        select(models.accounts.c.id).where(
            models.accounts.c.bank_code == values["bank_code"],
            models.accounts.c.account_number == values["account_number"],
        )
    )
    if found is None:
        await conn.execute(insert(models.accounts).values(**_account_values(**values)))


def _account_values(*, now_ns: int, vpa: str | None = None, **values: Any) -> dict[str, Any]:
    return {
        "closed": False,
        "nostro": False,
        "opening_balance": 0,
        **values,
        "vpa": vpa.lower() if vpa is not None else None,
        "created_at_ns": now_ns,
    }


async def create_account(
    conn: AsyncConnection,
    *,
    bank_code: str,
    account_number: str,
    name: str,
    currency: str,
    vpa: str | None,
    closed: bool,
    now_ns: int,
) -> Account:
    """Open an account credits can be sent to; its number and VPA must be new."""
    table = models.accounts
    clash = (table.c.bank_code == bank_code) & (table.c.account_number == account_number)
    if vpa is not None:
        clash = clash | (table.c.vpa == vpa.lower())
    taken = await conn.execute(select(table.c.bank_code, table.c.account_number).where(clash))
    for row in taken:
        if (row.bank_code, row.account_number) == (bank_code, account_number):
            raise PayFlowError("account_exists", "that account number is taken", http_status=409)
        raise PayFlowError("vpa_taken", f"{vpa} belongs to another account", http_status=409)
    values = _account_values(
        bank_code=bank_code,
        account_number=account_number,
        name=name,
        currency=currency,
        vpa=vpa,
        closed=closed,
        now_ns=now_ns,
    )
    account_id = await conn.scalar(
        insert(models.accounts).values(**values).returning(models.accounts.c.id)
    )
    assert account_id is not None
    return Account(
        id=account_id,
        bank_code=bank_code,
        account_number=account_number,
        vpa=values["vpa"],
        name=name,
        currency=currency,
        closed=closed,
    )


async def list_accounts(conn: AsyncConnection, *, after: int, limit: int) -> list[Account]:
    """Accounts other than the nostro, by id, after `after`."""
    rows = await conn.execute(
        select(models.accounts)
        .where(models.accounts.c.nostro.is_(False), models.accounts.c.id > after)
        .order_by(models.accounts.c.id)
        .limit(limit)
    )
    return [account_from_row(row._mapping) for row in rows]


def account_from_row(row: Any) -> Account:
    return Account(
        id=row["id"],
        bank_code=row["bank_code"],
        account_number=row["account_number"],
        vpa=row["vpa"],
        name=row["name"],
        currency=row["currency"],
        closed=row["closed"],
    )


async def nostro(conn: AsyncConnection) -> Any:
    """PayFlow's account at the bank (its row)."""
    result = await conn.execute(select(models.accounts).where(models.accounts.c.nostro.is_(True)))
    return result.one()


async def destination(conn: AsyncConnection, request: CreditRequest) -> Account | None:
    """The account a credit is addressed to, if the bank has it."""
    table = models.accounts
    if request.vpa is not None:
        where = table.c.vpa == request.vpa.lower()
    else:
        where = (table.c.bank_code == request.bank_code) & (
            table.c.account_number == request.account_number
        )
    result = await conn.execute(select(table).where(where, table.c.nostro.is_(False)))
    row = result.first()
    return None if row is None else account_from_row(row._mapping)
