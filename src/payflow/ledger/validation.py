"""Field-level checks of one transfer, before any account is looked at. Pure."""

from __future__ import annotations

import uuid

from payflow.ledger.domain import (
    CODE_MAX,
    NIL_ID,
    TIMEOUT_S_MAX,
    TRANSFER_FLAGS_CLIENT,
    Transfer,
    TransferFlags,
)
from payflow.ledger.domain import TransferResult as R
from payflow.money import AMOUNT_MAX, is_currency

_PENDING = int(TransferFlags.PENDING)
_RESOLUTION = int(TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING)
_EXPIRY = int(TransferFlags.EXPIRY)
_VOID = int(TransferFlags.VOID_PENDING)
_CLIENT = int(TRANSFER_FLAGS_CLIENT)
# The phase flags (pending, post, void) in bits 1..3: at most one may be set.
_PHASE_SHIFT = 1
_PHASE_EXCLUSIVE_OK = frozenset({0, 1, 2, 4})


def is_int(value: object) -> bool:
    """An int that is not a bool."""
    # bool is an int subclass; True is not an amount.
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def check_fields(transfer: Transfer, *, allow_expiry: bool = False) -> R | None:
    """The first field-level problem of `transfer`, or None when its fields are valid."""
    if not isinstance(transfer.id, uuid.UUID):
        return R.ID_INVALID
    if transfer.id == NIL_ID:
        return R.ID_MUST_NOT_BE_ZERO
    flags = transfer.flags
    if not is_int(flags) or flags < 0:
        return R.FLAGS_INVALID
    flags = int(flags)
    if flags & ~(_CLIENT | (_EXPIRY if allow_expiry else 0)):
        return R.FLAGS_INVALID
    if (flags >> _PHASE_SHIFT) & 7 not in _PHASE_EXCLUSIVE_OK:
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if flags & _EXPIRY and not flags & _VOID:
        return R.FLAGS_INVALID
    resolving = bool(flags & _RESOLUTION)
    code = _check_pending_id(transfer, resolving=resolving)
    if code is None:
        code = _check_timeout(transfer)
    if code is None:
        code = _check_accounts(transfer, resolving=resolving)
    if code is None:
        code = _check_amount(transfer.amount, optional=resolving)
    if code is None:
        code = _check_currency(transfer.currency, optional=resolving)
    if code is None and (not is_int(transfer.code) or not 0 <= transfer.code <= CODE_MAX):
        code = R.CODE_INVALID
    return code


def _check_pending_id(transfer: Transfer, *, resolving: bool) -> R | None:
    pending_id = transfer.pending_id
    if pending_id is not None and not isinstance(pending_id, uuid.UUID):
        return R.PENDING_ID_INVALID
    if not resolving:
        return None if pending_id is None or pending_id == NIL_ID else R.PENDING_ID_MUST_BE_ZERO
    if pending_id is None or pending_id == NIL_ID:
        return R.PENDING_ID_MUST_NOT_BE_ZERO
    if pending_id == transfer.id:
        return R.PENDING_ID_MUST_BE_DIFFERENT
    return None


def _check_timeout(transfer: Transfer) -> R | None:
    timeout_s = transfer.timeout_s
    if not is_int(timeout_s) or not 0 <= timeout_s <= TIMEOUT_S_MAX:
        return R.TIMEOUT_INVALID
    if timeout_s and not transfer.flags & _PENDING:
        return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    return None


def _check_accounts(transfer: Transfer, *, resolving: bool) -> R | None:
    debit_id, credit_id = transfer.debit_account_id, transfer.credit_account_id
    if debit_id is not None and not isinstance(debit_id, uuid.UUID):
        return R.DEBIT_ACCOUNT_ID_INVALID
    if credit_id is not None and not isinstance(credit_id, uuid.UUID):
        return R.CREDIT_ACCOUNT_ID_INVALID
    if not resolving:
        if debit_id is None or debit_id == NIL_ID:
            return R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
        if credit_id is None or credit_id == NIL_ID:
            return R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if debit_id is not None and debit_id != NIL_ID and debit_id == credit_id:
        return R.ACCOUNTS_MUST_BE_DIFFERENT
    return None


def _check_amount(amount: object, *, optional: bool) -> R | None:
    if amount is None and optional:
        return None
    if not is_int(amount):
        return R.AMOUNT_MUST_BE_INTEGER
    assert isinstance(amount, int)
    if amount < 0:
        return R.AMOUNT_MUST_NOT_BE_NEGATIVE
    if amount == 0:
        return R.AMOUNT_MUST_NOT_BE_ZERO
    if amount > AMOUNT_MAX:
        return R.AMOUNT_MUST_NOT_EXCEED_MAX
    return None


def _check_currency(currency: object, *, optional: bool) -> R | None:
    if currency is None or currency == "":
        return None if optional else R.CURRENCY_MUST_NOT_BE_EMPTY
    return None if is_currency(currency) else R.CURRENCY_UNKNOWN


def compare_existing(transfer: Transfer, existing: Transfer) -> R:
    """`exists` when a retried transfer matches the stored one, else the first difference.

    Fields a post/void left as None were filled from the pending transfer, so they are
    not compared.
    """
    if transfer.flags != existing.flags:
        return R.EXISTS_WITH_DIFFERENT_FLAGS
    if transfer.pending_id != existing.pending_id and transfer.pending_id != NIL_ID:
        return R.EXISTS_WITH_DIFFERENT_PENDING_ID
    checks = (
        (
            transfer.debit_account_id,
            existing.debit_account_id,
            R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID,
        ),
        (
            transfer.credit_account_id,
            existing.credit_account_id,
            R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID,
        ),
        (transfer.amount, existing.amount, R.EXISTS_WITH_DIFFERENT_AMOUNT),
        (transfer.currency, existing.currency, R.EXISTS_WITH_DIFFERENT_CURRENCY),
    )
    for requested, stored, code in checks:
        if requested not in (None, NIL_ID, "") and requested != stored:
            return code
    if transfer.code and transfer.code != existing.code:
        return R.EXISTS_WITH_DIFFERENT_CODE
    if not transfer.flags & _RESOLUTION and transfer.code != existing.code:
        return R.EXISTS_WITH_DIFFERENT_CODE
    if transfer.timeout_s != existing.timeout_s:
        return R.EXISTS_WITH_DIFFERENT_TIMEOUT
    return R.EXISTS
