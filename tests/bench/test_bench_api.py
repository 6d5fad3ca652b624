"""`payflow bench api`: the load generator against a real HTTP server, then the whole bench.

The generator's parser is tested on bytes, its client against uvicorn (h11, a strict
parser of the requests it sends) serving a small ASGI app that records what it saw, and
the whole benchmark once, briefly, against `payflow api` on local PostgreSQL and SQLite.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import uvicorn
from rich.console import Console

from payflow.bench.api import run_api_bench
from payflow.bench.api_report import print_report, verdicts
from payflow.bench.api_responder import calibrate
from payflow.bench.http_load import (
    TRANSPORT_ERROR,
    LoadPlan,
    LoadResult,
    build_client,
    generate,
    read_response,
)
from tests.services import PG_ADMIN_URL, ensure_postgresql


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


class TestReadResponse:
    async def test_content_length_body_and_keep_alive(self) -> None:
        reader = _reader(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
            b'Content-Length: 11\r\n\r\n{"ok":true}HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi'
        )
        assert await read_response(reader) == (201, b'{"ok":true}', True)
        # The next response on the same connection starts right after the body.
        assert await read_response(reader) == (200, b"hi", True)

    async def test_chunked_body_with_trailers(self) -> None:
        reader = _reader(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        assert await read_response(reader) == (200, b"Wikipedia ", True)

    async def test_connection_close_and_http_1_0_end_keep_alive(self) -> None:
        closing = _reader(
            b"HTTP/1.1 409 Conflict\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        )
        assert await read_response(closing) == (409, b"", False)
        old = _reader(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx")
        assert await read_response(old) == (200, b"x", False)

    async def test_body_without_length_runs_to_eof(self) -> None:
        reader = _reader(b"HTTP/1.1 500 Internal Server Error\r\n\r\nboom")
        assert await read_response(reader) == (500, b"boom", False)

    async def test_no_content_has_no_body(self) -> None:
        assert await read_response(_reader(b"HTTP/1.1 204 No Content\r\n\r\n")) == (204, b"", True)

    async def test_truncated_body_raises(self) -> None:
        reader = _reader(b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nabc")
        with pytest.raises(asyncio.IncompleteReadError):
            await read_response(reader)

    async def test_huge_body_is_refused(self) -> None:
        reader = _reader(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n")
        with pytest.raises(ValueError, match="999999999"):
            await read_response(reader)

    async def test_garbage_status_line_raises(self) -> None:
        with pytest.raises(ValueError, match="invalid literal"):
            await read_response(_reader(b"SSH-2.0-OpenSSH\r\n\r\n"))


class Recorder:
    """An ASGI app that answers by path and remembers connections, keys and bodies."""

    def __init__(self) -> None:
        self.connections: set[tuple[str, int]] = set()
        self.keys: list[bytes | None] = []
        self.bodies: list[bytes] = []
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.requests += 1
        self.connections.add(tuple(scope["client"]))
        self.keys.append(dict(scope["headers"]).get(b"idempotency-key"))
        self.bodies.append(body)
        await getattr(self, "_" + scope["path"].strip("/").replace("-", "_"))(send)

    async def _respond(
        self, send: Any, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        length = [(b"content-length", str(len(body)).encode())]
        await send(
            {"type": "http.response.start", "status": status, "headers": [*length, *headers]}
        )
        await send({"type": "http.response.body", "body": body})

    async def _created(self, send: Any) -> None:
        await self._respond(send, 201, b'{"id":"t1","status":"posted"}')

    async def _slow(self, send: Any) -> None:
        await asyncio.sleep(0.02)
        await self._created(send)

    async def _every_other_conflicts(self, send: Any) -> None:
        if self.requests % 2:
            await self._respond(send, 409, b'{"code":"insufficient_funds"}')
        else:
            await self._created(send)

    async def _close(self, send: Any) -> None:
        await self._respond(send, 201, b"{}", ((b"connection", b"close"),))

    async def _chunked(self, send: Any) -> None:
        # No content-length: uvicorn sends the body in chunks.
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b'{"a":', "more_body": True})
        await send({"type": "http.response.body", "body": b"1}"})

    async def _hang(self, send: Any) -> None:
        await asyncio.sleep(0.5)
        await self._created(send)


@pytest.fixture
async def stand_in() -> AsyncIterator[tuple[Recorder, int]]:
    """uvicorn serving a fresh `Recorder` on a free port, on the test's own loop."""
    app = Recorder()
    sock = socket.socket()
    # asyncio sets TCP_NODELAY only on sockets whose proto is TCP, which a bare socket's
    # is not; without it the response's second write waits out the client's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        http="h11",
        ws="none",
        lifespan="off",
        log_level="critical",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started
    yield app, sock.getsockname()[1]
    server.should_exit = True
    await task
    sock.close()


def _plan(
    port: int,
    path: str,
    *,
    clients: int = 3,
    seconds: float = 0.4,
    bodies: list[bytes] | None = None,
    request_timeout_s: float = 5.0,
) -> LoadPlan:
    return LoadPlan(
        host="127.0.0.1",
        port=port,
        clients=tuple(
            build_client(
                "POST",
                path,
                host="127.0.0.1",
                port=port,
                headers={"Content-Type": "application/json"},
                bodies=bodies or [b'{"to":"a"}', b'{"to":"bb"}'],
                key_prefix=f"test-{i}-",
            )
            for i in range(clients)
        ),
        start_at=time.time() + 0.2,
        seconds=seconds,
        expected_status=201,
        request_timeout_s=request_timeout_s,
    )


class TestGenerate:
    async def test_keep_alive_one_connection_per_client_and_unique_keys(
        self, stand_in: tuple[Recorder, int]
    ) -> None:
        app, port = stand_in
        result = await generate(_plan(port, "/created"))
        assert result.errors == 0
        assert result.completed > 10
        assert result.requests == app.requests
        assert len(app.connections) == 3
        assert None not in app.keys
        assert len(set(app.keys)) == len(app.keys)
        # Every body is one of the plan's, whole (Content-Length matched it).
        assert set(app.bodies) <= {b'{"to":"a"}', b'{"to":"bb"}'}
        assert result.statuses == {201: result.requests}

    async def test_latency_is_recorded_per_measured_request(
        self, stand_in: tuple[Recorder, int]
    ) -> None:
        _, port = stand_in
        result = await generate(_plan(port, "/slow", clients=2))
        assert len(result.latencies_ns) == result.completed > 0
        assert 20 <= result.percentile_ms(0.5) < 500
        assert result.percentile_ms(0.5) <= result.percentile_ms(0.99)
        # Warm-up and the tail are sent but not measured.
        assert result.requests > result.completed
        assert result.seconds == pytest.approx(0.4, abs=0.05)
        assert result.rate_per_s == pytest.approx(result.completed / result.seconds)

    async def test_error_statuses_are_counted_and_sampled(
        self, stand_in: tuple[Recorder, int]
    ) -> None:
        _, port = stand_in
        result = await generate(_plan(port, "/every-other-conflicts", clients=2))
        assert result.errors == result.statuses[409] > 0
        assert result.statuses[201] > 0
        assert result.errors + result.statuses[201] == result.requests
        assert 0.3 < result.error_fraction < 0.7
        assert result.error_samples[0] == '409: {"code":"insufficient_funds"}'
        assert len(result.error_samples) == 5

    async def test_connection_close_makes_the_client_reconnect(
        self, stand_in: tuple[Recorder, int]
    ) -> None:
        app, port = stand_in
        result = await generate(_plan(port, "/close", clients=2, seconds=0.2))
        assert result.errors == 0
        assert len(app.connections) == result.requests > 2

    async def test_chunked_responses(self, stand_in: tuple[Recorder, int]) -> None:
        _, port = stand_in
        result = await generate(_plan(port, "/chunked", clients=1, seconds=0.2))
        assert result.errors == 0
        assert result.completed > 0

    async def test_a_request_timeout_is_a_transport_error(
        self, stand_in: tuple[Recorder, int]
    ) -> None:
        _, port = stand_in
        plan = _plan(port, "/hang", clients=1, seconds=0.2, request_timeout_s=0.1)
        result = await generate(plan)
        assert result.errors == result.statuses[TRANSPORT_ERROR] == result.requests > 0
        assert result.error_samples[0] == "0: TimeoutError: "

    async def test_no_server_fails_at_once(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # bound, not listening: connections are refused
            with pytest.raises(ConnectionRefusedError):
                await generate(_plan(port, "/created"))


class TestCalibration:
    def test_the_generator_in_its_own_process_against_the_responder(self) -> None:
        result = calibrate(clients=4, seconds=0.5)
        assert result.errors == 0
        assert result.rate_per_s > 1000
        assert 0 < result.cpu_us_per_request < 1000
        assert 0 < result.cpu_share <= 1.2


def _cell(processes: int, distribution: str, rate: float, **extra: Any) -> dict[str, Any]:
    return {
        "database": "postgresql",
        "server_processes": processes,
        "distribution": distribution,
        "transfers_per_s": rate,
        "ratio_to_pgbench": rate / 1000,
        "p99_ms": 50.0,
        "failed": False,
        **extra,
    }


class TestVerdicts:
    def test_targets_per_process_count(self) -> None:
        results = [
            _cell(1, "uniform", 1200),
            _cell(1, "hot", 500),
            _cell(2, "uniform", 1500, p99_ms=120.0),
            _cell(2, "hot", 900),
            {**_cell(1, "uniform", 9000), "database": "sqlite"},
        ]
        found = [
            (v["server_processes"], v["target"].split()[0], v["ok"]) for v in verdicts(results)
        ]
        assert found == [
            (1, "uniform", True),
            (1, "hot", False),  # 500 / 1200 < 0.5
            (2, "uniform", False),  # p99 above 100 ms
            (2, "hot", True),
        ]

    def test_a_failed_cell_fails_its_targets(self) -> None:
        results = [_cell(1, "uniform", 5000, failed=True), _cell(1, "hot", 5000)]
        assert [v["ok"] for v in verdicts(results)] == [False, False]


class TestPrintReport:
    def test_a_failed_cell_is_loud_and_shows_the_server_log(self) -> None:
        peaks = [
            {"pid": 1, "role": "main", "peak_rss_mib": 60.0},
            {"pid": 2, "role": "helper", "peak_rss_mib": 12.0},
            {"pid": 3, "role": "worker", "peak_rss_mib": 101.0},
            {"pid": 4, "role": "worker", "peak_rss_mib": 99.4},
        ]
        failed = _cell(
            2,
            "uniform",
            10,
            p50_ms=1.0,
            errors=50,
            requests=100,
            error_statuses={"503": 50},
            error_samples=['503: {"code":"overloaded"}'],
            failed=True,
            server_log_tail="ERROR: worker 3 died",
            loadgen_cpu_share=0.01,
            server_cpu_share=1.5,
            postgres_cpu_share=0.2,
            other_cpu_share=0.29,
            machine_cpu_busy=2.0,
            peak_rss_mib=peaks,
        )
        report = {
            "pgbench_tps": 1000.0,
            "pgbench_runs_tps": [900.0, 1100.0],
            "pgbench": {"scale": 1, "clients": 4, "seconds": 1},
            "clients": 4,
            "seconds": 1.0,
            "machine": {"cpus": 2},
            "calibration": {"requests_per_s": 20000.0, "loadgen_cpu_us_per_request": 30.0},
            "results": [failed],
            "verdicts": verdicts([failed]),
            "loadgen": {
                "not_the_bottleneck": True,
                "loadgen_cpu_share_max": 0.01,
                "ceiling_to_fastest_cell": 2000.0,
            },
        }
        output = io.StringIO()
        print_report(Console(file=output, width=250), report)
        text = output.getvalue()
        assert "50 errors of 100 requests {'503': 50} — CELL FAILED (> 1%)" in text
        assert '503: {"code":"overloaded"}' in text
        assert "ERROR: worker 3 died" in text
        assert "60; 101, 99" in text  # main; workers (the helper is in the JSON only)
        assert "1.50/0.20/0.01/0.29" in text
        assert "Other work on the machine used up to 0.29 cores" in text
        assert "FAIL uniform ≥ 1.0× pgbench" in text
        # The heading wraps to the table's width.
        assert "1,000 tps (2 runs, 900–1,100)" in " ".join(text.split())


def _bench_databases() -> list[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        rows = admin.execute("SELECT datname FROM pg_database").fetchall()
    return [r[0] for r in rows if f"_{os.getpid()}_" in r[0] and "bench" in r[0]]


class TestRunApiBench:
    def test_a_short_run_on_postgresql_and_sqlite(self) -> None:
        ensure_postgresql()
        output = io.StringIO()
        report = run_api_bench(
            console=Console(file=output, width=200),
            server_url=PG_ADMIN_URL,
            clients=4,
            server_processes=[1],
            seconds=1,
            pgbench_scale=1,
            hot=True,
            embedded=True,
        )
        json.dumps(report)  # serialisable as the --json output
        # pgbench before the first cell and after every cell; each cell against the
        # mean of the runs on either side of it.
        runs = report["pgbench_runs_tps"]
        assert len(runs) == len(report["results"]) + 1
        assert all(tps > 0 for tps in runs)
        assert report["pgbench_tps"] == pytest.approx(sum(runs) / len(runs), abs=0.1)
        for i, r in enumerate(report["results"]):
            assert r["pgbench_tps"] == pytest.approx((runs[i] + runs[i + 1]) / 2, abs=0.1)
            ratio = r["transfers_per_s"] / r["pgbench_tps"]
            assert r["ratio_to_pgbench"] == pytest.approx(ratio, abs=0.01)
        cells = [
            (r["database"], r["server_processes"], r["distribution"]) for r in report["results"]
        ]
        assert cells == [
            ("postgresql", 1, "uniform"),
            ("postgresql", 1, "hot"),
            ("sqlite", 1, "uniform"),
        ]
        for r in report["results"]:
            assert r["transfers_per_s"] > 0, r
            assert r["errors"] == 0, r
            assert not r["failed"]
            assert 0 < r["p50_ms"] <= r["p99_ms"]
            assert r["peak_rss_mib"][0]["role"] == "main"
            assert all(p["peak_rss_mib"] > 10 for p in r["peak_rss_mib"])
            assert 0 < r["loadgen_cpu_share"] < 1.5
            assert r["server_cpu_share"] > 0
            assert r["postgres_cpu_share"] > 0 or r["database"] == "sqlite"
        assert [v["target"].split()[0] for v in report["verdicts"]] == ["uniform", "hot"]
        assert report["calibration"]["requests_per_s"] > 0
        assert set(report["loadgen"]) == {
            "not_the_bottleneck",
            "loadgen_cpu_share_max",
            "ceiling_to_fastest_cell",
        }
        text = output.getvalue()
        assert "pgbench tpcb-like" in text
        assert "rate limits raised" in text
        assert "Load generator" in text
        assert _bench_databases() == []


def test_loadresult_empty_is_zero() -> None:
    empty = LoadResult()
    assert (empty.rate_per_s, empty.percentile_ms(0.99), empty.cpu_us_per_request) == (0, 0, 0)
