"""The simulator's HTTP bodies. Strict: amounts are JSON integers, never floats,
strings or booleans; unknown fields are refused."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from payflow.banksim.domain import (
    ACCOUNT_NUMBER_PATTERN,
    BANK_CODE_PATTERN,
    FAULTS_BY_OPERATION,
    NARRATIVE_LENGTH_MAX,
    REFERENCE_PATTERN,
    CreditRequest,
    CreditStatus,
    is_other_bank_vpa,
)
from payflow.money import AMOUNT_MAX, is_currency

_STRICT = ConfigDict(extra="forbid", strict=True)
# Unix seconds up to the year 10000: no later `not_after` means anything.
_NOT_AFTER_MAX = 253_402_300_799


def _check_currency(value: str) -> str:
    if not is_currency(value):
        raise ValueError(f"{value!r} is not an ISO 4217 currency")
    return value


def _check_vpa(value: str | None) -> str | None:
    if value is not None and not is_other_bank_vpa(value):
        raise ValueError("a VPA is name@bank, and not at PayFlow itself")
    return value


class DestinationIn(BaseModel):
    """A VPA, or a bank code with an account number."""

    model_config = _STRICT

    vpa: str | None = Field(default=None, max_length=96, examples=["asha@okbank"])
    bank_code: str | None = Field(default=None, pattern=BANK_CODE_PATTERN)
    account_number: str | None = Field(default=None, pattern=ACCOUNT_NUMBER_PATTERN)

    _vpa = field_validator("vpa")(_check_vpa)

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        by_account = self.bank_code is not None or self.account_number is not None
        if self.vpa is not None and by_account:
            raise ValueError("give a vpa, or a bank_code with an account_number: not both")
        if self.vpa is None and (self.bank_code is None or self.account_number is None):
            raise ValueError("give a vpa, or a bank_code with an account_number")
        return self


class CreditIn(BaseModel):
    """A credit request."""

    model_config = _STRICT

    reference: str = Field(pattern=REFERENCE_PATTERN, examples=["pyt_0190a1b2c3"])
    amount: int = Field(ge=1, le=AMOUNT_MAX, examples=[125_000])
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["INR"])
    destination: DestinationIn
    narrative: str = Field(default="", max_length=NARRATIVE_LENGTH_MAX)
    not_after: int = Field(ge=0, le=_NOT_AFTER_MAX, description="Unix seconds")

    _currency = field_validator("currency")(_check_currency)

    def to_domain(self) -> CreditRequest:
        return CreditRequest(
            reference=self.reference,
            amount=self.amount,
            currency=self.currency,
            vpa=self.destination.vpa,
            bank_code=self.destination.bank_code,
            account_number=self.destination.account_number,
            not_after=self.not_after,
            narrative=self.narrative,
        )


class CreditOut(BaseModel):
    """What the bank says about a credit. `reason` is set for rejections; times are
    RFC 3339 UTC, `completed_at` null while processing."""

    reference: str
    status: CreditStatus
    reason: str | None
    bank_transaction_id: str | None
    amount: int
    currency: str
    received_at: str
    completed_at: str | None


class AccountIn(BaseModel):
    """An account at another bank that credits can be sent to."""

    model_config = _STRICT

    bank_code: str = Field(pattern=BANK_CODE_PATTERN, examples=["OKBK0000001"])
    account_number: str = Field(pattern=ACCOUNT_NUMBER_PATTERN, examples=["100200300400"])
    name: str = Field(min_length=1, max_length=140)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    vpa: str | None = Field(default=None, max_length=96)
    closed: bool = False

    _currency = field_validator("currency")(_check_currency)
    _vpa = field_validator("vpa")(_check_vpa)


class AccountOut(BaseModel):
    id: int
    bank_code: str
    account_number: str
    vpa: str | None
    name: str
    currency: str
    closed: bool


class AccountList(BaseModel):
    items: list[AccountOut]
    next_after: int | None = Field(description="Pass as `after` for the next page")


class FaultIn(BaseModel):
    """A scripted fault: the next `times` matching requests suffer `kind`."""

    model_config = _STRICT

    operation: Literal["credit", "inquiry"]
    kind: Literal["failure", "timeout", "lost_response", "unavailable"]
    times: int = Field(default=1, ge=1, le=1000)
    reference_prefix: str | None = Field(default=None, pattern=REFERENCE_PATTERN)

    @model_validator(mode="after")
    def _kind_fits(self) -> Self:
        if self.kind not in FAULTS_BY_OPERATION[self.operation]:
            allowed = ", ".join(FAULTS_BY_OPERATION[self.operation])
            raise ValueError(f"an {self.operation} can only suffer: {allowed}")
        return self


class FaultOut(BaseModel):
    operation: str
    kind: str
    times: int
    reference_prefix: str | None


class FaultList(BaseModel):
    items: list[FaultOut]


_RATE = Field(default=None, ge=0, le=1)


class SimConfigIn(BaseModel):
    """Runtime knobs; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(default=None, ge=0, le=60_000, strict=False)
    failure_rate: float | None = _RATE
    timeout_rate: float | None = _RATE
    lost_response_rate: float | None = _RATE
    unavailable_rate: float | None = _RATE
    timeout_hold_s: float | None = Field(default=None, ge=0, le=600)
    seed: int | None = Field(default=None, strict=True)
    fee_per_credit: int | None = Field(default=None, ge=0, le=2**62, strict=True)
    missing_line_rate: float | None = _RATE
    unexpected_line_rate: float | None = _RATE

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_only(cls, value: object, info: ValidationInfo) -> object:
        # Pydantic's lax mode would take "0.5" or true for a float; only the seed may be
        # set back to null (a fresh random seed).
        if isinstance(value, bool | str) or (value is None and info.field_name != "seed"):
            raise ValueError("must be a JSON number")
        return value


class SimConfigOut(BaseModel):
    currency: str
    latency_ms: float
    failure_rate: float
    timeout_rate: float
    lost_response_rate: float
    unavailable_rate: float
    timeout_hold_s: float
    seed: int | None
    fee_per_credit: int
    missing_line_rate: float
    unexpected_line_rate: float
