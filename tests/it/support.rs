//! `TestApp`: a real eventd on a loopback port with a temporary data directory (or, with
//! `EVENTD_TEST_DATABASE_URL`, a PostgreSQL schema of its own) and a manual clock,
//! plus small request helpers that return `(status, headers, JSON)` and shared assertions.

use std::sync::Arc;

use eventd::app::Application;
use eventd::clock::{ManualClock, SharedClock};
use eventd::config::{BootstrapKeys, Config};
use eventd::store::Store;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use super::pg::TestDatabase;

pub const TEST_KEY: &str = "sk_test_integration0000";
pub const LIVE_KEY: &str = "sk_live_integration0000";
pub const DEFAULT_VERSION: &str = "2026-10-28.endive";
/// 2026-03-01T12:00:00.123Z: a start time with a non-zero millisecond part.
pub const T0_MS: i64 = 1_772_366_400_123;
pub const T0: &str = "2026-03-01T12:00:00.123Z";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub account_id: String,
    store: Store,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The PostgreSQL schema (when `EVENTD_TEST_DATABASE_URL` is set), dropped last.
    db: Option<TestDatabase>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.bootstrap_keys = Some(BootstrapKeys {
            test: TEST_KEY.to_owned(),
            live: LIVE_KEY.to_owned(),
        });
        let db = TestDatabase::from_env().await;
        config.store.database = db.as_ref().map(TestDatabase::url);
        configure(&mut config);
        let clock = ManualClock::new(T0_MS);
        let shared: SharedClock = clock.clone();
        let app = Application::build(config, shared)
            .await
            .expect("app builds");
        let account_id = app
            .bootstrapped()
            .map(|a| a.account_id.clone())
            .expect("fresh database bootstraps an account");
        let store = app.store().clone();
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        TestApp {
            base,
            client: reqwest::Client::new(),
            account_id,
            store,
            clock,
            _dir: dir,
            shutdown: Some(tx),
            db,
        }
    }

    /// The PostgreSQL schema this app runs on, if any.
    pub fn database(&self) -> Option<&TestDatabase> {
        self.db.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Moves the server's clock forward.
    pub fn advance_ms(&self, ms: i64) {
        self.clock.advance_ms(ms);
    }

    /// A connected account of `parent`, with its own keys.
    pub async fn connected_account(&self, parent: &str) -> eventd::store::CreatedAccount {
        self.store
            .create_account(Some(parent.to_owned()))
            .await
            .expect("create connected account")
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

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Call::delete(path)).await
    }

    /// Creates a destination with the test key and returns it (asserting 200).
    pub async fn create_destination(&self, body: Value) -> Value {
        self.create_destination_with(Call::post(DESTINATIONS, body))
            .await
    }

    pub async fn create_destination_with(&self, call: Call) -> Value {
        let r = self.send(call).await;
        assert_eq!(r.status, 200, "create destination: {}", r.body);
        r.body
    }

    /// Publishes an event with the test key and returns it (asserting 200).
    pub async fn publish(&self, body: Value) -> Value {
        self.publish_with(Call::post(EVENTS, body)).await
    }

    pub async fn publish_with(&self, call: Call) -> Value {
        let r = self.send(call).await;
        assert_eq!(r.status, 200, "publish: {}", r.body);
        r.body
    }

    /// Every object of a list, following `next_page_url` from `path`.
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

    /// Everything the API shows for the bootstrap account in both modes (destinations with their
    /// URLs, thin events): compared before and after a refused request to prove nothing was stored.
    pub async fn visible_state(&self) -> Value {
        let mut state = Vec::new();
        for key in [TEST_KEY, LIVE_KEY] {
            state.push(json!({
                "destinations": self.list_all(&format!("{DESTINATIONS}?limit=100&include[0]=webhook_endpoint.url"), key).await,
                "events": self.list_all(&format!("{EVENTS}?limit=100"), key).await,
            }));
        }
        Value::Array(state)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub const DESTINATIONS: &str = "/v2/core/event_destinations";
pub const EVENTS: &str = "/v2/core/events";

/// One request: the test key by default, JSON bodies serialised as given.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Call {
    pub fn new(method: Method, path: &str) -> Call {
        Call {
            method,
            path: path.to_owned(),
            key: Some(TEST_KEY.to_owned()),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(path: &str) -> Call {
        Call::new(Method::GET, path)
    }

    pub fn post(path: &str, body: Value) -> Call {
        Call::new(Method::POST, path)
            .header("content-type", "application/json")
            .raw_body(body.to_string().into_bytes())
    }

    pub fn delete(path: &str) -> Call {
        Call::new(Method::DELETE, path)
    }

    pub fn key(mut self, key: &str) -> Call {
        self.key = Some(key.to_owned());
        self
    }

    pub fn no_key(mut self) -> Call {
        self.key = None;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn idem(self, key: &str) -> Call {
        self.header("idempotency-key", key)
    }

    pub fn context(self, account: &str) -> Call {
        self.header("stripe-context", account)
    }

    pub fn raw_body(mut self, body: Vec<u8>) -> Call {
        self.body = Some(body);
        self
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a v2 error envelope with this status, type and code, and a `Request-Id`.
    pub fn assert_error(&self, status: u16, kind: &str, code: &str) {
        assert_eq!(self.status, status, "status; body {}", self.body);
        assert_eq!(self.body["error"]["type"], kind, "type; body {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "code; body {}", self.body);
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "message; body {}",
            self.body
        );
        assert_request_id(self);
    }

    /// Asserts a 400 `invalid_fields` whose message names every one of `paths`.
    pub fn assert_invalid(&self, paths: &[&str]) {
        self.assert_error(400, "invalid_request_error", "invalid_fields");
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("Some fields in the request were invalid: "),
            "message format: {message}"
        );
        for path in paths {
            assert!(
                message.contains(&format!("'{path}: ")),
                "message should name '{path}': {message}"
            );
        }
    }

    pub fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, 200, "body {}", self.body);
        assert_request_id(self);
        &self.body
    }
}

pub fn assert_request_id(r: &Resp) {
    let id = r.header("request-id").unwrap_or_default();
    assert!(
        id.starts_with("req_") && id.len() > 4,
        "Request-Id header: {id:?}"
    );
}

/// A webhook destination body (thin, test URL) for the given enabled events.
pub fn webhook(name: &str, events: &[&str]) -> Value {
    let payload = if events
        .iter()
        .all(|e| *e == "*" || e.starts_with("v1.") || e.starts_with("v2."))
    {
        "thin"
    } else {
        "snapshot"
    };
    json!({
        "name": name,
        "type": "webhook_endpoint",
        "event_payload": payload,
        "enabled_events": events,
        "webhook_endpoint": {"url": hook_url(name)},
    })
}

/// A URL that nothing listens on (deliveries, if any, fail locally).
pub fn hook_url(name: &str) -> String {
    format!("https://127.0.0.1:9/{}", name.replace(' ', "-"))
}

/// Sets `body[key] = value` and returns the body.
pub fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

/// A snapshot (classic) event body.
pub fn customer_created(id: &str) -> Value {
    json!({"type": "customer.created", "data": {"object": {"id": id, "object": "customer"}}})
}

/// True when `s` is `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn is_rfc3339_ms_z(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// The sorted keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

pub fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}
