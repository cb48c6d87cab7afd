//! What the delivery tests share: `DeliveryApp` (a real eventd with the system clock that can be
//! stopped and started again on the same data directory, or the same PostgreSQL schema when
//! `EVENTD_TEST_DATABASE_URL` is set), destination and event helpers, the delivery-log reader,
//! and a Stripe-Signature verifier written from the reference (§4.4).

use std::time::{Duration, Instant};

use eventd::app::Application;
use eventd::config::{BootstrapKeys, Config, RetryScheduleArg};
use eventd::store::{CreatedAccount, Store};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::pg::TestDatabase;
use super::receiver::Received;
use super::support::{Call, Resp, DESTINATIONS, EVENTS, LIVE_KEY, TEST_KEY};

/// The longest any single wait in these tests may take.
pub const MAX_WAIT: Duration = Duration::from_secs(15);
/// How soon a delivery that nothing holds up must arrive.
pub const PROMPT: Duration = Duration::from_secs(3);
pub const SNAPSHOT_VERSION: &str = "2025-07-30.basil";

/// A thin and a snapshot event type used throughout.
pub const THIN_TYPE: &str = "v2.core.account.created";
pub const SNAPSHOT_TYPE: &str = "customer.created";

/// A compressed retry schedule, e.g. `schedule(&[1, 2, 3])` seconds.
pub fn schedule(secs: &[u64]) -> Option<RetryScheduleArg> {
    Some(RetryScheduleArg(
        secs.iter().map(|s| Duration::from_secs(*s)).collect(),
    ))
}

/// eventd on a loopback port 0, system clock, data in a temporary directory it owns.
pub struct DeliveryApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub config: Config,
    dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The PostgreSQL schema (when `EVENTD_TEST_DATABASE_URL` is set); survives restarts.
    db: Option<TestDatabase>,
}

impl DeliveryApp {
    pub async fn start(configure: impl FnOnce(&mut Config)) -> DeliveryApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.bootstrap_keys = Some(BootstrapKeys {
            test: TEST_KEY.to_owned(),
            live: LIVE_KEY.to_owned(),
        });
        let db = TestDatabase::from_env().await;
        config.store.database = db.as_ref().map(TestDatabase::url);
        configure(&mut config);
        Self::start_in(dir, db, config).await
    }

    /// Starts eventd on `dir` or `db` (which may hold the data of an earlier run).
    pub async fn start_in(
        dir: tempfile::TempDir,
        db: Option<TestDatabase>,
        mut config: Config,
    ) -> DeliveryApp {
        config.store.data_dir = dir.path().to_path_buf();
        let app = Application::build(config.clone(), eventd::clock::system())
            .await
            .expect("app builds");
        let store = app.store().clone();
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        DeliveryApp {
            base,
            client: reqwest::Client::new(),
            store,
            config,
            dir,
            shutdown: Some(tx),
            handle: Some(handle),
            db,
        }
    }

    /// Stops eventd (waiting until it has shut down) and starts it again on the same data.
    pub async fn restart(mut self) -> DeliveryApp {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let db = self.db.take();
        Self::start_in(dir, db, self.config.clone()).await
    }

    async fn stop(&mut self) {
        // Idle keep-alive connections of our client must not hold the graceful shutdown up.
        self.client = reqwest::Client::new();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            let result = tokio::time::timeout(MAX_WAIT, handle)
                .await
                .expect("eventd shuts down in time");
            result.expect("eventd task").expect("eventd ran cleanly");
        }
    }

    pub async fn send(&self, call: Call) -> Resp {
        let url = format!("{}{}", self.base, call.path);
        let mut rb = self.client.request(call.method.clone(), &url);
        if let Some(key) = &call.key {
            rb = rb.bearer_auth(key);
        }
        for (k, v) in &call.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some(body) = call.body {
            rb = rb.body(body);
        }
        let response = rb.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("response body");
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{} {}: body is not JSON: {:?}",
                call.method,
                call.path,
                String::from_utf8_lossy(&bytes)
            )
        });
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Call::get(path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Call::post(path, body)).await
    }

    /// Creates a webhook destination (asserting 200) and returns it with its secret.
    pub async fn webhook(&self, payload: Payload, events: &[&str], url: &str) -> Dest {
        let mut body = json!({
            "name": "delivery test",
            "type": "webhook_endpoint",
            "event_payload": payload.as_str(),
            "enabled_events": events,
            "webhook_endpoint": {"url": url},
            "include": ["webhook_endpoint.signing_secret", "webhook_endpoint.url"],
        });
        if payload == Payload::Snapshot {
            body["snapshot_api_version"] = json!(SNAPSHOT_VERSION);
        }
        let r = self.post(DESTINATIONS, body).await;
        assert_eq!(r.status, 200, "create destination for {url}: {}", r.body);
        let secret = r.body["webhook_endpoint"]["signing_secret"]
            .as_str()
            .expect("signing secret in the create response")
            .to_owned();
        Dest {
            id: r.body["id"].as_str().expect("id").to_owned(),
            secret,
            body: r.body,
        }
    }

    /// Publishes an event (asserting 200) and returns it.
    pub async fn emit(&self, body: Value) -> Value {
        let r = self.post(EVENTS, body).await;
        assert_eq!(r.status, 200, "publish: {}", r.body);
        r.body
    }

    pub async fn emit_thin(&self, data: Value) -> Value {
        self.emit(thin_event(data)).await
    }

    /// Publishes `count` thin events one after another (`data: {"n": …}`) and returns their ids.
    pub async fn emit_thin_ids(&self, count: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(count);
        for n in 0..count {
            let e = self.emit_thin(json!({ "n": n })).await;
            ids.push(e["id"].as_str().expect("event id").to_owned());
        }
        ids
    }

    pub async fn ping(&self, destination: &str) -> Value {
        let r = self
            .post(&format!("{DESTINATIONS}/{destination}/ping"), json!({}))
            .await;
        assert_eq!(r.status, 200, "ping {destination}: {}", r.body);
        r.body
    }

    /// Posts to a destination action (`disable`, `enable`) and asserts 200.
    pub async fn action(&self, destination: &str, action: &str) -> Value {
        let r = self
            .post(&format!("{DESTINATIONS}/{destination}/{action}"), json!({}))
            .await;
        assert_eq!(r.status, 200, "{action} {destination}: {}", r.body);
        r.body
    }

    /// Deletes a destination and asserts 200.
    pub async fn delete_destination(&self, destination: &str) {
        let r = self
            .send(Call::delete(&format!("{DESTINATIONS}/{destination}")))
            .await;
        assert_eq!(r.status, 200, "delete {destination}: {}", r.body);
    }

    /// Every object of a list, following `next_page_url`.
    pub async fn list_all(&self, path: &str, key: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(p) = next {
            let r = self.send(Call::get(&p).key(key)).await;
            assert_eq!(r.status, 200, "GET {p}: {}", r.body);
            out.extend(r.body["data"].as_array().expect("data").iter().cloned());
            next = r.body["next_page_url"].as_str().map(str::to_owned);
            pages += 1;
            assert!(pages < 1000, "pagination does not end");
        }
        out
    }

    /// The delivery log of an event (`Of::Event`) or a destination, oldest attempt first.
    pub async fn attempts(&self, of: Of, id: &str) -> Vec<Value> {
        let mut list = self
            .list_all(&of.path(id), TEST_KEY)
            .await
            .into_iter()
            .collect::<Vec<_>>();
        list.reverse();
        list
    }

    /// Waits (bounded) until the delivery log holds `n` attempts. The log is written after the
    /// receiver answered, so there is no channel to wait on; this polls briefly.
    pub async fn wait_attempts(&self, of: Of, id: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + MAX_WAIT;
        loop {
            let list = self.attempts(of, id).await;
            if list.len() >= n {
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {} attempts after {MAX_WAIT:?}, expected {n}: {list:#?}",
                of.path(id),
                list.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A second root account with its own keys (for "other account" checks).
    pub async fn other_account(&self) -> CreatedAccount {
        self.store
            .create_account(None)
            .await
            .expect("create account")
    }

    /// Destinations (with URLs) of the test mode: compared before and after refused requests.
    pub async fn destinations(&self) -> Vec<Value> {
        self.list_all(
            &format!("{DESTINATIONS}?limit=100&include[0]=webhook_endpoint.url"),
            TEST_KEY,
        )
        .await
    }
}

impl Drop for DeliveryApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    Thin,
    Snapshot,
}

impl Payload {
    pub fn as_str(self) -> &'static str {
        match self {
            Payload::Thin => "thin",
            Payload::Snapshot => "snapshot",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    Event,
    Destination,
}

impl Of {
    pub fn path(self, id: &str) -> String {
        match self {
            Of::Event => format!("{EVENTS}/{id}/delivery_attempts"),
            Of::Destination => format!("{DESTINATIONS}/{id}/delivery_attempts"),
        }
    }
}

/// A created webhook destination and its signing secret.
#[derive(Debug, Clone)]
pub struct Dest {
    pub id: String,
    pub secret: String,
    pub body: Value,
}

/// A thin `v2.core.account.created` event body.
pub fn thin_event(data: Value) -> Value {
    thin_event_of(THIN_TYPE, data)
}

/// A thin event body of type `ty` about `acct_1`.
pub fn thin_event_of(ty: &str, data: Value) -> Value {
    json!({
        "type": ty,
        "related_object": {"id": "acct_1", "type": "v2.core.account", "url": "/v2/core/accounts/acct_1"},
        "data": data,
    })
}

/// A snapshot `customer.created` event body.
pub fn snapshot_event(object: Value) -> Value {
    json!({"type": SNAPSHOT_TYPE, "data": {"object": object}})
}

/// Checks `Stripe-Signature` is exactly `t=<10 digits>,v1=<64 lowercase hex>` and returns
/// `(t, v1)`.
pub fn parse_signature(header: &str) -> Result<(i64, String), String> {
    let rest = header
        .strip_prefix("t=")
        .ok_or_else(|| format!("{header:?} does not start with t="))?;
    let (t, v1) = rest
        .split_once(",v1=")
        .ok_or_else(|| format!("{header:?} has no ,v1= right after t"))?;
    if t.len() != 10 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{header:?}: t is not 10 digits"));
    }
    if v1.len() != 64 || !v1.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!("{header:?}: v1 is not 64 lowercase hex digits"));
    }
    Ok((t.parse().expect("digits"), v1.to_owned()))
}

/// Verifies a delivery as the Stripe SDKs do: HMAC-SHA256 over `t + "." + raw body`, keyed with
/// the whole `whsec_…` string, compared with `v1`; the timestamp within 300 s of now.
pub fn verify(header: &str, body: &[u8], secret: &str) -> Result<(), String> {
    let (t, v1) = parse_signature(header)?;
    let now = chrono::Utc::now().timestamp();
    if (now - t).abs() > 300 {
        return Err(format!("t={t} is more than 300 s from now ({now})"));
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let expected = hex::decode(&v1).map_err(|e| e.to_string())?;
    mac.verify_slice(&expected)
        .map_err(|_| "v1 does not match the HMAC of t.body under this secret".to_owned())
}

/// Asserts the delivery is a signed POST that verifies with `secret` and no other of `others`.
pub fn assert_signed(r: &Received, secret: &str, others: &[&str]) {
    assert_eq!(r.method, "POST", "deliveries are POSTs");
    assert_eq!(
        r.header_count("stripe-signature"),
        1,
        "exactly one Stripe-Signature header"
    );
    let header = r.header("stripe-signature").expect("Stripe-Signature");
    if let Err(e) = verify(header, &r.body, secret) {
        panic!(
            "delivery does not verify with its destination's secret: {e}; body {:?}",
            String::from_utf8_lossy(&r.body)
        );
    }
    for other in others {
        assert!(
            verify(header, &r.body, other).is_err(),
            "delivery also verifies with another destination's secret"
        );
    }
}

/// `value` without the key `key` (for "same fields minus data").
pub fn without(value: &Value, key: &str) -> Value {
    let mut v = value.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove(key);
    }
    v
}

/// Milliseconds of an RFC 3339 timestamp in the delivery log.
pub fn ms(ts: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(ts.as_str().expect("timestamp string"))
        .expect("RFC 3339 timestamp")
        .timestamp_millis()
}

/// Attempts of one event in the log.
pub fn of_event<'a>(log: &'a [Value], event: &str) -> Vec<&'a Value> {
    log.iter().filter(|a| a["event"] == event).collect()
}

/// A named case to run concurrently with others.
pub type Case = (
    String,
    std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
);

pub fn case(
    name: impl Into<String>,
    f: impl std::future::Future<Output = ()> + Send + 'static,
) -> Case {
    (name.into(), Box::pin(f))
}

/// Runs independent cases at once (most of their time is spent waiting on retry schedules) and
/// re-raises the first panic after all have finished, naming every failed case.
pub async fn run_cases(cases: Vec<Case>) {
    let handles: Vec<_> = cases
        .into_iter()
        .map(|(name, case)| (name, tokio::spawn(case)))
        .collect();
    let mut failed = Vec::new();
    for (name, handle) in handles {
        if let Err(e) = handle.await {
            if e.is_panic() {
                failed.push((name, e.into_panic()));
            }
        }
    }
    let names: Vec<&str> = failed.iter().map(|f| f.0.as_str()).collect();
    if !names.is_empty() {
        eprintln!("failed cases: {names:?}");
    }
    if let Some((_, panic)) = failed.into_iter().next() {
        std::panic::resume_unwind(panic);
    }
}
