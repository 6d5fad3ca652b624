"""The inbox over HTTP on both backends: newest-first pages, the unread filter and count,
marking read (idempotent), read-all, each caller seeing only their own, and every bad
request refused the way the API's conventions say.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.api import conftest as api_fixtures
from tests.api.conftest import Server, User, create_operator, key, register, topup
from tests.api.test_transfers import assert_problem
from tests.notifications import apply, event_id, feed_events

server = api_fixtures.server
api = api_fixtures.api

LIST = "/v1/notifications"


async def notified(api: Server, *ids: uuid.UUID) -> None:
    """Apply the events `ids` name (as a notifications worker would)."""
    await apply(api.engine, await feed_events(api.engine, ids), api.settings)


async def pay(api: Server, sender: User, recipient: User, amount: int) -> uuid.UUID:
    response = await api.client.post(
        "/v1/transfers",
        json={"to": recipient.handle, "amount": amount, "currency": "INR"},
        headers={**sender.auth, **key()},
    )
    assert response.status_code == 201, response.text
    return event_id("transfer.completed", response.json()["id"])


async def inbox(api: Server, user: User, **params: Any) -> dict[str, Any]:
    response = await api.client.get(LIST, params=params, headers=user.auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def ravi_paid_three_times(api: Server) -> tuple[User, User]:
    """Ravi, with a welcome and three payments from Asha: four notifications."""
    asha, ravi = await register(api.client), await register(api.client)
    await topup(api.client, asha, 10_000)
    paid = [await pay(api, asha, ravi, amount) for amount in (100, 200, 300)]
    await notified(api, event_id("user.registered", ravi.id), *paid)
    return asha, ravi


async def test_pages_newest_first_with_the_unread_count(api: Server) -> None:
    _, ravi = await ravi_paid_three_times(api)
    first = await inbox(api, ravi, limit=3)
    assert first["unread_count"] == 4
    assert [n["title"][:21] for n in first["data"]] == [
        "You received ₹3.00 fr",
        "You received ₹2.00 fr",
        "You received ₹1.00 fr",
    ]
    notification = first["data"][0]
    assert set(notification) == {
        "id",
        "object",
        "type",
        "title",
        "body",
        "event_id",
        "created_at",
        "read_at",
    }
    assert notification["id"].startswith("ntf_")
    assert notification["event_id"].startswith("evt_")
    assert (notification["object"], notification["type"]) == ("notification", "transfer.completed")
    assert notification["read_at"] is None
    second = await inbox(api, ravi, limit=3, after=first["next_cursor"])
    assert [n["type"] for n in second["data"]] == ["user.registered"]
    assert second["next_cursor"] is None
    whole = await inbox(api, ravi)
    assert [n["id"] for n in whole["data"]] == [n["id"] for n in first["data"] + second["data"]]


async def test_mark_read_is_idempotent_and_filters_unread(api: Server) -> None:
    _, ravi = await ravi_paid_three_times(api)
    newest = (await inbox(api, ravi))["data"][0]
    path = f"{LIST}/{newest['id']}/read"
    first = await api.client.post(path, headers=ravi.auth)
    assert first.status_code == 200, first.text
    assert first.json()["read_at"] is not None
    assert {**first.json(), "read_at": None} == newest
    again = await api.client.post(path, headers=ravi.auth)
    assert again.json() == first.json()
    unread = await inbox(api, ravi, unread="true")
    assert unread["unread_count"] == 3
    assert newest["id"] not in [n["id"] for n in unread["data"]]
    assert len(unread["data"]) == 3
    assert len((await inbox(api, ravi, unread="false"))["data"]) == 4


async def test_read_all(api: Server) -> None:
    asha, ravi = await ravi_paid_three_times(api)
    response = await api.client.post(f"{LIST}/read-all", headers=ravi.auth)
    assert response.status_code == 200, response.text
    assert response.json() == {"marked_read": 4, "unread_count": 0}
    assert all(n["read_at"] for n in (await inbox(api, ravi))["data"])
    assert (await inbox(api, ravi, unread="true"))["data"] == []
    again = await api.client.post(f"{LIST}/read-all", headers=ravi.auth)
    assert again.json() == {"marked_read": 0, "unread_count": 0}
    # A new notification after read-all is unread.
    await notified(api, await pay(api, asha, ravi, 1))
    assert (await inbox(api, ravi))["unread_count"] == 1


async def test_others_notifications_are_not_found(api: Server) -> None:
    asha, ravi = await ravi_paid_three_times(api)
    await notified(api, event_id("user.registered", asha.id))
    ravis = (await inbox(api, ravi))["data"][0]["id"]
    stolen = await api.client.post(f"{LIST}/{ravis}/read", headers=asha.auth)
    unknown = await api.client.post(f"{LIST}/ntf_{uuid.uuid4().hex}/read", headers=asha.auth)
    for response, text in [(stolen, ravis), (unknown, None)]:
        body = assert_problem(response, 404, "notification_not_found")
        if text is not None:
            assert body["detail"] == f"no such notification {text!r}"
    assert (await inbox(api, ravi))["unread_count"] == 4
    # Asha's own: her welcome and the three payments as she sent them.
    mine = await inbox(api, asha)
    assert [n["title"][:8] for n in mine["data"]] == ["You sent"] * 3 + ["Welcome "]
    assert mine["unread_count"] == 4
    theirs = {n["id"] for n in (await inbox(api, ravi))["data"]}
    assert not theirs & {n["id"] for n in mine["data"]}


async def test_merchants_and_operators_see_their_own(api: Server) -> None:
    merchant = await register(api.client, role="merchant")
    operator = await create_operator(api)
    await notified(
        api, event_id("user.registered", merchant.id), event_id("user.registered", operator.id)
    )
    created = await api.client.post("/v1/api-keys", json={"name": "shop"}, headers=merchant.auth)
    assert created.status_code == 201, created.text
    by_key = {"Authorization": f"Bearer {created.json()['key']}"}
    for headers, user in [(by_key, merchant), (operator.auth, operator)]:
        response = await api.client.get(LIST, headers=headers)
        assert response.status_code == 200, response.text
        [welcome] = response.json()["data"]
        assert f"{user.handle}@payflow" in welcome["body"]
    read = await api.client.post(f"{LIST}/{welcome['id']}/read", headers=by_key)
    assert_problem(read, 404, "notification_not_found")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"after": "garbage"}, "cursor_invalid"),
        ({"after": "1." + "0" * 31}, "cursor_invalid"),
        ({"after": "x" * 101}, "validation_error"),
        ({"limit": 0}, "validation_error"),
        ({"limit": 101}, "validation_error"),
        ({"limit": "1.5"}, "validation_error"),
        ({"limit": ""}, "validation_error"),
        ({"unread": "maybe"}, "validation_error"),
        ({"unread": "2"}, "validation_error"),
    ],
)
async def test_bad_list_parameters_are_422(api: Server, params: dict[str, Any], code: str) -> None:
    user = await register(api.client)
    response = await api.client.get(LIST, params=params, headers=user.auth)
    assert_problem(response, 422, code, case=params)


@pytest.mark.parametrize(
    "notification_id",
    ["garbage", "ntf_", "ntf_zz", "wal_99dfb67a75d248cdb0496f0b72bba119", "ntf_" + "0" * 31, "%20"],
)
async def test_malformed_ids_are_not_found(api: Server, notification_id: str) -> None:
    user = await register(api.client)
    response = await api.client.post(f"{LIST}/{notification_id}/read", headers=user.auth)
    assert_problem(response, 404, "notification_not_found", case=notification_id)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", LIST),
        ("POST", f"{LIST}/ntf_611ad4ed2abc4789b9adbaad537f85c3/read"),
        ("POST", f"{LIST}/read-all"),
    ],
)
@pytest.mark.parametrize("token", [None, "not-a-token", "pfk_nothing"])
async def test_unauthenticated_is_401(
    api: Server, method: str, path: str, token: str | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await api.client.request(method, path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_routes_are_in_the_openapi_document(api: Server) -> None:
    document = (await api.client.get("/openapi.json")).json()
    paths = document["paths"]
    listed = paths[LIST]["get"]
    assert {p["name"] for p in listed["parameters"]} == {"after", "limit", "unread"}
    assert set(listed["responses"]) >= {"200", "401", "422", "429"}
    assert set(paths[f"{LIST}/{{notification_id}}/read"]["post"]["responses"]) >= {"200", "404"}
    assert "200" in paths[f"{LIST}/read-all"]["post"]["responses"]
