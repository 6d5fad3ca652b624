"""What payments tell the rest of PayFlow, read from the outbox: the data contracts
rewards and webhooks rely on, and cashback paid on `payment.succeeded` and clawed back on
`payment.refunded` by the real rewards consumer (end to end, in a currency of the test's
own)."""

from __future__ import annotations

from sqlalchemy import select

from payflow.events import models as event_models
from payflow.events.domain import Event, derived_event_id
from payflow.ids import parse_public_id
from payflow.payments.events import (
    PAYMENT_FAILED,
    PAYMENT_INITIATED,
    PAYMENT_REFUNDED,
    PAYMENT_SUCCEEDED,
)
from tests.api.conftest import Server
from tests.payments.support import (
    authorized,
    cancel,
    capture,
    create_payment,
    customer,
    get_payment,
    merchant,
    operator,
    paid,
    refund,
)
from tests.rewards import (
    cashbacks,
    create_rule,
    fresh_currency,
    fund_pool,
    run,
    shopper,
    stored_event,
    wallet_balance,
)


async def event_of(api: Server, cause: str, event_type: str) -> Event:
    prefix = cause.split("_", 1)[0]
    return await stored_event(api, derived_event_id(parse_public_id(prefix, cause), event_type))


async def outbox_types(api: Server, aggregate_id: str) -> list[str]:
    table = event_models.outbox
    async with api.engine.connect() as conn:
        rows = await conn.execute(
            select(table.c.type)
            .where(table.c.aggregate_id == aggregate_id)
            .order_by(table.c.sequence)
        )
        return [row.type for row in rows]


class TestContracts:
    async def test_an_automatic_payment_tells_payment_succeeded_only(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await paid(api, payer, shop, 1_234)
        event = await event_of(api, payment_id, PAYMENT_SUCCEEDED)
        payment = await get_payment(api, payer.auth, payment_id)
        assert event.aggregate_type == "payment"
        assert event.data == {
            "payment_id": payment_id,
            "amount": 1_234,
            "currency": "INR",
            "merchant_id": shop.id,
            "customer_user_id": payer.id,
            "customer_wallet_id": payer.wallet_id,
            "merchant_user_id": shop.user.id,
            "merchant_wallet_id": shop.wallet_id,
            "payment": payment,
        }
        assert await outbox_types(api, payment_id) == [PAYMENT_SUCCEEDED]
        # Not also a transfer: rewards would count the same money twice.
        assert await outbox_types(api, "txn_" + payment_id.removeprefix("pay_")) == []

    async def test_manual_capture_partial_refund_and_failures(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await authorized(api, payer, shop, 4_000)
        initiated = await event_of(api, payment_id, PAYMENT_INITIATED)
        assert initiated.data["amount"] == 4_000
        assert initiated.data["payment"]["status"] == "INITIATED"
        assert (await capture(api, shop.auth, payment_id, {"amount": 3_000})).status_code == 200
        succeeded = await event_of(api, payment_id, PAYMENT_SUCCEEDED)
        assert succeeded.data["amount"] == 3_000
        refunded = await refund(api, shop.auth, payment_id, amount=1_000)
        told = await event_of(api, refunded.json()["id"], PAYMENT_REFUNDED)
        assert told.aggregate_id == payment_id
        assert {k: v for k, v in told.data.items() if k not in ("payment", "refund")} == {
            "refund_id": refunded.json()["id"],
            "payment_id": payment_id,
            "amount": 1_000,
            "payment_amount": 3_000,
            "currency": "INR",
            "customer_user_id": payer.id,
            "merchant_user_id": shop.user.id,
            "merchant_id": shop.id,
        }
        assert told.data["refund"] == refunded.json()
        assert told.data["payment"]["refunded_amount"] == 1_000
        canceled = await authorized(api, payer, shop, 500)
        assert (await cancel(api, shop.auth, canceled)).status_code == 200
        failed = await event_of(api, canceled, PAYMENT_FAILED)
        assert (failed.data["failure_reason"], failed.data["customer_user_id"]) == (
            "canceled",
            payer.id,
        )
        declined = await create_payment(api, payer, shop, 10**9)
        declined_id = declined.json()["payment"]["id"]
        failed = await event_of(api, declined_id, PAYMENT_FAILED)
        assert failed.data["failure_reason"] == "insufficient_funds"
        assert await outbox_types(api, payment_id) == [
            PAYMENT_INITIATED,
            PAYMENT_SUCCEEDED,
            PAYMENT_REFUNDED,
        ]


class TestCashback:
    async def test_cashback_is_paid_on_success_and_clawed_back_on_refunds(
        self, api: Server
    ) -> None:
        currency = fresh_currency(api)
        op = await operator(api)
        buyer = await shopper(api, currency, funds=100_000)
        shop = await merchant(api, currency=currency)
        await fund_pool(api, op, currency, 10_000)
        await create_rule(api, op, currency=currency, rate_bp=500, cap_amount=5_000)
        response = await create_payment(api, buyer.user, shop, 40_000, currency=currency)
        assert response.status_code == 201, response.text
        payment_id = response.json()["id"]
        assert await run(api, [await event_of(api, payment_id, PAYMENT_SUCCEEDED)]) == {}
        [cashback] = await cashbacks(api, buyer)
        assert (cashback["amount"], cashback["source_id"]) == (2_000, payment_id)
        assert await wallet_balance(api.client, buyer) == 100_000 - 40_000 + 2_000
        quarter = await refund(api, shop.auth, payment_id, amount=10_000)
        assert quarter.status_code == 201, quarter.text
        event = await event_of(api, quarter.json()["id"], PAYMENT_REFUNDED)
        assert await run(api, [event, event]) == {}
        [cashback] = await cashbacks(api, buyer)
        assert (cashback["status"], cashback["clawed_back_amount"]) == (
            "partially_clawed_back",
            500,
        )
        rest = await refund(api, shop.auth, payment_id)
        assert await run(api, [await event_of(api, rest.json()["id"], PAYMENT_REFUNDED)]) == {}
        [cashback] = await cashbacks(api, buyer)
        assert (cashback["status"], cashback["clawed_back_amount"]) == ("clawed_back", 2_000)
        assert await wallet_balance(api.client, buyer) == 100_000
