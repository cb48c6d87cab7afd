//! Delivery attempts: what happened when eventd sent an event to a destination.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    Failed,
}

/// One attempt, as recorded in the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub delivery_id: String,
    pub event_id: String,
    pub destination_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub started_ms: i64,
    pub latency_ms: i64,
    pub outcome: AttemptOutcome,
    pub http_status: Option<u16>,
    /// Why the attempt failed (`timeout`, `connection refused`, `http_status`, `refused_address`…).
    pub error: Option<String>,
    /// At most a short prefix of the response body.
    pub response_body: Option<String>,
    /// When the next attempt is due; `None` when there is none (succeeded, failed for good, or
    /// canceled).
    pub next_attempt_ms: Option<i64>,
    /// The next attempt was canceled before it was due (its destination was disabled or deleted).
    #[serde(default)]
    pub next_attempt_canceled: bool,
}

impl DeliveryAttempt {
    /// The attempt as the delivery log stores it (JSON). `still_pending` is false when the
    /// delivery was canceled while the attempt was in flight: then no attempt follows it.
    pub fn log_body(&self, still_pending: bool) -> Result<String, serde_json::Error> {
        if still_pending || self.next_attempt_ms.is_none() {
            return serde_json::to_string(self);
        }
        serde_json::to_string(&DeliveryAttempt {
            next_attempt_ms: None,
            next_attempt_canceled: true,
            ..self.clone()
        })
    }
}

/// Delivery status as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
    Canceled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Canceled => "canceled",
        }
    }
}
