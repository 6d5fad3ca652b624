"""P2P transfers over HTTP on both backends: every way to name a recipient, every refusal
(which changes nothing), reads by both parties, pages, and conservation of money under
concurrent load through the micro-batcher.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, User, balance, key, register, topup

NOTE_LENGTH_MAX = 140
BAD_RECIPIENTS: list[tuple[str, int, str]] = [
    ("nobody_here_123", 404, "recipient_not_found"),
    ("nobody_here_123@payflow", 404, "recipient_not_found"),
    ("@payflow", 404, "recipient_not_found"),
    ("wal_" + "0" * 32, 404, "recipient_not_found"),
    ("00000000-0000-0000-0000-000000000000", 404, "recipient_not_found"),
    ("wal_not-a-uuid", 404, "recipient_not_found"),
    # Addresses at other banks become payouts (tests/payouts); a malformed one is refused.
    ("someone@payflow.evil.com", 422, "destination_invalid"),
    ("x y@otherbank", 422, "destination_invalid"),
    ("@otherbank", 422, "destination_invalid"),
    ("", 422, "validation_error"),
    ("x" * 101, 422, "validation_error"),
]
INVALID_CHANGES: list[dict[str, Any]] = [
    {"note": "x" * (NOTE_LENGTH_MAX + 1)},
    {"note": ""},
    {"note": 5},
    {"amount": 10.5},
    {"amount": "100"},
    {"amount": True},
    {"amount": 0},
    {"amount": -1},
    {"amount": 2**63},
    {"amount": None},
    {"currency": "inr"},
    {"currency": "IN"},
    {"to": None},
    {"to": 42},
    {"surprise": "field"},
]
BAD_PAGING: list[tuple[dict[str, Any], str]] = [
    ({"after": "garbage"}, "cursor_invalid"),
    ({"limit": 0}, "validation_error"),
    ({"limit": 101}, "validation_error"),
    ({"limit": "1.5"}, "validation_error"),
]


def assert_problem(
    response: httpx.Response, status: int, code: str, *, case: object = None
) -> dict[str, Any]:
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), case
    body: dict[str, Any] = response.json()
    assert body["code"] == code, (case, body)
    assert body["status"] == status
    return body


async def send(
    client: httpx.AsyncClient, sender: User, to: str, amount: Any, **extra: Any
) -> httpx.Response:
    body = {"to": to, "amount": amount, "currency": "INR", **extra}
    return await client.post("/v1/transfers", json=body, headers={**sender.auth, **key()})


async def transfers_of(client: httpx.AsyncClient, user: User) -> list[dict[str, Any]]:
    response = await client.get("/v1/transfers", params={"limit": 100}, headers=user.auth)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def state_of(client: httpx.AsyncClient, *users: User) -> list[Any]:
    """Balances and transfer lists: what a refused transfer must leave as it was."""
    return [(await balance(client, u), await transfers_of(client, u)) for u in users]


async def funded(api: Server, amount: int = 10_000) -> tuple[User, User]:
    sender, recipient = await register(api.client), await register(api.client)
    await topup(api.client, sender, amount)
    return sender, recipient


class TestSend:
    @pytest.mark.parametrize("form", ["handle", "address", "wallet_id", "bare_uuid", "shouting"])
    async def test_recipient_named_every_way(self, api: Server, form: str) -> None:
        asha, ravi = await funded(api)
        to = {
            "handle": ravi.handle,
            "address": ravi.address,
            "wallet_id": ravi.wallet_id,
            "bare_uuid": str(uuid.UUID(ravi.wallet_id.removeprefix("wal_"))),
            "shouting": f"  {ravi.address.upper()} ",
        }[form]
        response = await send(api.client, asha, to, 1_234, note="rent")
        assert response.status_code == 201, response.text
        assert response.headers.get("Idempotent-Replayed") is None
        body = response.json()
        assert re.fullmatch(r"txn_[0-9a-f]{32}", body["id"])
        assert body["object"] == "transfer"
        assert body["kind"] == "p2p"
        assert body["status"] == "succeeded"
        assert body["amount"] == 1_234
        assert body["currency"] == "INR"
        assert body["note"] == "rent"
        assert body["hold_id"] is None
        assert body["from"] == {"wallet_id": asha.wallet_id, "address": asha.address}
        assert body["to"] == {"wallet_id": ravi.wallet_id, "address": ravi.address}
        assert await balance(api.client, asha) == {
            "posted": 8_766,
            "pending": 0,
            "available": 8_766,
        }
        assert await balance(api.client, ravi) == {
            "posted": 1_234,
            "pending": 0,
            "available": 1_234,
        }

    async def test_a_handle_that_starts_like_a_wallet_id(self, api: Server) -> None:
        asha = (await funded(api))[0]
        ravi = await register(api.client, handle=f"wal_{uuid.uuid4().hex[:8]}")
        for to in (ravi.handle, ravi.address, ravi.wallet_id):
            response = await send(api.client, asha, to, 100)
            assert response.status_code == 201, response.text
            assert response.json()["to"]["wallet_id"] == ravi.wallet_id
        assert (await balance(api.client, ravi))["posted"] == 300

    async def test_the_whole_balance_can_be_sent(self, api: Server) -> None:
        asha, ravi = await funded(api, 500)
        assert (await send(api.client, asha, ravi.handle, 500)).status_code == 201
        assert (await balance(api.client, asha))["available"] == 0
        assert (await balance(api.client, ravi))["available"] == 500

    async def test_note_of_the_maximum_length_is_kept(self, api: Server) -> None:
        asha, ravi = await funded(api)
        note = "ñ" * NOTE_LENGTH_MAX
        response = await send(api.client, asha, ravi.handle, 1, note=note)
        assert response.status_code == 201, response.text
        assert response.json()["note"] == note
        got = await api.client.get(f"/v1/transfers/{response.json()['id']}", headers=ravi.auth)
        assert got.json()["note"] == note


class TestRefusals:
    async def test_to_self_in_every_form(self, api: Server) -> None:
        asha, _ = await funded(api)
        before = await state_of(api.client, asha)
        for to in (asha.handle, asha.address, asha.wallet_id):
            response = await send(api.client, asha, to, 100)
            assert_problem(response, 422, "recipient_is_sender")
        assert await state_of(api.client, asha) == before

    async def test_bad_recipients(self, api: Server) -> None:
        asha, ravi = await funded(api)
        before = await state_of(api.client, asha, ravi)
        for to, status, code in BAD_RECIPIENTS:
            assert_problem(await send(api.client, asha, to, 100), status, code, case=to)
        assert await state_of(api.client, asha, ravi) == before

    async def test_insufficient_funds_moves_nothing(self, api: Server) -> None:
        asha, ravi = await funded(api, 1_000)
        before = await state_of(api.client, asha, ravi)
        for amount in (1_001, 2**63 - 1):
            response = await send(api.client, asha, ravi.handle, amount)
            assert_problem(response, 422, "insufficient_funds")
        assert await state_of(api.client, asha, ravi) == before
        broke = await register(api.client)
        assert_problem(await send(api.client, broke, ravi.handle, 1), 422, "insufficient_funds")
        assert await state_of(api.client, asha, ravi) == before

    async def test_currency_without_a_wallet(self, api: Server) -> None:
        asha, ravi = await funded(api)
        before = await state_of(api.client, asha, ravi)
        for currency in ("USD", "XYZ"):
            response = await api.client.post(
                "/v1/transfers",
                json={"to": ravi.handle, "amount": 100, "currency": currency},
                headers={**asha.auth, **key()},
            )
            assert_problem(response, 404, "wallet_not_found")
        assert await state_of(api.client, asha, ravi) == before

    async def test_recipient_wallet_in_another_currency(self, api: Server) -> None:
        asha, ravi = await funded(api)
        opened = await api.client.post("/v1/wallets", json={"currency": "USD"}, headers=ravi.auth)
        assert opened.status_code == 201, opened.text
        before = await state_of(api.client, asha, ravi)
        response = await send(api.client, asha, opened.json()["id"], 100)
        assert_problem(response, 422, "currency_mismatch")
        # By handle, the recipient's wallet in the transfer's currency is chosen.
        usd = await api.client.post(
            "/v1/transfers",
            json={"to": ravi.handle, "amount": 100, "currency": "USD"},
            headers={**asha.auth, **key()},
        )
        assert_problem(usd, 404, "wallet_not_found")
        assert await state_of(api.client, asha, ravi) == before

    async def test_invalid_bodies_are_422(self, api: Server) -> None:
        asha, ravi = await funded(api)
        before = await state_of(api.client, asha, ravi)
        valid = {"to": ravi.handle, "amount": 100, "currency": "INR"}
        for change in INVALID_CHANGES:
            response = await api.client.post(
                "/v1/transfers", json={**valid, **change}, headers={**asha.auth, **key()}
            )
            problem = assert_problem(response, 422, "validation_error", case=change)
            assert problem["errors"], change
        for missing in valid:
            body = {k: v for k, v in valid.items() if k != missing}
            response = await api.client.post(
                "/v1/transfers", json=body, headers={**asha.auth, **key()}
            )
            problem = assert_problem(response, 422, "validation_error", case=missing)
            assert [e["loc"][-1] for e in problem["errors"]] == [missing]
        assert await state_of(api.client, asha, ravi) == before

    async def test_without_idempotency_key_or_token(self, api: Server) -> None:
        asha, ravi = await funded(api)
        before = await state_of(api.client, asha, ravi)
        body = {"to": ravi.handle, "amount": 100, "currency": "INR"}
        response = await api.client.post("/v1/transfers", json=body, headers=asha.auth)
        assert_problem(response, 400, "idempotency_key_missing")
        response = await api.client.post("/v1/transfers", json=body, headers=key())
        assert_problem(response, 401, "unauthenticated")
        assert await state_of(api.client, asha, ravi) == before


class TestRead:
    async def test_both_parties_see_it_nobody_else_does(self, api: Server) -> None:
        asha, ravi = await funded(api)
        stranger = await register(api.client)
        created = (await send(api.client, asha, ravi.handle, 700, note="tea")).json()
        for party in (asha, ravi):
            response = await api.client.get(f"/v1/transfers/{created['id']}", headers=party.auth)
            assert response.status_code == 200, response.text
            assert response.json() == created
        response = await api.client.get(f"/v1/transfers/{created['id']}", headers=stranger.auth)
        assert_problem(response, 404, "transfer_not_found")

    async def test_unknown_or_malformed_id_is_404(self, api: Server) -> None:
        user = await register(api.client)
        for transfer_id in ("txn_nothex", "txn_" + "0" * 32, "wal_" + "g" * 32, "1234", "txn_"):
            response = await api.client.get(f"/v1/transfers/{transfer_id}", headers=user.auth)
            assert_problem(response, 404, "transfer_not_found", case=transfer_id)

    async def test_list_is_newest_first_and_pages_by_cursor(self, api: Server) -> None:
        asha, ravi = await funded(api)
        made = [await topup(api.client, asha, 1)]
        for amount in (11, 12, 13):
            made.append(await send(api.client, asha, ravi.handle, amount))
        made.append(await send(api.client, ravi, asha.handle, 5))
        ids = [r.json()["id"] for r in made]

        everything = await transfers_of(api.client, asha)
        assert len(everything) == 6  # the first top-up as well
        assert [t["id"] for t in everything[:5]] == ids[::-1]
        assert [t["created_at"] for t in everything] == sorted(
            (t["created_at"] for t in everything), reverse=True
        )
        assert [t["kind"] for t in everything] == ["p2p"] * 4 + ["topup"] * 2

        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": 2, **({"after": cursor} if cursor else {})}
            response = await api.client.get("/v1/transfers", params=params, headers=asha.auth)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page["data"]) <= 2
            seen += page["data"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert seen == everything
        ravi_sees = [t["id"] for t in await transfers_of(api.client, ravi)]
        assert ravi_sees == ids[1:][::-1]

    async def test_bad_paging_is_422(self, api: Server) -> None:
        user = await register(api.client)
        for params, code in BAD_PAGING:
            response = await api.client.get("/v1/transfers", params=params, headers=user.auth)
            assert_problem(response, 422, code, case=params)


def metric(text: str, name: str) -> int:
    match = re.search(rf"^{name} (\d+)$", text, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics"
    return int(match.group(1))


async def ledger_metrics(api: Server) -> tuple[int, int]:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    return (
        metric(response.text, "payflow_ledger_batches_total"),
        metric(response.text, "payflow_ledger_batched_requests_total"),
    )


class TestConcurrency:
    async def test_concurrent_transfers_conserve_money_and_coalesce(self, api: Server) -> None:
        users = [await register(api.client) for _ in range(4)]
        for user in users:
            await topup(api.client, user, 1_000)
        rng = random.Random(7)
        # Amounts large enough that some transfers fail for want of funds whatever the
        # order, and every tenth more than all the money there is (a sure refusal).
        moves = []
        for i in range(50):
            sender, recipient = rng.sample(users, 2)
            moves.append((sender, recipient, 4_001 if i % 10 == 9 else rng.randint(100, 600)))
        batches_before, requests_before = await ledger_metrics(api)

        responses = await asyncio.gather(
            *(send(api.client, s, r.address, amount) for s, r, amount in moves)
        )

        batches_after, requests_after = await ledger_metrics(api)
        expected = {u.wallet_id: 1_000 for u in users}
        succeeded = 0
        for (sender, recipient, amount), response in zip(moves, responses, strict=True):
            if response.status_code == 201:
                succeeded += 1
                expected[sender.wallet_id] -= amount
                expected[recipient.wallet_id] += amount
            else:
                assert_problem(response, 422, "insufficient_funds")
        assert 0 < succeeded <= 45, "the load should mix successes and refusals"
        for user in users:
            got = await balance(api.client, user)
            assert got == {
                "posted": expected[user.wallet_id],
                "pending": 0,
                "available": expected[user.wallet_id],
            }
        assert sum(expected.values()) == 4_000
        # Every transfer that succeeded is listed once by its sender.
        listed = {t["id"] for u in users for t in await transfers_of(api.client, u)}
        assert {r.json()["id"] for r in responses if r.status_code == 201} <= listed
        # The 50 money moves went to the ledger in fewer, shared batches.
        assert requests_after - requests_before == 50
        batches = batches_after - batches_before
        assert batches < 50, f"no coalescing: {batches} batches for 50 requests"
