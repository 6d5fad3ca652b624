"""Minor units written as the decimal amounts statement formats use."""

from __future__ import annotations

from payflow.money import exponent


def decimal_text(amount: int, currency: str, *, separator: str = ".") -> str:
    """`123450, "INR"` → `"1234.50"`; no sign, no thousands separators. MT940 writes its
    decimal comma even with no minor digits (`"1234,"`); XML writes none (`"1234"`)."""
    assert amount >= 0, "statement amounts are written without a sign"
    places = exponent(currency)
    major, minor = divmod(amount, 10**places)
    if places == 0:
        return f"{major}," if separator == "," else str(major)
    return f"{major}{separator}{minor:0{places}d}"
