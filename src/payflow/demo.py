"""Demo data for the embedded default: a few wallets, money moving, and the audit.

Ids are derived from names, so running the demo twice moves nothing the second time:
every transfer comes back `exists` (the id is the idempotency key).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from payflow.db import run_in_transaction
from payflow.ledger import (
    Account,
    AccountFlags,
    Transfer,
    TransferFlags,
    TransferOutcome,
    create_accounts,
    create_transfers,
)

_NAMESPACE = uuid.UUID("0195c0de-de00-7000-8000-0000000000de")
WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY

ACCOUNTS = {
    "bank": AccountFlags.NONE,  # the linked banks money is topped up from
    "asha": WALLET,
    "ravi": WALLET,
    "meera": WALLET,
    "chai-shop": WALLET,  # a merchant
}


def demo_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, name)


@dataclass(frozen=True, slots=True)
class Step:
    title: str
    transfers: list[Transfer]


def _t(name: str, debit: str, credit: str, amount: int | None, **kw: object) -> Transfer:
    return Transfer(
        demo_id(name),
        demo_id(debit) if debit else None,
        demo_id(credit) if credit else None,
        amount,
        "INR" if amount is not None else None,
        **kw,  # type: ignore[arg-type]
    )


def steps() -> list[Step]:
    """The demo's story, one ledger batch per step."""
    pending, linked = TransferFlags.PENDING, TransferFlags.LINKED
    return [
        Step(
            "Top-ups from linked banks",
            [
                _t("topup-asha", "bank", "asha", 500_000),
                _t("topup-ravi", "bank", "ravi", 200_000),
                _t("topup-meera", "bank", "meera", 50_000),
            ],
        ),
        Step("Asha sends Ravi ₹1,250.00", [_t("p2p-asha-ravi", "asha", "ravi", 125_000)]),
        Step(
            "Meera tries to send more than she has",
            [
                _t("p2p-meera-asha", "meera", "asha", 60_000),
            ],
        ),
        Step(
            "Ravi's ₹300.00 order at the chai shop: hold, then capture ₹240.00",
            [
                _t("hold-ravi-chai", "ravi", "chai-shop", 30_000, flags=pending, timeout_s=900),
                Transfer(
                    demo_id("capture-ravi-chai"),
                    amount=24_000,
                    flags=TransferFlags.POST_PENDING,
                    pending_id=demo_id("hold-ravi-chai"),
                ),
            ],
        ),
        Step(
            "A linked pair where the second leg fails: neither moves",
            [
                _t("split-1", "asha", "meera", 10_000, flags=linked),
                _t("split-2", "meera", "ravi", 10_000_000),
            ],
        ),
        Step(
            "The first top-up retried (same id): nothing moves twice",
            [
                _t("topup-asha", "bank", "asha", 500_000),
            ],
        ),
    ]


async def _run_step(conn: AsyncConnection, *, step: Step) -> list[TransferOutcome]:
    return await create_transfers(conn, step.transfers)


async def load(engine: AsyncEngine) -> list[tuple[Step, list[TransferOutcome]]]:
    """Create the demo accounts and run every step; returns each step's outcomes."""
    async with engine.begin() as conn:
        await create_accounts(
            conn,
            [
                Account(demo_id(n), "INR", flags=f, metadata={"name": n})
                for n, f in ACCOUNTS.items()
            ],
        )
    done = []
    for step in steps():
        outcomes = await run_in_transaction(engine, partial(_run_step, step=step))
        done.append((step, outcomes))
    return done
