"""Money is an `int` of minor units plus an ISO 4217 currency. Never a float.

The exponent says how many minor units make a major unit: INR 2 (paise), JPY 0, KWD 3.
"""

from __future__ import annotations

import re
from typing import Final

from payflow.errors import PayFlowError

AMOUNT_MAX: Final = 2**63 - 1
"""The largest amount or balance counter: what a signed 64-bit column can hold."""

# Active ISO 4217 codes whose exponent is not 2.
_EXPONENT_NOT_2: Final = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    **dict.fromkeys("CLF UYW".split(), 4),
}
_EXPONENT_2: Final = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN "
    "BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN "
    "ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES "
    "KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK "
    "MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR "
    "SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD "
    "TZS UAH USD USN UYU UZS VED VES WST XCD YER ZAR ZMW ZWG"
).split()

CURRENCY_EXPONENTS: Final[dict[str, int]] = {
    **dict.fromkeys(_EXPONENT_2, 2),
    **_EXPONENT_NOT_2,
}

_SYMBOLS: Final = {"INR": "₹", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
# ASCII digits only; commas only as thousands separators ("1,234.50").
_MAJOR_RE: Final = re.compile(r"^(-?)(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?$", re.ASCII)


def is_currency(code: object) -> bool:
    """True for an active ISO 4217 alphabetic code such as "INR"."""
    return isinstance(code, str) and code in CURRENCY_EXPONENTS


def exponent(currency: str) -> int:
    """Minor-unit exponent of `currency`; an unknown code is an expected failure."""
    try:
        return int(CURRENCY_EXPONENTS[currency])
    except (KeyError, TypeError):
        raise PayFlowError(
            "currency_unknown", f"{currency!r} is not an ISO 4217 currency", http_status=422
        ) from None


def is_amount(value: object) -> bool:
    """True for a valid transfer amount: an int (not a bool) in 1..2^63−1."""
    return type(value) is int and 1 <= value <= AMOUNT_MAX


def format_amount(amount: int, currency: str, *, symbol: bool = False) -> str:
    """`123456, "INR"` → `"1,234.56 INR"` (or `"₹1,234.56"` with `symbol=True`)."""
    assert type(amount) is int, "amounts are int minor units"
    exp = exponent(currency)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**exp)
    text = f"{major:,}" + (f".{minor:0{exp}d}" if exp else "")
    if symbol and currency in _SYMBOLS:
        return f"{sign}{_SYMBOLS[currency]}{text}"
    return f"{sign}{text} {currency}"


def parse_major(text: str, currency: str) -> int:
    """`"12.34", "INR"` → `1234`, exactly, without floats; too many decimals is an error."""
    exp = exponent(currency)
    match = _MAJOR_RE.match(text.strip())
    if match is None:
        raise PayFlowError("amount_invalid", f"{text!r} is not an amount", http_status=422)
    sign, major, minor = match.group(1), match.group(2).replace(",", ""), match.group(3) or ""
    if len(minor) > exp:
        raise PayFlowError(
            "amount_invalid",
            f"{currency} has {exp} decimal places; {text!r} has {len(minor)}",
            http_status=422,
        )
    scale: int = 10**exp
    value = int(major) * scale + int(minor.ljust(exp, "0") or "0")
    if value > AMOUNT_MAX:
        raise PayFlowError(
            "amount_invalid", f"{text!r} is more than {AMOUNT_MAX} minor units", http_status=422
        )
    return -value if sign else value
