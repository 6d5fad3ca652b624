"""Rewards' use cases: rules, cashback and clawback, the pool. Each takes the caller's
connection and never commits; the consumer's runner or the request owns the transaction.
"""

from __future__ import annotations

import dataclasses
import uuid

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.api.idempotency import Claim
from payflow.api.ledger_batch import LedgerWork
from payflow.api.replies import Completion, Reply
from payflow.db import lock_name
from payflow.errors import PayFlowError
from payflow.events.outbox import emit, outbox_row
from payflow.identity.domain import Role, check_name
from payflow.identity.service import get_users
from payflow.ids import format_public_id, uuid7
from payflow.ledger import (
    Account,
    Cursor,
    Page,
    Transfer,
    TransferOutcome,
    TransferResult,
    create_transfers,
    lookup_accounts,
)
from payflow.operators.models import audit_log
from payflow.operators.service import log_action, log_row
from payflow.pagination import newest_first
from payflow.rewards import models
from payflow.rewards.domain import (
    Cashback,
    Clawback,
    LedgerRefused,
    PoolExhausted,
    Purchase,
    Refund,
    Rule,
    apply_refund,
    best_rule,
    cashback_id_for,
)
from payflow.rewards.events import (
    MalformedEvent,
    cashback_clawed_back,
    cashback_paid,
    pool_funded,
)
from payflow.rewards.schemas import rule_view
from payflow.timestamps import now_ns, to_rfc3339
from payflow.transfers.domain import ledger_error, succeeded
from payflow.wallets.domain import SystemAccount, TransferCode
from payflow.wallets.service import (
    check_currency,
    ensure_system_accounts,
    list_system_accounts,
    system_account_id,
)


def _rule(row: object) -> Rule:
    return Rule(**row._mapping)  # type: ignore[attr-defined]


def _cashback(row: object) -> Cashback:
    return Cashback(**row._mapping)  # type: ignore[attr-defined]


async def _check_merchant(conn: AsyncConnection, merchant_id: uuid.UUID) -> None:
    user = (await get_users(conn, [merchant_id])).get(merchant_id)
    if user is None or user.role is not Role.MERCHANT:
        raise PayFlowError(
            "merchant_invalid",
            f"{format_public_id('usr', merchant_id)} is not a merchant",
            http_status=422,
        )


async def create_rule(
    conn: AsyncConnection,
    *,
    actor_id: uuid.UUID,
    name: str | None,
    currency: str,
    rate_bp: int,
    cap_amount: int,
    minimum_amount: int,
    merchant_id: uuid.UUID | None,
    active: bool,
) -> Rule:
    """A new cashback rule, logged as the operator's action; 422 for an unknown currency,
    a name without visible text, or a `merchant_id` that is not a merchant."""
    check_currency(currency)
    if name is not None:
        check_name(name, what="rule name")
    if merchant_id is not None:
        await _check_merchant(conn, merchant_id)
    now = now_ns()
    rule = Rule(
        id=uuid7(),
        name=name,
        currency=currency,
        rate_bp=rate_bp,
        cap_amount=cap_amount,
        minimum_amount=minimum_amount,
        merchant_id=merchant_id,
        active=active,
        created_by=actor_id,
        created_at=now,
        updated_at=now,
    )
    await conn.execute(insert(models.rules).values(**dataclasses.asdict(rule)))
    await log_action(
        conn,
        actor_id=actor_id,
        action="rewards_rule_created",
        target=format_public_id("rule", rule.id),
        details=rule_view(rule),
    )
    return rule


async def get_rule(conn: AsyncConnection, rule_id: uuid.UUID) -> Rule | None:
    row = (await conn.execute(select(models.rules).where(models.rules.c.id == rule_id))).first()
    return _rule(row) if row is not None else None


async def list_rules(conn: AsyncConnection, *, limit: int, after: Cursor | None) -> Page[Rule]:
    """Every rule, newest first."""
    table = models.rules
    rows, cursor = await newest_first(conn, table, select(table), limit=limit, after=after)
    return Page([_rule(row) for row in rows], cursor)


async def set_rule_active(
    conn: AsyncConnection, rule_id: uuid.UUID, *, active: bool, actor_id: uuid.UUID
) -> Rule:
    """Deactivate or reactivate a rule (logged); asking for its current state changes
    nothing and logs nothing. 404 `rule_not_found`."""
    rule = await get_rule(conn, rule_id)
    if rule is None:
        raise PayFlowError(
            "rule_not_found", f"no such rule {format_public_id('rule', rule_id)}", http_status=404
        )
    rule = dataclasses.replace(rule, active=active, updated_at=now_ns())
    table = models.rules
    changed = await conn.execute(
        update(table)
        .where(table.c.id == rule_id, table.c.active == (not active))
        .values(active=active, updated_at=rule.updated_at)
    )
    if changed.rowcount == 0:
        # Already in that state (a concurrent request may just have put it there).
        return await get_rule(conn, rule_id) or rule
    await log_action(
        conn,
        actor_id=actor_id,
        action="rewards_rule_reactivated" if active else "rewards_rule_deactivated",
        target=format_public_id("rule", rule.id),
        details=rule_view(rule),
    )
    return rule


async def _lock_source(conn: AsyncConnection, source_id: str) -> None:
    """Serialize the cashback and the refunds of one payment until commit.

    Without it, on PostgreSQL a refund and its payment's cashback handled at the same
    time would each miss the other's uncommitted row, and the refund would never be
    taken back. SQLite's one writer serializes them already.
    """
    await lock_name(conn, f"rewards:{source_id}")


async def wallets_of_cashbacks(conn: AsyncConnection, source_ids: list[str]) -> set[uuid.UUID]:
    """The wallets that received cashback for these payments (for locking them early)."""
    if not source_ids:
        return set()
    table = models.cashbacks
    rows = await conn.execute(select(table.c.wallet_id).where(table.c.source_id.in_(source_ids)))
    return set(rows.scalars())


async def _cashback_by_source(conn: AsyncConnection, source_id: str) -> Cashback | None:
    table = models.cashbacks
    row = (await conn.execute(select(table).where(table.c.source_id == source_id))).first()
    return _cashback(row) if row is not None else None


async def _ensure_pool(conn: AsyncConnection, currency: str) -> uuid.UUID:
    """The pool's account id, creating the currency's system accounts if a database from
    before rewards lacks it (one lookup when it exists)."""
    pool_id = system_account_id(SystemAccount.REWARDS_POOL, currency)
    if not await lookup_accounts(conn, [pool_id]):
        await ensure_system_accounts(conn, currency)
    return pool_id


async def _eligible(conn: AsyncConnection, purchase: Purchase) -> bool:
    """A payment to a merchant by someone who is not one (merchants earn no cashback)."""
    users = await get_users(conn, [purchase.payer_id, purchase.merchant_id])
    payer, merchant = users.get(purchase.payer_id), users.get(purchase.merchant_id)
    return (
        merchant is not None
        and merchant.role is Role.MERCHANT
        and payer is not None
        and payer.role is not Role.MERCHANT
    )


async def _rules_for(conn: AsyncConnection, purchase: Purchase) -> list[Rule]:
    table = models.rules
    query = select(table).where(
        table.c.currency == purchase.currency,
        table.c.active.is_(True),
        or_(table.c.merchant_id.is_(None), table.c.merchant_id == purchase.merchant_id),
    )
    return [_rule(row) for row in await conn.execute(query)]


async def pay_cashback(
    conn: AsyncConnection, purchase: Purchase, *, event_id: uuid.UUID
) -> Cashback | None:
    """Pay the cashback `purchase` earns from the pool into the payer's wallet, once.

    None if it earns nothing or was paid already. The ledger transfer's id derives from
    `event_id`, so a repeat of the event cannot pay twice even without the consumer's
    record; a payment pays at most one cashback whichever event reports it. Raises
    `PoolExhausted` when the pool cannot cover it: the event is retried, then parked until
    an operator funds the pool and replays it. Refunds recorded before the cashback was
    paid are taken back from it at once.
    """
    if not await _eligible(conn, purchase):
        return None
    rules = await _rules_for(conn, purchase)
    match = best_rule(
        rules, merchant_id=purchase.merchant_id, currency=purchase.currency, amount=purchase.amount
    )
    if match is None:
        return None
    rule, amount = match
    await _lock_source(conn, purchase.source_id)
    if await _cashback_by_source(conn, purchase.source_id) is not None:
        return None
    transfer = Transfer(
        id=cashback_id_for(event_id),
        debit_account_id=await _ensure_pool(conn, purchase.currency),
        credit_account_id=purchase.payer_wallet_id,
        amount=amount,
        currency=purchase.currency,
        code=int(TransferCode.CASHBACK),
    )
    [outcome] = await create_transfers(conn, [transfer])
    if outcome.code is TransferResult.EXCEEDS_CREDITS:
        raise PoolExhausted(
            f"the {purchase.currency} rewards pool cannot cover {amount} of cashback for "
            f"{purchase.source_id}: fund the pool, then replay this event"
        )
    if not succeeded(outcome.code):
        raise LedgerRefused(f"cashback for {purchase.source_id}: the ledger said {outcome.code}")
    assert outcome.transfer is not None
    cashback = Cashback.paid(
        purchase, event_id=event_id, rule_id=rule.id, amount=amount, at=outcome.transfer.timestamp
    )
    await conn.execute(insert(models.cashbacks).values(**dataclasses.asdict(cashback)))
    await emit(conn, [cashback_paid(cashback)])
    return await _apply_waiting_refunds(conn, cashback)


async def _apply_waiting_refunds(conn: AsyncConnection, cashback: Cashback) -> Cashback:
    table = models.clawbacks
    waiting = await conn.execute(
        select(table)
        .where(table.c.source_id == cashback.source_id, table.c.cashback_id.is_(None))
        .order_by(table.c.created_at, table.c.id)
    )
    for row in waiting.all():
        cashback, _ = await _take_back(conn, cashback, Clawback(**row._mapping))
    return cashback


async def claw_back(
    conn: AsyncConnection, refund: Refund, *, event_id: uuid.UUID
) -> Clawback | None:
    """Take back the share of the payment's cashback that `refund` refunds, once.

    Records the refund even if the payment has no cashback (yet): a cashback paid later,
    say from a dead letter replayed after the pool ran dry, is then reduced at once
    instead of paying out on a refunded payment. None if this event was handled already.
    """
    clawback = Clawback.recorded(refund, event_id=event_id, at=now_ns())
    await _lock_source(conn, refund.source_id)
    table = models.clawbacks
    if await conn.scalar(select(table.c.id).where(table.c.id == clawback.id)) is not None:
        return None
    await conn.execute(insert(table).values(**dataclasses.asdict(clawback)))
    cashback = await _cashback_by_source(conn, refund.source_id)
    if cashback is None:
        return clawback
    _, clawback = await _take_back(conn, cashback, clawback)
    return clawback


# What applying a refund changes in each row.
_CASHBACK_CHANGES = (
    "refunded_amount",
    "clawed_back_amount",
    "shortfall_amount",
    "status",
    "updated_at",
)
_CLAWBACK_CHANGES = ("cashback_id", "due_amount", "amount", "shortfall_amount", "applied_at")


async def _take_back(
    conn: AsyncConnection, cashback: Cashback, clawback: Clawback
) -> tuple[Cashback, Clawback]:
    """Apply one recorded refund to its cashback: move what is due (as far as the wallet's
    available balance covers it) back to the pool, and update both rows."""
    if clawback.currency != cashback.currency:
        raise MalformedEvent(
            f"refund {clawback.refund_id} is in {clawback.currency}, its cashback in "
            f"{cashback.currency}"
        )
    [wallet] = await lookup_accounts(conn, [cashback.wallet_id])
    cashback, clawback = apply_refund(cashback, clawback, available=wallet.available, at=now_ns())
    if clawback.amount > 0:
        transfer = Transfer(
            id=clawback.id,
            debit_account_id=cashback.wallet_id,
            credit_account_id=system_account_id(SystemAccount.REWARDS_POOL, cashback.currency),
            amount=clawback.amount,
            currency=cashback.currency,
            code=int(TransferCode.CLAWBACK),
        )
        [outcome] = await create_transfers(conn, [transfer])
        if not succeeded(outcome.code):
            # Most likely the wallet spent between the balance read and the transfer
            # (PostgreSQL): the retry reads the new balance.
            raise LedgerRefused(
                f"clawback for {clawback.refund_id}: the ledger said {outcome.code}"
            )
    changed = {name: getattr(cashback, name) for name in _CASHBACK_CHANGES}
    await conn.execute(
        update(models.cashbacks).where(models.cashbacks.c.id == cashback.id).values(**changed)
    )
    applied = {name: getattr(clawback, name) for name in _CLAWBACK_CHANGES}
    await conn.execute(
        update(models.clawbacks).where(models.clawbacks.c.id == clawback.id).values(**applied)
    )
    if clawback.due_amount > 0:
        await emit(conn, [cashback_clawed_back(cashback, clawback)])
    return cashback, clawback


async def list_cashbacks(
    conn: AsyncConnection, *, user_id: uuid.UUID, limit: int, after: Cursor | None
) -> Page[Cashback]:
    """A user's cashbacks, newest first."""
    table = models.cashbacks
    query = select(table).where(table.c.user_id == user_id)
    rows, cursor = await newest_first(conn, table, query, limit=limit, after=after)
    return Page([_cashback(row) for row in rows], cursor)


async def pool_exists(conn: AsyncConnection, currency: str) -> bool:
    return bool(
        await lookup_accounts(conn, [system_account_id(SystemAccount.REWARDS_POOL, currency)])
    )


async def pools(conn: AsyncConnection) -> list[Account]:
    """Every currency's rewards pool with its counters."""
    accounts = await list_system_accounts(conn)
    return [a for name, a in accounts if name == SystemAccount.REWARDS_POOL.value]


def plan_pool_funding(
    claim: Claim, *, currency: str, amount: int, reason: str, actor_id: uuid.UUID
) -> LedgerWork:
    """Move money from the adjustments account into `currency`'s pool, with the reason
    in the operator log and a `rewards_pool.funded` event, in the same transaction."""
    check_currency(currency)
    transfer = Transfer(
        id=claim.resource_id,
        debit_account_id=system_account_id(SystemAccount.ADJUSTMENTS, currency),
        credit_account_id=system_account_id(SystemAccount.REWARDS_POOL, currency),
        amount=amount,
        currency=currency,
        code=int(TransferCode.POOL_FUNDING),
    )

    def complete(outcomes: list[TransferOutcome]) -> Completion:
        [outcome] = outcomes
        if not succeeded(outcome.code):
            return Completion(Reply.error(ledger_error(outcome.code)))
        assert outcome.transfer is not None
        at = outcome.transfer.timestamp
        body = {
            "id": format_public_id("txn", transfer.id),
            "object": "pool_funding",
            "amount": amount,
            "currency": currency,
            "reason": reason,
            "created_at": to_rfc3339(at),
        }
        row = log_row(
            actor_id=actor_id,
            action="rewards_pool_funding",
            target=f"rewards_pool:{currency}",
            details=body,
            at=at,
        )
        event = pool_funded(transfer.id, body, at=at)
        return Completion(Reply(201, body), inserts=[(audit_log, row), outbox_row(event)])

    return LedgerWork(transfers=(transfer,), complete=complete, claim=claim)
