"""The event feed and the dead-letter queue over HTTP: operators only, strict inputs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine

from payflow.db import create_engine
from payflow.errors import PayFlowError
from payflow.events import dead_letters, models
from payflow.events.api import _check_not_expired
from payflow.events.cleanup import backlog
from payflow.events.domain import derived_event_id
from payflow.events.feed import START, read_after
from payflow.migrate import upgrade_async
from tests.api.conftest import Server, create_operator, key, register, topup
from tests.events.support import make_events, unique_type, write


async def test_money_moves_appear_in_the_feed_in_order(api: Server) -> None:
    operator = await create_operator(api)
    alice = await register(api.client)
    bob = await register(api.client)
    await topup(api.client, alice, 5_000)
    sent = await api.client.post(
        "/v1/transfers",
        json={"to": bob.handle, "amount": 1_200, "currency": "INR", "note": "lunch"},
        headers={**alice.auth, **key()},
    )
    assert sent.status_code == 201, sent.text
    events: list[dict[str, Any]] = []
    cursor = None
    deadline = asyncio.get_running_loop().time() + 10
    # Polled like a client would: the feed shows an event once every older transaction
    # on the server has ended.
    while True:
        params = {"limit": 100, **({"after": cursor} if cursor else {})}
        page = await api.client.get("/v1/events", params=params, headers=operator.auth)
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["data"]
        cursor = body["next_cursor"]
        assert cursor
        mine = [e for e in events if alice.id in str(e["data"]) or bob.id in str(e["data"])]
        if not body["has_more"] and (
            len(mine) >= 6 or asyncio.get_running_loop().time() > deadline
        ):
            break
        if not body["has_more"]:
            await asyncio.sleep(0.05)
    types = [e["type"] for e in mine]
    assert types == [
        "user.registered",
        "wallet.opened",
        "user.registered",
        "wallet.opened",
        "transfer.completed",
        "transfer.completed",
    ]
    payment = mine[-1]
    transfer_id = uuid.UUID(sent.json()["id"].removeprefix("txn_"))
    assert payment["id"] == f"evt_{derived_event_id(transfer_id, 'transfer.completed').hex}"
    assert payment["aggregate_type"] == "transfer"
    assert payment["aggregate_id"] == sent.json()["id"]
    assert payment["data"]["amount"] == 1_200
    assert payment["data"]["from"]["user_id"] == alice.id
    assert payment["data"]["to"]["user_id"] == bob.id
    assert payment["data"]["note"] == "lunch"
    # Polling from the last cursor returns nothing new and the same cursor.
    again = await api.client.get("/v1/events", params={"after": cursor}, headers=operator.auth)
    assert again.json()["data"] == []
    assert again.json()["next_cursor"] == cursor


async def test_the_feed_filters_by_type(api: Server) -> None:
    operator = await create_operator(api)
    event_type = unique_type()
    await write(api.engine, make_events(event_type, 3))
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        page = await api.client.get(
            "/v1/events", params={"type": event_type, "limit": 2}, headers=operator.auth
        )
        body = page.json()
        if body["has_more"] or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.05)
    assert [e["data"]["n"] for e in body["data"]] == [0, 1]
    assert body["has_more"] is True
    rest = await api.client.get(
        "/v1/events",
        params={"type": event_type, "after": body["next_cursor"]},
        headers=operator.auth,
    )
    assert [e["data"]["n"] for e in rest.json()["data"]] == [2]


async def test_only_operators_read_the_feed(api: Server) -> None:
    customer = await register(api.client)
    merchant = await register(api.client, role="merchant")
    for caller in (customer, merchant):
        refused = await api.client.get("/v1/events", headers=caller.auth)
        assert refused.status_code == 403
        assert refused.json()["code"] == "forbidden"
    assert (await api.client.get("/v1/events")).status_code == 401


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"after": "not-a-cursor"}, 422, "cursor_invalid"),
        ({"after": "x" * 101}, 422, "validation_error"),
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 101}, 422, "validation_error"),
        ({"limit": "ten"}, 422, "validation_error"),
        ({"type": ""}, 422, "validation_error"),
        ({"type": "t" * 65}, 422, "validation_error"),
    ],
)
async def test_bad_feed_queries_are_refused(
    api: Server, params: dict[str, object], status: int, code: str
) -> None:
    operator = await create_operator(api)
    refused = await api.client.get("/v1/events", params=params, headers=operator.auth)
    assert refused.status_code == status, refused.text
    assert refused.json()["code"] == code


async def test_a_cursor_past_cleaned_up_events_is_gone(tmp_path: Path) -> None:
    """Only a fresh database lets this test delete the oldest events."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'feed.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        events = make_events(unique_type(), 3)
        for event in events:
            await write(engine, [event])
        async with engine.connect() as conn:
            items, _ = await read_after(conn, START, limit=10)
            cursor = items[0][0]
            await _check_not_expired(conn, cursor)
        async with engine.begin() as conn:
            await conn.execute(
                delete(models.outbox).where(models.outbox.c.sequence <= items[1][0].sequence)
            )
        async with engine.connect() as conn:
            with pytest.raises(PayFlowError) as caught:
                await _check_not_expired(conn, cursor)
            assert (caught.value.code, caught.value.http_status) == ("cursor_expired", 410)
            # Starting over is always possible; a cursor at a kept event is still good.
            await _check_not_expired(conn, START)
            await _check_not_expired(conn, items[2][0])
    finally:
        await engine.dispose()


async def _park(api: Server, consumer: str) -> dead_letters.DeadLetter:
    [event] = make_events(unique_type(), 1)
    await dead_letters.park(
        api.engine, consumer=consumer, body=event.encode(), event=event, error="boom", attempts=5
    )
    async with api.engine.connect() as conn:
        letters, _ = await dead_letters.list_dead_letters(
            conn, consumer=consumer, status=None, after=None, limit=10
        )
    [letter] = [x for x in letters if x.event_id == event.id]
    return letter


async def test_operators_list_show_and_replay_dead_letters(api: Server) -> None:
    operator = await create_operator(api)
    consumer = f"c{uuid.uuid4().hex[:10]}"
    letter = await _park(api, consumer)
    public_id = f"dlq_{letter.id.hex}"
    listed = await api.client.get(
        "/v1/operator/dead-letters", params={"consumer": consumer}, headers=operator.auth
    )
    assert listed.status_code == 200
    [shown] = listed.json()["data"]
    assert shown["id"] == public_id
    assert (shown["status"], shown["attempts"], shown["error"]) == ("parked", 5, "boom")
    one = await api.client.get(f"/v1/operator/dead-letters/{public_id}", headers=operator.auth)
    assert one.json() == shown
    replayed = await api.client.post(
        f"/v1/operator/dead-letters/{public_id}/replay", headers=operator.auth
    )
    assert replayed.status_code == 202
    assert replayed.json()["status"] == "replaying"
    twice = await api.client.post(
        f"/v1/operator/dead-letters/{public_id}/replay", headers=operator.auth
    )
    assert (twice.status_code, twice.json()["code"]) == (409, "dead_letter_not_parked")
    filtered = await api.client.get(
        "/v1/operator/dead-letters",
        params={"consumer": consumer, "status": "parked"},
        headers=operator.auth,
    )
    assert filtered.json()["data"] == []
    actions = await api.client.get("/v1/operator/actions", headers=operator.auth)
    assert any(
        a["action"] == "dead_letter_replay" and a["target"] == public_id
        for a in actions.json()["data"]
    )


async def test_replay_all_marks_every_parked_letter_of_a_consumer(api: Server) -> None:
    operator = await create_operator(api)
    consumer = f"c{uuid.uuid4().hex[:10]}"
    for _ in range(3):
        await _park(api, consumer)
    response = await api.client.post(
        "/v1/operator/dead-letters/replay", json={"consumer": consumer}, headers=operator.auth
    )
    assert (response.status_code, response.json()) == (202, {"requested": 3})
    again = await api.client.post(
        "/v1/operator/dead-letters/replay", json={"consumer": consumer}, headers=operator.auth
    )
    assert again.json() == {"requested": 0}
    for body in ({"consumer": "Bad Name"}, {"consumer": ""}, {"other": 1}, {"consumer": 5}):
        bad = await api.client.post(
            "/v1/operator/dead-letters/replay", json=body, headers=operator.auth
        )
        assert bad.status_code == 422, body


async def test_dead_letter_routes_refuse_others_and_unknown_ids(api: Server) -> None:
    operator = await create_operator(api)
    customer = await register(api.client)
    letter = await _park(api, f"c{uuid.uuid4().hex[:10]}")
    public_id = f"dlq_{letter.id.hex}"
    for method, path in (
        ("GET", "/v1/operator/dead-letters"),
        ("GET", f"/v1/operator/dead-letters/{public_id}"),
        ("POST", f"/v1/operator/dead-letters/{public_id}/replay"),
        ("GET", "/v1/operator/events/backlog"),
    ):
        refused = await api.client.request(method, path, headers=customer.auth)
        assert refused.status_code == 403, path
    for missing in (f"dlq_{uuid.uuid4().hex}", "dlq_nothex", "12"):
        for method, suffix in (("GET", ""), ("POST", "/replay")):
            response = await api.client.request(
                method, f"/v1/operator/dead-letters/{missing}{suffix}", headers=operator.auth
            )
            assert response.status_code == 404, (missing, suffix)
            assert response.json()["code"] == "dead_letter_not_found"
    for params in ({"status": "lost"}, {"consumer": "UPPER"}, {"after": "zz"}):
        bad = await api.client.get(
            "/v1/operator/dead-letters", params=params, headers=operator.auth
        )
        assert bad.status_code == 422, params


async def test_the_backlog_counts_parked_letters_and_has_nothing_to_publish(
    api: Server,
) -> None:
    operator = await create_operator(api)
    before = (await api.client.get("/v1/operator/events/backlog", headers=operator.auth)).json()
    await _park(api, f"c{uuid.uuid4().hex[:10]}")
    await write(api.engine, make_events(unique_type(), 3))
    response = await api.client.get("/v1/operator/events/backlog", headers=operator.auth)
    assert response.status_code == 200
    body = response.json()
    # These servers deliver in-process: the outbox is the log, nothing is published.
    assert body["delivery"] == "local"
    assert (body["unpublished"], body["oldest_unpublished_age_ms"]) == (None, None)
    assert body["dead_letters_parked"] == before["dead_letters_parked"] + 1


async def test_the_backlog_counts_what_waits_for_the_broker(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as conn:
        before = await backlog(conn)
    await write(pg_engine, make_events(unique_type(), 3))
    async with pg_engine.connect() as conn:
        after = await backlog(conn)
    # No relay runs in this test session's database: nothing is published meanwhile.
    assert after["unpublished"] == before["unpublished"] + 3
    assert after["oldest_unpublished_age_ms"] >= 0
