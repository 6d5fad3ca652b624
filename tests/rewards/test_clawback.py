"""Clawback on both backends: `payment.refunded` events written to the outbox as the
payments context will write them take back cashback in proportion, exactly once, never
more than was paid, and as far as the wallet still holds it."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from payflow.events.domain import Event, derived_event_id
from payflow.events.feed import get_event
from payflow.ids import format_public_id
from payflow.rewards import models, service
from payflow.rewards.domain import clawback_id_for
from payflow.rewards.events import CASHBACK_CLAWED_BACK, refund_of
from tests.api.conftest import Server, User, create_operator
from tests.rewards import (  # noqa: F401 (fixtures)
    Shopper,
    cashbacks,
    create_rule,
    forget_processed,
    fresh_currency,
    fund_pool,
    pay,
    pool_balance,
    publish,
    refund_event,
    rewards_api,
    rewards_server,
    run,
    shopper,
    transfer_event,
    wallet_balance,
)

FUNDS = 1_000_000
POOL = 100_000
PAYMENT = 40_000
CASHBACK = 1_000  # 2.5 % of 40,000


class Purchase:
    """A customer's payment to a merchant that earned CASHBACK, in a currency of its own."""

    def __init__(
        self, api: Server, operator: User, customer: Shopper, merchant: Shopper, paid: Any
    ) -> None:
        self.api, self.operator, self.customer, self.merchant = api, operator, customer, merchant
        self.paid = paid
        self.currency = customer.currency

    @classmethod
    async def make(cls, api: Server, *, earn: bool = True, process: bool = True) -> Purchase:
        currency = fresh_currency(api)
        operator = await create_operator(api)
        customer = await shopper(api, currency, funds=FUNDS)
        merchant = await shopper(api, currency, role="merchant")
        await fund_pool(api, operator, currency, POOL)
        if earn:
            await create_rule(api, operator, currency=currency, rate_bp=250, cap_amount=5_000)
        purchase = cls(
            api, operator, customer, merchant, await pay(api, customer, merchant, PAYMENT)
        )
        if process:
            await purchase.process_payment()
        return purchase

    async def process_payment(self) -> None:
        assert await run(self.api, [await transfer_event(self.api, self.paid)]) == {}

    async def refund(self, amount: int) -> Event:
        """A refund of `amount` of this payment, written to the outbox and processed."""
        event = await self.refund_only(amount)
        assert await run(self.api, [event]) == {}
        return event

    async def refund_only(self, amount: int) -> Event:
        return await publish(
            self.api,
            refund_event(
                self.paid["id"],
                amount=amount,
                payment_amount=PAYMENT,
                currency=self.currency,
                source="transfer_id",
            ),
        )

    async def cashback(self) -> dict[str, Any]:
        [found] = await cashbacks(self.api, self.customer)
        return found

    async def balances(self) -> tuple[int, int]:
        """The customer's wallet and the pool."""
        return (
            await wallet_balance(self.api.client, self.customer),
            await pool_balance(self.api, self.operator, self.currency),
        )


async def clawed_back_event(api: Server, refund: Event) -> Event | None:
    event_id = derived_event_id(clawback_id_for(refund.id), CASHBACK_CLAWED_BACK)
    async with api.engine.connect() as conn:
        found = await get_event(conn, event_id)
    return found[1] if found else None


class TestProportional:
    async def test_a_full_refund_takes_all_of_it_once(self, api: Server) -> None:
        purchase = await Purchase.make(api)
        wallet, pool = await purchase.balances()
        assert (wallet, pool) == (FUNDS - PAYMENT + CASHBACK, POOL - CASHBACK)
        refund = await purchase.refund(PAYMENT)
        cashback = await purchase.cashback()
        assert (cashback["status"], cashback["clawed_back_amount"]) == ("clawed_back", CASHBACK)
        assert await purchase.balances() == (wallet - CASHBACK, POOL)
        told = await clawed_back_event(api, refund)
        assert told is not None
        assert told.data == {
            "cashback_id": cashback["id"],
            "user_id": purchase.customer.user.id,
            "wallet_id": purchase.customer.wallet_id,
            "currency": purchase.currency,
            "source_id": purchase.paid["id"],
            "clawback_id": format_public_id("clb", clawback_id_for(refund.id)),
            "refund_id": refund.data["refund_id"],
            "amount": CASHBACK,
            "due_amount": CASHBACK,
            "shortfall_amount": 0,
            "status": "clawed_back",
        }
        statement = await api.client.get(
            f"/v1/wallets/{purchase.customer.wallet_id}/statement", headers=purchase.customer.auth
        )
        last = statement.json()["data"][-1]
        assert (last["kind"], last["direction"], last["amount"], last["counterparty"]) == (
            "clawback",
            "debit",
            CASHBACK,
            "rewards_pool",
        )
        # Again, duplicated, and with the consumer's record lost: nothing more moves.
        assert await run(api, [refund, refund]) == {}
        await forget_processed(api, refund)
        assert await run(api, [refund]) == {}
        assert await purchase.balances() == (wallet - CASHBACK, POOL)

    async def test_partial_refunds_take_their_share_and_never_more(self, api: Server) -> None:
        purchase = await Purchase.make(api)
        wallet, _ = await purchase.balances()
        await purchase.refund(10_000)  # a quarter: 250 back
        cashback = await purchase.cashback()
        assert (cashback["status"], cashback["clawed_back_amount"]) == (
            "partially_clawed_back",
            250,
        )
        await purchase.refund(12_345)  # 22,345 of 40,000 refunded: 558 in all, 308 more
        assert (await purchase.cashback())["clawed_back_amount"] == 558
        await purchase.refund(17_655)  # the rest of the payment: the rest of the cashback
        await purchase.refund(5_000)  # more than the payment: nothing is left to take
        cashback = await purchase.cashback()
        assert (cashback["status"], cashback["clawed_back_amount"]) == ("clawed_back", CASHBACK)
        assert await purchase.balances() == (wallet - CASHBACK, POOL)


class TestNothingToTake:
    async def test_refunds_of_payments_without_cashback_move_nothing(self, api: Server) -> None:
        purchase = await Purchase.make(api, earn=False)
        before = await purchase.balances()
        refund = await purchase.refund(PAYMENT)
        assert await cashbacks(api, purchase.customer) == []
        assert await purchase.balances() == before
        assert await clawed_back_event(api, refund) is None

    async def test_what_the_wallet_spent_is_written_off(self, api: Server) -> None:
        purchase = await Purchase.make(api)
        friend = await shopper(api, purchase.currency)
        wallet, _ = await purchase.balances()
        await pay(api, purchase.customer, friend, wallet - 400)  # 400 left of the 1,000
        refund = await purchase.refund(PAYMENT)
        cashback = await purchase.cashback()
        assert (cashback["status"], cashback["clawed_back_amount"]) == (
            "partially_clawed_back",
            400,
        )
        assert await purchase.balances() == (0, POOL - CASHBACK + 400)
        told = await clawed_back_event(api, refund)
        assert told is not None
        assert (told.data["amount"], told.data["shortfall_amount"]) == (400, 600)
        async with api.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(models.cashbacks).where(
                        models.cashbacks.c.source_id == purchase.paid["id"]
                    )
                )
            ).one()
        assert (row.shortfall_amount, row.refunded_amount) == (600, PAYMENT)


class TestOrder:
    async def test_a_refund_before_the_cashback_reduces_it_when_it_is_paid(
        self, api: Server
    ) -> None:
        # The cashback event waits (say, parked until the pool is funded) while half the
        # payment is refunded: when the cashback is finally paid, half comes straight back.
        purchase = await Purchase.make(api, process=False)
        before, _ = await purchase.balances()
        refund = await purchase.refund(PAYMENT // 2)
        assert await cashbacks(api, purchase.customer) == []
        await purchase.process_payment()
        await purchase.process_payment()
        cashback = await purchase.cashback()
        assert (cashback["amount"], cashback["clawed_back_amount"]) == (CASHBACK, CASHBACK // 2)
        assert await purchase.balances() == (before + CASHBACK // 2, POOL - CASHBACK // 2)
        assert await clawed_back_event(api, refund) is not None
        assert await run(api, [refund]) == {}
        assert (await purchase.cashback())["clawed_back_amount"] == CASHBACK // 2

    async def test_refund_and_payment_in_one_batch_either_way(self, api: Server) -> None:
        purchase = await Purchase.make(api, process=False)
        before, _ = await purchase.balances()
        payment = await transfer_event(api, purchase.paid)
        refund = await purchase.refund_only(PAYMENT)
        assert await run(api, [refund, payment, refund, payment]) == {}
        cashback = await purchase.cashback()
        assert (cashback["status"], cashback["clawed_back_amount"]) == ("clawed_back", CASHBACK)
        assert await purchase.balances() == (before, POOL)

    async def test_a_payment_waits_for_a_refund_being_applied(self, api: Server) -> None:
        """The refund's transaction is still open when the cashback is paid in another:
        the payment waits for it (a lock per payment), sees the refund, and takes its share
        back. Without the wait each would miss the other's uncommitted row."""
        purchase = await Purchase.make(api, process=False)
        before, _ = await purchase.balances()
        payment = await transfer_event(api, purchase.paid)
        refund = await purchase.refund_only(PAYMENT)
        async with api.engine.begin() as conn:
            assert await service.claw_back(conn, refund_of(refund), event_id=refund.id)
            paying = asyncio.create_task(run(api, [payment]))
            await asyncio.sleep(0.3)
            assert not paying.done()
        assert await paying == {}
        cashback = await purchase.cashback()
        assert (cashback["status"], cashback["clawed_back_amount"]) == ("clawed_back", CASHBACK)
        assert await purchase.balances() == (before, POOL)
        assert await run(api, [refund]) == {}
        assert await purchase.balances() == (before, POOL)
