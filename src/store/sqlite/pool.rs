//! The writer thread (group commit) and the pool of read connections.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::schema;
use crate::store::StoreError;

/// The most writes grouped into one transaction.
const MAX_BATCH: usize = 1024;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = open(path)?;
        let (tx, rx) = mpsc::channel::<Job>(8192);
        std::thread::Builder::new()
            .name("eventd-sqlite-writer".into())
            .spawn(move || write_loop(conn, rx))?;
        Ok(Writer { tx })
    }

    /// Runs `f` inside a shared transaction and answers once that transaction is committed.
    /// An `Err` from `f` rolls back only `f`'s own changes (a savepoint).
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = done_tx.send(commit.and(result));
            });
            (ok, reply)
        });
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        done_rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn write_loop(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&conn, &mut batch);
    }
}

fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping a job without running it tells its caller the write did not happen.
        tracing::warn!(error = %e, jobs = batch.len(), "cannot begin a write transaction");
        batch.clear();
        return;
    }
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch.drain(..) {
        if let Err(e) = execute_cached(conn, "SAVEPOINT op") {
            tracing::warn!(error = %e, "cannot open a savepoint; the write is dropped");
            continue;
        }
        let (ok, reply) = job(conn);
        let end = if ok {
            execute_cached(conn, "RELEASE op")
        } else {
            execute_cached(conn, "ROLLBACK TO op").and_then(|_| execute_cached(conn, "RELEASE op"))
        };
        if let Err(e) = end {
            tracing::error!(error = %e, "savepoint release failed");
        }
        replies.push(reply);
    }
    let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if commit.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(commit.clone().map_err(StoreError::Commit));
    }
}

/// A statement without results, prepared once per connection.
fn execute_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    schema::configure(&conn)?;
    Ok(conn)
}

/// Read connections; WAL lets them read while the writer commits.
#[derive(Clone)]
pub struct Readers {
    conns: Arc<Vec<Mutex<Connection>>>,
    next: Arc<AtomicUsize>,
}

impl Readers {
    pub fn open(path: &Path, count: usize) -> Result<Self, StoreError> {
        let conns = (0..count.max(1))
            .map(|_| open(path).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Readers {
            conns: Arc::new(conns),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conns = self.conns.clone();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let n = conns.len();
            for i in 0..n {
                if let Ok(conn) = conns[(start + i) % n].try_lock() {
                    return f(&conn);
                }
            }
            let conn = conns[start % n]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&conn)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}
