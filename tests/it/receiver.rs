//! `TestReceiver`: a webhook endpoint on loopback that records every request exactly as it
//! arrived (method, request target, all headers, raw body bytes) into a channel, and answers
//! from a script of replies (status, delay, headers, body; the last reply repeats).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::serve::ListenerExt;
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// Path and query exactly as sent on the request line.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// When the request head arrived.
    pub at: Instant,
}

impl Received {
    /// The only value of a header (panics when it is repeated, so callers never miss a duplicate).
    pub fn header(&self, name: &str) -> Option<&str> {
        assert!(
            self.header_count(name) <= 1,
            "header {name} sent {} times",
            self.header_count(name)
        );
        self.headers.get(name).map(|v| {
            v.to_str()
                .unwrap_or_else(|_| panic!("header {name} is not ASCII: {v:?}"))
        })
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers.get_all(name).iter().count()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "delivery body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn event_id(&self) -> String {
        self.json()["id"]
            .as_str()
            .expect("delivered event has an id")
            .to_owned()
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// How long to wait (after recording the request) before answering.
    pub delay: Duration,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            delay: Duration::ZERO,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

/// `[500, 500, 200]` as replies without delays.
pub fn statuses(list: &[u16]) -> Vec<Reply> {
    list.iter().map(|s| Reply::status(*s)).collect()
}

struct Script {
    replies: Vec<Reply>,
    served: usize,
}

#[derive(Clone)]
struct Shared {
    script: Arc<Mutex<Script>>,
    tx: mpsc::UnboundedSender<Received>,
    concurrency: Arc<Concurrency>,
}

/// Requests being answered now, and the most there ever were at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
}

/// Counts one request as being answered until it is dropped (also when the client goes away).
struct Answering(Arc<Concurrency>);

impl Answering {
    fn start(c: &Arc<Concurrency>) -> Answering {
        let now = c.now.fetch_add(1, Ordering::SeqCst) + 1;
        c.most.fetch_max(now, Ordering::SeqCst);
        Answering(c.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

pub struct TestReceiver {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Received>,
    script: Arc<Mutex<Script>>,
    connections: Arc<AtomicUsize>,
    concurrency: Arc<Concurrency>,
    task: tokio::task::JoinHandle<()>,
}

impl TestReceiver {
    /// A receiver on 127.0.0.1, on a free port.
    pub async fn start(replies: Vec<Reply>) -> TestReceiver {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        Self::serve(listener, replies)
    }

    /// A receiver on an already bound listener (e.g. `[::1]:0`).
    pub fn serve(listener: TcpListener, replies: Vec<Reply>) -> TestReceiver {
        assert!(!replies.is_empty(), "a receiver needs at least one reply");
        let addr = listener.local_addr().expect("receiver address");
        let (tx, rx) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(Script { replies, served: 0 }));
        let concurrency = Arc::new(Concurrency::default());
        let shared = Shared {
            script: script.clone(),
            tx,
            concurrency: concurrency.clone(),
        };
        let app = Router::new().fallback(record).with_state(shared);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let listener = listener.tap_io(move |_| {
            accepted.fetch_add(1, Ordering::Relaxed);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestReceiver {
            addr,
            rx,
            script,
            connections,
            concurrency,
            task,
        }
    }

    /// The most requests this receiver was answering at once so far.
    pub fn most_concurrent(&self) -> usize {
        self.concurrency.most.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Replaces the script; the next request gets the first of `replies`.
    pub fn set_replies(&self, replies: Vec<Reply>) {
        assert!(!replies.is_empty(), "a receiver needs at least one reply");
        let mut script = self.script.lock().unwrap();
        script.replies = replies;
        script.served = 0;
    }

    /// The next request, or `None` when none arrives within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next request; panics naming `what` when none arrives within `timeout`.
    pub async fn expect(&mut self, timeout: Duration, what: &str) -> Received {
        match self.next(timeout).await {
            Some(r) => r,
            None => panic!(
                "receiver {}: no request within {timeout:?} (expected {what})",
                self.addr
            ),
        }
    }

    /// Panics if any request arrives within `duration`.
    pub async fn expect_none(&mut self, duration: Duration, why: &str) {
        if let Some(r) = self.next(duration).await {
            panic!(
                "receiver {}: unexpected {} {} within {duration:?} ({why}); body {}",
                self.addr,
                r.method,
                r.target,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(State(shared): State<Shared>, request: Request) -> Response {
    let at = Instant::now();
    let _answering = Answering::start(&shared.concurrency);
    let (parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.to_string());
    let body = to_bytes(body, 16 * 1024 * 1024)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let reply = {
        let mut script = shared.script.lock().unwrap();
        let i = script.served.min(script.replies.len() - 1);
        script.served += 1;
        script.replies[i].clone()
    };
    let _ = shared.tx.send(Received {
        method: parts.method,
        target,
        headers: parts.headers,
        body,
        at,
    });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("valid status");
    for (k, v) in reply.headers {
        response.headers_mut().append(
            HeaderName::try_from(k).expect("header name"),
            HeaderValue::try_from(v).expect("header value"),
        );
    }
    response
}
