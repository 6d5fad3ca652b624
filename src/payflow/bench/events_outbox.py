"""What writing events costs the ledger: batches of transfers with and without their
`transfer.completed` outbox rows, on one database, in one run.

Each client is an OS process (as each API process is) on its own connection, submitting
whole batches through `create_transfers`; with the outbox, the same transaction also
builds each transfer's event (the API's own `transfer_completed`, ~480 bytes of JSON) and
writes the batch's rows with `emit`. The two variants alternate in four slices, without,
with, with, without (ABBA), so that whatever drifts during the run (tables and indexes
growing, other jobs on the machine) weighs on both alike.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.db import create_engine, run_in_transaction
from payflow.events.domain import Event
from payflow.events.outbox import emit
from payflow.ledger import Transfer, TransferResult, create_transfers
from payflow.timestamps import now_ns
from payflow.transfers.domain import SUCCEEDED, TransferRecord
from payflow.transfers.events import transfer_completed
from payflow.wallets.domain import Wallet

ORDER: Final = (False, True, True, False)
# Clients start together this long after the last one is ready (connected and warm).
START_LEAD_S: Final = 0.2
# Spawning a client, importing PayFlow and connecting: seconds, even on a busy machine.
READY_TIMEOUT_S: Final = 120.0
CURRENCY: Final = "INR"
AMOUNT: Final = 1
OK: Final = TransferResult.OK
_USERS: Final = uuid.UUID("5d8f0c3e-2b7a-4e61-9c14-a0f3e6b2d871")


def bench_wallets(accounts: list[uuid.UUID]) -> dict[uuid.UUID, Wallet]:
    """A wallet (and an owner) for each bench account, for events' `from` and `to`."""
    created_at = now_ns()
    return {
        account: Wallet(
            id=account,
            user_id=uuid.uuid5(_USERS, account.hex),
            handle=f"bench_user_{index:07d}",
            currency=CURRENCY,
            created_at=created_at,
        )
        for index, account in enumerate(accounts)
    }


def transfer_event(
    transfer_id: uuid.UUID, debit: Wallet, credit: Wallet, *, amount: int, at: int
) -> Event:
    """The `transfer.completed` event the API writes for a P2P transfer."""
    record = TransferRecord(
        id=transfer_id,
        kind="p2p",
        status=SUCCEEDED,
        from_wallet_id=debit.id,
        to_wallet_id=credit.id,
        amount=amount,
        currency=CURRENCY,
        note=None,
        hold_id=None,
        initiated_by=debit.user_id,
        created_at=at,
    )
    # Only the two parties, as the API passes them: the function indexes what it is given.
    return transfer_completed(record, {debit.id: debit, credit.id: credit})


@dataclass(frozen=True, slots=True)
class Slice:
    """A stretch of wall-clock time in which every client runs one variant."""

    with_outbox: bool
    start_at: float
    stop_at: float


@dataclass(slots=True)
class Tally:
    transfers: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    failed: int = 0


@dataclass(slots=True)
class _Client:
    engine: AsyncEngine
    accounts: list[uuid.UUID]
    wallets: dict[uuid.UUID, Wallet]
    batch: int
    rng: random.Random
    prefix: int
    counter: int = 0
    tallies: dict[bool, Tally] = field(default_factory=lambda: {False: Tally(), True: Tally()})

    def next_batch(self) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
        """(transfer id, debit account, credit account) for one batch."""
        batch = []
        for _ in range(self.batch):
            self.counter += 1
            debit, credit = self.rng.sample(self.accounts, 2)
            batch.append((uuid.UUID(int=self.prefix | self.counter), debit, credit))
        return batch

    async def submit(self, with_outbox: bool) -> tuple[int, int]:
        """One batch in one transaction; (transfers ok, transfers refused)."""
        batch = self.next_batch()
        transfers = [Transfer(i, debit, credit, AMOUNT, CURRENCY) for i, debit, credit in batch]

        async def work(conn: AsyncConnection) -> tuple[int, int]:
            outcomes = await create_transfers(conn, transfers)
            done = [b for b, o in zip(batch, outcomes, strict=True) if o.code is OK]
            if with_outbox:
                at, wallets = now_ns(), self.wallets
                events = [
                    transfer_event(i, wallets[debit], wallets[credit], amount=AMOUNT, at=at)
                    for i, debit, credit in done
                ]
                await emit(conn, events)
            return len(done), len(batch) - len(done)

        return await run_in_transaction(self.engine, work)

    async def run(self, work_slice: Slice) -> None:
        await asyncio.sleep(max(0.0, work_slice.start_at - time.time()))
        tally = self.tallies[work_slice.with_outbox]
        began, cpu_began = time.perf_counter(), time.process_time()
        while time.time() < work_slice.stop_at:
            ok, refused = await self.submit(work_slice.with_outbox)
            tally.transfers += ok
            tally.failed += refused
        tally.seconds += time.perf_counter() - began
        tally.cpu_s += time.process_time() - cpu_began


@dataclass(frozen=True, slots=True)
class _Sync:
    """What the bench and its client processes share: two barriers per round (all ready;
    the plan is set), the plan (start time, slice length, clients taking part) and a
    queue for each client's tallies or error."""

    ready: Any
    go: Any
    plan: Any
    results: Any

    def wait_for_plan(self) -> tuple[float, float, int]:
        self.ready.wait(timeout=READY_TIMEOUT_S)
        self.go.wait(timeout=READY_TIMEOUT_S)
        start_at, slice_s, clients = self.plan[:]
        return start_at, slice_s, int(clients)


async def _client_main(
    index: int,
    database_url: str,
    accounts: list[uuid.UUID],
    batch: int,
    rounds: int,
    sync: _Sync,
) -> None:
    """One client: warm up, then in each round it takes part in, run the four slices."""
    engine = create_engine(database_url)
    client = _Client(
        engine=engine,
        accounts=accounts,
        wallets=bench_wallets(accounts),
        batch=batch,
        rng=random.Random(index),
        prefix=(index + 1) << 64,
    )
    try:
        # Connect and warm both paths (statement caches) before any clock starts.
        await client.submit(False)
        await client.submit(True)
        for _ in range(rounds):
            start_at, slice_s, clients = await asyncio.to_thread(sync.wait_for_plan)
            if index >= clients:
                continue
            client.tallies = {False: Tally(), True: Tally()}
            for position, with_outbox in enumerate(ORDER):
                began = start_at + position * slice_s
                await client.run(Slice(with_outbox, began, began + slice_s))
            sync.results.put(client.tallies)
    finally:
        await engine.dispose()


def _client_process(*args: Any) -> None:
    """A client process's entry: an error goes to the bench, which stops waiting at once."""
    sync: _Sync = args[-1]
    try:
        asyncio.run(_client_main(*args))
    except BaseException as error:
        sync.results.put(f"{type(error).__name__}: {error}")
        sync.ready.abort()
        sync.go.abort()
        raise


def _wait(barrier: Any, sync: _Sync) -> None:
    try:
        barrier.wait(timeout=READY_TIMEOUT_S)
    except threading.BrokenBarrierError:
        raise RuntimeError(f"an outbox-cost client failed: {sync.results.get(timeout=5)}") from None


def _figures(clients: int, parts: list[dict[bool, Tally]]) -> dict[str, Any]:
    figures: dict[str, Any] = {"clients": clients}
    for with_outbox, name in ((False, "without_outbox"), (True, "with_outbox")):
        tallies = [part[with_outbox] for part in parts]
        transfers = sum(t.transfers for t in tallies)
        # Clients run side by side: the total rate is the sum of each one's own rate.
        rate = sum(t.transfers / t.seconds for t in tallies if t.seconds > 0)
        figures[f"{name}_transfers_per_s"] = round(rate, 1)
        figures[f"{name}_client_cpu_us_per_transfer"] = round(
            1e6 * sum(t.cpu_s for t in tallies) / transfers if transfers else 0.0, 1
        )
        figures[f"{name}_failed"] = sum(t.failed for t in tallies)
    without = figures["without_outbox_transfers_per_s"]
    figures["ratio"] = round(figures["with_outbox_transfers_per_s"] / without, 3) if without else 0
    return figures


def measure_outbox_cost(
    database_url: str,
    accounts: list[uuid.UUID],
    *,
    clients: Sequence[int],
    batch: int,
    seconds: float,
) -> list[dict[str, Any]]:
    """Transfers/s with and without the outbox, `seconds` each, for each number of
    `clients`; the client processes are started once, connected and warmed, and reused."""
    context = multiprocessing.get_context("spawn")
    count = max(clients)
    sync = _Sync(
        ready=context.Barrier(count + 1),
        go=context.Barrier(count + 1),
        plan=context.Array("d", 3),
        results=context.Queue(),
    )
    processes = [
        context.Process(
            target=_client_process,
            args=(index, database_url, accounts, batch, len(clients), sync),
            daemon=True,
        )
        for index in range(count)
    ]
    for process in processes:
        process.start()
    found = []
    try:
        for taking_part in clients:
            _wait(sync.ready, sync)
            # Each variant runs in two of the four slices.
            sync.plan[:] = [time.time() + START_LEAD_S, seconds / 2, taking_part]
            _wait(sync.go, sync)
            parts = [sync.results.get(timeout=READY_TIMEOUT_S + 2 * seconds)]
            parts += [sync.results.get(timeout=READY_TIMEOUT_S) for _ in range(taking_part - 1)]
            errors = [part for part in parts if isinstance(part, str)]
            if errors:
                raise RuntimeError(f"an outbox-cost client failed: {errors[0]}")
            found.append(_figures(taking_part, parts))
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    return found
