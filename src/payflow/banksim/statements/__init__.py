"""End-of-day statements of PayFlow's nostro account, in the formats banks send:
CSV (documented header), SWIFT MT940 and ISO 20022 camt.053.001.08."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from payflow.banksim.domain import Statement
from payflow.banksim.statements.camt053 import write_camt053
from payflow.banksim.statements.csv import write_csv
from payflow.banksim.statements.mt940 import write_mt940

WRITERS: Final[dict[str, tuple[Callable[[Statement], str], str]]] = {
    "csv": (write_csv, "text/csv; charset=utf-8"),
    "mt940": (write_mt940, "text/plain; charset=utf-8"),
    "camt053": (write_camt053, "application/xml; charset=utf-8"),
}

__all__ = ["WRITERS", "write_camt053", "write_csv", "write_mt940"]
