"""The batch engine: applies a batch of transfers to locked account rows, in memory.

Pure: it reads the account states and known transfers the caller loaded, changes the
account counters in place and returns what to write. The result equals applying the
transfers one at a time, in order; a linked chain is applied wholly or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from payflow.ledger.domain import (
    NIL_ID,
    AccountFlags,
    AccountState,
    BalanceSnapshot,
    PendingStatus,
    Transfer,
    TransferFlags,
    TransferOutcome,
)
from payflow.ledger.domain import TransferResult as R
from payflow.ledger.validation import check_fields, compare_existing, is_int
from payflow.money import AMOUNT_MAX

# Plain ints: IntFlag arithmetic builds a new enum member per operation, which costs more
# than the rest of validating a transfer.
_PENDING = int(TransferFlags.PENDING)
_POST = int(TransferFlags.POST_PENDING)
_VOID = int(TransferFlags.VOID_PENDING)
_LINKED = int(TransferFlags.LINKED)
_EXPIRY = int(TransferFlags.EXPIRY)
_DMNEC = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
_CMNED = int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS)
_CLOSED = int(AccountFlags.CLOSED)
_HISTORY = int(AccountFlags.HISTORY)


@dataclass(slots=True)
class BatchWrites:
    """What a batch leaves to write: new transfer records and pending-expiry changes."""

    transfers: list[Transfer] = field(default_factory=list)
    history: list[BalanceSnapshot] = field(default_factory=list)
    expiries_added: dict[uuid.UUID, int] = field(default_factory=dict)
    expiries_removed: set[uuid.UUID] = field(default_factory=set)


@dataclass(slots=True)
class _Undo:
    """What a linked chain changed, so a failing member can take it all back."""

    counters: dict[uuid.UUID, tuple[int, int, int, int, bool]] = field(default_factory=dict)
    transfers_len: int = 0
    history_len: int = 0
    resolved: list[uuid.UUID] = field(default_factory=list)
    expiries_added: list[uuid.UUID] = field(default_factory=list)
    expiries_readded: list[tuple[uuid.UUID, int]] = field(default_factory=list)
    expiries_unremoved: list[uuid.UUID] = field(default_factory=list)


class BatchEngine:
    """Applies one batch. Create one per batch; call `apply` once."""

    def __init__(
        self,
        *,
        accounts: dict[uuid.UUID, AccountState],
        known: dict[uuid.UUID, Transfer],
        resolved: dict[uuid.UUID, PendingStatus],
        timestamp: int,
        allow_expiry: bool = False,
    ) -> None:
        self.accounts = accounts
        self.known = known
        self.resolved = resolved
        self.timestamp = timestamp
        self.allow_expiry = allow_expiry
        self.writes = BatchWrites()
        self._undo: _Undo | None = None

    def apply(
        self, transfers: Sequence[Transfer], field_codes: Sequence[R | None] | None = None
    ) -> list[TransferOutcome]:
        """Apply `transfers` in order and return one outcome per transfer.

        `field_codes` are `check_fields` results computed before the accounts were locked,
        so that less work happens while other batches wait for the locks.
        """
        if field_codes is None:
            field_codes = [check_fields(t, allow_expiry=self.allow_expiry) for t in transfers]
        outcomes: list[TransferOutcome] = []
        chain_start: int | None = None
        chain_failed = False
        for index, transfer in enumerate(transfers):
            # Invalid flags (a bool, a str) fail the field checks; they link nothing.
            flags = transfer.flags if is_int(transfer.flags) else 0
            linked = bool(flags & _LINKED)
            if chain_start is None and linked:
                chain_start = index
                chain_failed = False
                self._begin_chain()
            # As in TigerBeetle, a chain left open is reported even when it already failed.
            if chain_start is not None and linked and index == len(transfers) - 1:
                outcome = TransferOutcome(R.LINKED_EVENT_CHAIN_OPEN)
            elif chain_start is not None and chain_failed:
                outcome = TransferOutcome(R.LINKED_EVENT_FAILED)
            else:
                outcome = self._apply_one(transfer, field_codes[index], self.timestamp + index)
            outcomes.append(outcome)
            if chain_start is not None and not outcome.ok and not chain_failed:
                chain_failed = True
                self._rollback_chain()
                for earlier in range(chain_start, index):
                    outcomes[earlier] = TransferOutcome(R.LINKED_EVENT_FAILED)
            if chain_start is not None and not linked:
                chain_start = None
                self._undo = None
        return outcomes

    def _apply_one(self, transfer: Transfer, code: R | None, timestamp: int) -> TransferOutcome:
        if code is not None:
            return TransferOutcome(code)
        existing = self.known.get(transfer.id)
        if existing is not None:
            return TransferOutcome(compare_existing(transfer, existing), existing)
        if transfer.flags & (_POST | _VOID):
            return self._resolve_pending(transfer, timestamp)
        return self._create(transfer, timestamp)

    def _create(self, transfer: Transfer, timestamp: int) -> TransferOutcome:
        assert transfer.debit_account_id is not None and transfer.credit_account_id is not None
        assert transfer.amount is not None
        debit = self.accounts.get(transfer.debit_account_id)
        if debit is None:
            return TransferOutcome(R.DEBIT_ACCOUNT_NOT_FOUND)
        credit = self.accounts.get(transfer.credit_account_id)
        if credit is None:
            return TransferOutcome(R.CREDIT_ACCOUNT_NOT_FOUND)
        if debit.flags & _CLOSED:
            return TransferOutcome(R.DEBIT_ACCOUNT_CLOSED)
        if credit.flags & _CLOSED:
            return TransferOutcome(R.CREDIT_ACCOUNT_CLOSED)
        if debit.currency != credit.currency or transfer.currency != debit.currency:
            return TransferOutcome(R.CURRENCY_MISMATCH)
        amount = transfer.amount
        pending = bool(transfer.flags & _PENDING)
        code = _check_overflow(debit, credit, amount, pending=pending)
        if code is not None:
            return TransferOutcome(code)
        expires_at = timestamp + transfer.timeout_s * 1_000_000_000 if pending else 0
        if expires_at > AMOUNT_MAX:
            return TransferOutcome(R.OVERFLOWS_TIMEOUT)
        if (
            debit.flags & _DMNEC
            and debit.debits_pending + debit.debits_posted + amount > debit.credits_posted
        ):
            return TransferOutcome(R.EXCEEDS_CREDITS)
        if (
            credit.flags & _CMNED
            and credit.credits_pending + credit.credits_posted + amount > credit.debits_posted
        ):
            return TransferOutcome(R.EXCEEDS_DEBITS)
        self._save(debit)
        self._save(credit)
        if pending:
            debit.debits_pending += amount
            credit.credits_pending += amount
        else:
            debit.debits_posted += amount
            credit.credits_posted += amount
        record = Transfer(
            transfer.id,
            debit.id,
            credit.id,
            amount,
            debit.currency,
            transfer.code,
            int(transfer.flags),
            None,
            transfer.timeout_s,
            timestamp,
        )
        if pending and transfer.timeout_s:
            self.writes.expiries_added[record.id] = expires_at
            if self._undo is not None:
                self._undo.expiries_added.append(record.id)
        return self._record(record, debit, credit)

    def _resolve_pending(self, transfer: Transfer, timestamp: int) -> TransferOutcome:
        assert transfer.pending_id is not None
        pending = self.known.get(transfer.pending_id)
        if pending is None:
            return TransferOutcome(R.PENDING_TRANSFER_NOT_FOUND)
        if not pending.flags & _PENDING:
            return TransferOutcome(R.PENDING_TRANSFER_NOT_PENDING)
        code = _check_matches_pending(transfer, pending)
        if code is not None:
            return TransferOutcome(code)
        status = self.resolved.get(pending.id, PendingStatus.PENDING)
        if status is PendingStatus.POSTED:
            return TransferOutcome(R.PENDING_TRANSFER_ALREADY_POSTED)
        if status is PendingStatus.VOIDED:
            return TransferOutcome(R.PENDING_TRANSFER_ALREADY_VOIDED)
        if status is PendingStatus.EXPIRED:
            return TransferOutcome(R.PENDING_TRANSFER_EXPIRED)
        expires_at = pending.expires_at
        expiring = bool(transfer.flags & _EXPIRY)
        if expires_at is not None and expires_at <= timestamp and not expiring:
            return TransferOutcome(R.PENDING_TRANSFER_EXPIRED)
        assert pending.amount is not None
        posting = bool(transfer.flags & _POST)
        amount = pending.amount if transfer.amount is None else transfer.amount
        # As in TigerBeetle: more than the pending amount is exceeded for a void too.
        if amount > pending.amount:
            return TransferOutcome(R.PENDING_AMOUNT_EXCEEDED)
        if not posting and amount != pending.amount:
            return TransferOutcome(R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT)
        assert pending.debit_account_id is not None and pending.credit_account_id is not None
        debit = self.accounts[pending.debit_account_id]
        credit = self.accounts[pending.credit_account_id]
        if posting and debit.flags & _CLOSED:
            return TransferOutcome(R.DEBIT_ACCOUNT_CLOSED)
        if posting and credit.flags & _CLOSED:
            return TransferOutcome(R.CREDIT_ACCOUNT_CLOSED)
        if posting and debit.debits_posted + amount > AMOUNT_MAX:
            return TransferOutcome(R.OVERFLOWS_DEBITS_POSTED)
        if posting and credit.credits_posted + amount > AMOUNT_MAX:
            return TransferOutcome(R.OVERFLOWS_CREDITS_POSTED)
        self._save(debit)
        self._save(credit)
        debit.debits_pending -= pending.amount
        credit.credits_pending -= pending.amount
        if posting:
            debit.debits_posted += amount
            credit.credits_posted += amount
        self.resolved[pending.id] = (
            PendingStatus.POSTED
            if posting
            else PendingStatus.EXPIRED
            if expiring
            else PendingStatus.VOIDED
        )
        # A pending transfer created earlier in this batch has no expiry row yet: drop the
        # row to be added instead of deleting one that does not exist.
        if pending.id in self.writes.expiries_added:
            added_expires_at = self.writes.expiries_added.pop(pending.id)
            if self._undo is not None:
                self._undo.expiries_readded.append((pending.id, added_expires_at))
        elif expires_at is not None:
            self.writes.expiries_removed.add(pending.id)
            if self._undo is not None:
                self._undo.expiries_unremoved.append(pending.id)
        if self._undo is not None:
            self._undo.resolved.append(pending.id)
        record = Transfer(
            id=transfer.id,
            debit_account_id=debit.id,
            credit_account_id=credit.id,
            amount=amount,
            currency=pending.currency,
            code=transfer.code or pending.code,
            flags=int(transfer.flags),
            pending_id=pending.id,
            timeout_s=0,
            timestamp=timestamp,
        )
        return self._record(record, debit, credit)

    def _record(
        self, record: Transfer, debit: AccountState, credit: AccountState
    ) -> TransferOutcome:
        self.known[record.id] = record
        self.writes.transfers.append(record)
        for account in (debit, credit):
            if account.flags & _HISTORY:
                self.writes.history.append(
                    BalanceSnapshot(
                        account_id=account.id,
                        transfer_id=record.id,
                        timestamp=record.timestamp,
                        debits_pending=account.debits_pending,
                        debits_posted=account.debits_posted,
                        credits_pending=account.credits_pending,
                        credits_posted=account.credits_posted,
                    )
                )
        return TransferOutcome(R.OK, record)

    def _save(self, account: AccountState) -> None:
        if self._undo is not None and account.id not in self._undo.counters:
            self._undo.counters[account.id] = (
                account.debits_pending,
                account.debits_posted,
                account.credits_pending,
                account.credits_posted,
                account.touched,
            )
        account.touched = True

    def _begin_chain(self) -> None:
        self._undo = _Undo(
            transfers_len=len(self.writes.transfers), history_len=len(self.writes.history)
        )

    def _rollback_chain(self) -> None:
        undo = self._undo
        assert undo is not None
        for account_id, saved in undo.counters.items():
            account = self.accounts[account_id]
            (
                account.debits_pending,
                account.debits_posted,
                account.credits_pending,
                account.credits_posted,
                account.touched,
            ) = saved
        for record in self.writes.transfers[undo.transfers_len :]:
            del self.known[record.id]
        del self.writes.transfers[undo.transfers_len :]
        del self.writes.history[undo.history_len :]
        for pending_id in undo.resolved:
            del self.resolved[pending_id]
        for transfer_id, expires_at in undo.expiries_readded:
            self.writes.expiries_added[transfer_id] = expires_at
        for transfer_id in undo.expiries_added:
            self.writes.expiries_added.pop(transfer_id, None)
        for transfer_id in undo.expiries_unremoved:
            self.writes.expiries_removed.discard(transfer_id)
        self._begin_chain()


def _check_overflow(
    debit: AccountState, credit: AccountState, amount: int, *, pending: bool
) -> R | None:
    if pending:
        if debit.debits_pending + amount > AMOUNT_MAX:
            return R.OVERFLOWS_DEBITS_PENDING
        if credit.credits_pending + amount > AMOUNT_MAX:
            return R.OVERFLOWS_CREDITS_PENDING
    else:
        if debit.debits_posted + amount > AMOUNT_MAX:
            return R.OVERFLOWS_DEBITS_POSTED
        if credit.credits_posted + amount > AMOUNT_MAX:
            return R.OVERFLOWS_CREDITS_POSTED
    if debit.debits_pending + debit.debits_posted + amount > AMOUNT_MAX:
        return R.OVERFLOWS_DEBITS
    if credit.credits_pending + credit.credits_posted + amount > AMOUNT_MAX:
        return R.OVERFLOWS_CREDITS
    return None


def _check_matches_pending(transfer: Transfer, pending: Transfer) -> R | None:
    # None, the nil id and "" all mean "as in the pending transfer".
    if transfer.debit_account_id not in (None, NIL_ID, pending.debit_account_id):
        return R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID
    if transfer.credit_account_id not in (None, NIL_ID, pending.credit_account_id):
        return R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID
    if transfer.currency not in (None, "", pending.currency):
        return R.PENDING_TRANSFER_HAS_DIFFERENT_CURRENCY
    if transfer.code and transfer.code != pending.code:
        return R.PENDING_TRANSFER_HAS_DIFFERENT_CODE
    return None
