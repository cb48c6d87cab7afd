"""Shared builders and checks for the conformance tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Optional

import stripe

RFC3339_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
PING_TYPE = "v2.core.event_destination.ping"
METER_ERROR_TYPE = "v1.billing.meter.error_report_triggered"
METER_NO_METER_TYPE = "v1.billing.meter.no_meter_found"
ACCOUNT_UPDATED_TYPE = "v2.core.account.updated"
SDK_STRIPE_VERSION = "2026-10-28.endive"  # stripe-python 16.1.0's pinned version


def parse_ts(value: str) -> datetime:
    assert isinstance(value, str) and RFC3339_MS_Z.match(value), f"not an RFC 3339 ms Z timestamp: {value!r}"
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def thin_webhook(name: str = "thin hook", url: str = "http://127.0.0.1:9/hook", **extra: Any) -> dict:
    params = {
        "name": name,
        "type": "webhook_endpoint",
        "event_payload": "thin",
        "enabled_events": [PING_TYPE, METER_ERROR_TYPE],
        "webhook_endpoint": {"url": url},
    }
    params.update(extra)
    return params


def snapshot_webhook(name: str = "snapshot hook", url: str = "http://127.0.0.1:9/snapshot", **extra: Any) -> dict:
    params = {
        "name": name,
        "type": "webhook_endpoint",
        "event_payload": "snapshot",
        "enabled_events": ["customer.created"],
        "webhook_endpoint": {"url": url},
    }
    params.update(extra)
    return params


def eventbridge(name: str = "bus", **extra: Any) -> dict:
    params = {
        "name": name,
        "type": "amazon_eventbridge",
        "event_payload": "thin",
        "enabled_events": [METER_ERROR_TYPE],
        "amazon_eventbridge": {"aws_account_id": "111122223333", "aws_region": "us-east-1"},
    }
    params.update(extra)
    return params


def meter_event_params(meter_id: str, event_type: str = METER_ERROR_TYPE) -> dict:
    return {
        "type": event_type,
        "related_object": {"id": meter_id, "type": "billing.meter", "url": f"/v1/billing/meters/{meter_id}"},
        "data": {
            "developer_message_summary": "There is 1 invalid event",
            "validation_start": "2026-01-01T00:00:00.000Z",
            "validation_end": "2026-01-01T00:00:10.000Z",
        },
    }


def publish(client: stripe.StripeClient, params: dict, **options: Any) -> stripe.StripeObject:
    """Publishes an event through eventd's extension route, the way a python user would."""
    resp = client.raw_request("post", "/v2/core/events", **params, **options)
    return client.deserialize(resp, api_mode="V2")


def assert_error(
    exc: stripe.StripeError, cls: type, status: int, code: Optional[str] = None, mentions: Optional[str] = None
) -> None:
    assert isinstance(exc, cls), f"expected {cls.__name__}, got {type(exc).__name__}: {exc}"
    assert exc.http_status == status, f"expected HTTP {status}, got {exc.http_status}: {exc.http_body}"
    if code is not None:
        assert exc.code == code, f"expected code {code!r}, got {exc.code!r}: {exc.http_body}"
    assert exc.request_id and exc.request_id.startswith("req_"), f"no Request-Id on error: {exc.request_id!r}"
    if mentions is not None:
        assert mentions in str(exc.user_message or ""), f"message does not name {mentions!r}: {exc.user_message!r}"
