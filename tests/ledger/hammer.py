"""A second OS process that hammers hot accounts: `python -m tests.ledger.hammer URL SEED N IDS...`.

Prints one JSON object: the amounts its successful transfers debited and credited per
account, so the test can check that no successful transfer was lost or counted twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from collections import Counter

from payflow.db import create_engine, run_in_transaction
from payflow.ids import uuid7
from payflow.ledger import Transfer, TransferFlags, create_transfers


def random_batch(rng: random.Random, ids: list[uuid.UUID], size: int) -> list[Transfer]:
    """Random transfers among `ids`; every fourth pair is a linked chain of two."""
    batch: list[Transfer] = []
    while len(batch) < size:
        debit, credit = rng.sample(ids, 2)
        amount = rng.randint(1, 3000)
        if rng.random() < 0.25:
            third = rng.choice([i for i in ids if i != credit])
            batch.append(
                Transfer(uuid7(), debit, credit, amount, "INR", flags=TransferFlags.LINKED)
            )
            batch.append(Transfer(uuid7(), credit, third, amount, "INR"))
        else:
            batch.append(Transfer(uuid7(), debit, credit, amount, "INR"))
    return batch


def tally(batch: list[Transfer], outcomes: list, debits: Counter, credits: Counter) -> None:
    for transfer, outcome in zip(batch, outcomes, strict=True):
        if outcome.ok:
            debits[str(transfer.debit_account_id)] += transfer.amount
            credits[str(transfer.credit_account_id)] += transfer.amount


async def main(url: str, seed: int, batches: int, ids: list[uuid.UUID]) -> None:
    rng = random.Random(seed)
    engine = create_engine(url)
    debits: Counter[str] = Counter()
    credits: Counter[str] = Counter()
    try:
        for _ in range(batches):
            batch = random_batch(rng, ids, rng.randint(1, 20))
            outcomes = await run_in_transaction(
                engine, lambda conn, batch=batch: create_transfers(conn, batch)
            )
            tally(batch, outcomes, debits, credits)
    finally:
        await engine.dispose()
    print(json.dumps({"debits": debits, "credits": credits}))


if __name__ == "__main__":
    url, seed, batches, *rest = sys.argv[1:]
    asyncio.run(main(url, int(seed), int(batches), [uuid.UUID(x) for x in rest]))
