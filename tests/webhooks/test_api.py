"""The endpoints API: who may see and change what, and every kind of invalid input
answered with a problem (stable `code`) that changes nothing."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Server, User, create_operator, register
from tests.webhooks.conftest import customer
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import create_endpoint, current_secret, get_endpoint

BASE = "/v1/webhook-endpoints"


async def merchant_key(server: Server) -> tuple[User, dict[str, str]]:
    merchant = await register(server.client, role="merchant")
    created = await server.client.post("/v1/api-keys", json={"name": "shop"}, headers=merchant.auth)
    assert created.status_code == 201, created.text
    return merchant, {"Authorization": f"Bearer {created.json()['key']}"}


async def test_crud_round_trip(hooks: Server, receiver: Receiver) -> None:
    user = await customer(hooks)
    created = await create_endpoint(
        hooks,
        user,
        receiver.url,
        ["hold.created", "hold.created", "transfer.completed"],
        description="shop backend",
    )
    assert created["id"].startswith("we_") and created["owner_id"] == user.id
    assert created["event_types"] == ["hold.created", "transfer.completed"]
    assert created["status"] == "enabled" and created["description"] == "shop backend"
    shown = await get_endpoint(hooks, user, created["id"])
    assert "secret" not in shown
    assert shown == {k: v for k, v in created.items() if k != "secret"}

    patched = await hooks.client.patch(
        f"{BASE}/{created['id']}",
        json={"event_types": ["*", "hold.created"], "description": None},
        headers=user.auth,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["event_types"] == ["*"] and patched.json()["description"] is None
    off = await hooks.client.patch(
        f"{BASE}/{created['id']}", json={"enabled": False}, headers=user.auth
    )
    assert off.json()["status"] == "disabled" and off.json()["disabled_reason"] == "owner"
    on = await hooks.client.patch(
        f"{BASE}/{created['id']}", json={"enabled": True}, headers=user.auth
    )
    assert on.json()["status"] == "enabled"

    listed = await hooks.client.get(BASE, headers=user.auth)
    assert [e["id"] for e in listed.json()["data"]] == [created["id"]]
    deleted = await hooks.client.delete(f"{BASE}/{created['id']}", headers=user.auth)
    assert deleted.status_code == 204
    gone = await hooks.client.get(f"{BASE}/{created['id']}", headers=user.auth)
    assert gone.status_code == 404 and gone.json()["code"] == "webhook_endpoint_not_found"
    assert (await hooks.client.get(BASE, headers=user.auth)).json()["data"] == []


async def test_lists_page_with_a_cursor(hooks: Server, receiver: Receiver) -> None:
    user = await customer(hooks)
    made = [(await create_endpoint(hooks, user, receiver.url))["id"] for _ in range(3)]
    first = await hooks.client.get(BASE, params={"limit": 2}, headers=user.auth)
    page = first.json()
    assert [e["id"] for e in page["data"]] == made[::-1][:2]
    second = await hooks.client.get(
        BASE, params={"limit": 2, "after": page["next_cursor"]}, headers=user.auth
    )
    assert [e["id"] for e in second.json()["data"]] == made[:1]
    assert second.json()["next_cursor"] is None


async def test_others_endpoints_are_not_found(hooks: Server, receiver: Receiver) -> None:
    owner, other = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, owner, receiver.url)
    path = f"{BASE}/{endpoint['id']}"
    calls = [
        ("GET", path, None),
        ("PATCH", path, {"description": "mine now"}),
        ("DELETE", path, None),
        ("POST", f"{path}/secret/rotate", {}),
        ("GET", f"{path}/deliveries", None),
        ("GET", f"{path}/deliveries/msg_{'0' * 32}", None),
        ("POST", f"{path}/deliveries/msg_{'0' * 32}/replay", None),
        (
            "POST",
            f"{path}/replay",
            {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"},
        ),
    ]
    for method, url, body in calls:
        response = await hooks.client.request(method, url, json=body, headers=other.auth)
        assert response.status_code == 404, (method, url, response.text)
        assert response.json()["code"] == "webhook_endpoint_not_found"
    assert (await hooks.client.get(BASE, headers=other.auth)).json()["data"] == []
    assert await get_endpoint(hooks, owner, endpoint["id"]) == {
        k: v for k, v in endpoint.items() if k != "secret"
    }
    unauthenticated = await hooks.client.get(BASE)
    assert unauthenticated.status_code == 401


async def test_a_merchant_key_acts_for_its_merchant_and_operators_read_all(
    hooks: Server, receiver: Receiver
) -> None:
    merchant, api_key = await merchant_key(hooks)
    created = await hooks.client.post(
        BASE, json={"url": receiver.url, "event_types": ["payment.succeeded"]}, headers=api_key
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["owner_id"] == merchant.id
    # The merchant's own session sees what its key made.
    assert (await get_endpoint(hooks, merchant, endpoint["id"]))["id"] == endpoint["id"]

    operator = await create_operator(hooks)
    assert (await get_endpoint(hooks, operator, endpoint["id"]))["owner_id"] == merchant.id
    found: list[str] = []
    after = None
    while True:
        page = (
            await hooks.client.get(
                BASE,
                params={"limit": 100, **({"after": after} if after else {})},
                headers=operator.auth,
            )
        ).json()
        found += [e["id"] for e in page["data"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert endpoint["id"] in found
    log = await hooks.client.get(f"{BASE}/{endpoint['id']}/deliveries", headers=operator.auth)
    assert log.status_code == 200 and log.json()["data"] == []
    # Reading is all: operators do not change others' endpoints.
    refused = await hooks.client.patch(
        f"{BASE}/{endpoint['id']}", json={"enabled": False}, headers=operator.auth
    )
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert (await get_endpoint(hooks, merchant, endpoint["id"]))["status"] == "enabled"


def long_url(receiver: Receiver, length: int) -> str:
    return receiver.url + "?" + "a" * (length - len(receiver.url) - 1)


def bad_bodies(receiver: Receiver) -> list[tuple[dict[str, Any], str]]:
    url = receiver.url
    return [
        ({"url": "ftp://example.com/x", "event_types": ["*"]}, "url_invalid"),
        ({"url": "https:///x", "event_types": ["*"]}, "url_invalid"),
        ({"url": "not a url", "event_types": ["*"]}, "url_invalid"),
        ({"url": "https://user:pw@example.com/", "event_types": ["*"]}, "url_invalid"),
        ({"url": "http://127.0.0.1:99999/", "event_types": ["*"]}, "url_invalid"),
        ({"url": long_url(receiver, 2049), "event_types": ["*"]}, "validation_error"),
        ({"url": "", "event_types": ["*"]}, "validation_error"),
        ({"url": url, "event_types": ["transfer.done"]}, "event_types_invalid"),
        ({"url": url, "event_types": ["user.registered"]}, "event_types_invalid"),
        ({"url": url, "event_types": []}, "validation_error"),
        ({"url": url, "event_types": "transfer.completed"}, "validation_error"),
        ({"url": url, "event_types": [1]}, "validation_error"),
        ({"url": url, "event_types": ["x" * 65]}, "validation_error"),
        ({"url": url, "event_types": ["*"] * 30}, "validation_error"),
        ({"url": url}, "validation_error"),
        ({"event_types": ["*"]}, "validation_error"),
        ({"url": url, "event_types": ["*"], "secret": "whsec_AAAA"}, "validation_error"),
        ({"url": url, "event_types": ["*"], "description": "d" * 501}, "validation_error"),
        ({"url": url, "event_types": ["*"], "description": "bell\x07"}, "description_invalid"),
        ({"url": url, "event_types": ["*"], "description": "nul\x00"}, "validation_error"),
        ({"url": 42, "event_types": ["*"]}, "validation_error"),
    ]


async def test_invalid_creations_are_refused_and_create_nothing(
    hooks: Server, receiver: Receiver
) -> None:
    user = await customer(hooks)
    for body, code in bad_bodies(receiver):
        response = await hooks.client.post(BASE, json=body, headers=user.auth)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == code, (body, response.text)
    for raw in (b"{", b"[]", b"null"):
        response = await hooks.client.post(
            BASE, content=raw, headers={**user.auth, "Content-Type": "application/json"}
        )
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"] == "application/problem+json"
    huge = {"url": receiver.url, "event_types": ["*"], "description": "x" * 70_000}
    too_big = await hooks.client.post(BASE, json=huge, headers=user.auth)
    assert too_big.status_code == 413
    assert (await hooks.client.get(BASE, headers=user.auth)).json()["data"] == []


async def test_endpoints_per_owner_are_bounded(hooks: Server, receiver: Receiver) -> None:
    user = await customer(hooks)
    for _ in range(3):  # the test bound
        await create_endpoint(hooks, user, receiver.url)
    response = await hooks.client.post(
        BASE, json={"url": receiver.url, "event_types": ["*"]}, headers=user.auth
    )
    assert response.status_code == 409 and response.json()["code"] == "endpoint_limit_reached"
    assert len((await hooks.client.get(BASE, headers=user.auth)).json()["data"]) == 3


BAD_PATCHES: list[tuple[dict[str, Any], str]] = [
    ({}, "patch_empty"),
    ({"url": None}, "validation_error"),
    ({"enabled": None}, "validation_error"),
    ({"event_types": None}, "validation_error"),
    ({"enabled": "yes"}, "validation_error"),
    ({"enabled": 1}, "validation_error"),
    ({"url": "http://10.0.0.1/"}, "url_private"),
    ({"url": "gopher://x/"}, "url_invalid"),
    ({"event_types": ["nope"]}, "event_types_invalid"),
    ({"status": "enabled"}, "validation_error"),
    ({"description": "\x1b[31m"}, "description_invalid"),
]


async def test_invalid_patches_change_nothing(hooks: Server, receiver: Receiver) -> None:
    user = await customer(hooks)
    endpoint = await create_endpoint(hooks, user, receiver.url, description="keep")
    before = await get_endpoint(hooks, user, endpoint["id"])
    for body, code in BAD_PATCHES:
        response = await hooks.client.patch(
            f"{BASE}/{endpoint['id']}", json=body, headers=user.auth
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == code, (body, response.text)
    assert await get_endpoint(hooks, user, endpoint["id"]) == before


BAD_ROTATIONS: list[dict[str, Any]] = [
    {"overlap_s": 1.5},
    {"overlap_s": "60"},
    {"overlap_s": True},
    {"overlap_s": -1},
    {"overlap_s": 7 * 86_400 + 1},
    {"overlap_s": 60, "extra": 1},
]


async def test_invalid_rotations_keep_the_secret(hooks: Server, receiver: Receiver) -> None:
    user = await customer(hooks)
    endpoint = await create_endpoint(hooks, user, receiver.url)
    for body in BAD_ROTATIONS:
        response = await hooks.client.post(
            f"{BASE}/{endpoint['id']}/secret/rotate", json=body, headers=user.auth
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == "validation_error", body
    assert await current_secret(hooks, endpoint["id"]) == endpoint["secret"]


BAD_RANGES: list[tuple[dict[str, Any], str]] = [
    ({"since": "2026-01-01T00:00:00", "until": "2026-01-02T00:00:00Z"}, "timestamp_invalid"),
    ({"since": "yesterday", "until": "2026-01-02T00:00:00Z"}, "timestamp_invalid"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "range_invalid"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "range_invalid"),
    ({"since": 1700000000, "until": 1700000100}, "validation_error"),
    ({"since": "2026-01-01T00:00:00Z"}, "validation_error"),
    (
        {"since": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z", "x": 1},
        "validation_error",
    ),
]


async def test_invalid_replay_ranges_are_refused(hooks: Server, receiver: Receiver) -> None:
    user = await customer(hooks)
    endpoint = await create_endpoint(hooks, user, receiver.url)
    for body, code in BAD_RANGES:
        response = await hooks.client.post(
            f"{BASE}/{endpoint['id']}/replay", json=body, headers=user.auth
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["code"] == code, (body, response.text)


async def test_invalid_log_queries_and_ids(hooks: Server, receiver: Receiver) -> None:
    user = await customer(hooks)
    endpoint = await create_endpoint(hooks, user, receiver.url)
    log = f"{BASE}/{endpoint['id']}/deliveries"
    for params, code in (
        ({"status": "lost"}, "validation_error"),
        ({"event_type": "nope.nope"}, "event_type_unknown"),
        ({"limit": 0}, "validation_error"),
        ({"limit": 101}, "validation_error"),
        ({"limit": 1.5}, "validation_error"),
        ({"after": "garbage"}, "cursor_invalid"),
    ):
        response = await hooks.client.get(log, params=params, headers=user.auth)
        assert response.status_code == 422, (params, response.text)
        assert response.json()["code"] == code, (params, response.text)
    ok = await hooks.client.get(
        log, params={"status": "failed", "event_type": "transfer.completed"}, headers=user.auth
    )
    assert ok.status_code == 200 and ok.json() == {"data": [], "next_cursor": None}
    for path, code in (
        (f"{BASE}/we_nothex", "webhook_endpoint_not_found"),
        (f"{BASE}/txn_{'0' * 32}x", "webhook_endpoint_not_found"),
        (f"{log}/msg_zz", "delivery_not_found"),
        (f"{log}/msg_{'0' * 32}", "delivery_not_found"),
    ):
        response = await hooks.client.get(path, headers=user.auth)
        assert response.status_code == 404 and response.json()["code"] == code, path
