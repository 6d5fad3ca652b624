"""The partner-bank simulator for tests: one per backend for the whole run (its own
store), shared by every package whose workers pay out — payouts, settlement — so that
however many runtimes a run has started, they all call the same bank."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from payflow.banksim.config import BankSimConfig
from payflow.banksim.server import serve as serve_bank
from tests.services import free_port

CURRENCY = "INR"
# The bank gives up waiting on us after this; the client after `bank_timeout_s`.
TIMEOUT_HOLD_S = 1.0


@dataclass
class Bank:
    """The bank simulator: its URL and an admin client (faults, accounts, credits)."""

    url: str
    client: httpx.AsyncClient

    async def fault(self, operation: str, kind: str, *, times: int = 1) -> None:
        response = await self.client.post(
            "/sim/faults", json={"operation": operation, "kind": kind, "times": times}
        )
        assert response.status_code == 201, response.text

    async def clear_faults(self) -> None:
        response = await self.client.delete("/sim/faults")
        assert response.status_code == 204, response.text

    async def credit(self, reference: str) -> dict[str, Any] | None:
        response = await self.client.get(f"/v1/credits/{reference}")
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture(scope="session")
async def bank(tmp_path_factory: pytest.TempPathFactory, backend: str) -> AsyncIterator[Bank]:
    """A bank simulator of this backend's own, no random faults (tests script them)."""
    path: Path = tmp_path_factory.mktemp(f"bank-{backend}") / "bank.db"
    config = BankSimConfig(
        port=free_port(),
        database_url=f"sqlite+aiosqlite:///{path}",
        currency=CURRENCY,
        timeout_hold_s=TIMEOUT_HOLD_S,
        seed=7,
    )
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_bank(config, stop=stop, started=started))
    await asyncio.wait_for(started.wait(), 30)
    url = f"http://127.0.0.1:{config.port}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield Bank(url, client)
    stop.set()
    await task
