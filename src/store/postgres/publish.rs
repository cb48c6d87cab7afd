//! Group commit for publishing on PostgreSQL. Concurrent publishes are gathered into batches;
//! each batch is one transaction of a handful of statements whatever its size (advisory locks
//! and a lookup for its idempotency keys, one read of the accounts and destinations it routes
//! to, one multi-row insert each for events, deliveries and keys), so a busy node pays one
//! commit and a few round trips per batch instead of per event. Several batches run at once, on
//! their own connections. Each publish still gets exactly what it would alone: its own event,
//! its replay or its idempotency conflict.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::{Pool, Transaction};
use futures_util::future::{try_join, try_join3};
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{lock_id, pool_error, queries};
use crate::clock::SharedClock;
use crate::config::IDEMPOTENCY_RETENTION_MS;
use crate::domain::destination::EventDestination;
use crate::domain::event::{Event, Family, NewEvent};
use crate::domain::routing::{self, Origin};
use crate::domain::{ids, Scope};
use crate::store::{IdempotencyKey, StoreError};

/// The most publishes in one transaction.
const MAX_BATCH: usize = 256;
/// Batches in flight at once (each on its own pooled connection).
const MAX_BATCHES: usize = 4;

struct Job {
    scope: Scope,
    idem: Option<IdempotencyKey>,
    new: NewEvent,
    reply: oneshot::Sender<Result<Event, StoreError>>,
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Job>,
}

impl Publisher {
    /// Starts the batching task; `committed` runs after each batch that stored deliveries.
    pub fn start(
        pool: Pool,
        clock: SharedClock,
        committed: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(gather(pool, clock, rx, Arc::new(committed)));
        Publisher { tx }
    }

    pub async fn publish(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        new: NewEvent,
    ) -> Result<Event, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            scope,
            idem,
            new,
            reply,
        };
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn gather(
    pool: Pool,
    clock: SharedClock,
    mut rx: mpsc::Receiver<Job>,
    committed: Arc<dyn Fn() + Send + Sync>,
) {
    let slots = Arc::new(Semaphore::new(MAX_BATCHES));
    loop {
        // Wait for a free slot first, so jobs arriving meanwhile join the next batch.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let (pool, clock, committed) = (pool.clone(), clock.clone(), committed.clone());
        tokio::spawn(async move {
            run_batch(&pool, &clock, batch, &*committed).await;
            drop(slot);
        });
    }
}

/// What one job of a batch comes to.
enum Outcome {
    /// A new event, stored with its deliveries.
    Stored(Box<Event>),
    /// An idempotent replay of the stored event with this id.
    Replay(String),
    Refused(StoreError),
}

async fn run_batch(
    pool: &Pool,
    clock: &SharedClock,
    batch: Vec<Job>,
    committed: &(dyn Fn() + Sync),
) {
    let now = clock.now_ms();
    let result = async {
        let mut client = pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await?;
        let outcomes = publish_all(&tx, &batch, now).await?;
        let replays = replayed_events(&tx, &outcomes).await?;
        tx.commit().await?;
        Ok::<_, StoreError>((outcomes, replays))
    }
    .await;
    match result {
        Ok((outcomes, replays)) => {
            let mut stored = false;
            for (job, outcome) in batch.into_iter().zip(outcomes) {
                let answer = match outcome {
                    Outcome::Stored(e) => {
                        stored |= e.fanout > 0;
                        Ok(*e)
                    }
                    Outcome::Replay(id) => replays.get(&id).cloned().ok_or(StoreError::NotFound),
                    Outcome::Refused(e) => Err(e),
                };
                let _ = job.reply.send(answer);
            }
            if stored {
                committed();
            }
        }
        Err(e) => {
            let why = e.to_string();
            tracing::warn!(error = %why, jobs = batch.len(), "a publish batch failed");
            for job in batch {
                let _ = job.reply.send(Err(StoreError::Commit(why.clone())));
            }
        }
    }
}

/// Runs the batch's statements inside `tx`; one outcome per job, in order.
async fn publish_all(
    tx: &Transaction<'_>,
    batch: &[Job],
    now: i64,
) -> Result<Vec<Outcome>, StoreError> {
    // Statements that do not wait for each other go out together (pipelined on the connection).
    let (known, routes) =
        try_join(lock_and_read_keys(tx, batch, now), Routes::read(tx, batch)).await?;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut events = Rows::default();
    let mut deliveries = Rows::default();
    let mut keys = Rows::default();
    // Keys stored earlier in this batch: a duplicate inside the batch is a replay too.
    let mut fresh: HashMap<KeyId, (String, String)> = HashMap::new();
    for job in batch {
        if let Some(key) = &job.idem {
            let id = key_id(&job.scope, key);
            if let Some((fingerprint, resource)) = known.get(&id).or_else(|| fresh.get(&id)) {
                outcomes.push(match *fingerprint == key.fingerprint {
                    true => Outcome::Replay(resource.clone()),
                    false => Outcome::Refused(StoreError::IdempotencyConflict),
                });
                continue;
            }
        }
        let event = routes.event(job, now, &mut deliveries)?;
        events.push_event(&event)?;
        if let Some(key) = &job.idem {
            keys.push_key(&job.scope, key, &event.id, now);
            fresh.insert(
                key_id(&job.scope, key),
                (key.fingerprint.clone(), event.id.clone()),
            );
        }
        outcomes.push(Outcome::Stored(Box::new(event)));
    }
    try_join3(
        events.insert(tx, INSERT_EVENTS),
        deliveries.insert(tx, INSERT_DELIVERIES),
        keys.insert(tx, INSERT_KEYS),
    )
    .await?;
    Ok(outcomes)
}

/// (account, livemode, operation, key)
type KeyId = (String, bool, String, String);

fn key_id(scope: &Scope, key: &IdempotencyKey) -> KeyId {
    (
        scope.account_id.clone(),
        scope.mode.livemode(),
        key.operation.clone(),
        key.key.clone(),
    )
}

/// Takes the advisory locks of the batch's idempotency keys (in one order, so batches never
/// deadlock) and reads those already stored: key → (fingerprint, resource id).
async fn lock_and_read_keys(
    tx: &Transaction<'_>,
    batch: &[Job],
    now: i64,
) -> Result<HashMap<KeyId, (String, String)>, StoreError> {
    let with_keys: Vec<(&Scope, &IdempotencyKey)> = batch
        .iter()
        .filter_map(|j| Some((&j.scope, j.idem.as_ref()?)))
        .collect();
    if with_keys.is_empty() {
        return Ok(HashMap::new());
    }
    let mut locks: Vec<i64> = with_keys
        .iter()
        .map(|(s, k)| lock_id(&[&s.account_id, &k.operation, &k.key]))
        .collect();
    locks.sort_unstable();
    locks.dedup();
    queries::exec(
        tx,
        "SELECT pg_advisory_xact_lock(l) FROM unnest($1::BIGINT[]) AS l ORDER BY l",
        &[&locks],
    )
    .await?;
    let accounts: Vec<&str> = with_keys
        .iter()
        .map(|(s, _)| s.account_id.as_str())
        .collect();
    let modes: Vec<bool> = with_keys.iter().map(|(s, _)| s.mode.livemode()).collect();
    let operations: Vec<&str> = with_keys
        .iter()
        .map(|(_, k)| k.operation.as_str())
        .collect();
    let keys: Vec<&str> = with_keys.iter().map(|(_, k)| k.key.as_str()).collect();
    let rows = queries::rows(
        tx,
        "SELECT k.account_id, k.livemode, k.operation, k.key, k.fingerprint, k.resource_id
             FROM idempotency_keys k
             JOIN unnest($1::TEXT[], $2::BOOL[], $3::TEXT[], $4::TEXT[]) AS q(a, l, o, k)
               ON k.account_id = q.a AND k.livemode = q.l AND k.operation = q.o AND k.key = q.k
             WHERE k.created_ms >= $5",
        &[
            &accounts,
            &modes,
            &operations,
            &keys,
            &(now - IDEMPOTENCY_RETENTION_MS),
        ],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1), r.get(2), r.get(3)),
                (r.get(4), r.get(5)),
            )
        })
        .collect())
}

/// The accounts' parents and the enabled destinations that the batch's events may go to.
struct Routes {
    parents: HashMap<String, Option<String>>,
    destinations: HashMap<String, Vec<EventDestination>>,
}

impl Routes {
    async fn read(tx: &Transaction<'_>, batch: &[Job]) -> Result<Self, StoreError> {
        let mut accounts: Vec<&str> = batch.iter().map(|j| j.scope.account_id.as_str()).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let parents: HashMap<String, Option<String>> = queries::rows(
            tx,
            "SELECT id, parent_id FROM accounts WHERE id = ANY($1)",
            &[&accounts],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
        let mut owners: Vec<&str> = accounts.clone();
        owners.extend(parents.values().flatten().map(String::as_str));
        owners.sort_unstable();
        owners.dedup();
        let mut destinations: HashMap<String, Vec<EventDestination>> = HashMap::new();
        for row in queries::rows(
            tx,
            "SELECT body FROM event_destinations
             WHERE account_id = ANY($1) AND NOT deleted AND status = 'enabled'",
            &[&owners],
        )
        .await?
        {
            let d: EventDestination = serde_json::from_str(row.get(0))?;
            destinations
                .entry(d.account_id.clone())
                .or_default()
                .push(d);
        }
        Ok(Routes {
            parents,
            destinations,
        })
    }

    /// The job's event, with one delivery row per destination it goes to.
    fn event(&self, job: &Job, now: i64, deliveries: &mut Rows) -> Result<Event, StoreError> {
        let scope = &job.scope;
        let new = job.new.clone();
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
        let own = self
            .destinations
            .get(&scope.account_id)
            .into_iter()
            .flatten();
        let parent = self.parents.get(&scope.account_id).cloned().flatten();
        let from_parent = parent
            .and_then(|p| self.destinations.get(&p))
            .into_iter()
            .flatten();
        let targets: Vec<&EventDestination> = own
            .map(|d| (d, Origin::OwnAccount))
            .chain(from_parent.map(|d| (d, Origin::ConnectedAccount)))
            .filter(|(d, origin)| routing::matches(d, &event, *origin))
            .map(|(d, _)| d)
            .collect();
        event.fanout = targets.len() as i64;
        for d in targets {
            deliveries.push_delivery(&event.id, &d.id, now);
        }
        Ok(event)
    }
}

/// Columns of a multi-row insert, one array per column (`unnest` turns them into rows): text
/// columns, then a `livemode` column (if the table has one), then a time column.
#[derive(Default)]
struct Rows {
    text: Vec<Vec<Option<String>>>,
    flags: Option<Vec<bool>>,
    times: Vec<i64>,
}

const INSERT_EVENTS: &str = "INSERT INTO events (id, account_id, family, type, related_id, body, livemode, created_ms)
    SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::BOOL[], $8::BIGINT[])";
const INSERT_DELIVERIES: &str = "INSERT INTO deliveries (id, event_id, destination_id, status, next_attempt_ms, created_ms, updated_ms)
    SELECT i, e, d, 'pending', t, t, t FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[]) AS r(i, e, d, t)";
const INSERT_KEYS: &str = "INSERT INTO idempotency_keys (account_id, operation, key, fingerprint, resource_id, livemode, created_ms)
    SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BOOL[], $7::BIGINT[])
    ON CONFLICT (account_id, livemode, operation, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, resource_id = EXCLUDED.resource_id, created_ms = EXCLUDED.created_ms";

impl Rows {
    fn push(&mut self, text: Vec<Option<String>>, flag: Option<bool>, time: i64) {
        if self.text.is_empty() {
            self.text = vec![Vec::new(); text.len()];
        }
        for (column, value) in self.text.iter_mut().zip(text) {
            column.push(value);
        }
        if let Some(flag) = flag {
            self.flags.get_or_insert_with(Vec::new).push(flag);
        }
        self.times.push(time);
    }

    fn push_event(&mut self, e: &Event) -> Result<(), StoreError> {
        let family = match e.family {
            Family::Thin => "thin",
            Family::Snapshot => "snapshot",
        };
        let text = vec![
            Some(e.id.clone()),
            Some(e.account_id.clone()),
            Some(family.to_owned()),
            Some(e.type_.clone()),
            e.related_object_id().map(str::to_owned),
            Some(serde_json::to_string(e)?),
        ];
        self.push(text, Some(e.mode.livemode()), e.created_ms);
        Ok(())
    }

    fn push_delivery(&mut self, event_id: &str, destination_id: &str, now: i64) {
        let text = vec![
            Some(ids::delivery(now)),
            Some(event_id.to_owned()),
            Some(destination_id.to_owned()),
        ];
        self.push(text, None, now);
    }

    fn push_key(&mut self, scope: &Scope, key: &IdempotencyKey, resource_id: &str, now: i64) {
        let text = vec![
            Some(scope.account_id.clone()),
            Some(key.operation.clone()),
            Some(key.key.clone()),
            Some(key.fingerprint.clone()),
            Some(resource_id.to_owned()),
        ];
        self.push(text, Some(scope.mode.livemode()), now);
    }

    /// One statement for all rows (none when there are no rows).
    async fn insert(&self, tx: &Transaction<'_>, sql: &str) -> Result<(), StoreError> {
        if self.times.is_empty() {
            return Ok(());
        }
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            self.text.iter().map(|c| c as _).collect();
        if let Some(flags) = &self.flags {
            params.push(flags);
        }
        params.push(&self.times);
        queries::exec(tx, sql, &params).await?;
        Ok(())
    }
}

/// The stored events that replays answer with (their current state).
async fn replayed_events(
    tx: &Transaction<'_>,
    outcomes: &[Outcome],
) -> Result<HashMap<String, Event>, StoreError> {
    let ids: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Replay(id) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut out = HashMap::new();
    for row in tx
        .query("SELECT body FROM events WHERE id = ANY($1)", &[&ids])
        .await?
    {
        let e: Event = serde_json::from_str(row.get(0))?;
        out.insert(e.id.clone(), e);
    }
    Ok(out)
}
