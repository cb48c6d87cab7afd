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

    /// `context` as the account at path `viewer` (from the root; `None`: a root account) sees
    /// it: the path from the viewer to the event's account, `None` for the viewer's own events.
    /// (`self.context` is the path from the root.)
    pub fn context_seen_from(&self, viewer: Option<&str>) -> Option<String> {
        let path = self.context.as_deref()?;
        let Some(viewer) = viewer else {
            return Some(path.to_owned());
        };
        if viewer == path {
            return None;
        }
        Some(
            path.strip_prefix(viewer)
                .and_then(|rest| rest.strip_prefix('/'))
                .unwrap_or(path)
                .to_owned(),
        )
    }

    /// `context` as a destination owned by `owner` sees it: `None` for the owner's own events,
    /// the event's account for an event of one of its connected accounts (`events_from:
    /// @accounts` takes events of directly connected accounts only).
    pub fn context_for_owner(&self, owner: &str) -> Option<String> {
        (owner != self.account_id).then(|| self.account_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Mode;

    #[test]
    fn context_is_relative_to_who_looks() {
        let mut e = Event {
            id: "evt_1".into(),
            account_id: "acct_c".into(),
            mode: Mode::Test,
            type_: "v2.core.account.created".into(),
            family: Family::Thin,
            created_ms: 0,
            context: Some("acct_b/acct_c".into()),
            reason: None,
            related_object: None,
            data: None,
            changes: None,
            fanout: 0,
        };
        let seen = |e: &Event, v: Option<&str>| e.context_seen_from(v);
        assert_eq!(seen(&e, None).as_deref(), Some("acct_b/acct_c"));
        assert_eq!(seen(&e, Some("acct_b")).as_deref(), Some("acct_c"));
        assert_eq!(seen(&e, Some("acct_b/acct_c")), None);
        assert_eq!(e.context_for_owner("acct_c"), None);
        assert_eq!(e.context_for_owner("acct_b").as_deref(), Some("acct_c"));
        e.context = None;
        e.account_id = "acct_root".into();
        assert_eq!(seen(&e, None), None);
        assert_eq!(e.context_for_owner("acct_root"), None);
    }
}
