"""The statement as ISO 20022 camt.053.001.08 (BankToCustomerStatementV08).

Balances: `OPBD` (opening booked) and `CLBD` (closing booked). Each line is an `Ntry`
with `AcctSvcrRef` = the bank transaction id and, in its transaction details,
`EndToEndId` = the credit's reference when it fits the 35 characters ISO 20022 allows
(else `NOTPROVIDED`); the first `RmtInf/Ustrd` always carries the full reference and the
second the narrative, if any. Bank transaction codes: payments
`PMNT/ICDT/DMCT`, fees `ACMT/MDOP/CHRG`, unexpected lines `ACMT/MDOP/OTHR`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from payflow.banksim.domain import Statement, StatementLine
from payflow.banksim.statements.amounts import decimal_text

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"
_CODES = {
    "payment": ("PMNT", "ICDT", "DMCT"),
    "fee": ("ACMT", "MDOP", "CHRG"),
    "unexpected": ("ACMT", "MDOP", "OTHR"),
}
_DIRECTIONS = {"D": "DBIT", "C": "CRDT"}
_END_TO_END_MAX = 35


def write_camt053(statement: Statement, *, created_at: datetime | None = None) -> str:
    """The statement as camt.053.001.08 XML text."""
    created = (created_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    document = ET.Element("Document", xmlns=NAMESPACE)
    root = ET.SubElement(document, "BkToCstmrStmt")
    header = ET.SubElement(root, "GrpHdr")
    _text(header, "MsgId", f"MSG{statement.statement_id}")
    _text(header, "CreDtTm", created)
    stmt = ET.SubElement(root, "Stmt")
    _text(stmt, "Id", statement.statement_id)
    _text(stmt, "ElctrncSeqNb", str(statement.number))
    _text(stmt, "CreDtTm", created)
    period = ET.SubElement(stmt, "FrToDt")
    _text(period, "FrDtTm", f"{statement.day.isoformat()}T00:00:00Z")
    _text(period, "ToDtTm", f"{statement.day.isoformat()}T23:59:59Z")
    account = ET.SubElement(stmt, "Acct")
    other = ET.SubElement(ET.SubElement(account, "Id"), "Othr")
    _text(other, "Id", statement.account_number)
    _text(account, "Ccy", statement.currency)
    _text(account, "Nm", statement.account_name)
    servicer = ET.SubElement(ET.SubElement(account, "Svcr"), "FinInstnId")
    _text(ET.SubElement(servicer, "Othr"), "Id", statement.bank_code)
    _balance(stmt, "OPBD", statement.opening_balance, statement)
    _balance(stmt, "CLBD", statement.closing_balance, statement)
    for line in statement.lines:
        _entry(stmt, line)
    ET.indent(document)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(document, "unicode") + "\n"


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _amount(parent: ET.Element, amount: int, currency: str) -> None:
    element = _text(parent, "Amt", decimal_text(amount, currency))
    element.set("Ccy", currency)


def _balance(parent: ET.Element, code: str, balance: int, statement: Statement) -> None:
    element = ET.SubElement(parent, "Bal")
    _text(ET.SubElement(ET.SubElement(element, "Tp"), "CdOrPrtry"), "Cd", code)
    _amount(element, abs(balance), statement.currency)
    _text(element, "CdtDbtInd", "CRDT" if balance >= 0 else "DBIT")
    _text(ET.SubElement(element, "Dt"), "Dt", statement.day.isoformat())


def _entry(parent: ET.Element, line: StatementLine) -> None:
    entry = ET.SubElement(parent, "Ntry")
    _text(entry, "NtryRef", line.bank_transaction_id)
    _amount(entry, line.amount, line.currency)
    _text(entry, "CdtDbtInd", _DIRECTIONS[line.direction])
    _text(ET.SubElement(entry, "Sts"), "Cd", "BOOK")
    _text(ET.SubElement(entry, "BookgDt"), "Dt", line.booked_on.isoformat())
    _text(ET.SubElement(entry, "ValDt"), "Dt", line.value_on.isoformat())
    _text(entry, "AcctSvcrRef", line.bank_transaction_id)
    _bank_transaction_code(entry, line.kind)
    details = ET.SubElement(ET.SubElement(entry, "NtryDtls"), "TxDtls")
    references = ET.SubElement(details, "Refs")
    _text(references, "AcctSvcrRef", line.bank_transaction_id)
    end_to_end = line.reference if len(line.reference) <= _END_TO_END_MAX else "NOTPROVIDED"
    _text(references, "EndToEndId", end_to_end)
    _amount(details, line.amount, line.currency)
    _text(details, "CdtDbtInd", _DIRECTIONS[line.direction])
    remittance = ET.SubElement(details, "RmtInf")
    _text(remittance, "Ustrd", line.reference)
    if line.narrative:
        _text(remittance, "Ustrd", line.narrative[:140])
    _text(entry, "AddtlNtryInf", f"{line.kind.upper()} {line.reference}"[:500])


def _bank_transaction_code(parent: ET.Element, kind: str) -> None:
    domain_code, family_code, sub_family_code = _CODES[kind]
    domain = ET.SubElement(ET.SubElement(parent, "BkTxCd"), "Domn")
    _text(domain, "Cd", domain_code)
    family = ET.SubElement(domain, "Fmly")
    _text(family, "Cd", family_code)
    _text(family, "SubFmlyCd", sub_family_code)
