"""The load generator's ceiling: the same generator against a responder that does nothing.

The responder answers every request with a canned 201 the size of a transfer, from its own
OS process, so what limits the pair is the generator (or one core of responder). Printing
that ceiling beside the API's rate shows the generator was not what held the API back.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import cast

from payflow.bench.http_load import LoadPlan, LoadResult, build_client, run_in_event_loop, run_load

_BODY = (
    b'{"id":"0190a6f0-0000-7000-8000-000000000000","status":"posted","amount":1,'
    b'"currency":"INR","from":"0190a6f0-0000-7000-8000-000000000001",'
    b'"to":"0190a6f0-0000-7000-8000-000000000002","created_at":"2025-01-01T00:00:00Z"}'
)
_RESPONSE = (
    b"HTTP/1.1 201 Created\r\ndate: Wed, 01 Jan 2025 00:00:00 GMT\r\nserver: uvicorn\r\n"
    b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)
_HEAD_BYTES_MAX = 64 * 1024


class _Responder(asyncio.Protocol):
    """Reads requests (head, then Content-Length bytes of body) and answers each at once."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            head = bytes(self._buffer[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 17)
                length = int(head[at + 17 : stop if stop >= 0 else None])
            if len(self._buffer) < end + 4 + length:
                return
            del self._buffer[: end + 4 + length]
            self._transport.write(_RESPONSE)
        if len(self._buffer) > _HEAD_BYTES_MAX:
            self._transport.close()


async def _serve(port_out: Connection) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Responder, "127.0.0.1", 0, backlog=1024)
    port_out.send(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


def _responder_main(port_out: Connection) -> None:
    run_in_event_loop(lambda: _serve(port_out))


@contextlib.contextmanager
def responder(timeout_s: float = 30.0) -> Iterator[int]:
    """A responder in its own process for the `with` block; yields its port."""
    context = multiprocessing.get_context("spawn")
    port_in, port_out = context.Pipe(duplex=False)
    process = context.Process(target=_responder_main, args=(port_out,), daemon=True)
    process.start()
    try:
        if not port_in.poll(timeout_s):
            raise RuntimeError("the calibration responder did not start")
        yield int(port_in.recv())
    finally:
        process.terminate()
        process.join(timeout_s)
        port_in.close()
        port_out.close()


def calibrate(*, clients: int, seconds: float, token_chars: int = 300) -> LoadResult:
    """The generator's rate with `clients` transfer-shaped requests against the responder."""
    with responder() as port:
        headers = {
            "Authorization": "Bearer " + "x" * token_chars,
            "Content-Type": "application/json",
        }
        bodies = [b'{"to":"bench_%06d","amount":1,"currency":"INR"}' % i for i in range(clients)]
        plan = LoadPlan(
            host="127.0.0.1",
            port=port,
            clients=tuple(
                build_client(
                    "POST",
                    "/v1/transfers",
                    host="127.0.0.1",
                    port=port,
                    headers=headers,
                    bodies=bodies,
                    key_prefix=f"calibration-{i}-",
                )
                for i in range(clients)
            ),
            start_at=time.time() + 2.5,
            seconds=seconds,
            expected_status=201,
        )
        return run_load(plan)
