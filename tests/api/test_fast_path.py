"""The lean path for `POST /v1/transfers` (api/fast_path.py) over HTTP on both backends.

It must answer exactly as the route does (status, body, the headers that matter), leave
to the route unchanged every request it cannot answer completely, count against the
route's own rate limit and metrics, and move money once under concurrent duplicates.

The route is reached on purpose with `Content-Type: application/json; charset=utf-8`:
FastAPI reads that body as JSON, the lean path leaves it alone. Which path answered is
seen through a spy on the lean path's `_answer` (the server runs in this process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from payflow.api import deps, fast_path
from payflow.errors import PayFlowError
from payflow.events.runtime import start_runtime
from payflow.identity import tokens
from payflow.identity.domain import Principal, Role
from payflow.money import AMOUNT_MAX
from payflow.payouts.handlers import CONSUMER as PAYOUTS
from tests.api.conftest import PASSWORD, Server, User, balance, register, start_server, topup
from tests.api.test_idempotency import assert_moved_once, assert_one_effect, race, transfer_case
from tests.api.test_rate_limits import assert_refused, rate_limit, start_like
from tests.api.test_transfers import assert_problem
from tests.bank import Bank
from tests.payouts.conftest import payout_settings, wait_until_ended

PATH = "/v1/transfers"
LEAN = "application/json"
# Any other content type is left to the route; FastAPI still reads this one as JSON.
ROUTE = "application/json; charset=utf-8"
VIA = {"lean": LEAN, "route": ROUTE}
FUNDS = 10_000
AMOUNT = 100
# The session server's default (Settings.api_body_bytes_max).
BODY_BYTES_MAX = 64 * 1024
LOW_LIMIT = 5
WINDOW_S = 60
EMPTY = {"posted": 0, "pending": 0, "available": 0}

Headers = list[tuple[str, str | bytes]]


def funds(amount: int) -> dict[str, int]:
    return {"posted": amount, "pending": 0, "available": amount}


@pytest.fixture
def lean(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The statuses the lean path answered with during the test, in order."""
    answered: list[int] = []
    answer = fast_path._answer

    async def spy(
        state: Any, send: Any, limits: dict[str, str], outcome: Any, replayed: bool
    ) -> None:
        status = outcome.http_status if isinstance(outcome, PayFlowError) else outcome.status
        answered.append(status)
        await answer(state, send, limits, outcome, replayed)

    monkeypatch.setattr(fast_path, "_answer", spy)
    return answered


def encoded(headers: Headers) -> list[tuple[bytes, bytes]]:
    """Headers as sent on the wire, repeated names and non-ASCII bytes kept."""
    return [
        (name.encode(), value if isinstance(value, bytes) else value.encode("latin-1"))
        for name, value in headers
    ]


async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def post(
    client: httpx.AsyncClient, headers: Headers, content: bytes, *, chunked: bool = False
) -> httpx.Response:
    body = chunks(content) if chunked else content
    response = await client.post(PATH, content=body, headers=encoded(headers))
    assert ("content-length" in response.request.headers) is not chunked
    return response


def transfer_headers(user: User, content_type: str, idempotency_key: str | None = None) -> Headers:
    return [
        ("Authorization", f"Bearer {user.access_token}"),
        ("Idempotency-Key", idempotency_key or uuid.uuid4().hex),
        ("Content-Type", content_type),
    ]


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


async def transfer(
    client: httpx.AsyncClient,
    user: User,
    body: dict[str, Any],
    *,
    via: str,
    idempotency_key: str | None = None,
) -> httpx.Response:
    """`body` sent by `user` through the lean path (`via="lean"`) or the route."""
    return await post(client, transfer_headers(user, VIA[via], idempotency_key), dumps(body))


def _blanked(value: Any) -> Any:
    """The body with what differs between two effects (ids, times) blanked."""
    if isinstance(value, dict):
        return {
            k: "…" if (k in ("id", "source_id") or k.endswith("_at")) and v else _blanked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_blanked(v) for v in value]
    return value


def _headers_that_matter(response: httpx.Response) -> dict[str, str]:
    """Every header but the server's own and the count left (it goes down each time);
    the RateLimit header by its policy."""
    view = {
        name: value
        for name, value in response.headers.items()
        if name not in ("date", "server", "content-length", "ratelimit")
    }
    view["content-length"] = "present" if "content-length" in response.headers else "absent"
    if "ratelimit" in response.headers:
        view["ratelimit"] = rate_limit(response)[0]
    return view


def assert_alike(lean_answer: httpx.Response, route_answer: httpx.Response) -> None:
    """The same request answered by either path: same status, body and headers."""
    assert lean_answer.status_code == route_answer.status_code, (
        lean_answer.text,
        route_answer.text,
    )
    assert _blanked(lean_answer.json()) == _blanked(route_answer.json())
    assert _headers_that_matter(lean_answer) == _headers_that_matter(route_answer)
    assert int(lean_answer.headers["content-length"]) == len(lean_answer.content)


async def funded(api: Server, amount: int = FUNDS) -> tuple[User, User]:
    sender, recipient = await register(api.client), await register(api.client)
    await topup(api.client, sender, amount)
    return sender, recipient


async def remaining(client: httpx.AsyncClient, user: User) -> int:
    """What is left of the user's quota on POST /v1/transfers, spending one: a request
    without an Idempotency-Key is counted, refused (400) and moves nothing."""
    response = await client.post(
        PATH, json={"to": "x", "amount": 1, "currency": "INR"}, headers=user.auth
    )
    assert_problem(response, 400, "idempotency_key_missing")
    return rate_limit(response)[3]


class TestAnsweredAlike:
    """Requests the lean path answers itself, answered as the route answers them."""

    async def test_a_transfer_and_its_replay(self, api: Server, lean: list[int]) -> None:
        sender, recipient = await funded(api)
        body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR", "note": "rent"}
        answers: dict[str, list[httpx.Response]] = {}
        counts = []
        for via in VIA:
            idempotency_key = uuid.uuid4().hex
            answers[via] = [
                await transfer(api.client, sender, body, via=via, idempotency_key=idempotency_key)
                for _ in range(3)
            ]
            counts += [rate_limit(r)[3] for r in answers[via]]
        assert lean == [201, 201, 201]
        first, *replays = answers["lean"]
        assert first.status_code == 201, first.text
        assert first.headers["content-type"] == "application/json"
        assert "idempotent-replayed" not in first.headers
        assert first.json()["from"]["wallet_id"] == sender.wallet_id
        assert first.json()["to"]["wallet_id"] == recipient.wallet_id
        for replay in replays:
            assert replay.json() == first.json()
            assert replay.headers["Idempotent-Replayed"] == "true"
        for lean_answer, route_answer in zip(answers["lean"], answers["route"], strict=True):
            assert_alike(lean_answer, route_answer)
        assert answers["lean"][0].json()["id"] != answers["route"][0].json()["id"]
        # One quota, one count per request, whichever path answered.
        assert counts == list(range(counts[0], counts[0] - 6, -1))
        assert await balance(api.client, sender) == funds(FUNDS - 2 * AMOUNT)
        assert await balance(api.client, recipient) == funds(2 * AMOUNT)

    @pytest.mark.parametrize("first_via", list(VIA))
    async def test_a_replay_by_the_other_path(
        self, api: Server, lean: list[int], first_via: str
    ) -> None:
        """Both paths fingerprint the request alike: either replays the other's reply."""
        sender, recipient = await funded(api)
        body = {"to": recipient.address, "amount": AMOUNT, "currency": "INR"}
        then_via = "route" if first_via == "lean" else "lean"
        idempotency_key = uuid.uuid4().hex
        first = await transfer(
            api.client, sender, body, via=first_via, idempotency_key=idempotency_key
        )
        assert first.status_code == 201, first.text
        replay = await transfer(
            api.client, sender, body, via=then_via, idempotency_key=idempotency_key
        )
        assert replay.status_code == 201, replay.text
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
        assert lean == [201]
        assert await balance(api.client, sender) == funds(FUNDS - AMOUNT)
        assert await balance(api.client, recipient) == funds(AMOUNT)

    async def test_the_same_request_spelled_otherwise_is_a_replay(
        self, api: Server, lean: list[int]
    ) -> None:
        """Key order, whitespace and an explicit null note do not make another request."""
        sender, recipient = await funded(api)
        idempotency_key = uuid.uuid4().hex
        body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
        first = await transfer(
            api.client, sender, body, via="lean", idempotency_key=idempotency_key
        )
        assert first.status_code == 201, first.text
        respelled = b'{ "currency" : "INR",\n "note": null, "amount": 100, "to": "%s" }' % (
            recipient.handle.encode()
        )
        for content_type in VIA.values():
            headers = transfer_headers(sender, content_type, idempotency_key)
            replay = await post(api.client, headers, respelled)
            assert replay.status_code == 201, replay.text
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.json() == first.json()
        assert lean == [201, 201]
        assert await balance(api.client, sender) == funds(FUNDS - AMOUNT)

    @pytest.mark.parametrize(
        ("case", "status", "code"),
        [
            ("recipient_not_found", 404, "recipient_not_found"),
            ("insufficient_funds", 422, "insufficient_funds"),
            ("recipient_is_sender", 422, "recipient_is_sender"),
            ("amount_max", 422, "insufficient_funds"),
            ("no_wallet_in_the_currency", 404, "wallet_not_found"),
        ],
    )
    async def test_refusals_and_their_replays(
        self, api: Server, lean: list[int], case: str, status: int, code: str
    ) -> None:
        sender, recipient = await funded(api)
        body: dict[str, Any] = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
        changes: dict[str, dict[str, Any]] = {
            "recipient_not_found": {"to": f"{uuid.uuid4().hex[:12]}@payflow"},
            "insufficient_funds": {"amount": FUNDS + 1},
            "recipient_is_sender": {"to": sender.address},
            "amount_max": {"amount": AMOUNT_MAX},
            "no_wallet_in_the_currency": {"currency": "USD"},
        }
        body.update(changes[case])
        answers: dict[str, list[httpx.Response]] = {}
        for via in VIA:
            idempotency_key = uuid.uuid4().hex
            answers[via] = [
                await transfer(api.client, sender, body, via=via, idempotency_key=idempotency_key)
                for _ in range(2)
            ]
        assert lean == [status, status]
        first, replay = answers["lean"]
        assert_problem(first, status, code, case=case)
        assert "idempotent-replayed" not in first.headers
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        for lean_answer, route_answer in zip(answers["lean"], answers["route"], strict=True):
            assert_alike(lean_answer, route_answer)
        assert await balance(api.client, sender) == funds(FUNDS)
        assert await balance(api.client, recipient) == EMPTY

    async def test_a_refusal_is_replayed_after_its_cause_is_gone(
        self, api: Server, lean: list[int]
    ) -> None:
        """Recipient not found: the stored 404 is the key's reply, on both paths, even once
        the recipient exists."""
        sender, _ = await funded(api)
        handle = f"later_{uuid.uuid4().hex[:10]}"
        body = {"to": handle, "amount": AMOUNT, "currency": "INR"}
        idempotency_key = uuid.uuid4().hex
        first = await transfer(
            api.client, sender, body, via="lean", idempotency_key=idempotency_key
        )
        assert_problem(first, 404, "recipient_not_found")
        latecomer = await register(api.client, handle=handle)
        for via in ("lean", "route", "lean"):
            replay = await transfer(
                api.client, sender, body, via=via, idempotency_key=idempotency_key
            )
            assert replay.status_code == 404
            assert replay.json() == first.json()
            assert replay.headers["Idempotent-Replayed"] == "true"
            assert replay.headers["content-type"] == "application/problem+json"
        assert lean == [404, 404, 404]
        assert await balance(api.client, sender) == funds(FUNDS)
        assert await balance(api.client, latecomer) == EMPTY

    async def test_the_same_key_for_another_body_is_422(self, api: Server, lean: list[int]) -> None:
        sender, recipient = await funded(api)
        body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
        refusals = {}
        for via in VIA:
            idempotency_key = uuid.uuid4().hex
            first = await transfer(
                api.client, sender, body, via="lean", idempotency_key=idempotency_key
            )
            assert first.status_code == 201, first.text
            for other in ({**body, "amount": AMOUNT + 1}, {**body, "note": "another"}):
                refusals[via] = await transfer(
                    api.client, sender, other, via=via, idempotency_key=idempotency_key
                )
                assert_problem(refusals[via], 422, "idempotency_key_reused")
                assert "idempotent-replayed" not in refusals[via].headers
        assert lean == [201, 422, 422, 201]
        assert_alike(refusals["lean"], refusals["route"])
        assert await balance(api.client, sender) == funds(FUNDS - 2 * AMOUNT)
        assert await balance(api.client, recipient) == funds(2 * AMOUNT)

    @pytest.mark.parametrize("amount", [1, FUNDS], ids=["one", "ten_thousand"])
    async def test_the_smallest_amount_and_the_whole_balance(
        self, api: Server, lean: list[int], amount: int
    ) -> None:
        """`amount` by each path: the route's transfer empties the wallet."""
        sender, recipient = await funded(api, 2 * amount)
        body = {"to": recipient.handle, "amount": amount, "currency": "INR"}
        answers = {}
        for via in VIA:
            answers[via] = await transfer(api.client, sender, body, via=via)
            assert answers[via].status_code == 201, answers[via].text
            assert answers[via].json()["amount"] == amount
        assert lean == [201]
        assert_alike(answers["lean"], answers["route"])
        assert await balance(api.client, sender) == EMPTY
        assert await balance(api.client, recipient) == funds(2 * amount)
        # Nothing is left for a third.
        refused = await transfer(api.client, sender, body, via="lean")
        assert_problem(refused, 422, "insufficient_funds")
        assert await balance(api.client, sender) == EMPTY

    async def test_a_merchant_api_key(self, api: Server, lean: list[int]) -> None:
        """The same principal by its API key (cached per process for a few seconds)."""
        shop, recipient = await register(api.client, role="merchant"), await register(api.client)
        await topup(api.client, shop, FUNDS)
        created = await api.client.post("/v1/api-keys", json={"name": "k"}, headers=shop.auth)
        assert created.status_code == 201, created.text
        by_key = dataclasses.replace(shop, access_token=created.json()["key"])
        body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
        answers = {via: await transfer(api.client, by_key, body, via=via) for via in VIA}
        assert lean == [201]
        assert answers["lean"].status_code == 201, answers["lean"].text
        assert answers["lean"].json()["from"]["wallet_id"] == shop.wallet_id
        assert_alike(answers["lean"], answers["route"])
        assert await balance(api.client, shop) == funds(FUNDS - 2 * AMOUNT)
        assert await balance(api.client, recipient) == funds(2 * AMOUNT)

    async def test_a_body_of_exactly_the_limit(self, api: Server, lean: list[int]) -> None:
        sender, recipient = await funded(api)
        compact = dumps({"to": recipient.handle, "amount": AMOUNT, "currency": "INR"})
        padded = compact[:-1] + b" " * (BODY_BYTES_MAX - len(compact)) + b"}"
        assert len(padded) == BODY_BYTES_MAX
        answers = {}
        for via, content_type in VIA.items():
            for chunked in (False, True):
                response = await post(
                    api.client, transfer_headers(sender, content_type), padded, chunked=chunked
                )
                assert response.status_code == 201, response.text
                answers[via] = response
        assert lean == [201, 201]
        assert_alike(answers["lean"], answers["route"])
        assert await balance(api.client, sender) == funds(FUNDS - 4 * AMOUNT)


@dataclass
class Context:
    """One test's users and the credentials its requests are made of."""

    sender: User
    recipient: User
    other: User
    expired_token: str

    def body(self, **changes: Any) -> dict[str, Any]:
        return {"to": self.recipient.handle, "amount": AMOUNT, "currency": "INR", **changes}

    def headers(
        self,
        content_type: str | None,
        *,
        auth: list[str] | None = None,
        keys: list[str | bytes] | None = None,
        content_types: list[str] | None = None,
    ) -> Headers:
        """The sender's headers, or the ones given instead (repeated ones in order)."""
        authorization = [f"Bearer {self.sender.access_token}"] if auth is None else auth
        idempotency_keys = [uuid.uuid4().hex] if keys is None else keys
        types = ([content_type] if content_type else []) if content_types is None else content_types
        return [
            *(("Authorization", value) for value in authorization),
            *(("Idempotency-Key", value) for value in idempotency_keys),
            *(("Content-Type", value) for value in types),
        ]


async def context(api: Server) -> Context:
    sender, recipient = await funded(api)
    other = await register(api.client)
    await topup(api.client, other, FUNDS)
    keys = tokens.SigningKeys()
    await keys.load(api.engine)
    principal = Principal(user_id=uuid.UUID(sender.id.removeprefix("usr_")), role=Role.CUSTOMER)
    expired = tokens.encode_access_token(keys, principal, ttl_s=-60)
    return Context(sender, recipient, other, expired)


Build = Callable[[Context, str], tuple[Headers, bytes]]


@dataclass(frozen=True)
class Left:
    """A request the lean path leaves to the route, and the route's answer to it.

    `build` makes it with the given content type; `compare` sends it both ways (with the
    lean path's content type and with the route's) and expects the same answer.
    """

    build: Build
    status: int
    code: str | None = None
    loc: list[str] | None = None
    compare: bool = True
    chunked: bool = False


def _with(**changes: Any) -> Build:
    return lambda c, t: (c.headers(t), dumps(c.body(**changes)))


def _raw(content: bytes) -> Build:
    return lambda c, t: (c.headers(t), content)


def _auth(*values: Callable[[Context], str]) -> Build:
    return lambda c, t: (c.headers(t, auth=[value(c) for value in values]), dumps(c.body()))


def _keys(*values: str | bytes) -> Build:
    return lambda c, t: (c.headers(t, keys=list(values)), dumps(c.body()))


def _types(*values: str) -> Build:
    return lambda c, t: (c.headers(t, content_types=list(values)), dumps(c.body()))


def _oversized(c: Context, t: str) -> tuple[Headers, bytes]:
    compact = dumps(c.body(note="n" * 100))
    return c.headers(t), compact[:-1] + b" " * (BODY_BYTES_MAX + 1 - len(compact)) + b"}"


def _bearer(c: Context) -> str:
    return f"Bearer {c.sender.access_token}"


def _unknown_key_token(c: Context) -> str:
    claims = {"iss": "payflow", "sub": c.sender.id, "role": "customer", "iat": 0, "exp": 2**40}
    return "Bearer " + jwt.encode(claims, "s" * 48, algorithm="HS256", headers={"kid": "nope"})


def _tampered(c: Context) -> str:
    head, payload, _ = c.sender.access_token.split(".")
    return f"Bearer {head}.{payload}.{'A' * 43}"


VALIDATION = "validation_error"
LEFT_TO_THE_ROUTE: dict[str, Left] = {
    # Idempotency-Key
    "key_missing": Left(_keys(), 400, "idempotency_key_missing"),
    "key_empty": Left(_keys(""), 400, "idempotency_key_invalid"),
    "key_too_long": Left(_keys("k" * 256), 400, "idempotency_key_invalid"),
    "key_with_a_tab": Left(_keys("tab\there"), 400, "idempotency_key_invalid"),
    "key_not_ascii": Left(_keys("ключ".encode()), 400, "idempotency_key_invalid"),
    # The route uses the first of two keys.
    "key_twice": Left(
        lambda c, t: (c.headers(t, keys=[uuid.uuid4().hex, uuid.uuid4().hex]), dumps(c.body())),
        201,
    ),
    # Authorization
    "authorization_missing": Left(_auth(), 401, "unauthenticated"),
    "authorization_basic": Left(_auth(lambda c: "Basic dXNlcjpwYXNz"), 401, "unauthenticated"),
    "bearer_without_a_token": Left(_auth(lambda c: "Bearer"), 401, "unauthenticated"),
    "bearer_lowercase": Left(_auth(lambda c: f"bearer {c.sender.access_token}"), 201),
    "bearer_two_spaces": Left(_auth(lambda c: f"Bearer  {c.sender.access_token}"), 201),
    "token_garbage": Left(_auth(lambda c: "Bearer garbage"), 401, "invalid_token"),
    "token_tampered": Left(_auth(_tampered), 401, "invalid_token"),
    "token_of_an_unknown_key": Left(_auth(_unknown_key_token), 401, "invalid_token"),
    "token_expired": Left(_auth(lambda c: f"Bearer {c.expired_token}"), 401, "token_expired"),
    "api_key_unknown": Left(
        _auth(lambda c: f"Bearer pfk_{uuid.uuid4().hex}_secret"), 401, "invalid_api_key"
    ),
    # The route uses the first of two Authorization headers.
    "authorization_twice": Left(_auth(_bearer, lambda c: f"Bearer {c.other.access_token}"), 201),
    "authorization_twice_garbage_first": Left(
        _auth(lambda c: "Bearer garbage", _bearer), 401, "invalid_token"
    ),
    # The body
    "amount_float": Left(_with(amount=10.5), 422, VALIDATION, ["body", "amount"]),
    "amount_integral_float": Left(_with(amount=100.0), 422, VALIDATION, ["body", "amount"]),
    "amount_string": Left(_with(amount="100"), 422, VALIDATION, ["body", "amount"]),
    "amount_bool": Left(_with(amount=True), 422, VALIDATION, ["body", "amount"]),
    "amount_null": Left(_with(amount=None), 422, VALIDATION, ["body", "amount"]),
    "amount_zero": Left(_with(amount=0), 422, VALIDATION, ["body", "amount"]),
    "amount_negative": Left(_with(amount=-1), 422, VALIDATION, ["body", "amount"]),
    "amount_over_the_maximum": Left(
        _with(amount=AMOUNT_MAX + 1), 422, VALIDATION, ["body", "amount"]
    ),
    "currency_lowercase": Left(_with(currency="inr"), 422, VALIDATION, ["body", "currency"]),
    "recipient_missing": Left(
        lambda c, t: (c.headers(t), dumps({"amount": AMOUNT, "currency": "INR"})),
        422,
        VALIDATION,
        ["body", "to"],
    ),
    "note_too_long": Left(_with(note="n" * 141), 422, VALIDATION, ["body", "note"]),
    "note_with_a_nul": Left(_with(note="a\x00b"), 422, VALIDATION, ["body", "note"]),
    "unknown_field": Left(_with(surprise="field"), 422, VALIDATION, ["body", "surprise"]),
    "not_an_object": Left(_raw(b"[]"), 422, VALIDATION, ["body"]),
    "empty_body": Left(_raw(b""), 422, VALIDATION, ["body"]),
    "malformed_json": Left(_raw(b'{"to": "x", "amount": '), 400, "malformed_json"),
    "trailing_garbage": Left(
        lambda c, t: (c.headers(t), dumps(c.body()) + b"x"), 400, "malformed_json"
    ),
    "not_utf8": Left(
        _raw(b'{"to": "\xff", "amount": 1, "currency": "INR"}'), 400, "malformed_json"
    ),
    # The lean path's parser refuses a byte order mark; the route's accepts it.
    "utf8_bom": Left(lambda c, t: (c.headers(t), b"\xef\xbb\xbf" + dumps(c.body())), 201),
    "body_too_large": Left(_oversized, 413, "body_too_large"),
    "body_too_large_chunked": Left(_oversized, 413, "body_too_large", chunked=True),
    # Content-Type
    "content_type_missing": Left(_types(), 422, VALIDATION, ["body"], compare=False),
    "content_type_text": Left(_types("text/plain"), 422, VALIDATION, ["body"], compare=False),
    "content_type_charset": Left(_types(ROUTE), 201, compare=False),
    "content_type_capitals": Left(_types("Application/JSON"), 201, compare=False),
    "content_type_vendor_json": Left(_types("application/vnd.payflow+json"), 201, compare=False),
    "content_type_twice_json_first": Left(_types(LEAN, "text/plain"), 201, compare=False),
    "content_type_twice_text_first": Left(
        _types("text/plain", LEAN), 422, VALIDATION, ["body"], compare=False
    ),
}


@pytest.mark.parametrize("name", list(LEFT_TO_THE_ROUTE))
async def test_left_to_the_route(api: Server, lean: list[int], name: str) -> None:
    """Answered by the route, as it answers the same request sent to it directly; counted
    once against the quota (or not at all, where the route refuses before counting)."""
    case = LEFT_TO_THE_ROUTE[name]
    ctx = await context(api)
    answers = []
    for content_type in (LEAN, ROUTE) if case.compare else (LEAN,):
        before = await remaining(api.client, ctx.sender)
        headers, content = case.build(ctx, content_type)
        response = await post(api.client, headers, content, chunked=case.chunked)
        counted = "ratelimit" in response.headers
        if counted:
            assert rate_limit(response)[3] == before - 1
        assert await remaining(api.client, ctx.sender) == before - 1 - counted
        answers.append(response)
    assert lean == [], "the lean path answered"
    first = answers[0]
    if case.code is None:
        assert first.status_code == case.status, first.text
        assert first.json()["object"] == "transfer"
        assert first.json()["from"]["wallet_id"] == ctx.sender.wallet_id
    else:
        problem = assert_problem(first, case.status, case.code, case=name)
        if case.loc is not None:
            assert [e["loc"] for e in problem["errors"]] == [case.loc], problem
    if case.compare:
        assert_alike(*answers)
    moved = AMOUNT * len(answers) if case.status == 201 else 0
    assert await balance(api.client, ctx.sender) == funds(FUNDS - moved)
    assert await balance(api.client, ctx.recipient) == funds(moved)
    assert await balance(api.client, ctx.other) == funds(FUNDS)


async def test_the_first_of_two_keys_is_the_requests_key(api: Server, lean: list[int]) -> None:
    sender, recipient = await funded(api)
    body = dumps({"to": recipient.handle, "amount": AMOUNT, "currency": "INR"})
    first_key = uuid.uuid4().hex
    headers = [*transfer_headers(sender, LEAN, first_key), ("Idempotency-Key", "second")]
    first = await post(api.client, headers, body)
    assert first.status_code == 201, first.text
    assert lean == []
    replay = await post(api.client, transfer_headers(sender, LEAN, first_key), body)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    fresh = await post(api.client, transfer_headers(sender, LEAN, "second"), body)
    assert fresh.status_code == 201
    assert "idempotent-replayed" not in fresh.headers
    assert lean == [201, 201]
    assert await balance(api.client, sender) == funds(FUNDS - 2 * AMOUNT)


async def test_a_freshly_issued_token(api: Server) -> None:
    """A token this process has not verified yet works on either path, alike."""
    sender, recipient = await funded(api)
    body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
    answers = {}
    for via in VIA:
        login = await api.client.post(
            "/v1/auth/login", json={"email": sender.email, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        assert token not in tokens._verified
        fresh = dataclasses.replace(sender, access_token=token)
        answers[via] = await transfer(api.client, fresh, body, via=via)
        assert answers[via].status_code == 201, answers[via].text
    assert_alike(answers["lean"], answers["route"])
    assert await balance(api.client, sender) == funds(FUNDS - 2 * AMOUNT)
    assert await balance(api.client, recipient) == funds(2 * AMOUNT)


@dataclass
class Outage:
    """`settle` fails unexpectedly (on both paths, and for top-ups) while `on`."""

    on: bool = False


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Outage:
    state = Outage()
    settle = deps.settle

    async def failing(*args: Any, **kwargs: Any) -> Any:
        if state.on:
            raise RuntimeError("injected failure")
        return await settle(*args, **kwargs)

    monkeypatch.setattr(fast_path, "settle", failing)
    monkeypatch.setattr(deps, "settle", failing)
    return state


async def test_an_unexpected_failure_is_a_500_problem_on_both_paths(
    api: Server, outage: Outage
) -> None:
    """Whichever layer makes the 500 (the lean path or the application's handler)."""
    sender, recipient = await funded(api)
    body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
    keys = {via: uuid.uuid4().hex for via in VIA}
    outage.on = True
    answers = {
        via: await transfer(api.client, sender, body, via=via, idempotency_key=keys[via])
        for via in VIA
    }
    for answer in answers.values():
        assert_problem(answer, 500, "internal_error")
    assert answers["lean"].json() == answers["route"].json()
    assert await balance(api.client, sender) == funds(FUNDS)
    # The keys were not used up: the retries run once the failure is gone.
    outage.on = False
    for via in VIA:
        retry = await transfer(api.client, sender, body, via=via, idempotency_key=keys[via])
        assert retry.status_code == 201, retry.text
        assert "idempotent-replayed" not in retry.headers
    assert await balance(api.client, sender) == funds(FUNDS - 2 * AMOUNT)


async def test_a_500_is_counted_and_answered_alike_on_both_paths(
    api: Server, outage: Outage
) -> None:
    sender, recipient = await funded(api)
    body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
    before = await responses_counted(api.client)
    outage.on = True
    answers = {via: await transfer(api.client, sender, body, via=via) for via in VIA}
    after = await responses_counted(api.client)
    assert after[("POST", PATH, 500)] - before[("POST", PATH, 500)] == 2
    assert_alike(answers["lean"], answers["route"])


@pytest.fixture(scope="module")
async def payouts(database_url: str, backend: str, bank: Bank) -> AsyncIterator[Server]:
    """An API server that pays out to the bank simulator, with the payouts consumer."""
    settings = payout_settings(database_url, backend, bank.url)
    api, stop = await start_server(settings, backend)
    runtime = await start_runtime(settings, consumers={PAYOUTS.name: PAYOUTS}, relay=False)
    yield api
    await runtime.close()
    await runtime.engine.dispose()
    await stop()


@pytest.mark.parametrize(
    ("address", "outcome", "reason"),
    [
        ("ravi@okbank", "completed", None),
        # The bank has no such account: the payout fails and the debit is refunded.
        ("someone@otherbank", "failed", "account_not_found"),
    ],
    ids=["known_account", "unknown_account"],
)
async def test_an_off_us_address_is_a_payout_started_by_the_route(
    payouts: Server, bank: Bank, lean: list[int], address: str, outcome: str, reason: str | None
) -> None:
    await bank.clear_faults()
    sender, _ = await funded(payouts)
    body = {"to": address, "amount": AMOUNT, "currency": "INR", "note": "rent"}
    answers = {}
    for via in VIA:
        idempotency_key = uuid.uuid4().hex
        answers[via] = await transfer(
            payouts.client, sender, body, via=via, idempotency_key=idempotency_key
        )
        replay = await transfer(
            payouts.client, sender, body, via=via, idempotency_key=idempotency_key
        )
        assert answers[via].status_code == 202, answers[via].text
        assert answers[via].json()["object"] == "payout"
        assert answers[via].json()["destination"] == {"vpa": address}
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == answers[via].json()
    assert lean == []
    assert_alike(answers["lean"], answers["route"])
    for answer in answers.values():
        ended = await wait_until_ended(payouts, sender, answer.json()["id"])
        assert (ended["status"], ended["failure_reason"]) == (outcome, reason), ended
    paid = 2 * AMOUNT if outcome == "completed" else 0
    assert await balance(payouts.client, sender) == funds(FUNDS - paid)


@pytest.fixture(scope="module")
async def limited(server: Server) -> AsyncIterator[Server]:
    """Low limits; each test has counters of its own (fresh users)."""
    running, stop = await start_like(
        server, rate_limit_requests=LOW_LIMIT, rate_limit_window_s=WINDOW_S
    )
    yield running
    await stop()


class TestRateLimits:
    async def test_one_quota_for_both_paths(
        self, limited: Server, api: Server, lean: list[int]
    ) -> None:
        """Alternating paths, each request counts once; over the limit both refuse alike,
        with the headers and Retry-After, and move nothing."""
        sender, recipient = await funded(api)
        body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
        vias = ["lean", "route", "lean", "route", "lean"]
        for via, left in zip(vias, range(LOW_LIMIT - 1, -1, -1), strict=True):
            response = await transfer(limited.client, sender, body, via=via)
            assert response.status_code == 201, response.text
            assert rate_limit(response)[:4] == ("default", LOW_LIMIT, WINDOW_S, left)
        refused = {}
        refused_key = uuid.uuid4().hex
        for via in VIA:
            refused[via] = await transfer(
                limited.client, sender, body, via=via, idempotency_key=refused_key
            )
            retry_after = assert_refused(
                refused[via], "rate_limited", "default", LOW_LIMIT, WINDOW_S
            )
            assert refused[via].json()["detail"] == f"too many requests; retry in {retry_after} s"
        assert lean == [201, 201, 201, 429]
        assert_alike(refused["lean"], refused["route"])
        moved = LOW_LIMIT * AMOUNT
        assert await balance(api.client, sender) == funds(FUNDS - moved)
        assert await balance(api.client, recipient) == funds(moved)
        # The refused request did not use up its key: it runs where there is quota.
        later = await transfer(api.client, sender, body, via="lean", idempotency_key=refused_key)
        assert later.status_code == 201, later.text
        assert "idempotent-replayed" not in later.headers

    async def test_requests_left_to_the_route_count_once(
        self, limited: Server, api: Server, lean: list[int]
    ) -> None:
        ctx = await context(api)
        sends: list[Callable[[], tuple[Headers, bytes]]] = [
            lambda: (ctx.headers(LEAN), dumps(ctx.body())),
            lambda: (ctx.headers(LEAN), dumps(ctx.body(amount=10.5))),
            lambda: (ctx.headers(LEAN, keys=[]), dumps(ctx.body())),
            lambda: (ctx.headers(ROUTE), dumps(ctx.body())),
            lambda: (ctx.headers(LEAN), dumps(ctx.body(surprise=1))),
        ]
        statuses = []
        for send, left in zip(sends, range(LOW_LIMIT - 1, -1, -1), strict=True):
            response = await post(limited.client, *send())
            statuses.append(response.status_code)
            assert rate_limit(response)[3] == left, response.headers
        assert statuses == [201, 422, 400, 201, 422]
        # Over the limit, what the lean path would leave to the route is refused there.
        for send in sends:
            assert_refused(
                await post(limited.client, *send()), "rate_limited", "default", LOW_LIMIT, WINDOW_S
            )
        assert lean == [201, 429]
        assert await balance(api.client, ctx.sender) == funds(FUNDS - 2 * AMOUNT)


METRIC = re.compile(
    r'payflow_http_responses_total\{method="(\w+)",route="([^"]*)",status="(\d+)"\} (\d+)'
)


async def responses_counted(client: httpx.AsyncClient) -> Counter[tuple[str, str, int]]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    found: Counter[tuple[str, str, int]] = Counter()
    for line in response.text.splitlines():
        if match := METRIC.fullmatch(line):
            found[(match[1], match[2], int(match[3]))] = int(match[4])
    return found


def _posts(counts: Counter[tuple[str, str, int]]) -> Counter[tuple[str, str, int]]:
    return Counter({k: v for k, v in counts.items() if k[0] == "POST"})


class TestMetrics:
    async def test_lean_answers_are_counted_under_the_route(
        self, api: Server, lean: list[int]
    ) -> None:
        sender, recipient = await funded(api)
        body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
        idempotency_key = uuid.uuid4().hex
        before = await responses_counted(api.client)
        for via in VIA:
            assert (await transfer(api.client, sender, body, via=via)).status_code == 201
        replay = [
            await transfer(api.client, sender, body, via="lean", idempotency_key=idempotency_key)
            for _ in range(2)
        ]
        assert [r.status_code for r in replay] == [201, 201]
        lost = {**body, "to": f"{uuid.uuid4().hex[:12]}@payflow"}
        assert (await transfer(api.client, sender, lost, via="lean")).status_code == 404
        myself = {**body, "to": sender.handle}
        assert (await transfer(api.client, sender, myself, via="lean")).status_code == 422
        invalid = {**body, "amount": 1.5}
        assert (await transfer(api.client, sender, invalid, via="lean")).status_code == 422
        after = await responses_counted(api.client)
        assert lean == [201, 201, 201, 404, 422]
        # Every POST answered meanwhile, counted once, under the route's template.
        delta = _posts(after)
        delta.subtract(_posts(before))
        assert +delta == Counter(
            {("POST", PATH, 201): 4, ("POST", PATH, 404): 1, ("POST", PATH, 422): 2}
        )

    async def test_a_lean_429_is_counted(self, limited: Server, api: Server) -> None:
        sender, recipient = await funded(api)
        body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
        before = await responses_counted(limited.client)
        for _ in range(LOW_LIMIT + 2):
            await transfer(limited.client, sender, body, via="lean")
        after = await responses_counted(limited.client)
        assert after[("POST", PATH, 201)] - before[("POST", PATH, 201)] == LOW_LIMIT
        assert after[("POST", PATH, 429)] - before[("POST", PATH, 429)] == 2


class TestConcurrency:
    async def test_duplicates_through_the_lean_path_have_one_effect(
        self, api: Server, lean: list[int]
    ) -> None:
        case = await transfer_case(api)
        responses = await race([api.client], case, uuid.uuid4().hex, 20)
        assert_one_effect(responses)
        await assert_moved_once(api, case)
        assert len(lean) == 20

    async def test_duplicates_through_both_paths_have_one_effect(
        self, api: Server, lean: list[int]
    ) -> None:
        case = await transfer_case(api)
        assert case.body is not None
        idempotency_key = uuid.uuid4().hex
        responses = await asyncio.gather(
            *(
                transfer(
                    api.client,
                    case.actor,
                    case.body,
                    via="lean" if i % 2 else "route",
                    idempotency_key=idempotency_key,
                )
                for i in range(20)
            )
        )
        assert_one_effect(list(responses))
        await assert_moved_once(api, case)
        assert len(lean) == 10

    async def test_many_transfers_at_once_never_overdraw(
        self, api: Server, lean: list[int]
    ) -> None:
        sender, recipient = await funded(api, 10 * AMOUNT)
        body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
        responses = await asyncio.gather(
            *(transfer(api.client, sender, body, via="lean") for _ in range(20))
        )
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {201: 10, 422: 10}, [r.text for r in responses]
        for response in responses:
            if response.status_code == 422:
                assert_problem(response, 422, "insufficient_funds")
        assert len(lean) == 20
        assert await balance(api.client, sender) == EMPTY
        assert await balance(api.client, recipient) == funds(10 * AMOUNT)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """What the lean path's stand-in transport handed to the server's real one."""
    written: list[bytes] = []

    class Recording(fast_path._HeadWithBody):
        def __init__(self, transport: Any) -> None:
            super().__init__(_Spy(transport, written))

    monkeypatch.setattr(fast_path, "_HeadWithBody", Recording)
    return written


@dataclass
class _Spy:
    transport: Any
    written: list[bytes]

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.transport.write(data)


async def test_a_lean_response_is_written_in_one_piece(
    api: Server, lean: list[int], writes: list[bytes]
) -> None:
    """uvicorn writes a response's head and body separately; the lean path's reach the
    socket as one write (fails if uvicorn stops writing through the cycle's transport)."""
    sender, recipient = await funded(api)
    body = {"to": recipient.handle, "amount": AMOUNT, "currency": "INR"}
    answer = await transfer(api.client, sender, body, via="lean")
    refused = await transfer(api.client, sender, {**body, "amount": FUNDS * 10}, via="lean")
    assert lean == [201, 422]
    assert answer.status_code == 201, answer.text
    assert_problem(refused, 422, "insufficient_funds")
    assert len(writes) == 2
    for written, response in zip(writes, (answer, refused), strict=True):
        head, _, payload = written.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {response.status_code} ".encode())
        assert payload == response.content
    assert await balance(api.client, sender) == funds(FUNDS - AMOUNT)
