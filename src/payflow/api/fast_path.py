"""The lean path for `POST /v1/transfers`, the API's busiest route.

FastAPI's per-request machinery (routing, the dependency graph, the middleware layers)
costs more CPU than the money logic of a transfer. This ASGI middleware answers the
common case itself with the very same functions the route uses — `authenticate`,
`TransferBody`, `check_key`, `hit_route_limit`, `settle` with `p2p_plan` — and hands
every request it cannot answer completely to the FastAPI app unchanged, with its body
replayed: a token or API key that does not authenticate, a body the model refuses, a missing
or invalid Idempotency-Key, a content type other than `application/json`, a body over
the limit, an off-us address. Those requests are refused or served by the route, so
both paths answer alike, and the route stays what the OpenAPI document describes.
Nothing with a side effect (the rate-limit hit, the key's claim) runs before the
decision to take the request, so no request is counted twice.

It sits outside Starlette's error middleware (`PayFlowAPI.build_middleware_stack`), so
it holds the server's own `send` and writes each response's head and body in one piece;
it answers its own unexpected errors as the application's handler does.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payflow.api.deps import authenticate, hit_route_limit, settle
from payflow.api.idempotency import check_key, fingerprint
from payflow.api.problems import PROBLEM_CONTENT_TYPE
from payflow.api.replies import Reply
from payflow.api.state import AppState
from payflow.errors import PayFlowError
from payflow.payouts.domain import is_off_us
from payflow.transfers.api import p2p_plan
from payflow.transfers.api import router as transfers_router
from payflow.transfers.schemas import TransferBody

ROUTE = "/v1/transfers"
_JSON = b"application/json"
_REPLAYED = (b"idempotent-replayed", b"true")

log = logging.getLogger(__name__)


class TransferFastPath:
    """Serves well-formed `POST /v1/transfers` requests; everything else goes to `app`."""

    def __init__(self, app: ASGIApp, *, bytes_max: int) -> None:
        self.app = app
        self.bytes_max = bytes_max
        self._served: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != ROUTE:
            await self.app(scope, receive, send)
            return
        state: AppState | None = getattr(scope["app"].state, "payflow", None)
        headers = _wanted_headers(scope["headers"])
        if state is None or headers is None:
            await self.app(scope, receive, send)
            return
        # The route this path serves, as the router would have set it: the error handler
        # and the metrics name responses by it.
        scope["route"] = self._route()
        messages, body = await self._read_body(receive)
        try:
            taken = await _take(state, headers, body) if body is not None else None
        except Exception:
            # This path runs outside the application's error middleware: answer as its
            # handler for unexpected errors does (logged, a 500 problem). A retry under
            # the same key replays whatever did commit, as it does after the route's 500.
            log.exception("unhandled error on POST %s", ROUTE)
            taken = {}, _internal_error(), False
        if taken is None:
            await self.app(scope, _replaying(messages, receive), send)
            return
        await _answer(state, send, *taken)

    def _route(self) -> Any:
        if self._served is None:
            [self._served] = [
                r
                for r in transfers_router.routes
                if getattr(r, "path", None) == ROUTE and "POST" in getattr(r, "methods", ())
            ]
        return self._served

    async def _read_body(self, receive: Receive) -> tuple[list[Message], bytes | None]:
        """The messages read, and the whole body (None if it is over the limit or the
        client went away: the app then reads on and answers)."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages, None
            size += len(message.get("body", b""))
            if size > self.bytes_max:
                return messages, None
            if not message.get("more_body", False):
                break
        return messages, b"".join(m.get("body", b"") for m in messages)


def _wanted_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """(bearer token, Idempotency-Key) if the request has each once and a JSON body; a
    repeated header is the route's to judge (it reads the first)."""
    token = key = None
    json_body = seen_type = False
    for name, value in raw:
        if name == b"authorization":
            if not value.startswith(b"Bearer ") or token is not None:
                return None
            token = value[7:].decode("latin-1")
        elif name == b"idempotency-key":
            if key is not None:
                return None
            key = value.decode("latin-1")
        elif name == b"content-type":
            if seen_type:
                return None
            seen_type = True
            json_body = value == _JSON
    if token is None or key is None or not json_body:
        return None
    return token, key


Taken = tuple[dict[str, str], Reply | PayFlowError, bool]


async def _take(state: AppState, headers: tuple[str, str], body: bytes) -> Taken | None:
    """Answer the request, or None to leave it to the app (nothing done yet)."""
    token, key = headers
    try:
        principal = await authenticate(state, token)
        transfer = TransferBody.model_validate_json(body)
        key = check_key(key)
    except (PayFlowError, ValidationError):
        return None
    if is_off_us(transfer.to):
        return None
    decision = await hit_route_limit(state, principal, "POST", ROUTE)
    limits = decision.headers()
    if not decision.allowed:
        return limits, _rate_limited(decision.reset_s), False
    digest = fingerprint("POST", ROUTE, transfer.model_dump(mode="json"))
    try:
        reply, replayed = await settle(state, principal, key, digest, p2p_plan(principal, transfer))
    except PayFlowError as error:
        return limits, error, False
    # Anything else propagates to the caller, which answers 500 as the route would.
    return limits, reply, replayed


def _internal_error() -> PayFlowError:
    return PayFlowError("internal_error", "something went wrong on our side", http_status=500)


def _rate_limited(reset_s: int) -> PayFlowError:
    return PayFlowError("rate_limited", f"too many requests; retry in {reset_s} s", http_status=429)


async def _answer(
    state: AppState,
    send: Send,
    limits: dict[str, str],
    outcome: Reply | PayFlowError,
    replayed: bool,
) -> None:
    """The response, as the route and its error handlers would send it."""
    reply = Reply.error(outcome) if isinstance(outcome, PayFlowError) else outcome
    status = reply.status
    encoded = reply.encoded().encode()
    headers = [
        (b"content-length", str(len(encoded)).encode()),
        (b"content-type", PROBLEM_CONTENT_TYPE.encode() if status >= 400 else _JSON),
    ]
    if replayed:
        headers.append(_REPLAYED)
    if status == 503:
        headers.append((b"retry-after", b"1"))
    headers += [(name.lower().encode(), value.encode()) for name, value in limits.items()]
    state.responses[("POST", ROUTE, status)] += 1
    start = {"type": "http.response.start", "status": status, "headers": headers}
    body = {"type": "http.response.body", "body": encoded}
    # uvicorn writes a response's head and its body to the socket separately: two
    # send() calls, two segments for the client to read. Where the server's `send`
    # writes through a transport of its own (uvicorn's protocols), lend it one that
    # holds the head back and writes it with the body.
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        await send(start)
        await send(body)
        return
    cycle.transport = _HeadWithBody(transport)  # type: ignore[union-attr]
    try:
        await send(start)
        await send(body)
    finally:
        cycle.transport = transport  # type: ignore[union-attr]


class _HeadWithBody:
    """A transport that writes the first chunk it is given together with the second."""

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._head is None:
            self._head = bytes(data)
            return
        self._transport.write(self._head + data)
        self._head = b""

    def __getattr__(self, name: str) -> Any:
        # close(), is_closing(), get_extra_info(): the real transport's.
        return getattr(self._transport, name)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """`receive` that first hands out the messages already read."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
