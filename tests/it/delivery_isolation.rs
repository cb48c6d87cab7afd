//! Isolation (case C07): a receiver slower than the attempt timeout holds up nobody else; its
//! attempt is cut at the timeout, recorded as failed, and retried with the same id and bytes,
//! never in a parallel burst.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::delivery_support::*;
use super::receiver::{statuses, Received, Reply, TestReceiver};

#[tokio::test]
async fn c07_a_slow_receiver_neither_delays_others_nor_gets_a_parallel_burst() {
    let timeout = Duration::from_secs(1);
    let app = DeliveryApp::start(|c| {
        c.delivery.attempt_timeout = timeout;
        c.delivery.retry_schedule = schedule(&[1]);
    })
    .await;
    let mut slow =
        TestReceiver::start(vec![Reply::status(200).after(Duration::from_secs(6))]).await;
    let mut fast = TestReceiver::start(statuses(&[200])).await;
    let d1 = app
        .webhook(Payload::Thin, &[THIN_TYPE], &slow.url("/slow"))
        .await;
    let d2 = app
        .webhook(Payload::Thin, &[THIN_TYPE], &fast.url("/fast"))
        .await;

    let mut events = Vec::new();
    for n in 0..2 {
        // The second event is emitted while the slow receiver holds the first attempt open.
        let sent = Instant::now();
        let e = app.emit_thin(json!({"n": n})).await;
        let got = fast.expect(PROMPT, "the fast receiver's delivery").await;
        let waited = sent.elapsed();
        assert_eq!(got.event_id(), e["id"].as_str().unwrap());
        assert_signed(&got, &d2.secret, &[&d1.secret]);
        assert!(
            waited < timeout.mul_f64(0.8),
            "event {n}: the fast destination waited {waited:?} (slow one times out after {timeout:?})"
        );
        let first = slow
            .expect(PROMPT, "the slow receiver's first attempt")
            .await;
        assert_eq!(first.event_id(), e["id"].as_str().unwrap());
        events.push(first);
    }

    // Each event reaches the slow receiver twice (first attempt + one retry), no more.
    let mut by_event: HashMap<String, Vec<Received>> = HashMap::new();
    for first in &events {
        by_event
            .entry(first.event_id())
            .or_default()
            .push(first.clone());
    }
    for _ in 0..2 {
        let got = slow.expect(MAX_WAIT, "a retry").await;
        by_event.entry(got.event_id()).or_default().push(got);
    }
    slow.expect_none(Duration::from_secs(3), "the schedule has ended")
        .await;
    fast.expect_none(Duration::from_millis(100), "one delivery per event")
        .await;

    let log = app.wait_attempts(Of::Destination, &d1.id, 4).await;
    for (id, got) in &by_event {
        assert_eq!(got.len(), 2, "{id}: first attempt and one retry");
        assert_signed(&got[1], &d1.secret, &[]);
        assert_eq!(
            got[1].body, got[0].body,
            "{id}: the retry sends the same bytes"
        );
        let g = got[1].at.duration_since(got[0].at);
        assert!(
            g >= Duration::from_millis(1800),
            "{id}: retried {g:?} after the first attempt (timeout 1 s + delay 1 s -10%)"
        );
        let attempts = of_event(&log, id);
        assert_eq!(attempts.len(), 2, "{id}: two attempts: {attempts:#?}");
        for (i, a) in attempts.iter().enumerate() {
            assert_eq!(a["attempt"], i + 1, "{a}");
            assert_eq!(a["outcome"], "failed", "{a}");
            assert!(a["http_status"].is_null(), "no status after a timeout: {a}");
            let error = a["error"].as_str().unwrap_or_default();
            assert!(error.starts_with("timeout"), "a timeout reason: {a}");
            let latency = a["latency_ms"].as_i64().unwrap();
            assert!(
                (900..3000).contains(&latency),
                "attempt cut at the {timeout:?} timeout: {a}"
            );
        }
        // Never two attempts of one delivery at once: the retry starts after the first ended.
        let first_end = ms(&attempts[0]["created"]) + attempts[0]["latency_ms"].as_i64().unwrap();
        assert!(
            ms(&attempts[1]["created"]) >= first_end,
            "{id}: the retry overlapped the first attempt: {attempts:#?}"
        );
        assert!(
            attempts[1]["next_attempt"].is_null(),
            "terminal: {attempts:#?}"
        );
    }
}

/// More destinations with due work than the global in-flight limit covers: every one of them gets
/// slots in turn (none is starved by destinations that have nothing left to send).
#[tokio::test]
async fn every_destination_is_served_when_the_global_limit_binds() {
    let app = DeliveryApp::start(|c| {
        c.delivery.max_in_flight = 4;
        c.delivery.max_in_flight_per_destination = 2;
    })
    .await;
    let mut receivers = Vec::new();
    for n in 0..6 {
        let r = TestReceiver::start(statuses(&[200])).await;
        app.webhook(Payload::Thin, &[THIN_TYPE], &r.url(&format!("/d{n}")))
            .await;
        receivers.push(r);
    }
    let ids = app.emit_thin_ids(5).await;
    for (n, r) in receivers.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..ids.len() {
            got.push(
                r.expect(MAX_WAIT, &format!("destination {n}"))
                    .await
                    .event_id(),
            );
        }
        got.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want, "destination {n} receives every event once");
    }
}

/// Destinations on one host share one connection pool: it keeps as many connections as there can
/// be attempts in flight, so a busy worker reuses them instead of opening one per attempt.
#[tokio::test]
async fn destinations_on_one_host_reuse_connections() {
    let (limit, per_destination, destinations, events) = (8, 2, 4, 40);
    let app = DeliveryApp::start(|c| {
        c.delivery.max_in_flight = limit;
        c.delivery.max_in_flight_per_destination = per_destination;
    })
    .await;
    // A short delay keeps every slot busy, so all destinations send at once.
    let mut r =
        TestReceiver::start(vec![Reply::status(200).after(Duration::from_millis(20))]).await;
    for n in 0..destinations {
        app.webhook(Payload::Thin, &[THIN_TYPE], &r.url(&format!("/d{n}")))
            .await;
    }
    for n in 0..events {
        app.emit_thin(json!({"n": n})).await;
    }
    for i in 0..events * destinations {
        r.expect(MAX_WAIT, &format!("delivery {i}")).await;
    }
    let opened = r.connections();
    assert!(
        opened <= limit,
        "{} deliveries over {opened} connections; at most {limit} (the in-flight limit) should be needed",
        events * destinations
    );
}

/// A destination gets at most its in-flight limit of requests at once, and with a backlog every
/// delivery goes out in turn.
#[tokio::test]
async fn a_destination_never_gets_more_requests_at_once_than_its_limit() {
    let (per_destination, events) = (3, 15);
    let app = DeliveryApp::start(|c| {
        c.delivery.max_in_flight = 64;
        c.delivery.max_in_flight_per_destination = per_destination;
    })
    .await;
    let mut r =
        TestReceiver::start(vec![Reply::status(200).after(Duration::from_millis(150))]).await;
    app.webhook(Payload::Thin, &[THIN_TYPE], &r.url("/limited"))
        .await;
    let mut want = app.emit_thin_ids(events).await;
    let mut got = Vec::new();
    for i in 0..events {
        got.push(
            r.expect(MAX_WAIT, &format!("delivery {i}"))
                .await
                .event_id(),
        );
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "every event once");
    assert_eq!(
        r.most_concurrent(),
        per_destination,
        "the receiver answered at most (and, with a backlog, exactly) {per_destination} requests at once"
    );
}

/// A slow destination holds only its own in-flight limit of the global one: with the global limit
/// twice the per-destination limit, a destination created while the slow receiver sits on its
/// requests still gets every event at once. (Prefetching deliveries beyond the per-destination
/// limit, tried once, let the slow destination's backlog take the whole global limit.)
#[tokio::test]
async fn a_slow_destination_holds_only_its_own_share_of_the_global_limit() {
    let app = DeliveryApp::start(|c| {
        c.delivery.max_in_flight = 4;
        c.delivery.max_in_flight_per_destination = 2;
        c.delivery.attempt_timeout = Duration::from_secs(30);
    })
    .await;
    let mut slow =
        TestReceiver::start(vec![Reply::status(200).after(Duration::from_secs(20))]).await;
    let mut fast = TestReceiver::start(statuses(&[200])).await;
    app.webhook(Payload::Thin, &[THIN_TYPE], &slow.url("/slow"))
        .await;
    for n in 0..6 {
        app.emit_thin(json!({"n": n})).await;
    }
    for i in 0..2 {
        slow.expect(PROMPT, &format!("the slow receiver's request {i}"))
            .await;
    }
    // Let the worker claim whatever it would claim while the slow requests are open.
    tokio::time::sleep(Duration::from_millis(300)).await;

    app.webhook(Payload::Thin, &[THIN_TYPE], &fast.url("/fast"))
        .await;
    let mut want = app.emit_thin_ids(3).await;
    let mut got = Vec::new();
    for i in 0..want.len() {
        let r = fast
            .expect(
                PROMPT,
                &format!("fast delivery {i} while the slow receiver is busy"),
            )
            .await;
        got.push(r.event_id());
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "every later event reached the new destination");
    assert_eq!(slow.most_concurrent(), 2);
}
