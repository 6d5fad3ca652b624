"""`payflow bench ledger`: transfers/s through `create_transfers` on PostgreSQL.

Clients run in several OS processes (the machine's cores), each client on its own
connection, each submitting whole batches in a loop for a fixed time. Transfer ids are
made from a counter and accounts drawn at random: generating a batch costs a small
fraction of submitting it, so the load generator is not what is measured.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import resource
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.db import create_engine, run_in_transaction
from payflow.ledger import (
    Account,
    AccountFlags,
    Transfer,
    TransferOutcome,
    TransferResult,
    create_accounts,
    create_transfers,
)

DISTRIBUTIONS = ("uniform", "hot", "hot-credit")
HOT_ACCOUNTS = 10
_FUNDING = 10**13  # per account: far more than any benchmark run moves
READY_TIMEOUT_S = 120.0  # for every client process to start and connect
START_LEAD_S = 0.05  # from the last process being ready to the common start
_ready: Any = None  # the client processes' start barrier (set in each process)


@dataclass(frozen=True, slots=True)
class Cell:
    """One measurement: a batch size and a distribution."""

    batch_size: int
    distribution: str


@dataclass(slots=True)
class CellResult:
    batch_size: int
    distribution: str
    transfers: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    failed: int = 0

    @property
    def transfers_per_s(self) -> float:
        return self.transfers / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def create_bench_accounts(database_url: str, count: int) -> list[uuid.UUID]:
    """`count` funded INR accounts that must not go negative (the first ten are the hot
    ones); returns their ids. Funding comes from one unlimited account.
    """
    engine = create_engine(database_url)
    funding = uuid.UUID(int=0x0BE7C4 << 104)
    ids = [uuid.UUID(int=(0x0BE7C4 << 104) | i) for i in range(1, count + 1)]
    limited = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    try:
        async with engine.begin() as conn:
            await create_accounts(conn, [Account(funding, "INR")])
        for start in range(0, count, 5000):
            chunk = ids[start : start + 5000]
            async with engine.begin() as conn:
                results = await create_accounts(
                    conn, [Account(i, "INR", flags=limited) for i in chunk]
                )
                assert all(r == "ok" for r in results), set(results)
                funded = await create_transfers(
                    conn,
                    [Transfer(uuid.uuid4(), funding, i, _FUNDING, "INR") for i in chunk],
                )
                assert all(o.ok for o in funded), {o.code for o in funded}
    finally:
        await engine.dispose()
    return ids


def _pick(distribution: str, accounts: list[uuid.UUID], rng: random.Random) -> tuple[Any, Any]:
    if distribution == "uniform":
        debit, credit = rng.sample(accounts, 2)
    elif distribution == "hot":
        debit, credit = rng.sample(accounts[:HOT_ACCOUNTS], 2)
    else:
        debit, credit = accounts[rng.randrange(1, len(accounts))], accounts[0]
    return debit, credit


async def _client(
    engine: Any, cell: Cell, accounts: list[uuid.UUID], seed: int, start: float, stop: float
) -> CellResult:
    rng = random.Random(seed)
    prefix = (seed & 0xFFFFFFFF) << 64
    counter = 0
    result = CellResult(cell.batch_size, cell.distribution, 0, 0.0)
    await asyncio.sleep(max(0.0, start - time.time()))
    while True:
        batch = []
        for _ in range(cell.batch_size):
            counter += 1
            debit, credit = _pick(cell.distribution, accounts, rng)
            batch.append(Transfer(uuid.UUID(int=prefix | counter), debit, credit, 1, "INR"))
        began = time.perf_counter()
        if time.time() >= stop:
            break
        outcomes = await run_in_transaction(engine, partial(_submit, batch=batch))
        result.latencies_ms.append((time.perf_counter() - began) * 1000)
        ok = sum(1 for o in outcomes if o.code is TransferResult.OK)
        result.transfers += ok
        result.failed += len(outcomes) - ok
    return result


async def _submit(conn: AsyncConnection, *, batch: list[Transfer]) -> list[TransferOutcome]:
    return await create_transfers(conn, batch)


async def _process_main(
    database_url: str,
    cell: Cell,
    accounts: list[uuid.UUID],
    clients: int,
    seed: int,
    seconds: float,
) -> CellResult:
    engine = create_engine(database_url)
    try:
        # Open every connection before the start, so connecting is not measured, and
        # start only once every process is as far: starting a process and importing
        # PayFlow can take longer than a short run (a busy machine).
        conns = [await engine.connect() for _ in range(clients)]
        for conn in conns:
            await conn.close()
        await asyncio.to_thread(_ready.wait, READY_TIMEOUT_S)
        start = time.time() + START_LEAD_S
        stop = start + seconds
        parts = await asyncio.gather(
            *(_client(engine, cell, accounts, seed * 1000 + i, start, stop) for i in range(clients))
        )
    finally:
        await engine.dispose()
    total = CellResult(cell.batch_size, cell.distribution, 0, seconds)
    for part in parts:
        total.transfers += part.transfers
        total.failed += part.failed
        total.latencies_ms.extend(part.latencies_ms)
    total.peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return total


def _process_init(ready: Any) -> None:
    global _ready
    _ready = ready


def _process_entry(args: tuple[Any, ...]) -> CellResult:
    return asyncio.run(_process_main(*args))


def run_cell(
    database_url: str,
    cell: Cell,
    accounts: list[uuid.UUID],
    *,
    clients: int,
    processes: int,
    seconds: float,
    seed: int,
) -> CellResult:
    """Run one cell: `clients` spread over `processes` OS processes for `seconds`."""
    processes = max(1, min(processes, clients))
    per_process = [
        clients // processes + (1 if i < clients % processes else 0) for i in range(processes)
    ]
    jobs = [
        (database_url, cell, accounts, n, seed * 100 + i, seconds)
        for i, n in enumerate(per_process)
    ]
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(processes)
    with context.Pool(processes, initializer=_process_init, initargs=(ready,)) as pool:
        parts = pool.map(_process_entry, jobs)
    total = CellResult(cell.batch_size, cell.distribution, 0, seconds)
    for part in parts:
        total.transfers += part.transfers
        total.failed += part.failed
        total.latencies_ms.extend(part.latencies_ms)
        total.peak_rss_mib = max(total.peak_rss_mib, part.peak_rss_mib)
    return total
