"""Cashback end to end on both backends: real payments over HTTP write real events, the
rewards consumer pays from the pool exactly once, and users see it."""

from __future__ import annotations

import uuid

from payflow.events.domain import Event
from payflow.ids import format_public_id
from payflow.rewards.domain import cashback_id_for
from payflow.rewards.events import PAYMENT_SUCCEEDED
from payflow.timestamps import now_ns
from tests.api.conftest import (
    Server,
    User,
    create_operator,
    key,
)
from tests.rewards import (  # noqa: F401 (fixtures)
    Shopper,
    cashback_paid_event,
    cashbacks,
    create_rule,
    forget_processed,
    fresh_currency,
    fund_pool,
    pay,
    pool_balance,
    publish,
    rewards_api,
    rewards_server,
    run,
    shopper,
    transfer_event,
    wallet_balance,
)


async def setting(
    api: Server, *, funds: int = 1_000_000, pool: int = 100_000
) -> tuple[str, Shopper, Shopper, User]:
    """A fresh currency with a funded pool, a customer with `funds`, a merchant, an operator."""
    currency = fresh_currency(api)
    operator = await create_operator(api)
    customer = await shopper(api, currency, funds=funds)
    merchant = await shopper(api, currency, role="merchant")
    if pool:
        await fund_pool(api, operator, currency, pool)
    return currency, customer, merchant, operator


class TestPaid:
    async def test_a_payment_to_a_merchant_earns_cashback_once(self, api: Server) -> None:
        currency, customer, merchant, operator = await setting(api)
        rule = await create_rule(
            api,
            operator,
            currency=currency,
            rate_bp=250,
            cap_amount=1_000,
            merchant_id=merchant.user.id,
        )
        paid = await pay(api, customer, merchant, 20_000)
        event = await transfer_event(api, paid)
        assert await run(api, [event]) == {}
        cashback_amount = 500  # 2.5 % of 20,000
        assert await wallet_balance(api.client, customer) == 1_000_000 - 20_000 + cashback_amount
        assert await pool_balance(api, operator, currency) == 100_000 - cashback_amount
        [mine] = await cashbacks(api, customer)
        cashback_id = format_public_id("cbk", cashback_id_for(event.id))
        assert mine == {
            "id": cashback_id,
            "object": "cashback",
            "status": "paid",
            "amount": cashback_amount,
            "clawed_back_amount": 0,
            "currency": currency,
            "wallet_id": customer.wallet_id,
            "source_id": paid["id"],
            "rule_id": rule["id"],
            "created_at": mine["created_at"],
            "updated_at": mine["created_at"],
        }
        statement = await api.client.get(
            f"/v1/wallets/{customer.wallet_id}/statement", headers=customer.auth
        )
        last = statement.json()["data"][-1]
        assert (last["kind"], last["direction"], last["amount"], last["counterparty"]) == (
            "cashback",
            "credit",
            cashback_amount,
            "rewards_pool",
        )
        assert last["balance"]["posted"] == 1_000_000 - 20_000 + cashback_amount
        told = await cashback_paid_event(api, event)
        assert told is not None
        assert told.data == {
            "cashback_id": cashback_id,
            "user_id": customer.user.id,
            "wallet_id": customer.wallet_id,
            "currency": currency,
            "source_id": paid["id"],
            "amount": cashback_amount,
            "rule_id": rule["id"],
        }
        # The merchant earns nothing; the customer's cashback is theirs alone.
        assert await cashbacks(api, merchant) == []
        assert await wallet_balance(api.client, merchant) == 20_000

        # Delivered again, duplicated, reordered, and with the consumer's record lost.
        other = await transfer_event(api, await pay(api, customer, merchant, 4_000))
        assert await run(api, [other, event, event, other]) == {}
        assert await run(api, [event]) == {}
        await forget_processed(api, event)
        assert await run(api, [event]) == {}
        amounts = sorted(c["amount"] for c in await cashbacks(api, customer))
        assert amounts == [100, cashback_amount]
        balance = 1_000_000 - 24_000 + cashback_amount + 100
        assert await wallet_balance(api.client, customer) == balance
        assert await pool_balance(api, operator, currency) == 100_000 - cashback_amount - 100

    async def test_a_captured_hold_earns_cashback(self, api: Server) -> None:
        currency, customer, merchant, operator = await setting(api)
        await create_rule(api, operator, currency=currency, rate_bp=1_000, cap_amount=700)
        held = await api.client.post(
            "/v1/holds",
            json={"amount": 9_000, "currency": currency},
            headers={**customer.auth, **key()},
        )
        assert held.status_code == 201, held.text
        captured = await api.client.post(
            f"/v1/holds/{held.json()['id']}/capture",
            json={"to": merchant.wallet_id, "amount": 8_000},
            headers={**customer.auth, **key()},
        )
        assert captured.status_code == 200, captured.text
        event = await transfer_event(api, captured.json()["transfer"])
        assert await run(api, [event]) == {}
        [mine] = await cashbacks(api, customer)
        assert (mine["amount"], mine["source_id"]) == (700, captured.json()["transfer"]["id"])

    async def test_payment_succeeded_events_earn_cashback(self, api: Server) -> None:
        currency, customer, merchant, operator = await setting(api)
        await create_rule(api, operator, currency=currency, rate_bp=100, cap_amount=10_000)
        payment_id = format_public_id("pay", uuid.uuid4())
        event = await publish(
            api,
            Event(
                id=uuid.uuid4(),
                type=PAYMENT_SUCCEEDED,
                aggregate_type="payment",
                aggregate_id=payment_id,
                occurred_at=now_ns(),
                data={
                    "payment_id": payment_id,
                    "amount": 50_000,
                    "currency": currency,
                    "customer_user_id": customer.user.id,
                    "customer_wallet_id": customer.wallet_id,
                    "merchant_user_id": merchant.user.id,
                    "merchant_wallet_id": merchant.wallet_id,
                },
            ),
        )
        assert await run(api, [event, event]) == {}
        [mine] = await cashbacks(api, customer)
        assert (mine["amount"], mine["source_id"]) == (500, payment_id)


class TestNotPaid:
    async def test_no_cashback_between_customers_for_top_ups_or_to_merchants_paying(
        self, api: Server
    ) -> None:
        currency, customer, merchant, operator = await setting(api)
        await create_rule(api, operator, currency=currency, rate_bp=500, cap_amount=10_000)
        friend = await shopper(api, currency)
        other_merchant = await shopper(api, currency, role="merchant", funds=50_000)
        events = [
            await transfer_event(api, await pay(api, customer, friend, 10_000)),
            await transfer_event(api, await pay(api, other_merchant, merchant, 10_000)),
        ]
        topped = await api.client.post(
            f"/v1/wallets/{customer.wallet_id}/topups",
            json={"amount": 10_000},
            headers={**customer.auth, **key()},
        )
        events.append(await transfer_event(api, topped.json()))
        assert await run(api, events) == {}
        for owner in (customer, friend, other_merchant, merchant):
            assert await cashbacks(api, owner) == []
        assert await pool_balance(api, operator, currency) == 100_000

    async def test_minimum_inactive_rules_and_other_currencies_pay_nothing(
        self, api: Server
    ) -> None:
        currency, customer, merchant, operator = await setting(api)
        await create_rule(
            api, operator, currency=currency, rate_bp=500, cap_amount=10_000, minimum_amount=10_000
        )
        off = await create_rule(api, operator, currency=currency, rate_bp=900, cap_amount=10_000)
        response = await api.client.post(
            f"/v1/operator/rewards/rules/{off['id']}/deactivate", headers=operator.auth
        )
        assert response.status_code == 200, response.text
        await create_rule(
            api, operator, currency=fresh_currency(api), rate_bp=900, cap_amount=10_000
        )
        own = await create_rule(
            api, operator, currency=currency, rate_bp=1, cap_amount=10, merchant_id=merchant.user.id
        )
        # The merchant's own 0.01 % gives nothing on 9,999 (it rounds down), and 9,999 is
        # below the global rule's minimum: nothing at all.
        below = await transfer_event(api, await pay(api, customer, merchant, 9_999))
        assert await run(api, [below]) == {}
        assert await cashbacks(api, customer) == []
        # At 10,000 the merchant's own rule pays 1 and beats the global 5 %.
        exact = await transfer_event(api, await pay(api, customer, merchant, 10_000))
        assert await run(api, [exact]) == {}
        [mine] = await cashbacks(api, customer)
        assert (mine["amount"], mine["rule_id"]) == (1, own["id"])


class TestRuleChoice:
    async def test_the_merchants_own_rule_wins_else_the_richest_global_one(
        self, api: Server
    ) -> None:
        currency, customer, merchant, operator = await setting(api)
        elsewhere = await shopper(api, currency, role="merchant")
        own = await create_rule(
            api,
            operator,
            currency=currency,
            rate_bp=100,
            cap_amount=10_000,
            merchant_id=merchant.user.id,
        )
        await create_rule(api, operator, currency=currency, rate_bp=300, cap_amount=10_000)
        richest = await create_rule(
            api, operator, currency=currency, rate_bp=800, cap_amount=10_000
        )
        capped = await create_rule(api, operator, currency=currency, rate_bp=2_000, cap_amount=50)
        events = [
            await transfer_event(api, await pay(api, customer, merchant, 10_000)),
            await transfer_event(api, await pay(api, customer, elsewhere, 10_000)),
        ]
        assert await run(api, events) == {}
        by_source = {c["source_id"]: c for c in await cashbacks(api, customer)}
        at_merchant = by_source[events[0].data["id"]]
        at_elsewhere = by_source[events[1].data["id"]]
        assert (at_merchant["rule_id"], at_merchant["amount"]) == (own["id"], 100)
        assert (at_elsewhere["rule_id"], at_elsewhere["amount"]) == (richest["id"], 800)
        assert capped["id"] not in {c["rule_id"] for c in by_source.values()}


class TestListing:
    async def test_own_cashbacks_newest_first_with_a_cursor(self, api: Server) -> None:
        currency, customer, merchant, operator = await setting(api)
        await create_rule(api, operator, currency=currency, rate_bp=100, cap_amount=10_000)
        events = [
            await transfer_event(api, await pay(api, customer, merchant, amount))
            for amount in (1_000, 2_000, 3_000)
        ]
        for event in events:
            assert await run(api, [event]) == {}
        first = await api.client.get(
            "/v1/rewards/cashbacks", params={"limit": 2}, headers=customer.auth
        )
        page = first.json()
        assert [c["amount"] for c in page["data"]] == [30, 20]
        rest = await api.client.get(
            "/v1/rewards/cashbacks",
            params={"limit": 2, "after": page["next_cursor"]},
            headers=customer.auth,
        )
        assert [c["amount"] for c in rest.json()["data"]] == [10]
        assert rest.json()["next_cursor"] is None
        assert await cashbacks(api, merchant) == []
