"""Raw-HTTP tests (http.client only): every route, every error case, every body checked against OpenAPI.

Each JSON response goes through `openapi_check.check_response`, which validates it against eventd's document
and, for Stripe's ten routes, against Stripe's published schemas. Every response must also carry a
`Request-Id: req_…` header and a JSON content type.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import quote, urlsplit

import pytest

import openapi_check
from conftest import REPO_ROOT, random_alnum
from support import (
    METER_ERROR_TYPE,
    METER_NO_METER_TYPE,
    PING_TYPE,
    eventbridge,
    meter_event_params,
    parse_ts,
    snapshot_webhook,
    thin_webhook,
)

openapi_check.load_docs(REPO_ROOT)

_DEFAULT = object()


@dataclass
class Resp:
    method: str
    path: str
    status: int
    headers: dict
    body: bytes
    json: Any

    def error(self) -> dict:
        assert isinstance(self.json, dict) and isinstance(self.json.get("error"), dict), self.describe()
        return self.json["error"]

    def describe(self) -> str:
        return f"{self.method} {self.path} -> {self.status} {self.body[:600]!r}"


class Wire:
    """A tiny HTTP client that checks the invariants every eventd response must hold."""

    def __init__(self, base_url: str, key: Optional[str]):
        split = urlsplit(base_url)
        self.host, self.port = split.hostname, split.port
        self.key = key
        self.request_ids: list[str] = []

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: Any = _DEFAULT,
        headers: Optional[dict] = None,
        raw: Optional[bytes] = None,
    ) -> Resp:
        hdrs = {"Accept": "application/json"}
        key = self.key if key is _DEFAULT else key
        if key is not None:
            hdrs["Authorization"] = f"Bearer {key}"
        data = raw
        if data is None and body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            try:
                conn.request(method, path, body=data, headers=hdrs)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (e.g. 413) and close before reading the whole body
            r = conn.getresponse()
            payload = r.read()
            resp_headers = {k.lower(): v for k, v in r.getheaders()}
            status = r.status
        finally:
            conn.close()
        resp = Resp(method, path, status, resp_headers, payload, None)
        rid = resp_headers.get("request-id", "")
        assert rid.startswith("req_"), f"missing Request-Id: {resp.describe()}"
        self.request_ids.append(rid)
        ctype = resp_headers.get("content-type", "")
        assert ctype.startswith("application/json"), f"content-type {ctype!r}: {resp.describe()}"
        try:
            resp.json = json.loads(payload)
        except ValueError as e:
            raise AssertionError(f"body is not JSON ({e}): {resp.describe()}")
        openapi_check.check_response(method, path, status, resp.json)
        return resp

    def get(self, path: str, **kw) -> Resp:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Resp:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> Resp:
        return self.request("DELETE", path, **kw)

    # -- expectations ------------------------------------------------------------------------------
    @staticmethod
    def ok(resp: Resp) -> Any:
        assert resp.status == 200, resp.describe()
        return resp.json

    @staticmethod
    def err(resp: Resp, status: int, code: str, etype: str = "invalid_request_error", mentions: str = None) -> dict:
        assert resp.status == status, f"expected {status} {code}: {resp.describe()}"
        e = resp.error()
        assert e.get("code") == code, f"expected code {code}: {resp.describe()}"
        assert e.get("type") == etype, f"expected type {etype}: {resp.describe()}"
        assert isinstance(e.get("message"), str) and e["message"], resp.describe()
        if mentions is not None:
            assert mentions in e["message"], f"message should name {mentions!r}: {resp.describe()}"
        return e

    def invalid(self, resp: Resp, mentions: Optional[str] = None) -> dict:
        e = self.err(resp, 400, "invalid_fields", mentions=mentions)
        assert e["message"].startswith("Some fields in the request were invalid: "), resp.describe()
        return e

    # -- shortcuts ---------------------------------------------------------------------------------
    def create(self, params: dict, **kw) -> dict:
        return self.ok(self.post("/v2/core/event_destinations", params, **kw))

    def ids(self, path: str) -> list[str]:
        """All ids of a list, following next_page_url."""
        out, url, pages = [], path, 0
        while url is not None:
            page = self.ok(self.get(url))
            out += [o["id"] for o in page["data"]]
            if not page["data"]:
                assert page["next_page_url"] is None, "an empty page must not have a next_page_url"
            url = page["next_page_url"]
            pages += 1
            assert pages <= 200, "pagination does not terminate"
        return out


@pytest.fixture
def wire(eventd, account) -> Wire:
    return Wire(eventd.base_url, account.sk_test)


@pytest.fixture
def live_wire(eventd, account) -> Wire:
    return Wire(eventd.base_url, account.sk_live)


ED = "/v2/core/event_destinations"
EV = "/v2/core/events"


# ----------------------------------------------------------------------------------------------------
# unauthenticated routes


def test_healthz_and_openapi(eventd):
    w = Wire(eventd.base_url, None)
    assert w.ok(w.get("/healthz")) == {"status": "ok", "database": "ok"}
    doc = w.ok(w.get("/openapi.json"))
    assert doc["openapi"].startswith("3.")
    for path in (ED, f"{ED}/{{id}}", f"{ED}/{{id}}/disable", f"{ED}/{{id}}/enable", f"{ED}/{{id}}/ping", EV, f"{EV}/{{id}}"):
        assert path in doc["paths"], f"/openapi.json lacks {path}"


# ----------------------------------------------------------------------------------------------------
# the ten Stripe routes, success paths


def test_every_route_succeeds(wire):
    ed = wire.create(thin_webhook(url="https://127.0.0.1:9/all", include=["webhook_endpoint.signing_secret"]))
    assert ed["webhook_endpoint"]["signing_secret"].startswith("whsec_")
    assert ed["webhook_endpoint"]["url"] is None
    bridge = wire.create(eventbridge())
    snap = wire.create(snapshot_webhook())
    assert "webhook_endpoint" not in bridge or bridge["webhook_endpoint"] is None
    assert "amazon_eventbridge" not in snap or snap["amazon_eventbridge"] is None

    listed = wire.ok(wire.get(ED))
    assert [d["id"] for d in listed["data"]] == [snap["id"], bridge["id"], ed["id"]]
    assert listed["next_page_url"] is None and listed["previous_page_url"] is None

    got = wire.ok(wire.get(f"{ED}/{ed['id']}"))
    assert got["webhook_endpoint"] == {"signing_secret": None, "url": None}
    upd = wire.ok(wire.post(f"{ED}/{ed['id']}", {"description": "d", "include": ["webhook_endpoint.url"]}))
    assert upd["description"] == "d" and upd["webhook_endpoint"]["url"] == "https://127.0.0.1:9/all"
    dis = wire.ok(wire.post(f"{ED}/{ed['id']}/disable", {}))
    assert dis["status_details"] == {"disabled": {"reason": "user"}}
    ena = wire.ok(wire.post(f"{ED}/{ed['id']}/enable", {}))
    assert ena["status"] == "enabled" and ena["status_details"] is None
    ping = wire.ok(wire.post(f"{ED}/{ed['id']}/ping", {}))
    assert ping["object"] == "v2.core.event" and ping["type"] == PING_TYPE
    assert ping["related_object"] == {
        "id": ed["id"],
        "type": "v2.core.event_destination",
        "url": f"/v2/core/event_destinations/{ed['id']}",
    }
    events = wire.ok(wire.get(f"{EV}?object_id={ed['id']}"))
    assert [e["id"] for e in events["data"]] == [ping["id"]]
    assert wire.ok(wire.get(f"{EV}/{ping['id']}")) == events["data"][0]
    deleted = wire.ok(wire.delete(f"{ED}/{ed['id']}"))
    assert deleted == {"id": ed["id"], "object": "v2.core.event_destination"}
    wire.err(wire.get(f"{ED}/{ed['id']}"), 404, "not_found")


def test_destination_and_event_shapes(wire):
    ed = wire.create(thin_webhook(description="x", metadata={"a": "b"}))
    for key in ("id", "object", "created", "updated", "description", "enabled_events", "event_payload", "events_from",
                "livemode", "metadata", "name", "snapshot_api_version", "status", "status_details", "type",
                "webhook_endpoint"):
        assert key in ed, f"destination lacks {key}: {ed}"
    parse_ts(ed["created"])
    parse_ts(ed["updated"])
    r = wire.post(EV, meter_event_params("mtr_shape"), headers={"Idempotency-Key": "pub-shape"})
    evt = wire.ok(r)
    for key in ("id", "object", "created", "livemode", "type", "context", "reason", "related_object", "data"):
        assert key in evt, f"event lacks {key}: {evt}"
    assert evt["context"] is None
    assert evt["reason"]["type"] == "request"
    assert evt["reason"]["request"]["idempotency_key"] == "pub-shape"
    assert evt["reason"]["request"]["id"] == r.headers["request-id"]
    parse_ts(evt["created"])


def test_include_query_forms(wire):
    ed = wire.create(thin_webhook(url="https://127.0.0.1:9/forms"))
    for query in ("include[0]=webhook_endpoint.url", "include%5B0%5D=webhook_endpoint.url",
                  "include[]=webhook_endpoint.url", "include%5B%5D=webhook_endpoint.url",
                  "include=webhook_endpoint.url"):
        got = wire.ok(wire.get(f"{ED}/{ed['id']}?{query}"))
        assert got["webhook_endpoint"]["url"] == "https://127.0.0.1:9/forms", query
        page = wire.ok(wire.get(f"{ED}?{query}"))
        assert page["data"][0]["webhook_endpoint"]["url"] == "https://127.0.0.1:9/forms", query


def test_array_query_forms_for_types(wire):
    a = wire.ok(wire.post(EV, meter_event_params("mtr_a", METER_ERROR_TYPE)))
    b = wire.ok(wire.post(EV, meter_event_params("mtr_b", METER_NO_METER_TYPE)))
    wire.ok(wire.post(EV, {"type": "v2.core.account.updated"}))
    want = {a["id"], b["id"]}
    t1, t2 = METER_ERROR_TYPE, METER_NO_METER_TYPE
    for query in (f"types[0]={t1}&types[1]={t2}", f"types%5B0%5D={t1}&types%5B1%5D={t2}",
                  f"types[]={t1}&types[]={t2}", f"types={t1}&types={t2}"):
        assert set(wire.ids(f"{EV}?{query}")) == want, query
    assert wire.ids(f"{EV}?types[0]={t2}&object_id=mtr_b") == [b["id"]]


def test_get_and_delete_tolerate_json_content_type_and_empty_body(wire):
    ed = wire.create(thin_webhook())
    hdr = {"Content-Type": "application/json"}
    wire.ok(wire.get(f"{ED}/{ed['id']}", headers=hdr, raw=b""))
    wire.ok(wire.get(ED, headers=hdr, raw=b""))
    wire.ok(wire.delete(f"{ED}/{ed['id']}", headers=hdr, raw=b""))


def test_action_bodies_empty_or_untyped(wire):
    ed = wire.create(thin_webhook())
    assert wire.ok(wire.post(f"{ED}/{ed['id']}/disable", raw=b""))["status"] == "disabled"
    assert wire.ok(wire.post(f"{ED}/{ed['id']}/enable", raw=b"{}", headers={"Content-Type": "text/plain"}))[
        "status"] == "enabled"
    assert wire.ok(wire.post(f"{ED}/{ed['id']}/ping", raw=b""))["type"] == PING_TYPE


def test_percent_encoded_path_id(wire):
    ed = wire.create(thin_webhook())
    encoded = quote(ed["id"], safe="").replace("_", "%5F")
    assert wire.ok(wire.get(f"{ED}/{encoded}"))["id"] == ed["id"]


def test_ping_disabled_and_snapshot_destinations(wire):
    ed = wire.create(snapshot_webhook())
    wire.ok(wire.post(f"{ED}/{ed['id']}/disable", {}))
    ping = wire.ok(wire.post(f"{ED}/{ed['id']}/ping", {}))
    assert ping["type"] == PING_TYPE and ping["related_object"]["id"] == ed["id"]
    assert wire.ids(f"{EV}?object_id={ed['id']}") == [ping["id"]]


# ----------------------------------------------------------------------------------------------------
# publishing (eventd extension)


def test_publish_snapshot_event_and_v1_retrieve(wire):
    body = {"type": "customer.created", "data": {"object": {"id": "cus_123", "object": "customer"}}}
    evt = wire.ok(wire.post(EV, body))
    assert evt["object"] == "event"
    assert evt["type"] == "customer.created"
    assert isinstance(evt["created"], int)
    assert evt["data"]["object"] == {"id": "cus_123", "object": "customer"}
    assert evt["id"].startswith("evt_")
    got = wire.ok(wire.get(f"/v1/events/{evt['id']}"))
    assert got["id"] == evt["id"] and got["object"] == "event"
    assert evt["id"] not in wire.ids(EV), "snapshot events are not listed by /v2/core/events"
    wire.err(wire.get(f"{EV}/{evt['id']}"), 404, "not_found")
    wire.err(wire.get("/v1/events/evt_doesnotexist"), 404, "not_found")


def test_publish_validation(wire):
    wire.invalid(wire.post(EV, {}), mentions="type")
    wire.invalid(wire.post(EV, {"type": "v2.core.account.updated",
                                "related_object": {"id": "x", "type": "t", "url": "https://evil.example/x"}}),
                 mentions="related_object.url")
    wire.invalid(wire.post(EV, {"type": "customer.created"}), mentions="data")


# ----------------------------------------------------------------------------------------------------
# auth, context, version


def test_authentication_errors(eventd, account, wire):
    wire.err(wire.get(ED, key=None), 401, "invalid_api_key")
    wire.err(wire.get(ED, key="garbage"), 401, "invalid_api_key")
    wire.err(wire.get(ED, key="sk_test_" + random_alnum(24)), 401, "invalid_api_key")
    wire.err(wire.get(ED, key=None, headers={"Authorization": "Token abc"}), 401, "invalid_api_key")
    for key in ("rk_test_" + random_alnum(24), "pk_test_" + random_alnum(24), "rk_live_" + random_alnum(24)):
        wire.err(wire.get(ED, key=key), 403, "secret_key_required")
    basic = base64.b64encode(f"{account.sk_test}:".encode()).decode()
    wire.ok(wire.get(ED, key=None, headers={"Authorization": f"Basic {basic}"}))


def test_stripe_context_variants(eventd, account, wire):
    child = eventd.create_account(parent=account.id)
    grandchild = eventd.create_account(parent=child.id)
    ed = wire.create(thin_webhook(name="in child"), headers={"Stripe-Context": child.id})
    assert wire.ids(ED) == [], "the child's destination must not show in the parent's list"
    for hdr in ({"Stripe-Context": child.id}, {"Stripe-Account": child.id},
                {"Stripe-Context": f"{account.id}/{child.id}"}):
        assert wire.ok(wire.get(f"{ED}/{ed['id']}", headers=hdr))["id"] == ed["id"], hdr
    deep = wire.ok(wire.post(EV, meter_event_params("mtr_deep"), headers={"Stripe-Context": f"{child.id}/{grandchild.id}"}))
    assert deep["context"] == f"{child.id}/{grandchild.id}"
    wire.err(wire.get(ED, headers={"Stripe-Context": grandchild.id}), 403, "account_invalid")
    wire.err(wire.get(ED, headers={"Stripe-Context": "acct_doesnotexist"}), 403, "account_invalid")
    wire.err(wire.get(ED, headers={"Stripe-Context": eventd.create_account().id}), 403, "account_invalid")
    wire.err(wire.get(f"{ED}/{ed['id']}"), 404, "not_found")


def test_stripe_version_header(wire):
    r = wire.get(ED)
    assert r.headers.get("stripe-version") == "2026-10-28.endive", r.headers
    r = wire.get(ED, headers={"Stripe-Version": "2025-07-30.basil"})
    assert r.headers.get("stripe-version") == "2025-07-30.basil"
    r = wire.get(ED, headers={"Stripe-Version": "2024-09-30"})
    assert r.status == 200 and r.headers.get("stripe-version") == "2024-09-30"
    wire.err(wire.get(ED, headers={"Stripe-Version": "latest"}), 400, "invalid_stripe_version")
    snap = wire.create(snapshot_webhook(), headers={"Stripe-Version": "2025-07-30.basil"})
    assert snap["snapshot_api_version"] == "2025-07-30.basil"


def test_request_ids_are_unique(wire):
    for _ in range(5):
        wire.get(ED)
        wire.get(f"{ED}/ed_test_nope")
    assert len(set(wire.request_ids)) == len(wire.request_ids)


def test_live_mode_wire(live_wire, wire):
    ed = live_wire.create(thin_webhook(url="https://127.0.0.1:9/live"))
    assert ed["livemode"] is True and ed["id"].startswith("ed_") and "_test_" not in ed["id"]
    live_wire.invalid(live_wire.post(ED, thin_webhook(url="http://127.0.0.1:9/live")), mentions="webhook_endpoint.url")
    evt = live_wire.ok(live_wire.post(EV, meter_event_params("mtr_live")))
    assert evt["livemode"] is True and "_test_" not in evt["id"]
    wire.err(wire.get(f"{ED}/{ed['id']}"), 404, "not_found")
    wire.err(wire.get(f"{EV}/{evt['id']}"), 404, "not_found")
    assert wire.ids(EV) == []


# ----------------------------------------------------------------------------------------------------
# validation


LONG = "x" * 5001

CREATE_INVALID = [
    ("missing name", lambda: {k: v for k, v in thin_webhook().items() if k != "name"}, "name"),
    ("empty name", lambda: thin_webhook(name=""), "name"),
    ("long name", lambda: thin_webhook(name=LONG), "name"),
    ("name not a string", lambda: thin_webhook(name=5), "name"),
    ("bad type", lambda: thin_webhook(type="carrier_pigeon"), "type"),
    ("missing type", lambda: {k: v for k, v in thin_webhook().items() if k != "type"}, "type"),
    ("missing event_payload", lambda: {k: v for k, v in thin_webhook().items() if k != "event_payload"}, "event_payload"),
    ("bad event_payload", lambda: thin_webhook(event_payload="fat"), "event_payload"),
    ("missing enabled_events", lambda: {k: v for k, v in thin_webhook().items() if k != "enabled_events"},
     "enabled_events"),
    ("empty enabled_events", lambda: thin_webhook(enabled_events=[]), "enabled_events"),
    ("duplicate enabled_events", lambda: thin_webhook(enabled_events=[PING_TYPE, PING_TYPE]), "enabled_events"),
    ("too many enabled_events", lambda: thin_webhook(enabled_events=[f"v2.x.y{i}" for i in range(501)]),
     "enabled_events"),
    ("classic type on thin", lambda: thin_webhook(enabled_events=["customer.created"]), "enabled_events"),
    ("thin type on snapshot", lambda: snapshot_webhook(enabled_events=[METER_ERROR_TYPE]), "enabled_events"),
    ("snapshot_api_version on thin", lambda: thin_webhook(snapshot_api_version="2025-07-30.basil"),
     "snapshot_api_version"),
    ("long description", lambda: thin_webhook(description=LONG), "description"),
    ("bad events_from", lambda: thin_webhook(events_from=["@bogus"]), "events_from"),
    ("organization events_from", lambda: thin_webhook(events_from=["@organization_members"]), "events_from"),
    ("missing webhook_endpoint", lambda: {k: v for k, v in thin_webhook().items() if k != "webhook_endpoint"},
     "webhook_endpoint"),
    ("missing url", lambda: thin_webhook(webhook_endpoint={}), "webhook_endpoint.url"),
    ("relative url", lambda: thin_webhook(url="/hook"), "webhook_endpoint.url"),
    ("ftp url", lambda: thin_webhook(url="ftp://127.0.0.1:9/hook"), "webhook_endpoint.url"),
    ("url with fragment", lambda: thin_webhook(url="https://127.0.0.1:9/hook#frag"), "webhook_endpoint.url"),
    ("url with userinfo", lambda: thin_webhook(url="https://user:pw@127.0.0.1:9/hook"), "webhook_endpoint.url"),
    ("url too long", lambda: thin_webhook(url="https://127.0.0.1:9/" + "a" * 2040), "webhook_endpoint.url"),
    ("bad aws account", lambda: eventbridge(amazon_eventbridge={"aws_account_id": "123", "aws_region": "us-east-1"}),
     "amazon_eventbridge.aws_account_id"),
    ("missing aws region", lambda: eventbridge(amazon_eventbridge={"aws_account_id": "111122223333"}),
     "amazon_eventbridge.aws_region"),
    ("missing amazon_eventbridge", lambda: {k: v for k, v in eventbridge().items() if k != "amazon_eventbridge"},
     "amazon_eventbridge"),
    ("too many metadata keys", lambda: thin_webhook(metadata={f"k{i}": "v" for i in range(51)}), "metadata"),
    ("metadata key with bracket", lambda: thin_webhook(metadata={"a[b]": "v"}), "metadata"),
    ("metadata key too long", lambda: thin_webhook(metadata={"k" * 41: "v"}), "metadata"),
    ("metadata value too long", lambda: thin_webhook(metadata={"k": "v" * 501}), "metadata"),
    ("metadata value not string", lambda: thin_webhook(metadata={"k": 1}), "metadata"),
    ("bad include", lambda: thin_webhook(include=["webhook_endpoint.secret"]), "include"),
    ("unknown field", lambda: thin_webhook(colour="blue"), "colour"),
]


@pytest.mark.parametrize("case,make,field", CREATE_INVALID, ids=[c[0] for c in CREATE_INVALID])
def test_create_validation(wire, case, make, field):
    wire.invalid(wire.post(ED, make()), mentions=field)
    assert wire.ids(ED) == [], "a refused create must create nothing"


def test_create_validation_names_every_field(wire):
    e = wire.invalid(wire.post(ED, thin_webhook(event_payload="fat", metadata={"k" * 41: "v"})))
    assert "event_payload" in e["message"] and "metadata" in e["message"], e


def test_azure_event_grid_refused(wire):
    body = {
        "name": "azure", "type": "azure_event_grid", "event_payload": "thin", "enabled_events": [METER_ERROR_TYPE],
        "azure_event_grid": {"azure_region": "westus", "azure_resource_group_name": "rg",
                             "azure_subscription_id": "00000000-0000-0000-0000-000000000000"},
    }
    r = wire.post(ED, body)
    assert r.status == 400, r.describe()
    assert wire.ids(ED) == []


def test_malformed_bodies(wire):
    wire.invalid(wire.post(ED, raw=b"{not json"))
    wire.invalid(wire.post(ED, raw=b"[1, 2]"))
    wire.invalid(wire.post(ED, raw=b'"string"'))
    wire.invalid(wire.post(ED, raw=b'{"name": "\xff\xfe"}'))
    wire.invalid(wire.post(ED, raw=b""))  # empty body is {}: required fields missing


def test_body_too_large(wire):
    big = json.dumps(thin_webhook(description="x" * (1024 * 1024 + 10))).encode()
    wire.err(wire.post(ED, raw=big), 413, "request_too_large")


def test_webhook_endpoint_limit_16(wire, live_wire):
    for i in range(16):
        wire.create(thin_webhook(name=f"n{i}"))
    r = wire.post(ED, thin_webhook(name="17th"))
    assert r.status == 400 and r.error()["type"] == "invalid_request_error", r.describe()
    wire.create(eventbridge(name="not a webhook"))
    live_wire.create(thin_webhook(name="live is counted apart", url="https://127.0.0.1:9/l"))
    assert len(wire.ids(ED)) == 17


def test_update_validation(wire):
    ed = wire.create(thin_webhook())
    bridge = wire.create(eventbridge())
    for field, value in (("type", "amazon_eventbridge"), ("event_payload", "snapshot"), ("events_from", ["@accounts"]),
                         ("snapshot_api_version", "2025-07-30.basil"),
                         ("amazon_eventbridge", {"aws_account_id": "111122223333", "aws_region": "us-east-1"}),
                         ("colour", "blue"), ("name", ""), ("enabled_events", []),
                         ("metadata", {"k": 5}), ("include", ["webhook_endpoint.signing_secret"])):
        wire.invalid(wire.post(f"{ED}/{ed['id']}", {field: value}), mentions=field)
    wire.invalid(wire.post(f"{ED}/{ed['id']}", {"webhook_endpoint": {"url": "nope"}}), mentions="webhook_endpoint.url")
    wire.invalid(wire.post(f"{ED}/{bridge['id']}", {"webhook_endpoint": {"url": "https://127.0.0.1:9/x"}}),
                 mentions="webhook_endpoint")
    unchanged = wire.ok(wire.get(f"{ED}/{ed['id']}"))
    assert unchanged["updated"] == ed["updated"] and unchanged["name"] == ed["name"]
    wire.err(wire.post(f"{ED}/ed_test_doesnotexist", {"name": "x"}), 404, "not_found")


def test_retrieve_refuses_signing_secret_include(wire):
    ed = wire.create(thin_webhook())
    wire.invalid(wire.get(f"{ED}/{ed['id']}?include[0]=webhook_endpoint.signing_secret"), mentions="include")
    wire.invalid(wire.get(f"{ED}?include[0]=webhook_endpoint.signing_secret"), mentions="include")


def test_list_parameter_errors(wire):
    for path in (f"{ED}?limit=0", f"{ED}?limit=101", f"{ED}?limit=abc", f"{EV}?limit=0", f"{EV}?limit=101"):
        wire.invalid(wire.get(path), mentions="limit")
    wire.invalid(wire.get(f"{ED}?page=garbage"), mentions="page")
    wire.invalid(wire.get(f"{EV}?page=page_garbage"), mentions="page")
    wire.invalid(wire.get(f"{ED}?colour=blue"), mentions="colour")
    wire.invalid(wire.get(f"{EV}?colour=blue"), mentions="colour")
    many = "&".join(f"types[{i}]=v2.x.t{i}" for i in range(21))
    wire.invalid(wire.get(f"{EV}?{many}"), mentions="types")
    wire.invalid(wire.get(f"{EV}?created[gt]=yesterday"), mentions="created")
    wire.ok(wire.get(f"{ED}?limit=100"))
    wire.ok(wire.get(f"{EV}?limit=1"))
    wire.ok(wire.get(f"{EV}?{'&'.join(f'types[{i}]=v2.x.t{i}' for i in range(20))}"))


def test_not_found_ids(wire):
    wire.err(wire.get(f"{ED}/ed_test_doesnotexist"), 404, "not_found")
    wire.err(wire.delete(f"{ED}/ed_test_doesnotexist"), 404, "not_found")
    wire.err(wire.post(f"{ED}/ed_test_doesnotexist/disable", {}), 404, "not_found")
    wire.err(wire.post(f"{ED}/ed_test_doesnotexist/enable", {}), 404, "not_found")
    wire.err(wire.post(f"{ED}/ed_test_doesnotexist/ping", {}), 404, "not_found")
    wire.err(wire.get(f"{EV}/evt_test_doesnotexist"), 404, "not_found")
    # API.md: an id with the wrong prefix is a 400 naming `id`
    r = wire.get(f"{ED}/foo")
    wire.err(r, 400, "invalid_fields")
    assert "'id: " in r.json["error"]["message"]
    wire.err(wire.get(f"{EV}/ed_test_x"), 400, "invalid_fields")


def test_unknown_routes_and_methods(wire):
    wire.err(wire.get("/v2/core/nope"), 404, "unrecognized_request_url")
    wire.err(wire.get("/v1/customers"), 404, "unrecognized_request_url")
    wire.err(wire.post("/nowhere", {}), 404, "unrecognized_request_url")
    ed = wire.create(thin_webhook())
    wire.err(wire.request("PUT", ED, {}), 405, "method_not_allowed")
    wire.err(wire.request("PATCH", f"{ED}/{ed['id']}", {}), 405, "method_not_allowed")
    wire.err(wire.delete(f"{EV}/evt_test_x"), 405, "method_not_allowed")
    wire.err(wire.get(f"{ED}/{ed['id']}/ping"), 405, "method_not_allowed")


# ----------------------------------------------------------------------------------------------------
# pagination


def test_pagination_is_keyset_and_keeps_params(wire):
    made = [wire.create(thin_webhook(name=f"p{i}", url=f"https://127.0.0.1:9/{i}"))["id"] for i in range(6)]
    newest_first = list(reversed(made))
    first = wire.ok(wire.get(f"{ED}?limit=2&include[0]=webhook_endpoint.url"))
    assert [d["id"] for d in first["data"]] == newest_first[:2]
    assert first["previous_page_url"] is None
    nxt = first["next_page_url"]
    assert nxt.startswith(f"{ED}?") and "://" not in nxt

    # meanwhile: delete an unseen one and create a new one
    wire.ok(wire.delete(f"{ED}/{newest_first[3]}"))
    wire.create(thin_webhook(name="late"))

    # extra params next to page= are ignored in favour of the token's
    second = wire.ok(wire.get(f"{nxt}&limit=50"))
    assert [d["id"] for d in second["data"]] == [newest_first[2], newest_first[4]]
    assert all(d["webhook_endpoint"]["url"] for d in second["data"]), "include lost on page 2"
    rest = wire.ids(second["next_page_url"]) if second["next_page_url"] else []
    assert rest == [newest_first[5]]


def test_events_pagination_keeps_filters(wire):
    ids = [wire.ok(wire.post(EV, meter_event_params("mtr_pg")))["id"] for _ in range(5)]
    wire.ok(wire.post(EV, meter_event_params("mtr_other")))
    assert wire.ids(f"{EV}?object_id=mtr_pg&limit=2") == list(reversed(ids))
    page = wire.ok(wire.get(f"{EV}?limit=5"))
    assert page["next_page_url"] is not None
    last = wire.ok(wire.get(page["next_page_url"]))
    assert len(last["data"]) == 1 and last["next_page_url"] is None


# ----------------------------------------------------------------------------------------------------
# idempotency


def test_idempotency_semantics(wire):
    key = {"Idempotency-Key": f"wire-{uuid.uuid4()}"}
    body = thin_webhook(name="idem", metadata={"a": "1", "b": "2"})
    first = wire.create(body, headers=key)
    reordered = dict(reversed(list(body.items())))
    assert wire.create(reordered, headers=key)["id"] == first["id"], "canonical JSON: key order must not matter"
    r = wire.post(ED, thin_webhook(name="other"), headers=key)
    wire.err(r, 409, "idempotency_error", etype="idempotency_error")
    assert r.headers.get("stripe-should-retry") == "false", r.headers
    assert wire.ids(ED) == [first["id"]]

    # same key on another path is another operation
    upd = wire.ok(wire.post(f"{ED}/{first['id']}", {"name": "renamed"}, headers=key))
    assert upd["name"] == "renamed"

    # a replayed update returns the current state, not a copy of the first response
    ukey = {"Idempotency-Key": f"upd-{uuid.uuid4()}"}
    wire.ok(wire.post(f"{ED}/{first['id']}", {"description": "one"}, headers=ukey))
    wire.ok(wire.post(f"{ED}/{first['id']}", {"name": "current"}))
    replay = wire.ok(wire.post(f"{ED}/{first['id']}", {"description": "one"}, headers=ukey))
    assert replay["name"] == "current" and replay["description"] == "one"

    # {} and an empty body are the same parameters
    dkey = {"Idempotency-Key": f"dis-{uuid.uuid4()}"}
    wire.ok(wire.post(f"{ED}/{first['id']}/disable", raw=b"{}", headers=dkey))
    wire.ok(wire.post(f"{ED}/{first['id']}/disable", raw=b"", headers=dkey))

    # a failed request stores no key: fixing the body with the same key runs it
    fkey = {"Idempotency-Key": f"fail-{uuid.uuid4()}"}
    wire.invalid(wire.post(ED, thin_webhook(event_payload="fat"), headers=fkey))
    fixed = wire.create(thin_webhook(name="fixed"), headers=fkey)
    assert fixed["name"] == "fixed"

    # delete replay returns the same deleted object
    xkey = {"Idempotency-Key": f"del-{uuid.uuid4()}"}
    d1 = wire.ok(wire.delete(f"{ED}/{fixed['id']}", headers=xkey))
    d2 = wire.ok(wire.delete(f"{ED}/{fixed['id']}", headers=xkey))
    assert d1 == d2 == {"id": fixed["id"], "object": "v2.core.event_destination"}

    # publish replay returns the same event
    pkey = {"Idempotency-Key": f"pub-{uuid.uuid4()}"}
    e1 = wire.ok(wire.post(EV, meter_event_params("mtr_idem"), headers=pkey))
    e2 = wire.ok(wire.post(EV, meter_event_params("mtr_idem"), headers=pkey))
    assert e1["id"] == e2["id"]
    assert wire.ids(f"{EV}?object_id=mtr_idem") == [e1["id"]]


def test_idempotency_key_too_long(wire):
    wire.err(wire.post(ED, thin_webhook(), headers={"Idempotency-Key": "k" * 256}), 400, "invalid_idempotency_key")
    wire.create(thin_webhook(), headers={"Idempotency-Key": "k" * 255})


def test_create_replay_returns_signing_secret_again(wire):
    key = {"Idempotency-Key": f"sec-{uuid.uuid4()}"}
    body = thin_webhook(include=["webhook_endpoint.signing_secret"])
    a = wire.create(body, headers=key)
    b = wire.create(body, headers=key)
    assert a["id"] == b["id"]
    assert a["webhook_endpoint"]["signing_secret"] == b["webhook_endpoint"]["signing_secret"]
    assert a["webhook_endpoint"]["signing_secret"].startswith("whsec_")


# ----------------------------------------------------------------------------------------------------
# smaller documented choices


def test_documented_defaults_and_echoes(wire):
    bridge = wire.create(eventbridge())
    assert bridge["metadata"] == {} and bridge["description"] == "" and bridge["events_from"] == ["@self"]
    for events_from in (["self"], ["other_accounts"], ["@self", "@accounts"], ["self", "other_accounts"]):
        ed = wire.create(eventbridge(events_from=events_from))
        assert ed["events_from"] == events_from, "events_from is echoed as sent"
    star_thin = wire.create(eventbridge(enabled_events=["*"]))
    assert star_thin["enabled_events"] == ["*"]
    star_snap = wire.create(eventbridge(event_payload="snapshot", enabled_events=["*"]))
    assert star_snap["enabled_events"] == ["*"]
    odd = "HTTPS://127.0.0.1:9/a/b?q=1&r=%20"
    ed = wire.create(thin_webhook(url=odd, include=["webhook_endpoint.url"]))
    assert ed["webhook_endpoint"]["url"] == odd, "url is stored and returned exactly as given"
    # [INF] A URL whose request target would be rewritten on sending (dot segments) is refused.
    wire.err(
        wire.post("/v2/core/event_destinations", thin_webhook(url="https://127.0.0.1:9/a/../b")),
        400, "invalid_fields", mentions="webhook_endpoint.url",
    )


def test_event_nulls_when_absent(wire):
    bare = wire.ok(wire.post(EV, {"type": "v2.core.account.updated"}))
    assert bare["related_object"] is None and bare["data"] is None and bare["context"] is None
    assert bare["reason"]["type"] == "request"
    got = wire.ok(wire.get(f"{EV}/{bare['id']}"))
    assert got == bare


def test_default_limit_is_20(wire):
    for i in range(21):
        wire.ok(wire.post(EV, {"type": "v2.core.account.updated"}))
    page = wire.ok(wire.get(EV))
    assert len(page["data"]) == 20 and page["next_page_url"] is not None
    assert len(wire.ids(page["next_page_url"])) == 1


def test_stripe_context_own_account_segment_is_skipped(account, wire):
    ed = wire.create(thin_webhook(), headers={"Stripe-Context": account.id})
    assert wire.ids(ED) == [ed["id"]], "Stripe-Context naming the key's own account acts in that account"


def test_concurrent_idempotent_creates_make_one_object(wire):
    import concurrent.futures

    key = {"Idempotency-Key": f"race-{uuid.uuid4()}"}
    body = thin_webhook(name="race")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        resps = list(pool.map(lambda _: wire.post(ED, body, headers=key), range(8)))
    assert all(r.status == 200 for r in resps), [r.describe() for r in resps if r.status != 200]
    assert len({r.json["id"] for r in resps}) == 1
    assert len(wire.ids(ED)) == 1


def test_private_targets_outside_the_allow_list_are_refused(wire):
    # the session's eventd allows only 127.0.0.0/8 (conftest.ALLOWED_TARGETS)
    for url in ("http://10.1.2.3/hook", "http://192.168.0.1/hook", "http://169.254.169.254/latest",
                "http://[::1]:9/hook", "http://[::ffff:10.0.0.1]/hook", "http://0.0.0.0/hook"):
        wire.invalid(wire.post(ED, thin_webhook(url=url)), mentions="webhook_endpoint.url")
    assert wire.ids(ED) == []
