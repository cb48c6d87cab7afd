//! What counts as delivered: any 2xx. Everything else is a failed attempt with a recorded reason:
//! other statuses, 3xx (a redirect is never followed), a refused or reset connection, a TLS
//! failure, a name that does not resolve.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::delivery_support::*;
use super::receiver::{statuses, Reply, TestReceiver};

/// Publishes one event to a new destination at `url` (no retries) and returns its one attempt.
async fn one_attempt(app: &DeliveryApp, url: &str) -> Value {
    let d = app.webhook(Payload::Thin, &[THIN_TYPE], url).await;
    let e = app.emit_thin(json!({"to": url})).await;
    let log = app
        .wait_attempts(Of::Event, e["id"].as_str().unwrap(), 1)
        .await;
    assert_eq!(log.len(), 1, "{url}: one attempt: {log:#?}");
    app.delete_destination(&d.id).await;
    log[0].clone()
}

fn assert_failed(a: &Value, reason: &str, what: &str) {
    assert_eq!(a["outcome"], "failed", "{what}: {a:#}");
    let error = a["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(reason),
        "{what}: reason {reason:?} expected: {a:#}"
    );
    assert!(
        a["next_attempt"].is_null(),
        "{what}: no retry configured: {a:#}"
    );
}

/// A failed attempt with a reason and no HTTP status (no answer was read).
fn assert_failed_without_answer(a: &Value, what: &str) {
    assert_eq!(a["outcome"], "failed", "{what}: {a:#}");
    assert!(
        a["error"].is_string() && a["http_status"].is_null(),
        "{what}: {a:#}"
    );
}

#[tokio::test]
async fn any_2xx_succeeds_and_every_other_status_fails() {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[])).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    for status in [200, 201, 202, 204, 299] {
        r.set_replies(statuses(&[status]));
        let a = one_attempt(&app, &r.url(&format!("/s{status}"))).await;
        assert_eq!(a["outcome"], "succeeded", "{status}: {a:#}");
        assert_eq!(a["http_status"], status);
        r.expect(PROMPT, "the delivery").await;
    }
    for status in [304, 400, 401, 404, 410, 429, 500, 502, 503] {
        r.set_replies(statuses(&[status]));
        let a = one_attempt(&app, &r.url(&format!("/f{status}"))).await;
        assert_failed(&a, "http_status", &status.to_string());
        assert_eq!(a["http_status"], status);
        r.expect(PROMPT, "the delivery").await;
    }
}

#[tokio::test]
async fn redirects_are_failures_and_never_followed() {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[])).await;
    let mut elsewhere = TestReceiver::start(statuses(&[200])).await;
    for status in [301, 302, 303, 307, 308] {
        let mut r = TestReceiver::start(vec![
            Reply::status(status).header("location", &elsewhere.url("/moved"))
        ])
        .await;
        let a = one_attempt(&app, &r.url("/hook")).await;
        assert_failed(&a, "http_status", &status.to_string());
        assert_eq!(a["http_status"], status);
        r.expect(PROMPT, "the attempt").await;
        elsewhere
            .expect_none(Duration::from_millis(200), "a redirect is not followed")
            .await;
    }
}

/// A TCP listener that answers every connection its own way; returns its `http://` base.
async fn raw_server(answer: fn(tokio::net::TcpStream) -> tokio::task::JoinHandle<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            answer(socket);
        }
    });
    format!("127.0.0.1:{}", addr.port())
}

#[tokio::test]
async fn connection_level_failures_are_failed_attempts_with_a_reason() {
    let app = DeliveryApp::start(|c| {
        c.delivery.retry_schedule = schedule(&[]);
        c.delivery.attempt_timeout = Duration::from_secs(3);
        c.delivery.connect_timeout = Duration::from_secs(2);
    })
    .await;
    // Refused: a port nobody listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let a = one_attempt(&app, &format!("http://127.0.0.1:{port}/hook")).await;
    assert_failed(&a, "connection_error", "refused");
    assert!(a["http_status"].is_null());

    // Reset: the request is read, then the connection is closed without an answer.
    let reset = raw_server(|mut s| {
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            // SO_LINGER 0: close with a RST, the abrupt end being tested.
            #[allow(deprecated)]
            let _ = s.set_linger(Some(Duration::ZERO));
            drop(s);
        })
    })
    .await;
    let a = one_attempt(&app, &format!("http://{reset}/hook")).await;
    assert_failed_without_answer(&a, "reset");

    // Not HTTP at all: garbage instead of a status line.
    let garbage = raw_server(|mut s| {
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"hello, this is not http\r\n\r\n").await;
        })
    })
    .await;
    let a = one_attempt(&app, &format!("http://{garbage}/hook")).await;
    assert_failed_without_answer(&a, "garbage");

    // TLS failure: an https URL whose server speaks plain HTTP.
    let r = TestReceiver::start(statuses(&[200])).await;
    let a = one_attempt(&app, &format!("https://{}/hook", r.addr)).await;
    assert_failed_without_answer(&a, "tls");

    // A name that does not resolve.
    let a = one_attempt(&app, "http://no-such-host.invalid/hook").await;
    assert_failed_without_answer(&a, "dns");
}
