//! The webhook receiver: an in-process axum server on loopback that answers 200 at once (or 503
//! while "down"), counts deliveries, and — when asked — records the first receive time per event id
//! parsed from the JSON body.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

struct Inner {
    base: Instant,
    down: AtomicBool,
    record: AtomicBool,
    count: AtomicU64,
    /// Nanoseconds since `base` of the latest receipt (0: none yet).
    last_ns: AtomicU64,
    bad_bodies: AtomicU64,
    rejected: AtomicU64,
    times: Mutex<HashMap<String, Instant>>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

async fn hook(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    let now = Instant::now();
    if inner.down.load(Relaxed) {
        inner.rejected.fetch_add(1, Relaxed);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match serde_json::from_slice::<IdOnly>(&body) {
        Ok(parsed) => {
            if inner.record.load(Relaxed) {
                let mut times = inner.times.lock().unwrap_or_else(|e| e.into_inner());
                times.entry(parsed.id).or_insert(now);
            }
        }
        Err(_) => {
            inner.bad_bodies.fetch_add(1, Relaxed);
        }
    }
    let ns = now.duration_since(inner.base).as_nanos() as u64;
    inner.last_ns.fetch_max(ns.max(1), Relaxed);
    inner.count.fetch_add(1, Relaxed);
    StatusCode::OK
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let inner = Arc::new(Inner {
            base: Instant::now(),
            down: AtomicBool::new(false),
            record: AtomicBool::new(false),
            count: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
            bad_bodies: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            times: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/hook", post(hook))
            .route("/hook/{n}", post(hook))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, inner })
    }

    pub fn url(&self, n: usize) -> String {
        format!("http://{}/hook/{n}", self.addr)
    }

    /// Forgets every count and recorded time; sets up/down and whether to record ids.
    pub fn reset(&self, down: bool, record: bool) {
        self.inner.down.store(down, Relaxed);
        self.inner.record.store(record, Relaxed);
        self.inner.count.store(0, Relaxed);
        self.inner.last_ns.store(0, Relaxed);
        self.inner.bad_bodies.store(0, Relaxed);
        self.inner.rejected.store(0, Relaxed);
        self.inner
            .times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn count(&self) -> u64 {
        self.inner.count.load(Relaxed)
    }

    pub fn rejected(&self) -> u64 {
        self.inner.rejected.load(Relaxed)
    }

    pub fn bad_bodies(&self) -> u64 {
        self.inner.bad_bodies.load(Relaxed)
    }

    /// When the latest delivery arrived.
    pub fn last(&self) -> Option<Instant> {
        match self.inner.last_ns.load(Relaxed) {
            0 => None,
            ns => Some(self.inner.base + Duration::from_nanos(ns)),
        }
    }

    pub fn take_times(&self) -> HashMap<String, Instant> {
        std::mem::take(&mut *self.inner.times.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until `expected` deliveries arrived; fails when none arrives for `stall`.
    pub async fn wait_for(&self, expected: u64, stall: Duration) -> anyhow::Result<()> {
        let mut seen = self.count();
        let mut since = Instant::now();
        while self.count() < expected {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let now_count = self.count();
            if now_count != seen {
                seen = now_count;
                since = Instant::now();
            } else if since.elapsed() > stall {
                anyhow::bail!(
                    "deliveries stalled at {seen} of {expected} (nothing for {} s)",
                    stall.as_secs()
                );
            }
        }
        Ok(())
    }
}
