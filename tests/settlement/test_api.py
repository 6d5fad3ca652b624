"""Who sees which settlements, and every malformed or refused request: each is an RFC 9457
problem with a stable code, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import User, key, register
from tests.payments.support import Merchant, assert_problem, customer, operator, wallet_funds
from tests.settlement.conftest import World
from tests.settlement.support import (
    count_settlements,
    ended,
    fees_from,
    get,
    items,
    new_id,
    pay_all,
    run,
    shop,
)


async def settled(world: World, op: User, fee_bps: int = 0) -> tuple[Merchant, dict[str, Any]]:
    seller = await shop(world, op, fee_bps=fee_bps)
    buyer = await customer(world.api, funds=5_000)
    await pay_all(world, buyer, seller, [1_000])
    [made] = await run(world, op, seller.id)
    return seller, await ended(world, seller.auth, made["id"])


class TestWhoSees:
    async def test_a_merchant_sees_its_own_with_a_token_or_an_api_key(self, world: World) -> None:
        op = await operator(world.api)
        seller, settlement = await settled(world, op)
        for auth in (seller.auth, seller.key_auth):
            listed = await world.api.client.get("/v1/settlements", headers=auth)
            assert listed.status_code == 200, listed.text
            assert [s["id"] for s in listed.json()["data"]] == [settlement["id"]]
            assert (await get(world, auth, settlement["id"]))["lines"] == settlement["lines"]
        only_paid = await world.api.client.get(
            "/v1/settlements", params={"status": "failed"}, headers=seller.auth
        )
        assert only_paid.json() == {"data": [], "next_cursor": None}

    async def test_nobody_else_does_but_operators(self, world: World) -> None:
        api = world.api
        op = await operator(api)
        seller, settlement = await settled(world, op)
        rival = await shop(world, op)
        path = f"/v1/settlements/{settlement['id']}"
        assert_problem(await api.client.get(path, headers=rival.auth), 404, "settlement_not_found")
        rivals = await api.client.get("/v1/settlements", headers=rival.auth)
        assert rivals.json()["data"] == []
        buyer = await customer(api, funds=0)
        assert_problem(await api.client.get(path, headers=buyer.auth), 404, "settlement_not_found")
        assert_problem(
            await api.client.get("/v1/settlements", headers=buyer.auth), 403, "forbidden"
        )
        no_profile = await register(api.client, role="merchant")
        assert_problem(
            await api.client.get("/v1/settlements", headers=no_profile.auth),
            404,
            "merchant_not_found",
        )
        for who in (seller.auth, buyer.auth):
            for route in ("/v1/operator/settlements",):
                assert_problem(await api.client.get(route, headers=who), 403, "forbidden")
        assert_problem(await api.client.get(path), 401, "unauthenticated")

        assert (await get(world, op.auth, settlement["id"]))["id"] == settlement["id"]
        everyone = await api.client.get(
            "/v1/operator/settlements", params={"merchant": seller.id}, headers=op.auth
        )
        assert [s["id"] for s in everyone.json()["data"]] == [settlement["id"]]

    async def test_lists_are_paginated(self, world: World) -> None:
        op = await operator(world.api)
        seller = await shop(world, op)
        buyer = await customer(world.api, funds=5_000)
        made = []
        for amount in (100, 200, 300):
            await pay_all(world, buyer, seller, [amount])
            made += [s["id"] for s in await run(world, op, seller.id)]
        seen: list[str] = []
        after = None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
            response = await world.api.client.get(
                "/v1/settlements", params=params, headers=seller.auth
            )
            seen += [s["id"] for s in response.json()["data"]]
            after = response.json()["next_cursor"]
            if after is None:
                break
        assert seen == list(reversed(made))
        for settlement_id in made:
            await ended(world, seller.auth, settlement_id)


BAD_LIST_QUERIES = [
    ({"status": "settled"}, 422, "validation_error"),
    ({"limit": 0}, 422, "validation_error"),
    ({"limit": 101}, 422, "validation_error"),
    ({"limit": "ten"}, 422, "validation_error"),
    ({"after": "not-a-cursor"}, 422, "cursor_invalid"),
    ({"after": "x" * 101}, 422, "validation_error"),
]


class TestInvalid:
    @pytest.mark.parametrize(("query", "status", "code"), BAD_LIST_QUERIES)
    async def test_bad_list_queries(
        self, world: World, query: dict[str, Any], status: int, code: str
    ) -> None:
        op = await operator(world.api)
        seller = await shop(world, op)
        for path, auth in (("/v1/settlements", seller.auth), ("/v1/operator/settlements", op.auth)):
            response = await world.api.client.get(path, params=query, headers=auth)
            assert_problem(response, status, code, case=(path, query))

    async def test_bad_ids(self, world: World) -> None:
        op = await operator(world.api)
        for text in ("stl_nothex", new_id("stl"), new_id("pay"), "%20"):
            response = await world.api.client.get(f"/v1/settlements/{text}", headers=op.auth)
            assert_problem(response, 404, "settlement_not_found", case=text)
        response = await world.api.client.get(
            "/v1/operator/settlements", params={"merchant": "mer_nothex"}, headers=op.auth
        )
        assert_problem(response, 422, "invalid_id")

    async def test_bad_runs_change_nothing(self, world: World) -> None:
        api = world.api
        op = await operator(api)
        seller = await shop(world, op, fee_bps=100)
        buyer = await customer(api, funds=5_000)
        payments = await pay_all(world, buyer, seller, [2_500])
        before = await self_state(world, seller, payments)
        url = "/v1/operator/settlements/run"
        cases: list[tuple[dict[str, Any], dict[str, str], int, str]] = [
            ({"json": {"merchant": seller.id}}, op.auth, 400, "idempotency_key_missing"),
            ({"json": {"merchant": "mer_nothex"}}, {**op.auth, **key()}, 404, "merchant_not_found"),
            (
                {"json": {"merchant": new_id("mer")}},
                {**op.auth, **key()},
                404,
                "merchant_not_found",
            ),
            ({"json": {"merchant": 12}}, {**op.auth, **key()}, 422, "validation_error"),
            (
                {"json": {"merchant": seller.id, "x": 1}},
                {**op.auth, **key()},
                422,
                "validation_error",
            ),
            ({"json": {"merchant": "m\u0000"}}, {**op.auth, **key()}, 422, "validation_error"),
            ({"json": [seller.id]}, {**op.auth, **key()}, 422, "validation_error"),
            (
                {"content": b"{"},
                {**op.auth, **key(), "content-type": "application/json"},
                400,
                "malformed_json",
            ),
            (
                {"json": {"merchant": seller.id}},
                {**op.auth, "Idempotency-Key": "k" * 300},
                400,
                "idempotency_key_invalid",
            ),
            ({"json": {"merchant": seller.id}}, {**seller.auth, **key()}, 403, "forbidden"),
            ({"json": {"merchant": seller.id}}, {**buyer.auth, **key()}, 403, "forbidden"),
            ({"json": {"merchant": seller.id}}, key(), 401, "unauthenticated"),
        ]
        for request, headers, status, code in cases:
            response = await api.client.post(url, headers=headers, **request)
            assert_problem(response, status, code, case=request)
        assert await self_state(world, seller, payments) == before

    async def test_an_idempotency_key_replays_and_is_not_reused(self, world: World) -> None:
        api = world.api
        op = await operator(api)
        seller = await shop(world, op)
        buyer = await customer(api, funds=5_000)
        await pay_all(world, buyer, seller, [600])
        headers = {**op.auth, **key()}
        url = "/v1/operator/settlements/run"
        first = await api.client.post(url, json={"merchant": seller.id}, headers=headers)
        again = await api.client.post(url, json={"merchant": seller.id}, headers=headers)
        assert first.status_code == again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json() and len(first.json()["data"]) == 1
        other = await api.client.post(url, json={}, headers=headers)
        assert_problem(other, 422, "idempotency_key_reused")
        await ended(world, seller.auth, first.json()["data"][0]["id"])


async def self_state(world: World, seller: Merchant, payments: list[str]) -> list[Any]:
    """What a refused run must leave as it was."""
    return [
        await count_settlements(world),
        await fees_from(world, seller.wallet_id),
        await wallet_funds(world.api, seller.user),
        await items(world, payments),
    ]
