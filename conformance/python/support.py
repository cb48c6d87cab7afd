"""Shared builders and checks for the conformance tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

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


# ----------------------------------------------------------------------------------------------------
# a loopback webhook receiver


@dataclass(frozen=True)
class Delivery:
    """One POST a receiver got: the path, the headers (names lower-cased) and the body's exact bytes."""

    path: str
    headers: dict
    raw: bytes

    @property
    def signature(self) -> Optional[str]:
        return self.headers.get("stripe-signature")


class Receiver:
    """An HTTP server on 127.0.0.1 (free port, own thread) that answers every POST with 200 and records it.

    The SDK parsing happens in the test, on the recorded raw bytes, exactly as a webhook handler would get them.
    """

    def __init__(self) -> None:
        self._queue: "queue.Queue[Delivery]" = queue.Queue()
        deliveries = self._queue

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)  # raw bytes, never re-serialized
                headers = {k.lower(): v for k, v in self.headers.items()}
                deliveries.put(Delivery(self.path, headers, raw))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        self._seen: list[Delivery] = []

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, match: Callable[[Delivery], bool], timeout: float = 15.0, what: str = "a delivery") -> Delivery:
        """The first delivery (already received or arriving within `timeout` seconds) for which `match` holds."""
        for d in self._seen:
            if match(d):
                return d
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                got = [(d.path, d.raw[:200]) for d in self._seen]
                raise AssertionError(f"no delivery of {what} within {timeout}s; received: {got!r}")
            try:
                d = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            self._seen.append(d)
            if match(d):
                return d

    def wait_for_event(self, event_id: str, path: Optional[str] = None, timeout: float = 15.0) -> Delivery:
        """The delivery whose body carries `event_id` (thin notification or snapshot event), optionally on `path`."""
        def match(d: Delivery) -> bool:
            if path is not None and d.path != path:
                return False
            try:
                return json.loads(d.raw).get("id") == event_id
            except ValueError:
                return False

        return self.wait_for(match, timeout, what=f"event {event_id}" + (f" on {path}" if path else ""))

    @property
    def received(self) -> list[Delivery]:
        """Every delivery received so far."""
        while True:
            try:
                self._seen.append(self._queue.get_nowait())
            except queue.Empty:
                return list(self._seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
