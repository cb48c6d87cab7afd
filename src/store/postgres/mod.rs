//! The PostgreSQL implementation of the store: several eventd nodes share one database.
//! Bounded connection pool, statement timeouts, advisory locks for idempotency, claims with
//! `FOR UPDATE SKIP LOCKED` and leases, and LISTEN/NOTIFY to wake workers on every node.

mod accounts;
mod deliveries;
mod maintenance;
mod paging;
mod publish;
mod queries;
mod resources;
mod schema;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Transaction;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::future::poll_fn;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::clock::SharedClock;
use crate::domain::Scope;
use crate::store::{IdempotencyKey, StoreError};

/// The channel a commit that adds due deliveries notifies.
const WORK_CHANNEL: &str = "eventd_work";

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    clock: SharedClock,
    new_work: Arc<Notify>,
    /// Wakes the notifier task, which tells the other nodes (NOTIFY) that work was added.
    announce: Arc<Notify>,
    /// Publishes in batches (group commit).
    publisher: publish::Publisher,
}

fn pool_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

fn config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    let options = config.get_options().unwrap_or("").to_owned();
    // A stuck query fails fast instead of holding a connection; the caller retries.
    config.options(format!("{options} -c statement_timeout=15000").trim());
    config.connect_timeout(Duration::from_secs(5));
    config.application_name("eventd");
    Ok(config)
}

impl PgStore {
    /// Connects, runs the migrations and starts the LISTEN task.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        Self::migrate_url(url).await?;
        let manager = Manager::from_config(
            config(url)?,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(pool_error)?;
        let new_work = Arc::new(Notify::new());
        tokio::spawn(listen(config(url)?, new_work.clone()));
        let announce = Arc::new(Notify::new());
        tokio::spawn(announce_work(pool.clone(), announce.clone()));
        tokio::spawn(maintenance::maintain(pool.clone()));
        let (wake, tell) = (new_work.clone(), announce.clone());
        let publisher = publish::Publisher::start(pool.clone(), clock.clone(), move || {
            wake.notify_one();
            tell.notify_one();
        });
        Ok(PgStore {
            pool,
            clock,
            new_work,
            announce,
            publisher,
        })
    }

    pub async fn migrate_url(url: &str) -> Result<(), StoreError> {
        let (mut client, connection) = config(url)?.connect(NoTls).await?;
        let driver = tokio::spawn(connection);
        let result = schema::migrate(&mut client).await;
        drop(client);
        let _ = driver.await;
        result
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    pub async fn ping_database(&self) -> Result<(), StoreError> {
        self.client().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    pub async fn new_work(&self) {
        self.new_work.notified().await
    }

    /// Runs `op` once per idempotency key: concurrent requests with the same key serialise on an
    /// advisory lock, a replay returns `replay(resource id)` and the same key with another body is
    /// a conflict. `notify` wakes the workers of every node after the commit.
    async fn idempotent<T, R, O>(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        notify: bool,
        replay: R,
        op: O,
    ) -> Result<T, StoreError>
    where
        R: AsyncFnOnce(&Transaction<'_>, &Scope, &str) -> Result<T, StoreError>,
        O: AsyncFnOnce(&Transaction<'_>, &Scope, i64) -> Result<(String, T), StoreError>,
    {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let now = self.clock.now_ms();
        if let Some(key) = &idem {
            let lock = lock_id(&[&scope.account_id, &key.operation, &key.key]);
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])
                .await?;
            if let Some(resource_id) = queries::check_idempotency(&tx, &scope, key, now).await? {
                let out = replay(&tx, &scope, &resource_id).await?;
                tx.commit().await?;
                return Ok(out);
            }
        }
        let (resource_id, out) = op(&tx, &scope, now).await?;
        if let Some(key) = &idem {
            queries::record_idempotency(&tx, &scope, key, &resource_id, now).await?;
        }
        tx.commit().await?;
        if notify {
            self.work_added();
        }
        Ok(out)
    }

    /// After a commit that added due deliveries: wakes this node's worker now and the other
    /// nodes' through the notifier.
    fn work_added(&self) {
        self.new_work.notify_one();
        self.announce.notify_one();
    }
}

/// Sends `NOTIFY` on the work channel whenever work was added, outside the adding transactions:
/// a NOTIFY inside them would serialise their commits on PostgreSQL's notification queue lock.
/// Announcements made while one is being sent collapse into the next one. A node that dies
/// between a commit and its NOTIFY only delays the others until their next poll.
async fn announce_work(pool: Pool, announce: Arc<Notify>) {
    loop {
        announce.notified().await;
        let sent = match pool.get().await {
            Ok(client) => client
                .batch_execute(&format!("NOTIFY {WORK_CHANNEL}"))
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "NOTIFY failed; other nodes will poll");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A stable 64-bit advisory lock id for a tuple of strings.
fn lock_id(parts: &[&str]) -> i64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    i64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Keeps a connection LISTENing on the work channel and turns notifications into wake-ups;
/// reconnects after PostgreSQL restarts (workers also poll, so a gap only delays).
async fn listen(config: tokio_postgres::Config, new_work: Arc<Notify>) {
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    loop {
                        match poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => {
                                let _ = tx.send(());
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {WORK_CHANNEL}"))
                    .await
                    .is_ok()
                {
                    while rx.recv().await.is_some() {
                        new_work.notify_one();
                    }
                }
                driver.abort();
            }
            Err(e) => tracing::debug!(error = %e, "LISTEN connection failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
