"""eventd driven through stripe-python 16.1.0 exactly as a user would (reference §7.3).

Every test gets its own account (see conftest.py), so it sees only the objects it created.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import stripe
from stripe.events import V2CoreEventDestinationPingEvent
from stripe.v2 import DeletedObject, ListObject
from stripe.v2.core import EventDestination, Event

from support import (
    ACCOUNT_UPDATED_TYPE,
    METER_ERROR_TYPE,
    METER_NO_METER_TYPE,
    PING_TYPE,
    SDK_STRIPE_VERSION,
    assert_error,
    eventbridge,
    meter_event_params,
    parse_ts,
    publish,
    snapshot_webhook,
    thin_webhook,
)


def _check_common_destination(ed, *, livemode: bool = False) -> None:
    assert isinstance(ed, EventDestination)
    assert ed.object == "v2.core.event_destination"
    if livemode:
        assert ed.id.startswith("ed_") and "_test_" not in ed.id, ed.id
    else:
        assert ed.id.startswith("ed_test_"), ed.id
    assert ed.livemode is livemode
    parse_ts(ed.created)
    parse_ts(ed.updated)
    assert ed.last_response.request_id.startswith("req_")


# ----------------------------------------------------------------------------------------------------
# create


def test_create_thin_webhook_destination(client):
    ed = client.v2.core.event_destinations.create(thin_webhook(name="thin one", metadata={"team": "payments"}))
    _check_common_destination(ed)
    assert ed.name == "thin one"
    assert ed.type == "webhook_endpoint"
    assert ed.event_payload == "thin"
    assert ed.enabled_events == [PING_TYPE, METER_ERROR_TYPE]
    assert ed.events_from == ["@self"]  # documented default
    assert ed.description == ""
    assert ed.metadata.to_dict() == {"team": "payments"}
    assert ed.status == "enabled"
    assert ed.status_details is None
    assert ed.snapshot_api_version is None
    assert ed.webhook_endpoint.url is None  # redacted unless included
    assert ed.webhook_endpoint.signing_secret is None  # not requested
    assert "amazon_eventbridge" not in ed or ed.amazon_eventbridge is None
    assert ed.created == ed.updated


def test_create_snapshot_destination(client):
    ed = client.v2.core.event_destinations.create(snapshot_webhook(description="snap", events_from=["@self"]))
    _check_common_destination(ed)
    assert ed.event_payload == "snapshot"
    assert ed.enabled_events == ["customer.created"]
    assert ed.description == "snap"
    # default snapshot_api_version is the request's Stripe-Version (the SDK's pinned one)
    assert ed.snapshot_api_version == SDK_STRIPE_VERSION

    pinned = client.v2.core.event_destinations.create(
        snapshot_webhook(name="pinned", snapshot_api_version="2025-07-30.basil")
    )
    assert pinned.snapshot_api_version == "2025-07-30.basil"


def test_create_eventbridge_destination(client):
    ed = client.v2.core.event_destinations.create(eventbridge(name="prod-bus"))
    _check_common_destination(ed)
    assert ed.type == "amazon_eventbridge"
    bridge = ed.amazon_eventbridge
    assert bridge.aws_account_id == "111122223333"
    assert bridge.aws_event_source_status == "pending"
    assert bridge.aws_event_source_arn == (
        f"arn:aws:events:us-east-1::event-source/aws.partner/stripe.com/{ed.id}"
    )
    assert "webhook_endpoint" not in ed or ed.webhook_endpoint is None
    assert ed.status == "enabled"

    got = client.v2.core.event_destinations.retrieve(ed.id)
    assert got.amazon_eventbridge.aws_event_source_arn == bridge.aws_event_source_arn


def test_create_with_signing_secret_then_retrieve_hides_it(client):
    ed = client.v2.core.event_destinations.create(
        thin_webhook(include=["webhook_endpoint.signing_secret", "webhook_endpoint.url"])
    )
    secret = ed.webhook_endpoint.signing_secret
    assert isinstance(secret, str) and secret.startswith("whsec_") and len(secret) > len("whsec_") + 8
    assert ed.webhook_endpoint.url == "http://127.0.0.1:9/hook"

    got = client.v2.core.event_destinations.retrieve(ed.id, {"include": ["webhook_endpoint.url"]})
    assert got.webhook_endpoint.signing_secret is None
    assert got.webhook_endpoint.url == "http://127.0.0.1:9/hook"


# ----------------------------------------------------------------------------------------------------
# list, retrieve


def test_list_auto_paging_keeps_include(client):
    urls = {}
    for i in range(5):
        ed = client.v2.core.event_destinations.create(thin_webhook(name=f"page {i}", url=f"https://127.0.0.1:9/h/{i}"))
        urls[ed.id] = f"https://127.0.0.1:9/h/{i}"
    created_order = list(urls)

    first = client.v2.core.event_destinations.list({"limit": 2, "include": ["webhook_endpoint.url"]})
    assert isinstance(first, ListObject)
    assert len(first.data) == 2
    assert first.previous_page_url is None
    assert first.next_page_url and first.next_page_url.startswith("/v2/core/event_destinations?")

    seen = []
    for ed in first.auto_paging_iter():
        assert isinstance(ed, EventDestination)
        assert ed.webhook_endpoint.url == urls[ed.id], f"url missing on a later page for {ed.id}"
        assert ed.webhook_endpoint.signing_secret is None
        seen.append(ed.id)
    assert seen == list(reversed(created_order)), "expected every destination once, newest first"

    # Walk the pages by hand too: 5 objects at limit 2 is 3 pages, each carrying the url.
    pages, page = 1, first
    while page.next_page_url is not None:
        resp = client.raw_request("get", page.next_page_url)
        page = client.deserialize(resp, api_mode="V2")
        pages += 1
        assert 1 <= len(page.data) <= 2
        assert all(d.webhook_endpoint.url is not None for d in page.data)
        assert page.previous_page_url is None or page.previous_page_url.startswith("/v2/core/event_destinations?")
        assert pages <= 10, "pagination does not terminate"
    assert pages == 3


def test_retrieve_with_and_without_include(client):
    ed = client.v2.core.event_destinations.create(thin_webhook(url="https://127.0.0.1:9/retrieve"))
    plain = client.v2.core.event_destinations.retrieve(ed.id)
    assert plain.id == ed.id
    assert plain.webhook_endpoint.url is None
    assert plain.webhook_endpoint.signing_secret is None

    full = client.v2.core.event_destinations.retrieve(ed.id, {"include": ["webhook_endpoint.url"]})
    assert full.webhook_endpoint.url == "https://127.0.0.1:9/retrieve"
    assert full.to_dict() | {"webhook_endpoint": None} == plain.to_dict() | {"webhook_endpoint": None}

    unincluded = client.v2.core.event_destinations.list()
    assert [d.id for d in unincluded.data] == [ed.id]
    assert unincluded.data[0].webhook_endpoint.url is None


# ----------------------------------------------------------------------------------------------------
# update, disable, enable


def test_update_metadata_null_deletes_key_and_bumps_updated(client):
    ed = client.v2.core.event_destinations.create(thin_webhook(metadata={"k": "v", "keep": "me"}))
    time.sleep(0.02)  # timestamps have millisecond precision
    upd = client.v2.core.event_destinations.update(
        ed.id,
        {
            "name": "renamed",
            "description": "better",
            "enabled_events": [PING_TYPE],
            "metadata": {"k": None, "new": "x"},
            "include": ["webhook_endpoint.url"],
        },
    )
    assert upd.id == ed.id
    assert upd.name == "renamed"
    assert upd.description == "better"
    assert upd.enabled_events == [PING_TYPE]
    assert upd.metadata.to_dict() == {"keep": "me", "new": "x"}
    assert upd.webhook_endpoint.url == "http://127.0.0.1:9/hook"
    assert upd.created == ed.created
    assert parse_ts(upd.updated) > parse_ts(ed.updated)

    moved = client.v2.core.event_destinations.update(ed.id, {"webhook_endpoint": {"url": "https://127.0.0.1:9/moved"}})
    assert moved.webhook_endpoint.url is None  # not included
    got = client.v2.core.event_destinations.retrieve(ed.id, {"include": ["webhook_endpoint.url"]})
    assert got.webhook_endpoint.url == "https://127.0.0.1:9/moved"
    assert got.metadata.to_dict() == {"keep": "me", "new": "x"}


def test_disable_and_enable(client):
    ed = client.v2.core.event_destinations.create(thin_webhook())
    time.sleep(0.02)
    dis = client.v2.core.event_destinations.disable(ed.id)
    assert dis.status == "disabled"
    assert dis.status_details.disabled.reason == "user"
    assert parse_ts(dis.updated) > parse_ts(ed.updated)

    again = client.v2.core.event_destinations.disable(ed.id)  # idempotent
    assert again.status == "disabled"

    time.sleep(0.02)
    ena = client.v2.core.event_destinations.enable(ed.id)
    assert ena.status == "enabled"
    assert ena.status_details is None
    assert parse_ts(ena.updated) > parse_ts(dis.updated)
    assert client.v2.core.event_destinations.retrieve(ed.id).status == "enabled"


# ----------------------------------------------------------------------------------------------------
# ping, events


def test_ping_returns_typed_ping_event(client):
    ed = client.v2.core.event_destinations.create(thin_webhook())
    ping = client.v2.core.event_destinations.ping(ed.id)
    assert isinstance(ping, V2CoreEventDestinationPingEvent)
    assert ping.object == "v2.core.event"
    assert ping.type == PING_TYPE
    assert ping.id.startswith("evt_test_")
    assert ping.livemode is False
    assert ping.context is None
    parse_ts(ping.created)
    assert ping.related_object.id == ed.id
    assert ping.related_object.type == "v2.core.event_destination"
    assert ping.related_object.url == f"/v2/core/event_destinations/{ed.id}"

    fetched = client.v2.core.events.retrieve(ping.id)
    assert isinstance(fetched, V2CoreEventDestinationPingEvent)
    assert fetched.id == ping.id and fetched.created == ping.created

    listed = client.v2.core.events.list({"object_id": ed.id})
    assert [e.id for e in listed.data] == [ping.id]


def test_events_list_filters_and_retrieve(client):
    meter_a, meter_b = "mtr_test_" + uuid.uuid4().hex[:12], "mtr_test_" + uuid.uuid4().hex[:12]
    e1 = publish(client, meter_event_params(meter_a, METER_ERROR_TYPE))
    time.sleep(0.02)
    e2 = publish(client, meter_event_params(meter_b, METER_NO_METER_TYPE))
    time.sleep(0.02)
    e3 = publish(
        client,
        {
            "type": ACCOUNT_UPDATED_TYPE,
            "related_object": {"id": "acct_x1", "type": "v2.core.account", "url": "/v2/core/accounts/acct_x1"},
        },
    )
    for e in (e1, e2, e3):
        assert isinstance(e, Event)
        assert e.object == "v2.core.event"
        assert e.id.startswith("evt_test_")
    t1, t2, t3 = (parse_ts(e.created) for e in (e1, e2, e3))
    assert t1 < t2 < t3

    events = client.v2.core.events

    def ids(params):
        return [e.id for e in events.list(params).auto_paging_iter()]

    assert ids({}) == [e3.id, e2.id, e1.id], "newest first"
    assert ids({"object_id": meter_a}) == [e1.id]
    assert ids({"types": [METER_ERROR_TYPE, ACCOUNT_UPDATED_TYPE]}) == [e3.id, e1.id]
    assert ids({"types": [METER_NO_METER_TYPE]}) == [e2.id]
    assert ids({"created": {"gt": e2.created}}) == [e3.id]
    assert ids({"created": {"gte": e2.created}}) == [e3.id, e2.id]
    assert ids({"created": {"lt": e2.created}}) == [e1.id]
    assert ids({"created": {"lte": e2.created}}) == [e2.id, e1.id]
    assert ids({"created": {"gt": e1.created, "lt": e3.created}}) == [e2.id]
    assert ids({"object_id": meter_b, "types": [METER_NO_METER_TYPE], "created": {"gte": e1.created}}) == [e2.id]
    assert ids({"object_id": "mtr_nothing"}) == []

    one = events.list({"limit": 1})
    assert len(one.data) == 1 and one.data[0].id == e3.id
    assert one.next_page_url and one.next_page_url.startswith("/v2/core/events?")
    assert [e.id for e in one.auto_paging_iter()] == [e3.id, e2.id, e1.id]

    filtered_paged = events.list({"limit": 1, "types": [METER_ERROR_TYPE, METER_NO_METER_TYPE]})
    assert [e.id for e in filtered_paged.auto_paging_iter()] == [e2.id, e1.id], "page token must keep filters"

    got = events.retrieve(e1.id)
    assert got.id == e1.id
    assert got.type == METER_ERROR_TYPE
    assert got.related_object.id == meter_a
    assert got.related_object.url == f"/v1/billing/meters/{meter_a}"
    assert got.data.developer_message_summary == "There is 1 invalid event"
    assert got.created == e1.created

    with pytest.raises(stripe.InvalidRequestError) as ei:
        events.retrieve("evt_test_doesnotexist")
    assert_error(ei.value, stripe.InvalidRequestError, 404, "not_found")


# ----------------------------------------------------------------------------------------------------
# idempotency


def test_idempotent_replay_and_conflict(client):
    key = f"conformance-{uuid.uuid4()}"
    params = thin_webhook(name="idem", include=["webhook_endpoint.signing_secret"])
    first = client.v2.core.event_destinations.create(params, {"idempotency_key": key})
    replay = client.v2.core.event_destinations.create(params, {"idempotency_key": key})
    assert replay.id == first.id
    assert replay.webhook_endpoint.signing_secret == first.webhook_endpoint.signing_secret
    assert [d.id for d in client.v2.core.event_destinations.list().data] == [first.id], "replay created something"

    with pytest.raises(stripe.IdempotencyError) as ei:
        client.v2.core.event_destinations.create(thin_webhook(name="different"), {"idempotency_key": key})
    assert_error(ei.value, stripe.IdempotencyError, 409, "idempotency_error")
    assert [d.id for d in client.v2.core.event_destinations.list().data] == [first.id]

    # ping replay returns the same event and publishes nothing new
    pkey = f"ping-{uuid.uuid4()}"
    p1 = client.v2.core.event_destinations.ping(first.id, options={"idempotency_key": pkey})
    p2 = client.v2.core.event_destinations.ping(first.id, options={"idempotency_key": pkey})
    assert p1.id == p2.id
    assert [e.id for e in client.v2.core.events.list({"object_id": first.id}).data] == [p1.id]


# ----------------------------------------------------------------------------------------------------
# delete, errors


def test_delete_then_404(client):
    ed = client.v2.core.event_destinations.create(thin_webhook())
    deleted = client.v2.core.event_destinations.delete(ed.id)
    assert isinstance(deleted, DeletedObject)
    assert deleted.id == ed.id
    assert deleted.object == "v2.core.event_destination"

    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v2.core.event_destinations.retrieve(ed.id)
    assert_error(ei.value, stripe.InvalidRequestError, 404, "not_found")
    assert ed.id not in [d.id for d in client.v2.core.event_destinations.list().data]

    for call in (
        lambda: client.v2.core.event_destinations.update(ed.id, {"name": "x"}),
        lambda: client.v2.core.event_destinations.disable(ed.id),
        lambda: client.v2.core.event_destinations.enable(ed.id),
        lambda: client.v2.core.event_destinations.ping(ed.id),
        lambda: client.v2.core.event_destinations.delete(ed.id),
    ):
        with pytest.raises(stripe.InvalidRequestError) as ei:
            call()
        assert_error(ei.value, stripe.InvalidRequestError, 404, "not_found")


def test_bad_api_key_is_401(eventd):
    bad = eventd.client("sk_test_" + "0" * 24)
    with pytest.raises(stripe.AuthenticationError) as ei:
        bad.v2.core.event_destinations.list()
    assert_error(ei.value, stripe.AuthenticationError, 401)


def test_invalid_enum_is_400_invalid_fields(client):
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v2.core.event_destinations.create(thin_webhook(event_payload="bogus"))
    assert_error(ei.value, stripe.InvalidRequestError, 400, "invalid_fields", mentions="event_payload")
    assert ei.value.user_message.startswith("Some fields in the request were invalid:")
    assert client.v2.core.event_destinations.list().data == []


# ----------------------------------------------------------------------------------------------------
# live mode, connected accounts


def test_live_mode(client, live_client):
    ed = live_client.v2.core.event_destinations.create(thin_webhook(url="https://127.0.0.1:9/live"))
    _check_common_destination(ed, livemode=True)

    ping = live_client.v2.core.event_destinations.ping(ed.id)
    assert ping.livemode is True
    assert ping.id.startswith("evt_") and "_test_" not in ping.id

    with pytest.raises(stripe.InvalidRequestError) as ei:
        live_client.v2.core.event_destinations.create(thin_webhook(url="http://127.0.0.1:9/insecure"))
    assert_error(ei.value, stripe.InvalidRequestError, 400, "invalid_fields", mentions="webhook_endpoint.url")

    # modes do not see each other's objects
    with pytest.raises(stripe.InvalidRequestError) as ei:
        client.v2.core.event_destinations.retrieve(ed.id)
    assert_error(ei.value, stripe.InvalidRequestError, 404, "not_found")
    assert client.v2.core.event_destinations.list().data == []
    assert [d.id for d in live_client.v2.core.event_destinations.list().data] == [ed.id]


def test_stripe_context_connected_account(eventd, account):
    child = eventd.create_account(parent=account.id)
    assert f"{child.id} parent={account.id}" in eventd.list_accounts()

    parent = eventd.client(account.sk_test)
    in_child = eventd.client(account.sk_test, stripe_context=child.id)

    ed = in_child.v2.core.event_destinations.create(thin_webhook(name="child dest"))
    assert in_child.v2.core.event_destinations.retrieve(ed.id).id == ed.id
    # per-request option works the same way
    opt = parent.v2.core.event_destinations.retrieve(ed.id, options={"stripe_context": child.id})
    assert opt.id == ed.id

    # invisible from the parent's own context
    with pytest.raises(stripe.InvalidRequestError) as ei:
        parent.v2.core.event_destinations.retrieve(ed.id)
    assert_error(ei.value, stripe.InvalidRequestError, 404, "not_found")
    assert parent.v2.core.event_destinations.list().data == []
    assert [d.id for d in in_child.v2.core.event_destinations.list().data] == [ed.id]

    # events published or pinged in the child carry its context
    evt = publish(parent, meter_event_params("mtr_child"), stripe_context=child.id)
    assert evt.context == child.id
    ping = in_child.v2.core.event_destinations.ping(ed.id)
    assert ping.context == child.id
    assert {e.id for e in in_child.v2.core.events.list().data} == {evt.id, ping.id}
    assert in_child.v2.core.events.retrieve(evt.id).context == child.id
    with pytest.raises(stripe.InvalidRequestError) as ei:
        parent.v2.core.events.retrieve(evt.id)
    assert_error(ei.value, stripe.InvalidRequestError, 404, "not_found")

    # the child's own key acts in the child directly and sees the same objects; for it, the child's events
    # are its own: no `context` (the parent sees the same events with the child's context)
    own = eventd.client(child.sk_test)
    assert [d.id for d in own.v2.core.event_destinations.list().data] == [ed.id]
    own_evt = publish(own, meter_event_params("mtr_own"))
    assert own_evt.context is None
    assert own.v2.core.events.retrieve(own_evt.id).context is None
    assert own.v2.core.events.retrieve(evt.id).context is None
    assert in_child.v2.core.events.retrieve(own_evt.id).context == child.id

    # an account that is not connected to the key's account is refused
    stranger = eventd.create_account()
    with pytest.raises(stripe.PermissionError) as ei:
        eventd.client(account.sk_test, stripe_context=stranger.id).v2.core.event_destinations.list()
    assert_error(ei.value, stripe.PermissionError, 403)


def test_bootstrap_keys_work(eventd):
    boot = eventd.client(eventd.bootstrap.sk_test)
    page = boot.v2.core.event_destinations.list({"limit": 1})
    assert isinstance(page, ListObject)
    live = eventd.client(eventd.bootstrap.sk_live)
    assert isinstance(live.v2.core.events.list({"limit": 1}), ListObject)
    assert any(line.startswith("acct_") and " " not in line for line in eventd.list_accounts())


def test_event_notification_fetches_event_and_related_object(eventd, account):
    """A receiver's flow (reference §7.4): parse a thin notification, then fetch its event and related object."""
    child = eventd.create_account(parent=account.id)
    parent = eventd.client(account.sk_test)
    ed = parent.v2.core.event_destinations.create(thin_webhook(), {"stripe_context": child.id})
    ping = parent.v2.core.event_destinations.ping(ed.id, options={"stripe_context": child.id})
    wire = ping.to_dict()
    body = {k: wire[k] for k in ("id", "object", "type", "created", "livemode", "context", "reason", "related_object")}
    notif = parent.parse_event_notification_without_verification(json.dumps(body))
    assert str(notif.context) == child.id
    full = notif.fetch_event()  # GET /v2/core/events/{id} with Stripe-Context and Stripe-Request-Trigger
    assert isinstance(full, V2CoreEventDestinationPingEvent) and full.id == ping.id
    dest = notif.fetch_related_object()  # GET related_object.url in the event's context
    assert isinstance(dest, EventDestination) and dest.id == ed.id
