"""The ledger audit: the invariants, checked against what is stored.

1. Per currency, total debits equal total credits (posted and pending).
2. Every account's four counters equal the sums of its transfers.
3. No pending transfer is resolved twice, and every resolution matches its pending.
4. Every transfer names existing accounts of its own currency.
5. No counter is negative and no account breaks its balance limit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# Per-currency totals may exceed 2^63-1 (only each account is bounded) and SQLite's
# sum() raises on integer overflow, so each counter is summed as high and low 32-bit
# halves, which cannot overflow below 2^31 accounts, and joined in Python.
_COUNTER_NAMES = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
_TOTALS = (
    "SELECT currency, count(*), "
    + ", ".join(f"sum({c} >> 32), sum({c} & 4294967295)" for c in _COUNTER_NAMES)
    + " FROM ledger_accounts GROUP BY currency ORDER BY currency"
)
# Each transfer's contribution to the counters of its two accounts, summed per account,
# compared with the stored counters. Only accounts that disagree come back.
_COUNTER_MISMATCHES = """
WITH effects AS (
  SELECT t.debit_account_id AS account_id,
         CASE WHEN (t.flags & 2) <> 0 AND r.id IS NULL THEN t.amount ELSE 0 END AS dp,
         CASE WHEN (t.flags & 10) = 0 THEN t.amount ELSE 0 END AS dpo,
         0 AS cp, 0 AS cpo
  FROM ledger_transfers t LEFT JOIN ledger_transfers r ON r.pending_id = t.id
  UNION ALL
  SELECT t.credit_account_id, 0, 0,
         CASE WHEN (t.flags & 2) <> 0 AND r.id IS NULL THEN t.amount ELSE 0 END,
         CASE WHEN (t.flags & 10) = 0 THEN t.amount ELSE 0 END
  FROM ledger_transfers t LEFT JOIN ledger_transfers r ON r.pending_id = t.id
), sums AS (
  SELECT account_id, sum(dp) AS dp, sum(dpo) AS dpo, sum(cp) AS cp, sum(cpo) AS cpo
  FROM effects GROUP BY account_id
)
SELECT a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
       coalesce(s.dp, 0), coalesce(s.dpo, 0), coalesce(s.cp, 0), coalesce(s.cpo, 0)
FROM ledger_accounts a LEFT JOIN sums s ON s.account_id = a.id
WHERE a.debits_pending <> coalesce(s.dp, 0) OR a.debits_posted <> coalesce(s.dpo, 0)
   OR a.credits_pending <> coalesce(s.cp, 0) OR a.credits_posted <> coalesce(s.cpo, 0)
LIMIT :limit
"""
_BAD_RESOLUTIONS = """
SELECT r.id, r.pending_id,
       CASE WHEN p.id IS NULL THEN 'resolves a missing transfer'
            WHEN (p.flags & 2) = 0 THEN 'resolves a transfer that is not pending'
            WHEN p.debit_account_id <> r.debit_account_id
              OR p.credit_account_id <> r.credit_account_id THEN 'accounts differ from pending'
            WHEN (r.flags & 4) <> 0 AND r.amount > p.amount THEN 'posts more than pending'
            WHEN (r.flags & 8) <> 0 AND r.amount <> p.amount THEN 'voids a different amount'
       END AS problem
FROM ledger_transfers r LEFT JOIN ledger_transfers p ON p.id = r.pending_id
WHERE r.pending_id IS NOT NULL AND (
  p.id IS NULL OR (p.flags & 2) = 0 OR p.debit_account_id <> r.debit_account_id
  OR p.credit_account_id <> r.credit_account_id
  OR ((r.flags & 4) <> 0 AND r.amount > p.amount)
  OR ((r.flags & 8) <> 0 AND r.amount <> p.amount))
LIMIT :limit
"""
_DOUBLE_RESOLUTIONS = """
SELECT pending_id, count(*) FROM ledger_transfers WHERE pending_id IS NOT NULL
GROUP BY pending_id HAVING count(*) > 1 LIMIT :limit
"""
_ORPHANS = """
SELECT t.id FROM ledger_transfers t
WHERE NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = t.debit_account_id)
   OR NOT EXISTS (SELECT 1 FROM ledger_accounts a WHERE a.id = t.credit_account_id)
   OR EXISTS (SELECT 1 FROM ledger_accounts a
              WHERE a.id IN (t.debit_account_id, t.credit_account_id) AND a.currency <> t.currency)
LIMIT :limit
"""
_LIMIT_BREACHES = """
SELECT id, flags, debits_pending, debits_posted, credits_pending, credits_posted
FROM ledger_accounts
WHERE debits_pending < 0 OR debits_posted < 0 OR credits_pending < 0 OR credits_posted < 0
   OR ((flags & 1) <> 0 AND debits_pending + debits_posted > credits_posted)
   OR ((flags & 2) <> 0 AND credits_pending + credits_posted > debits_posted)
LIMIT :limit
"""


@dataclass(frozen=True, slots=True)
class CurrencyTotals:
    currency: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    accounts: int

    @property
    def balanced(self) -> bool:
        return (
            self.debits_posted == self.credits_posted
            and self.debits_pending == self.credits_pending
        )


@dataclass(slots=True)
class AuditReport:
    totals: list[CurrencyTotals] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    transfers: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


async def audit(conn: AsyncConnection, *, violations_max: int = 100) -> AuditReport:
    """Check every ledger invariant; the report lists up to `violations_max` per check."""
    report = AuditReport()
    for row in await conn.execute(text(_TOTALS)):
        halves = [int(v) for v in row[2:]]
        sums = [halves[i] * 2**32 + halves[i + 1] for i in range(0, len(halves), 2)]
        totals = CurrencyTotals(
            currency=row[0],
            debits_posted=sums[0],
            credits_posted=sums[1],
            debits_pending=sums[2],
            credits_pending=sums[3],
            accounts=int(row[1]),
        )
        report.totals.append(totals)
        if not totals.balanced:
            report.violations.append(
                f"{totals.currency}: debits {totals.debits_posted}/{totals.debits_pending}"
                f" ≠ credits {totals.credits_posted}/{totals.credits_pending}"
                " (posted/pending)"
            )
    params = {"limit": violations_max}
    for row in await conn.execute(text(_COUNTER_MISMATCHES), params):
        stored, summed = tuple(row[1:5]), tuple(int(v) for v in row[5:9])
        report.violations.append(
            f"account {_id(row[0])}: counters {stored} ≠ sum of transfers {summed}"
            " (debits pending, debits posted, credits pending, credits posted)"
        )
    for row in await conn.execute(text(_DOUBLE_RESOLUTIONS), params):
        report.violations.append(f"pending transfer {_id(row[0])} resolved {row[1]} times")
    for row in await conn.execute(text(_BAD_RESOLUTIONS), params):
        report.violations.append(f"transfer {_id(row[0])}: {row[2]} ({_id(row[1])})")
    for row in await conn.execute(text(_ORPHANS), params):
        report.violations.append(
            f"transfer {_id(row[0])}: an account it names is missing or of another currency"
        )
    for row in await conn.execute(text(_LIMIT_BREACHES), params):
        report.violations.append(f"account {_id(row[0])}: negative counter or limit broken")
    count = await conn.execute(text("SELECT count(*) FROM ledger_transfers"))
    report.transfers = int(count.scalar_one())
    return report


def _id(value: object) -> str:
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(hex=str(value)))
