"""Merchant payments over HTTP on both backends: automatic and manual capture, partial
capture, cancel, the state machine's terminal states, idempotency by key, who may do
what; every refusal changes nothing."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import redis.asyncio as redis
from sqlalchemy import delete, func, select

from payflow.api.models import idempotency_keys
from payflow.ids import parse_public_id
from payflow.ledger.models import transfers as ledger_transfers
from tests.api.conftest import Server, key
from tests.payments.support import (
    assert_problem,
    authorized,
    cancel,
    capture,
    create_payment,
    customer,
    funds,
    get_payment,
    merchant,
    operator,
    paid,
    snapshot,
    wallet_funds,
)

CREATE_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"amount": 0}, 422, "validation_error"),
    ({"amount": -5}, 422, "validation_error"),
    ({"amount": 1.5}, 422, "validation_error"),
    ({"amount": "10"}, 422, "validation_error"),
    ({"amount": True}, 422, "validation_error"),
    ({"amount": 2**63}, 422, "validation_error"),
    ({"currency": "inr"}, 422, "validation_error"),
    ({"currency": "USD"}, 422, "currency_not_accepted"),
    ({"capture_method": "later"}, 422, "validation_error"),
    ({"description": ""}, 422, "validation_error"),
    ({"description": "x" * 501}, 422, "validation_error"),
    ({"metadata": {"order": 5}}, 422, "validation_error"),
    ({"metadata": [1]}, 422, "validation_error"),
    ({"metadata": {f"k{i}": "v" for i in range(21)}}, 422, "metadata_invalid"),
    ({"metadata": {"k" * 41: "v"}}, 422, "metadata_invalid"),
    ({"metadata": {"": "v"}}, 422, "metadata_invalid"),
    ({"metadata": {"k": "v" * 501}}, 422, "metadata_invalid"),
    ({"merchant": "mer_" + "0" * 32}, 404, "merchant_not_found"),
    ({"merchant": "nonsense"}, 404, "merchant_not_found"),
    ({"merchant": ""}, 422, "validation_error"),
    ({"unknown": 1}, 422, "validation_error"),
]


class TestAutomatic:
    async def test_a_payment_moves_the_money_at_once(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        response = await create_payment(
            api, payer, shop, 2_500, description="2 chai", metadata={"order": "A-17"}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert re.fullmatch(r"pay_[0-9a-f]{32}", body["id"])
        assert body["object"] == "payment"
        assert body["status"] == "SUCCEEDED"
        assert body["failure_reason"] is None
        assert body["merchant"] == shop.id
        assert body["merchant_user_id"] == shop.user.id
        assert body["customer_user_id"] == payer.id
        assert body["customer_wallet_id"] == payer.wallet_id
        assert (body["amount"], body["captured_amount"], body["refunded_amount"]) == (
            2_500,
            2_500,
            0,
        )
        assert body["capture_method"] == "automatic"
        assert body["authorized_amount"] is None
        assert body["metadata"] == {"order": "A-17"}
        assert body["description"] == "2 chai"
        assert body["succeeded_at"] == body["created_at"]
        assert body["failed_at"] is None
        assert await wallet_funds(api, payer) == funds(7_500)
        assert await wallet_funds(api, shop.user) == funds(2_500)
        for auth in (payer.auth, shop.auth, shop.key_auth, (await operator(api)).auth):
            assert await get_payment(api, auth, body["id"]) == body

    async def test_insufficient_funds_is_recorded_as_failed_and_answered_402(
        self, api: Server
    ) -> None:
        payer, shop = await customer(api, 1_000), await merchant(api)
        response = await create_payment(api, payer, shop, 1_001)
        problem = assert_problem(response, 402, "insufficient_funds")
        payment = problem["payment"]
        assert payment["status"] == "FAILED"
        assert payment["failure_reason"] == "insufficient_funds"
        assert payment["captured_amount"] == 0
        assert payment["failed_at"] is not None
        assert await get_payment(api, payer.auth, payment["id"]) == payment
        assert await wallet_funds(api, payer) == funds(1_000)
        assert await wallet_funds(api, shop.user) == funds(0)
        # A failed payment is terminal: nothing can be done to it.
        assert_problem(await capture(api, shop.auth, payment["id"]), 409, "payment_already_failed")
        assert_problem(await cancel(api, shop.auth, payment["id"]), 409, "payment_already_failed")

    async def test_a_suspended_merchant_fails_payments(self, api: Server) -> None:
        payer, shop, op = await customer(api), await merchant(api), await operator(api)
        suspended = await api.client.patch(
            f"/v1/operator/merchants/{shop.id}", json={"status": "suspended"}, headers=op.auth
        )
        assert suspended.status_code == 200, suspended.text
        headers = {**payer.auth, **key()}
        body = {"merchant": shop.id, "amount": 500, "currency": "INR"}
        response = await api.client.post("/v1/payments", json=body, headers=headers)
        problem = assert_problem(response, 402, "merchant_suspended")
        assert problem["payment"]["status"] == "FAILED"
        assert problem["payment"]["failure_reason"] == "merchant_suspended"
        again = await api.client.post("/v1/payments", json=body, headers=headers)
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.json() == problem
        assert await wallet_funds(api, payer) == funds(10_000)
        assert await wallet_funds(api, shop.user) == funds(0)

    async def test_refusals_change_nothing(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        before = await snapshot(api, payer, shop)
        listed = await api.client.get("/v1/payments", headers=payer.auth)
        for change, status, code in CREATE_REFUSALS:
            body = {"merchant": shop.id, "amount": 100, "currency": "INR", **change}
            response = await api.client.post(
                "/v1/payments", json=body, headers={**payer.auth, **key()}
            )
            assert_problem(response, status, code, case=change)
        missing = await api.client.post(
            "/v1/payments",
            json={"merchant": shop.id, "amount": 100, "currency": "INR"},
            headers=payer.auth,
        )
        assert_problem(missing, 400, "idempotency_key_missing")
        assert await snapshot(api, payer, shop) == before
        assert (await api.client.get("/v1/payments", headers=payer.auth)).json() == listed.json()

    async def test_only_customers_pay(self, api: Server) -> None:
        payer, shop, op = await customer(api), await merchant(api), await operator(api)
        other = await merchant(api)
        before = await snapshot(api, payer, shop)
        for auth in (other.auth, other.key_auth, op.auth):
            response = await api.client.post(
                "/v1/payments",
                json={"merchant": shop.id, "amount": 100, "currency": "INR"},
                headers={**auth, **key()},
            )
            assert_problem(response, 403, "forbidden")
        assert await snapshot(api, payer, shop) == before


async def forget_key(api: Server, idem: str) -> None:
    """What the API's key store does a day later: forget the key (and its Redis copy)."""
    async with api.engine.begin() as conn:
        await conn.execute(delete(idempotency_keys).where(idempotency_keys.c.key == idem))
    if api.settings.redis_url is not None:
        client = redis.from_url(api.settings.redis_url)
        async for name in client.scan_iter(match=f"*{idem}*"):
            await client.delete(name)
        await client.aclose()


class TestIdempotency:
    async def test_a_retry_replays_and_moves_money_once(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        idem = uuid.uuid4().hex
        first = await create_payment(api, payer, shop, 1_000, idempotency_key=idem)
        again = await create_payment(api, payer, shop, 1_000, idempotency_key=idem)
        assert first.status_code == again.status_code == 201
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        other = await create_payment(api, payer, shop, 999, idempotency_key=idem)
        assert_problem(other, 422, "idempotency_key_reused")
        assert await wallet_funds(api, payer) == funds(9_000)

    async def test_the_key_stays_on_the_payment_after_the_api_forgets_it(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        idem = uuid.uuid4().hex
        first = await create_payment(api, payer, shop, 1_000, idempotency_key=idem)
        assert first.status_code == 201, first.text
        await forget_key(api, idem)
        again = await create_payment(api, payer, shop, 1_000, idempotency_key=idem)
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        await forget_key(api, idem)
        reused = await create_payment(api, payer, shop, 2_000, idempotency_key=idem)
        assert_problem(reused, 422, "idempotency_key_reused")
        payment_id = parse_public_id("pay", first.json()["id"])
        async with api.engine.connect() as conn:
            count = await conn.scalar(
                select(func.count())
                .select_from(ledger_transfers)
                .where(ledger_transfers.c.id == payment_id)
            )
        assert count == 1
        assert await wallet_funds(api, payer) == funds(9_000)

    async def test_concurrent_duplicates_pay_once(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        idem = uuid.uuid4().hex
        responses = await asyncio.gather(
            *[create_payment(api, payer, shop, 700, idempotency_key=idem) for _ in range(5)]
        )
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {201, 409}, [r.text for r in responses]
        assert 201 in statuses
        ids = {r.json()["id"] for r in responses if r.status_code == 201}
        assert len(ids) == 1
        assert await wallet_funds(api, payer) == funds(9_300)


class TestManual:
    async def test_authorize_then_capture_in_full(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        response = await create_payment(api, payer, shop, 4_000, capture_method="manual")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "INITIATED"
        assert body["authorized_amount"] == 4_000
        assert body["captured_amount"] == 0
        assert body["authorization_expires_at"] > body["created_at"]
        assert await wallet_funds(api, payer) == funds(10_000, pending=4_000)
        assert await wallet_funds(api, shop.user) == funds(0)
        captured = await capture(api, shop.key_auth, body["id"])
        assert captured.status_code == 200, captured.text
        done = captured.json()
        assert (done["status"], done["captured_amount"]) == ("SUCCEEDED", 4_000)
        assert done["succeeded_at"] is not None
        assert await get_payment(api, payer.auth, body["id"]) == done
        assert await wallet_funds(api, payer) == funds(6_000)
        assert await wallet_funds(api, shop.user) == funds(4_000)

    async def test_partial_capture_returns_the_rest(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await authorized(api, payer, shop, 4_000)
        captured = await capture(api, shop.auth, payment_id, {"amount": 1_500})
        assert captured.status_code == 200, captured.text
        assert captured.json()["captured_amount"] == 1_500
        assert captured.json()["authorized_amount"] == 4_000
        assert await wallet_funds(api, payer) == funds(8_500)
        assert await wallet_funds(api, shop.user) == funds(1_500)

    async def test_cancel_releases_the_money(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await authorized(api, payer, shop, 3_000)
        canceled = await cancel(api, shop.auth, payment_id)
        assert canceled.status_code == 200, canceled.text
        body = canceled.json()
        assert (body["status"], body["failure_reason"]) == ("FAILED", "canceled")
        assert body["failed_at"] is not None
        assert await wallet_funds(api, payer) == funds(10_000)
        assert await wallet_funds(api, shop.user) == funds(0)

    async def test_an_authorization_beyond_the_balance_fails(self, api: Server) -> None:
        payer, shop = await customer(api, 100), await merchant(api)
        response = await create_payment(api, payer, shop, 101, capture_method="manual")
        problem = assert_problem(response, 402, "insufficient_funds")
        assert problem["payment"]["authorized_amount"] is None
        assert await wallet_funds(api, payer) == funds(100)

    async def test_terminal_payments_never_change(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        captured = await authorized(api, payer, shop, 1_000)
        assert (await capture(api, shop.auth, captured)).status_code == 200
        canceled = await authorized(api, payer, shop, 2_000)
        assert (await cancel(api, shop.auth, canceled)).status_code == 200
        automatic = await paid(api, payer, shop, 500)
        before = await snapshot(api, payer, shop, captured, canceled, automatic)
        for payment_id, code in (
            (captured, "payment_already_succeeded"),
            (automatic, "payment_already_succeeded"),
            (canceled, "payment_already_failed"),
        ):
            assert_problem(await capture(api, shop.auth, payment_id), 409, code)
            assert_problem(await cancel(api, shop.auth, payment_id), 409, code)
        assert await snapshot(api, payer, shop, captured, canceled, automatic) == before

    async def test_refused_captures_change_nothing(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        payment_id = await authorized(api, payer, shop, 4_000)
        before = await snapshot(api, payer, shop, payment_id)
        refusals: list[tuple[dict[str, Any], int, str]] = [
            ({"amount": 4_001}, 422, "capture_exceeds_authorization"),
            ({"amount": 0}, 422, "validation_error"),
            ({"amount": 1.5}, 422, "validation_error"),
            ({"amount": "10"}, 422, "validation_error"),
            ({"to": "x"}, 422, "validation_error"),
        ]
        for body, status, code in refusals:
            response = await capture(api, shop.auth, payment_id, body)
            assert_problem(response, status, code, case=body)
        bad_cancel = await api.client.post(
            f"/v1/payments/{payment_id}/cancel", json={"x": 1}, headers={**shop.auth, **key()}
        )
        assert_problem(bad_cancel, 422, "validation_error")
        assert await snapshot(api, payer, shop, payment_id) == before

    async def test_capture_and_cancel_race_exactly_one_wins(self, api: Server) -> None:
        payer, shop = await customer(api), await merchant(api)
        captured = 0
        for _ in range(4):
            payment_id = await authorized(api, payer, shop, 1_000)
            won, lost = await asyncio.gather(
                capture(api, shop.auth, payment_id), cancel(api, shop.auth, payment_id)
            )
            assert sorted([won.status_code, lost.status_code]) == [200, 409], (won.text, lost.text)
            status = (await get_payment(api, shop.auth, payment_id))["status"]
            if won.status_code == 200:
                captured += 1
                assert status == "SUCCEEDED"
            else:
                assert status == "FAILED"
        assert await wallet_funds(api, payer) == funds(10_000 - captured * 1_000)
        assert await wallet_funds(api, shop.user) == funds(captured * 1_000)

    async def test_a_suspended_merchant_cannot_capture_but_can_cancel(self, api: Server) -> None:
        payer, shop, op = await customer(api), await merchant(api), await operator(api)
        payment_id = await authorized(api, payer, shop, 1_000)
        await api.client.patch(
            f"/v1/operator/merchants/{shop.id}", json={"status": "suspended"}, headers=op.auth
        )
        before = await snapshot(api, payer, shop, payment_id)
        assert_problem(await capture(api, shop.auth, payment_id), 409, "merchant_suspended")
        assert await snapshot(api, payer, shop, payment_id) == before
        assert (await cancel(api, shop.auth, payment_id)).status_code == 200
        assert await wallet_funds(api, payer) == funds(10_000)


class TestWhoMay:
    async def test_the_authorization_matrix(self, api: Server) -> None:
        payer, shop, op = await customer(api), await merchant(api), await operator(api)
        stranger, rival = await customer(api), await merchant(api)
        payment_id = await authorized(api, payer, shop, 1_000)
        before = await snapshot(api, payer, shop, payment_id)
        for auth in (stranger.auth, rival.auth, rival.key_auth):
            response = await api.client.get(f"/v1/payments/{payment_id}", headers=auth)
            assert_problem(response, 404, "payment_not_found")
            assert_problem(await capture(api, auth, payment_id), 404, "payment_not_found")
            assert_problem(await cancel(api, auth, payment_id), 404, "payment_not_found")
        for auth in (payer.auth, op.auth):
            assert (await get_payment(api, auth, payment_id))["id"] == payment_id
            assert_problem(await capture(api, auth, payment_id), 403, "forbidden")
            assert_problem(await cancel(api, auth, payment_id), 403, "forbidden")
        assert_problem(await api.client.get(f"/v1/payments/{payment_id}"), 401, "unauthenticated")
        for bad in ("pay_nothex", "pay_" + "0" * 32, "x"):
            response = await api.client.get(f"/v1/payments/{bad}", headers=payer.auth)
            assert_problem(response, 404, "payment_not_found")
            assert_problem(await capture(api, shop.auth, bad), 404, "payment_not_found")
        assert await snapshot(api, payer, shop, payment_id) == before
        assert (await capture(api, shop.key_auth, payment_id)).status_code == 200
