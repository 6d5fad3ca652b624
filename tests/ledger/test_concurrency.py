"""Many writers on PostgreSQL, on separate connections and in a second OS process,
hammering a few hot accounts that must not go negative.

No deadlock or conflict reaches a caller, no successful transfer is lost or doubled,
money is conserved and no balance limit is ever broken.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.config import get_settings
from payflow.db import run_in_transaction
from payflow.ids import uuid7
from payflow.ledger import AccountFlags, Transfer, create_transfers, lookup_accounts
from payflow.ledger.repository import LEDGER_ESCALATION_LOCK_KEY
from tests.ledger.hammer import random_batch, tally
from tests.ledger.helpers import new_accounts, submit

WRITERS = 8
BATCHES_PER_WRITER = 40
BATCHES_MAX = 1000
FUNDING_EACH = 50_000
REPO = Path(__file__).resolve().parents[2]


async def _writer(
    engine: AsyncEngine,
    seed: int,
    ids: list,
    debits: Counter,
    credits: Counter,
    other: asyncio.subprocess.Process,
) -> None:
    rng = random.Random(seed)
    done = 0
    # Keep writing while the other process runs, so the two really overlap.
    while done < BATCHES_PER_WRITER or (other.returncode is None and done < BATCHES_MAX):
        done += 1
        batch = random_batch(rng, ids, rng.randint(1, 20))
        outcomes = await run_in_transaction(
            engine, lambda conn, batch=batch: create_transfers(conn, batch)
        )
        tally(batch, outcomes, debits, credits)


async def test_hot_accounts_under_concurrent_writers(pg_db: AsyncEngine, pg_url: str) -> None:
    (bank,) = await new_accounts(pg_db, 1)
    hot = await new_accounts(pg_db, 4, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    funded = await submit(pg_db, [Transfer(uuid7(), bank, h, FUNDING_EACH, "INR") for h in hot])
    assert all(o.ok for o in funded)

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.ledger.hammer",
        pg_url,
        "99",
        str(BATCHES_PER_WRITER * 2),
        *map(str, hot),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    debits: Counter = Counter()
    credits: Counter = Counter()
    await asyncio.gather(
        *(_writer(pg_db, seed, hot, debits, credits, process) for seed in range(WRITERS))
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    other = json.loads(stdout)
    debits.update(other["debits"])
    credits.update(other["credits"])

    async with pg_db.connect() as conn:
        accounts = {a.id: a for a in await lookup_accounts(conn, hot)}
    moved = sum(debits.values())
    assert moved > 0, "the writers moved nothing: the test would prove nothing"
    for account_id, account in accounts.items():
        # Every successful outcome is in the counters exactly once (no lost update) ...
        assert account.debits_posted == debits[str(account_id)]
        assert account.credits_posted == FUNDING_EACH + credits[str(account_id)]
        # ... and the limit held.
        assert account.debits_posted + account.debits_pending <= account.credits_posted
    # Money is conserved among the hot accounts: they only paid each other.
    assert sum(a.balance for a in accounts.values()) == FUNDING_EACH * len(hot)


class TestLockEscalation:
    """Large batches queue on one ledger-wide lock; small ones never wait on it."""

    async def _hold_escalation_lock(self, engine: AsyncEngine) -> AsyncConnection:
        conn = await engine.connect()
        await conn.begin()
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_ESCALATION_LOCK_KEY}
        )
        return conn

    async def test_large_batch_waits_for_the_lock_small_batch_does_not(
        self, pg_db: AsyncEngine
    ) -> None:
        threshold = get_settings().ledger_lock_escalation_accounts
        ids = await new_accounts(pg_db, threshold + 2)
        holder = await self._hold_escalation_lock(pg_db)
        try:
            small = await asyncio.wait_for(
                submit(pg_db, [Transfer(uuid7(), ids[0], ids[1], 5, "INR")]), timeout=10
            )
            assert [o.ok for o in small] == [True]
            large_batch = [
                Transfer(uuid7(), ids[i], ids[i + 1], 1, "INR") for i in range(threshold + 1)
            ]
            large = asyncio.create_task(submit(pg_db, large_batch))
            await asyncio.sleep(0.5)
            assert not large.done(), "a large batch must queue on the escalation lock"
        finally:
            await holder.rollback()
            await holder.close()
        outcomes = await asyncio.wait_for(large, timeout=30)
        assert all(o.ok for o in outcomes)

    async def test_small_then_large_batch_in_one_transaction_against_a_large_one(
        self, pg_db: AsyncEngine
    ) -> None:
        """Lock order stays global: no deadlock surfaces, both transactions commit."""
        threshold = get_settings().ledger_lock_escalation_accounts
        ids = await new_accounts(pg_db, threshold + 2)
        large = [Transfer(uuid7(), ids[i], ids[i + 1], 1, "INR") for i in range(threshold + 1)]
        other_large = [
            Transfer(uuid7(), ids[i + 1], ids[i], 1, "INR") for i in range(threshold + 1)
        ]

        async def small_then_large(conn: AsyncConnection) -> list:
            first = await create_transfers(conn, [Transfer(uuid7(), ids[-1], ids[0], 7, "INR")])
            await asyncio.sleep(0.2)  # let the other transaction queue behind our rows
            return first + await create_transfers(conn, large)

        results = await asyncio.wait_for(
            asyncio.gather(
                run_in_transaction(pg_db, small_then_large),
                submit(pg_db, other_large),
            ),
            timeout=60,
        )
        assert all(o.ok for outcome_list in results for o in outcome_list)
