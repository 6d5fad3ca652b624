"""Statements read back with independent libraries: `mt-940` for MT940, `pycamt` for
camt.053 (plus a strict `xsdata` parse into `pyiso20022`'s classes generated from the
ISO 20022 schema, with the schema's facets checked), and the standard `csv` module."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

import mt940
from pycamt.parser import Camt053Parser  # type: ignore[import-untyped]
from pyiso20022.camt.camt_053_001_08.camt_053_001_08 import (  # type: ignore[import-untyped]
    Document,
)
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig

from payflow.banksim.statements.csv import HEADER


@dataclass(frozen=True)
class Line:
    reference: str
    bank_transaction_id: str
    amount: int  # signed minor units: debits negative
    kind: str
    booked_on: str
    value_on: str


@dataclass(frozen=True)
class Parsed:
    opening: int
    closing: int
    lines: list[Line]


def _minor(value: Decimal | str, exponent: int = 2) -> int:
    scaled = Decimal(value) * 10**exponent
    assert scaled == scaled.to_integral_value(), value
    return int(scaled)


def read_csv(text: str) -> Parsed:
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert tuple(rows[0].keys()) == HEADER
    assert rows[0]["kind"] == "opening_balance" and rows[-1]["kind"] == "closing_balance"
    lines = [
        Line(
            reference=row["reference"],
            bank_transaction_id=row["bank_transaction_id"],
            amount=int(row["amount"]) * (-1 if row["direction"] == "D" else 1),
            kind=row["kind"],
            booked_on=row["booking_date"],
            value_on=row["value_date"],
        )
        for row in rows[1:-1]
    ]
    balance = int(rows[0]["balance_after"])
    for row, line in zip(rows[1:-1], lines, strict=True):
        balance += line.amount
        assert int(row["balance_after"]) == balance
    return Parsed(int(rows[0]["balance_after"]), int(rows[-1]["balance_after"]), lines)


_TYPES = {"NTRF": "payment", "NCHG": "fee", "NMSC": "unexpected"}


def read_mt940(text: str) -> Parsed:
    statement = mt940.parse(text)
    data = statement.data

    def balance(name: str) -> int:
        return _minor(data[name].amount.amount)

    lines = []
    for transaction in statement:
        t = transaction.data
        details = t["transaction_details"].replace("\n", "")
        match = re.match(r"^/EREF/(.*)/BREF/(\w+)/TYPE/(\w+)/REMI/", details)
        assert match is not None, details
        reference, bank_reference, kind = match.groups()
        assert bank_reference == t["bank_reference"]
        assert kind == _TYPES[t["id"]]
        assert t["customer_reference"] in (reference, "NONREF")
        lines.append(
            Line(
                reference=reference,
                bank_transaction_id=t["bank_reference"],
                amount=_minor(t["amount"].amount),
                kind=kind,
                booked_on=t["entry_date"].isoformat(),
                value_on=t["date"].isoformat(),
            )
        )
    assert data["final_closing_balance"].amount == data["available_balance"].amount
    return Parsed(balance("final_opening_balance"), balance("final_closing_balance"), lines)


_KINDS = {"DMCT": "payment", "CHRG": "fee", "OTHR": "unexpected"}


def read_camt053(content: bytes) -> Parsed:
    check_against_schema(content)
    parser = Camt053Parser(content)
    assert parser.version == "camt.053.001.08"
    (info,) = parser.get_statement_info()
    lines = []
    for entry in parser.get_transactions():
        assert entry["Status"] == "BOOK"
        sign = -1 if entry["CreditDebitIndicator"] == "DBIT" else 1
        reference = entry["RemittanceInformation"]
        assert entry["EndToEndId"] in (reference, "NOTPROVIDED")
        lines.append(
            Line(
                reference=reference,
                bank_transaction_id=entry["TransactionID"],
                amount=sign * _minor(entry["Amount"]),
                kind=_KINDS[entry["TransactionSubFamilyCode"]],
                booked_on=entry["BookingDate"],
                value_on=entry["ValueDate"],
            )
        )
    return Parsed(_minor(info["OpeningBalance"]), _minor(info["ClosingBalance"]), lines)


def check_against_schema(content: bytes) -> None:
    """Parse into the classes generated from the camt.053.001.08 schema, refusing anything
    unknown, then check each value against the schema's facets kept in their metadata."""
    config = ParserConfig(
        fail_on_unknown_properties=True,
        fail_on_unknown_attributes=True,
        fail_on_converter_warnings=True,
    )
    document = XmlParser(config=config).from_bytes(content, Document)
    _check_facets(document, "Document")


def _check_facets(node: Any, path: str) -> None:
    for field in dataclasses.fields(node):
        value = getattr(node, field.name)
        meta = field.metadata
        where = f"{path}/{meta.get('name', field.name)}"
        values = value if isinstance(value, list) else [] if value is None else [value]
        if meta.get("required"):
            assert values, f"{where} is required"
        assert len(values) >= meta.get("min_occurs", 0), f"{where} occurs too few times"
        assert len(values) <= meta.get("max_occurs", len(values)), f"{where} occurs too often"
        for item in values:
            _check_value(item, meta, where)


def _check_value(item: Any, meta: Any, where: str) -> None:
    if dataclasses.is_dataclass(item):
        _check_facets(item, where)
        return
    text = item.value if isinstance(item, Enum) else item
    if isinstance(text, str):
        assert len(text) >= meta.get("min_length", 0), f"{where}: {text!r} too short"
        assert len(text) <= meta.get("max_length", len(text)), f"{where}: {text!r} too long"
        if "pattern" in meta:
            assert re.fullmatch(meta["pattern"], text), f"{where}: {text!r} !~ {meta['pattern']}"
    if isinstance(text, Decimal):
        digits = text.as_tuple()
        assert isinstance(digits.exponent, int)
        if "fraction_digits" in meta:
            assert -digits.exponent <= meta["fraction_digits"], f"{where}: {text}"
        if "total_digits" in meta:
            assert len(digits.digits) <= meta["total_digits"], f"{where}: {text}"
        if "min_inclusive" in meta:
            assert text >= Decimal(str(meta["min_inclusive"])), f"{where}: {text}"
