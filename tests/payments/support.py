"""Helpers for the payments tests: merchants, customers with money, payments over HTTP,
and snapshots of everything a refused request must leave as it was."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.api.conftest import Server, User, balance, create_operator, key, register, topup

BANK = {"bank_code": "HDFC0001234", "account_number": "50100012345678"}


def assert_problem(
    response: httpx.Response, status: int, code: str, *, case: object = None
) -> dict[str, Any]:
    assert response.status_code == status, (case, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), case
    body: dict[str, Any] = response.json()
    assert body["code"] == code, (case, body)
    return body


@dataclass
class Merchant:
    """A merchant user, its profile and an API key."""

    user: User
    id: str
    wallet_id: str
    api_key: str

    @property
    def auth(self) -> dict[str, str]:
        return self.user.auth

    @property
    def key_auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


async def merchant(
    api: Server, *, currency: str = "INR", name: str = "Chai Point", **fields: Any
) -> Merchant:
    user = await register(api.client, role="merchant")
    body = {
        "business_name": name,
        "settlement_currency": currency,
        "settlement_destination": BANK,
        **fields,
    }
    created = await api.client.post("/v1/merchants", json=body, headers=user.auth)
    assert created.status_code == 201, created.text
    made = await api.client.post("/v1/api-keys", json={"name": "shop"}, headers=user.auth)
    assert made.status_code == 201, made.text
    profile = created.json()
    return Merchant(user, profile["id"], profile["wallet_id"], made.json()["key"])


async def customer(api: Server, funds: int = 10_000) -> User:
    user = await register(api.client)
    if funds:
        await topup(api.client, user, funds)
    return user


async def operator(api: Server) -> User:
    return await create_operator(api)


async def create_payment(
    api: Server,
    payer: User,
    shop: Merchant,
    amount: Any,
    *,
    idempotency_key: str | None = None,
    **extra: Any,
) -> httpx.Response:
    body = {"merchant": shop.id, "amount": amount, "currency": "INR", **extra}
    headers = {**payer.auth, "Idempotency-Key": idempotency_key or uuid.uuid4().hex}
    return await api.client.post("/v1/payments", json=body, headers=headers)


async def paid(api: Server, payer: User, shop: Merchant, amount: int, **extra: Any) -> str:
    response = await create_payment(api, payer, shop, amount, **extra)
    assert response.status_code == 201, response.text
    payment_id: str = response.json()["id"]
    return payment_id


async def authorized(api: Server, payer: User, shop: Merchant, amount: int) -> str:
    return await paid(api, payer, shop, amount, capture_method="manual")


async def capture(
    api: Server, auth: dict[str, str], payment_id: str, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await api.client.post(
        f"/v1/payments/{payment_id}/capture", json=body or {}, headers={**auth, **key()}
    )


async def cancel(api: Server, auth: dict[str, str], payment_id: str) -> httpx.Response:
    return await api.client.post(f"/v1/payments/{payment_id}/cancel", headers={**auth, **key()})


async def refund(
    api: Server, auth: dict[str, str], payment_id: str, **fields: Any
) -> httpx.Response:
    return await api.client.post(
        "/v1/refunds", json={"payment": payment_id, **fields}, headers={**auth, **key()}
    )


async def get_payment(api: Server, auth: dict[str, str], payment_id: str) -> dict[str, Any]:
    response = await api.client.get(f"/v1/payments/{payment_id}", headers=auth)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def wallet_funds(api: Server, user: User) -> dict[str, int]:
    return await balance(api.client, user)


async def snapshot(api: Server, payer: User, shop: Merchant, *payments: str) -> list[Any]:
    """Both wallets, the payments and their refunds: what a refusal must not change."""
    state: list[Any] = [await wallet_funds(api, payer), await wallet_funds(api, shop.user)]
    for payment_id in payments:
        state.append(await get_payment(api, shop.auth, payment_id))
        refunds = await api.client.get(f"/v1/payments/{payment_id}/refunds", headers=shop.auth)
        state.append(refunds.json())
    return state


def funds(posted: int, pending: int = 0) -> dict[str, int]:
    return {"posted": posted, "pending": pending, "available": posted - pending}
