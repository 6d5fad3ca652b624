"""`Idempotency-Key` on every money-moving route (IETF httpapi draft semantics), over HTTP
on both backends: replays, misuse, bad keys, per-principal keys, races within one server
and across two servers on one database, and the takeover of a crashed request's claim.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from payflow.api.idempotency import fingerprint
from payflow.api.models import idempotency_keys
from payflow.ids import format_public_id, uuid7
from payflow.ledger import Transfer, create_transfers
from payflow.timestamps import now_ns
from payflow.transfers.models import transfers
from payflow.transfers.schemas import TransferBody
from payflow.wallets.domain import TransferCode
from tests.api.conftest import (
    Server,
    User,
    balance,
    create_operator,
    key,
    register,
    start_server,
    topup,
)

DAY_NS = 86_400 * 1_000_000_000


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


@dataclass
class Case:
    """One money-moving request, ready to send, and the people it could affect."""

    actor: User
    path: str
    body: dict[str, Any] | None
    # Another valid request on the same route (None where the route takes no body).
    other_body: dict[str, Any] | None
    watched: list[User]
    reads: list[str] = field(default_factory=list)

    async def send(self, client: httpx.AsyncClient, idempotency_key: str) -> httpx.Response:
        return await self.post(client, idempotency_key, self.path, self.body)

    async def post(
        self, client: httpx.AsyncClient, idempotency_key: str, path: str, body: Any
    ) -> httpx.Response:
        """Any request by this case's caller, under `idempotency_key`."""
        return await client.post(
            path, json=body, headers={**self.actor.auth, "Idempotency-Key": idempotency_key}
        )

    async def state(self, client: httpx.AsyncClient) -> list[Any]:
        """Balances, transfer lists and related records: what a replay must not change."""
        found: list[Any] = []
        for user in self.watched:
            transfers = await client.get("/v1/transfers", params={"limit": 100}, headers=user.auth)
            found += [await balance(client, user), transfers.json()]
        for path in self.reads:
            found.append((await client.get(path, headers=self.actor.auth)).json())
        return found


async def _pair(api: Server) -> tuple[User, User]:
    payer, payee = await register(api.client), await register(api.client)
    await topup(api.client, payer, 10_000)
    return payer, payee


async def _hold(api: Server, payer: User) -> str:
    response = await api.client.post(
        "/v1/holds", json={"amount": 3_000, "currency": "INR"}, headers={**payer.auth, **key()}
    )
    assert response.status_code == 201, response.text
    hold_id: str = response.json()["id"]
    return hold_id


async def transfer_case(api: Server) -> Case:
    payer, payee = await _pair(api)
    body = {"to": payee.handle, "amount": 1_000, "currency": "INR"}
    return Case(payer, "/v1/transfers", body, {**body, "amount": 1_001}, [payer, payee])


async def topup_case(api: Server) -> Case:
    user = await register(api.client)
    path = f"/v1/wallets/{user.wallet_id}/topups"
    return Case(user, path, {"amount": 500}, {"amount": 501}, [user])


async def hold_case(api: Server) -> Case:
    payer, _ = await _pair(api)
    body = {"amount": 2_000, "currency": "INR", "expires_in_s": 600}
    return Case(payer, "/v1/holds", body, {**body, "expires_in_s": 601}, [payer])


async def capture_case(api: Server) -> Case:
    payer, payee = await _pair(api)
    hold_id = await _hold(api, payer)
    body = {"to": payee.handle, "amount": 1_000}
    return Case(
        payer,
        f"/v1/holds/{hold_id}/capture",
        body,
        {**body, "amount": 999},
        [payer, payee],
        reads=[f"/v1/holds/{hold_id}"],
    )


async def release_case(api: Server) -> Case:
    payer, _ = await _pair(api)
    hold_id = await _hold(api, payer)
    return Case(
        payer, f"/v1/holds/{hold_id}/release", None, None, [payer], reads=[f"/v1/holds/{hold_id}"]
    )


async def adjustment_case(api: Server) -> Case:
    operator = await create_operator(api)
    customer = await register(api.client)
    body = {
        "wallet_id": customer.wallet_id,
        "direction": "credit",
        "amount": 700,
        "reason": "goodwill",
    }
    return Case(
        operator,
        "/v1/operator/adjustments",
        body,
        {**body, "reason": "goodwill!"},
        [customer],
        reads=["/v1/operator/actions?limit=5"],
    )


CASES: dict[str, Callable[[Server], Awaitable[Case]]] = {
    "transfer": transfer_case,
    "topup": topup_case,
    "hold": hold_case,
    "capture": capture_case,
    "release": release_case,
    "adjustment": adjustment_case,
}


@pytest.mark.parametrize("name", list(CASES))
async def test_replay_returns_the_stored_reply_and_moves_nothing(api: Server, name: str) -> None:
    case = await CASES[name](api)
    before = await case.state(api.client)
    idempotency_key = uuid.uuid4().hex
    first = await case.send(api.client, idempotency_key)
    assert first.status_code in (200, 201), first.text
    assert "idempotent-replayed" not in first.headers
    after_first = await case.state(api.client)
    assert after_first != before

    for _ in range(2):
        replay = await case.send(api.client, idempotency_key)
        assert replay.status_code == first.status_code
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.headers["content-type"] == "application/json"
    assert await case.state(api.client) == after_first


def another_route(name: str, case: Case) -> tuple[str, dict[str, Any]]:
    """A valid request by the same caller on another money-moving route."""
    if name == "adjustment":
        return "/v1/transfers", {"to": case.watched[0].handle, "amount": 1, "currency": "INR"}
    if name == "topup":
        return "/v1/holds", {"amount": 1, "currency": "INR"}
    return f"/v1/wallets/{case.actor.wallet_id}/topups", {"amount": 1}


@pytest.mark.parametrize("name", list(CASES))
async def test_same_key_for_another_request_is_422(api: Server, name: str) -> None:
    case = await CASES[name](api)
    idempotency_key = uuid.uuid4().hex
    first = await case.send(api.client, idempotency_key)
    assert first.status_code in (200, 201), first.text
    after_first = await case.state(api.client)
    if case.other_body is not None:
        reused = await case.post(api.client, idempotency_key, case.path, case.other_body)
        assert_problem(reused, 422, "idempotency_key_reused")
        assert "idempotent-replayed" not in reused.headers
    path, body = another_route(name, case)
    other = await case.post(api.client, idempotency_key, path, body)
    assert_problem(other, 422, "idempotency_key_reused")
    assert await case.state(api.client) == after_first
    # The key still replays its own request.
    replay = await case.send(api.client, idempotency_key)
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"


BAD_KEYS: list[str | bytes] = [
    "k" * 256,
    b"",
    "clé-unique".encode(),
    "ключ".encode(),
    b"tab\there",
]


@pytest.mark.parametrize("name", list(CASES))
async def test_bad_keys_are_400_and_move_nothing(api: Server, name: str) -> None:
    case = await CASES[name](api)
    before = await case.state(api.client)
    for bad in BAD_KEYS:
        response = await api.client.post(
            case.path, json=case.body, headers={**case.actor.auth, "Idempotency-Key": bad}
        )
        assert_problem(response, 400, "idempotency_key_invalid")
    missing = await api.client.post(case.path, json=case.body, headers=case.actor.auth)
    assert_problem(missing, 400, "idempotency_key_missing")
    assert await case.state(api.client) == before
    # The longest valid key works.
    longest = await case.send(api.client, "k" * 255)
    assert longest.status_code in (200, 201), longest.text


async def test_a_release_with_or_without_an_empty_body_is_one_request(api: Server) -> None:
    case = await release_case(api)
    idempotency_key = uuid.uuid4().hex
    first = await case.send(api.client, idempotency_key)
    assert first.status_code == 200, first.text
    after_first = await case.state(api.client)
    replay = await case.post(api.client, idempotency_key, case.path, {})
    assert replay.status_code == 200, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert await case.state(api.client) == after_first


async def test_an_error_reply_is_replayed_even_once_it_would_succeed(api: Server) -> None:
    payer, payee = await register(api.client), await register(api.client)
    body = {"to": payee.handle, "amount": 1_000, "currency": "INR"}
    headers = {**payer.auth, "Idempotency-Key": uuid.uuid4().hex}
    first = await api.client.post("/v1/transfers", json=body, headers=headers)
    assert_problem(first, 422, "insufficient_funds")
    await topup(api.client, payer, 5_000)
    replay = await api.client.post("/v1/transfers", json=body, headers=headers)
    assert replay.status_code == 422
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["content-type"].startswith("application/problem+json")
    assert await balance(api.client, payer) == {"posted": 5_000, "pending": 0, "available": 5_000}
    assert await balance(api.client, payee) == {"posted": 0, "pending": 0, "available": 0}


async def test_a_refusal_before_the_ledger_is_replayed_too(api: Server) -> None:
    payer, _ = await _pair(api)
    handle = f"later_{uuid.uuid4().hex[:10]}"
    body = {"to": handle, "amount": 100, "currency": "INR"}
    headers = {**payer.auth, "Idempotency-Key": uuid.uuid4().hex}
    first = await api.client.post("/v1/transfers", json=body, headers=headers)
    assert_problem(first, 404, "recipient_not_found")
    await register(api.client, handle=handle)
    replay = await api.client.post("/v1/transfers", json=body, headers=headers)
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert (await balance(api.client, payer))["posted"] == 10_000


async def test_a_request_refused_by_validation_does_not_use_up_its_key(api: Server) -> None:
    payer, payee = await _pair(api)
    headers = {**payer.auth, "Idempotency-Key": uuid.uuid4().hex}
    bad = {"to": payee.handle, "amount": 10.5, "currency": "INR"}
    assert_problem(
        await api.client.post("/v1/transfers", json=bad, headers=headers), 422, "validation_error"
    )
    good = {**bad, "amount": 10}
    response = await api.client.post("/v1/transfers", json=good, headers=headers)
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers


async def test_keys_belong_to_their_caller(api: Server) -> None:
    asha, ravi = await _pair(api)
    await topup(api.client, ravi, 10_000)
    shared = {"Idempotency-Key": "order-1"}
    first = await api.client.post(
        "/v1/transfers",
        json={"to": ravi.handle, "amount": 300, "currency": "INR"},
        headers={**asha.auth, **shared},
    )
    second = await api.client.post(
        "/v1/transfers",
        json={"to": asha.handle, "amount": 200, "currency": "INR"},
        headers={**ravi.auth, **shared},
    )
    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert (await balance(api.client, asha))["posted"] == 10_000 - 300 + 200
    assert (await balance(api.client, ravi))["posted"] == 10_000 + 300 - 200


async def test_keys_are_kept_at_least_a_day(api: Server) -> None:
    case = await transfer_case(api)
    idempotency_key = uuid.uuid4().hex
    assert (await case.send(api.client, idempotency_key)).status_code == 201
    table = idempotency_keys
    async with api.engine.connect() as conn:
        row = (await conn.execute(select(table).where(table.c.key == idempotency_key))).one()
    assert row.status == "completed"
    assert row.expires_at - row.created_at >= DAY_NS


def assert_one_effect(responses: list[httpx.Response]) -> httpx.Response:
    """Exactly one original 201; the rest are 409 in-use or replays of it; no 5xx."""
    originals = [
        r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers
    ]
    assert len(originals) == 1, [(r.status_code, r.text) for r in responses]
    [original] = originals
    for response in responses:
        if response is original:
            continue
        if response.status_code == 409:
            assert_problem(response, 409, "idempotency_key_in_use")
        else:
            assert response.status_code == 201, response.text
            assert response.headers["Idempotent-Replayed"] == "true"
            assert response.json() == original.json()
    return original


async def race(
    clients: list[httpx.AsyncClient], case: Case, idempotency_key: str, count: int
) -> list[httpx.Response]:
    """`count` identical requests at once, spread over the clients (servers)."""
    return list(
        await asyncio.gather(
            *(case.send(clients[i % len(clients)], idempotency_key) for i in range(count))
        )
    )


async def assert_moved_once(api: Server, case: Case) -> None:
    payer, payee = case.watched
    assert (await balance(api.client, payer))["posted"] == 9_000
    assert (await balance(api.client, payee))["posted"] == 1_000
    listed = await api.client.get("/v1/transfers", headers=payee.auth)
    assert len(listed.json()["data"]) == 1


async def test_concurrent_duplicates_have_one_effect(api: Server) -> None:
    case = await transfer_case(api)
    responses = await race([api.client], case, uuid.uuid4().hex, 20)
    assert_one_effect(responses)
    await assert_moved_once(api, case)


async def test_concurrent_duplicates_across_two_servers_have_one_effect(api: Server) -> None:
    """Two API servers on one database (separate batchers, separate in-process key sets):
    the database's claim is what stops the second effect."""
    second, stop = await start_server(api.settings, api.backend)
    try:
        for _ in range(2):
            case = await transfer_case(api)
            idempotency_key = uuid.uuid4().hex
            responses = await race([api.client, second.client], case, idempotency_key, 20)
            original = assert_one_effect(responses)
            # Either server replays the stored reply afterwards.
            for client in (api.client, second.client):
                [replay] = await race([client], case, idempotency_key, 1)
                assert replay.status_code == 201, replay.text
                assert replay.headers["Idempotent-Replayed"] == "true"
                assert replay.json() == original.json()
            await assert_moved_once(api, case)
            got = await second.client.get(
                f"/v1/transfers/{original.json()['id']}", headers=case.actor.auth
            )
            assert got.json() == original.json()
    finally:
        await stop()


async def _claim(
    api: Server, user: User, idempotency_key: str, body: dict[str, Any], *, locked_for_s: float
) -> uuid.UUID:
    """A claim as a request leaves it when its process dies before finishing."""
    resource_id = uuid7()
    now = now_ns()
    payload = TransferBody.model_validate(body).model_dump(mode="json")
    async with api.engine.begin() as conn:
        await conn.execute(
            insert(idempotency_keys).values(
                id=uuid7(),
                principal=f"usr_{uuid.UUID(user.id.removeprefix('usr_')).hex}",
                key=idempotency_key,
                fingerprint=fingerprint("POST", "/v1/transfers", payload),
                status="in_flight",
                resource_id=resource_id,
                locked_until=now + int(locked_for_s * 1e9),
                created_at=now - int(1e9),
                expires_at=now + DAY_NS,
            )
        )
    return resource_id


class TestCrashedRequest:
    async def test_a_stale_claim_is_taken_over_with_its_resource_id(self, api: Server) -> None:
        payer, payee = await _pair(api)
        body = {"to": payee.handle, "amount": 1_000, "currency": "INR"}
        idempotency_key = uuid.uuid4().hex
        resource_id = await _claim(api, payer, idempotency_key, body, locked_for_s=-1)
        headers = {**payer.auth, "Idempotency-Key": idempotency_key}
        response = await api.client.post("/v1/transfers", json=body, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["id"] == format_public_id("txn", resource_id)
        replay = await api.client.post("/v1/transfers", json=body, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == response.json()
        assert (await balance(api.client, payer))["posted"] == 9_000
        assert (await balance(api.client, payee))["posted"] == 1_000

    async def test_a_live_claim_is_409_and_moves_nothing(self, api: Server) -> None:
        payer, payee = await _pair(api)
        body = {"to": payee.handle, "amount": 1_000, "currency": "INR"}
        idempotency_key = uuid.uuid4().hex
        await _claim(api, payer, idempotency_key, body, locked_for_s=60)
        headers = {**payer.auth, "Idempotency-Key": idempotency_key}
        response = await api.client.post("/v1/transfers", json=body, headers=headers)
        assert_problem(response, 409, "idempotency_key_in_use")
        other = await api.client.post("/v1/transfers", json={**body, "amount": 5}, headers=headers)
        assert_problem(other, 422, "idempotency_key_reused")
        assert (await balance(api.client, payer))["posted"] == 10_000
        assert (await balance(api.client, payee))["posted"] == 0

    async def test_a_takeover_after_the_money_moved_does_not_move_it_again(
        self, api: Server
    ) -> None:
        """The ledger is the last guard: the takeover reuses the claim's resource id, so
        a transfer that did reach the ledger is reported, not repeated."""
        payer, payee = await _pair(api)
        body = {"to": payee.handle, "amount": 1_000, "currency": "INR"}
        idempotency_key = uuid.uuid4().hex
        resource_id = await _claim(api, payer, idempotency_key, body, locked_for_s=-1)
        payer_wallet = uuid.UUID(payer.wallet_id.removeprefix("wal_"))
        payee_wallet = uuid.UUID(payee.wallet_id.removeprefix("wal_"))
        async with api.engine.begin() as conn:
            [outcome] = await create_transfers(
                conn,
                [
                    Transfer(
                        id=resource_id,
                        debit_account_id=payer_wallet,
                        credit_account_id=payee_wallet,
                        amount=1_000,
                        currency="INR",
                        code=int(TransferCode.P2P),
                    )
                ],
            )
        assert outcome.ok
        headers = {**payer.auth, "Idempotency-Key": idempotency_key}
        response = await api.client.post("/v1/transfers", json=body, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["id"] == format_public_id("txn", resource_id)
        assert (await balance(api.client, payer))["posted"] == 9_000
        assert (await balance(api.client, payee))["posted"] == 1_000

    async def test_a_takeover_racing_a_slow_first_attempt_writes_its_records_once(
        self, api: Server
    ) -> None:
        """The first attempt outlived its claim's lock and committed (transfer, record
        and reply) after a retry took the claim over: the retry's batch finds the ledger
        transfer `exists` and must not write the transfer record a second time."""
        payer, payee = await _pair(api)
        body = {"to": payee.handle, "amount": 1_000, "currency": "INR"}
        headers = {**payer.auth, "Idempotency-Key": uuid.uuid4().hex}
        first = await api.client.post("/v1/transfers", json=body, headers=headers)
        assert first.status_code == 201, first.text
        # Put the claim back as the takeover saw it: in flight, lock expired.
        async with api.engine.begin() as conn:
            await conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.key == headers["Idempotency-Key"])
                .values(status="in_flight", locked_until=now_ns() - 1, response_body=None)
            )
        retry = await api.client.post("/v1/transfers", json=body, headers=headers)
        assert retry.status_code == 201, retry.text
        assert retry.json()["id"] == first.json()["id"]
        async with api.engine.connect() as conn:
            records = await conn.scalar(
                select(func.count())
                .select_from(transfers)
                .where(transfers.c.id == uuid.UUID(first.json()["id"].removeprefix("txn_")))
            )
        assert records == 1
        assert (await balance(api.client, payer))["posted"] == 9_000
        assert (await balance(api.client, payee))["posted"] == 1_000
