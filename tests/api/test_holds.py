"""Holds (two-phase money) over HTTP on both backends: hold, capture (full, partial),
release, expiry by the background sweep, races; every refusal changes nothing.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx

from tests.api.conftest import Server, User, balance, key, register, topup

HOLD_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"amount": 0}, 422, "validation_error"),
    ({"amount": 1.5}, 422, "validation_error"),
    ({"amount": "10"}, 422, "validation_error"),
    ({"expires_in_s": 0}, 422, "validation_error"),
    ({"expires_in_s": -5}, 422, "validation_error"),
    ({"expires_in_s": 1.5}, 422, "validation_error"),
    ({"expires_in_s": "60"}, 422, "validation_error"),
    ({"expires_in_s": True}, 422, "validation_error"),
    ({"expires_in_s": 30 * 86_400 + 1}, 422, "validation_error"),
    ({"note": "x" * 141}, 422, "validation_error"),
    ({"currency": "USD"}, 404, "wallet_not_found"),
    ({"amount": 10_001}, 422, "insufficient_funds"),
    ({"unknown": 1}, 422, "validation_error"),
]


def assert_problem(
    response: httpx.Response, status: int, code: str, *, case: object = None
) -> dict[str, Any]:
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), case
    body: dict[str, Any] = response.json()
    assert body["code"] == code, (case, body)
    return body


def funds(posted: int, pending: int = 0) -> dict[str, int]:
    return {"posted": posted, "pending": pending, "available": posted - pending}


async def hold(client: httpx.AsyncClient, user: User, amount: Any, **extra: Any) -> httpx.Response:
    return await client.post(
        "/v1/holds",
        json={"amount": amount, "currency": "INR", **extra},
        headers={**user.auth, **key()},
    )


async def held(client: httpx.AsyncClient, user: User, amount: int, **extra: Any) -> str:
    response = await hold(client, user, amount, **extra)
    assert response.status_code == 201, response.text
    hold_id: str = response.json()["id"]
    return hold_id


async def capture(
    client: httpx.AsyncClient, user: User, hold_id: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        f"/v1/holds/{hold_id}/capture", json=body, headers={**user.auth, **key()}
    )


async def release(client: httpx.AsyncClient, user: User, hold_id: str) -> httpx.Response:
    return await client.post(f"/v1/holds/{hold_id}/release", headers={**user.auth, **key()})


async def get_hold(client: httpx.AsyncClient, user: User, hold_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/holds/{hold_id}", headers=user.auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def state_of(client: httpx.AsyncClient, user: User, *holds: str) -> list[Any]:
    """Balance, transfers and holds: what a refused request must leave as it was."""
    transfers = await client.get("/v1/transfers", params={"limit": 100}, headers=user.auth)
    return [
        await balance(client, user),
        transfers.json(),
        *[await get_hold(client, user, h) for h in holds],
    ]


async def payer_and_payee(api: Server, amount: int = 10_000) -> tuple[User, User]:
    payer, payee = await register(api.client), await register(api.client)
    await topup(api.client, payer, amount)
    return payer, payee


class TestCreate:
    async def test_hold_without_expiry(self, api: Server) -> None:
        payer, _ = await payer_and_payee(api)
        response = await hold(api.client, payer, 3_000, note="deposit")
        assert response.status_code == 201, response.text
        body = response.json()
        assert re.fullmatch(r"hold_[0-9a-f]{32}", body["id"])
        assert body["object"] == "hold"
        assert body["status"] == "held"
        assert body["amount"] == 3_000
        assert body["captured_amount"] == 0
        assert body["currency"] == "INR"
        assert body["wallet"] == {"wallet_id": payer.wallet_id, "address": payer.address}
        assert body["payee"] is None
        assert body["note"] == "deposit"
        assert body["expires_at"] is None
        assert body["resolved_at"] is None
        assert await balance(api.client, payer) == funds(10_000, pending=3_000)
        assert await get_hold(api.client, payer, body["id"]) == body

    async def test_hold_with_expiry(self, api: Server) -> None:
        payer, _ = await payer_and_payee(api)
        response = await hold(api.client, payer, 2_000, expires_in_s=3_600)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["status"] == "held"
        assert body["expires_at"] is not None and body["expires_at"] > body["created_at"]
        assert await balance(api.client, payer) == funds(10_000, pending=2_000)

    async def test_holds_add_up_and_cannot_exceed_available(self, api: Server) -> None:
        payer, _ = await payer_and_payee(api, 5_000)
        await held(api.client, payer, 3_000)
        await held(api.client, payer, 2_000)
        assert await balance(api.client, payer) == funds(5_000, pending=5_000)
        before = await state_of(api.client, payer)
        assert_problem(await hold(api.client, payer, 1), 422, "insufficient_funds")
        assert await state_of(api.client, payer) == before

    async def test_refusals_hold_nothing(self, api: Server) -> None:
        payer, _ = await payer_and_payee(api)
        before = await state_of(api.client, payer)
        for change, status, code in HOLD_REFUSALS:
            body = {"amount": 100, "currency": "INR", **change}
            response = await api.client.post(
                "/v1/holds", json=body, headers={**payer.auth, **key()}
            )
            assert_problem(response, status, code, case=change)
        assert await state_of(api.client, payer) == before

    async def test_others_cannot_see_or_touch_a_hold(self, api: Server) -> None:
        payer, payee = await payer_and_payee(api)
        hold_id = await held(api.client, payer, 1_000)
        before = await state_of(api.client, payer, hold_id)
        response = await api.client.get(f"/v1/holds/{hold_id}", headers=payee.auth)
        assert_problem(response, 404, "hold_not_found")
        assert_problem(
            await capture(api.client, payee, hold_id, {"to": payee.handle}), 404, "hold_not_found"
        )
        assert_problem(await release(api.client, payee, hold_id), 404, "hold_not_found")
        for bad in ("hold_nothex", "hold_" + "0" * 32, "x"):
            assert_problem(
                await api.client.get(f"/v1/holds/{bad}", headers=payer.auth), 404, "hold_not_found"
            )
            assert_problem(await release(api.client, payer, bad), 404, "hold_not_found")
        assert await state_of(api.client, payer, hold_id) == before


class TestCapture:
    async def test_capture_in_full(self, api: Server) -> None:
        payer, payee = await payer_and_payee(api)
        hold_id = await held(api.client, payer, 4_000, note="order 17")
        response = await capture(api.client, payer, hold_id, {"to": payee.address})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == hold_id
        assert body["status"] == "captured"
        assert body["captured_amount"] == 4_000
        assert body["payee"] == {"wallet_id": payee.wallet_id, "address": payee.address}
        assert body["resolved_at"] is not None
        transfer = body["transfer"]
        assert transfer["kind"] == "capture"
        assert transfer["amount"] == 4_000
        assert transfer["hold_id"] == hold_id
        assert transfer["from"]["wallet_id"] == payer.wallet_id
        assert transfer["to"]["wallet_id"] == payee.wallet_id
        assert transfer["note"] == "order 17"
        assert await balance(api.client, payer) == funds(6_000)
        assert await balance(api.client, payee) == funds(4_000)
        stored = await get_hold(api.client, payer, hold_id)
        assert {k: v for k, v in body.items() if k != "transfer"} == stored
        for party in (payer, payee):
            got = await api.client.get(f"/v1/transfers/{transfer['id']}", headers=party.auth)
            assert got.json() == transfer

    async def test_partial_capture_returns_the_rest(self, api: Server) -> None:
        payer, payee = await payer_and_payee(api)
        hold_id = await held(api.client, payer, 4_000)
        response = await capture(api.client, payer, hold_id, {"to": payee.handle, "amount": 1_500})
        assert response.status_code == 200, response.text
        assert response.json()["captured_amount"] == 1_500
        assert response.json()["transfer"]["amount"] == 1_500
        assert await balance(api.client, payer) == funds(8_500)
        assert await balance(api.client, payee) == funds(1_500)

    async def test_capture_to_a_wallet_id(self, api: Server) -> None:
        payer, payee = await payer_and_payee(api)
        hold_id = await held(api.client, payer, 100)
        response = await capture(api.client, payer, hold_id, {"to": payee.wallet_id})
        assert response.status_code == 200, response.text
        assert await balance(api.client, payee) == funds(100)

    async def test_refused_captures_change_nothing(self, api: Server) -> None:
        payer, payee = await payer_and_payee(api)
        hold_id = await held(api.client, payer, 4_000)
        opened = await api.client.post("/v1/wallets", json={"currency": "USD"}, headers=payee.auth)
        assert opened.status_code == 201, opened.text
        refusals: list[tuple[dict[str, Any], int, str]] = [
            ({"to": opened.json()["id"]}, 422, "currency_mismatch"),
            ({"to": payer.address}, 422, "recipient_is_sender"),
            ({"to": payer.wallet_id}, 422, "recipient_is_sender"),
            ({"to": "nobody_at_all_1"}, 404, "recipient_not_found"),
            ({"to": "x@otherbank"}, 422, "recipient_off_us"),
            ({"to": payee.handle, "amount": 4_001}, 422, "capture_exceeds_hold"),
            ({"to": payee.handle, "amount": 0}, 422, "validation_error"),
            ({"to": payee.handle, "amount": 1.5}, 422, "validation_error"),
            ({"to": payee.handle, "amount": "10"}, 422, "validation_error"),
            ({"amount": 10}, 422, "validation_error"),
            ({"to": payee.handle, "extra": True}, 422, "validation_error"),
        ]
        before = await state_of(api.client, payer, hold_id), await balance(api.client, payee)
        for body, status, code in refusals:
            response = await capture(api.client, payer, hold_id, body)
            assert_problem(response, status, code, case=body)
        after = await state_of(api.client, payer, hold_id), await balance(api.client, payee)
        assert after == before

    async def test_capture_twice_or_after_release_is_409(self, api: Server) -> None:
        payer, payee = await payer_and_payee(api)
        captured = await held(api.client, payer, 1_000)
        assert (await capture(api.client, payer, captured, {"to": payee.handle})).status_code == 200
        released = await held(api.client, payer, 2_000)
        assert (await release(api.client, payer, released)).status_code == 200
        before = await state_of(api.client, payer, captured, released)
        payee_before = await balance(api.client, payee)
        for hold_id in (captured, released):
            response = await capture(api.client, payer, hold_id, {"to": payee.handle})
            assert_problem(response, 409, "hold_not_held")
            assert_problem(await release(api.client, payer, hold_id), 409, "hold_not_held")
        assert await state_of(api.client, payer, captured, released) == before
        assert await balance(api.client, payee) == payee_before
        assert before[0] == funds(9_000)


class TestRelease:
    async def test_release_returns_the_money(self, api: Server) -> None:
        payer, _ = await payer_and_payee(api)
        hold_id = await held(api.client, payer, 2_500)
        response = await release(api.client, payer, hold_id)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "released"
        assert body["captured_amount"] == 0
        assert body["resolved_at"] is not None
        assert await get_hold(api.client, payer, hold_id) == body
        assert await balance(api.client, payer) == funds(10_000)

    async def test_release_with_an_empty_body_or_a_bad_one(self, api: Server) -> None:
        payer, _ = await payer_and_payee(api)
        hold_id = await held(api.client, payer, 2_500)
        before = await state_of(api.client, payer, hold_id)
        bad = await api.client.post(
            f"/v1/holds/{hold_id}/release", json={"amount": 5}, headers={**payer.auth, **key()}
        )
        assert_problem(bad, 422, "validation_error")
        assert await state_of(api.client, payer, hold_id) == before
        ok = await api.client.post(
            f"/v1/holds/{hold_id}/release", json={}, headers={**payer.auth, **key()}
        )
        assert ok.status_code == 200, ok.text


class TestRaces:
    async def test_capture_and_release_race_exactly_one_wins(self, api: Server) -> None:
        payer, payee = await payer_and_payee(api, 5_000)
        hold_ids = [await held(api.client, payer, 1_000) for _ in range(5)]
        captured = 0
        for hold_id in hold_ids:
            captures, releases = await asyncio.gather(
                capture(api.client, payer, hold_id, {"to": payee.handle}),
                release(api.client, payer, hold_id),
            )
            outcomes = sorted([captures.status_code, releases.status_code])
            assert outcomes == [200, 409], (captures.text, releases.text)
            loser = captures if captures.status_code == 409 else releases
            assert_problem(loser, 409, "hold_not_held")
            status = (await get_hold(api.client, payer, hold_id))["status"]
            if captures.status_code == 200:
                captured += 1
                assert status == "captured"
            else:
                assert status == "released"
        assert await balance(api.client, payer) == funds(5_000 - captured * 1_000)
        assert await balance(api.client, payee) == funds(captured * 1_000)


class TestExpiry:
    async def test_an_expired_hold_frees_its_money_and_cannot_be_captured(
        self, api: Server
    ) -> None:
        payer, payee = await payer_and_payee(api)
        hold_id = await held(api.client, payer, 3_000, expires_in_s=1)
        keeper = await held(api.client, payer, 1_000, expires_in_s=3_600)
        assert await balance(api.client, payer) == funds(10_000, pending=4_000)

        deadline = time.monotonic() + 5
        while True:
            status = (await get_hold(api.client, payer, hold_id))["status"]
            if status == "expired" and await balance(api.client, payer) == funds(
                10_000, pending=1_000
            ):
                break
            assert time.monotonic() < deadline, "the hold did not expire within 5 s"
            await asyncio.sleep(0.1)

        statement = await api.client.get(
            f"/v1/wallets/{payer.wallet_id}/statement", headers=payer.auth
        )
        last = statement.json()["data"][-1]
        assert last["kind"] == "hold_expired"
        assert last["direction"] == "credit"
        assert last["amount"] == 3_000
        assert last["balance"] == funds(10_000, pending=1_000)

        before = await state_of(api.client, payer, hold_id, keeper)
        response = await capture(api.client, payer, hold_id, {"to": payee.handle})
        assert_problem(response, 409, "hold_expired")
        assert_problem(await release(api.client, payer, hold_id), 409, "hold_expired")
        assert await state_of(api.client, payer, hold_id, keeper) == before
        assert await balance(api.client, payee) == funds(0)
        # The money is spendable again, and the other hold is untouched.
        assert (await hold(api.client, payer, 9_000)).status_code == 201
        assert (await get_hold(api.client, payer, keeper))["status"] == "held"
