//! The writer thread (group commit) and the pool of read connections.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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
    /// Once its commit is fsynced: everything a client is told was stored.
    OnDisk,
    /// Once committed to the WAL, before the fsync (it survives `kill -9`, not a power cut until
    /// the next fsync): the worker's bookkeeping, attempt outcomes and cancellations, whose loss
    /// only means one more attempt of a delivery, never a lost event. (Claims are not deferred:
    /// a claim sees commits that may not be fsynced yet, and nothing is sent before it is.)
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
    /// Starts the writer thread on `path` and its syncer thread. Commits only write the WAL
    /// (`synchronous = NORMAL`); the syncer then fsyncs the WAL file for the commits that hold
    /// acknowledged writes, while the writer already runs the next batch. Group commit spans
    /// every batch committed while an fsync is in progress.
    pub fn start(path: &Path) -> Result<Self, StoreError> {
        Self::start_syncing(path, wal_path(path))
    }

    fn start_syncing(path: &Path, wal: PathBuf) -> Result<Self, StoreError> {
        let conn = open(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // The checkpointer thread copies the WAL long before this many pages (16 MiB) pile up;
        // the writer's own checkpoint then only has to complete it.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)?;
        let checkpoints = open(path)?;
        let (tx, rx) = mpsc::channel::<Job>(8192);
        let (sync_tx, sync_rx) = std::sync::mpsc::channel::<Vec<Reply>>();
        let (commit_tx, commit_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let syncing = Arc::new(Syncing::default());
        let synced = syncing.clone();
        std::thread::Builder::new()
            .name("eventd-sqlite-sync".into())
            .spawn(move || sync_loop(&wal, sync_rx, &synced))?;
        std::thread::Builder::new()
            .name("eventd-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoints, commit_rx))?;
        let committed = Committed {
            sync: sync_tx,
            syncing,
            checkpoint: commit_tx,
        };
        std::thread::Builder::new()
            .name("eventd-sqlite-writer".into())
            .spawn(move || write_loop(conn, rx, committed))?;
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

fn wal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Where the writer reports its commits: acknowledged writes to the syncer, and a nudge to the
/// checkpointer.
struct Committed {
    sync: std::sync::mpsc::Sender<Vec<Reply>>,
    syncing: Arc<Syncing>,
    checkpoint: std::sync::mpsc::SyncSender<()>,
}

/// The longest the writer holds back a batch for an fsync in progress.
const MAX_SYNC_WAIT: Duration = Duration::from_millis(50);

/// Commits handed to the syncer and not yet fsynced. While an fsync runs, the writer lets the
/// next batch grow instead of committing: a write arriving now is answered after the next fsync
/// either way, and one commit of everything that arrived meanwhile writes each page it touches to
/// the WAL once, where several small commits would write the same pages again each time.
#[derive(Default)]
struct Syncing {
    pending: Mutex<usize>,
    done: Condvar,
}

impl Syncing {
    fn add(&self) {
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    }

    fn finish(&self, commits: usize) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending = pending.saturating_sub(commits);
        self.done.notify_all();
    }

    fn wait_idle(&self) {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self
            .done
            .wait_timeout_while(pending, MAX_SYNC_WAIT, |n| *n > 0);
    }
}

fn write_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, committed: Committed) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        if first.durability == Durability::OnDisk {
            committed.syncing.wait_idle();
        }
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (outcome, replies) = run_batch(&conn, &mut batch);
        if outcome.is_err() {
            for (_, reply) in replies {
                reply(outcome.clone().map_err(StoreError::Commit));
            }
            continue;
        }
        // A full channel means a nudge is already waiting.
        let _ = committed.checkpoint.try_send(());
        let mut on_disk = Vec::new();
        for (durability, reply) in replies {
            match durability {
                Durability::Deferred => reply(Ok(())),
                Durability::OnDisk => on_disk.push(reply),
            }
        }
        if !on_disk.is_empty() {
            committed.syncing.add();
            if let Err(std::sync::mpsc::SendError(replies)) = committed.sync.send(on_disk) {
                committed.syncing.finish(1);
                for reply in replies {
                    reply(Err(StoreError::Closed));
                }
            }
        }
    }
}

/// At most this often, the checkpointer copies what the WAL holds into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which a commit runs SQLite's own checkpoint (which completes the copying the
/// checkpointer did, so the WAL can start over).
const WRITER_CHECKPOINT_PAGES: i64 = 4000;

/// Copies committed WAL frames into the database (a PASSIVE checkpoint: it never blocks the
/// writer or readers) after commits, at most every `CHECKPOINT_EVERY`. The writer's own automatic
/// checkpoint (every `WRITER_CHECKPOINT_PAGES`, inside a commit) then finds the frames already copied and only
/// completes the checkpoint, which lets the next transaction start the WAL over; without it a
/// busy writer would never see a fully copied WAL and the file would grow without bound. Ends
/// with the writer.
fn checkpoint_loop(conn: Connection, commits: std::sync::mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        let started = std::time::Instant::now();
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed; will try again");
        }
        std::thread::sleep(CHECKPOINT_EVERY.saturating_sub(started.elapsed()));
    }
}

/// fsyncs the WAL for every batch of acknowledged writes waiting, then answers them: one fsync
/// covers all batches committed before it began.
fn sync_loop(wal: &Path, rx: std::sync::mpsc::Receiver<Vec<Reply>>, syncing: &Syncing) {
    let mut file: Option<File> = None;
    while let Ok(mut waiting) = rx.recv() {
        let mut commits = 1;
        while let Ok(more) = rx.try_recv() {
            waiting.extend(more);
            commits += 1;
        }
        let synced = sync_file(wal, &mut file);
        if let Err(e) = &synced {
            tracing::error!(error = %e, "cannot fsync the WAL; writes are not acknowledged");
        }
        for reply in waiting {
            reply(synced.clone().map_err(StoreError::Commit));
        }
        syncing.finish(commits);
    }
}

/// `fdatasync` of the WAL file (opened once; opened again after an error).
fn sync_file(wal: &Path, file: &mut Option<File>) -> Result<(), String> {
    let f = match file {
        Some(f) => f,
        None => file.insert(File::open(wal).map_err(|e| format!("open {}: {e}", wal.display()))?),
    };
    f.sync_data().map_err(|e| {
        *file = None;
        format!("fsync {}: {e}", wal.display())
    })
}

/// Runs the batch in one transaction and commits it (to the WAL). A job that fails before
/// writing anything (not found, a conflict, a refused input: every store operation checks before
/// it writes) gets its own error and the others go on. A job that fails after writing (an I/O
/// error) leaves changes that cannot be told apart from the others', so the whole batch is rolled
/// back and every job in it answered with an error: nothing in it was stored or acknowledged.
/// This is what lets a batch run without a savepoint per job (each of which would copy every
/// page the job touches). Returns the commit's outcome and the replies still to be given.
fn run_batch(
    conn: &Connection,
    batch: &mut Vec<Job>,
) -> (Result<(), String>, Vec<(Durability, Reply)>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping a job without running it tells its caller the write did not happen.
        tracing::warn!(error = %e, jobs = batch.len(), "cannot begin a write transaction");
        batch.clear();
        return (Err(e.to_string()), Vec::new());
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
        replies.push((job.durability, reply));
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
    (outcome, replies)
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

    /// Runs the batch and answers its jobs with the commit's outcome (no fsync).
    fn run(conn: &Connection, jobs: Vec<Job>) {
        let (outcome, replies) = run_batch(conn, &mut jobs.into_iter().collect());
        for (_, reply) in replies {
            reply(outcome.clone().map_err(StoreError::Commit));
        }
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
        run(&conn, vec![a, b, c]);
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
        run(&conn, vec![a, b, c]);
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
        run(&conn, vec![d]);
        assert!(rd.blocking_recv().unwrap().is_ok());
        assert_eq!(stored(&conn), vec![4]);
    }

    #[tokio::test]
    async fn acknowledged_writes_are_answered_only_after_the_wal_fsync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.sqlite3");
        let create =
            |c: &Connection| Ok(c.execute_batch("CREATE TABLE IF NOT EXISTS t (v INTEGER)")?);
        let good = Writer::start(&path).expect("writer");
        good.write(create).await.expect("fsynced");
        drop(good);
        // The same database, but its syncer aims at a file that is not there: every fsync fails.
        let unsynced =
            Writer::start_syncing(&path, dir.path().join("missing-wal")).expect("writer");
        let insert =
            |c: &Connection| Ok(c.execute("INSERT INTO t (v) VALUES (1)", []).map(drop)?);
        let answer = unsynced.write(insert).await;
        assert!(
            matches!(&answer, Err(StoreError::Commit(why)) if why.contains("missing-wal")),
            "an acknowledged write waits for its fsync: {answer:?}"
        );
        // Bookkeeping does not wait for an fsync.
        unsynced.write_deferred(insert).await.expect("deferred");
    }
}
