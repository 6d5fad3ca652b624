"""Graceful shutdown of a real `payflow api` process: SIGTERM during a burst of transfers.

Requests the server accepted finish with their reply; nothing is half-written: every 201
has its transfer, there is no transfer without a 201, and the ledger audit passes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
from sqlalchemy import func, select

from payflow.db import create_engine
from payflow.transfers.models import transfers
from tests.api.conftest import free_port, register, topup
from tests.conftest import assert_audit_passes


async def _wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
        while time.monotonic() < deadline:
            assert process.poll() is None, "payflow api exited during startup"
            try:
                if (await client.get("/ready")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("payflow api did not become ready")


async def test_sigterm_finishes_accepted_requests(pg_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PAYFLOW_DATABASE_URL": pg_url,
        "PAYFLOW_RATE_LIMIT_REQUESTS": "1000000",
        "PAYFLOW_RATE_LIMIT_AUTH_REQUESTS": "1000000",
        "PAYFLOW_AUDIT_INTERVAL_S": "0",
    }
    # Popen returns at once; the test waits on it only after its HTTP traffic is done.
    process = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "payflow.cli", "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _wait_ready(base_url, process)
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            payer, payee = await register(client), await register(client)
            await topup(client, payer, 1_000_000)
            note = uuid.uuid4().hex[:16]

            async def send() -> int | None:
                try:
                    response = await client.post(
                        "/v1/transfers",
                        json={"to": payee.address, "amount": 1, "currency": "INR", "note": note},
                        headers={**payer.auth, "Idempotency-Key": uuid.uuid4().hex},
                    )
                except httpx.TransportError:
                    return None  # not accepted: the server had stopped listening
                return response.status_code

            burst = [asyncio.create_task(send()) for _ in range(300)]
            await asyncio.sleep(0.15)
            process.send_signal(signal.SIGTERM)
            statuses = await asyncio.gather(*burst)
        _, stderr = process.communicate(timeout=30)
        # uvicorn re-raises SIGTERM after its graceful shutdown, so the exit is by signal;
        # what matters is that it shut down cleanly, which it logs last.
        assert process.returncode in (0, -signal.SIGTERM), stderr.decode()
        assert "Application shutdown complete" in stderr.decode(), stderr.decode()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    succeeded = statuses.count(201)
    assert succeeded > 0, statuses
    assert set(statuses) <= {201, 503, None}, statuses
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            written = await conn.scalar(
                select(func.count()).select_from(transfers).where(transfers.c.note == note)
            )
        assert written == succeeded
        await assert_audit_passes(engine)
    finally:
        await engine.dispose()
