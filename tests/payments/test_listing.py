"""Listing payments on both backends: a merchant's filtered by status and creation time,
a customer's own, operators' any; cursor pages; bad filters refused. And what settlement
reads: `list_settleable_payments`."""

from __future__ import annotations

import asyncio
from typing import Any

from payflow.ids import parse_public_id
from payflow.payments.queries import list_settleable_payments
from payflow.timestamps import now_ns
from tests.api.conftest import Server, register
from tests.payments.support import (
    Merchant,
    assert_problem,
    authorized,
    cancel,
    capture,
    create_payment,
    customer,
    merchant,
    operator,
    paid,
    refund,
)


async def ids(api: Server, auth: dict[str, str], **params: Any) -> list[str]:
    response = await api.client.get("/v1/payments", params=params, headers=auth)
    assert response.status_code == 200, response.text
    return [p["id"] for p in response.json()["data"]]


async def shop_with_payments(api: Server) -> tuple[Merchant, dict[str, str], list[str]]:
    """A merchant with, oldest first: a success, a failure, an authorization, a success."""
    payer, shop = await customer(api, 5_000), await merchant(api)
    first = await paid(api, payer, shop, 1_000)
    declined = (await create_payment(api, payer, shop, 99_999)).json()["payment"]["id"]
    pending = await authorized(api, payer, shop, 500)
    last = await paid(api, payer, shop, 700)
    return shop, payer.auth, [first, declined, pending, last]


class TestList:
    async def test_a_merchant_filters_by_status_and_time(self, api: Server) -> None:
        shop, _, (first, declined, pending, last) = await shop_with_payments(api)
        for auth in (shop.auth, shop.key_auth):
            assert await ids(api, auth) == [last, pending, declined, first]
            assert await ids(api, auth, status="SUCCEEDED") == [last, first]
            assert await ids(api, auth, status="FAILED") == [declined]
            assert await ids(api, auth, status="INITIATED") == [pending]
        created = {
            p["id"]: p["created_at"]
            for p in (await api.client.get("/v1/payments", headers=shop.auth)).json()["data"]
        }
        window = {"created_gte": created[declined], "created_lt": created[last]}
        assert await ids(api, shop.auth, **window) == [pending, declined]
        assert await ids(api, shop.auth, status="FAILED", **window) == [declined]
        assert await ids(api, shop.auth, created_gte=created[last]) == [last]
        page = await api.client.get("/v1/payments", params={"limit": 3}, headers=shop.auth)
        rest = await ids(api, shop.auth, after=page.json()["next_cursor"])
        assert [p["id"] for p in page.json()["data"]] + rest == [last, pending, declined, first]

    async def test_customers_see_their_own_operators_everyone(self, api: Server) -> None:
        shop, payer_auth, payments = await shop_with_payments(api)
        other = await customer(api)
        mine = await paid(api, other, shop, 100)
        assert await ids(api, payer_auth) == payments[::-1]
        assert await ids(api, payer_auth, status="SUCCEEDED") == [payments[3], payments[0]]
        assert await ids(api, other.auth) == [mine]
        op = await operator(api)
        assert await ids(api, op.auth, merchant=shop.id) == [mine, *payments[::-1]]
        assert mine in await ids(api, op.auth, limit=100)

    async def test_bad_filters_are_refused(self, api: Server) -> None:
        shop, payer_auth, _ = await shop_with_payments(api)
        for params in (
            {"status": "succeeded"},
            {"status": "DONE"},
            {"created_gte": "yesterday"},
            {"created_gte": "2026-01-01T00:00:00"},
            {"created_lt": "2026-13-01T00:00:00Z"},
            {"limit": 0},
            {"limit": 101},
            {"after": "nope"},
        ):
            response = await api.client.get("/v1/payments", params=params, headers=shop.auth)
            assert response.status_code == 422, (params, response.text)
            assert response.json()["code"] in ("validation_error", "cursor_invalid")
        for auth in (shop.auth, payer_auth):
            response = await api.client.get(
                "/v1/payments", params={"merchant": shop.id}, headers=auth
            )
            assert_problem(response, 403, "forbidden")
        op = await operator(api)
        response = await api.client.get(
            "/v1/payments", params={"merchant": "mer_" + "0" * 32}, headers=op.auth
        )
        assert_problem(response, 404, "merchant_not_found")
        no_profile = await register(api.client, role="merchant")
        response = await api.client.get("/v1/payments", headers=no_profile.auth)
        assert_problem(response, 404, "merchant_not_found")


class TestSettleable:
    async def test_succeeded_payments_with_their_refunds_in_batches(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        first = await paid(api, payer, shop, 1_000)
        pending = await authorized(api, payer, shop, 500)
        canceled = await authorized(api, payer, shop, 300)
        assert (await cancel(api, shop.auth, canceled)).status_code == 200
        partly = await authorized(api, payer, shop, 2_000)
        assert (await capture(api, shop.auth, partly, {"amount": 1_200})).status_code == 200
        assert (await refund(api, shop.auth, first, amount=400)).status_code == 201
        await asyncio.sleep(0.01)
        cutoff = now_ns()
        await paid(api, payer, shop, 50)  # after the cutoff
        merchant_id = parse_public_id("mer", shop.id)
        async with api.engine.connect() as conn:
            batch = await list_settleable_payments(
                conn,
                merchant_id=merchant_id,
                currency="INR",
                created_before_ns=cutoff,
                after=None,
                limit=1,
            )
            rest = await list_settleable_payments(
                conn,
                merchant_id=merchant_id,
                currency="INR",
                created_before_ns=cutoff,
                after=batch[-1].id,
                limit=10,
            )
            other = await list_settleable_payments(
                conn,
                merchant_id=merchant_id,
                currency="USD",
                created_before_ns=cutoff,
                after=None,
                limit=10,
            )
        found = batch + rest
        assert [f"pay_{p.id.hex}" for p in found] == [first, partly]
        assert [(p.captured_amount, p.refunded_amount) for p in found] == [(1_000, 400), (1_200, 0)]
        assert all(p.currency == "INR" and p.succeeded_at >= p.created_at for p in found)
        assert other == []
        assert pending not in [f"pay_{p.id.hex}" for p in found]
