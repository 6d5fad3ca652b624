"""Schemathesis over the whole OpenAPI document, against a real server on each backend.

Every operation gets a bounded, derandomized run of generated requests (valid and
invalid: Schemathesis' examples, coverage and fuzzing phases), sent over HTTP as a real
funded customer — or as an operator for `/v1/operator/*` — and every response must be
what the document promises: never a 5xx, a documented status code and content type, a
body matching its schema, the documented headers. The ledger audit must pass afterwards.

The operations are collected from the document the application generates (Schemathesis'
fixture-loaded schemas do not work with pytest 9.2); `test_openapi_document` checks the
server serves exactly that document. The server runs in a thread with its own event
loop, because Schemathesis calls it synchronously from the test.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from payflow.api.app import create_app
from payflow.api.idempotency import KEY_LENGTH_MAX
from tests.api.conftest import (
    Server,
    User,
    create_operator,
    key,
    register,
    settings_for,
    start_server,
    topup,
)
from tests.conftest import assert_audit_passes
from tests.services import ensure_redis

T = TypeVar("T")

EXAMPLES_MAX = 15
HOLDS = 5
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# The surface DESIGN.md fixes ("HTTP API conventions") that this API builds.
CORE_OPERATIONS = {
    ("post", "/v1/auth/register"),
    ("post", "/v1/auth/login"),
    ("post", "/v1/auth/refresh"),
    ("get", "/v1/wallets"),
    ("post", "/v1/wallets/{wallet_id}/topups"),
    ("get", "/v1/wallets/{wallet_id}/statement"),
    ("post", "/v1/transfers"),
    ("get", "/v1/transfers/{transfer_id}"),
    ("post", "/v1/holds"),
    ("post", "/v1/holds/{hold_id}/capture"),
    ("post", "/v1/holds/{hold_id}/release"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/metrics"),
}
MONEY_MOVING = {
    ("post", "/v1/wallets/{wallet_id}/topups"),
    ("post", "/v1/transfers"),
    ("post", "/v1/holds"),
    ("post", "/v1/holds/{hold_id}/capture"),
    ("post", "/v1/holds/{hold_id}/release"),
    ("post", "/v1/operator/adjustments"),
    ("post", "/v1/operator/rewards/pool/fundings"),
    ("post", "/v1/payouts"),
    ("post", "/v1/payments"),
    ("post", "/v1/payments/{payment_id}/capture"),
    ("post", "/v1/payments/{payment_id}/cancel"),
    ("post", "/v1/refunds"),
    ("post", "/v1/operator/settlements/run"),
}

# The document the application generates (no server or database needed for that).
DOCUMENT = create_app(settings_for("sqlite+aiosqlite:///:memory:", "sqlite")).openapi()
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT))
# Real values by parameter or field name, filled in once the server is up: generated
# ids and recipients are almost never real, and without these no success path would run.
REAL: dict[str, list[str]] = {}


class LoopThread:
    """An event loop in a daemon thread; `run` waits for a coroutine's result there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@dataclass
class Live:
    server: Server
    customer: User
    operator: User


async def _setup(server: Server) -> tuple[User, User, dict[str, list[str]]]:
    """A funded customer with a transfer and holds to look at, capture and release; a
    friend to pay; an operator."""
    client = server.client
    customer, friend = await register(client), await register(client)
    await topup(client, customer, 10_000_000)
    sent = await client.post(
        "/v1/transfers",
        json={"to": friend.address, "amount": 100, "currency": "INR"},
        headers={**customer.auth, **key()},
    )
    assert sent.status_code == 201, sent.text
    holds = []
    for _ in range(HOLDS):
        held = await client.post(
            "/v1/holds", json={"amount": 500, "currency": "INR"}, headers={**customer.auth, **key()}
        )
        assert held.status_code == 201, held.text
        holds.append(held.json()["id"])
    operator = await create_operator(server)
    real = {
        "wallet_id": [customer.wallet_id],
        "transfer_id": [sent.json()["id"]],
        "hold_id": holds,
        "to": [friend.handle, friend.address, friend.wallet_id],
        "currency": ["INR"],
    }
    return customer, operator, real


@pytest.fixture(scope="module")
def live(database_url: str, backend: str) -> Iterator[Live]:
    """The API on this backend, in its own thread; audited when the module is done."""
    if backend == "postgresql":
        ensure_redis()
    runner = LoopThread()
    try:
        server, stop = runner.run(start_server(settings_for(database_url, backend), backend))
        try:
            customer, operator, real = runner.run(_setup(server))
            REAL.clear()
            REAL.update(real)
            yield Live(server, customer, operator)
            runner.run(assert_audit_passes(server.engine))
        finally:
            runner.run(stop())
    finally:
        runner.close()


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _with_real_values(values: Any) -> st.SearchStrategy[Any]:
    """The generated values as they are, or with real ones in the places REAL knows."""
    if not isinstance(values, dict):
        return st.just(values)
    names = [name for name in REAL if name in values]
    if not names:
        return st.just(values)
    real = st.fixed_dictionaries({name: st.sampled_from(REAL[name]) for name in names})
    # Real values first: Hypothesis favours the first branch as the simpler one.
    return st.one_of(real.map(lambda chosen: {**values, **chosen}), st.just(values))


@schema.hook
def flatmap_path_parameters(
    context: schemathesis.HookContext, path_parameters: Any
) -> st.SearchStrategy[Any]:
    return _with_real_values(path_parameters)


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    return _with_real_values(body)


def _fresh_idempotency_key(case: schemathesis.Case) -> None:
    """A valid generated Idempotency-Key becomes a fresh one, so examples never replay one
    another; a missing or malformed one stays, to exercise the 400."""
    value = (case.headers or {}).get("Idempotency-Key")
    if (
        isinstance(value, str)
        and 1 <= len(value.strip()) <= KEY_LENGTH_MAX
        and value.isascii()
        and value.isprintable()
    ):
        case.headers = {**(case.headers or {}), "Idempotency-Key": uuid.uuid4().hex}


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_MAX,
    derandomize=True,
    deadline=None,
    database=None,
    # Most generated requests are refused (4xx) by design; that is what is being tested.
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms(
    case: schemathesis.Case, live: Live, http: requests.Session
) -> None:
    caller = live.operator if case.operation.path.startswith("/v1/operator/") else live.customer
    _fresh_idempotency_key(case)
    case.call_and_validate(
        base_url=live.server.base_url, session=http, headers=caller.auth, checks=CHECKS
    )


def test_openapi_document(live: Live) -> None:
    """The served document is valid OpenAPI 3.x, is what the tests above ran, and has the
    core surface, the bearer scheme and the Idempotency-Key header."""
    response = requests.get(f"{live.server.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    document = response.json()
    assert document == DOCUMENT
    assert document["openapi"].startswith("3.")
    schemathesis.openapi.from_url(f"{live.server.base_url}/openapi.json").validate()
    operations = {
        (method, path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    assert operations.keys() >= CORE_OPERATIONS, CORE_OPERATIONS - operations.keys()
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token, or a merchant API key",
    }
    for name, operation in operations.items():
        required_headers = {
            p["name"]
            for p in operation.get("parameters", [])
            if p["in"] == "header" and p["required"]
        }
        assert ("Idempotency-Key" in required_headers) == (name in MONEY_MOVING), name
        problems = {
            status: response["content"]
            for status, response in operation["responses"].items()
            if status.startswith(("4", "5")) and "content" in response
        }
        for status, content in problems.items():
            if name != ("get", "/ready"):
                assert list(content) == ["application/problem+json"], (name, status)


def test_nul_text_and_huge_cursor_are_422_not_500(live: Live) -> None:
    """Two 500s found while building this test, pinned down because generated inputs hit
    them only by chance: a NUL in a JSON string (PostgreSQL text cannot store it) and a
    cursor past 2^63 - 1 (it overflows the query)."""
    base, auth = live.server.base_url, live.customer.auth
    login = requests.post(
        f"{base}/v1/auth/login", json={"email": "a\u0000b@example.com", "password": "x"}, timeout=10
    )
    assert login.status_code == 422, login.text
    assert login.json()["code"] == "validation_error"
    cursor = f"{2**63}.{uuid.uuid4().hex}"
    for path in ("/v1/transfers", f"/v1/wallets/{live.customer.wallet_id}/statement"):
        listed = requests.get(f"{base}{path}", params={"after": cursor}, headers=auth, timeout=10)
        assert listed.status_code == 422, (path, listed.text)
        assert listed.json()["code"] == "cursor_invalid"
