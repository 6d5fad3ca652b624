"""Private-network refusals (SSRF): every non-public range at creation, the allow-list,
and the check again at delivery time, before any connection is made."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import update

from payflow.config import Settings
from payflow.errors import PayFlowError
from payflow.ids import parse_public_id
from payflow.webhooks import models
from payflow.webhooks.network import parse_allowed, resolve
from tests.api.conftest import Server
from tests.webhooks.conftest import customer
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import create_endpoint, deliveries, delivery, eventually, send_money

PRIVATE_URLS = [
    "http://10.0.0.1/hooks",  # RFC 1918
    "http://172.16.5.4/hooks",
    "https://192.168.1.10/hooks",
    "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
    "http://100.64.0.1/hooks",  # carrier-grade NAT
    "http://0.0.0.0/hooks",
    "http://224.0.0.1/hooks",  # multicast
    "http://[fc00::1]/hooks",  # ULA
    "http://[fe80::1]/hooks",  # link-local
    "http://[::ffff:10.0.0.1]/hooks",  # IPv4-mapped private
    "http://[2002:a00:1::]/hooks",  # 6to4 of 10.0.0.1
]
LOOPBACK_URLS = ["http://127.0.0.1:9/x", "http://[::1]:9/x", "http://localhost:9/x"]
NONE_ALLOWED = parse_allowed([])


@pytest.mark.parametrize("url", PRIVATE_URLS + LOOPBACK_URLS)
async def test_non_public_addresses_are_refused(url: str) -> None:
    with pytest.raises(PayFlowError) as refused:
        await resolve(url, NONE_ALLOWED)
    assert refused.value.code == "url_private" and refused.value.http_status == 422


async def test_public_addresses_pass() -> None:
    target = await resolve("https://93.184.215.14:8443/hooks?a=1", NONE_ALLOWED)
    assert (target.host, target.port, str(target.address)) == (
        "93.184.215.14",
        8443,
        "93.184.215.14",
    )


async def test_unresolvable_hosts_are_refused() -> None:
    with pytest.raises(PayFlowError) as refused:
        await resolve("https://no-such-host.invalid/hooks", NONE_ALLOWED)
    assert refused.value.code == "url_unresolvable"


async def test_the_allow_list_admits_networks_and_hosts() -> None:
    by_network = parse_allowed(["127.0.0.0/8", "10.1.0.0/16"])
    assert str((await resolve("http://127.0.0.1:9/", by_network)).address) == "127.0.0.1"
    assert str((await resolve("http://10.1.2.3/", by_network)).address) == "10.1.2.3"
    with pytest.raises(PayFlowError):
        await resolve("http://10.2.0.1/", by_network)
    # `localhost` may resolve to ::1 as well: a network list must cover every address,
    # a host name entry covers whatever the name resolves to.
    by_host = parse_allowed(["LOCALHOST"])
    assert (await resolve("http://localhost:9/", by_host)).host == "localhost"
    with pytest.raises(PayFlowError):
        await resolve("http://127.0.0.1:9/", by_host)


@pytest.mark.parametrize("entry", ["", "10.0.0.0/33", "a b", "user@host", "x/y"])
def test_bad_allow_list_entries_are_refused_by_the_settings(entry: str) -> None:
    with pytest.raises(ValidationError):
        Settings(webhook_allowed_private=[entry])


async def test_the_api_refuses_private_urls_and_creates_nothing(hooks: Server) -> None:
    user = await customer(hooks)
    for url in PRIVATE_URLS:
        response = await hooks.client.post(
            "/v1/webhook-endpoints", json={"url": url, "event_types": ["*"]}, headers=user.auth
        )
        assert response.status_code == 422, (url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "url_private", url
    listed = await hooks.client.get("/v1/webhook-endpoints", headers=user.auth)
    assert listed.json()["data"] == []


async def test_delivery_time_check_refuses_before_connecting(
    hooks: Server, receiver: Receiver
) -> None:
    """An endpoint whose host now resolves to a private address (DNS rebinding, or an
    allow-list narrowed since) is refused at delivery: no request leaves."""
    asha, ravi = await customer(hooks), await customer(hooks)
    endpoint = await create_endpoint(hooks, ravi, receiver.url, ["transfer.completed"])
    receiver.secrets = [endpoint["secret"]]
    async with hooks.engine.begin() as conn:
        await conn.execute(
            update(models.endpoints)
            .where(models.endpoints.c.id == parse_public_id("we", endpoint["id"]))
            .values(url="http://169.254.169.254/latest/meta-data/")
        )
    await send_money(hooks, asha, ravi, 100)

    async def given_up() -> list[dict[str, object]] | None:
        log = await deliveries(hooks, ravi, endpoint)
        return log if log and log[0]["status"] == "failed" else None

    (failed,) = await eventually(given_up)
    detail = await delivery(hooks, ravi, endpoint, str(failed["id"]))
    assert len(detail["attempts"]) == 6
    assert all(a["error"].startswith("url_private") for a in detail["attempts"])
    assert all(a["status_code"] is None for a in detail["attempts"])
    assert receiver.requests == []
