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
type Run = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// When a write's caller may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk (fsynced) first: everything a client is told was stored.
    OnDisk,
    /// Once committed to the WAL (it survives `kill -9`, not a power cut until the next
    /// fsync): the worker's bookkeeping, leases and attempt outcomes, whose loss only means
    /// one more attempt of a delivery, never a lost event.
    Deferred,
}

struct Job {
    durability: Durability,
    run: Run,
}

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

    /// Runs `f` inside a shared transaction and answers once that transaction is on disk.
    /// `f` must check before it writes: an `Err` after a write rolls back the whole batch.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_with(Durability::OnDisk, f).await
    }

    /// Like `write`, answering once the transaction is committed to the WAL (see `Deferred`).
    pub async fn write_deferred<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_with(Durability::Deferred, f).await
    }

    async fn write_with<T, F>(&self, durability: Durability, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel();
        let run: Run = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = done_tx.send(commit.and(result));
            });
            (ok, reply)
        });
        let job = Job { durability, run };
        self.tx.send(job).await.map_err(|_| StoreError::Closed)?;
        done_rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn write_loop(conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    // What the connection's `synchronous` is set to now (`configure` sets FULL).
    let mut synced = Durability::OnDisk;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // One fsync per batch that holds anything acknowledged to a client; none for a batch of
        // bookkeeping alone (WAL frames are fsynced with the next durable commit).
        let wanted = if batch.iter().any(|j| j.durability == Durability::OnDisk) {
            Durability::OnDisk
        } else {
            Durability::Deferred
        };
        if wanted != synced {
            let level = match wanted {
                Durability::OnDisk => "FULL",
                Durability::Deferred => "NORMAL",
            };
            match conn.pragma_update(None, "synchronous", level) {
                Ok(()) => synced = wanted,
                Err(e) => tracing::warn!(error = %e, level, "cannot set synchronous"),
            }
        }
        if synced == Durability::Deferred && wanted == Durability::OnDisk {
            // Never answer an acknowledged write without its fsync.
            fail_batch(&mut batch, "cannot make the commit durable");
            continue;
        }
        run_batch(&conn, &mut batch);
    }
}

/// Answers every job of the batch with an error, running none of them.
fn fail_batch(batch: &mut Vec<Job>, why: &str) {
    tracing::warn!(jobs = batch.len(), why, "write batch dropped");
    batch.clear();
}

/// Runs the batch in one transaction. A job that fails before writing anything (not found, a
/// conflict, a refused input: every store operation checks before it writes) is answered with
/// its error and the others go on. A job that fails after writing (an I/O error) leaves changes
/// that cannot be told apart from the others', so the whole batch is rolled back and every job
/// in it answered with an error: nothing in it was stored or acknowledged. This is what lets a
/// batch run without a savepoint per job (each of which would copy every page the job touches).
fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping a job without running it tells its caller the write did not happen.
        tracing::warn!(error = %e, jobs = batch.len(), "cannot begin a write transaction");
        batch.clear();
        return;
    }
    let mut replies = Vec::with_capacity(batch.len());
    let mut torn = false;
    for job in batch.drain(..) {
        if torn {
            continue; // dropped: its caller hears that the write did not happen
        }
        let before = conn.total_changes();
        let (ok, reply) = (job.run)(conn);
        torn = !ok && conn.total_changes() != before;
        replies.push(reply);
    }
    let outcome = if torn {
        tracing::error!(
            jobs = replies.len(),
            "a write failed halfway; its batch is rolled back"
        );
        Err("a write failed halfway; nothing in its batch was stored".to_owned())
    } else {
        conn.execute_batch("COMMIT").map_err(|e| e.to_string())
    };
    if outcome.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(outcome.clone().map_err(StoreError::Commit));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = open(&dir.path().join("t.sqlite3")).expect("open");
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)")
            .expect("create");
        (dir, conn)
    }

    /// A job inserting `v`, failing afterwards when `fail_after` is set, or failing without
    /// writing when `v` is negative; returns the job and where its answer arrives.
    fn insert(v: i64, fail_after: bool) -> (Job, oneshot::Receiver<Result<(), StoreError>>) {
        let (tx, rx) = oneshot::channel();
        let run: Run = Box::new(move |c: &Connection| {
            let result = if v < 0 {
                Err(StoreError::NotFound)
            } else {
                c.execute("INSERT INTO t (v) VALUES (?1)", [v])
                    .map_err(StoreError::from)
                    .and_then(|_| {
                        if fail_after {
                            Err(StoreError::NotFound)
                        } else {
                            Ok(())
                        }
                    })
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (ok, reply)
        });
        let job = Job {
            durability: Durability::OnDisk,
            run,
        };
        (job, rx)
    }

    fn stored(c: &Connection) -> Vec<i64> {
        let mut stmt = c.prepare("SELECT v FROM t ORDER BY v").unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_job_refused_before_writing_leaves_its_batch_alone() {
        let (_dir, conn) = database();
        let (a, ra) = insert(1, false);
        let (b, rb) = insert(-1, false);
        let (c, rc) = insert(3, false);
        run_batch(&conn, &mut vec![a, b, c]);
        assert!(ra.blocking_recv().unwrap().is_ok());
        assert!(matches!(
            rb.blocking_recv().unwrap(),
            Err(StoreError::NotFound)
        ));
        assert!(rc.blocking_recv().unwrap().is_ok());
        assert_eq!(stored(&conn), vec![1, 3]);
    }

    #[test]
    fn a_job_failing_after_writing_rolls_back_its_whole_batch() {
        let (_dir, conn) = database();
        let (a, ra) = insert(1, false);
        let (b, rb) = insert(2, true);
        let (c, rc) = insert(3, false);
        run_batch(&conn, &mut vec![a, b, c]);
        assert!(matches!(
            ra.blocking_recv().unwrap(),
            Err(StoreError::Commit(_))
        ));
        assert!(rb.blocking_recv().unwrap().is_err());
        assert!(rc.blocking_recv().is_err(), "the job after it never ran");
        assert_eq!(
            stored(&conn),
            Vec::<i64>::new(),
            "nothing of the batch stays"
        );
        // The connection is usable again.
        let (d, rd) = insert(4, false);
        run_batch(&conn, &mut vec![d]);
        assert!(rd.blocking_recv().unwrap().is_ok());
        assert_eq!(stored(&conn), vec![4]);
    }

    #[tokio::test]
    async fn only_acknowledged_writes_wait_for_an_fsync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let writer = Writer::start(&dir.path().join("t.sqlite3")).expect("writer");
        let level = |c: &Connection| -> Result<i64, StoreError> {
            Ok(c.pragma_query_value(None, "synchronous", |r| r.get(0))?)
        };
        // 2 = FULL (fsync at commit), 1 = NORMAL (WAL only, fsynced with the next FULL commit).
        assert_eq!(writer.write_deferred(level).await.unwrap(), 1);
        assert_eq!(writer.write(level).await.unwrap(), 2);
        assert_eq!(writer.write_deferred(level).await.unwrap(), 1);
    }
}
