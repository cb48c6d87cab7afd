//! The store: the one place that knows SQL. A facade over the embedded SQLite database.
//!
//! Every write runs on one writer thread that groups concurrent writes into shared transactions
//! (group commit); a caller is answered only after its transaction is durable.

mod sqlite;

pub use sqlite::{AttemptsOf, SqliteStore as Store};

use crate::domain::account::KeyOwner;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("idempotency key reused with different request parameters")]
    IdempotencyConflict,
    #[error("an account can have at most {0} webhook endpoints per mode")]
    WebhookEndpointLimit(usize),
    #[error("database error")]
    Database(#[from] rusqlite::Error),
    #[error("stored data could not be decoded")]
    Corrupt(#[from] serde_json::Error),
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("could not prepare the data directory")]
    Io(#[from] std::io::Error),
    #[error("the store is shut down")]
    Closed,
}

/// An `Idempotency-Key` with what it protects: the operation (`POST /v2/...`) and a body fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub operation: String,
    pub fingerprint: String,
}

/// Where a keyset page starts. Sequence numbers grow with insertion order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    Start,
    /// Objects older than this sequence number (the next page).
    Before(i64),
    /// Objects newer than this sequence number (the previous page).
    After(i64),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub object_id: Option<String>,
    pub types: Vec<String>,
    pub created_gt: Option<i64>,
    pub created_gte: Option<i64>,
    pub created_lt: Option<i64>,
    pub created_lte: Option<i64>,
}

/// One page, newest first, with the sequence numbers that bound it.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub has_newer: bool,
    pub has_older: bool,
}

/// The result of resolving an API key.
pub type KeyLookup = Option<KeyOwner>;

/// A newly created account with its secret keys, shown once.
#[derive(Debug, Clone)]
pub struct CreatedAccount {
    pub account_id: String,
    pub test_key: String,
    pub live_key: String,
}

/// A delivery the worker has leased: the event to send and how many attempts came before.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery_id: String,
    pub destination: std::sync::Arc<crate::domain::destination::EventDestination>,
    pub previous_attempts: u32,
    pub event: std::sync::Arc<crate::domain::event::Event>,
}

pub use crate::domain::delivery::{AttemptOutcome, DeliveryAttempt};
