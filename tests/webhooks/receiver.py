"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that verifies every
delivery with the `standardwebhooks` library (independent of PayFlow's signing code) and
de-duplicates on `webhook-id`, as a careful receiver in production would.

    receiver = Receiver(secrets=[secret])
    await receiver.start()            # or start(port=...) to come up on a chosen port
    ... receiver.url ...
    receiver.plan(500, 500)           # answer the next two requests 500, then 200 again
    await receiver.wait_for(lambda r: msg_id in r.messages)
    await receiver.stop()

`messages` maps each `webhook-id` to the payload the receiver accepted first; `requests`
logs every request; `duplicates` counts accepted repeats of an id already accepted.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
BODY_BYTES_MAX = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Answer:
    """How to answer one request: a status, after `delay_s` (longer than PayFlow's
    timeout makes the attempt time out)."""

    status: int = 200
    delay_s: float = 0.0


@dataclass
class Request:
    """One request as received: headers, body, and which of the receiver's secrets
    verified it (by index; empty: none did)."""

    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    verified_by: list[int]
    status: int

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """The receiving end; `secrets` are those it accepts (a rotation: old and new)."""

    secrets: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    messages: dict[str, Any] = field(default_factory=dict)
    duplicates: int = 0
    answers: list[Answer] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def plan(self, *answers: int | Answer) -> None:
        """Answer the next requests so (a status, or an `Answer`); then 200 again."""
        self.answers.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def verifies(self, request: Request, secret: str) -> bool:
        """True when `secret` verifies `request`'s signature (standardwebhooks)."""
        try:
            Webhook(secret).verify(request.body, request.headers)
        except WebhookVerificationError:
            return False
        return True

    def unverified(self) -> list[Request]:
        return [r for r in self.requests if not r.verified_by]

    def accepted_ids(self) -> list[str]:
        """The webhook-ids of every request answered 2xx, repeats included."""
        return [r.webhook_id for r in self.requests if 200 <= r.status < 300]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                pass
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > BODY_BYTES_MAX:
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request = Request(time.monotonic(), scope["path"], headers, body, [], 0)
        request.verified_by = [i for i, s in enumerate(self.secrets) if self.verifies(request, s)]
        answer = self.answers.pop(0) if self.answers else Answer()
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        status = answer.status if request.verified_by else 401
        request.status = status
        self.requests.append(request)
        if 200 <= status < 300:
            if request.webhook_id in self.messages:
                self.duplicates += 1
            else:
                self.messages[request.webhook_id] = request.json()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok" if status < 300 else b"nope"})

    async def start(self, port: int | None = None) -> Receiver:
        """Listen on 127.0.0.1 (`port`, or the one used before, or any free one)."""
        self.port = port or self.port or free_port()
        config = uvicorn.Config(
            self,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the receiver did not start")
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None

    async def wait_for(self, condition: Callable[[Receiver], bool], timeout_s: float = 15) -> None:
        """Wait until `condition(self)` holds; fail the test if it does not in time."""
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: condition not met in {timeout_s} s")
            await asyncio.sleep(0.02)
