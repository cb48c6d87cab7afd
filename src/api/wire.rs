//! Domain objects rendered in Stripe's wire shapes (reference §2 and §4.3).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::domain::destination::{EventDestination, Target};
use crate::domain::event::Event;

/// RFC 3339 UTC with milliseconds and `Z`.
pub fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_timestamp(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Which include-gated fields carry their real value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Include {
    pub url: bool,
    pub signing_secret: bool,
}

pub const INCLUDE_URL: &str = "webhook_endpoint.url";
pub const INCLUDE_SECRET: &str = "webhook_endpoint.signing_secret";

impl Include {
    /// `webhook_endpoint.url` only: what every call but create may include (the signing secret
    /// is shown once, in the create response).
    pub fn url_from(list: &[String]) -> Self {
        Include {
            url: list.iter().any(|s| s == INCLUDE_URL),
            signing_secret: false,
        }
    }

    pub fn from_list(list: &[String]) -> Self {
        Include {
            url: list.iter().any(|s| s == INCLUDE_URL),
            signing_secret: list.iter().any(|s| s == INCLUDE_SECRET),
        }
    }
}

pub fn event_destination(d: &EventDestination, include: Include) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(d.id));
    m.insert("object".into(), json!("v2.core.event_destination"));
    m.insert("created".into(), json!(timestamp(d.created_ms)));
    m.insert("description".into(), json!(d.description));
    m.insert("enabled_events".into(), json!(d.enabled_events));
    m.insert("event_payload".into(), json!(d.event_payload.as_str()));
    m.insert("events_from".into(), json!(d.events_from));
    m.insert("livemode".into(), json!(d.mode.livemode()));
    m.insert("metadata".into(), json!(d.metadata));
    m.insert("name".into(), json!(d.name));
    m.insert("snapshot_api_version".into(), json!(d.snapshot_api_version));
    m.insert("status".into(), json!(d.status.as_str()));
    let details = d
        .disabled_reason
        .map(|r| json!({"disabled": {"reason": r.as_str()}}));
    m.insert("status_details".into(), json!(details));
    m.insert("type".into(), json!(d.target.type_name()));
    m.insert("updated".into(), json!(timestamp(d.updated_ms)));
    match &d.target {
        Target::WebhookEndpoint {
            url,
            signing_secret,
        } => {
            let secret = include.signing_secret.then_some(signing_secret);
            let url = include.url.then_some(url);
            m.insert(
                "webhook_endpoint".into(),
                json!({"signing_secret": secret, "url": url}),
            );
        }
        Target::AmazonEventbridge {
            aws_account_id,
            aws_event_source_arn,
            aws_event_source_status,
            ..
        } => {
            m.insert(
                "amazon_eventbridge".into(),
                json!({
                    "aws_account_id": aws_account_id,
                    "aws_event_source_arn": aws_event_source_arn,
                    "aws_event_source_status": aws_event_source_status,
                }),
            );
        }
    }
    Value::Object(m)
}

pub fn deleted_destination(id: &str) -> Value {
    json!({"id": id, "object": "v2.core.event_destination"})
}

fn reason(e: &Event) -> Value {
    match &e.reason {
        Some(r) => {
            json!({"type": "request", "request": {"id": r.id, "idempotency_key": r.idempotency_key}})
        }
        None => Value::Null,
    }
}

fn related_object(e: &Event) -> Value {
    match &e.related_object {
        Some(r) => {
            let mut m = Map::new();
            if let Some(id) = &r.id {
                m.insert("id".into(), json!(id));
            }
            m.insert("type".into(), json!(r.type_));
            m.insert("url".into(), json!(r.url));
            Value::Object(m)
        }
        None => Value::Null,
    }
}

/// A thin event as the API returns it (`GET /v2/core/events/{id}`), `data` included. `context`
/// is the event's context as its reader sees it (`Event::context_seen_from`).
pub fn event(e: &Event, context: Option<String>) -> Value {
    let mut m = notification_map(e, context);
    m.insert("data".into(), json!(e.data));
    Value::Object(m)
}

/// The pushed thin notification: the event without `data` (reference §4.3).
pub fn event_notification(e: &Event, context: Option<String>) -> Value {
    Value::Object(notification_map(e, context))
}

fn notification_map(e: &Event, context: Option<String>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("object".into(), json!("v2.core.event"));
    m.insert("context".into(), json!(context));
    m.insert("created".into(), json!(timestamp(e.created_ms)));
    m.insert("livemode".into(), json!(e.mode.livemode()));
    m.insert("reason".into(), reason(e));
    m.insert("related_object".into(), related_object(e));
    m.insert("type".into(), json!(e.type_));
    if let Some(changes) = &e.changes {
        m.insert("changes".into(), changes.clone());
    }
    m
}

/// A snapshot event as a classic v1 `event`, rendered for `api_version`; `account` and
/// `context` only for an event of another account than its reader's (`context`).
pub fn v1_event(e: &Event, api_version: Option<&str>, context: Option<String>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("object".into(), json!("event"));
    if let Some(context) = context {
        m.insert("account".into(), json!(e.account_id));
        m.insert("context".into(), json!(context));
    }
    m.insert("api_version".into(), json!(api_version));
    m.insert("created".into(), json!(e.created_ms.div_euclid(1000)));
    m.insert("data".into(), e.data.clone().unwrap_or_else(|| json!({})));
    m.insert("livemode".into(), json!(e.mode.livemode()));
    m.insert("pending_webhooks".into(), json!(e.fanout));
    let request = e
        .reason
        .as_ref()
        .map(|r| json!({"id": r.id, "idempotency_key": r.idempotency_key}));
    m.insert("request".into(), json!(request));
    m.insert("type".into(), json!(e.type_));
    Value::Object(m)
}

/// One delivery attempt in the delivery log (an eventd extension).
pub fn delivery_attempt(a: &crate::domain::delivery::DeliveryAttempt) -> Value {
    use crate::domain::delivery::AttemptOutcome;
    json!({
        "object": "eventd.delivery_attempt",
        "delivery": a.delivery_id,
        "event": a.event_id,
        "event_destination": a.destination_id,
        "attempt": a.attempt,
        "created": timestamp(a.started_ms),
        "outcome": match a.outcome {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Failed => "failed",
        },
        "http_status": a.http_status,
        "latency_ms": a.latency_ms,
        "error": a.error,
        "response_body": a.response_body,
        "next_attempt": a.next_attempt_ms.map(timestamp),
        "next_attempt_canceled": a.next_attempt_canceled,
    })
}
