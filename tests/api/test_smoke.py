"""The happy path end to end over HTTP, on both backends."""

from __future__ import annotations

from tests.api.conftest import Server, balance, key, register, topup


async def test_register_topup_transfer(api: Server) -> None:
    asha, ravi = await register(api.client), await register(api.client)
    await topup(api.client, asha, 10_000)
    response = await api.client.post(
        "/v1/transfers",
        json={"to": ravi.address, "amount": 2_500, "currency": "INR", "note": "lunch"},
        headers={**asha.auth, **key()},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["amount"] == 2_500
    assert body["from"]["address"] == asha.address
    assert body["to"]["wallet_id"] == ravi.wallet_id
    assert await balance(api.client, asha) == {"posted": 7_500, "pending": 0, "available": 7_500}
    assert await balance(api.client, ravi) == {"posted": 2_500, "pending": 0, "available": 2_500}
