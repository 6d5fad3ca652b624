"""The saga fault matrix: the bank fails, times out, loses responses and is unavailable at
random on credits and inquiries, while the payouts workers are killed with SIGKILL between
(and during) steps. Every saga must end, in the state the bank's own records justify,
with the money conserved and no payout both credited and refunded."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from payflow.banksim.config import BankSimConfig
from payflow.banksim.server import serve as serve_bank
from payflow.payouts import models
from tests.api.conftest import User, free_port, register, start_server
from tests.conftest import assert_audit_passes
from tests.events.conftest import fresh_pg_url, pg_template
from tests.events.processes import Process, payflow_env
from tests.payouts.conftest import (
    CURRENCY,
    balance,
    key,
    open_sagas,
    payout_settings,
    transit_balance,
)

__all__ = ["fresh_pg_url", "pg_template"]

PAYOUTS = 60
USERS = 4
FUNDS = 1_000_000
SETTINGS: dict[str, Any] = {
    # Well above what a busy machine's simulator takes to answer (a decline answered
    # after the deadline is seen as unknown, and the matrix wants declines on credits),
    # well below its simulated timeouts (timeout_hold_s).
    "bank_timeout_s": 0.8,
    # Long enough that sagas delayed by the kills (a worker restart takes a second or
    # two) still reach the bank in time; the sweeper's own test covers the deadline.
    "payout_deadline_s": 20.0,
    "payout_retry_base_s": 0.05,
    "payout_retry_cap_s": 0.4,
    "payout_poll_interval_ms": 20,
    "payout_sweep_interval_s": 0.3,
    "events_poll_interval_ms": 20,
    "events_lease_s": 1,
    "consumer_backoff_ms": 10,
    "audit_interval_s": 0,
}


@pytest.fixture
async def chaotic_bank(tmp_path: Path) -> AsyncIterator[str]:
    """A bank that misbehaves on a good share of calls, reproducibly."""
    config = BankSimConfig(
        port=free_port(),
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'bank.db'}",
        currency=CURRENCY,
        failure_rate=0.1,
        timeout_rate=0.15,
        lost_response_rate=0.15,
        unavailable_rate=0.15,
        timeout_hold_s=1.6,
        seed=20261122,
    )
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve_bank(config, stop=stop, started=started))
    await asyncio.wait_for(started.wait(), 30)
    yield f"http://127.0.0.1:{config.port}"
    stop.set()
    await task


async def _payout(client: httpx.AsyncClient, user: User, amount: int, vpa: str) -> str:
    response = await client.post(
        "/v1/payouts",
        json={"amount": amount, "currency": CURRENCY, "destination": {"vpa": vpa}},
        headers={**user.auth, **key()},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def _chaos(workers: list[Process], stop: asyncio.Event, rng: random.Random) -> None:
    while not stop.is_set():
        await asyncio.sleep(rng.uniform(0.6, 1.5))
        victim = rng.choice(workers)
        if victim.alive():
            victim.kill()
        victim.start()


async def test_every_saga_ends_right_under_bank_faults_and_kills(
    fresh_pg_url: str, chaotic_bank: str, tmp_path: Path
) -> None:
    settings = payout_settings(fresh_pg_url, "postgresql", chaotic_bank, **SETTINGS)
    api, stop_api = await start_server(settings, "postgresql")
    env = payflow_env(database_url=fresh_pg_url, bank_url=chaotic_bank, **SETTINGS)
    workers = [
        Process(["worker", "--consumer", "payouts"], env, tmp_path / f"worker{i}.log")
        for i in range(2)
    ]
    rng = random.Random(5)
    stop_chaos = asyncio.Event()
    try:
        users = [await register(api.client) for _ in range(USERS)]
        for user in users:
            topup = await api.client.post(
                f"/v1/wallets/{user.wallet_id}/topups",
                json={"amount": FUNDS},
                headers={**user.auth, **key()},
            )
            assert topup.status_code == 201, topup.text
        transit_before = await transit_balance(api)
        for worker in workers:
            worker.start()
        chaos = asyncio.create_task(_chaos(workers, stop_chaos, rng))
        made: dict[str, tuple[User, int]] = {}
        for n in range(PAYOUTS):
            user = users[n % USERS]
            amount = rng.randint(1, 5_000)
            # Some go to an account the bank does not have: definitively rejected.
            vpa = "nobody@okbank" if n % 7 == 0 else rng.choice(["asha@okbank", "ravi@okbank"])
            made[await _payout(api.client, user, amount, vpa)] = (user, amount)
            await asyncio.sleep(rng.uniform(0, 0.05))
        await asyncio.sleep(2)
        stop_chaos.set()
        await chaos
        for worker in workers:
            if not worker.alive():
                worker.start()
        await _wait_for_the_end(api.engine, timeout_s=90, workers=workers)
        kills = sum(w.kills for w in workers)
        assert kills >= 3, kills
        await _check(api, chaotic_bank, made, users, transit_before)
        await assert_audit_passes(api.engine)
    finally:
        stop_chaos.set()
        for worker in workers:
            worker.stop()
        await stop_api()


async def _wait_for_the_end(engine: Any, *, timeout_s: float, workers: list[Process]) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        table = models.payouts
        async with engine.connect() as conn:
            open_steps = (
                (
                    await conn.execute(
                        select(table.c.step).where(
                            table.c.step.not_in(("TRANSACTION_COMPLETED", "TRANSACTION_FAILED"))
                        )
                    )
                )
                .scalars()
                .all()
            )
        if not open_steps:
            return
        if asyncio.get_running_loop().time() > deadline:
            logs = "\n".join(w.log_tail() for w in workers)
            raise AssertionError(f"sagas still open: {sorted(open_steps)}\n{logs}")
        await asyncio.sleep(0.2)


async def _check(
    api: Any,
    bank_url: str,
    made: dict[str, tuple[User, int]],
    users: list[User],
    transit_before: dict[str, int],
) -> None:
    table = models.payouts
    async with api.engine.connect() as conn:
        rows = {f"po_{row.id.hex}": row for row in (await conn.execute(select(table))).all()}
    assert set(rows) == set(made)
    assert await open_sagas(api) == 0
    completed_by_user: dict[str, int] = {u.id: 0 for u in users}
    completed_total = 0
    outcomes: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=bank_url, timeout=30) as bank:
        # The bank's records, read without its simulated faults.
        calm = {"failure_rate": 0, "timeout_rate": 0, "lost_response_rate": 0}
        response = await bank.put("/sim/config", json={**calm, "unavailable_rate": 0})
        assert response.status_code == 200, response.text
        for reference, row in rows.items():
            response = await bank.get(f"/v1/credits/{reference}")
            credit = response.json() if response.status_code == 200 else None
            credited = credit is not None and credit["status"] == "credited"
            # Never both: the database refuses it, and the bank's records agree.
            assert row.credited_at is None or row.refunded_at is None
            if row.step == "TRANSACTION_COMPLETED":
                assert credited, (reference, credit)
                assert credit["amount"] == row.amount
                assert row.credited_at is not None
                user, amount = made[reference]
                completed_by_user[user.id] += amount
                completed_total += amount
            else:
                assert row.step == "TRANSACTION_FAILED"
                assert not credited, (reference, credit)
                assert credit is None or credit["status"] == "rejected"
            outcomes[row.step] = outcomes.get(row.step, 0) + 1
    # Both endings happened: the matrix exercised refunds as well as completions, and
    # the bank's every kind of answer (or silence) on credits and on inquiries.
    reasons = sorted({str(row.failure_reason) for row in rows.values()})
    assert set(outcomes) == {"TRANSACTION_COMPLETED", "TRANSACTION_FAILED"}, (outcomes, reasons)
    attempts = models.payout_attempts
    async with api.engine.connect() as conn:
        seen = set((await conn.execute(select(attempts.c.operation, attempts.c.outcome))).all())
    for expected in [
        ("credit", "credited"),
        ("credit", "rejected"),
        ("credit", "unknown"),
        ("credit", "unavailable"),
        ("inquiry", "credited"),
    ]:
        assert expected in seen, (expected, seen)
    for user in users:
        assert await balance(api, user) == {
            "posted": FUNDS - completed_by_user[user.id],
            "pending": 0,
            "available": FUNDS - completed_by_user[user.id],
        }
    transit = await transit_balance(api)
    assert transit["posted"] - transit_before["posted"] == completed_total
    assert transit["pending"] == transit_before["pending"]
