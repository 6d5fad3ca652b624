"""Statements of the nostro account: each format read back by an independent library,
balances that add up (within a day and from one day to the next), and the configured
discrepancies: fees, lines booked a day late, lines nobody asked for."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner
from xsdata.exceptions import ParserError

from payflow.banksim.accounts import NOSTRO_OPENING_BALANCE
from payflow.banksim.domain import Statement, StatementLine
from payflow.banksim.statements import write_camt053, write_csv, write_mt940
from payflow.banksim.statements.amounts import decimal_text
from payflow.cli import app
from tests.banksim.conftest import Bank, BankFactory, reference
from tests.banksim.parsers import (
    Parsed,
    check_against_schema,
    read_camt053,
    read_csv,
    read_mt940,
)


def _today() -> date:
    return datetime.now(UTC).date()


async def statements(bank: Bank, day: date) -> Parsed:
    """The day's statement in all three formats; they must say the same thing."""
    parsed = []
    for fmt, reader in (("csv", read_csv), ("mt940", read_mt940), ("camt053", read_camt053)):
        response = await bank.http.get(f"/v1/statements/{day.isoformat()}", params={"format": fmt})
        assert response.status_code == 200, response.text
        content: Any = response.content if fmt == "camt053" else response.text
        parsed.append(reader(content))
    assert parsed[0] == parsed[1] == parsed[2]
    statement = parsed[0]
    assert statement.closing == statement.opening + sum(line.amount for line in statement.lines)
    return statement


async def _credit(bank: Bank, **overrides: Any) -> dict[str, Any]:
    response = await bank.credit(**overrides)
    assert response.status_code == 200, response.text
    outcome: dict[str, Any] = response.json()
    return outcome


class TestFormats:
    async def test_an_empty_day(self, new_bank: BankFactory) -> None:
        async with new_bank() as bank:
            statement = await statements(bank, _today())
        assert statement == Parsed(NOSTRO_OPENING_BALANCE, NOSTRO_OPENING_BALANCE, [])

    async def test_content_types(self, bank: Bank) -> None:
        expected = {"csv": "text/csv", "mt940": "text/plain", "camt053": "application/xml"}
        for fmt, media_type in expected.items():
            response = await bank.http.get(
                f"/v1/statements/{_today().isoformat()}", params={"format": fmt}
            )
            assert response.headers["content-type"].startswith(media_type)
        default = await bank.http.get(f"/v1/statements/{_today().isoformat()}")
        assert default.headers["content-type"].startswith("text/csv")

    def test_zero_and_three_decimal_currencies(self) -> None:
        assert decimal_text(1234, "JPY") == "1234"
        assert decimal_text(1234, "JPY", separator=",") == "1234,"
        assert decimal_text(1234, "KWD") == "1.234"
        assert decimal_text(5, "INR", separator=",") == "0,05"
        day = date(2026, 3, 4)
        line = StatementLine(day, day, "payment", "D", 1500, "JPY", "ref_1", "SB0000000000000A", "")
        statement = Statement(day, "SIMB0000001", "1", "n", "JPY", 10_000, 8_500, (line,))
        # JPY has no minor digits, so minor units are yen: the readers scale by 100.
        for parsed in (
            read_mt940(write_mt940(statement)),
            read_camt053(write_camt053(statement).encode()),
        ):
            assert (parsed.opening, parsed.closing) == (1_000_000, 850_000)
            assert parsed.lines[0].amount == -150_000
        assert read_csv(write_csv(statement)).lines[0].amount == -1500


class TestLines:
    async def test_credited_credits_are_debit_lines_and_balances_add_up(
        self, new_bank: BankFactory
    ) -> None:
        async with new_bank("postgresql") as bank:
            long_reference = "pyt_" + "a" * 60  # too long for MT940's and camt's own fields
            credited = [
                await _credit(bank, amount=amount, reference=ref)
                for amount, ref in ((1_000, reference()), (250_075, long_reference), (1, "r"))
            ]
            rejected = await _credit(bank, destination={"vpa": "ghost@okbank"})
            statement = await statements(bank, _today())
            tomorrow = await statements(bank, _today() + timedelta(days=1))
            yesterday = await statements(bank, _today() - timedelta(days=1))
        assert [
            (line.reference, line.bank_transaction_id, line.amount) for line in statement.lines
        ] == [(c["reference"], c["bank_transaction_id"], -c["amount"]) for c in credited]
        assert {line.kind for line in statement.lines} == {"payment"}
        assert rejected["reference"] not in {line.reference for line in statement.lines}
        assert statement.opening == NOSTRO_OPENING_BALANCE
        assert statement.closing == NOSTRO_OPENING_BALANCE - 251_076
        assert tomorrow == Parsed(statement.closing, statement.closing, [])
        assert yesterday == Parsed(NOSTRO_OPENING_BALANCE, NOSTRO_OPENING_BALANCE, [])

    async def test_lines_on_the_shared_bank_are_consistent(self, bank: Bank) -> None:
        outcome = await _credit(bank)
        statement = await statements(bank, _today())
        mine = [line for line in statement.lines if line.reference == outcome["reference"]]
        assert [(line.amount, line.kind) for line in mine] == [(-outcome["amount"], "payment")]
        assert (await statements(bank, _today() + timedelta(days=1))).opening == statement.closing


class TestDiscrepancies:
    async def test_a_fee_line_per_credit(self, bank: Bank) -> None:
        await bank.configure(fee_per_credit=250)
        outcome = await _credit(bank, amount=10_000)
        statement = await statements(bank, _today())
        mine = [line for line in statement.lines if line.reference == outcome["reference"]]
        assert [(line.kind, line.amount) for line in mine] == [("payment", -10_000), ("fee", -250)]
        assert mine[0].bank_transaction_id == outcome["bank_transaction_id"]
        assert mine[1].bank_transaction_id != outcome["bank_transaction_id"]

    async def test_missing_lines_are_booked_the_next_day(self, bank: Bank) -> None:
        await bank.configure(missing_line_rate=1, fee_per_credit=5)
        outcome = await _credit(bank)
        today, tomorrow = _today(), _today() + timedelta(days=1)
        first = await statements(bank, today)
        assert outcome["reference"] not in {line.reference for line in first.lines}
        second = await statements(bank, tomorrow)
        mine = [line for line in second.lines if line.reference == outcome["reference"]]
        assert [(line.kind, line.amount) for line in mine] == [
            ("payment", -outcome["amount"]),
            ("fee", -5),
        ]
        assert {(line.booked_on, line.value_on) for line in mine} == {
            (tomorrow.isoformat(), today.isoformat())
        }
        assert second.opening == first.closing

    async def test_unexpected_lines(self, bank: Bank) -> None:
        await bank.configure(unexpected_line_rate=1)
        outcome = await _credit(bank, amount=900)
        statement = await statements(bank, _today())
        unexpected = [
            line
            for line in statement.lines
            if line.kind == "unexpected"
            and line.reference == "UNX" + outcome["bank_transaction_id"][2:]
        ]
        assert len(unexpected) == 1
        assert -900 <= unexpected[0].amount <= -1

    async def test_discrepancies_repeat_with_the_seed(self, new_bank: BankFactory) -> None:
        # Each run has a store of its own, so the same references can be used again.
        references = [f"seeded_{i}" for i in range(40)]

        async def run(seed: int) -> tuple[set[str], dict[str, int]]:
            values = {"seed": seed, "missing_line_rate": 0.5, "unexpected_line_rate": 0.5}
            async with new_bank(**values) as bank:
                outcomes = [await _credit(bank, reference=ref) for ref in references]
                statement = await statements(bank, _today())
            present = {line.reference for line in statement.lines if line.kind == "payment"}
            by_id = {o["bank_transaction_id"][2:]: o["reference"] for o in outcomes}
            unexpected = {
                by_id[line.reference[3:]]: line.amount
                for line in statement.lines
                if line.kind == "unexpected"
            }
            return set(references) - present, unexpected

        first, again, other = await run(11), await run(11), await run(12)
        assert first == again
        assert first != other
        missing, unexpected = first
        assert 8 <= len(missing) <= 32 and 8 <= len(unexpected) <= 32


class TestStatementCommand:
    async def test_prints_a_statement(self, bank: Bank) -> None:
        outcome = await _credit(bank)
        runner = CliRunner()
        args = ["bank-sim", "statement", "--date", _today().isoformat(), "--format", "mt940"]
        result = await asyncio.to_thread(runner.invoke, app, [*args, "--url", bank.url])
        assert result.exit_code == 0, result.output
        assert outcome["bank_transaction_id"] in result.output
        bad = await asyncio.to_thread(
            runner.invoke, app, ["bank-sim", "statement", "--date", "nope", "--url", bank.url]
        )
        assert bad.exit_code == 1 and "invalid_date" in bad.output


class TestSchemaCheck:
    """The camt.053 check itself refuses documents the schema does not allow."""

    async def test_refuses_what_the_schema_does_not_allow(self, bank: Bank) -> None:
        await _credit(bank)
        response = await bank.http.get(
            f"/v1/statements/{_today().isoformat()}", params={"format": "camt053"}
        )
        good = response.text
        read_camt053(good.encode())
        tampered = [
            good.replace("<Sts>", "<Surprise>1</Surprise><Sts>", 1),  # unknown element
            good.replace('Ccy="INR"', 'Ccy="inr"', 1),  # pattern [A-Z]{3}
            good.replace("<CdtDbtInd>DBIT<", "<CdtDbtInd>DEBIT<", 1),  # not in the code list
            good.replace("<MsgId>", "<MsgId>" + "M" * 35, 1),  # Max35Text
            good.replace("<Cd>BOOK</Cd>", "<Cd></Cd>", 1),  # min length 1
        ]
        for document in tampered:
            assert document != good
            with pytest.raises((ParserError, AssertionError)):
                check_against_schema(document.encode())
