"""Money: ISO 4217 exponents, formatting and exact parsing of major units, amount bounds."""

from __future__ import annotations

import pytest

from payflow.errors import PayFlowError
from payflow.money import AMOUNT_MAX, exponent, format_amount, is_amount, is_currency, parse_major


class TestExponent:
    @pytest.mark.parametrize(
        ("currency", "expected"),
        [("INR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
    )
    def test_known_currency(self, currency: str, expected: int) -> None:
        assert exponent(currency) == expected
        assert is_currency(currency)

    @pytest.mark.parametrize("currency", ["XYZ", "inr", "", "INRR", " INR"])
    def test_unknown_currency_is_an_expected_failure(self, currency: str) -> None:
        assert not is_currency(currency)
        with pytest.raises(PayFlowError) as caught:
            exponent(currency)
        assert caught.value.code == "currency_unknown"
        assert caught.value.http_status == 422

    @pytest.mark.parametrize("currency", [None, 1, ["INR"]])
    def test_non_string_currency_is_unknown(self, currency: object) -> None:
        assert not is_currency(currency)
        with pytest.raises(PayFlowError) as caught:
            exponent(currency)  # type: ignore[arg-type]
        assert caught.value.code == "currency_unknown"


class TestFormatAmount:
    @pytest.mark.parametrize(
        ("amount", "currency", "expected"),
        [
            (123456, "INR", "1,234.56 INR"),
            (5, "INR", "0.05 INR"),
            (0, "INR", "0.00 INR"),
            (-123456, "INR", "-1,234.56 INR"),
            (-5, "INR", "-0.05 INR"),
            (1234, "JPY", "1,234 JPY"),
            (-7, "JPY", "-7 JPY"),
            (1234567, "KWD", "1,234.567 KWD"),
            (1, "CLF", "0.0001 CLF"),
            (AMOUNT_MAX, "INR", "92,233,720,368,547,758.07 INR"),
        ],
    )
    def test_plain(self, amount: int, currency: str, expected: str) -> None:
        assert format_amount(amount, currency) == expected

    @pytest.mark.parametrize(
        ("amount", "currency", "expected"),
        [
            (123456, "INR", "₹1,234.56"),
            (-123456, "INR", "-₹1,234.56"),
            (1234, "JPY", "¥1,234"),
            (100, "USD", "$1.00"),
            (1000, "KWD", "1.000 KWD"),  # no symbol known: falls back to the code
        ],
    )
    def test_with_symbol(self, amount: int, currency: str, expected: str) -> None:
        assert format_amount(amount, currency, symbol=True) == expected

    def test_unknown_currency(self) -> None:
        with pytest.raises(PayFlowError) as caught:
            format_amount(100, "XYZ")
        assert caught.value.code == "currency_unknown"

    def test_float_amount_is_refused(self) -> None:
        with pytest.raises(AssertionError):
            format_amount(1.5, "INR")  # type: ignore[arg-type]


class TestParseMajor:
    @pytest.mark.parametrize(
        ("text", "currency", "expected"),
        [
            ("12.34", "INR", 1234),
            ("12", "INR", 1200),
            ("12.3", "INR", 1230),
            ("0.01", "INR", 1),
            ("-12.34", "INR", -1234),
            ("1,234.56", "INR", 123456),
            (" 7 ", "INR", 700),
            ("1234", "JPY", 1234),
            ("1.234", "KWD", 1234),
            ("0.0001", "CLF", 1),
            # Exact where a float is not: 2^63 - 1 minor units.
            ("92233720368547758.07", "INR", AMOUNT_MAX),
            ("0.29", "INR", 29),
        ],
    )
    def test_exact(self, text: str, currency: str, expected: int) -> None:
        value = parse_major(text, currency)
        assert value == expected
        assert type(value) is int

    def test_round_trips_with_format_amount(self) -> None:
        for amount in (0, 1, 99, 100, 123456789, AMOUNT_MAX):
            text = format_amount(amount, "KWD").removesuffix(" KWD")
            assert parse_major(text, "KWD") == amount

    @pytest.mark.parametrize(
        ("text", "currency"),
        [("12.345", "INR"), ("1.5", "JPY"), ("1.2345", "KWD"), ("0.00001", "CLF")],
    )
    def test_too_many_decimals(self, text: str, currency: str) -> None:
        with pytest.raises(PayFlowError) as caught:
            parse_major(text, currency)
        assert caught.value.code == "amount_invalid"
        assert caught.value.http_status == 422

    @pytest.mark.parametrize(
        "text",
        [
            "",
            " ",
            "abc",
            "1e3",
            "1.",
            ".5",
            "--1",
            "+5",
            "1.2.3",
            "NaN",
            "inf",
            "0x10",
            "1 2",
            "١٢٣",
            "1,2,3.4,5",
            "_1_",
            "1_000",
            "12,34",
            ",123",
            "1,234,5",
        ],
    )
    def test_garbage(self, text: str) -> None:
        with pytest.raises(PayFlowError) as caught:
            parse_major(text, "INR")
        assert caught.value.code == "amount_invalid"

    def test_thousands_separators(self) -> None:
        assert parse_major("1,234,567.89", "INR") == 123_456_789

    def test_bounded_by_the_largest_amount(self) -> None:
        assert parse_major("92233720368547758.07", "INR") == 2**63 - 1
        with pytest.raises(PayFlowError) as caught:
            parse_major("92233720368547758.08", "INR")
        assert caught.value.code == "amount_invalid"

    def test_unknown_currency(self) -> None:
        with pytest.raises(PayFlowError) as caught:
            parse_major("1.00", "XYZ")
        assert caught.value.code == "currency_unknown"


class TestIsAmount:
    @pytest.mark.parametrize("value", [1, 2, 10**18, AMOUNT_MAX, 2**63 - 1])
    def test_valid(self, value: object) -> None:
        assert is_amount(value)

    @pytest.mark.parametrize("value", [0, -1, 2**63, 2**64, True, False, 1.0, "1", None, [1]])
    def test_invalid(self, value: object) -> None:
        assert not is_amount(value)
