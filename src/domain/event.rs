//! Events: thin (`v2.*`, `v1.*` types, a `v2.core.event`) and snapshot (classic v1 types, a v1 `event`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Mode;

pub const PING_TYPE: &str = "v2.core.event_destination.ping";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Thin,
    Snapshot,
}

impl Family {
    /// Thin types are `v2.*` and thin mirrors of v1 events, `v1.*`; anything else is a classic snapshot type.
    pub fn of_type(event_type: &str) -> Self {
        if event_type.starts_with("v2.") || event_type.starts_with("v1.") {
            Family::Thin
        } else {
            Family::Snapshot
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelatedObject {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub type_: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestReason {
    pub id: String,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    pub account_id: String,
    pub mode: Mode,
    #[serde(rename = "type")]
    pub type_: String,
    pub family: Family,
    pub created_ms: i64,
    pub context: Option<String>,
    pub reason: Option<RequestReason>,
    pub related_object: Option<RelatedObject>,
    /// Thin: the `data` object. Snapshot: `{object, previous_attributes?}`.
    pub data: Option<Value>,
    pub changes: Option<Value>,
    /// How many deliveries were created for the event when it was stored (v1 `pending_webhooks`).
    pub fanout: i64,
}

/// An event to store, validated by the API layer; ids and time are assigned by the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub type_: String,
    pub reason: Option<RequestReason>,
    pub related_object: Option<RelatedObject>,
    pub data: Option<Value>,
    pub changes: Option<Value>,
}

impl Event {
    pub fn related_object_id(&self) -> Option<&str> {
        self.related_object.as_ref().and_then(|r| r.id.as_deref())
    }
}
