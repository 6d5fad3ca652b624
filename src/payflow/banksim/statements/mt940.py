"""The statement as SWIFT MT940 (the text block, fields `:20:` to `:64:`).

Each line is a `:61:` statement line and a `:86:` information field:
- `:61:` value date, booking date (MMDD), D/C mark, amount (decimal comma), transaction
  type (`NTRF` payment, `NCHG` fee, `NMSC` unexpected), the customer reference (the
  credit's reference when it fits MT940's 16 characters, else `NONREF`) and, after `//`,
  the bank transaction id.
- `:86:` structured: `/EREF/<reference>/BREF/<bank transaction id>/TYPE/<kind>` then
  `/REMI/<narrative>`, in lines of at most 65 characters. The full reference is always
  here, whatever its length.
"""

from __future__ import annotations

import re
from datetime import date

from payflow.banksim.domain import Statement, StatementLine
from payflow.banksim.statements.amounts import decimal_text

_TYPE_CODES = {"payment": "NTRF", "fee": "NCHG", "unexpected": "NMSC"}
_CUSTOMER_REFERENCE_MAX = 16
_LINE_MAX = 65
_LINES_MAX = 6
_UNSAFE = re.compile(r"[^A-Za-z0-9/?().,'+ _-]")


def write_mt940(statement: Statement) -> str:
    """The statement as MT940 text (CRLF line ends, as SWIFT writes them)."""
    fields = [
        f":20:{statement.statement_id}",
        f":25:{statement.bank_code}/{statement.account_number}",
        f":28C:{statement.number % 100_000}/1",
        f":60F:{_balance(statement.opening_balance, statement.day, statement.currency)}",
    ]
    for line in statement.lines:
        fields.append(_statement_line(line))
        fields.append(":86:" + "\r\n".join(_information(line)))
    closing = _balance(statement.closing_balance, statement.day, statement.currency)
    fields += [f":62F:{closing}", f":64:{closing}"]
    return "\r\n".join(fields) + "\r\n-\r\n"


def _balance(balance: int, day: date, currency: str) -> str:
    mark = "C" if balance >= 0 else "D"
    return f"{mark}{day:%y%m%d}{currency}{decimal_text(abs(balance), currency, separator=',')}"


def _statement_line(line: StatementLine) -> str:
    reference = line.reference
    if len(reference) > _CUSTOMER_REFERENCE_MAX:
        reference = "NONREF"
    amount = decimal_text(line.amount, line.currency, separator=",")
    return (
        f":61:{line.value_on:%y%m%d}{line.booked_on:%m%d}{line.direction}{amount}"
        f"{_TYPE_CODES[line.kind]}{reference}//{line.bank_transaction_id}"
    )


def _information(line: StatementLine) -> list[str]:
    text = (
        f"/EREF/{line.reference}/BREF/{line.bank_transaction_id}/TYPE/{line.kind}"
        f"/REMI/{line.narrative}"
    )
    # Only characters MT940 readers take (SWIFT's x set, plus `_` for references), and
    # no `:`, so that no wrapped line can pass for the start of a new field.
    text = " ".join(_UNSAFE.sub(" ", text).split())
    lines = [text[i : i + _LINE_MAX] for i in range(0, len(text), _LINE_MAX)]
    return lines[:_LINES_MAX]
