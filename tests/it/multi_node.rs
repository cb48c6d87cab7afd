//! Three `eventd serve` processes share one PostgreSQL schema (runs only when
//! `EVENTD_TEST_DATABASE_URL` is set). Clients publish round robin through all three under load
//! while one node is killed with SIGKILL and restarted. Afterwards every acknowledged event must
//! have reached the receiver at least once, correctly signed, and no delivery may ever have been
//! attempted by two nodes at once (the receiver holds each request a few milliseconds and counts
//! requests for one event id that overlap). Idempotency keys and page tokens work on any node.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use rand::Rng;
use serde_json::{json, Value};

use super::pg::{self, TestDatabase};
use super::process::{client, lock, log_tail, signature_ok, Eventd, NodeConfig};

const KEY: &str = "sk_test_multinode000";
const LIVE_KEY: &str = "sk_live_multinode000";
const NODES: usize = 3;
/// Concurrent publishing clients.
const PUBLISHERS: usize = 6;
/// Load before the kill, downtime, load after the restart.
const BEFORE_KILL: Duration = Duration::from_secs(5);
const DOWN_FOR: Duration = Duration::from_secs(1);
const AFTER_RESTART: Duration = Duration::from_secs(5);
/// How long, after publishing stops, every acknowledged event has to arrive. Deliveries leased
/// by the killed node are retried when their lease expires (attempt 2 s + connect 1 s + 5 s).
const DELIVERY_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The receiver: deliveries per event id, and requests for one event id that overlap in time.

#[derive(Default)]
struct Receiver {
    secret: Mutex<Option<String>>,
    counts: Mutex<HashMap<String, u32>>,
    in_flight: Mutex<HashMap<String, u32>>,
    overlaps: AtomicU64,
    bad_signatures: AtomicU64,
    problems: Mutex<Vec<String>>,
}

impl Receiver {
    fn problem(&self, what: String) {
        let mut problems = lock(&self.problems);
        if problems.len() < 5 {
            problems.push(what);
        }
    }
}

/// Takes an event id out of `in_flight` when the request ends (also when it is dropped).
struct InFlight<'a>(&'a Receiver, String);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.0.in_flight);
        if let Some(n) = in_flight.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.1);
            }
        }
    }
}

async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let secret = lock(&r.secret).clone();
    if !secret
        .as_deref()
        .is_some_and(|s| signature_ok(s, header, &body))
    {
        r.bad_signatures.fetch_add(1, SeqCst);
        r.problem(format!("bad Stripe-Signature {header:?}"));
    }
    let Some(id) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
    else {
        r.problem(format!("no event id: {}", String::from_utf8_lossy(&body)));
        return StatusCode::BAD_REQUEST;
    };
    let _guard = {
        let mut in_flight = lock(&r.in_flight);
        let n = in_flight.entry(id.clone()).or_default();
        *n += 1;
        if *n > 1 {
            r.overlaps.fetch_add(1, SeqCst);
            r.problem(format!("{id} attempted concurrently ({n} at once)"));
        }
        InFlight(&r, id.clone())
    };
    // Hold the request so that a concurrent attempt of the same delivery would overlap.
    let hold = rand::thread_rng().gen_range(5..15);
    tokio::time::sleep(Duration::from_millis(hold)).await;
    *lock(&r.counts).entry(id).or_default() += 1;
    StatusCode::OK
}

// ---------------------------------------------------------------------------------------------
// The publishers: round robin over the nodes' current addresses.

struct Publishing {
    bases: RwLock<Vec<String>>,
    stop: AtomicBool,
    turn: AtomicUsize,
    /// Acknowledged event ids, per node.
    acknowledged: Mutex<Vec<Vec<String>>>,
    transport_errors: AtomicU64,
    refusals: Mutex<Vec<String>>,
}

async fn publisher(p: Arc<Publishing>) {
    let http = client();
    while !p.stop.load(SeqCst) {
        let node = p.turn.fetch_add(1, SeqCst) % NODES;
        let base = p.bases.read().unwrap_or_else(|e| e.into_inner())[node].clone();
        let sent = http
            .post(format!("{base}/v2/core/events"))
            .bearer_auth(KEY)
            .json(&json!({"type": "v2.core.account.created", "data": {"node": node}}))
            .send()
            .await;
        let answer = match sent {
            Ok(r) => (r.status().as_u16(), r.bytes().await),
            Err(_) => {
                p.transport_errors.fetch_add(1, SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let (status, Ok(bytes)) = answer else {
            p.transport_errors.fetch_add(1, SeqCst);
            continue;
        };
        let id = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned));
        match (status, id) {
            (200, Some(id)) => lock(&p.acknowledged)[node].push(id),
            _ => {
                let refusal = format!("{status} {}", String::from_utf8_lossy(&bytes));
                lock(&p.refusals).push(refusal);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Requests

async fn send(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Option<&Value>,
    idem: Option<&str>,
) -> (u16, Value) {
    let url = format!("{base}{path}");
    let mut req = match body {
        Some(b) => http.post(url).json(b),
        None => http.get(url),
    }
    .bearer_auth(KEY);
    if let Some(key) = idem {
        req = req.header("Idempotency-Key", key);
    }
    let r = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An Idempotency-Key used on one node replays the same object on the others.
/// Sets the receiver's signing secret once the destination exists; returns the published event.
async fn check_idempotency_across_nodes(
    http: &reqwest::Client,
    bases: &[String],
    url: &str,
    receiver: &Receiver,
) -> Value {
    let body = json!({
        "name": "multi-node", "type": "webhook_endpoint", "event_payload": "thin",
        "enabled_events": ["*"], "webhook_endpoint": {"url": url},
        "include": ["webhook_endpoint.signing_secret"],
    });
    let path = "/v2/core/event_destinations";
    let (status, first) = send(http, &bases[0], path, Some(&body), Some("mn-destination")).await;
    assert_eq!(status, 200, "{first}");
    for base in &bases[1..] {
        let (status, replay) = send(http, base, path, Some(&body), Some("mn-destination")).await;
        assert_eq!((status, &replay), (200, &first), "replay on {base}");
    }
    let other = json!({"name": "other", "type": "webhook_endpoint", "event_payload": "thin",
        "enabled_events": ["*"], "webhook_endpoint": {"url": url}});
    let (status, conflict) =
        send(http, &bases[2], path, Some(&other), Some("mn-destination")).await;
    assert_eq!(
        status, 409,
        "same key, other body on another node: {conflict}"
    );

    // The signing secret, shown only at creation, before any event exists.
    let secret = first["webhook_endpoint"]["signing_secret"].as_str();
    assert!(secret.is_some_and(|s| s.starts_with("whsec_")), "{first}");
    *lock(&receiver.secret) = secret.map(str::to_owned);

    let event = json!({"type": "v2.core.account.created", "data": {"idempotent": true}});
    let (status, published) = send(
        http,
        &bases[1],
        "/v2/core/events",
        Some(&event),
        Some("mn-event"),
    )
    .await;
    assert_eq!(status, 200, "{published}");
    let (status, replay) = send(
        http,
        &bases[2],
        "/v2/core/events",
        Some(&event),
        Some("mn-event"),
    )
    .await;
    assert_eq!(
        (status, &replay),
        (200, &published),
        "event replay on another node"
    );
    published
}

/// Walks the whole event list, each page from the next node; checks a previous page on the way.
async fn list_events_across_nodes(http: &reqwest::Client, bases: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    let mut path = "/v2/core/events?limit=100".to_owned();
    let mut pages: Vec<Vec<String>> = Vec::new();
    for i in 0.. {
        let (status, page) = send(http, &bases[i % NODES], &path, None, None).await;
        assert_eq!(status, 200, "{path}: {page}");
        let page_ids: Vec<String> = page["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect();
        if i == 1 {
            // The previous page of page 2, from a third node, is page 1.
            let previous = page["previous_page_url"]
                .as_str()
                .expect("previous_page_url");
            let (status, back) = send(http, &bases[(i + 1) % NODES], previous, None, None).await;
            assert_eq!(status, 200, "{back}");
            let back_ids: Vec<&str> = back["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|e| e["id"].as_str().unwrap_or(""))
                .collect();
            assert_eq!(back_ids, pages[0], "previous_page_url from another node");
        }
        ids.extend(page_ids.iter().cloned());
        pages.push(page_ids);
        match page["next_page_url"].as_str() {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    ids
}

// ---------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_one_database_under_load_and_a_kill_9() {
    let Some(base_url) = pg::base_url() else {
        println!(
            "multi_node: SKIPPED — {} is not set; three eventd nodes need one shared PostgreSQL",
            pg::ENV
        );
        return;
    };
    let started = Instant::now();
    let db = TestDatabase::create(&base_url).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let http = client();

    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let hook_url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().expect("addr").port()
    );
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(receiver.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let configs: Vec<NodeConfig> = (0..NODES)
        .map(|i| NodeConfig {
            data_dir: dir.path().join(format!("data{i}")),
            database: Some(db.url()),
            log: dir.path().join(format!("eventd{i}.log")),
            keys: (KEY.to_owned(), LIVE_KEY.to_owned()),
            // Three nodes (plus the other suites) stay well under max_connections.
            env: vec![("EVENTD_DATABASE_POOL_SIZE".to_owned(), "6".to_owned())],
        })
        .collect();
    // All three start at once: migrations and the bootstrap account serialise in the database.
    let mut nodes: Vec<Eventd> =
        futures_util::future::join_all(configs.iter().map(|c| Eventd::start(c, &http))).await;
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();

    let idempotent_event =
        check_idempotency_across_nodes(&http, &bases, &hook_url, &receiver).await;

    let publishing = Arc::new(Publishing {
        bases: RwLock::new(bases.clone()),
        stop: AtomicBool::new(false),
        turn: AtomicUsize::new(0),
        acknowledged: Mutex::new(vec![Vec::new(); NODES]),
        transport_errors: AtomicU64::new(0),
        refusals: Mutex::new(Vec::new()),
    });
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|_| tokio::spawn(publisher(publishing.clone())))
        .collect();

    tokio::time::sleep(BEFORE_KILL).await;
    let victim = 1;
    nodes[victim].kill9();
    let acked_before_restart: Vec<usize> = lock(&publishing.acknowledged)
        .iter()
        .map(Vec::len)
        .collect();
    tokio::time::sleep(DOWN_FOR).await;
    nodes[victim] = Eventd::start(&configs[victim], &http).await;
    publishing.bases.write().unwrap_or_else(|e| e.into_inner())[victim] =
        nodes[victim].base.clone();
    tokio::time::sleep(AFTER_RESTART).await;
    publishing.stop.store(true, SeqCst);
    for p in publishers {
        p.await.expect("publisher task");
    }
    let publishing_done = started.elapsed();
    let per_node: Vec<Vec<String>> = lock(&publishing.acknowledged).clone();
    let mut acknowledged: Vec<String> = per_node.iter().flatten().cloned().collect();
    acknowledged.push(
        idempotent_event["id"]
            .as_str()
            .expect("event id")
            .to_owned(),
    );
    let acked_per_node: Vec<usize> = per_node.iter().map(Vec::len).collect();
    let logs = || {
        configs
            .iter()
            .enumerate()
            .map(|(i, c)| format!("--- node {i}:\n{}", log_tail(&c.log)))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        acked_per_node.iter().all(|&n| n > 0) && acked_per_node[victim] > acked_before_restart[victim],
        "every node, and the restarted one after its restart, acknowledged events: {acked_per_node:?} \
         (before restart {acked_before_restart:?}); refusals {:?}\n{}",
        lock(&publishing.refusals).iter().take(5).collect::<Vec<_>>(),
        logs()
    );

    let deadline = Instant::now() + DELIVERY_LIMIT;
    let missing: Vec<String> = loop {
        let counts = lock(&receiver.counts).clone();
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
    let listed = list_events_across_nodes(&http, &bases_now(&nodes)).await;

    let counts = lock(&receiver.counts).clone();
    let duplicates: u32 = counts.values().map(|c| c - 1).sum();
    let duplicated_events = counts.values().filter(|c| **c > 1).count();
    println!(
        "multi-node report (postgres, {NODES} nodes, node {victim} killed with SIGKILL and restarted): \
         acknowledged {} (per node {acked_per_node:?}), received unique {}, duplicates {duplicates} over \
         {duplicated_events} events, concurrent attempts {}, missing {}, publish transport errors {}, \
         non-200 {}, bad signatures {}, listed {} across nodes; publishing {:.1}s + delivery wait {:.1}s",
        acknowledged.len(),
        counts.len(),
        receiver.overlaps.load(SeqCst),
        missing.len(),
        publishing.transport_errors.load(SeqCst),
        lock(&publishing.refusals).len(),
        receiver.bad_signatures.load(SeqCst),
        listed.len(),
        publishing_done.as_secs_f64(),
        delivery_wait.as_secs_f64(),
    );

    assert!(
        missing.is_empty(),
        "{} acknowledged events never delivered within {DELIVERY_LIMIT:?} (first {:?})\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        logs()
    );
    assert_eq!(
        receiver.overlaps.load(SeqCst),
        0,
        "a delivery was attempted by two nodes at once: {:?}",
        lock(&receiver.problems)
    );
    assert_eq!(
        receiver.bad_signatures.load(SeqCst),
        0,
        "{:?}",
        lock(&receiver.problems)
    );
    let unique: HashSet<&String> = listed.iter().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "paging across nodes repeated an event"
    );
    let missing_from_list: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !unique.contains(id))
        .collect();
    assert!(
        missing_from_list.is_empty(),
        "paging across nodes skipped {missing_from_list:?}"
    );
    for (i, node) in nodes.iter_mut().enumerate() {
        assert!(
            node.still_running(),
            "node {i} exited by itself\n{}",
            logs()
        );
    }
    drop(nodes);
    server.abort();
}

fn bases_now(nodes: &[Eventd]) -> Vec<String> {
    nodes.iter().map(|n| n.base.clone()).collect()
}
