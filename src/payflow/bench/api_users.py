"""The benchmark's users, made through the API itself: register, log in, top up.

Setup is not measured, so it uses httpx for clarity; the timed load uses `http_load`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import httpx

PASSWORD = "bench-password-1"  # noqa: S105  # throwaway users in a throwaway database
# Each transfer moves 1 paisa, so one maximal top-up funds more transfers than any run makes.
TRANSFER_AMOUNT = 1
FUNDING = 10_000_000


@dataclass(frozen=True, slots=True)
class BenchUser:
    handle: str
    access_token: str
    wallet_id: str


def _expect(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code != status:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: expected {status},"
            f" got {response.status_code}: {response.text[:500]}"
        )
    return response


async def _wallet(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, object]:
    wallets = _expect(await client.get("/v1/wallets", headers=headers), 200).json()
    inr = [w for w in wallets if w["currency"] == "INR"]
    if not inr:
        raise RuntimeError(f"no INR wallet among {wallets}")
    wallet: dict[str, object] = inr[0]
    return wallet


async def _create_user(client: httpx.AsyncClient, handle: str, *, funding: int) -> BenchUser:
    email = f"{handle}@bench.example.com"
    register = {"email": email, "password": PASSWORD, "name": f"Bench {handle}", "handle": handle}
    _expect(await client.post("/v1/auth/register", json=register), 201)
    login = {"email": email, "password": PASSWORD}
    token = _expect(await client.post("/v1/auth/login", json=login), 200).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    wallet_id = str((await _wallet(client, headers))["id"])
    if funding:
        topup = await client.post(
            f"/v1/wallets/{wallet_id}/topups",
            json={"amount": funding},
            headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
        )
        _expect(topup, 201)
    return BenchUser(handle, token, wallet_id)


async def _wait_funded(
    client: httpx.AsyncClient, user: BenchUser, funding: int, timeout_s: float
) -> None:
    """A top-up may settle after its 201 (the simulated bank); wait until it has."""
    headers = {"Authorization": f"Bearer {user.access_token}"}
    deadline = time.monotonic() + timeout_s
    while True:
        balance = (await _wallet(client, headers))["balance"]
        assert isinstance(balance, dict)
        if int(balance["available"]) >= funding:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{user.handle}'s top-up not available after {timeout_s} s")
        await asyncio.sleep(0.1)


async def create_users(
    base_url: str,
    handles: list[str],
    *,
    funding: int,
    concurrency: int = 8,
    timeout_s: float = 60.0,
) -> list[BenchUser]:
    """Register, log in and fund one user per handle (at most `concurrency` at a time)."""
    limits = httpx.Limits(max_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)

    async def one(handle: str) -> BenchUser:
        async with gate:
            user = await _create_user(client, handle, funding=funding)
            if funding:
                await _wait_funded(client, user, funding, timeout_s)
            return user

    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        return list(await asyncio.gather(*(one(h) for h in handles)))


async def register_recipients(base_url: str, handles: list[str], *, concurrency: int = 8) -> None:
    """Register users who only receive money (no login, no top-up): the uniform cells
    spread their transfers over them, as payments spread over a real user base."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)

    async def one(handle: str) -> None:
        body = {
            "email": f"{handle}@bench.example.com",
            "password": PASSWORD,
            "name": f"Bench {handle}",
            "handle": handle,
        }
        async with gate:
            _expect(await client.post("/v1/auth/register", json=body), 201)

    async with httpx.AsyncClient(base_url=base_url, timeout=60.0, limits=limits) as client:
        await asyncio.gather(*(one(h) for h in handles))
