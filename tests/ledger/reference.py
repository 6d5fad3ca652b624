"""An independent, in-memory reference model of the ledger, for property tests.

It applies a batch one transfer at a time in plain Python, written from TigerBeetle's
semantics (limits, two-phase transfers, timeouts, linked chains, idempotent retries).
It shares no code with the batch engine (`payflow.ledger.batch`/`validation`): only the
types and constants of `payflow.ledger.domain` and `payflow.money`. Where several checks
fail at once, it reports the first in the ledger's documented order, so the two can be
compared code for code. When they disagree, one of them is wrong.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from payflow.ledger.domain import (
    CODE_MAX,
    NIL_ID,
    TIMEOUT_S_MAX,
    AccountFlags,
    PendingStatus,
    Transfer,
    TransferFlags,
    expiry_transfer_id,
)
from payflow.ledger.domain import TransferResult as R
from payflow.money import AMOUNT_MAX, CURRENCY_EXPONENTS

NS_PER_S: Final = 1_000_000_000
Counters = tuple[int, int, int, int]
"""debits_pending, debits_posted, credits_pending, credits_posted."""

_LINKED: Final = int(TransferFlags.LINKED)
_PENDING: Final = int(TransferFlags.PENDING)
_POST: Final = int(TransferFlags.POST_PENDING)
_VOID: Final = int(TransferFlags.VOID_PENDING)
_EXPIRY: Final = int(TransferFlags.EXPIRY)
_CLIENT_FLAGS: Final = _LINKED | _PENDING | _POST | _VOID


@dataclass(slots=True)
class RefAccount:
    """An account's counters and what the model needs to know about it."""

    id: uuid.UUID
    currency: str
    flags: int
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0
    # The end of the last batch that moved money on this account: the next batch that
    # names the account starts after it.
    last_timestamp: int = 0

    @property
    def counters(self) -> Counters:
        return (self.debits_pending, self.debits_posted, self.credits_pending, self.credits_posted)


@dataclass(frozen=True, slots=True)
class RefSnapshot:
    """A `history` account's counters right after one transfer."""

    transfer_id: uuid.UUID
    timestamp: int
    counters: Counters


@dataclass(slots=True)
class _State:
    """Everything a failed linked chain must put back."""

    accounts: dict[uuid.UUID, RefAccount] = field(default_factory=dict)
    transfers: dict[uuid.UUID, Transfer] = field(default_factory=dict)
    status: dict[uuid.UUID, PendingStatus] = field(default_factory=dict)
    history: dict[uuid.UUID, list[RefSnapshot]] = field(default_factory=dict)

    def copy(self) -> _State:
        # Transfer records and snapshots are immutable; accounts and lists are not.
        return _State(
            accounts={key: copy.copy(value) for key, value in self.accounts.items()},
            transfers=dict(self.transfers),
            status=dict(self.status),
            history={key: list(value) for key, value in self.history.items()},
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_given(value: object) -> bool:
    """A post/void may leave a field out (None, the nil id, an empty currency) to take
    the pending transfer's.
    """
    return value is not None and value != NIL_ID and value != ""


def is_linked(transfer: Transfer) -> bool:
    """Whether `transfer` links to the next one: int flags (not a bool) with the bit set."""
    return _is_int(transfer.flags) and bool(transfer.flags & _LINKED)


def expires_at(transfer: Transfer) -> int | None:
    """When a stored pending transfer times out, or None when it never does."""
    if not transfer.flags & _PENDING or not transfer.timeout_s:
        return None
    return transfer.timestamp + transfer.timeout_s * NS_PER_S


def field_error(t: Transfer, *, allow_expiry: bool = False) -> R | None:
    """The first problem with the transfer's own fields, before any state is read."""
    if not isinstance(t.id, uuid.UUID):
        return R.ID_INVALID
    if t.id == NIL_ID:
        return R.ID_MUST_NOT_BE_ZERO
    flags = t.flags
    if not _is_int(flags) or flags < 0:
        return R.FLAGS_INVALID
    if flags & ~(_CLIENT_FLAGS | (_EXPIRY if allow_expiry else 0)):
        return R.FLAGS_INVALID
    if sum(1 for bit in (_PENDING, _POST, _VOID) if flags & bit) > 1:
        return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
    if flags & _EXPIRY and not flags & _VOID:
        return R.FLAGS_INVALID
    resolves = bool(flags & (_POST | _VOID))

    pending_id = t.pending_id
    if pending_id is not None and not isinstance(pending_id, uuid.UUID):
        return R.PENDING_ID_INVALID
    pending_id_given = pending_id is not None and pending_id != NIL_ID
    if not resolves and pending_id_given:
        return R.PENDING_ID_MUST_BE_ZERO
    if resolves and not pending_id_given:
        return R.PENDING_ID_MUST_NOT_BE_ZERO
    if resolves and pending_id == t.id:
        return R.PENDING_ID_MUST_BE_DIFFERENT

    if not _is_int(t.timeout_s) or not 0 <= t.timeout_s <= TIMEOUT_S_MAX:
        return R.TIMEOUT_INVALID
    if t.timeout_s and not flags & _PENDING:
        return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER

    debit, credit = t.debit_account_id, t.credit_account_id
    if debit is not None and not isinstance(debit, uuid.UUID):
        return R.DEBIT_ACCOUNT_ID_INVALID
    if credit is not None and not isinstance(credit, uuid.UUID):
        return R.CREDIT_ACCOUNT_ID_INVALID
    if not resolves and not _is_given(debit):
        return R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if not resolves and not _is_given(credit):
        return R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO
    if _is_given(debit) and debit == credit:
        return R.ACCOUNTS_MUST_BE_DIFFERENT

    amount = t.amount
    if amount is not None or not resolves:
        if not _is_int(amount):
            return R.AMOUNT_MUST_BE_INTEGER
        assert isinstance(amount, int)
        if amount < 0:
            return R.AMOUNT_MUST_NOT_BE_NEGATIVE
        if amount == 0:
            return R.AMOUNT_MUST_NOT_BE_ZERO
        if amount > AMOUNT_MAX:
            return R.AMOUNT_MUST_NOT_EXCEED_MAX

    if not _is_given(t.currency) and not resolves:
        return R.CURRENCY_MUST_NOT_BE_EMPTY
    if _is_given(t.currency) and t.currency not in CURRENCY_EXPONENTS:
        return R.CURRENCY_UNKNOWN

    if not _is_int(t.code) or not 0 <= t.code <= CODE_MAX:
        return R.CODE_INVALID
    return None


def compare_with_stored(t: Transfer, stored: Transfer) -> R:
    """A retry of a stored transfer: `exists` when every field given matches."""
    if int(t.flags) != int(stored.flags):
        return R.EXISTS_WITH_DIFFERENT_FLAGS
    if t.pending_id != stored.pending_id and t.pending_id != NIL_ID:
        return R.EXISTS_WITH_DIFFERENT_PENDING_ID
    # A post/void may leave fields out (None, nil id) to take them from its pending
    # transfer; what was left out is not a difference.
    given = (
        (t.debit_account_id, stored.debit_account_id, R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
        (t.credit_account_id, stored.credit_account_id, R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
        (t.amount, stored.amount, R.EXISTS_WITH_DIFFERENT_AMOUNT),
        (t.currency, stored.currency, R.EXISTS_WITH_DIFFERENT_CURRENCY),
    )
    for requested, kept, code in given:
        if _is_given(requested) and requested != kept:
            return code
    resolves = bool(t.flags & (_POST | _VOID))
    if (t.code or not resolves) and t.code != stored.code:
        return R.EXISTS_WITH_DIFFERENT_CODE
    if t.timeout_s != stored.timeout_s:
        return R.EXISTS_WITH_DIFFERENT_TIMEOUT
    return R.EXISTS


class ReferenceLedger:
    """The ledger's semantics, one transfer at a time, in memory."""

    def __init__(self) -> None:
        self._state = _State()
        # Expiry voids whose timestamps depend on the order the ledger sweeps tied
        # deadlines in, which it does not define.
        self.unordered: set[uuid.UUID] = set()

    # Reads.

    @property
    def accounts(self) -> Mapping[uuid.UUID, RefAccount]:
        return self._state.accounts

    @property
    def transfers(self) -> Mapping[uuid.UUID, Transfer]:
        return self._state.transfers

    def pending_status(self, transfer_id: uuid.UUID) -> PendingStatus | None:
        """What became of a pending transfer; None when it is not a stored pending."""
        return self._state.status.get(transfer_id)

    def pending_ids(self, status: PendingStatus | None = None) -> list[uuid.UUID]:
        return [k for k, v in self._state.status.items() if status is None or v is status]

    def history(self, account_id: uuid.UUID) -> list[RefSnapshot]:
        return list(self._state.history.get(account_id, []))

    # Writes.

    def add_account(self, account_id: uuid.UUID, currency: str, flags: int) -> None:
        assert account_id not in self._state.accounts
        self._state.accounts[account_id] = RefAccount(account_id, currency, int(flags))
        if flags & AccountFlags.HISTORY:
            self._state.history[account_id] = []

    def create_transfers(
        self, batch: Sequence[Transfer], *, now_ns: int, allow_expiry: bool = False
    ) -> list[R]:
        """Apply `batch` in order; one result per transfer."""
        start = self._batch_start(batch, now_ns)
        results: list[R] = []
        moved: set[uuid.UUID] = set()
        index = 0
        while index < len(batch):
            end = index
            while is_linked(batch[end]) and end < len(batch) - 1:
                end += 1
            if end == index and not is_linked(batch[index]):
                results.append(self._apply(batch[index], start + index, allow_expiry, moved))
            else:
                results.extend(self._apply_chain(batch, index, end, start, allow_expiry, moved))
            index = end + 1
        for account_id in moved:
            self._state.accounts[account_id].last_timestamp = start + len(batch)
        return results

    def expire(self, *, now_ns: int) -> int:
        """Void every pending transfer whose timeout passed by `now_ns`; how many expired."""
        due = [
            t
            for t in self._state.transfers.values()
            if self._state.status.get(t.id) is PendingStatus.PENDING
            and (deadline := expires_at(t)) is not None
            and deadline <= now_ns
        ]
        due.sort(key=lambda t: expires_at(t) or 0)
        deadlines = [expires_at(t) for t in due]
        if len(set(deadlines)) < len(deadlines):
            self.unordered.update(expiry_transfer_id(t.id) for t in due)
        voids = [
            Transfer(
                id=expiry_transfer_id(t.id),
                pending_id=t.id,
                flags=_VOID | _EXPIRY,
            )
            for t in due
        ]
        if not voids:
            return 0
        results = self.create_transfers(voids, now_ns=now_ns, allow_expiry=True)
        assert all(code is R.OK for code in results), results
        return len(voids)

    # The semantics.

    def _batch_start(self, batch: Sequence[Transfer], now_ns: int) -> int:
        """A batch starts at `now_ns`, but after the last batch on any account it locks.

        It locks the accounts it names and, when it posts or voids, the accounts of the
        stored transfers it names as pending.
        """
        named: set[uuid.UUID] = set()
        resolves = any(isinstance(t.flags, int) and t.flags & (_POST | _VOID) for t in batch)
        for t in batch:
            for account_id in (t.debit_account_id, t.credit_account_id):
                if isinstance(account_id, uuid.UUID):
                    named.add(account_id)
            pending = (
                self._state.transfers.get(t.pending_id)
                if resolves and isinstance(t.pending_id, uuid.UUID)
                else None
            )
            if pending is not None:
                assert pending.debit_account_id and pending.credit_account_id
                named.update((pending.debit_account_id, pending.credit_account_id))
        last = max(
            (a.last_timestamp for i, a in self._state.accounts.items() if i in named), default=0
        )
        return max(now_ns, last + 1)

    def _apply_chain(
        self,
        batch: Sequence[Transfer],
        first: int,
        last: int,
        start: int,
        allow_expiry: bool,
        moved: set[uuid.UUID],
    ) -> list[R]:
        """A linked chain: all of it applies, or none of it and every member says why."""
        is_open = is_linked(batch[last])
        saved, saved_moved = self._state.copy(), set(moved)
        results: list[R] = []
        for index in range(first, last + 1):
            if is_open and index == last:
                code = R.LINKED_EVENT_CHAIN_OPEN
            else:
                code = self._apply(batch[index], start + index, allow_expiry, moved)
            results.append(code)
            if code is not R.OK:
                break
        if results[-1] is R.OK:
            return results
        self._state = saved
        moved.clear()
        moved.update(saved_moved)
        failed = len(results) - 1
        chain = [R.LINKED_EVENT_FAILED] * (last - first + 1)
        chain[failed] = results[failed]
        if is_open:
            # As in TigerBeetle: reported even when an earlier member already failed.
            chain[-1] = R.LINKED_EVENT_CHAIN_OPEN
        return chain

    def _apply(self, t: Transfer, timestamp: int, allow_expiry: bool, moved: set[uuid.UUID]) -> R:
        code = field_error(t, allow_expiry=allow_expiry)
        if code is not None:
            return code
        stored = self._state.transfers.get(t.id)
        if stored is not None:
            return compare_with_stored(t, stored)
        if t.flags & (_POST | _VOID):
            return self._resolve(t, timestamp, moved)
        return self._create(t, timestamp, moved)

    def _create(self, t: Transfer, timestamp: int, moved: set[uuid.UUID]) -> R:
        accounts = self._state.accounts
        assert isinstance(t.debit_account_id, uuid.UUID)
        assert isinstance(t.credit_account_id, uuid.UUID)
        assert isinstance(t.amount, int)
        debit = accounts.get(t.debit_account_id)
        if debit is None:
            return R.DEBIT_ACCOUNT_NOT_FOUND
        credit = accounts.get(t.credit_account_id)
        if credit is None:
            return R.CREDIT_ACCOUNT_NOT_FOUND
        if debit.flags & AccountFlags.CLOSED:
            return R.DEBIT_ACCOUNT_CLOSED
        if credit.flags & AccountFlags.CLOSED:
            return R.CREDIT_ACCOUNT_CLOSED
        if not debit.currency == credit.currency == t.currency:
            return R.CURRENCY_MISMATCH
        amount = t.amount
        pending = bool(t.flags & _PENDING)
        # Counters are signed 64-bit: no counter, and no account's pending plus posted
        # debits (or credits), may pass AMOUNT_MAX. The ledger checks the counter the
        # transfer adds to, then the sums.
        if pending and debit.debits_pending + amount > AMOUNT_MAX:
            return R.OVERFLOWS_DEBITS_PENDING
        if pending and credit.credits_pending + amount > AMOUNT_MAX:
            return R.OVERFLOWS_CREDITS_PENDING
        if not pending and debit.debits_posted + amount > AMOUNT_MAX:
            return R.OVERFLOWS_DEBITS_POSTED
        if not pending and credit.credits_posted + amount > AMOUNT_MAX:
            return R.OVERFLOWS_CREDITS_POSTED
        if debit.debits_pending + debit.debits_posted + amount > AMOUNT_MAX:
            return R.OVERFLOWS_DEBITS
        if credit.credits_pending + credit.credits_posted + amount > AMOUNT_MAX:
            return R.OVERFLOWS_CREDITS
        if pending and timestamp + t.timeout_s * NS_PER_S > AMOUNT_MAX:
            return R.OVERFLOWS_TIMEOUT
        if debit.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and (
            debit.debits_pending + debit.debits_posted + amount > debit.credits_posted
        ):
            return R.EXCEEDS_CREDITS
        if credit.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and (
            credit.credits_pending + credit.credits_posted + amount > credit.debits_posted
        ):
            return R.EXCEEDS_DEBITS
        if pending:
            debit.debits_pending += amount
            credit.credits_pending += amount
            self._state.status[t.id] = PendingStatus.PENDING
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        record = Transfer(
            id=t.id,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=amount,
            currency=debit.currency,
            code=t.code,
            flags=int(t.flags),
            pending_id=None,
            timeout_s=t.timeout_s,
            timestamp=timestamp,
        )
        self._store(record, debit, credit, moved)
        return R.OK

    def _resolve(self, t: Transfer, timestamp: int, moved: set[uuid.UUID]) -> R:
        assert isinstance(t.pending_id, uuid.UUID)
        pending = self._state.transfers.get(t.pending_id)
        if pending is None:
            return R.PENDING_TRANSFER_NOT_FOUND
        if not pending.flags & _PENDING:
            return R.PENDING_TRANSFER_NOT_PENDING
        if _is_given(t.debit_account_id) and t.debit_account_id != pending.debit_account_id:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
        if _is_given(t.credit_account_id) and t.credit_account_id != pending.credit_account_id:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
        if _is_given(t.currency) and t.currency != pending.currency:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY
        if t.code and t.code != pending.code:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_CODE
        status = self._state.status[pending.id]
        if status is PendingStatus.POSTED:
            return R.PENDING_TRANSFER_ALREADY_POSTED
        if status is PendingStatus.VOIDED:
            return R.PENDING_TRANSFER_ALREADY_VOIDED
        if status is PendingStatus.EXPIRED:
            return R.PENDING_TRANSFER_EXPIRED
        expiring = bool(t.flags & _EXPIRY)
        deadline = expires_at(pending)
        if deadline is not None and deadline <= timestamp and not expiring:
            return R.PENDING_TRANSFER_EXPIRED
        assert pending.amount is not None
        posting = bool(t.flags & _POST)
        amount = pending.amount if t.amount is None else t.amount
        # More than the pending amount is exceeded for a void too (TigerBeetle's
        # exceeds_pending_transfer_amount); a void of less names another amount.
        if amount > pending.amount:
            return R.PENDING_AMOUNT_EXCEEDED
        if not posting and amount != pending.amount:
            return R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT
        assert pending.debit_account_id and pending.credit_account_id
        debit = self._state.accounts[pending.debit_account_id]
        credit = self._state.accounts[pending.credit_account_id]
        if posting and debit.flags & AccountFlags.CLOSED:
            return R.DEBIT_ACCOUNT_CLOSED
        if posting and credit.flags & AccountFlags.CLOSED:
            return R.CREDIT_ACCOUNT_CLOSED
        # A pending amount already counts towards pending plus posted, so posting it
        # cannot overflow a counter.
        debit.debits_pending -= pending.amount
        credit.credits_pending -= pending.amount
        if posting:
            debit.debits_posted += amount
            credit.credits_posted += amount
        self._state.status[pending.id] = (
            PendingStatus.POSTED
            if posting
            else PendingStatus.EXPIRED
            if expiring
            else PendingStatus.VOIDED
        )
        record = Transfer(
            id=t.id,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=amount,
            currency=pending.currency,
            code=t.code or pending.code,
            flags=int(t.flags),
            pending_id=pending.id,
            timeout_s=0,
            timestamp=timestamp,
        )
        self._store(record, debit, credit, moved)
        return R.OK

    def _store(
        self, record: Transfer, debit: RefAccount, credit: RefAccount, moved: set[uuid.UUID]
    ) -> None:
        self._state.transfers[record.id] = record
        for account in (debit, credit):
            moved.add(account.id)
            if account.flags & AccountFlags.HISTORY:
                self._state.history[account.id].append(
                    RefSnapshot(record.id, record.timestamp, account.counters)
                )
