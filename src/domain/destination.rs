//! The event destination: where events go, and for which types, accounts and payload kind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Mode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventPayload {
    Thin,
    Snapshot,
}

impl EventPayload {
    pub fn as_str(self) -> &'static str {
        match self {
            EventPayload::Thin => "thin",
            EventPayload::Snapshot => "snapshot",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Target {
    WebhookEndpoint {
        url: String,
        signing_secret: String,
    },
    AmazonEventbridge {
        aws_account_id: String,
        aws_region: String,
        aws_event_source_arn: String,
        aws_event_source_status: String,
    },
}

impl Target {
    pub fn type_name(&self) -> &'static str {
        match self {
            Target::WebhookEndpoint { .. } => "webhook_endpoint",
            Target::AmazonEventbridge { .. } => "amazon_eventbridge",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Enabled,
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "enabled",
            Status::Disabled => "disabled",
        }
    }
}

/// Why a destination is disabled (`status_details.disabled.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisabledReason {
    User,
    NoAwsEventSourceExists,
}

impl DisabledReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::User => "user",
            DisabledReason::NoAwsEventSourceExists => "no_aws_event_source_exists",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDestination {
    pub id: String,
    pub account_id: String,
    pub mode: Mode,
    pub name: String,
    pub description: String,
    pub target: Target,
    pub event_payload: EventPayload,
    pub enabled_events: Vec<String>,
    pub events_from: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub snapshot_api_version: Option<String>,
    pub status: Status,
    pub disabled_reason: Option<DisabledReason>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Fields of a new destination, already validated by the API layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDestination {
    pub name: String,
    pub description: String,
    pub target: NewTarget,
    pub event_payload: EventPayload,
    pub enabled_events: Vec<String>,
    pub events_from: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub snapshot_api_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewTarget {
    WebhookEndpoint {
        url: String,
    },
    AmazonEventbridge {
        aws_account_id: String,
        aws_region: String,
    },
}

/// Fields of an update; `None` leaves a field as it is. A `None` metadata value deletes the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    pub metadata: Option<BTreeMap<String, Option<String>>>,
    pub webhook_url: Option<String>,
}

/// Maximum webhook endpoints per account and mode (Stripe: "You can register up to 16").
pub const MAX_WEBHOOK_ENDPOINTS: usize = 16;

impl EventDestination {
    /// Builds a destination from validated input; `id`, `secret` and `now` come from the caller.
    pub fn new(
        id: String,
        account_id: String,
        mode: Mode,
        new: NewDestination,
        now_ms: i64,
    ) -> Self {
        let target = match new.target {
            NewTarget::WebhookEndpoint { url } => Target::WebhookEndpoint {
                url,
                signing_secret: super::ids::signing_secret(),
            },
            NewTarget::AmazonEventbridge {
                aws_account_id,
                aws_region,
            } => Target::AmazonEventbridge {
                aws_event_source_arn: format!(
                    "arn:aws:events:{aws_region}::event-source/aws.partner/stripe.com/{id}"
                ),
                aws_account_id,
                aws_region,
                aws_event_source_status: "pending".to_owned(),
            },
        };
        EventDestination {
            id,
            account_id,
            mode,
            name: new.name,
            description: new.description,
            target,
            event_payload: new.event_payload,
            enabled_events: new.enabled_events,
            events_from: new.events_from,
            metadata: new.metadata,
            snapshot_api_version: new.snapshot_api_version,
            status: Status::Enabled,
            disabled_reason: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        }
    }

    pub fn apply(&mut self, patch: DestinationPatch, now_ms: i64) {
        if let Some(name) = patch.name {
            self.name = name;
        }
        if let Some(description) = patch.description {
            self.description = description;
        }
        if let Some(events) = patch.enabled_events {
            self.enabled_events = events;
        }
        if let Some(metadata) = patch.metadata {
            for (k, v) in metadata {
                match v {
                    Some(v) => self.metadata.insert(k, v),
                    None => self.metadata.remove(&k),
                };
            }
        }
        if let (Some(new_url), Target::WebhookEndpoint { url, .. }) =
            (patch.webhook_url, &mut self.target)
        {
            *url = new_url;
        }
        self.updated_ms = now_ms;
    }

    pub fn set_status(&mut self, status: Status, now_ms: i64) {
        self.status = status;
        self.disabled_reason = match status {
            Status::Enabled => None,
            Status::Disabled => Some(DisabledReason::User),
        };
        self.updated_ms = now_ms;
    }

    pub fn is_webhook(&self) -> bool {
        matches!(self.target, Target::WebhookEndpoint { .. })
    }
}
