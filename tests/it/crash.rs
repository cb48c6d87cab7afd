//! Crash safety of the real binary: concurrent clients publish events while `eventd serve` is
//! killed with SIGKILL (`kill -9`) several times and restarted on the same data directory. Every
//! event the API acknowledged (a 200 whose body was fully received) must reach the webhook
//! receiver at least once, correctly signed. Duplicates are allowed (at least once) and reported.
//!
//! Everything runs on loopback: the receiver is an in-test axum server that outlives the restarts.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};

use super::pg::TestDatabase;
use super::process::{client, lock, log_tail, signature_ok, Eventd, NodeConfig};

const KEY: &str = "sk_test_crash0000000";
const LIVE_KEY: &str = "sk_live_crash0000000";
/// Concurrent publishing clients.
const PUBLISHERS: usize = 8;
/// How many times eventd is killed with SIGKILL and restarted.
const RESTARTS: usize = 4;
/// How long, after publishing stops, every acknowledged event has to arrive. A delivery leased by
/// a killed process is retried only when its lease expires (attempt 2 s + connect 1 s + 5 s).
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The webhook receiver

#[derive(Default)]
struct Receiver {
    /// The destination's `whsec_…` secret, known once the destination exists.
    secret: Mutex<Option<String>>,
    /// Event id → how many times it was received (and answered 200).
    counts: Mutex<HashMap<String, u32>>,
    requests: AtomicU64,
    /// Requests being handled right now (sampled at each kill).
    active: AtomicI64,
    bad_signatures: AtomicU64,
    bad_bodies: AtomicU64,
    first_problem: Mutex<Option<String>>,
}

impl Receiver {
    fn problem(&self, what: String) {
        let mut first = lock(&self.first_problem);
        if first.is_none() {
            *first = Some(what);
        }
    }

    fn counts(&self) -> HashMap<String, u32> {
        lock(&self.counts).clone()
    }
}

struct Active<'a>(&'a AtomicI64);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.requests.fetch_add(1, SeqCst);
    r.active.fetch_add(1, SeqCst);
    let _active = Active(&r.active);
    // A short pause widens the window in which a kill lands while an attempt is in flight.
    let pause = rand::thread_rng().gen_range(0..15);
    tokio::time::sleep(Duration::from_millis(pause)).await;

    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let secret = lock(&r.secret).clone();
    if !secret
        .as_deref()
        .is_some_and(|s| signature_ok(s, &header, &body))
    {
        r.bad_signatures.fetch_add(1, SeqCst);
        r.problem(format!(
            "bad Stripe-Signature {header:?} for body {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let id = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
        .filter(|id| id.starts_with("evt_"));
    match id {
        Some(id) => *lock(&r.counts).entry(id).or_default() += 1,
        None => {
            r.bad_bodies.fetch_add(1, SeqCst);
            r.problem(format!(
                "body without an event id: {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    StatusCode::OK
}

// ---------------------------------------------------------------------------------------------
// The publishers

#[derive(Default)]
struct Publishing {
    base: RwLock<String>,
    stop: AtomicBool,
    next_n: AtomicU64,
    /// Ids of events whose 200 response was fully received.
    acknowledged: Mutex<Vec<String>>,
    /// Connection errors, timeouts, bodies cut off: not acknowledged.
    transport_errors: AtomicU64,
    /// Answers other than 200 (not acknowledged), with the first few for the report.
    refusals: AtomicU64,
    refusal_samples: Mutex<Vec<String>>,
}

impl Publishing {
    fn acknowledged_count(&self) -> usize {
        lock(&self.acknowledged).len()
    }
}

async fn publisher(p: Arc<Publishing>) {
    let client = client();
    while !p.stop.load(SeqCst) {
        let n = p.next_n.fetch_add(1, SeqCst);
        let base = read(&p.base).clone();
        let sent = client
            .post(format!("{base}/v2/core/events"))
            .bearer_auth(KEY)
            .json(&json!({"type": "v2.core.account.created", "data": {"n": n}}))
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(_) => {
                p.transport_errors.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let status = response.status().as_u16();
        let Ok(bytes) = response.bytes().await else {
            p.transport_errors.fetch_add(1, SeqCst);
            continue;
        };
        let id = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        match (status, id) {
            (200, Some(id)) if id.starts_with("evt_") => lock(&p.acknowledged).push(id),
            _ => {
                p.refusals.fetch_add(1, SeqCst);
                {
                    let mut samples = lock(&p.refusal_samples);
                    if samples.len() < 5 {
                        samples.push(format!("{status} {}", String::from_utf8_lossy(&bytes)));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_event_is_delivered_across_kill_9_restarts() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir: PathBuf = dir.path().join("data");
    let log: PathBuf = dir.path().join("eventd.log");
    let http = client();
    // PostgreSQL (a schema of its own) when EVENTD_TEST_DATABASE_URL is set, else SQLite.
    let db = TestDatabase::from_env().await;
    let database = db.as_ref().map(TestDatabase::url);

    // The receiver, up for the whole test.
    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let receiver_port = listener.local_addr().expect("receiver addr").port();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let node = NodeConfig {
        data_dir,
        database,
        log: log.clone(),
        keys: (KEY.to_owned(), LIVE_KEY.to_owned()),
        env: Vec::new(),
    };
    let mut eventd = Eventd::start(&node, &http).await;

    // The destination: every event, thin, to the receiver.
    let created = http
        .post(format!("{}/v2/core/event_destinations", eventd.base))
        .bearer_auth(KEY)
        .json(&json!({
            "name": "crash",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": ["*"],
            "webhook_endpoint": {"url": format!("http://127.0.0.1:{receiver_port}/hook")},
            "include": ["webhook_endpoint.signing_secret"],
        }))
        .send()
        .await
        .expect("create destination");
    assert_eq!(created.status(), 200, "create destination");
    let destination: Value = created.json().await.expect("destination JSON");
    let secret = destination["webhook_endpoint"]["signing_secret"]
        .as_str()
        .filter(|s| s.starts_with("whsec_"))
        .unwrap_or_else(|| panic!("signing secret in {destination}"))
        .to_owned();
    *lock(&receiver.secret) = Some(secret);

    // Publish continuously from several clients.
    let publishing = Arc::new(Publishing::default());
    *publishing.base.write().unwrap() = eventd.base.clone();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| tokio::spawn(publisher(publishing.clone())))
        .collect();

    // Kill -9 and restart, several times, while they publish.
    let mut acked_at_kill = Vec::new();
    let mut in_flight_at_kill = Vec::new();
    for _ in 0..RESTARTS {
        let run_for = rand::thread_rng().gen_range(1000..2000);
        tokio::time::sleep(Duration::from_millis(run_for)).await;
        assert!(
            eventd.still_running(),
            "eventd exited by itself; log:\n{}",
            log_tail(&log)
        );
        in_flight_at_kill.push(receiver.active.load(SeqCst));
        eventd.kill9();
        acked_at_kill.push(publishing.acknowledged_count());
        let down_for = rand::thread_rng().gen_range(0..300);
        tokio::time::sleep(Duration::from_millis(down_for)).await;
        eventd = Eventd::start(&node, &http).await;
        *publishing.base.write().unwrap() = eventd.base.clone();
    }
    // The last incarnation takes load too, then publishing stops.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    publishing.stop.store(true, SeqCst);
    for p in publishers {
        p.await.expect("publisher task");
    }
    let acknowledged: Vec<String> = lock(&publishing.acknowledged).clone();
    let publishing_done = started.elapsed();

    // Every incarnation acknowledged something (the restarts really served publishers).
    let mut per_run = Vec::new();
    let mut before = 0;
    for &at in acked_at_kill.iter().chain([acknowledged.len()].iter()) {
        per_run.push(at - before);
        before = at;
    }
    assert!(
        per_run.iter().all(|&n| n > 0),
        "some incarnation acknowledged no event: {per_run:?}; refusals {:?}; log:\n{}",
        lock(&publishing.refusal_samples),
        log_tail(&log)
    );

    // Wait (bounded) until every acknowledged event arrived at least once.
    let deadline = Instant::now() + DELIVERY_LIMIT;
    let missing: Vec<String> = loop {
        let counts = receiver.counts();
        let missing: Vec<String> = acknowledged
            .iter()
            .filter(|id| !counts.contains_key(*id))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delivery_wait = started.elapsed() - publishing_done;

    let counts = receiver.counts();
    let acked_unique = {
        let mut ids = acknowledged.clone();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let received_unique = counts.len();
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    let answered: u64 =
        counts.values().map(|c| u64::from(*c)).sum::<u64>() + receiver.bad_bodies.load(SeqCst);
    let cut_off = receiver.requests.load(SeqCst).saturating_sub(answered);
    let duplicated_events = counts.values().filter(|c| **c > 1).count();
    let acked_set: HashSet<&String> = acknowledged.iter().collect();
    let received_unacknowledged = counts.keys().filter(|id| !acked_set.contains(id)).count();
    let report = format!(
        "crash report ({}): acknowledged {} (unique {acked_unique}, per incarnation {per_run:?}), \
         received unique {received_unique} (of which {received_unacknowledged} never acknowledged), \
         requests {} ({cut_off} cut off by a kill before answering), duplicates {duplicates} over {duplicated_events} events, missing {}, \
         restarts {RESTARTS} (kill -9), receiver requests in flight at kills {in_flight_at_kill:?}, \
         publish transport errors {}, non-200 {}, bad signatures {}, bad bodies {}, \
         publishing {:.1}s + delivery wait {:.1}s = {:.1}s",
        if db.is_some() { "postgres" } else { "sqlite" },
        acknowledged.len(),
        receiver.requests.load(SeqCst),
        missing.len(),
        publishing.transport_errors.load(SeqCst),
        publishing.refusals.load(SeqCst),
        receiver.bad_signatures.load(SeqCst),
        receiver.bad_bodies.load(SeqCst),
        publishing_done.as_secs_f64(),
        delivery_wait.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    println!("{report}");

    if !missing.is_empty() {
        // What the server knows about a few of them, for the failure message.
        let mut diagnosis = Vec::new();
        for id in missing.iter().take(5) {
            for path in [
                format!("/v2/core/events/{id}"),
                format!("/v2/core/events/{id}/delivery_attempts"),
            ] {
                let answer = match http
                    .get(format!("{}{path}", eventd.base))
                    .bearer_auth(KEY)
                    .send()
                    .await
                {
                    Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                    Err(e) => format!("error {e}"),
                };
                diagnosis.push(format!("GET {path} → {answer}"));
            }
        }
        panic!(
            "{} acknowledged events were never delivered within {DELIVERY_LIMIT:?} (first: {:?})\n{}\n\
             eventd log:\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            diagnosis.join("\n"),
            log_tail(&log)
        );
    }
    assert_eq!(
        receiver.bad_signatures.load(SeqCst),
        0,
        "every delivery is signed with the destination's secret: {:?}",
        lock(&receiver.first_problem)
    );
    assert_eq!(
        receiver.bad_bodies.load(SeqCst),
        0,
        "every delivery names its event: {:?}",
        lock(&receiver.first_problem)
    );
    assert!(
        eventd.still_running(),
        "eventd exited by itself; log:\n{}",
        log_tail(&log)
    );

    drop(eventd);
    server.abort();
}
