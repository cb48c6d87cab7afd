//! The store: the one place that knows SQL. A facade over the embedded SQLite database.
//!
//! Every write runs on one writer thread that groups concurrent writes into shared transactions
//! (group commit); a caller is answered only after its transaction is durable.

mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::{AttemptsOf, SqliteStore};

use std::path::Path;

use crate::clock::SharedClock;
use crate::config::StoreConfig;
use crate::domain::account::Account;
use crate::domain::destination::{DestinationPatch, EventDestination, NewDestination, Status};
use crate::domain::event::{Event, Family, NewEvent, RequestReason};
use crate::domain::Scope;

/// API keys are stored as their SHA-256, never in clear.
pub(crate) fn hash_key(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The store: one interface, two implementations (embedded SQLite, shared PostgreSQL).
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Records one attempt (see `record_attempts`).
    pub async fn record_attempt(&self, attempt: DeliveryAttempt) -> Result<(), StoreError> {
        self.record_attempts(vec![attempt]).await
    }

    /// The embedded SQLite store in `data_dir`.
    pub fn open(data_dir: &Path, clock: SharedClock) -> Result<Self, StoreError> {
        Ok(Store::Sqlite(SqliteStore::open(data_dir, clock)?))
    }

    /// PostgreSQL when `database` is set, else SQLite in `data_dir`; runs the migrations.
    pub async fn connect(config: &StoreConfig, clock: SharedClock) -> Result<Self, StoreError> {
        match &config.database {
            Some(url) => Ok(Store::Postgres(
                PgStore::connect(url, config.pool_size, clock).await?,
            )),
            None => Self::open(&config.data_dir, clock),
        }
    }

    /// Runs the migrations alone.
    pub async fn migrate(config: &StoreConfig) -> Result<String, StoreError> {
        match &config.database {
            Some(url) => {
                PgStore::migrate_url(url).await?;
                Ok("postgresql database".to_owned())
            }
            None => Ok(SqliteStore::migrate(&config.data_dir)?
                .display()
                .to_string()),
        }
    }
}

/// Forwards each listed method to the backend.
macro_rules! delegate {
    ($( $(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Store::Sqlite(s) => s.$name($($arg),*).await,
                        Store::Postgres(s) => s.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    fn ping_database(&self) -> Result<(), StoreError>;
    fn create_account(&self, parent: Option<String>) -> Result<CreatedAccount, StoreError>;
    fn create_keys(&self, account_id: String) -> Result<(String, String), StoreError>;
    /// On an empty database, creates the first account; otherwise makes sure the given keys exist.
    fn bootstrap(&self, keys: Option<(String, String)>) -> Result<(String, Option<CreatedAccount>), StoreError>;
    fn find_key(&self, secret: String) -> Result<Option<KeyOwner>, StoreError>;
    fn get_account(&self, id: String) -> Result<Option<Account>, StoreError>;
    fn list_accounts(&self) -> Result<Vec<Account>, StoreError>;
    fn create_destination(&self, scope: Scope, idem: Option<IdempotencyKey>, new: NewDestination) -> Result<EventDestination, StoreError>;
    fn get_destination(&self, scope: Scope, id: String) -> Result<EventDestination, StoreError>;
    fn list_destinations(&self, scope: Scope, cursor: Cursor, limit: usize) -> Result<Page<EventDestination>, StoreError>;
    fn update_destination(&self, scope: Scope, idem: Option<IdempotencyKey>, id: String, patch: DestinationPatch) -> Result<EventDestination, StoreError>;
    fn set_destination_status(&self, scope: Scope, idem: Option<IdempotencyKey>, id: String, status: Status) -> Result<EventDestination, StoreError>;
    fn delete_destination(&self, scope: Scope, idem: Option<IdempotencyKey>, id: String) -> Result<String, StoreError>;
    fn ping_destination(&self, scope: Scope, idem: Option<IdempotencyKey>, id: String, reason: RequestReason) -> Result<Event, StoreError>;
    fn publish_event(&self, scope: Scope, idem: Option<IdempotencyKey>, new: NewEvent) -> Result<Event, StoreError>;
    fn get_event(&self, scope: Scope, id: String, family: Family) -> Result<Event, StoreError>;
    fn list_events(&self, scope: Scope, filter: EventFilter, cursor: Cursor, limit: usize) -> Result<Page<Event>, StoreError>;
    /// Deletes events (with deliveries and their log) and idempotency keys older than the given ages.
    fn prune(&self, event_retention_ms: i64, idempotency_retention_ms: i64) -> Result<usize, StoreError>;
    /// Resolves when new deliveries may be due.
    fn new_work(&self) -> ();
    fn claim_deliveries(&self, wants: Vec<(String, usize)>, lease_ms: i64) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// One claim round of the worker, in one store call: the enabled webhook destinations with a
    /// due delivery nobody holds a lease on go to `allot`, which says how many each may take;
    /// those are leased for `lease_ms`; and, when fewer than asked for were found, when the
    /// earliest delivery that is not due yet comes due.
    fn claim_due(&self, allot: Allot, lease_ms: i64) -> Result<ClaimRound, StoreError>;
    /// Records attempts (one transaction for all) and moves their deliveries on.
    fn record_attempts(&self, attempts: Vec<DeliveryAttempt>) -> Result<(), StoreError>;
    fn cancel_inactive_due(&self) -> Result<usize, StoreError>;
    fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError>;
    /// Queues one more delivery of the event to the destination (idempotent like every POST).
    fn resend(&self, scope: Scope, idem: Option<IdempotencyKey>, event_id: String, destination_id: String) -> Result<(), StoreError>;
    fn list_attempts(&self, scope: Scope, of: AttemptsOf, id: String, cursor: Cursor, limit: usize) -> Result<Page<DeliveryAttempt>, StoreError>;
}

use crate::domain::account::KeyOwner;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("idempotency key reused with different request parameters")]
    IdempotencyConflict,
    #[error("an account can have at most {0} webhook endpoints per mode")]
    WebhookEndpointLimit(usize),
    #[error("not resendable: {0}")]
    NotResendable(#[from] crate::domain::routing::ResendRefusal),
    #[error("database error")]
    Database(#[from] rusqlite::Error),
    #[error("postgresql error")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgresql pool: {0}")]
    Pool(String),
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

/// Given the destinations with due, unleased work, how many deliveries each may take now.
pub type Allot = Box<dyn FnOnce(Vec<String>) -> Vec<(String, usize)> + Send>;

/// What one claim round found.
#[derive(Debug, Default)]
pub struct ClaimRound {
    pub claimed: Vec<ClaimedDelivery>,
    /// How many deliveries `allot` asked for.
    pub wanted: usize,
    /// When fewer than `wanted` were claimed: when the next pending delivery comes due, if any.
    pub next_due_ms: Option<i64>,
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
