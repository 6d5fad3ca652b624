"""Demo data for `payflow up --demo`, loaded through the API itself (so it exercises the
real paths), and idempotent: a second run finds the users and replays the money moves."""

from __future__ import annotations

from typing import Any

import httpx
from rich.console import Console

DEMO_PASSWORD = "payflow-demo-1"  # noqa: S105 - printed for people trying PayFlow locally
USERS = [
    ("asha", "Asha Rao", "customer", 500_000),
    ("ravi", "Ravi Kumar", "customer", 200_000),
    ("meera", "Meera Iyer", "customer", 100_000),
    ("chaishop", "Chai Shop", "merchant", 0),
]
TRANSFERS = [
    ("asha", "ravi@payflow", 25_000, "dinner"),
    ("ravi", "meera", 5_000, "movie tickets"),
    ("meera", "chaishop@payflow", 1_500, "two masala chai"),
]


async def _login(client: httpx.AsyncClient, handle: str, name: str, role: str) -> dict[str, str]:
    email = f"{handle}@demo.payflow.local"
    registered = await client.post(
        "/v1/auth/register",
        json={
            "email": email,
            "password": DEMO_PASSWORD,
            "name": name,
            "handle": handle,
            "role": role,
        },
    )
    if registered.status_code not in (201, 409):
        registered.raise_for_status()
    login = await client.post("/v1/auth/login", json={"email": email, "password": DEMO_PASSWORD})
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _merchant_money(client: httpx.AsyncClient, auth: dict[str, dict[str, str]]) -> None:
    """Chai Shop as a merchant settled to its bank every two minutes, a card-style payment
    from Asha with a partial refund, and a payout from Ravi to his account at OK Bank."""
    shop = auth["chaishop"]
    profile = await client.post(
        "/v1/merchants",
        json={
            "business_name": "Chai Shop",
            "settlement_destination": {
                "bank_code": "OKBK0000001",
                "account_number": "100000000004",
            },
            "settlement_interval_s": 120,
        },
        headers=shop,
    )
    if profile.status_code not in (201, 409):
        profile.raise_for_status()
    merchant = (await client.get("/v1/merchants/me", headers=shop)).json()
    payment = await client.post(
        "/v1/payments",
        json={
            "merchant": merchant["id"],
            "amount": 24_000,
            "currency": "INR",
            "description": "a kilo of Assam tea",
        },
        headers={**auth["asha"], "Idempotency-Key": "demo-payment-0"},
    )
    payment.raise_for_status()
    refund = await client.post(
        "/v1/refunds",
        json={"payment": payment.json()["id"], "amount": 4_000, "reason": "requested_by_customer"},
        headers={**shop, "Idempotency-Key": "demo-refund-0"},
    )
    refund.raise_for_status()
    payout = await client.post(
        "/v1/payouts",
        json={"amount": 10_000, "currency": "INR", "destination": {"vpa": "ravi@okbank"}},
        headers={**auth["ravi"], "Idempotency-Key": "demo-payout-0"},
    )
    payout.raise_for_status()


async def load_demo(console: Console, base_url: str) -> None:
    """Register the demo users, top them up, move some money, print who is who."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        auth: dict[str, dict[str, str]] = {}
        for handle, name, role, topup in USERS:
            auth[handle] = await _login(client, handle, name, role)
            if topup:
                [wallet] = (await client.get("/v1/wallets", headers=auth[handle])).json()
                response = await client.post(
                    f"/v1/wallets/{wallet['id']}/topups",
                    json={"amount": topup},
                    headers={**auth[handle], "Idempotency-Key": f"demo-topup-{handle}"},
                )
                response.raise_for_status()
        for index, (sender, to, amount, note) in enumerate(TRANSFERS):
            response = await client.post(
                "/v1/transfers",
                json={"to": to, "amount": amount, "currency": "INR", "note": note},
                headers={**auth[sender], "Idempotency-Key": f"demo-transfer-{index}"},
            )
            response.raise_for_status()
        await _merchant_money(client, auth)
        console.print(f"[bold]Demo users[/bold] (password {DEMO_PASSWORD!r}):")
        for handle, _, role, _ in USERS:
            wallets: list[dict[str, Any]] = (
                await client.get("/v1/wallets", headers=auth[handle])
            ).json()
            balance = wallets[0]["balance"]["available"] if wallets else 0
            console.print(
                f"  {handle}@demo.payflow.local  {role:<9} {handle}@payflow"
                f"  available {balance / 100:,.2f} INR"
            )
