//! The SQLite implementation of the store: one writer thread with group commit, a pool of readers.

mod accounts;
mod deliveries;
mod destinations;
mod events;
mod idempotency;
mod paging;
mod pool;
mod routes;
mod schema;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;

use rusqlite::Connection;

pub use deliveries::AttemptsOf;

use super::{
    Allot, ClaimRound, ClaimedDelivery, CreatedAccount, Cursor, DeliveryAttempt, EventFilter,
    IdempotencyKey, Page, StoreError,
};
use crate::clock::SharedClock;
use crate::domain::account::{Account, KeyOwner};
use crate::domain::destination::{
    DestinationPatch, EventDestination, NewDestination, Status, MAX_WEBHOOK_ENDPOINTS,
};
use crate::domain::event::{Event, Family, NewEvent, RelatedObject, RequestReason, PING_TYPE};
use crate::domain::routing::{self, Origin};
use crate::domain::{ids, Mode, Scope};

pub const DATABASE_FILE: &str = "eventd.sqlite3";

#[derive(Clone)]
pub struct SqliteStore {
    writer: pool::Writer,
    readers: pool::Readers,
    clock: SharedClock,
    /// Signalled after new deliveries are committed, so the worker claims them at once.
    new_work: Arc<Notify>,
    /// Routing data for publishes; used only inside write jobs (on the writer thread).
    routes: Arc<std::sync::Mutex<routes::RouteCache>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and runs the migrations.
    pub fn open(data_dir: &Path, clock: SharedClock) -> Result<Self, StoreError> {
        let path = Self::migrate(data_dir)?;
        Ok(SqliteStore {
            writer: pool::Writer::start(&path)?,
            readers: pool::Readers::open(&path, 4)?,
            clock,
            new_work: Arc::new(Notify::new()),
            routes: Arc::default(),
        })
    }

    /// Runs the migrations alone; returns the database path.
    pub fn migrate(data_dir: &Path) -> Result<std::path::PathBuf, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        let mut conn = pool::open(&path)?;
        schema::migrate(&mut conn)?;
        Ok(path)
    }

    pub async fn ping_database(&self) -> Result<(), StoreError> {
        self.readers
            .read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    // --- accounts and keys ---

    pub async fn create_account(
        &self,
        parent: Option<String>,
    ) -> Result<CreatedAccount, StoreError> {
        let now = self.clock.now_ms();
        self.writer
            .write(move |c| {
                let account_id = ids::account();
                accounts::insert_account(c, &account_id, parent.as_deref(), now)?;
                let (test_key, live_key) = insert_key_pair(c, &account_id, now)?;
                Ok(CreatedAccount {
                    account_id,
                    test_key,
                    live_key,
                })
            })
            .await
    }

    pub async fn create_keys(&self, account_id: String) -> Result<(String, String), StoreError> {
        let now = self.clock.now_ms();
        self.writer
            .write(move |c| {
                accounts::get_account(c, &account_id)?.ok_or(StoreError::NotFound)?;
                insert_key_pair(c, &account_id, now)
            })
            .await
    }

    /// On an empty database, creates the first account with the given keys (or new ones) and
    /// returns it. On a non-empty one, makes sure the given keys exist on the first account.
    pub async fn bootstrap(
        &self,
        keys: Option<(String, String)>,
    ) -> Result<(String, Option<CreatedAccount>), StoreError> {
        let now = self.clock.now_ms();
        self.writer
            .write(move |c| {
                if let Some(account_id) = accounts::first_root_account(c)? {
                    if let Some((test, live)) = &keys {
                        accounts::insert_key(c, &account_id, Mode::Test, test, now)?;
                        accounts::insert_key(c, &account_id, Mode::Live, live, now)?;
                    }
                    return Ok((account_id, None));
                }
                let account_id = ids::account();
                accounts::insert_account(c, &account_id, None, now)?;
                let (test_key, live_key) = match keys {
                    Some((test, live)) => {
                        accounts::insert_key(c, &account_id, Mode::Test, &test, now)?;
                        accounts::insert_key(c, &account_id, Mode::Live, &live, now)?;
                        (test, live)
                    }
                    None => insert_key_pair(c, &account_id, now)?,
                };
                let created = CreatedAccount {
                    account_id: account_id.clone(),
                    test_key,
                    live_key,
                };
                Ok((account_id, Some(created)))
            })
            .await
    }

    pub async fn find_key(&self, secret: String) -> Result<Option<KeyOwner>, StoreError> {
        self.readers
            .read(move |c| accounts::find_key(c, &secret))
            .await
    }

    pub async fn get_account(&self, id: String) -> Result<Option<Account>, StoreError> {
        self.readers
            .read(move |c| accounts::get_account(c, &id))
            .await
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.readers.read(accounts::list_accounts).await
    }

    // --- event destinations ---

    pub async fn create_destination(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        new: NewDestination,
    ) -> Result<EventDestination, StoreError> {
        self.idempotent(scope, idem, destinations::get, move |c, scope, now| {
            if matches!(
                new.target,
                crate::domain::destination::NewTarget::WebhookEndpoint { .. }
            ) && destinations::count_webhooks(c, scope)? >= MAX_WEBHOOK_ENDPOINTS
            {
                return Err(StoreError::WebhookEndpointLimit(MAX_WEBHOOK_ENDPOINTS));
            }
            let id = ids::event_destination(scope.mode);
            let d = EventDestination::new(id, scope.account_id.clone(), scope.mode, new, now);
            destinations::insert(c, &d)?;
            Ok((d.id.clone(), d))
        })
        .await
    }

    pub async fn get_destination(
        &self,
        scope: Scope,
        id: String,
    ) -> Result<EventDestination, StoreError> {
        self.readers
            .read(move |c| destinations::get(c, &scope, &id))
            .await
    }

    pub async fn list_destinations(
        &self,
        scope: Scope,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<EventDestination>, StoreError> {
        self.readers
            .read(move |c| destinations::list(c, &scope, cursor, limit))
            .await
    }

    pub async fn update_destination(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        id: String,
        patch: DestinationPatch,
    ) -> Result<EventDestination, StoreError> {
        self.idempotent(scope, idem, destinations::get, move |c, scope, now| {
            let mut d = destinations::get(c, scope, &id)?;
            d.apply(patch, now);
            destinations::save(c, &d)?;
            Ok((id, d))
        })
        .await
    }

    /// Enable or disable. Disabling leaves pending deliveries in place; the worker cancels them
    /// when they come due while the destination is still disabled.
    pub async fn set_destination_status(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        id: String,
        status: Status,
    ) -> Result<EventDestination, StoreError> {
        self.idempotent(scope, idem, destinations::get, move |c, scope, now| {
            let mut d = destinations::get(c, scope, &id)?;
            d.set_status(status, now);
            destinations::save(c, &d)?;
            Ok((id, d))
        })
        .await
    }

    /// Returns the deleted destination's id.
    pub async fn delete_destination(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        id: String,
    ) -> Result<String, StoreError> {
        let replay = |_: &Connection, _: &Scope, id: &str| Ok(id.to_owned());
        self.idempotent(scope, idem, replay, move |c, scope, now| {
            destinations::get(c, scope, &id)?;
            destinations::delete(c, &id, now)?;
            Ok((id.clone(), id))
        })
        .await
    }

    /// Stores a ping event for the destination and, when it is enabled, one pending delivery to it.
    pub async fn ping_destination(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        id: String,
        reason: RequestReason,
    ) -> Result<Event, StoreError> {
        self.idempotent(scope, idem, events::get_any, move |c, scope, now| {
            let d = destinations::get(c, scope, &id)?;
            let enabled = d.status == Status::Enabled;
            let event = Event {
                id: ids::event(scope.mode, now),
                account_id: scope.account_id.clone(),
                mode: scope.mode,
                type_: PING_TYPE.to_owned(),
                family: Family::Thin,
                created_ms: now,
                context: scope.context.clone(),
                reason: Some(reason),
                related_object: Some(RelatedObject {
                    url: format!("/v2/core/event_destinations/{}", d.id),
                    id: Some(d.id.clone()),
                    type_: "v2.core.event_destination".to_owned(),
                }),
                data: None,
                changes: None,
                fanout: enabled as i64,
            };
            events::insert(c, &event)?;
            if enabled {
                events::insert_delivery(c, &event.id, &d.id, now)?;
            }
            Ok((event.id.clone(), event))
        })
        .await
        .inspect(|_| self.new_work.notify_one())
    }

    // --- events ---

    /// Stores the event and one pending delivery per matching destination, in one transaction.
    pub async fn publish_event(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        new: NewEvent,
    ) -> Result<Event, StoreError> {
        let routes = self.routes.clone();
        self.idempotent(scope, idem, events::get_any, move |c, scope, now| {
            let mut event = Event {
                id: ids::event(scope.mode, now),
                account_id: scope.account_id.clone(),
                mode: scope.mode,
                family: Family::of_type(&new.type_),
                type_: new.type_,
                created_ms: now,
                context: scope.context.clone(),
                reason: new.reason,
                related_object: new.related_object,
                data: new.data,
                changes: new.changes,
                fanout: 0,
            };
            let live = scope.mode.livemode();
            let (own, from_parent) = {
                let mut routes = routes.lock().unwrap_or_else(|p| p.into_inner());
                routes.check(c)?;
                let own = routes.enabled(c, &scope.account_id, live)?;
                let from_parent = match routes.parent(c, &scope.account_id)? {
                    Some(parent) => routes.enabled(c, &parent, live)?,
                    None => Arc::default(),
                };
                (own, from_parent)
            };
            let targets: Vec<&EventDestination> = own
                .iter()
                .map(|d| (d, Origin::OwnAccount))
                .chain(from_parent.iter().map(|d| (d, Origin::ConnectedAccount)))
                .filter(|(d, origin)| routing::matches(d, &event, *origin))
                .map(|(d, _)| d)
                .collect();
            event.fanout = targets.len() as i64;
            events::insert(c, &event)?;
            for d in targets {
                events::insert_delivery(c, &event.id, &d.id, now)?;
            }
            Ok((event.id.clone(), event))
        })
        .await
        .inspect(|_| self.new_work.notify_one())
    }

    pub async fn get_event(
        &self,
        scope: Scope,
        id: String,
        family: Family,
    ) -> Result<Event, StoreError> {
        self.readers
            .read(move |c| events::get(c, &scope, &id, family))
            .await
    }

    pub async fn list_events(
        &self,
        scope: Scope,
        filter: EventFilter,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<Event>, StoreError> {
        self.readers
            .read(move |c| events::list(c, &scope, &filter, cursor, limit))
            .await
    }

    /// Deletes events (and their deliveries) and idempotency keys older than the given ages.
    pub async fn prune(
        &self,
        event_retention_ms: i64,
        idempotency_retention_ms: i64,
    ) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        self.writer
            .write(move |c| {
                idempotency::prune(c, now - idempotency_retention_ms)?;
                events::prune(c, now - event_retention_ms)
            })
            .await
    }

    // --- deliveries ---

    /// Resolves when new deliveries may be due (or at once if some were stored since the last call).
    pub async fn new_work(&self) {
        self.new_work.notified().await
    }

    /// Leases due deliveries: up to `n` for each `(destination id, n)`, until `lease_until_ms`.
    pub async fn claim_deliveries(
        &self,
        wants: Vec<(String, usize)>,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let clock = self.clock.clone();
        self.writer
            .write(move |c| claim_wants(c, wants, clock.now_ms(), lease_ms))
            .await
    }

    /// Answers only once its commit is on disk, like an acknowledged write: by then everything it
    /// saw is on disk too, so the worker never sends an event that a power cut could take back.
    pub async fn claim_due(&self, allot: Allot, lease_ms: i64) -> Result<ClaimRound, StoreError> {
        let clock = self.clock.clone();
        self.writer
            .write(move |c| {
                let now = clock.now_ms();
                let wants = allot(deliveries::due_destinations(c, now)?);
                let wanted = wants.iter().map(|w| w.1).sum();
                let claimed = claim_wants(c, wants, now, lease_ms)?;
                let next_due_ms = match claimed.len() < wanted || wanted == 0 {
                    true => deliveries::next_due_after(c, now)?,
                    false => None,
                };
                Ok(ClaimRound {
                    claimed,
                    wanted,
                    next_due_ms,
                })
            })
            .await
    }

    pub async fn record_attempts(&self, attempts: Vec<DeliveryAttempt>) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        self.writer
            .write_deferred(move |c| {
                attempts
                    .iter()
                    .try_for_each(|a| deliveries::record(c, a, now))
            })
            .await
    }

    pub async fn cancel_inactive_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        self.writer
            .write_deferred(move |c| deliveries::cancel_inactive_due(c, now))
            .await
    }

    pub async fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        self.readers.read(deliveries::pending_stats).await
    }

    /// Queues one more delivery of an event to a destination of the same scope, due now.
    pub async fn resend(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        event_id: String,
        destination_id: String,
    ) -> Result<(), StoreError> {
        let replay = |_: &Connection, _: &Scope, _: &str| Ok(());
        self.idempotent(scope, idem, replay, move |c, scope, now| {
            let event = events::get_any(c, scope, &event_id)?;
            let d = destinations::get(c, scope, &destination_id)?;
            routing::resendable(&d, &event)?;
            deliveries::resend(c, &event.id, &d.id, now)?;
            Ok((event.id, ()))
        })
        .await
        .inspect(|_| self.new_work.notify_one())
    }

    /// The delivery log of an event or a destination of the scope, newest first.
    pub async fn list_attempts(
        &self,
        scope: Scope,
        of: AttemptsOf,
        id: String,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<DeliveryAttempt>, StoreError> {
        self.readers
            .read(move |c| {
                match of {
                    AttemptsOf::Event => events::get_any(c, &scope, &id).map(drop)?,
                    AttemptsOf::Destination => destinations::get(c, &scope, &id).map(drop)?,
                }
                deliveries::attempts(c, of, &id, cursor, limit)
            })
            .await
    }

    /// Runs `op` once per idempotency key: a replay returns `replay(resource id)` (the current
    /// state) and changes nothing; the same key with another body is a conflict.
    async fn idempotent<T, R, O>(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        replay: R,
        op: O,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        R: FnOnce(&Connection, &Scope, &str) -> Result<T, StoreError> + Send + 'static,
        O: FnOnce(&Connection, &Scope, i64) -> Result<(String, T), StoreError> + Send + 'static,
    {
        let clock = self.clock.clone();
        self.writer
            .write(move |c| {
                let now = clock.now_ms();
                if let Some(key) = &idem {
                    if let Some(resource_id) = idempotency::check(c, &scope, key, now)? {
                        return replay(c, &scope, &resource_id);
                    }
                }
                let (resource_id, out) = op(c, &scope, now)?;
                if let Some(key) = &idem {
                    idempotency::record(c, &scope, key, &resource_id, now)?;
                }
                Ok(out)
            })
            .await
    }
}

/// Leases up to `n` due deliveries of each `(destination, n)` until `now + lease_ms`.
fn claim_wants(
    c: &Connection,
    wants: Vec<(String, usize)>,
    now: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let mut events = HashMap::new();
    let mut out = Vec::new();
    for (destination_id, n) in wants {
        out.extend(deliveries::claim(
            c,
            &destination_id,
            n,
            now,
            now + lease_ms,
            &mut events,
        )?);
    }
    Ok(out)
}

fn insert_key_pair(
    c: &Connection,
    account_id: &str,
    now: i64,
) -> Result<(String, String), StoreError> {
    let test = ids::secret_key(Mode::Test);
    let live = ids::secret_key(Mode::Live);
    accounts::insert_key(c, account_id, Mode::Test, &test, now)?;
    accounts::insert_key(c, account_id, Mode::Live, &live, now)?;
    Ok((test, live))
}
