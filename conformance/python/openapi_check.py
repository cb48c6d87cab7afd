"""Check real eventd responses against eventd's and Stripe's OpenAPI documents.

Used by the conformance tests (this module has no tests of its own, only a ``__main__`` self-test):

    import openapi_check
    openapi_check.load_docs(repo_root)          # optional; defaults to this file's repository
    openapi_check.check_response("GET", "/v2/core/events/evt_test_1?x=1", 200, body)

``check_response`` validates the body against

(a) eventd's document ``<root>/openapi/eventd.openapi.json``, strictly; and
(b) for Stripe's ten routes, Stripe's published schemas (``$STRIPE_OPENAPI`` or
    ``<root>/../shared/reference/stripe-openapi-v2-event-destinations.json``), with two relaxations that are
    explained where they are applied (null-dropping and ``oneOf`` read as ``anyOf`` in error responses).

It raises ``AssertionError`` listing every violation.

Requires ``openapi-schema-validator`` (0.6.x; tested with 0.6.2) and its dependency ``rfc3339-validator`` for
``format: date-time``.
"""

import copy
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

from openapi_schema_validator import OAS30Validator, oas30_format_checker

__all__ = ["load_docs", "check_response", "match_path", "EVENTD_DOC", "STRIPE_DOC"]

EVENTD_DOC = None
STRIPE_DOC = None

_DEFAULT_ROOT = Path(__file__).resolve().parents[2]


def load_docs(root=None):
    """Load (and remember) eventd's and Stripe's OpenAPI documents; returns ``(eventd_doc, stripe_doc)``."""
    global EVENTD_DOC, STRIPE_DOC
    root = Path(root) if root is not None else _DEFAULT_ROOT
    eventd_path = root / "openapi" / "eventd.openapi.json"
    stripe_path = os.environ.get("STRIPE_OPENAPI") or str(
        root / ".." / "shared" / "reference" / "stripe-openapi-v2-event-destinations.json")
    with open(eventd_path, encoding="utf-8") as f:
        EVENTD_DOC = json.load(f)
    with open(stripe_path, encoding="utf-8") as f:
        STRIPE_DOC = json.load(f)
    return EVENTD_DOC, STRIPE_DOC


def _ensure_loaded():
    if EVENTD_DOC is None or STRIPE_DOC is None:
        load_docs()


# ------------------------------------------------------------------------------------------------ paths

def _template_regex(template):
    parts = []
    for seg in template.strip("/").split("/"):
        if seg.startswith("{") and seg.endswith("}"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(seg))
    return re.compile("^/" + "/".join(parts) + "$") if parts != [""] else re.compile("^/$")


def match_path(doc, path):
    """Return the path template of ``doc`` matching the concrete ``path`` (query string stripped), or None.

    A template with fewer ``{param}`` segments wins, so literal segments beat parameters.
    """
    path = urlsplit(path).path or "/"
    candidates = [t for t in doc["paths"] if _template_regex(t).match(path)]
    if not candidates:
        return None
    return min(candidates, key=lambda t: (t.count("{"), t))


# ------------------------------------------------------------------------------------------------ schemas

def _resolve(doc, schema):
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"external $ref not supported: {ref}")
        node = doc
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
        seen += 1
        if seen > 50:
            raise ValueError(f"$ref loop at {ref}")
    return schema


def _response_schema(doc, response):
    response = _resolve(doc, response)
    content = response.get("content") or {}
    media = content.get("application/json")
    if media is None:
        return None
    return media.get("schema")


def _drop_optional_nulls(doc, schema, value):
    """Return a copy of ``value`` without the keys whose value is null and that ``schema`` does not require.

    THE ONLY RELAXATION applied to Stripe's schemas (besides reading ``oneOf`` as ``anyOf`` in error responses,
    as Stripe's own notes advise): Stripe's published OpenAPI does not mark as ``nullable`` several properties
    that Stripe's own API examples and SDKs return as ``null`` (``webhook_endpoint.url``/``signing_secret``,
    ``snapshot_api_version``, ``status_details``, an event's ``context``/``reason``/``data``/``related_object``…).
    A null *optional* property is therefore treated as absent. A null *required* property is kept, so it still
    fails unless the schema says ``nullable: true``.
    """
    schema = _resolve(doc, schema)
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        branches = [schema] + [_resolve(doc, b) for k in ("allOf", "anyOf", "oneOf") for b in schema.get(k, [])]
        branches = [b for b in branches if isinstance(b, dict)]
        required = set()
        for b in branches:
            required.update(b.get("required", []))
        out = {}
        for key, item in value.items():
            if item is None and key not in required:
                continue
            sub = None
            for b in branches:
                props = b.get("properties") or {}
                if key in props:
                    sub = props[key]
                    break
            if sub is None:
                for b in branches:
                    if isinstance(b.get("additionalProperties"), dict):
                        sub = b["additionalProperties"]
                        break
            out[key] = _drop_optional_nulls(doc, sub, item) if sub is not None else item
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_drop_optional_nulls(doc, schema["items"], item) for item in value]
    return value


def _one_of_as_any_of(schema):
    """Stripe's error responses are ``oneOf: [specific…, v2.error]``; a specific error also matches the generic
    ``v2.error`` (no enum on ``code``), so a correct body fails a strict ``oneOf``. Read it as ``anyOf``."""
    if isinstance(schema, dict) and "oneOf" in schema:
        schema = dict(schema)
        schema["anyOf"] = schema.pop("oneOf")
    return schema


def _format_error(err, indent="  "):
    where = "/".join(str(p) for p in err.absolute_path) or "<root>"
    lines = [f"{indent}at {where}: {err.message}"]
    for sub in sorted(err.context or [], key=lambda e: list(e.absolute_path)):
        lines.extend(_format_error(sub, indent + "    "))
    return lines


def _validate(doc, schema, body):
    full = {**schema, "components": doc["components"]}
    validator = OAS30Validator(full, format_checker=oas30_format_checker)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    out = []
    for err in errors:
        out.extend(_format_error(err))
    return out


# ------------------------------------------------------------------------------------------------ public

def _pick_eventd_response(doc, template, method, status):
    """eventd's document: the exact status code if documented, else ``default`` for errors."""
    if template is None:
        fallback = doc.get("x-eventd-fallback-responses", {}).get("responses", {})
        if str(status) in fallback:
            return f"x-eventd-fallback-responses[{status}]", fallback[str(status)]
        return None, None
    op = doc["paths"][template].get(method)
    if op is None:
        fallback = doc.get("x-eventd-fallback-responses", {}).get("responses", {})
        if str(status) in fallback:
            return f"x-eventd-fallback-responses[{status}]", fallback[str(status)]
        return None, None
    responses = op["responses"]
    if str(status) in responses:
        return str(status), responses[str(status)]
    if status >= 400 and "default" in responses:
        return "default", responses["default"]
    return None, None


def check_response(method, path, status, body_json):
    """Validate a response body; raise AssertionError listing every violation.

    ``method``: HTTP method; ``path``: the request path (query string allowed); ``status``: HTTP status;
    ``body_json``: the decoded JSON body (``str``/``bytes`` are decoded here).
    Returns the list of checks performed, e.g. ``["eventd GET /v2/core/events 200", "stripe …"]``.
    """
    _ensure_loaded()
    if isinstance(body_json, (bytes, bytearray)):
        body_json = body_json.decode("utf-8")
    if isinstance(body_json, str):
        body_json = json.loads(body_json)
    method = method.lower()
    status = int(status)
    label = f"{method.upper()} {path} -> {status}"
    problems = []
    done = []

    # (a) eventd's document, strictly.
    template = match_path(EVENTD_DOC, path)
    key, response = _pick_eventd_response(EVENTD_DOC, template, method, status)
    if response is None:
        if template is None:
            problems.append(f"eventd: no path template matches {urlsplit(path).path!r} (and status {status} "
                            f"is not a documented fallback)")
        elif method not in EVENTD_DOC["paths"][template]:
            problems.append(f"eventd: {method.upper()} is not documented for {template} (and status {status} "
                            f"is not a documented fallback)")
        else:
            problems.append(f"eventd: status {status} is not documented for {method.upper()} {template}")
    else:
        schema = _response_schema(EVENTD_DOC, response)
        if schema is None:
            problems.append(f"eventd: response {key} of {method.upper()} {template} has no application/json schema")
        else:
            errs = _validate(EVENTD_DOC, schema, body_json)
            if errs:
                problems.append(f"eventd schema ({method.upper()} {template or '?'} responses[{key}]):")
                problems.extend(errs)
            done.append(f"eventd {method.upper()} {template or '?'} {key}")

    # (b) Stripe's schema for Stripe's ten routes.
    s_template = match_path(STRIPE_DOC, path)
    if s_template is not None and method in STRIPE_DOC["paths"][s_template]:
        responses = STRIPE_DOC["paths"][s_template][method]["responses"]
        if 200 <= status < 300:
            s_key = "200"
            schema = _response_schema(STRIPE_DOC, responses["200"])
        else:
            s_key = "default"
            schema = _one_of_as_any_of(_response_schema(STRIPE_DOC, responses["default"]))
        relaxed = _drop_optional_nulls(STRIPE_DOC, schema, copy.deepcopy(body_json))
        errs = _validate(STRIPE_DOC, schema, relaxed)
        if errs:
            problems.append(f"Stripe schema ({method.upper()} {s_template} responses[{s_key}], optional nulls dropped):")
            problems.extend(errs)
        done.append(f"stripe {method.upper()} {s_template} {s_key}")

    if problems:
        body_txt = json.dumps(body_json, ensure_ascii=False)
        if len(body_txt) > 2000:
            body_txt = body_txt[:2000] + "…"
        raise AssertionError(f"OpenAPI check failed for {label}:\n" + "\n".join(problems) + f"\nbody: {body_txt}")
    return done


# ------------------------------------------------------------------------------------------------ self-test

_ED_ID = "ed_test_61RM8ltWcTW4mbsxf16RJyfa2xSQLHJJh1sxm7H0KVT6"

_SAMPLE_ED = {
    "id": _ED_ID,
    "object": "v2.core.event_destination",
    "created": "2024-10-22T16:20:09.931Z",
    "description": "This is my event destination, I like it a lot",
    "enabled_events": ["v1.billing.meter.error_report_triggered"],
    "event_payload": "thin",
    "events_from": ["@self"],
    "livemode": False,
    "metadata": {},
    "name": "My Event Destination",
    "snapshot_api_version": None,
    "status": "enabled",
    "status_details": None,
    "type": "webhook_endpoint",
    "updated": "2024-10-22T16:23:11.402Z",
    "webhook_endpoint": {"signing_secret": None, "url": None},
}

_SAMPLE_ED_DISABLED = dict(_SAMPLE_ED, status="disabled", status_details={"disabled": {"reason": "user"}},
                           webhook_endpoint={"signing_secret": None, "url": "https://example.com/my/webhook/endpoint"})

_SAMPLE_EB = {
    "id": "ed_test_61PgtRTG5aTCIz98516PLsRGLISQK0Otk6FWKjBrcDia",
    "object": "v2.core.event_destination",
    "amazon_eventbridge": {
        "aws_account_id": "111122223333",
        "aws_event_source_arn": "arn:aws:events:us-east-1::event-source/aws.partner/stripe.com/"
                                "ed_test_61PgtRTG5aTCIz98516PLsRGLISQK0Otk6FWKjBrcDia",
        "aws_event_source_status": "pending",
    },
    "created": "2026-05-01T10:00:00.000Z",
    "description": "",
    "enabled_events": ["customer.created"],
    "event_payload": "snapshot",
    "events_from": ["@self"],
    "livemode": False,
    "metadata": {},
    "name": "prod-bus",
    "snapshot_api_version": "2025-07-30.basil",
    "status": "enabled",
    "status_details": None,
    "type": "amazon_eventbridge",
    "updated": "2026-05-01T10:00:00.000Z",
}

_SAMPLE_PING = {
    "id": "evt_test_65RM8sQH2oXnebF5Rpc16RJyfa2xSQLHJJh1sxm7H0KI92",
    "object": "v2.core.event",
    "context": None,
    "created": "2024-10-22T16:26:54.063Z",
    "data": None,
    "livemode": False,
    "reason": None,
    "related_object": {
        "id": _ED_ID,
        "type": "v2.core.event_destination",
        "url": f"/v2/core/event_destinations/{_ED_ID}",
    },
    "type": "v2.core.event_destination.ping",
}

_SAMPLE_V1_EVENT = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "object": "event",
    "api_version": "2025-07-30.basil",
    "created": 1686089970,
    "data": {"object": {"id": "cus_123", "object": "customer"}, "previous_attributes": {}},
    "livemode": False,
    "pending_webhooks": 1,
    "request": {"id": "req_jqtL1Q6CPaNx8x", "idempotency_key": "f0f9aee4-a889-4fcc-bc2e-fa41fa426f05"},
    "type": "customer.created",
    "account": "acct_123",
    "context": "acct_123",
}

_NOT_FOUND = {"error": {"type": "invalid_request_error", "code": "not_found", "message": "The resource wasn’t found."}}


def _self_test():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    load_docs(root)
    ok = [
        ("POST", "/v2/core/event_destinations", 200,
         dict(_SAMPLE_ED, webhook_endpoint={"signing_secret": "whsec_Zx8e3lT0vQm1eXhD2m0QpU9aYc4b7KfN",
                                            "url": "https://example.com/my/webhook/endpoint"})),
        ("GET", f"/v2/core/event_destinations/{_ED_ID}", 200, _SAMPLE_ED),
        ("GET", f"/v2/core/event_destinations/{_ED_ID}?include[0]=webhook_endpoint.url", 200, _SAMPLE_ED_DISABLED),
        ("POST", f"/v2/core/event_destinations/{_ED_ID}/enable", 200, _SAMPLE_ED),
        ("POST", f"/v2/core/event_destinations/{_ED_ID}/disable", 200, _SAMPLE_ED_DISABLED),
        ("GET", "/v2/core/event_destinations/ed_test_61PgtRTG5aTCIz98516PLsRGLISQK0Otk6FWKjBrcDia", 200, _SAMPLE_EB),
        ("POST", f"/v2/core/event_destinations/{_ED_ID}/ping", 200, _SAMPLE_PING),
        ("GET", "/v2/core/events?limit=10&types[0]=v2.core.event_destination.ping", 200,
         {"data": [_SAMPLE_PING], "next_page_url": None, "previous_page_url": None}),
        ("GET", "/v2/core/event_destinations?limit=2&include%5B0%5D=webhook_endpoint.url", 200,
         {"data": [_SAMPLE_ED_DISABLED], "next_page_url": "/v2/core/event_destinations?page=page_3vYb9Qk",
          "previous_page_url": None}),
        ("GET", f"/v2/core/events/{_SAMPLE_PING['id']}", 200, _SAMPLE_PING),
        ("DELETE", f"/v2/core/event_destinations/{_ED_ID}", 200, {"id": _ED_ID, "object": "v2.core.event_destination"}),
        ("GET", "/v2/core/event_destinations/ed_test_nope", 404, _NOT_FOUND),
        ("GET", "/v2/core/events/evt_test_nope", 404, _NOT_FOUND),
        ("POST", "/v2/core/event_destinations", 409,
         {"error": {"type": "idempotency_error", "code": "idempotency_error",
                    "message": "An idempotent retry occurred with different request parameters."}}),
        ("POST", "/v2/core/event_destinations", 400,
         {"error": {"type": "invalid_request_error", "code": "invalid_fields",
                    "message": "Some fields in the request were invalid: 'events_from[0]: Unrecognized enum value "
                               "'@bogus', valid values are: @self, @accounts.'"}}),
        ("GET", "/v2/core/events", 401,
         {"error": {"type": "invalid_request_error", "code": "invalid_api_key", "message": "Invalid API Key provided"}}),
        ("POST", "/v2/core/events", 200, dict(_SAMPLE_PING, reason={
            "type": "request", "request": {"id": "req_v24sUK2aV6o01RdVU", "idempotency_key": "k1"}})),
        ("POST", "/v2/core/events", 200, _SAMPLE_V1_EVENT),
        ("GET", "/v1/events/evt_1NG8Du2eZvKYlo2CUI79vXWy", 200, dict(_SAMPLE_V1_EVENT, request=None)),
        ("GET", "/healthz", 200, {"status": "ok", "database": "ok"}),
        ("GET", "/healthz", 503, {"status": "error", "database": "unreachable"}),
        ("GET", "/openapi.json", 200, EVENTD_DOC),
        ("GET", "/v2/nope", 404, {"error": {"type": "invalid_request_error", "code": "unrecognized_request_url",
                                            "message": "Unrecognized request URL (GET: /v2/nope)"}}),
        ("PUT", "/v2/core/events", 405, {"error": {"type": "invalid_request_error", "code": "method_not_allowed",
                                                   "message": "Method not allowed"}}),
    ]
    for method, path, status, body in ok:
        checks = check_response(method, path, status, body)
        print(f"ok   {method} {path} {status}: {', '.join(checks)}")

    # Bodies that must be rejected (guards against a check that accepts everything).
    bad = [
        ("GET", f"/v2/core/event_destinations/{_ED_ID}", 200, {k: v for k, v in _SAMPLE_ED.items() if k != "status"}),
        ("GET", f"/v2/core/event_destinations/{_ED_ID}", 200, dict(_SAMPLE_ED, created=1729614009)),
        ("GET", f"/v2/core/event_destinations/{_ED_ID}", 200, dict(_SAMPLE_ED, events_from=None)),
        ("GET", "/v2/core/events", 200, {"data": [], "next_page_url": None}),
        ("GET", "/v2/core/events", 200, {"data": [], "next_page_url": "http://x/v2/core/events?page=p",
                                         "previous_page_url": None}),
        ("POST", f"/v2/core/event_destinations/{_ED_ID}/ping", 200, dict(_SAMPLE_PING, object="event")),
        ("GET", "/v2/core/events/evt_test_nope", 404, {"error": {"code": "not_found"}}),
        ("DELETE", f"/v2/core/event_destinations/{_ED_ID}", 200, {"id": _ED_ID, "deleted": True}),
        ("GET", "/nowhere", 200, {}),
    ]
    for method, path, status, body in bad:
        try:
            check_response(method, path, status, body)
        except AssertionError as exc:
            lines = str(exc).splitlines()
            print(f"ok   rejected {method} {path} {status}: {lines[2].strip() if len(lines) > 3 else lines[1].strip()}")
        else:
            raise SystemExit(f"FAIL: {method} {path} {status} was accepted: {body}")
    print("OK")


if __name__ == "__main__":
    _self_test()
