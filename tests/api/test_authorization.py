"""Who may do what, over HTTP on both backends.

One small world per backend: a customer who owns a wallet, a transfer and a hold; another
customer; the transfer's payee; a merchant calling with an access token and with an API
key; an operator. Every route is asked by every kind of caller. Someone else's resources
are 404 (as if they did not exist: existence is not leaked), operator routes are 403 for
everybody else, and no refused request moves money.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    Server,
    User,
    balance,
    create_operator,
    key,
    register,
    topup,
)
from tests.api.test_identity import assert_problem

CALLERS = ("anonymous", "owner", "other", "payee", "merchant", "merchant_key", "operator")


@dataclass
class World:
    owner: User
    other: User
    payee: User
    merchant: User
    operator: User
    merchant_key: str
    transfer_id: str
    hold_id: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def caller(self, name: str) -> dict[str, str]:
        return self.headers[name]

    def addresses(self) -> dict[str, str]:
        return {
            "owner": self.owner.address,
            "other": self.other.address,
            "payee": self.payee.address,
            "merchant": self.merchant.address,
            "merchant_key": self.merchant.address,
            "operator": self.payee.address,
            "anonymous": self.other.address,
        }

    def fill(self, path: str) -> str:
        return path.format(
            wallet=self.owner.wallet_id, transfer=self.transfer_id, hold=self.hold_id
        )

    async def balances(self, client: httpx.AsyncClient) -> dict[str, dict[str, int]]:
        users = {
            "owner": self.owner,
            "other": self.other,
            "payee": self.payee,
            "merchant": self.merchant,
        }
        return {name: await balance(client, user) for name, user in users.items()}


@pytest.fixture(scope="module")
async def world(server: Server) -> World:
    client = server.client
    owner, other, payee = await register(client), await register(client), await register(client)
    merchant = await register(client, role="merchant")
    operator = await create_operator(server)
    await topup(client, owner, 10_000)
    await topup(client, other, 5_000)
    sent = await client.post(
        "/v1/transfers",
        json={"to": payee.address, "amount": 1_000, "currency": "INR"},
        headers={**owner.auth, **key()},
    )
    assert sent.status_code == 201, sent.text
    held = await client.post(
        "/v1/holds", json={"amount": 2_000, "currency": "INR"}, headers={**owner.auth, **key()}
    )
    assert held.status_code == 201, held.text
    created = await client.post("/v1/api-keys", json={"name": "matrix"}, headers=merchant.auth)
    assert created.status_code == 201, created.text
    world = World(
        owner=owner,
        other=other,
        payee=payee,
        merchant=merchant,
        operator=operator,
        merchant_key=created.json()["key"],
        transfer_id=sent.json()["id"],
        hold_id=held.json()["id"],
    )
    world.headers = {
        "anonymous": {},
        "owner": owner.auth,
        "other": other.auth,
        "payee": payee.auth,
        "merchant": merchant.auth,
        "merchant_key": {"Authorization": f"Bearer {world.merchant_key}"},
        "operator": operator.auth,
    }
    return world


# Someone else's wallet, statement, transfer and hold: 404 with the resource's own code.
OWNED_READS = [
    ("/v1/wallets/{wallet}", "wallet_not_found", {"owner", "operator"}),
    ("/v1/wallets/{wallet}/statement", "wallet_not_found", {"owner", "operator"}),
    ("/v1/transfers/{transfer}", "transfer_not_found", {"owner", "payee", "operator"}),
    ("/v1/holds/{hold}", "hold_not_found", {"owner", "operator"}),
]


@pytest.mark.parametrize(
    ("path", "code", "allowed"), [pytest.param(*r, id=r[0]) for r in OWNED_READS]
)
async def test_owned_reads(
    api: Server, world: World, path: str, code: str, allowed: set[str]
) -> None:
    for caller in CALLERS:
        response = await api.client.get(world.fill(path), headers=world.caller(caller))
        if caller == "anonymous":
            assert_problem(response, 401, "unauthenticated", who=caller)
        elif caller in allowed:
            assert response.status_code == 200, (caller, response.text)
        else:
            assert_problem(response, 404, code, who=caller)


async def test_owned_reads_bodies(api: Server, world: World) -> None:
    """What the owner and the operator see is the resource itself."""
    for caller in ("owner", "operator"):
        headers = world.caller(caller)
        wallet = (await api.client.get(world.fill("/v1/wallets/{wallet}"), headers=headers)).json()
        assert wallet["id"] == world.owner.wallet_id
        statement = await api.client.get(
            world.fill("/v1/wallets/{wallet}/statement"), headers=headers
        )
        assert world.transfer_id in {e["transfer_id"] for e in statement.json()["data"]}
        transfer = await api.client.get(world.fill("/v1/transfers/{transfer}"), headers=headers)
        assert transfer.json()["id"] == world.transfer_id
        assert transfer.json()["from"]["wallet_id"] == world.owner.wallet_id
        hold = await api.client.get(world.fill("/v1/holds/{hold}"), headers=headers)
        assert hold.json()["id"] == world.hold_id
        assert hold.json()["wallet"]["wallet_id"] == world.owner.wallet_id


async def test_unknown_and_malformed_ids_are_404_too(api: Server, world: World) -> None:
    """A made-up id answers exactly like someone else's: nothing to tell them apart."""
    cases = [
        ("/v1/wallets/{}", "wal", "wallet_not_found"),
        ("/v1/wallets/{}/statement", "wal", "wallet_not_found"),
        ("/v1/transfers/{}", "txn", "transfer_not_found"),
        ("/v1/holds/{}", "hold", "hold_not_found"),
    ]
    for path, prefix, code in cases:
        for made_up in (f"{prefix}_{uuid.uuid4().hex}", "nope", f"{prefix}_zz", str(uuid.uuid4())):
            response = await api.client.get(path.format(made_up), headers=world.other.auth)
            assert_problem(response, 404, code)


@pytest.mark.parametrize("caller", CALLERS)
async def test_own_lists(api: Server, world: World, caller: str) -> None:
    """Lists hold the caller's own things only."""
    headers = world.caller(caller)
    wallets = await api.client.get("/v1/wallets", headers=headers)
    transfers = await api.client.get("/v1/transfers", headers=headers)
    me = await api.client.get("/v1/me", headers=headers)
    if caller == "anonymous":
        for response in (wallets, transfers, me):
            assert_problem(response, 401, "unauthenticated")
        return
    for response in (wallets, transfers, me):
        assert response.status_code == 200, response.text
    wallet_ids = {w["id"] for w in wallets.json()}
    transfer_ids = {t["id"] for t in transfers.json()["data"]}
    assert (world.owner.wallet_id in wallet_ids) == (caller == "owner")
    assert (world.transfer_id in transfer_ids) == (caller in {"owner", "payee"})
    user = getattr(world, caller.removesuffix("_key"))
    assert me.json()["id"] == user.id
    assert wallet_ids == ({user.wallet_id} if user.wallet_id else set())


OPERATOR_ROUTES = [
    ("GET", "/v1/operator/system-accounts", 200),
    ("GET", "/v1/operator/actions", 200),
    ("POST", "/v1/operator/audit", 200),
    ("POST", "/v1/operator/adjustments", 201),
]


@pytest.mark.parametrize(
    ("method", "path", "ok"), [pytest.param(*r, id=f"{r[0]} {r[1]}") for r in OPERATOR_ROUTES]
)
async def test_operator_routes(api: Server, world: World, method: str, path: str, ok: int) -> None:
    body = None
    if path.endswith("adjustments"):
        body = {
            "wallet_id": world.other.wallet_id,
            "direction": "credit",
            "amount": 7,
            "reason": "authorization matrix",
        }
    before = await balance(api.client, world.other)
    for caller in CALLERS:
        response = await api.client.request(
            method, path, json=body, headers={**world.caller(caller), **key()}
        )
        if caller == "anonymous":
            assert_problem(response, 401, "unauthenticated", who=caller)
        elif caller != "operator":
            assert_problem(response, 403, "forbidden", who=caller)
        else:
            assert response.status_code == ok, response.text
    # Only the operator's adjustment (credit 7) went through.
    credited = 7 if body is not None else 0
    assert await balance(api.client, world.other) == {
        "posted": before["posted"] + credited,
        "pending": before["pending"],
        "available": before["available"] + credited,
    }


def attempts(world: World, caller: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Money-moving requests on the owner's resources, each paying the caller if it could."""
    to = world.addresses()[caller]
    return [
        ("/v1/wallets/{wallet}/topups", "wallet_not_found", {"amount": 100}),
        ("/v1/holds/{hold}/capture", "hold_not_found", {"to": to}),
        ("/v1/holds/{hold}/capture", "hold_not_found", {"to": to, "amount": 500}),
        ("/v1/holds/{hold}/release", "hold_not_found", {}),
    ]


@pytest.mark.parametrize("caller", ["anonymous", "other", "payee", "merchant", "merchant_key"])
async def test_others_cannot_move_the_owners_money(api: Server, world: World, caller: str) -> None:
    before = await world.balances(api.client)
    for path, code, body in attempts(world, caller):
        response = await api.client.post(
            world.fill(path), json=body, headers={**world.caller(caller), **key()}
        )
        if caller == "anonymous":
            assert_problem(response, 401, "unauthenticated", who=path)
        else:
            assert_problem(response, 404, code, who=path)
    assert await world.balances(api.client) == before
    hold = await api.client.get(world.fill("/v1/holds/{hold}"), headers=world.owner.auth)
    assert hold.json()["status"] == "held" and hold.json()["captured_amount"] == 0


async def test_operator_cannot_top_up_someone_elses_wallet(api: Server, world: World) -> None:
    before = await world.balances(api.client)
    response = await api.client.post(
        world.fill("/v1/wallets/{wallet}/topups"),
        json={"amount": 100},
        headers={**world.operator.auth, **key()},
    )
    assert_problem(response, 404, "wallet_not_found")
    assert await world.balances(api.client) == before


async def test_operator_cannot_capture_or_release_a_customers_hold(api: Server) -> None:
    """A hold is resolved by the customer who made it. An operator who needs to move a
    customer's money does it with an adjustment: with a reason, in the operator log."""
    owner, payee = await register(api.client), await register(api.client)
    operator = await create_operator(api)
    await topup(api.client, owner, 1_000)
    held = await api.client.post(
        "/v1/holds", json={"amount": 600, "currency": "INR"}, headers={**owner.auth, **key()}
    )
    assert held.status_code == 201, held.text
    hold_id = held.json()["id"]
    capture = await api.client.post(
        f"/v1/holds/{hold_id}/capture",
        json={"to": payee.address},
        headers={**operator.auth, **key()},
    )
    assert_problem(capture, 404, "hold_not_found")
    release = await api.client.post(
        f"/v1/holds/{hold_id}/release", json={}, headers={**operator.auth, **key()}
    )
    assert_problem(release, 404, "hold_not_found")
    assert await balance(api.client, owner) == {"posted": 1_000, "pending": 600, "available": 400}
    assert await balance(api.client, payee) == {"posted": 0, "pending": 0, "available": 0}


async def test_owner_moves_own_money(api: Server) -> None:
    """The control for the refusals above: the owner's own requests succeed."""
    owner, payee = await register(api.client), await register(api.client)
    await topup(api.client, owner, 1_000)
    holds = []
    for amount in (300, 200):
        held = await api.client.post(
            "/v1/holds", json={"amount": amount, "currency": "INR"}, headers={**owner.auth, **key()}
        )
        assert held.status_code == 201, held.text
        holds.append(held.json()["id"])
    capture = await api.client.post(
        f"/v1/holds/{holds[0]}/capture",
        json={"to": payee.address, "amount": 250},
        headers={**owner.auth, **key()},
    )
    assert capture.status_code == 200, capture.text
    release = await api.client.post(
        f"/v1/holds/{holds[1]}/release", json={}, headers={**owner.auth, **key()}
    )
    assert release.status_code == 200, release.text
    assert await balance(api.client, owner) == {"posted": 750, "pending": 0, "available": 750}
    assert await balance(api.client, payee) == {"posted": 250, "pending": 0, "available": 250}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(
            "/v1/transfers",
            {"to": "{payee}", "amount": 100, "currency": "INR", "from": "{wallet}"},
            id="transfer-from",
        ),
        pytest.param(
            "/v1/transfers",
            {"to": "{payee}", "amount": 100, "currency": "INR", "wallet_id": "{wallet}"},
            id="transfer-wallet-id",
        ),
        pytest.param(
            "/v1/holds",
            {"amount": 100, "currency": "INR", "wallet_id": "{wallet}"},
            id="hold-wallet-id",
        ),
    ],
)
async def test_no_field_names_another_source(
    api: Server, world: World, path: str, body: dict[str, Any]
) -> None:
    """Money always leaves the caller's own wallet: a body naming another is refused."""
    filled = {
        k: v.format(payee=world.payee.address, wallet=world.owner.wallet_id)
        if isinstance(v, str)
        else v
        for k, v in body.items()
    }
    before = await world.balances(api.client)
    response = await api.client.post(path, json=filled, headers={**world.other.auth, **key()})
    problem = assert_problem(response, 422, "validation_error")
    assert any(e["type"] == "extra_forbidden" for e in problem["errors"])
    assert await world.balances(api.client) == before


async def find_actions(
    client: httpx.AsyncClient, operator: User, wanted: dict[str, Any], pages_max: int = 20
) -> list[dict[str, Any]]:
    """The operator log's entries whose fields include `wanted`, newest first."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    for _ in range(pages_max):
        response = await client.get("/v1/operator/actions", params=params, headers=operator.auth)
        assert response.status_code == 200, response.text
        page = response.json()
        found += [a for a in page["data"] if wanted.items() <= a.items()]
        if page["next_cursor"] is None:
            break
        params["after"] = page["next_cursor"]
    return found


async def test_operator_actions_are_logged(api: Server) -> None:
    customer = await register(api.client)
    operator = await create_operator(api)
    adjusted = await api.client.post(
        "/v1/operator/adjustments",
        json={
            "wallet_id": customer.wallet_id,
            "direction": "credit",
            "amount": 1_234,
            "reason": "goodwill credit for ticket 42",
        },
        headers={**operator.auth, **key()},
    )
    assert adjusted.status_code == 201, adjusted.text
    adjustment = adjusted.json()
    assert adjustment["object"] == "adjustment"
    assert await balance(api.client, customer) == {
        "posted": 1_234,
        "pending": 0,
        "available": 1_234,
    }
    audited = await api.client.post("/v1/operator/audit", headers=operator.auth)
    assert audited.status_code == 200, audited.text
    assert audited.json()["ok"] is True

    [logged] = await find_actions(
        api.client, operator, {"action": "adjustment", "target": customer.wallet_id}
    )
    assert logged["actor_id"] == operator.id
    assert logged["id"].startswith("act_")
    assert logged["details"]["id"] == adjustment["id"]
    assert logged["details"]["reason"] == "goodwill credit for ticket 42"
    assert logged["details"]["amount"] == 1_234
    audits = await find_actions(
        api.client, operator, {"action": "ledger_audit", "actor_id": operator.id}
    )
    assert len(audits) == 1 and audits[0]["details"]["ok"] is True

    # Debiting it back is logged too, and the customer's wallet is where it started.
    debit = await api.client.post(
        "/v1/operator/adjustments",
        json={
            "wallet_id": customer.wallet_id,
            "direction": "debit",
            "amount": 1_234,
            "reason": "reversal of the goodwill credit",
        },
        headers={**operator.auth, **key()},
    )
    assert debit.status_code == 201, debit.text
    assert await balance(api.client, customer) == {"posted": 0, "pending": 0, "available": 0}
    logged_now = await find_actions(
        api.client, operator, {"action": "adjustment", "target": customer.wallet_id}
    )
    assert [a["details"]["direction"] for a in logged_now] == ["debit", "credit"]


@pytest.mark.parametrize(
    ("changes", "headers", "status", "code"),
    [
        pytest.param({}, {"Idempotency-Key": None}, 400, "idempotency_key_missing", id="no-key"),
        pytest.param({"wallet_id": "wal_" + "0" * 32}, {}, 404, "wallet_not_found", id="no-wallet"),
        pytest.param({"wallet_id": "nope"}, {}, 404, "wallet_not_found", id="bad-wallet-id"),
        pytest.param({"amount": 0}, {}, 422, "validation_error", id="amount-zero"),
        pytest.param({"amount": -5}, {}, 422, "validation_error", id="amount-negative"),
        pytest.param({"amount": "5"}, {}, 422, "validation_error", id="amount-string"),
        pytest.param({"amount": 5.0}, {}, 422, "validation_error", id="amount-float"),
        pytest.param({"direction": "sideways"}, {}, 422, "validation_error", id="direction"),
        pytest.param({"reason": "no"}, {}, 422, "validation_error", id="reason-short"),
        pytest.param({"reason": None}, {}, 422, "validation_error", id="reason-null"),
        pytest.param({"note": "x"}, {}, 422, "validation_error", id="unknown-field"),
        pytest.param({"direction": "debit"}, {}, 422, "insufficient_funds", id="overdraw"),
    ],
)
async def test_invalid_adjustments_change_nothing(
    api: Server,
    changes: dict[str, Any],
    headers: dict[str, str | None],
    status: int,
    code: str,
) -> None:
    customer = await register(api.client)
    operator = await create_operator(api)
    body = {
        "wallet_id": customer.wallet_id,
        "direction": "credit",
        "amount": 500,
        "reason": "a reason long enough",
        **changes,
    }
    sent = {k: v for k, v in {**operator.auth, **key(), **headers}.items() if v is not None}
    response = await api.client.post("/v1/operator/adjustments", json=body, headers=sent)
    assert_problem(response, status, code)
    assert await balance(api.client, customer) == {"posted": 0, "pending": 0, "available": 0}
    assert await find_actions(api.client, operator, {"actor_id": operator.id}) == []
