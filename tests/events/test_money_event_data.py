"""What transfer and hold events carry: the object as the API shows it, with each
party's `user_id` added (pure; the feed tests see the same over HTTP)."""

from __future__ import annotations

import copy

from payflow.ids import format_public_id, uuid7
from payflow.transfers.domain import Hold, TransferRecord
from payflow.transfers.events import HOLD_CAPTURED, hold_event, transfer_completed
from payflow.transfers.views import transfer_view
from payflow.wallets.domain import Wallet

NOW = 1_800_000_000_000_000_000


def _wallet(handle: str) -> Wallet:
    return Wallet(uuid7(), uuid7(), handle, "INR", NOW)


def _record(from_wallet: Wallet | None, to_wallet: Wallet) -> TransferRecord:
    return TransferRecord(
        id=uuid7(),
        kind="p2p" if from_wallet else "topup",
        status="succeeded",
        from_wallet_id=from_wallet.id if from_wallet else None,
        to_wallet_id=to_wallet.id,
        amount=100,
        currency="INR",
        note=None,
        hold_id=None,
        initiated_by=uuid7(),
        created_at=NOW,
    )


def test_a_transfer_names_both_users_and_leaves_the_reply_alone() -> None:
    asha, ravi = _wallet("asha"), _wallet("ravi")
    record = _record(asha, ravi)
    wallets = {asha.id: asha, ravi.id: ravi}
    view = transfer_view(record, wallets)
    shown = copy.deepcopy(view)
    event = transfer_completed(record, wallets, view=view)
    assert event.data["from"] == {**shown["from"], "user_id": format_public_id("usr", asha.user_id)}
    assert event.data["to"] == {**shown["to"], "user_id": format_public_id("usr", ravi.user_id)}
    assert {k: v for k, v in event.data.items() if k not in ("from", "to")} == {
        k: v for k, v in shown.items() if k not in ("from", "to")
    }
    assert view == shown, "the reply's body must not gain the user ids"
    assert transfer_completed(record, wallets).data == event.data


def test_a_top_up_names_its_one_user() -> None:
    ravi = _wallet("ravi")
    event = transfer_completed(_record(None, ravi), {ravi.id: ravi})
    assert event.data["from"] is None
    assert event.data["to"]["user_id"] == format_public_id("usr", ravi.user_id)


def test_a_party_whose_wallet_is_unknown_gets_no_user_id() -> None:
    asha, ravi = _wallet("asha"), _wallet("ravi")
    event = transfer_completed(_record(asha, ravi), {ravi.id: ravi})
    assert "user_id" not in event.data["from"]
    assert event.data["to"]["user_id"] == format_public_id("usr", ravi.user_id)


def test_a_hold_names_the_payer_and_the_payee() -> None:
    asha, shop = _wallet("asha"), _wallet("shop")
    hold = Hold(
        id=uuid7(),
        wallet_id=asha.id,
        amount=500,
        currency="INR",
        note=None,
        status="captured",
        captured_amount=300,
        payee_wallet_id=shop.id,
        expires_at=None,
        created_by=asha.user_id,
        created_at=NOW,
        resolved_at=NOW + 1,
    )
    event = hold_event(HOLD_CAPTURED, hold, {asha.id: asha, shop.id: shop}, at=NOW + 1)
    assert event.data["wallet"]["user_id"] == format_public_id("usr", asha.user_id)
    assert event.data["payee"]["user_id"] == format_public_id("usr", shop.user_id)
    without_shop = hold_event(HOLD_CAPTURED, hold, {asha.id: asha}, at=NOW + 1)
    assert "user_id" not in without_shop.data["payee"]
