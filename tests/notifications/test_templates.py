"""Templates and notifications' rules, without a database: who is told what about each
event, which notices also e-mail, and malformed event data refused with a clear error.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from payflow.config import Settings
from payflow.events.domain import Event
from payflow.identity.domain import Role, User
from payflow.ids import format_public_id
from payflow.notifications import templates
from payflow.notifications.domain import (
    BACKOFF_S_MAX,
    BODY_LENGTH_MAX,
    TITLE_LENGTH_MAX,
    MalformedEvent,
    Notice,
    clip,
    gives_up,
    message_id,
    money,
    parse_smtp_url,
    retry_delay_s,
)
from payflow.notifications.handlers import CONSUMER

ASHA = User(uuid.uuid4(), "asha@example.com", "Asha Rao", "asha", Role.CUSTOMER, False, 1)
RAVI = User(uuid.uuid4(), "ravi@example.com", "Ravi Kumar", "ravi", Role.CUSTOMER, False, 1)
SHOP = User(uuid.uuid4(), "shop@example.com", "Chai Shop", "chai", Role.MERCHANT, True, 1)
PEOPLE = {u.id: u for u in (ASHA, RAVI, SHOP)}


def usr(user: User) -> str:
    return format_public_id("usr", user.id)


def ref(user: User | None, address: str = "x@payflow") -> dict[str, Any]:
    return {
        "wallet_id": "wal_" + uuid.uuid4().hex,
        "address": address,
        "user_id": usr(user) if user else None,
    }


def event(event_type: str, data: dict[str, Any]) -> Event:
    return Event(uuid.uuid4(), event_type, "test", "x_1", 1_800_000_000 * 10**9, data)


def transfer(kind: str, **changes: Any) -> dict[str, Any]:
    data = {
        "id": "txn_" + "1" * 32,
        "kind": kind,
        "status": "succeeded",
        "amount": 12500,
        "currency": "INR",
        "from": ref(ASHA, "asha@payflow") if kind != "topup" else None,
        "to": ref(RAVI, "ravi@payflow"),
        "note": "dinner",
        "hold_id": None,
        "created_at": "2027-01-15T08:00:00.000000Z",
    }
    data.update(changes)
    return data


def hold(**changes: Any) -> dict[str, Any]:
    data = {
        "id": "hold_" + "2" * 32,
        "status": "held",
        "amount": 3000,
        "captured_amount": 0,
        "currency": "INR",
        "wallet": ref(ASHA, "asha@payflow"),
        "payee": None,
        "note": None,
        "expires_at": None,
    }
    data.update(changes)
    return data


def by_user(notices: list[Notice]) -> dict[uuid.UUID, Notice]:
    assert len({n.user_id for n in notices}) == len(notices)
    return {n.user_id: n for n in notices}


class TestTransferCompleted:
    def test_p2p_tells_both_and_emails_the_recipient(self) -> None:
        found = by_user(templates.render(event("transfer.completed", transfer("p2p")), PEOPLE))
        sender, recipient = found[ASHA.id], found[RAVI.id]
        assert sender.title == "You sent ₹125.00 to @ravi"
        assert sender.body == (
            "₹125.00 went from your wallet to Ravi Kumar (@ravi) for “dinner”. "
            "Transfer txn_11111111111111111111111111111111."
        )
        assert sender.email is None
        assert recipient.title == "You received ₹125.00 from @asha"
        assert "Asha Rao (@asha) sent you ₹125.00 for “dinner”" in recipient.body
        assert recipient.email is not None
        assert recipient.email.subject == recipient.title
        assert recipient.email.body.startswith("Hi Ravi Kumar,\n\n" + recipient.body)

    def test_topup_tells_the_owner_only(self) -> None:
        [notice] = templates.render(event("transfer.completed", transfer("topup")), PEOPLE)
        assert notice.user_id == RAVI.id
        assert notice.title == "You added ₹125.00 to your wallet"
        assert notice.email is None

    def test_capture_tells_payer_and_payee(self) -> None:
        data = transfer("capture", note=None, amount=5, currency="JPY")
        found = by_user(templates.render(event("transfer.completed", data), PEOPLE))
        assert found[ASHA.id].title == "You paid ¥5 to @ravi"
        assert found[RAVI.id].title == "You received ¥5 from @asha"
        assert "Asha Rao (@asha) paid you ¥5. It is in your wallet now." in found[RAVI.id].body

    def test_a_wallet_without_a_user_is_named_by_its_address(self) -> None:
        data = transfer("p2p", to=ref(None, "till@payflow"))
        [notice] = templates.render(event("transfer.completed", data), PEOPLE)
        assert notice.title == "You sent ₹125.00 to till@payflow"

    def test_paying_oneself_tells_once(self) -> None:
        data = transfer("capture", to=ref(ASHA, "asha@payflow"))
        [notice] = templates.render(event("transfer.completed", data), PEOPLE)
        assert notice.user_id == ASHA.id

    def test_a_disabled_user_gets_the_inbox_entry_but_no_email(self) -> None:
        data = transfer("p2p", to=ref(SHOP, "chai@payflow"))
        found = by_user(templates.render(event("transfer.completed", data), PEOPLE))
        assert found[SHOP.id].title == "You received ₹125.00 from @asha"
        assert found[SHOP.id].email is None


class TestHoldsAdjustmentsWelcomeCashback:
    def test_hold_created(self) -> None:
        data = hold(expires_at="2027-01-16T08:00:00.000000Z")
        [notice] = templates.render(event("hold.created", data), PEOPLE)
        assert (notice.user_id, notice.title) == (ASHA.id, "₹30.00 is on hold")
        assert "It expires at 2027-01-16T08:00:00.000000Z" in notice.body
        assert notice.email is None

    def test_hold_captured_in_part(self) -> None:
        data = hold(status="captured", captured_amount=2000, payee=ref(RAVI, "ravi@payflow"))
        [notice] = templates.render(event("hold.captured", data), PEOPLE)
        assert notice.title == "Your hold of ₹30.00 was captured"
        assert notice.body.startswith(
            "₹20.00 of it was paid to Ravi Kumar (@ravi); the other ₹10.00 is available again."
        )

    @pytest.mark.parametrize(
        ("status", "how"), [("released", "was released"), ("expired", "expired")]
    )
    def test_hold_released(self, status: str, how: str) -> None:
        [notice] = templates.render(event("hold.released", hold(status=status)), PEOPLE)
        assert notice.title == "₹30.00 is available again"
        assert f"Hold hold_{'2' * 32} {how}: ₹30.00 is back" in notice.body

    @pytest.mark.parametrize(
        ("direction", "title"),
        [
            ("credit", "₹1.00 was added to your wallet"),
            ("debit", "₹1.00 was taken from your wallet"),
        ],
    )
    def test_adjustment(self, direction: str, title: str) -> None:
        data = {
            "id": "txn_" + "3" * 32,
            "wallet_id": "wal_" + "4" * 32,
            "direction": direction,
            "amount": 100,
            "currency": "INR",
            "reason": "goodwill",
            "user_id": usr(RAVI),
        }
        [notice] = templates.render(event("adjustment.posted", data), PEOPLE)
        assert notice.title == title
        assert "Reason: goodwill." in notice.body
        assert notice.email is not None

    @pytest.mark.parametrize(
        ("user", "says"),
        [(ASHA, "top up from your linked bank"), (SHOP, "Create an API key")],
    )
    def test_welcome(self, user: User, says: str) -> None:
        data = {"user_id": usr(user), "name": "ignored", "handle": user.handle, "role": "x"}
        [notice] = templates.render(event("user.registered", data), PEOPLE)
        assert notice.title == f"Welcome to PayFlow, {user.name}"
        assert f"Your PayFlow address is {user.handle}@payflow." in notice.body
        assert says in notice.body
        assert (notice.email is not None) == (not user.disabled)

    def test_cashback(self) -> None:
        data = {"user_id": usr(ASHA), "amount": 250, "currency": "INR", "transfer_id": "txn_9"}
        [paid] = templates.render(event("cashback.paid", data), PEOPLE)
        assert paid.title == "You earned ₹2.50 cashback"
        assert paid.body == "₹2.50 cashback for transfer txn_9 is in your wallet."
        [taken] = templates.render(event("cashback.clawed_back", data), PEOPLE)
        assert taken.title == "₹2.50 cashback was reversed"
        assert paid.email is not None
        assert taken.email is not None

    def test_long_text_is_clipped_to_the_columns(self) -> None:
        data = {
            "id": "txn_1",
            "direction": "credit",
            "amount": 2**63 - 1,
            "currency": "INR",
            "reason": "r" * 5000,
            "user_id": usr(ASHA),
        }
        [notice] = templates.render(event("adjustment.posted", data), PEOPLE)
        assert len(notice.title) <= TITLE_LENGTH_MAX
        assert len(notice.body) == BODY_LENGTH_MAX
        assert notice.body.endswith("…")


def payment(**changes: Any) -> dict[str, Any]:
    data = {
        "payment_id": "pay_" + "2" * 32,
        "amount": 24_000,
        "currency": "INR",
        "customer_user_id": usr(ASHA),
        "merchant_user_id": usr(SHOP),
        "failure_reason": "insufficient_funds",
    }
    data.update(changes)
    return data


def payout(**changes: Any) -> dict[str, Any]:
    data = {
        "id": "po_" + "3" * 32,
        "amount": 10_000,
        "currency": "INR",
        "user_id": usr(RAVI),
        "destination": {"vpa": "ravi@okbank"},
        "failure_reason": "account_not_found",
    }
    data.update(changes)
    return data


class TestPaymentsAndPayouts:
    def test_a_payment_tells_the_customer_and_the_merchant(self) -> None:
        customer, merchant = templates.render(event("payment.succeeded", payment()), PEOPLE)
        assert customer.user_id == ASHA.id
        assert customer.title == "You paid ₹240.00 to Chai Shop"
        assert merchant.user_id == SHOP.id
        assert merchant.title == "Asha Rao (@asha) paid you ₹240.00"
        assert customer.email is None and merchant.email is None

    def test_a_failed_payment_says_why(self) -> None:
        [notice] = templates.render(event("payment.failed", payment()), PEOPLE)
        assert notice.user_id == ASHA.id
        assert "insufficient funds" in notice.body

    def test_a_refund_is_emailed_to_the_customer(self) -> None:
        [notice] = templates.render(event("payment.refunded", payment(amount=4_000)), PEOPLE)
        assert notice.title == "Chai Shop refunded you ₹40.00"
        assert notice.email is not None

    def test_payout_ends(self) -> None:
        [done] = templates.render(event("TRANSACTION_COMPLETED", payout()), PEOPLE)
        assert done.user_id == RAVI.id
        assert done.title == "₹100.00 reached ravi@okbank"
        account = {"bank_code": "OKBK0000001", "account_number": "100000000002"}
        [failed] = templates.render(
            event("TRANSACTION_FAILED", payout(destination=account)), PEOPLE
        )
        assert failed.title == "Your payout of ₹100.00 to account ending 0002 at OKBK0000001 failed"
        assert "account not found" in failed.body
        assert failed.email is not None

    def test_the_parties_include_every_user_id_key(self) -> None:
        assert templates.parties(event("payment.succeeded", payment())) == {ASHA.id, SHOP.id}


MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("transfer.completed", {k: v for k, v in transfer("p2p").items() if k != "amount"}),
    ("transfer.completed", transfer("p2p", amount=125.0)),
    ("transfer.completed", transfer("p2p", amount="12500")),
    ("transfer.completed", transfer("p2p", amount=True)),
    ("transfer.completed", transfer("p2p", amount=-5)),
    ("transfer.completed", transfer("p2p", currency="XXX")),
    ("transfer.completed", transfer("p2p", currency=None)),
    ("transfer.completed", {**transfer("p2p"), "kind": None}),
    ("transfer.completed", transfer("p2p", to="ravi")),
    ("transfer.completed", transfer("p2p", to={"user_id": "usr_not-an-id"})),
    ("transfer.completed", transfer("p2p", to={"user_id": 42})),
    ("transfer.completed", transfer("p2p", to={"user_id": "usr_" + uuid.uuid4().hex})),
    ("hold.created", hold(wallet=None)),
    ("hold.captured", hold(captured_amount=None)),
    ("adjustment.posted", {"id": "t", "amount": 1, "currency": "INR", "reason": "r"}),
    (
        "adjustment.posted",
        {"id": "t", "amount": 1, "currency": "INR", "reason": "r", "direction": "sideways"},
    ),
    ("user.registered", {"user_id": "usr_" + uuid.uuid4().hex}),
    ("cashback.paid", {"amount": 1, "currency": "INR"}),
    ("cashback.paid", {"user_id": "", "amount": 1, "currency": "INR"}),
    ("cashback.clawed_back", {"user_id": "usr_" + ASHA.id.hex, "currency": "INR"}),
    ("cashback.clawed_back", {"user_id": "usr_" + ASHA.id.hex, "amount": 1}),
    ("wallet.opened", {"user_id": "usr_" + ASHA.id.hex}),
    ("payment.succeeded", payment(amount=1.5)),
    ("payment.succeeded", payment(customer_user_id="usr_bad")),
    ("payment.refunded", {k: v for k, v in payment().items() if k != "customer_user_id"}),
    ("payment.failed", payment(payment_id=None)),
    ("TRANSACTION_COMPLETED", payout(destination="ravi@okbank")),
    ("TRANSACTION_FAILED", payout(user_id=None)),
    ("TRANSACTION_FAILED", payout(amount="100")),
]


@pytest.mark.parametrize(("event_type", "data"), MALFORMED)
def test_malformed_data_is_refused(event_type: str, data: dict[str, Any]) -> None:
    broken = event(event_type, data)
    with pytest.raises(MalformedEvent):
        templates.render(broken, {p: PEOPLE[p] for p in templates.parties(broken) if p in PEOPLE})


def test_the_consumer_subscribes_to_every_templated_type() -> None:
    assert CONSUMER.event_types == {
        "transfer.completed",
        "hold.created",
        "hold.captured",
        "hold.released",
        "adjustment.posted",
        "user.registered",
        "cashback.paid",
        "cashback.clawed_back",
        "webhook_endpoint.disabled",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "TRANSACTION_COMPLETED",
        "TRANSACTION_FAILED",
    }


class TestRules:
    @pytest.mark.parametrize(
        ("amount", "currency", "text"),
        [
            (12345, "INR", "₹123.45"),
            (5, "INR", "₹0.05"),
            (100_000_000, "INR", "₹1,000,000.00"),
            (1234, "JPY", "¥1,234"),
            (1234, "KWD", "1.234 KWD"),
            (2**63 - 1, "USD", "$92,233,720,368,547,758.07"),
        ],
    )
    def test_money(self, amount: int, currency: str, text: str) -> None:
        assert money(amount, currency) == text

    def test_clip(self) -> None:
        assert clip("abc", 3) == "abc"
        assert clip("abcd", 3) == "ab…"

    def test_retry_delays_double_with_jitter_up_to_the_cap(self) -> None:
        for attempts, ceiling in [(1, 10.0), (2, 20.0), (3, 40.0), (40, BACKOFF_S_MAX)]:
            for _ in range(50):
                assert ceiling / 2 <= retry_delay_s(attempts, 10.0) <= ceiling

    def test_gives_up(self) -> None:
        assert not gives_up(2, 3, permanent=False)
        assert gives_up(3, 3, permanent=False)
        assert gives_up(1, 3, permanent=True)

    def test_message_id_is_stable_and_uses_the_sender_domain(self) -> None:
        email = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
        sender = "PayFlow <no-reply@payflow.example>"
        assert message_id(email, sender) == "<ntf.0123456789abcdef0123456789abcdef@payflow.example>"
        assert message_id(email, sender) == message_id(email, sender)

    @pytest.mark.parametrize(
        ("url", "host", "port", "user", "password", "tls"),
        [
            ("smtp://127.0.0.1:1025", "127.0.0.1", 1025, None, None, False),
            ("smtp://mail.example.com", "mail.example.com", 25, None, None, False),
            ("smtps://u%40x:p%3Aw@mail.example.com", "mail.example.com", 465, "u@x", "p:w", True),
        ],
    )
    def test_parse_smtp_url(
        self, url: str, host: str, port: int, user: str | None, password: str | None, tls: bool
    ) -> None:
        server = parse_smtp_url(url)
        assert (server.hostname, server.port, server.username, server.password) == (
            host,
            port,
            user,
            password,
        )
        assert server.use_tls is tls

    @pytest.mark.parametrize("url", ["http://mail.example.com", "smtp://", "mail.example.com"])
    def test_parse_smtp_url_refuses_others(self, url: str) -> None:
        with pytest.raises(ValueError, match="not an smtp"):
            parse_smtp_url(url)


class TestSettings:
    def test_mail_settings_have_defaults(self) -> None:
        settings = Settings()
        assert settings.smtp_from == "PayFlow <no-reply@payflow.local>"
        assert (settings.mail_attempts_max, settings.mail_batch_size_max) == (8, 10)

    @pytest.mark.parametrize(
        "changes",
        [
            {"smtp_url": "http://mail.example.com"},
            {"smtp_url": "smtp://mail example.com"},
            {"smtp_from": "PayFlow <no-reply@payflow.local>\r\nBcc: x@example.com"},
            {"smtp_from": "no address"},
            {"smtp_timeout_s": 0},
            {"mail_attempts_max": 0},
            {"mail_backoff_s": 0},
            {"mail_batch_size_max": 0},
            {"mail_poll_interval_s": 0},
        ],
    )
    def test_bad_mail_settings_are_refused(self, changes: dict[str, Any]) -> None:
        with pytest.raises(ValidationError):
            Settings(**changes)

    @pytest.mark.parametrize(
        "sender", ["no-reply@payflow.example", "PayFlow Alerts <alerts@payflow.example>"]
    )
    def test_senders(self, sender: str) -> None:
        assert Settings(smtp_from=sender).smtp_from == sender
