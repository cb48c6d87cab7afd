//! The measured runs. Each spawns its own eventd on a fresh data directory (except the backlog
//! drain, which restarts on the backlog's directory), reads the process's CPU time and peak RSS
//! from /proc before stopping it, and the data directory's size after.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::receiver::Receiver;
use crate::server::{dir_bytes, postgres_cpu_secs, proc_cpu_secs, Eventd, Launcher, EVENT_BODY};

pub struct Ctx {
    pub launcher: Launcher,
    pub http: reqwest::Client,
    pub receiver: Receiver,
    pub concurrency: usize,
    pub stall: Duration,
    /// eventd runs on PostgreSQL (its server CPU is accounted beside eventd's).
    pub postgres: bool,
}

/// One line of the report.
#[derive(Default, Clone)]
pub struct Row {
    pub name: String,
    pub events: u64,
    pub deliveries: u64,
    pub secs: f64,
    /// The headline rate (per second) and what it counts.
    pub rate: f64,
    pub unit: &'static str,
    /// eventd's user+sys CPU seconds during the run.
    pub cpu_s: Option<f64>,
    /// The benchmark process's own user+sys CPU seconds (clients + receiver) during the run.
    pub bench_cpu_s: Option<f64>,
    /// PostgreSQL server processes' user+sys CPU seconds during the run (PostgreSQL only).
    pub db_cpu_s: Option<f64>,
    pub rss_mb: Option<f64>,
    pub db_bytes: Option<u64>,
    pub note: String,
}

impl Row {
    pub fn us_per_event(&self) -> Option<f64> {
        per(self.cpu_s, self.events)
    }
    pub fn us_per_delivery(&self) -> Option<f64> {
        per(self.cpu_s, self.deliveries)
    }
    /// PostgreSQL server CPU per event / per delivery (`na` on SQLite).
    pub fn db_us_per_event(&self) -> Option<f64> {
        per(self.db_cpu_s, self.events)
    }
    pub fn db_us_per_delivery(&self) -> Option<f64> {
        per(self.db_cpu_s, self.deliveries)
    }
}

fn per(cpu_s: Option<f64>, n: u64) -> Option<f64> {
    cpu_s.filter(|_| n > 0).map(|c| c * 1e6 / n as f64)
}

#[derive(Default, Clone, Copy)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub ack_p99_ms: f64,
}

fn bench_cpu() -> Option<f64> {
    proc_cpu_secs("/proc/self/stat")
}

fn diff(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(b? - a?)
}

/// Publishes one event; returns its id when acknowledged with 200.
async fn publish_one(http: &reqwest::Client, base: &str, key: &str) -> Option<String> {
    let r = http
        .post(format!("{base}/v2/core/events"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(EVENT_BODY)
        .send()
        .await
        .ok()?;
    if r.status() != reqwest::StatusCode::OK {
        return None;
    }
    let body = r.bytes().await.ok()?;
    #[derive(serde::Deserialize)]
    struct IdOnly {
        id: String,
    }
    serde_json::from_slice::<IdOnly>(&body).ok().map(|v| v.id)
}

/// Publishes `n` events from `concurrency` closed-loop clients; returns (acknowledged, failed, elapsed).
async fn publish_many(ctx: &Ctx, e: &Eventd, n: u64) -> anyhow::Result<(u64, u64, Duration)> {
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..ctx.concurrency {
        let (next, acked, failed) = (next.clone(), acked.clone(), failed.clone());
        let (http, base, key) = (ctx.http.clone(), e.base.clone(), e.key.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Relaxed) < n {
                match publish_one(&http, &base, &key).await {
                    Some(_) => acked.fetch_add(1, Relaxed),
                    None => failed.fetch_add(1, Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed();
    let (acked, failed) = (acked.load(Relaxed), failed.load(Relaxed));
    if acked == 0 || failed * 100 > n {
        bail!(
            "publishing failed: {acked} acknowledged, {failed} failed; eventd log:\n{}",
            e.log_tail()
        );
    }
    Ok((acked, failed, elapsed))
}

/// Reads CPU and peak RSS, stops eventd, then sizes its data directory (or PostgreSQL schema).
async fn finish(ctx: &Ctx, e: Eventd, cpu0: Option<f64>, row: &mut Row) {
    row.cpu_s = diff(cpu0, e.cpu_secs());
    row.db_cpu_s = diff(row.db_cpu_s, postgres_cpu_secs());
    row.rss_mb = e.peak_rss_mb();
    let dir: Option<PathBuf> = e.data_dir.clone();
    let schema = e.schema.clone();
    e.stop(&ctx.http).await;
    row.db_bytes = match schema {
        Some((pg, name)) => pg.schema_bytes(&name).await,
        None => dir.map(|d| dir_bytes(&d)),
    };
}

/// PostgreSQL's CPU seconds so far, when benchmarking PostgreSQL (`finish` takes the difference).
fn db_cpu0(ctx: &Ctx) -> Option<f64> {
    ctx.postgres.then(postgres_cpu_secs).flatten()
}

/// Run 1: The same HTTP client stack eventd delivers with (its `Sender`, signing every request)
/// POSTing a thin-notification-sized body straight to the receiver for `secs`, from
/// `concurrency` closed-loop clients (eventd's per-destination in-flight limit is 64). No eventd.
pub async fn ceiling(ctx: &Ctx, secs: f64) -> anyhow::Result<Row> {
    use eventd::delivery::sender::Sender;
    use eventd::delivery::signature;
    let config = eventd::config::Config::for_tests(PathBuf::from("unused"));
    let sender = Sender::new(&config.delivery)?;
    let body = bytes::Bytes::from(serde_json::to_vec(&json!({
        "id": "evt_test_65RDdZb4yKo7XkE2xtp16RKMSGG1dGu8vE1AtVqMY0E7tS1cO",
        "object": "v2.core.event", "context": null, "created": "2026-03-01T12:00:00.123Z",
        "livemode": false, "reason": null,
        "related_object": {"id": "acct_1", "type": "v2.core.account", "url": "/v2/core/accounts/acct_1"},
        "type": "v2.core.account.created",
    }))?);
    let secret = "whsec_bench0000000000000000000000000000";
    let url = ctx.receiver.url(0);
    ctx.receiver.reset(false, false);
    let bench0 = bench_cpu();
    let started = Instant::now();
    let window = Duration::from_secs_f64(secs);
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..ctx.concurrency {
        let (failed, sender, body, url) =
            (failed.clone(), sender.clone(), body.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < window {
                let t = chrono::Utc::now().timestamp();
                let sig = signature::header(&[secret], t, &body);
                if !sender.post(&url, &sig, body.clone()).await.succeeded() {
                    failed.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let received = ctx.receiver.count();
    Ok(Row {
        name: "ceiling (no eventd)".into(),
        deliveries: received,
        secs: elapsed,
        rate: received as f64 / elapsed,
        unit: "req/s",
        bench_cpu_s: diff(bench0, bench_cpu()),
        note: format!(
            "{} B body, {} clients, {} failed",
            body.len(),
            ctx.concurrency,
            failed.load(Relaxed)
        ),
        ..Row::default()
    })
}

/// Run 2: Events acknowledged per second at `concurrency`, one destination routed (each event commits
/// with its pending delivery) and the delivery worker off (`--role api`), so only the API and the
/// durable commit are measured.
pub async fn ingest(ctx: &Ctx, n: u64) -> anyhow::Result<Row> {
    let role = if ctx.launcher.spawns() { "api" } else { "all" };
    let mut e = ctx.launcher.start(&ctx.http, "ingest", role).await?;
    e.create_destination(&ctx.http, &ctx.receiver.url(0))
        .await?;
    ctx.receiver.reset(false, false);
    let (cpu0, bench0, db0) = (e.cpu_secs(), bench_cpu(), db_cpu0(ctx));
    let (acked, failed, elapsed) = publish_many(ctx, &e, n).await?;
    let mut row = Row {
        name: "ingest".into(),
        events: acked,
        secs: elapsed.as_secs_f64(),
        rate: acked as f64 / elapsed.as_secs_f64(),
        unit: "ev/s",
        bench_cpu_s: diff(bench0, bench_cpu()),
        note: format!(
            "role {role}, 1 destination, {} clients, {failed} failed",
            ctx.concurrency
        ),
        db_cpu_s: db0,
        ..Row::default()
    };
    finish(ctx, e, cpu0, &mut row).await;
    Ok(row)
}

/// Run 3: Deliveries received per second, first publish to last delivery, `fanout` destinations.
pub async fn end_to_end(ctx: &Ctx, n: u64, fanout: usize) -> anyhow::Result<Row> {
    let mut e = ctx
        .launcher
        .start(&ctx.http, &format!("e2e-{fanout}"), "all")
        .await?;
    for i in 0..fanout {
        e.create_destination(&ctx.http, &ctx.receiver.url(i))
            .await?;
    }
    ctx.receiver.reset(false, false);
    let (cpu0, bench0, db0) = (e.cpu_secs(), bench_cpu(), db_cpu0(ctx));
    let started = Instant::now();
    let (acked, failed, pub_elapsed) = publish_many(ctx, &e, n).await?;
    let expected = acked * fanout as u64;
    if let Err(err) = ctx.receiver.wait_for(expected, ctx.stall).await {
        bail!("{err}; eventd log:\n{}", e.log_tail());
    }
    let last = ctx.receiver.last().unwrap_or_else(Instant::now);
    let elapsed = last.duration_since(started).as_secs_f64();
    let received = ctx.receiver.count();
    let mut row = Row {
        name: format!("end-to-end, {fanout} dest"),
        events: acked,
        deliveries: received,
        secs: elapsed,
        rate: received as f64 / elapsed,
        unit: "dlv/s",
        bench_cpu_s: diff(bench0, bench_cpu()),
        note: format!(
            "publish phase {:.0} ev/s; {failed} publish failures; {} extra deliveries",
            acked as f64 / pub_elapsed.as_secs_f64(),
            received.saturating_sub(expected)
        ),
        db_cpu_s: db0,
        ..Row::default()
    };
    finish(ctx, e, cpu0, &mut row).await;
    Ok(row)
}

/// Run 4: Publish-acknowledged → received latency at a fixed (open-loop) publish rate.
pub async fn latency(ctx: &Ctx, rate: f64, secs: f64) -> anyhow::Result<(Row, Latency)> {
    let mut e = ctx.launcher.start(&ctx.http, "latency", "all").await?;
    e.create_destination(&ctx.http, &ctx.receiver.url(0))
        .await?;
    ctx.receiver.reset(false, true);
    let total = (rate * secs).round().max(1.0) as u64;
    let period_ns = (1e9 / rate) as u64;
    let acks: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::new(Mutex::new(Vec::new()));
    const MAX_OUTSTANDING: u32 = 512;
    let sem = Arc::new(Semaphore::new(MAX_OUTSTANDING as usize));
    let (cpu0, bench0, db0) = (e.cpu_secs(), bench_cpu(), db_cpu0(ctx));
    let started = tokio::time::Instant::now();
    let failed = Arc::new(AtomicU64::new(0));
    for i in 0..total {
        tokio::time::sleep_until(started + Duration::from_nanos(i * period_ns)).await;
        let permit = sem.clone().acquire_owned().await?;
        let (http, base, key) = (ctx.http.clone(), e.base.clone(), e.key.clone());
        let (acks, failed) = (acks.clone(), failed.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            match publish_one(&http, &base, &key).await {
                Some(id) => {
                    let acked = Instant::now();
                    acks.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((id, acked, acked - sent));
                }
                None => {
                    failed.fetch_add(1, Relaxed);
                }
            }
            drop(permit);
        });
    }
    let _all = sem.acquire_many(MAX_OUTSTANDING).await?;
    let pub_secs = started.elapsed().as_secs_f64();
    let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|e| e.into_inner()));
    if let Err(err) = ctx.receiver.wait_for(acks.len() as u64, ctx.stall).await {
        bail!("{err}; eventd log:\n{}", e.log_tail());
    }
    let times = ctx.receiver.take_times();
    let mut lat_us: Vec<u64> = Vec::with_capacity(acks.len());
    let mut ack_us: Vec<u64> = Vec::with_capacity(acks.len());
    let (mut missing, mut before_ack) = (0u64, 0u64);
    for (id, acked, ack_latency) in &acks {
        ack_us.push(ack_latency.as_micros() as u64);
        match times.get(id) {
            Some(received) => {
                if received < acked {
                    before_ack += 1;
                }
                lat_us.push(received.saturating_duration_since(*acked).as_micros() as u64);
            }
            None => missing += 1,
        }
    }
    let l = Latency {
        p50_ms: pct(&mut lat_us, 0.50),
        p99_ms: pct(&mut lat_us, 0.99),
        max_ms: pct(&mut lat_us, 1.0),
        ack_p99_ms: pct(&mut ack_us, 0.99),
    };
    let mut row = Row {
        name: format!("latency @{rate:.0}/s"),
        events: acks.len() as u64,
        deliveries: ctx.receiver.count(),
        secs: pub_secs,
        rate: acks.len() as f64 / pub_secs,
        unit: "ev/s",
        bench_cpu_s: diff(bench0, bench_cpu()),
        note: format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; publish ack p50 {:.2} ms p99 {:.2} ms; \
             {before_ack} received before the ack was read (counted as 0), {missing} missing, {} failed",
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            pct(&mut ack_us, 0.50),
            l.ack_p99_ms,
            failed.load(Relaxed)
        ),
        db_cpu_s: db0,
        ..Row::default()
    };
    finish(ctx, e, cpu0, &mut row).await;
    Ok((row, l))
}

/// Percentile `q` of microsecond samples, in milliseconds (nearest rank).
fn pct(v: &mut [u64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1] as f64 / 1000.0
}

/// Run 5: Backlog: `m` events published to one destination while no worker runs (`--role api`; the
/// receiver also answers 503 meanwhile), then eventd restarted with `--role all` on the same data
/// directory: drain rate, peak RSS and CPU of the draining process.
pub async fn backlog(ctx: &Ctx, m: u64) -> anyhow::Result<(Row, Row)> {
    let mut e = ctx.launcher.start(&ctx.http, "backlog", "api").await?;
    e.create_destination(&ctx.http, &ctx.receiver.url(0))
        .await?;
    ctx.receiver.reset(true, false);
    let (cpu0, bench0, db0) = (e.cpu_secs(), bench_cpu(), db_cpu0(ctx));
    let (acked, failed, elapsed) = publish_many(ctx, &e, m).await?;
    let mut load = Row {
        name: "backlog load (api)".into(),
        events: acked,
        secs: elapsed.as_secs_f64(),
        rate: acked as f64 / elapsed.as_secs_f64(),
        unit: "ev/s",
        bench_cpu_s: diff(bench0, bench_cpu()),
        note: format!(
            "worker off; {failed} failed; receiver saw {} attempts while down",
            ctx.receiver.rejected()
        ),
        db_cpu_s: db0,
        ..Row::default()
    };
    finish(ctx, e, cpu0, &mut load).await;

    ctx.receiver.reset(false, false);
    let bench0 = bench_cpu();
    let db0 = db_cpu0(ctx);
    let started = Instant::now();
    let e = ctx.launcher.start(&ctx.http, "backlog", "all").await?;
    if let Err(err) = ctx.receiver.wait_for(acked, ctx.stall).await {
        bail!("{err}; eventd log:\n{}", e.log_tail());
    }
    let last = ctx.receiver.last().unwrap_or_else(Instant::now);
    let secs = last.duration_since(started).as_secs_f64();
    let received = ctx.receiver.count();
    let mut drain = Row {
        name: "backlog drain".into(),
        events: acked,
        deliveries: received,
        secs,
        rate: received as f64 / secs,
        unit: "dlv/s",
        bench_cpu_s: diff(bench0, bench_cpu()),
        note: format!(
            "restart with --role all to last delivery (startup included); {} bad bodies",
            ctx.receiver.bad_bodies()
        ),
        db_cpu_s: db0,
        ..Row::default()
    };
    // The whole process's CPU (it started with the drain).
    finish(ctx, e, Some(0.0), &mut drain).await;
    Ok((load, drain))
}
