"""Refunds over HTTP on both backends: full, partial, several; never more than was
captured, also when requests race; who may; every refusal changes nothing."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.api.conftest import Server, key
from tests.payments.support import (
    assert_problem,
    authorized,
    cancel,
    capture,
    customer,
    funds,
    get_payment,
    merchant,
    operator,
    paid,
    refund,
    snapshot,
    wallet_funds,
)


async def refunds_of(api: Server, auth: dict[str, str], payment_id: str) -> list[dict[str, Any]]:
    response = await api.client.get(f"/v1/payments/{payment_id}/refunds", headers=auth)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


class TestRefunds:
    async def test_a_full_refund_by_default(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await paid(api, payer, shop, 4_000)
        response = await refund(api, shop.auth, payment_id, reason="requested_by_customer")
        assert response.status_code == 201, response.text
        body = response.json()
        assert re.fullmatch(r"re_[0-9a-f]{32}", body["id"])
        assert body["object"] == "refund"
        assert (body["status"], body["payment"]) == ("succeeded", payment_id)
        assert (body["amount"], body["currency"]) == (4_000, "INR")
        assert body["reason"] == "requested_by_customer"
        assert await wallet_funds(api, payer) == funds(10_000)
        assert await wallet_funds(api, shop.user) == funds(0)
        payment = await get_payment(api, payer.auth, payment_id)
        assert (payment["status"], payment["refunded_amount"]) == ("SUCCEEDED", 4_000)
        for auth in (payer.auth, shop.key_auth, (await operator(api)).auth):
            got = await api.client.get(f"/v1/refunds/{body['id']}", headers=auth)
            assert got.json() == body
            assert await refunds_of(api, auth, payment_id) == [body]
        assert_problem(await refund(api, shop.auth, payment_id), 409, "payment_fully_refunded")

    async def test_several_partial_refunds_up_to_the_captured_amount(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await authorized(api, payer, shop, 5_000)
        assert (await capture(api, shop.auth, payment_id, {"amount": 3_000})).status_code == 200
        first = await refund(api, shop.key_auth, payment_id, amount=1_000)
        assert first.status_code == 201, first.text
        before = await snapshot(api, payer, shop, payment_id)
        assert_problem(
            await refund(api, shop.auth, payment_id, amount=2_001), 422, "refund_exceeds_payment"
        )
        assert await snapshot(api, payer, shop, payment_id) == before
        rest = await refund(api, shop.auth, payment_id)
        assert rest.status_code == 201, rest.text
        assert rest.json()["amount"] == 2_000
        assert await wallet_funds(api, payer) == funds(10_000)
        assert await wallet_funds(api, shop.user) == funds(0)
        listed = await refunds_of(api, payer.auth, payment_id)
        assert [r["id"] for r in listed] == [rest.json()["id"], first.json()["id"]]
        paged = await api.client.get(
            f"/v1/payments/{payment_id}/refunds", params={"limit": 1}, headers=payer.auth
        )
        assert [r["id"] for r in paged.json()["data"]] == [rest.json()["id"]]
        assert paged.json()["next_cursor"] is not None

    async def test_refusals_change_nothing(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await paid(api, payer, shop, 2_000)
        pending = await authorized(api, payer, shop, 1_000)
        canceled = await authorized(api, payer, shop, 1_000)
        assert (await cancel(api, shop.auth, canceled)).status_code == 200
        before = await snapshot(api, payer, shop, payment_id, pending, canceled)
        cases: list[tuple[dict[str, Any], int, str]] = [
            ({"payment": payment_id, "amount": 2_001}, 422, "refund_exceeds_payment"),
            ({"payment": payment_id, "amount": 0}, 422, "validation_error"),
            ({"payment": payment_id, "amount": 1.5}, 422, "validation_error"),
            ({"payment": payment_id, "amount": "5"}, 422, "validation_error"),
            ({"payment": payment_id, "reason": "because"}, 422, "validation_error"),
            ({"payment": payment_id, "extra": 1}, 422, "validation_error"),
            ({"amount": 5}, 422, "validation_error"),
            ({"payment": pending}, 409, "payment_not_refundable"),
            ({"payment": canceled}, 409, "payment_not_refundable"),
            ({"payment": "pay_" + "0" * 32}, 404, "payment_not_found"),
            ({"payment": "nonsense"}, 404, "payment_not_found"),
        ]
        for body, status, code in cases:
            response = await api.client.post(
                "/v1/refunds", json=body, headers={**shop.auth, **key()}
            )
            assert_problem(response, status, code, case=body)
        missing = await api.client.post(
            "/v1/refunds", json={"payment": payment_id}, headers=shop.auth
        )
        assert_problem(missing, 400, "idempotency_key_missing")
        assert await snapshot(api, payer, shop, payment_id, pending, canceled) == before

    async def test_a_merchant_without_the_money_cannot_refund(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await paid(api, payer, shop, 2_000)
        spend = await api.client.post(
            "/v1/transfers",
            json={"to": payer.handle, "amount": 1_500, "currency": "INR"},
            headers={**shop.auth, **key()},
        )
        assert spend.status_code == 201, spend.text
        before = await snapshot(api, payer, shop, payment_id)
        assert_problem(await refund(api, shop.auth, payment_id), 422, "insufficient_funds")
        assert await snapshot(api, payer, shop, payment_id) == before
        assert (await refund(api, shop.auth, payment_id, amount=500)).status_code == 201

    async def test_who_may_refund_and_see_refunds(self, api: Server) -> None:
        payer, shop, op = await customer(api), await merchant(api), await operator(api)
        stranger, rival = await customer(api), await merchant(api)
        payment_id = await paid(api, payer, shop, 2_000)
        done = await refund(api, shop.auth, payment_id, amount=100)
        before = await snapshot(api, payer, shop, payment_id)
        for auth in (stranger.auth, rival.auth, rival.key_auth):
            assert_problem(await refund(api, auth, payment_id), 404, "payment_not_found")
            got = await api.client.get(f"/v1/refunds/{done.json()['id']}", headers=auth)
            assert_problem(got, 404, "refund_not_found")
            listed = await api.client.get(f"/v1/payments/{payment_id}/refunds", headers=auth)
            assert_problem(listed, 404, "payment_not_found")
        for auth in (payer.auth, op.auth):
            assert_problem(await refund(api, auth, payment_id), 403, "forbidden")
        for bad in ("re_nothex", "re_" + "0" * 32):
            got = await api.client.get(f"/v1/refunds/{bad}", headers=payer.auth)
            assert_problem(got, 404, "refund_not_found")
        assert await snapshot(api, payer, shop, payment_id) == before

    async def test_a_retried_refund_refunds_once(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await paid(api, payer, shop, 2_000)
        headers = {**shop.auth, **key()}
        body = {"payment": payment_id, "amount": 700}
        first = await api.client.post("/v1/refunds", json=body, headers=headers)
        again = await api.client.post("/v1/refunds", json=body, headers=headers)
        assert first.status_code == again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert await wallet_funds(api, payer) == funds(8_700)


class TestConcurrentRefunds:
    async def test_racing_partial_refunds_never_exceed_the_capture(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await paid(api, payer, shop, 10_000)
        responses = await asyncio.gather(
            *[refund(api, shop.auth, payment_id, amount=1_500) for _ in range(10)]
        )
        ok = [r for r in responses if r.status_code == 201]
        refused = [r for r in responses if r.status_code != 201]
        assert len(ok) == 6, [r.text for r in responses]
        for response in refused:
            assert_problem(response, 422, "refund_exceeds_payment")
        payment = await get_payment(api, shop.auth, payment_id)
        assert payment["refunded_amount"] == 9_000
        assert await wallet_funds(api, payer) == funds(9_000)
        assert await wallet_funds(api, shop.user) == funds(1_000)
        assert len(await refunds_of(api, shop.auth, payment_id)) == 6

    async def test_racing_full_refunds_refund_once(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await paid(api, payer, shop, 3_000)
        responses = await asyncio.gather(*[refund(api, shop.auth, payment_id) for _ in range(6)])
        assert sorted(r.status_code for r in responses) == [201] + [409] * 5
        assert await wallet_funds(api, payer) == funds(10_000)
        assert (await get_payment(api, shop.auth, payment_id))["refunded_amount"] == 3_000
