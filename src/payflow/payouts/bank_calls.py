"""The saga's one step that talks to another bank: the credit, and inquiries about it.

A payout at CREDIT_DUE is claimed (its next attempt pushed a lease ahead, committed),
the bank is called outside any transaction, and the answer is recorded in a new
transaction, conditional on the claim still being ours:

- credited → CREDIT_SUCCESS; rejected → CREDIT_FAILED (only a definitive "no" refunds);
- unavailable (the bank says it did nothing) → the credit is sent again after back-off;
- unknown (timeout, dropped connection, lost response) → the next call is a status
  inquiry, never a refund;
- inquiry: processing → ask again later; never received → send the credit again with
  the same reference (the bank credits a reference at most once, and refuses any credit
  that arrives after the payout's `not_after`, which makes "never received" final).

A worker killed mid-call leaves the claim to expire: the next worker sends the same
credit again, which the bank answers idempotently.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from payflow.banksim.client import (
    BankClient,
    BankOutcomeUnknown,
    BankRequestRefused,
    BankUnavailable,
    CreditOutcome,
)
from payflow.banksim.client import Destination as BankDestination
from payflow.config import Settings
from payflow.db import is_postgresql
from payflow.payouts import models
from payflow.payouts.domain import Payout, Step, backoff_s
from payflow.payouts.service import move, payout_of
from payflow.timestamps import now_ns

log = logging.getLogger(__name__)

table = models.payouts
NS = 1_000_000_000
# How much longer than a bank call a claim lasts: a worker that died mid-call is replaced
# after this, never while its call may still be running.
CLAIM_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class Answer:
    """What one bank call came back with, as the saga reads it."""

    outcome: str  # credited | rejected | processing | not_found | unavailable | unknown | refused
    detail: str | None = None
    bank_transaction_id: str | None = None


async def claim_due(
    conn: AsyncConnection, settings: Settings, *, limit: int, now: int | None = None
) -> list[Payout]:
    """Claim up to `limit` payouts whose bank call is due (call in its own transaction)."""
    now = now or now_ns()
    query = (
        select(table)
        .where(table.c.step == Step.CREDIT_DUE.value, table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at)
        .limit(limit)
    )
    if is_postgresql(conn):
        query = query.with_for_update(skip_locked=True)
    rows = (await conn.execute(query)).all()
    if not rows:
        return []
    lease_ns = int((settings.bank_timeout_s + CLAIM_MARGIN_S) * NS)
    claimed = [payout_of(row) for row in rows]
    # The payouts keep the attempt count they were read with: `record` checks that the
    # count is still that plus one, i.e. that nobody claimed them since.
    await conn.execute(
        update(table)
        .where(table.c.id.in_([p.id for p in claimed]))
        .values(attempts=table.c.attempts + 1, next_attempt_at=now + lease_ns)
    )
    return claimed


def _bank_destination(payout: Payout) -> BankDestination:
    d = payout.destination
    return BankDestination(vpa=d.vpa, bank_code=d.bank_code, account_number=d.account_number)


def _read(outcome: CreditOutcome | None) -> Answer:
    if outcome is None:
        return Answer("not_found", "the bank never received the credit")
    if outcome.status == "credited":
        return Answer("credited", None, outcome.bank_transaction_id)
    if outcome.status == "rejected":
        return Answer("rejected", outcome.reason or "rejected")
    return Answer("processing", "the bank is still processing the credit")


async def call_bank(client: BankClient, payout: Payout) -> Answer:
    """One credit or inquiry for `payout`; never raises for the bank's failures."""
    try:
        if payout.inquire:
            return _read(await client.inquire(payout.reference))
        description = payout.description or f"PayFlow payout {payout.reference}"
        return _read(
            await client.credit(
                reference=payout.reference,
                amount=payout.amount,
                currency=payout.currency,
                destination=_bank_destination(payout),
                not_after=payout.not_after,
                narrative=description[:140],
            )
        )
    except BankUnavailable as error:
        return Answer("unavailable", str(error)[:200])
    except BankOutcomeUnknown as error:
        return Answer("unknown", str(error)[:200])
    except BankRequestRefused as error:
        return Answer("refused", str(error)[:200])


async def record(
    conn: AsyncConnection,
    settings: Settings,
    payout: Payout,
    answer: Answer,
    *,
    started_at: int,
) -> Payout | None:
    """Write the attempt and what it means for the saga (the payout as claimed)."""
    number = payout.attempts + 1
    finished_at = now_ns()
    await conn.execute(
        insert(models.payout_attempts).values(
            payout_id=payout.id,
            number=number,
            operation="inquiry" if payout.inquire else "credit",
            started_at=started_at,
            finished_at=finished_at,
            outcome=answer.outcome,
            detail=answer.detail,
        )
    )
    current = (
        await conn.execute(select(table.c.step, table.c.attempts).where(table.c.id == payout.id))
    ).first()
    if current is None or current.step != Step.CREDIT_DUE.value or current.attempts != number:
        # Another worker claimed it since (our claim ran out): its answer counts.
        return None
    claimed = replace(payout, attempts=number)
    if answer.outcome == "credited":
        return await move(
            conn,
            claimed,
            Step.CREDITED,
            bank_transaction_id=answer.bank_transaction_id,
            next_attempt_at=None,
        )
    if answer.outcome == "rejected":
        return await move(
            conn,
            claimed,
            Step.CREDIT_FAILED,
            failure_reason=_reason(answer.detail),
            next_attempt_at=None,
            detail=answer.detail,
        )
    inquire = {
        "processing": True,
        "unknown": True,
        "not_found": False,
        "unavailable": payout.inquire,
        # Our request was wrong (a bug, or the bank lost state): keep asking, loudly.
        "refused": True,
    }[answer.outcome]
    if answer.outcome == "refused":
        log.error("payout %s: the bank refused the request: %s", payout.reference, answer.detail)
    delay_s = backoff_s(
        number,
        base_s=settings.payout_retry_base_s,
        cap_s=settings.payout_retry_cap_s,
        jitter=random.random(),
    )
    await conn.execute(
        update(table)
        .where(table.c.id == payout.id, table.c.attempts == number)
        .values(inquire=inquire, next_attempt_at=finished_at + int(delay_s * NS))
    )
    return None


def _reason(detail: str | None) -> str:
    return (detail or "rejected")[:64]
