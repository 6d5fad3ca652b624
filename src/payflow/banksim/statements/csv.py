"""The statement as CSV (RFC 4180, UTF-8, CRLF line ends).

Header: `booking_date,value_date,kind,direction,amount,currency,reference,`
`bank_transaction_id,balance_after,narrative`. The first row is the opening balance
(kind `opening_balance`), the last the closing balance (`closing_balance`); rows between
are lines of kind `payment`, `fee` or `unexpected`. `amount` is integer minor units,
always positive, with `direction` D (debit) or C (credit); `balance_after` is signed
minor units after the row.
"""

from __future__ import annotations

import csv
import io

from payflow.banksim.domain import Statement, signed

HEADER = (
    "booking_date",
    "value_date",
    "kind",
    "direction",
    "amount",
    "currency",
    "reference",
    "bank_transaction_id",
    "balance_after",
    "narrative",
)


def write_csv(statement: Statement) -> str:
    """The statement as CSV text."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    day = statement.day.isoformat()
    writer.writerow(_balance_row("opening_balance", day, statement, statement.opening_balance))
    balance = statement.opening_balance
    for line in statement.lines:
        balance += signed(line.direction, line.amount)
        writer.writerow(
            (
                line.booked_on.isoformat(),
                line.value_on.isoformat(),
                line.kind,
                line.direction,
                line.amount,
                line.currency,
                line.reference,
                line.bank_transaction_id,
                balance,
                line.narrative,
            )
        )
    writer.writerow(_balance_row("closing_balance", day, statement, statement.closing_balance))
    return out.getvalue()


def _balance_row(kind: str, day: str, statement: Statement, balance: int) -> tuple[object, ...]:
    direction = "C" if balance >= 0 else "D"
    return (day, day, kind, direction, abs(balance), statement.currency, "", "", balance, "")
