"""Merchants' use cases. Each takes the caller's connection and never commits.

Other contexts call `get_merchant`, `merchant_of_user` and `list_merchants` (settlement
pays merchants out; payments checks who is paid).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.errors import PayFlowError
from payflow.identity.domain import Role, User
from payflow.ids import format_public_id, uuid7
from payflow.ledger import Cursor, Page
from payflow.merchants import models
from payflow.merchants.domain import (
    SETTLEMENT_INTERVAL_S_DEFAULT,
    Destination,
    Merchant,
    MerchantStatus,
    check_business_name,
    check_destination,
    check_fee,
    check_interval,
)
from payflow.operators.service import log_action
from payflow.pagination import newest_first
from payflow.timestamps import now_ns
from payflow.wallets.service import open_wallet, wallet_of

LIST_LIMIT_MAX = 1000


def _merchant(row: Any) -> Merchant:
    values = dict(row._mapping)
    values["status"] = MerchantStatus(values["status"])
    return Merchant(**values)


def merchant_not_found(text: str) -> PayFlowError:
    return PayFlowError("merchant_not_found", f"no such merchant {text!r}", http_status=404)


async def get_merchant(conn: AsyncConnection, merchant_id: uuid.UUID) -> Merchant | None:
    """The merchant with this id, or None."""
    table = models.merchants
    row = (await conn.execute(select(table).where(table.c.id == merchant_id))).first()
    return _merchant(row) if row is not None else None


async def merchant_of_user(conn: AsyncConnection, user_id: uuid.UUID) -> Merchant | None:
    """The merchant profile of this user, or None."""
    table = models.merchants
    row = (await conn.execute(select(table).where(table.c.user_id == user_id))).first()
    return _merchant(row) if row is not None else None


async def list_merchants(
    conn: AsyncConnection,
    *,
    after: uuid.UUID | None,
    limit: int,
    status: MerchantStatus | None = None,
) -> list[Merchant]:
    """Up to `limit` merchants with ids after `after`, oldest first (ids are time-ordered):
    pass the last id back as `after` for the next batch; fewer than `limit` means done."""
    assert 1 <= limit <= LIST_LIMIT_MAX, limit
    table = models.merchants
    query = select(table).order_by(table.c.id).limit(limit)
    if after is not None:
        query = query.where(table.c.id > after)
    if status is not None:
        query = query.where(table.c.status == status.value)
    return [_merchant(row) for row in await conn.execute(query)]


async def page_merchants(
    conn: AsyncConnection, *, status: MerchantStatus | None, after: Cursor | None, limit: int
) -> Page[Merchant]:
    """Merchants newest first, for the operators' list."""
    table = models.merchants
    query = select(table)
    if status is not None:
        query = query.where(table.c.status == status.value)
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return Page([_merchant(row) for row in rows], cursor)


async def create_merchant(
    conn: AsyncConnection,
    *,
    user: User,
    business_name: str,
    settlement_currency: str,
    destination: Destination,
    settlement_interval_s: int | None,
) -> Merchant:
    """A merchant profile for `user` (role merchant) and its wallet in the settlement
    currency (opened if missing); 409 `merchant_exists` if the user has one."""
    if user.role is not Role.MERCHANT:
        raise PayFlowError(
            "user_not_merchant",
            "only a user with the merchant role has a merchant profile",
            http_status=422,
        )
    name = check_business_name(business_name)
    destination = check_destination(destination)
    interval_s = check_interval(
        SETTLEMENT_INTERVAL_S_DEFAULT if settlement_interval_s is None else settlement_interval_s
    )
    if await merchant_of_user(conn, user.id) is not None:
        raise _exists()
    try:
        wallet = await wallet_of(conn, user_id=user.id, currency=settlement_currency)
    except PayFlowError as error:
        if error.code != "wallet_not_found":
            raise
        wallet = await open_wallet(
            conn, user_id=user.id, handle=user.handle, currency=settlement_currency
        )
    at = now_ns()
    merchant = Merchant(
        id=uuid7(),
        user_id=user.id,
        wallet_id=wallet.id,
        business_name=name,
        settlement_currency=settlement_currency,
        bank_code=destination.bank_code,
        account_number=destination.account_number,
        vpa=destination.vpa,
        settlement_interval_s=interval_s,
        fee_bps=0,
        status=MerchantStatus.ACTIVE,
        created_at=at,
        updated_at=at,
    )
    try:
        async with conn.begin_nested():
            await conn.execute(insert(models.merchants).values(**_row(merchant)))
    except IntegrityError:
        # A concurrent request created this user's profile between check and insert.
        raise _exists() from None
    return merchant


def _exists() -> PayFlowError:
    return PayFlowError(
        "merchant_exists", "this user already has a merchant profile", http_status=409
    )


def _row(merchant: Merchant) -> dict[str, Any]:
    return {
        "id": merchant.id,
        "user_id": merchant.user_id,
        "wallet_id": merchant.wallet_id,
        "business_name": merchant.business_name,
        "settlement_currency": merchant.settlement_currency,
        "bank_code": merchant.bank_code,
        "account_number": merchant.account_number,
        "vpa": merchant.vpa,
        "settlement_interval_s": merchant.settlement_interval_s,
        "fee_bps": merchant.fee_bps,
        "status": merchant.status.value,
        "created_at": merchant.created_at,
        "updated_at": merchant.updated_at,
    }


async def _save(conn: AsyncConnection, merchant: Merchant) -> Merchant:
    row = _row(merchant)
    del row["id"], row["user_id"], row["created_at"]
    table = models.merchants
    await conn.execute(update(table).where(table.c.id == merchant.id).values(**row))
    return merchant


async def update_settlement(
    conn: AsyncConnection,
    merchant: Merchant,
    *,
    destination: Destination | None,
    settlement_interval_s: int | None,
) -> Merchant:
    """The merchant's own changes: where and how often settlement pays it."""
    changed = replace(merchant, updated_at=now_ns())
    if destination is not None:
        checked = check_destination(destination)
        changed = replace(
            changed,
            bank_code=checked.bank_code,
            account_number=checked.account_number,
            vpa=checked.vpa,
        )
    if settlement_interval_s is not None:
        changed = replace(changed, settlement_interval_s=check_interval(settlement_interval_s))
    return await _save(conn, changed)


async def update_by_operator(
    conn: AsyncConnection,
    merchant: Merchant,
    *,
    fee_bps: int | None,
    status: MerchantStatus | None,
    actor_id: uuid.UUID,
) -> Merchant:
    """An operator sets the fee or the status; logged with what changed, in this
    transaction."""
    changed = replace(merchant, updated_at=now_ns())
    details: dict[str, Any] = {}
    if fee_bps is not None:
        changed = replace(changed, fee_bps=check_fee(fee_bps))
        details["fee_bps"] = {"from": merchant.fee_bps, "to": fee_bps}
    if status is not None:
        changed = replace(changed, status=status)
        details["status"] = {"from": merchant.status.value, "to": status.value}
    await _save(conn, changed)
    await log_action(
        conn,
        actor_id=actor_id,
        action="merchant_updated",
        target=format_public_id("mer", merchant.id),
        details=details,
    )
    return changed
