"""A busy PayFlow for crash and outage tests: a real API server, customers paying a
merchant with a cashback rule in force, and the real consumers (notifications, rewards)
run by `payflow worker` subprocesses behind `payflow relay` subprocesses.

After the traffic, `wait_until_drained` waits for every event to be processed, and
`check_exactly_once` compares what the consumers did with what the traffic implies.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import func, select

from payflow.bench.events_brokers import remove_namespace
from payflow.events import models
from payflow.events.brokers import broker_kind
from payflow.events.cleanup import backlog
from payflow.events.registry import all_consumers
from tests.api.conftest import (
    Server,
    User,
    create_operator,
    key,
    register,
    settings_for,
    start_server,
    topup,
)
from tests.conftest import assert_audit_passes
from tests.events.processes import Process, payflow_env

RATE_BP = 150
CAP = 40
POOL_FUNDING = 50_000_000


@dataclass
class Scenario:
    server: Server
    stop_server: Callable[[], Awaitable[None]]
    operator: User
    merchant: User
    customers: list[User]
    processes: list[Process] = field(default_factory=list)
    broker: tuple[str, str, str] | None = None  # kind, url, namespace
    merchant_payments: list[tuple[User, int]] = field(default_factory=list)
    p2p: int = 0

    @property
    def client(self) -> httpx.AsyncClient:
        return self.server.client


async def prepare(database_url: str, backend: str, customers: int = 12) -> Scenario:
    server, stop = await start_server(
        settings_for(database_url, backend, redis_url=None, sweep_interval_s=1), backend
    )
    operator = await create_operator(server)
    merchant = await register(server.client, role="merchant")
    payers = [await register(server.client) for _ in range(customers)]
    for payer in payers:
        await topup(server.client, payer, 5_000_000)
    rule = await server.client.post(
        "/v1/operator/rewards/rules",
        json={"currency": "INR", "rate_bp": RATE_BP, "cap_amount": CAP, "minimum_amount": 100},
        headers=operator.auth,
    )
    assert rule.status_code == 201, rule.text
    funding = await server.client.post(
        "/v1/operator/rewards/pool/fundings",
        json={"amount": POOL_FUNDING, "currency": "INR", "reason": "crash test budget"},
        headers={**operator.auth, **key()},
    )
    assert funding.status_code == 201, funding.text
    return Scenario(server, stop, operator, merchant, payers)


def start_processes(
    scenario: Scenario, tmp_path: Path, *, relays: int, workers: int, **settings: object
) -> None:
    env = payflow_env(
        database_url=scenario.server.settings.database_url,
        events_lease_s=1,
        events_poll_interval_ms=20,
        consumer_ack_wait_s=3,
        consumer_backoff_ms=10,
        audit_interval_s=0,
        **settings,
    )
    for i in range(relays):
        scenario.processes.append(Process(["relay"], env, tmp_path / f"relay{i}.log"))
    for i in range(workers):
        scenario.processes.append(Process(["worker"], env, tmp_path / f"worker{i}.log"))
    for process in scenario.processes:
        process.start()
    url, namespace = settings.get("broker_url"), settings.get("broker_namespace")
    if url:
        scenario.broker = (broker_kind(str(url)), str(url), str(namespace))


async def pay(scenario: Scenario, count: int, *, concurrency: int = 8) -> None:
    """`count` payments: most to the merchant (cashback), some between customers (none).
    Every one must succeed, whatever the event backbone is going through."""
    queue = list(range(count))
    rng = random.Random(count)

    async def one_client() -> None:
        while queue:
            queue.pop()
            payer = rng.choice(scenario.customers)
            amount = rng.randint(50, 6_000)
            to_merchant = rng.random() < 0.8
            other = rng.choice([c for c in scenario.customers if c is not payer])
            payee = scenario.merchant if to_merchant else other
            response = await scenario.client.post(
                "/v1/transfers",
                json={"to": payee.handle, "amount": amount, "currency": "INR"},
                headers={**payer.auth, **key()},
            )
            assert response.status_code == 201, response.text
            if to_merchant:
                scenario.merchant_payments.append((payer, amount))
            else:
                scenario.p2p += 1

    await asyncio.gather(*(one_client() for _ in range(concurrency)))


async def chaos(scenario: Scenario, stop: asyncio.Event, *, seed: int) -> None:
    """Until `stop`: every 0.5-1.5 s SIGKILL a random relay or worker, restart it soon.

    Not more often: each restart costs a Python start-up (about a CPU-second), and on two
    cores more frequent restarts would measure start-up, not the backbone."""
    rng = random.Random(seed)
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.5, 1.5))
        victim = rng.choice(scenario.processes)
        if victim.alive():
            victim.kill()
            await asyncio.sleep(rng.uniform(0, 0.3))
        victim.start()


async def _backlog(scenario: Scenario) -> dict[str, int]:
    """Events each consumer still has to process, and events not yet published."""
    outbox, processed = models.outbox, models.processed
    left: dict[str, int] = {}
    async with scenario.server.engine.connect() as conn:
        for name, consumer in all_consumers().items():
            expected = await conn.scalar(
                select(func.count()).where(outbox.c.type.in_(sorted(consumer.event_types)))
            )
            done = await conn.scalar(select(func.count()).where(processed.c.consumer == name))
            left[name] = int(expected or 0) - int(done or 0)
        if any(p.argv == ["relay"] for p in scenario.processes):
            left["unpublished"] = (await backlog(conn))["unpublished"]
    return left


async def wait_until_drained(scenario: Scenario, timeout_s: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        left = await _backlog(scenario)
        if all(v == 0 for v in left.values()):
            return
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n\n".join(f"{p.argv}:\n{p.log_tail()}" for p in scenario.processes)
            raise AssertionError(f"not drained: {left}\n{logs}")
        await asyncio.sleep(0.2)


def expected_cashback(amount: int) -> int:
    if amount < 100:
        return 0
    return min(CAP, amount * RATE_BP // 10_000)


async def _all_pages(client: httpx.AsyncClient, path: str, user: User) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []
    after = None
    while True:
        params = {"limit": 100, **({"after": after} if after else {})}
        response = await client.get(path, params=params, headers=user.auth)
        assert response.status_code == 200, response.text
        items += response.json()["data"]
        after = response.json()["next_cursor"]
        if not after:
            return items


async def check_exactly_once(scenario: Scenario) -> None:
    """Every effect the traffic implies happened, and none twice; money is conserved."""
    client = scenario.client
    for customer in scenario.customers:
        cashbacks = await _all_pages(client, "/v1/rewards/cashbacks", customer)
        expected = sorted(
            expected_cashback(a) for p, a in scenario.merchant_payments if p is customer
        )
        assert sorted(int(c["amount"]) for c in cashbacks) == [e for e in expected if e > 0]
    pool = await client.get("/v1/operator/rewards/pool", headers=scenario.operator.auth)
    [inr] = [p for p in pool.json() if p["currency"] == "INR"]
    paid = sum(expected_cashback(a) for _, a in scenario.merchant_payments)
    assert inr["debits_posted"] == paid
    async with scenario.server.engine.connect() as conn:
        parked = await conn.scalar(select(func.count()).select_from(models.dead_letters))
        duplicates = await conn.scalar(
            select(func.count()).select_from(
                select(models.processed.c.event_id)
                .group_by(models.processed.c.consumer, models.processed.c.event_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
    assert parked == 0
    assert duplicates == 0
    # Each customer's inbox has one notification per payment they made or got cashback for.
    for customer in scenario.customers[:3]:
        inbox = await _all_pages(client, "/v1/notifications", customer)
        event_ids = [n.get("event_id") for n in inbox]
        assert len(event_ids) == len(set(event_ids))
    await assert_audit_passes(scenario.server.engine)


async def shutdown(scenario: Scenario) -> None:
    for process in scenario.processes:
        process.stop()
    if scenario.broker is not None:
        kind, url, namespace = scenario.broker
        # Best effort: a broker an outage test destroyed has nothing left to remove.
        with contextlib.suppress(Exception):
            await remove_namespace(kind, url, namespace, all_consumers())
    await scenario.server.client.aclose()
    await scenario.server.engine.dispose()
    await scenario.stop_server()


def unique_namespace() -> str:
    return f"t{uuid.uuid4().hex[:12]}"
