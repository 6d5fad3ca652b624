"""Webhooks' pure rules: audiences, the catalogue, secrets and signatures (checked with
the standardwebhooks library), retry waits, and the settings that bound them."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from payflow.config import Settings
from payflow.errors import PayFlowError
from payflow.events.domain import Event
from payflow.notifications import templates
from payflow.notifications.domain import MalformedEvent
from payflow.webhooks import catalogue
from payflow.webhooks.domain import (
    Endpoint,
    audience,
    message_id,
    new_secret,
    payload,
    retry_wait_s,
    signature_header,
)
from payflow.webhooks.outcomes import sustained_failure

A, B, C, D = (uuid.uuid4() for _ in range(4))


def usr(value: uuid.UUID) -> str:
    return f"usr_{value.hex}"


def test_audience_reads_user_ids_up_to_two_levels_and_in_lists() -> None:
    data = {
        "user_id": usr(A),
        "from": {"user_id": usr(B), "wallet": {"owner_user_id": usr(C)}},
        "lines": [{"merchant_user_id": usr(D)}, "not an object"],
    }
    assert audience(data) == {A, B, C, D}


def test_audience_ignores_what_is_not_a_user_id_or_too_deep() -> None:
    data = {
        "user_id": "wal_0000",
        "buyer_user_id": 7,
        "userid": usr(A),
        "a": {"b": {"c": {"user_id": usr(B)}}},
        "xs": [[{"user_id": usr(C)}]],
        "note": usr(D),
        "payer_user_id": "usr_not-hex",
    }
    assert audience(data) == set()


def test_the_catalogue_filter() -> None:
    assert catalogue.normalize(["hold.created", "hold.created"]) == ["hold.created"]
    assert catalogue.normalize(["TRANSACTION_FAILED", "*"]) == ["*"]
    assert catalogue.subscribes(["*"], "settlement.paid")
    assert not catalogue.subscribes(["*"], "user.registered")
    assert not catalogue.subscribes(["hold.created"], "hold.released")
    with pytest.raises(PayFlowError) as refused:
        catalogue.normalize(["hold.created", "hold.creatd"])
    assert refused.value.code == "event_types_invalid" and "hold.creatd" in refused.value.message


def test_secrets_are_standard_webhooks_secrets() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret[6:])) <= 64
    assert new_secret() != secret


def test_signatures_verify_with_the_standardwebhooks_library() -> None:
    old, new = new_secret(), new_secret()
    msg = f"msg_{message_id(A, B).hex}"
    now = int(datetime.now(UTC).timestamp())
    body = payload(B, "hold.created", "2026-01-01T00:00:00.000000Z", {"user_id": usr(A)}).encode()
    header = signature_header(msg, now, body, [new, old])
    headers = {"webhook-id": msg, "webhook-timestamp": str(now), "webhook-signature": header}
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers)["data"] == {"user_id": usr(A)}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, {**headers, "webhook-id": "msg_other"})


def test_message_ids_are_stable_per_endpoint_and_event() -> None:
    assert message_id(A, B) == message_id(A, B)
    assert len({message_id(A, B), message_id(B, A), message_id(A, C)}) == 3


def test_retry_waits_follow_the_schedule_with_jitter() -> None:
    schedule = [1.0, 10.0, 100.0]
    for attempt, wait in ((1, 1.0), (2, 10.0), (3, 100.0), (9, 100.0)):
        for _ in range(50):
            assert wait * 0.8 <= retry_wait_s(attempt, schedule) <= wait * 1.2


@pytest.mark.parametrize(
    "values",
    [
        {"webhook_retry_schedule_s": []},
        {"webhook_retry_schedule_s": [-1]},
        {"webhook_retry_schedule_s": [10**7]},
        {"webhook_attempts_max": 0},
        {"webhook_timeout_s": 0},
        {"webhook_endpoints_per_owner_max": 0},
        {"webhook_replay_max": 0},
    ],
)
def test_settings_out_of_bounds_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**values)  # type: ignore[arg-type]


def test_settings_read_the_schedule_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYFLOW_WEBHOOK_RETRY_SCHEDULE_S", "[1, 2.5, 60]")
    monkeypatch.setenv("PAYFLOW_WEBHOOK_ALLOWED_PRIVATE", '["10.0.0.0/8", "hooks.internal"]')
    settings = Settings()
    assert settings.webhook_retry_schedule_s == [1.0, 2.5, 60.0]
    assert settings.webhook_allowed_private == ["10.0.0.0/8", "hooks.internal"]


@pytest.mark.parametrize(
    "data",
    [
        {"id": "we_1", "user_id": usr(A), "url": "https://x.example/", "reason": "bored"},
        {"id": "we_1", "user_id": usr(A), "reason": "gone"},
        {"id": "we_1", "url": "https://x.example/", "reason": "gone"},
    ],
)
def test_the_disabled_notice_refuses_malformed_events(data: dict[str, object]) -> None:
    event = Event(
        id=uuid.uuid4(),
        type="webhook_endpoint.disabled",
        aggregate_type="webhook_endpoint",
        aggregate_id="we_1",
        occurred_at=1,
        data=data,
    )
    with pytest.raises(MalformedEvent):
        templates.render(event, {})


class TestSustainedFailure:
    """When an endpoint has failed long enough to be disabled: by time or by count."""

    SETTINGS = Settings(webhook_disable_after_s=60.0, webhook_disable_after_failed_deliveries=3)

    @staticmethod
    def endpoint(*, failing_since: int | None, failed_deliveries: int) -> Endpoint:
        return Endpoint(
            id=uuid.uuid4(),
            owner_id=uuid.uuid4(),
            url="https://hooks.example.com/payflow",
            description=None,
            event_types=["*"],
            status="enabled",
            disabled_reason=None,
            disabled_at=None,
            secret="whsec_" + "A" * 32,
            previous_secret=None,
            previous_secret_expires_at=None,
            failing_since=failing_since,
            failed_deliveries=failed_deliveries,
            created_at=0,
            updated_at=0,
        )

    @pytest.mark.parametrize(
        ("failing_for_s", "failed_deliveries", "disabled"),
        [
            (None, 0, False),
            (59.9, 2, False),
            (60.0, 0, True),
            (3600.0, 0, True),
            (None, 3, True),
            (1.0, 2, False),
        ],
    )
    def test_by_time_or_by_count(
        self, failing_for_s: float | None, failed_deliveries: int, disabled: bool
    ) -> None:
        now = 10_000 * 10**9
        since = None if failing_for_s is None else now - int(failing_for_s * 10**9)
        endpoint = self.endpoint(failing_since=since, failed_deliveries=failed_deliveries)
        assert sustained_failure(endpoint, now, self.SETTINGS) is disabled
