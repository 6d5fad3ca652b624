"""What each event tells whom: inbox titles and bodies, and e-mails. Pure functions.

E-mail goes out when something happened to a user that they did not do themselves:
money received from someone, an operator's adjustment, cashback paid or taken back,
and the welcome on registration. What users do themselves (sending, paying, topping
up, holds) is in the inbox only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final

from payflow.errors import PayFlowError
from payflow.events.domain import Event
from payflow.identity.domain import User
from payflow.ids import format_public_id, parse_public_id
from payflow.notifications.domain import (
    BODY_LENGTH_MAX,
    SUBJECT_LENGTH_MAX,
    TITLE_LENGTH_MAX,
    EmailText,
    MalformedEvent,
    Notice,
    clip,
    money,
)

People = Mapping[uuid.UUID, User]
_PARTY_FIELDS: Final = ("from", "to", "wallet", "payee")
_WELCOME: Final = {
    "customer": "Share it to get paid, and top up from your linked bank to send money.",
    "merchant": "Create an API key to take payments from your own systems.",
    "operator": "You can now see PayFlow's system accounts, the audit and the operator log.",
}


def _field(data: Mapping[str, Any], name: str) -> Any:
    if data.get(name) is None:
        raise MalformedEvent(f"the event has no `{name}`")
    return data[name]


def _text(data: Mapping[str, Any], name: str) -> str:
    value = _field(data, name)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"`{name}` is not text: {value!r}")
    return value


def _optional_text(data: Mapping[str, Any], name: str) -> str | None:
    return _text(data, name) if data.get(name) is not None else None


def _amount(data: Mapping[str, Any], name: str = "amount") -> str:
    """`data[name]` in `data["currency"]`, formatted; checked, since events come from
    other contexts and a float or string amount must not be shown as if it were money."""
    amount = _field(data, name)
    if type(amount) is not int or amount < 0:
        raise MalformedEvent(f"`{name}` is not an amount in minor units: {amount!r}")
    try:
        return money(amount, _text(data, "currency"))
    except PayFlowError as error:
        raise MalformedEvent(error.message) from None


def _user_id(value: object) -> uuid.UUID:
    if not isinstance(value, str):
        raise MalformedEvent(f"{value!r} is not a user id")
    try:
        return parse_public_id("usr", value)
    except PayFlowError:
        raise MalformedEvent(f"{value!r} is not a user id") from None


def _party(data: Mapping[str, Any], side: str) -> dict[str, Any] | None:
    ref = data.get(side)
    if ref is None:
        return None
    if not isinstance(ref, dict):
        raise MalformedEvent(f"`{side}` is not a wallet reference")
    return ref


def parties(event: Event) -> set[uuid.UUID]:
    """Every user an event names (who is told, and whom the notices mention): `user_id`
    and `*_user_id` at the top of its data, and the user of each party field."""
    found = set()
    for name, value in event.data.items():
        if (name == "user_id" or name.endswith("_user_id")) and value is not None:
            found.add(_user_id(value))
    for side in _PARTY_FIELDS:
        ref = _party(event.data, side)
        if ref is not None and ref.get("user_id") is not None:
            found.add(_user_id(ref["user_id"]))
    return found


def _person(ref: Mapping[str, Any] | None, people: People) -> User | None:
    user_id = _user_of(ref)
    return people.get(user_id) if user_id is not None else None


def _who(ref: Mapping[str, Any] | None, people: People) -> str:
    """A counterparty as `Name (@handle)`, else its wallet's address."""
    user = _person(ref, people)
    if user is not None:
        return f"{user.name} (@{user.handle})"
    if ref is not None and isinstance(ref.get("address"), str):
        return str(ref["address"])
    return "someone"


def _short(ref: Mapping[str, Any] | None, people: People) -> str:
    """A counterparty as `@handle` (for titles), else as `_who` names it."""
    user = _person(ref, people)
    return f"@{user.handle}" if user is not None else _who(ref, people)


def _notice(
    user_id: uuid.UUID, title: str, body: str, people: People, *, email: bool = False
) -> Notice:
    """A notice for `user_id`, with an e-mail if asked for and the user can get one."""
    user = people.get(user_id)
    if user is None:
        raise MalformedEvent(f"no such user {format_public_id('usr', user_id)}")
    title, body = clip(title, TITLE_LENGTH_MAX), clip(body, BODY_LENGTH_MAX)
    mail = None
    if email and not user.disabled:
        text = (
            f"Hi {user.name},\n\n{body}\n\nYour notifications are also in the PayFlow app.\n\n"
            "-- \nPayFlow. This message was sent automatically; replies are not read.\n"
        )
        mail = EmailText(subject=clip(title, SUBJECT_LENGTH_MAX), body=text)
    return Notice(user_id=user_id, title=title, body=body, email=mail)


def _user_of(ref: Mapping[str, Any] | None) -> uuid.UUID | None:
    return _user_id(ref["user_id"]) if ref and ref.get("user_id") is not None else None


def transfer_completed(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, reference = _amount(data), _text(data, "id")
    kind = _text(data, "kind")
    source, target = _party(data, "from"), _party(data, "to")
    payer, payee = _user_of(source), _user_of(target)
    note = _optional_text(data, "note")
    quoted = f" for “{note}”" if note else ""
    notices = []
    if kind == "topup" and payee is not None:
        body = f"{amount} arrived from your linked bank account. Transfer {reference}."
        notices.append(_notice(payee, f"You added {amount} to your wallet", body, people))
        return notices
    verb = "paid" if kind == "capture" else "sent"
    if payer is not None:
        title = f"You {verb} {amount} to {_short(target, people)}"
        body = f"{amount} went from your wallet to {_who(target, people)}{quoted}."
        notices.append(_notice(payer, title, f"{body} Transfer {reference}.", people))
    if payee is not None:
        title = f"You received {amount} from {_short(source, people)}"
        body = f"{_who(source, people)} {verb} you {amount}{quoted}. It is in your wallet now."
        notices.append(_notice(payee, title, f"{body} Transfer {reference}.", people, email=True))
    return notices


def _hold_owner(data: Mapping[str, Any]) -> uuid.UUID:
    owner = _user_of(_party(data, "wallet"))
    if owner is None:
        raise MalformedEvent("the hold's wallet has no `user_id`")
    return owner


def hold_created(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, reference = _amount(data), _text(data, "id")
    expires_at = _optional_text(data, "expires_at")
    until = f" It expires at {expires_at} if neither happens first." if expires_at else ""
    body = (
        f"{amount} is reserved in your wallet until it is captured or released.{until} "
        f"Hold {reference}."
    )
    return [_notice(_hold_owner(data), f"{amount} is on hold", body, people)]


def hold_captured(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, captured = _amount(data), _amount(data, "captured_amount")
    rest = data["amount"] - data["captured_amount"]
    back = f"; the other {money(rest, data['currency'])} is available again" if rest > 0 else ""
    body = f"{captured} of it was paid to {_who(_party(data, 'payee'), people)}{back}."
    title = f"Your hold of {amount} was captured"
    return [_notice(_hold_owner(data), title, f"{body} Hold {_text(data, 'id')}.", people)]


def hold_released(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, reference = _amount(data), _text(data, "id")
    how = "expired" if data.get("status") == "expired" else "was released"
    body = f"Hold {reference} {how}: {amount} is back in your available balance."
    return [_notice(_hold_owner(data), f"{amount} is available again", body, people)]


def adjustment_posted(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, reason = _amount(data), _text(data, "reason")
    direction = _text(data, "direction")
    if direction not in ("credit", "debit"):
        raise MalformedEvent(f"unknown adjustment direction {direction!r}")
    if direction == "credit":
        title = f"{amount} was added to your wallet"
        body = f"PayFlow support credited {amount} to your wallet."
    else:
        title = f"{amount} was taken from your wallet"
        body = f"PayFlow support debited {amount} from your wallet."
    body += f" Reason: {reason}. Reference {_text(data, 'id')}."
    return [_notice(_user_id(_field(data, "user_id")), title, body, people, email=True)]


def user_registered(event: Event, people: People) -> list[Notice]:
    # Identity's record rather than the event's copy: `_notice` needs it for the e-mail.
    user_id = _user_id(_field(event.data, "user_id"))
    user = people.get(user_id)
    if user is None:
        raise MalformedEvent(f"no such user {format_public_id('usr', user_id)}")
    body = f"Your PayFlow address is {user.handle}@payflow. {_WELCOME.get(user.role.value, '')}"
    title = f"Welcome to PayFlow, {user.name}"
    return [_notice(user_id, title, body.strip(), people, email=True)]


def _for_transfer(data: Mapping[str, Any]) -> str:
    transfer_id = _optional_text(data, "transfer_id")
    return f" for transfer {transfer_id}" if transfer_id else ""


def cashback_paid(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount = _amount(data)
    body = f"{amount} cashback{_for_transfer(data)} is in your wallet."
    title = f"You earned {amount} cashback"
    return [_notice(_user_id(_field(data, "user_id")), title, body, people, email=True)]


def cashback_clawed_back(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount = _amount(data)
    body = (
        f"The {amount} cashback{_for_transfer(data)} was taken back from your wallet, "
        "because the payment it rewarded was refunded."
    )
    title = f"{amount} cashback was reversed"
    return [_notice(_user_id(_field(data, "user_id")), title, body, people, email=True)]


_DISABLED_BECAUSE: Final = {
    "gone": "it answered 410 Gone",
    "failing": "deliveries to it kept failing",
}


def webhook_endpoint_disabled(event: Event, people: People) -> list[Notice]:
    data = event.data
    reason = _text(data, "reason")
    if reason not in _DISABLED_BECAUSE:
        raise MalformedEvent(f"unknown reason {reason!r} for disabling")
    url = clip(_text(data, "url"), 200)
    body = (
        f"PayFlow stopped sending webhooks to {url} because {_DISABLED_BECAUSE[reason]}. "
        "Fix the endpoint, enable it again, and replay what it missed. "
        f"Endpoint {_text(data, 'id')}."
    )
    title = "A webhook endpoint was disabled"
    return [_notice(_user_id(_field(data, "user_id")), title, body, people, email=True)]


def _merchant_name(data: Mapping[str, Any], people: People) -> str:
    merchant = people.get(_user_id(_field(data, "merchant_user_id")))
    return merchant.name if merchant is not None else "the merchant"


def payment_succeeded(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, shop = _amount(data), _merchant_name(data, people)
    customer = people.get(_user_id(_field(data, "customer_user_id")))
    payer = f"{customer.name} (@{customer.handle})" if customer is not None else "a customer"
    return [
        _notice(
            _user_id(data["customer_user_id"]),
            f"You paid {amount} to {shop}",
            f"Your payment of {amount} to {shop} went through. "
            f"Payment {_text(data, 'payment_id')}.",
            people,
        ),
        _notice(
            _user_id(data["merchant_user_id"]),
            f"{payer} paid you {amount}",
            f"A payment of {amount} from {payer} is in your wallet. "
            f"Payment {_text(data, 'payment_id')}.",
            people,
        ),
    ]


def payment_failed(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, shop = _amount(data), _merchant_name(data, people)
    reason = _optional_text(data, "failure_reason") or "it failed"
    return [
        _notice(
            _user_id(_field(data, "customer_user_id")),
            f"Your payment of {amount} to {shop} did not go through",
            f"Reason: {reason.replace('_', ' ')}. Any money held for it is available again. "
            f"Payment {_text(data, 'payment_id')}.",
            people,
        )
    ]


def payment_refunded(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, shop = _amount(data), _merchant_name(data, people)
    return [
        _notice(
            _user_id(_field(data, "customer_user_id")),
            f"{shop} refunded you {amount}",
            f"{amount} from your payment {_text(data, 'payment_id')} is back in your wallet.",
            people,
            email=True,
        )
    ]


def _destination(data: Mapping[str, Any]) -> str:
    destination = _field(data, "destination")
    if not isinstance(destination, Mapping):
        raise MalformedEvent("`destination` is not an object")
    if destination.get("vpa"):
        return str(destination["vpa"])
    last_digits = str(destination.get("account_number", ""))[-4:]
    return f"account ending {last_digits} at {destination.get('bank_code')}"


def payout_completed(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, to = _amount(data), _destination(data)
    return [
        _notice(
            _user_id(_field(data, "user_id")),
            f"{amount} reached {to}",
            f"Your payout of {amount} to {to} was credited by the bank. "
            f"Payout {_text(data, 'id')}.",
            people,
        )
    ]


def payout_failed(event: Event, people: People) -> list[Notice]:
    data = event.data
    amount, to = _amount(data), _destination(data)
    reason = (_optional_text(data, "failure_reason") or "it failed").replace("_", " ")
    return [
        _notice(
            _user_id(_field(data, "user_id")),
            f"Your payout of {amount} to {to} failed",
            f"The bank did not credit it ({reason}); the {amount} is back in your wallet. "
            f"Payout {_text(data, 'id')}.",
            people,
            email=True,
        )
    ]


RENDERERS: Final[dict[str, Callable[[Event, People], list[Notice]]]] = {
    "transfer.completed": transfer_completed,
    "hold.created": hold_created,
    "hold.captured": hold_captured,
    "hold.released": hold_released,
    "adjustment.posted": adjustment_posted,
    "user.registered": user_registered,
    "cashback.paid": cashback_paid,
    "cashback.clawed_back": cashback_clawed_back,
    "webhook_endpoint.disabled": webhook_endpoint_disabled,
    "payment.succeeded": payment_succeeded,
    "payment.failed": payment_failed,
    "payment.refunded": payment_refunded,
    # The ends of a payout's saga; its steps in between are for webhooks.
    "TRANSACTION_COMPLETED": payout_completed,
    "TRANSACTION_FAILED": payout_failed,
}


def render(event: Event, people: People) -> list[Notice]:
    """The notices for `event`, at most one per user (the first wins: a capture paid to
    oneself tells the user once)."""
    renderer = RENDERERS.get(event.type)
    if renderer is None:
        raise MalformedEvent(f"notifications have no template for {event.type!r}")
    by_user: dict[uuid.UUID, Notice] = {}
    for notice in renderer(event, people):
        by_user.setdefault(notice.user_id, notice)
    return list(by_user.values())
