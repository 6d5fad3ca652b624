"""PayFlow's client for the partner bank: credit requests and status inquiries.

Every way a call can end maps to one of four answers, so the payout saga never guesses:
an outcome (credited, rejected or still processing), `BankUnavailable` (the bank did not
take the request: sending it again is safe), `BankOutcomeUnknown` (the bank may have
acted: inquire before doing anything else) or `BankRequestRefused` (the request itself is
wrong: retrying cannot help).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, cast

import httpx

CreditStatus = Literal["credited", "rejected", "processing"]
_STATUSES: frozenset[str] = frozenset({"credited", "rejected", "processing"})


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a credit goes: a VPA (`name@bank`) or a bank code plus account number."""

    vpa: str | None = None
    bank_code: str | None = None
    account_number: str | None = None

    def to_json(self) -> dict[str, str]:
        """The bank's JSON form: the fields that are set (the bank refuses a destination
        that is neither one form nor the other, or both)."""
        fields = {
            "vpa": self.vpa,
            "bank_code": self.bank_code,
            "account_number": self.account_number,
        }
        return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True, slots=True)
class CreditOutcome:
    """What the bank says about one credit."""

    reference: str
    status: CreditStatus
    reason: str | None
    bank_transaction_id: str | None
    amount: int
    currency: str


class BankError(Exception):
    """The bank gave no outcome."""


class BankUnavailable(BankError):
    """The bank definitely did not process the request: it is safe to send it again."""


class BankOutcomeUnknown(BankError):
    """Timeout, dropped connection or lost response: the bank may have acted; inquire."""


class BankRequestRefused(BankError):
    """The bank refused the request as wrong (4xx, e.g. `reference_reused`): do not retry."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


# Errors raised before the request left this process: the bank never saw it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class BankClient:
    """An HTTP client for the partner bank's `/v1` API (one connection pool)."""

    def __init__(self, base_url: str, *, timeout_s: float = 5.0) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s)

    async def credit(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        destination: Destination,
        not_after: int,
        narrative: str = "",
    ) -> CreditOutcome:
        """Ask the bank to credit `destination` from PayFlow's account, idempotently by
        `reference`: sending the same request again never credits twice."""
        body = {
            "reference": reference,
            "amount": amount,
            "currency": currency,
            "destination": destination.to_json(),
            "not_after": not_after,
            "narrative": narrative,
        }
        response = await self._send("POST", "/v1/credits", json=body)
        return _outcome(response)

    async def inquire(self, reference: str) -> CreditOutcome | None:
        """The bank's outcome for `reference`, or None when it never received that credit."""
        response = await self._send("GET", f"/v1/credits/{reference}", not_found_ok=True)
        if response.status_code == 404:
            return None
        return _outcome(response)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> BankClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(
        self, method: str, path: str, *, json: Any = None, not_found_ok: bool = False
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=json)
        except _NOT_SENT as error:
            raise BankUnavailable(f"bank not reachable: {error!r}") from error
        except httpx.TransportError as error:
            # Sent, perhaps processed, answer not received (read timeout, reset, ...).
            raise BankOutcomeUnknown(f"no answer from the bank: {error!r}") from error
        status = response.status_code
        if status in (200, 201) or (
            status == 404 and not_found_ok and _code(response) == "not_found"
        ):
            return response
        if status in (429, 503):
            raise BankUnavailable(f"bank unavailable ({status})")
        if 400 <= status < 500:
            code = _code(response)
            raise BankRequestRefused(
                f"bank refused the request: {status} {code}", status=status, code=code
            )
        # 500, 502 (a proxy lost the bank's answer), 504 and anything unexpected: the bank
        # may have processed the request.
        raise BankOutcomeUnknown(f"bank answered {status} without an outcome")


def _code(response: httpx.Response) -> str | None:
    try:
        document = response.json()
    except ValueError:
        return None
    code = document.get("code") if isinstance(document, dict) else None
    return code if isinstance(code, str) else None


def _outcome(response: httpx.Response) -> CreditOutcome:
    try:
        data = response.json()
        status = data["status"]
        amount = data["amount"]
        if status not in _STATUSES or type(amount) is not int:
            raise ValueError(f"bad outcome: {data!r}")
        return CreditOutcome(
            reference=str(data["reference"]),
            status=cast(CreditStatus, status),
            reason=_optional_str(data.get("reason")),
            bank_transaction_id=_optional_str(data.get("bank_transaction_id")),
            amount=amount,
            currency=str(data["currency"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        # A 2xx whose body is not an outcome: as good as no answer.
        raise BankOutcomeUnknown(f"unreadable answer from the bank: {error!r}") from error


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
