"""Rate limits and body limits over HTTP, on both backends, with servers started with low
limits for the test.

Users are made on the session's server (its limits are high) and then call the low-limit
one: tokens work on every server of one database. On PostgreSQL the limiter is Redis,
shared by every server of the run, so each test's counters are its own: fresh users, and
for the per-address limits of the auth routes a made-up client address (uvicorn takes it
from X-Forwarded-For, which it trusts from the loopback proxy the tests are).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.api.conftest import (
    PASSWORD,
    Server,
    User,
    balance,
    key,
    register,
    settings_for,
    start_server,
    topup,
    unique_handle,
)
from tests.api.test_identity import assert_problem, users_matching

LOW_LIMITS: dict[str, Any] = {
    "rate_limit_requests": 5,
    "rate_limit_window_s": 60,
    "rate_limit_auth_requests": 5,
    "login_failures_max": 3,
    "login_lockout_s": 900,
}

Starter = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start(database_url: str, backend: str) -> AsyncIterator[Starter]:
    """Starts servers on this backend's database with the given settings; stops them all
    when the test ends."""
    stops: list[Callable[[], Awaitable[None]]] = []

    async def starter(**overrides: Any) -> Server:
        server, stop = await start_server(settings_for(database_url, backend, **overrides), backend)
        stops.append(stop)
        return server

    yield starter
    for stop in stops:
        await stop()


async def start_like(
    server: Server, **overrides: Any
) -> tuple[Server, Callable[[], Awaitable[None]]]:
    """Another server on `server`'s database and backend, with `overrides`."""
    settings = settings_for(server.settings.database_url, server.backend, **overrides)
    return await start_server(settings, server.backend)


@pytest.fixture(scope="module")
async def limited(server: Server) -> AsyncIterator[Server]:
    """Low limits, for this module's tests: each has counters of its own (fresh users,
    e-mails and client addresses), so they share the server."""
    running, stop = await start_like(server, **LOW_LIMITS)
    yield running
    await stop()


def client_address() -> dict[str, str]:
    """A made-up client address of this test's own."""
    value = uuid.uuid4().int
    return {"X-Forwarded-For": f"10.{value % 250}.{value // 250 % 250}.{value // 62_500 % 250}"}


def rate_limit(response: httpx.Response) -> tuple[str, int, int, int, int]:
    """(policy name, q, w, r, t) from the RateLimit-Policy and RateLimit headers."""
    policy = re.fullmatch(r'"([\w.-]+)";q=(\d+);w=(\d+)', response.headers["RateLimit-Policy"])
    state = re.fullmatch(r'"([\w.-]+)";r=(\d+);t=(\d+)', response.headers["RateLimit"])
    assert policy and state, response.headers
    assert policy[1] == state[1]
    return policy[1], int(policy[2]), int(policy[3]), int(state[2]), int(state[3])


def assert_refused(response: httpx.Response, code: str, policy: str, q: int, w: int) -> int:
    """A 429 with the problem `code`, the headers of `policy` and Retry-After; returns it."""
    assert_problem(response, 429, code)
    name, limit, window, remaining, reset = rate_limit(response)
    assert (name, limit, window, remaining) == (policy, q, w, 0)
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= w
    assert retry_after == reset
    return retry_after


async def test_headers_count_down_then_429(limited: Server, api: Server) -> None:
    user = await register(api.client)
    resets = []
    for remaining in (4, 3, 2, 1, 0):
        response = await limited.client.get("/v1/me", headers=user.auth)
        assert response.status_code == 200, response.text
        name, q, w, r, t = rate_limit(response)
        assert (name, q, w, r) == ("default", 5, 60, remaining)
        assert 1 <= t <= 60
        resets.append(t)
    assert resets == sorted(resets, reverse=True)
    for _ in range(3):
        refused = await limited.client.get("/v1/me", headers=user.auth)
        assert assert_refused(refused, "rate_limited", "default", 5, 60) <= resets[-1]


async def test_errors_count_and_carry_the_headers(limited: Server, api: Server) -> None:
    """A route with an id in its path is one route: other ids (even unknown ones, which
    answer 404) use up the same quota."""
    user = await register(api.client)
    for n, wallet_id in enumerate([user.wallet_id, f"wal_{uuid.uuid4().hex}"] * 2 + ["nope"]):
        response = await limited.client.get(f"/v1/wallets/{wallet_id}", headers=user.auth)
        assert response.status_code == (200 if wallet_id == user.wallet_id else 404)
        assert rate_limit(response)[3] == 4 - n
    refused = await limited.client.get(f"/v1/wallets/{user.wallet_id}", headers=user.auth)
    assert_refused(refused, "rate_limited", "default", 5, 60)


async def test_per_principal_and_route(limited: Server, api: Server) -> None:
    shop, other = await register(api.client, role="merchant"), await register(api.client)
    created = await api.client.post("/v1/api-keys", json={"name": "k"}, headers=shop.auth)
    assert created.status_code == 201, created.text
    key_auth = {"Authorization": f"Bearer {created.json()['key']}"}
    for _ in range(5):
        assert (await limited.client.get("/v1/me", headers=shop.auth)).status_code == 200
    assert_refused(
        await limited.client.get("/v1/me", headers=shop.auth), "rate_limited", "default", 5, 60
    )
    # The principal is the merchant, however they authenticate.
    assert_refused(
        await limited.client.get("/v1/me", headers=key_auth), "rate_limited", "default", 5, 60
    )
    # Another user on the same route is unaffected...
    response = await limited.client.get("/v1/me", headers=other.auth)
    assert response.status_code == 200 and rate_limit(response)[3] == 4
    # ...and so is the same merchant on another route.
    response = await limited.client.get("/v1/transfers", headers=shop.auth)
    assert response.status_code == 200 and rate_limit(response)[3] == 4
    response = await limited.client.get("/v1/api-keys", headers=shop.auth)
    assert response.status_code == 200 and rate_limit(response)[3] == 4


async def test_a_refused_transfer_moves_nothing(limited: Server, api: Server) -> None:
    sender, recipient = await register(api.client), await register(api.client)
    await topup(api.client, sender, 1_000)
    body = {"to": recipient.address, "amount": 10, "currency": "INR"}
    for _ in range(5):
        response = await limited.client.post(
            "/v1/transfers", json=body, headers={**sender.auth, **key()}
        )
        assert response.status_code == 201, response.text
    idempotency = key()
    refused = await limited.client.post(
        "/v1/transfers", json=body, headers={**sender.auth, **idempotency}
    )
    assert_refused(refused, "rate_limited", "default", 5, 60)
    assert await balance(api.client, sender) == {"posted": 950, "pending": 0, "available": 950}
    assert await balance(api.client, recipient) == {"posted": 50, "pending": 0, "available": 50}
    # The refused request's key was not used up: it works where the limit allows.
    retried = await api.client.post(
        "/v1/transfers", json=body, headers={**sender.auth, **idempotency}
    )
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers


async def test_auth_routes_per_client_address(limited: Server, api: Server) -> None:
    here, elsewhere = client_address(), client_address()

    def login_body() -> dict[str, str]:
        return {"email": f"{uuid.uuid4().hex}@example.com", "password": PASSWORD}

    for remaining in (4, 3, 2, 1, 0):
        response = await limited.client.post("/v1/auth/login", json=login_body(), headers=here)
        assert_problem(response, 401, "invalid_credentials")
        assert rate_limit(response)[:4] == ("auth", 5, 60, remaining)
    refused = await limited.client.post("/v1/auth/login", json=login_body(), headers=here)
    assert_refused(refused, "rate_limited", "auth", 5, 60)
    # Refresh and logout are other routes, limited on their own.
    for path in ("/v1/auth/refresh", "/v1/auth/logout"):
        response = await limited.client.post(path, json={"refresh_token": "rt_x_y"}, headers=here)
        assert_problem(response, 401, "invalid_refresh_token")
        assert rate_limit(response)[3] == 4
    # Another address is unaffected.
    response = await limited.client.post("/v1/auth/login", json=login_body(), headers=elsewhere)
    assert_problem(response, 401, "invalid_credentials")
    assert rate_limit(response)[3] == 4


async def test_register_is_limited_per_address(limited: Server, api: Server) -> None:
    here = client_address()

    def body() -> dict[str, str]:
        handle = unique_handle("rl")
        return {
            "email": f"{handle}@example.com",
            "password": PASSWORD,
            "name": "R",
            "handle": handle,
        }

    for _ in range(5):
        response = await limited.client.post("/v1/auth/register", json=body(), headers=here)
        assert response.status_code == 201, response.text
    refused_body = body()
    refused = await limited.client.post("/v1/auth/register", json=refused_body, headers=here)
    assert_refused(refused, "rate_limited", "auth", 5, 60)
    assert await users_matching(limited, handle=refused_body["handle"]) == 0


async def login_as(
    server: Server, user: User, password: str, address: dict[str, str]
) -> httpx.Response:
    return await server.client.post(
        "/v1/auth/login", json={"email": user.email, "password": password}, headers=address
    )


async def test_login_lockout(limited: Server, api: Server) -> None:
    user, bystander = await register(api.client), await register(api.client)
    address = client_address()
    for _ in range(3):
        wrong = await login_as(limited, user, "wrong-password", address)
        assert_problem(wrong, 401, "invalid_credentials")
    # The right password does not help now...
    locked = await login_as(limited, user, PASSWORD, address)
    retry_after = assert_refused(locked, "login_locked", "login-failures", 3, 900)
    assert retry_after > 800
    assert "access_token" not in locked.text
    # ...and the e-mail is locked whatever its case, from any address.
    other_case = await limited.client.post(
        "/v1/auth/login",
        json={"email": user.email.upper(), "password": PASSWORD},
        headers=client_address(),
    )
    assert_refused(other_case, "login_locked", "login-failures", 3, 900)
    # Another e-mail is unaffected.
    response = await login_as(limited, bystander, PASSWORD, client_address())
    assert response.status_code == 200, response.text
    # Tokens issued before the lockout keep working: it guards the password, not the account.
    assert (await limited.client.get("/v1/me", headers=user.auth)).status_code == 200


async def test_a_successful_login_forgets_failures(limited: Server, api: Server) -> None:
    user = await register(api.client)
    for _ in range(2):
        assert_problem(
            await login_as(limited, user, "wrong-password", client_address()),
            401,
            "invalid_credentials",
        )
    assert (await login_as(limited, user, PASSWORD, client_address())).status_code == 200
    for _ in range(2):
        assert_problem(
            await login_as(limited, user, "wrong-password", client_address()),
            401,
            "invalid_credentials",
        )
    assert (await login_as(limited, user, PASSWORD, client_address())).status_code == 200


async def test_concurrent_guesses_are_limited_too(limited: Server, api: Server) -> None:
    """Guesses sent all at once, from many addresses, get no more tries than one by one."""
    user = await register(api.client)
    guesses = await asyncio.gather(
        *(login_as(limited, user, f"guess-{n}-password", client_address()) for n in range(12))
    )
    statuses = sorted(r.status_code for r in guesses)
    assert statuses.count(401) <= 3, statuses
    assert statuses.count(401) + statuses.count(429) == 12, statuses
    for response in guesses:
        if response.status_code == 429:
            assert_refused(response, "login_locked", "login-failures", 3, 900)
    locked = await login_as(limited, user, PASSWORD, client_address())
    assert_refused(locked, "login_locked", "login-failures", 3, 900)


async def test_limits_across_servers(api: Server, start: Starter, backend: str) -> None:
    """PostgreSQL deployments share limits through Redis: the count is the same whichever
    server answers. SQLite runs one process, whose limiter is in memory."""
    first, second = await start(**LOW_LIMITS), await start(**LOW_LIMITS)
    user = await register(api.client)
    for server, remaining in ((first, 4), (first, 3), (first, 2)):
        response = await server.client.get("/v1/me", headers=user.auth)
        assert rate_limit(response)[3] == remaining
    response = await second.client.get("/v1/me", headers=user.auth)
    assert response.status_code == 200
    if backend == "postgresql":
        assert rate_limit(response)[3] == 1
        assert (await second.client.get("/v1/me", headers=user.auth)).status_code == 200
        for server in (first, second):
            refused = await server.client.get("/v1/me", headers=user.auth)
            assert_refused(refused, "rate_limited", "default", 5, 60)
    else:
        assert rate_limit(response)[3] == 4
        for remaining in (1, 0):
            response = await first.client.get("/v1/me", headers=user.auth)
            assert rate_limit(response)[3] == remaining
        assert_refused(
            await first.client.get("/v1/me", headers=user.auth), "rate_limited", "default", 5, 60
        )
        response = await second.client.get("/v1/me", headers=user.auth)
        assert response.status_code == 200 and rate_limit(response)[3] == 3


BODY_BYTES_MAX = 2048


@pytest.fixture(scope="module")
async def small_bodies(server: Server) -> AsyncIterator[Server]:
    running, stop = await start_like(server, api_body_bytes_max=BODY_BYTES_MAX)
    yield running
    await stop()


def padded_registration(size: int) -> tuple[dict[str, str], bytes]:
    """A valid registration body, padded with JSON whitespace to exactly `size` bytes."""
    handle = unique_handle("big")
    body = {"email": f"{handle}@example.com", "password": PASSWORD, "name": "B", "handle": handle}
    encoded = json.dumps(body).encode()
    assert len(encoded) <= size
    return body, encoded[:-1] + b" " * (size - len(encoded)) + b"}"


async def chunks(data: bytes, size: int = 500) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


JSON = {"content-type": "application/json"}


async def test_body_at_the_limit_is_accepted(small_bodies: Server, api: Server) -> None:
    _, content = padded_registration(BODY_BYTES_MAX)
    response = await small_bodies.client.post("/v1/auth/register", content=content, headers=JSON)
    assert response.status_code == 201, response.text
    _, content = padded_registration(BODY_BYTES_MAX)
    response = await small_bodies.client.post(
        "/v1/auth/register", content=chunks(content), headers=JSON
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("size", [BODY_BYTES_MAX + 1, 10 * BODY_BYTES_MAX])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_too_large(small_bodies: Server, api: Server, size: int, chunked: bool) -> None:
    body, content = padded_registration(size)
    response = await small_bodies.client.post(
        "/v1/auth/register", content=chunks(content) if chunked else content, headers=JSON
    )
    assert ("content-length" in response.request.headers) is not chunked
    assert_problem(response, 413, "body_too_large")
    assert await users_matching(small_bodies, handle=body["handle"]) == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_body_too_large_moves_no_money(
    small_bodies: Server, api: Server, chunked: bool
) -> None:
    sender, recipient = await register(api.client), await register(api.client)
    await topup(api.client, sender, 1_000)
    body = {"to": recipient.address, "amount": 100, "currency": "INR", "note": "n" * 100}
    content = json.dumps(body).encode()[:-1] + b" " * BODY_BYTES_MAX + b"}"
    response = await small_bodies.client.post(
        "/v1/transfers",
        content=chunks(content) if chunked else content,
        headers={**sender.auth, **key(), **JSON},
    )
    assert_problem(response, 413, "body_too_large")
    assert await balance(api.client, sender) == {"posted": 1_000, "pending": 0, "available": 1_000}
    assert await balance(api.client, recipient) == {"posted": 0, "pending": 0, "available": 0}


async def test_declared_length_over_the_limit(small_bodies: Server, api: Server) -> None:
    """A Content-Length over the limit is refused before any of the body is sent."""
    host, port = small_bodies.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /v1/auth/register HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        length = re.search(rb"(?i)content-length: (\d+)", head)
        assert length is not None, head
        body = await asyncio.wait_for(reader.readexactly(int(length[1])), timeout=5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 413 "), head
    assert b"application/problem+json" in head
    assert json.loads(body)["code"] == "body_too_large"
