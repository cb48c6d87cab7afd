"""Real deliveries from eventd, received on loopback and verified with stripe-python 16.1.0 (reference §4, §4.5, §7.4).

A receiver (support.Receiver: http.server on 127.0.0.1, port 0, its own thread) records each POST's raw bytes and
headers and answers 200; the test then does what a webhook handler does with the SDK:
`client.parse_event_notification(raw, sig, secret)` for thin destinations and `client.construct_event(raw, sig,
secret)` for snapshot ones, both with the SDK's default 300 s tolerance, then `fetch_event()` /
`fetch_related_object()` against eventd. Waits are bounded (15 s) and driven by the receiver's queue.
"""

from __future__ import annotations

import http.client
import json
import re
import uuid
from urllib.parse import urlsplit

import pytest
import stripe
from stripe.events import (
    V1BillingMeterErrorReportTriggeredEvent,
    V1BillingMeterErrorReportTriggeredEventNotification,
    V2CoreEventDestinationPingEvent,
    V2CoreEventDestinationPingEventNotification,
)
from stripe.v2.core import EventDestination

from support import (
    METER_ERROR_TYPE,
    PING_TYPE,
    Receiver,
    meter_event_params,
    publish,
    snapshot_webhook,
    thin_webhook,
)

SIGNATURE = re.compile(r"^t=\d+(,v[01]=[0-9a-f]+)+$")
SNAPSHOT_VERSION = "2025-07-30.basil"
UNICODE_NAME = "Ünïcødé \u2028 <p>x&y</p>"


@pytest.fixture
def receiver():
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def _signing_secret(ed) -> str:
    secret = ed.webhook_endpoint.signing_secret
    assert isinstance(secret, str) and secret.startswith("whsec_"), f"no signing secret on create: {secret!r}"
    return secret


def _check_delivery_headers(d) -> None:
    assert d.headers.get("content-type", "").startswith("application/json"), d.headers
    assert d.signature and SIGNATURE.match(d.signature), f"Stripe-Signature {d.signature!r}"
    assert "v1=" in d.signature


def _raw_post(base_url: str, path: str, key: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    """A plain HTTP POST (no SDK) with the account's key; returns (status, parsed JSON)."""
    split = urlsplit(base_url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=30)
    try:
        hdrs = {"Authorization": f"Bearer {key}", "Content-Type": "application/json; charset=utf-8"}
        hdrs.update(headers or {})
        conn.request("POST", path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------------
# (a) ping to a thin destination


def test_ping_delivery_parses_and_fetches(client, receiver):
    ed = client.v2.core.event_destinations.create(
        thin_webhook(
            name="ping receiver",
            url=receiver.url("/thin"),
            enabled_events=[PING_TYPE],
            include=["webhook_endpoint.signing_secret"],
        )
    )
    secret = _signing_secret(ed)
    ping = client.v2.core.event_destinations.ping(ed.id)

    d = receiver.wait_for_event(ping.id, path="/thin")
    _check_delivery_headers(d)
    body = json.loads(d.raw)
    assert body["object"] == "v2.core.event" and body["type"] == PING_TYPE
    assert "data" not in body or body["data"] is None, f"thin notification carries data: {body!r}"

    notif = client.parse_event_notification(d.raw, d.signature, secret)  # default tolerance (300 s)
    assert isinstance(notif, V2CoreEventDestinationPingEventNotification), type(notif)
    assert notif.id == ping.id
    assert notif.type == PING_TYPE
    assert notif.livemode is False
    assert notif.context is None
    assert notif.related_object.id == ed.id
    assert notif.related_object.type == "v2.core.event_destination"
    assert notif.related_object.url == f"/v2/core/event_destinations/{ed.id}"

    event = notif.fetch_event()
    assert isinstance(event, V2CoreEventDestinationPingEvent), type(event)
    assert event.id == ping.id
    assert event.created == notif.created

    dest = notif.fetch_related_object()
    assert isinstance(dest, EventDestination), type(dest)
    assert dest.id == ed.id
    assert dest.status == "enabled"

    # the same body as a string verifies too (what a framework that decodes the body hands over)
    assert client.parse_event_notification(d.raw.decode("utf-8"), d.signature, secret).id == ping.id

    with pytest.raises(stripe.SignatureVerificationError):
        client.parse_event_notification(d.raw, d.signature, "whsec_" + "0" * 32)
    with pytest.raises(stripe.SignatureVerificationError):
        client.parse_event_notification(d.raw + b" ", d.signature, secret)  # tampered body


# ----------------------------------------------------------------------------------------------------
# (b) snapshot destination, published customer.created


def test_snapshot_delivery_constructs_v1_event(eventd, account, client, receiver):
    ed = client.v2.core.event_destinations.create(
        snapshot_webhook(
            name="snapshot receiver",
            url=receiver.url("/snapshot"),
            enabled_events=["customer.created"],
            snapshot_api_version=SNAPSHOT_VERSION,
            include=["webhook_endpoint.signing_secret"],
        )
    )
    assert ed.event_payload == "snapshot" and ed.snapshot_api_version == SNAPSHOT_VERSION
    secret = _signing_secret(ed)

    payload = {"type": "customer.created", "data": {"object": {"id": "cus_123", "object": "customer", "name": UNICODE_NAME}}}
    status, published = _raw_post(
        eventd.base_url, "/v2/core/events", account.sk_test, json.dumps(payload, ensure_ascii=False).encode("utf-8")
    )
    assert status == 200, published
    assert published["object"] == "event" and published["type"] == "customer.created", published

    d = receiver.wait_for_event(published["id"], path="/snapshot")
    _check_delivery_headers(d)

    event = client.construct_event(d.raw, d.signature, secret)  # default tolerance (300 s)
    assert isinstance(event, stripe.Event), type(event)
    assert event.id == published["id"]
    assert event.object == "event"
    assert event.type == "customer.created"
    assert event.api_version == SNAPSHOT_VERSION
    assert isinstance(event.created, int)
    assert event.livemode is False
    assert event.data.object.id == "cus_123"
    assert event.data.object.object == "customer"
    assert event.data.object.name == UNICODE_NAME

    with pytest.raises(stripe.SignatureVerificationError):
        client.construct_event(d.raw, d.signature, "whsec_" + "0" * 32)
    # a snapshot body is not a thin notification
    with pytest.raises(ValueError):
        client.parse_event_notification(d.raw, d.signature, secret)


# ----------------------------------------------------------------------------------------------------
# (c) published thin v1.* event with related_object and data


def test_thin_v1_event_delivery_fetches_data(client, receiver):
    ed = client.v2.core.event_destinations.create(
        thin_webhook(
            name="meter receiver",
            url=receiver.url("/meter"),
            enabled_events=[METER_ERROR_TYPE],
            include=["webhook_endpoint.signing_secret"],
        )
    )
    secret = _signing_secret(ed)
    meter = "mtr_test_" + uuid.uuid4().hex[:12]
    published = publish(client, meter_event_params(meter))

    d = receiver.wait_for_event(published.id, path="/meter")
    _check_delivery_headers(d)
    body = json.loads(d.raw)
    assert "data" not in body or body["data"] is None, f"thin notification carries data: {body!r}"

    notif = client.parse_event_notification(d.raw, d.signature, secret)
    assert isinstance(notif, V1BillingMeterErrorReportTriggeredEventNotification), type(notif)
    assert notif.id == published.id
    assert notif.type == METER_ERROR_TYPE
    assert notif.context is None
    assert notif.related_object.id == meter
    assert notif.related_object.type == "billing.meter"
    assert notif.related_object.url == f"/v1/billing/meters/{meter}"

    event = notif.fetch_event()
    assert isinstance(event, V1BillingMeterErrorReportTriggeredEvent), type(event)
    assert event.id == published.id
    assert event.related_object.id == meter
    assert event.data.developer_message_summary == "There is 1 invalid event"
    assert event.data.validation_start == "2026-01-01T00:00:00.000Z"
    assert event.data.validation_end == "2026-01-01T00:00:10.000Z"


# ----------------------------------------------------------------------------------------------------
# (d) event in a connected account, delivered to the parent's @accounts destination


def test_connected_account_event_delivered_with_context(eventd, account, client, receiver):
    child = eventd.create_account(parent=account.id)
    ed = client.v2.core.event_destinations.create(
        thin_webhook(
            name="connect receiver",
            url=receiver.url("/connect"),
            enabled_events=[METER_ERROR_TYPE],
            events_from=["@accounts"],
            include=["webhook_endpoint.signing_secret"],
        )
    )
    secret = _signing_secret(ed)
    meter = "mtr_test_" + uuid.uuid4().hex[:12]
    published = publish(client, meter_event_params(meter), stripe_context=child.id)
    assert published.context == child.id

    d = receiver.wait_for_event(published.id, path="/connect")
    _check_delivery_headers(d)
    assert json.loads(d.raw).get("context") == child.id

    # the receiver holds the parent's key; the notification's context scopes the fetch to the child
    notif = client.parse_event_notification(d.raw, d.signature, secret)
    assert isinstance(notif, V1BillingMeterErrorReportTriggeredEventNotification), type(notif)
    assert notif.context is not None and str(notif.context) == child.id
    event = notif.fetch_event()  # sends Stripe-Context: <child>
    assert event.id == published.id
    assert event.context == child.id
    assert event.data.developer_message_summary == "There is 1 invalid event"

    # without the context the parent cannot see the child's event
    with pytest.raises(stripe.InvalidRequestError):
        client.v2.core.events.retrieve(published.id)
