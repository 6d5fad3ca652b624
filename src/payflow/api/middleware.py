"""ASGI middleware: a bound on request bodies, and rate-limit headers on every response."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from payflow.api.problems import PROBLEM_CONTENT_TYPE, problem


class _TooLarge(Exception):
    pass


async def _send_problem(send: Send, code: str, detail: str, status: int) -> None:
    body = json.dumps(problem(code, detail, status)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse bodies over `bytes_max` (413) before the application reads them whole."""

    def __init__(self, app: ASGIApp, *, bytes_max: int) -> None:
        self.app = app
        self.bytes_max = bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the request body is larger than {self.bytes_max} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.bytes_max):
                await _send_problem(send, "body_too_large", detail, 413)
                return
        received = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.bytes_max:
                    # Answer here: the framework may catch the exception below and make
                    # its own (400) response of it, which `guarded_send` then drops.
                    if not started and not refused:
                        refused = True
                        await _send_problem(send, "body_too_large", detail, 413)
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        with contextlib.suppress(_TooLarge):
            await self.app(scope, limited_receive, guarded_send)


class ResponseHeaders:
    """Adds the rate-limit headers a dependency decided (request.state) to the response,
    and counts responses by route template and status for /metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")
                app_state = getattr(scope["app"].state, "payflow", None)
                if app_state is not None:
                    app_state.responses[(scope["method"], route, message["status"])] += 1
                state: dict[str, Any] = scope.get("state") or {}
                extra = state.get("rate_limit_headers")
                if extra:
                    headers = list(message.get("headers", []))
                    present = {name.lower() for name, _ in headers}
                    headers += [
                        (k.lower().encode(), v.encode())
                        for k, v in extra.items()
                        if k.lower().encode() not in present
                    ]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
