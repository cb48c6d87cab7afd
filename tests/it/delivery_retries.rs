//! Retries (cases C05, C06, C08, C12 and Retry-After): one attempt per scheduled time with
//! growing gaps and a terminal state, one event id and byte-identical bodies across attempts,
//! retries that survive a restart, and the rule for disabled and deleted destinations.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::delivery_support::*;
use super::receiver::{statuses, Received, Reply, TestReceiver};
use super::support::{EVENTS, TEST_KEY};

/// Another thin type, for a destination that must not see the failing destination's events.
const OTHER_TYPE: &str = "v2.core.account.updated";

fn gap(a: &Received, b: &Received) -> Duration {
    b.at.duration_since(a.at)
}

/// C06: `R` always answers `status`; one ping; schedule 1s,2s,3s compressed from the real one.
async fn c06_never_ending_failure(status: u16) {
    let delays = [1u64, 2, 3];
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&delays)).await;
    let mut r = TestReceiver::start(statuses(&[status])).await;
    let mut r2 = TestReceiver::start(statuses(&[200])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/failing"))
        .await;
    let d2 = app
        .webhook(Payload::Thin, &[OTHER_TYPE], &r2.url("/ok"))
        .await;
    let ping = app.ping(&d.id).await;

    let mut arrivals = Vec::new();
    for n in 1..=delays.len() + 1 {
        let got = r.expect(MAX_WAIT, &format!("attempt {n}")).await;
        assert_signed(&got, &d.secret, &[]);
        assert_eq!(
            got.event_id(),
            ping["id"].as_str().unwrap(),
            "attempt {n}: event id"
        );
        arrivals.push(got);
        if n == 1 || n == 3 {
            // Meanwhile another destination gets its events at once.
            let sent = Instant::now();
            let e = app
                .emit(thin_event_of(OTHER_TYPE, json!({"during": n})))
                .await;
            let other = r2
                .expect(PROMPT, "the healthy destination's delivery")
                .await;
            assert_eq!(other.event_id(), e["id"].as_str().unwrap());
            assert_signed(&other, &d2.secret, &[&d.secret]);
            assert!(
                sent.elapsed() < Duration::from_secs(1),
                "healthy destination waited {:?} while {status} retries were pending",
                sent.elapsed()
            );
        }
    }
    r.expect_none(Duration::from_secs(4), "the schedule has ended")
        .await;

    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| gap(&w[0], &w[1])).collect();
    for (i, (g, d)) in gaps.iter().zip(delays).enumerate() {
        let d = Duration::from_secs(d);
        assert!(
            *g >= d.mul_f64(0.9) - Duration::from_millis(20),
            "{status}: gap before attempt {} is {g:?}, scheduled {d:?} (-10% jitter at most); gaps {gaps:?}",
            i + 2
        );
        assert!(
            *g <= d.mul_f64(1.1) + Duration::from_millis(1500),
            "{status}: gap before attempt {} is {g:?}, scheduled {d:?}; gaps {gaps:?}",
            i + 2
        );
    }
    assert!(
        gaps.windows(2).all(|w| w[0] < w[1]),
        "{status}: gaps grow: {gaps:?}"
    );

    let log = app.wait_attempts(Of::Destination, &d.id, 4).await;
    assert_eq!(log.len(), 4, "{status}: exactly 4 attempts: {log:#?}");
    for (i, a) in log.iter().enumerate() {
        let last = i == 3;
        assert_eq!(a["attempt"], i + 1, "{status}: {a}");
        assert_eq!(a["outcome"], "failed", "{status}: {a}");
        assert_eq!(a["http_status"], status, "{status}: {a}");
        assert!(a["error"].is_string(), "{status}: error recorded: {a}");
        assert_eq!(a["event"], ping["id"], "{status}: {a}");
        assert_eq!(
            a["next_attempt"].is_null(),
            last,
            "{status}: next_attempt set until the last attempt: {a}"
        );
    }
}

#[tokio::test]
async fn c06_permanent_failures_follow_the_schedule_then_stop() {
    run_cases(vec![
        case("always 403", c06_never_ending_failure(403)),
        case("always 500", c06_never_ending_failure(500)),
    ])
    .await;
}

/// C08: `R` answers 500, 500, 200; a second destination answers 200.
async fn c08_one_event_one_id(payload: Payload) {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[1, 1, 1])).await;
    let mut r = TestReceiver::start(statuses(&[500, 500, 200])).await;
    let mut r2 = TestReceiver::start(statuses(&[200])).await;
    let ty = match payload {
        Payload::Thin => THIN_TYPE,
        Payload::Snapshot => SNAPSHOT_TYPE,
    };
    let d = app.webhook(payload, &[ty], &r.url("/flaky")).await;
    let d2 = app.webhook(payload, &[ty], &r2.url("/steady")).await;
    let e = match payload {
        Payload::Thin => app.emit_thin(json!({"once": true})).await,
        Payload::Snapshot => {
            app.emit(snapshot_event(
                json!({"id": "cus_once", "object": "customer"}),
            ))
            .await
        }
    };
    let id = e["id"].as_str().unwrap();
    let mut bodies = Vec::new();
    for n in 1..=3 {
        let got = r.expect(MAX_WAIT, &format!("attempt {n}")).await;
        assert_signed(&got, &d.secret, &[&d2.secret]);
        assert_eq!(got.event_id(), id, "attempt {n}: event id");
        bodies.push(got.body);
    }
    let other = r2.expect(PROMPT, "second destination").await;
    assert_signed(&other, &d2.secret, &[&d.secret]);
    assert_eq!(other.event_id(), id, "second destination: event id");
    bodies.push(other.body);
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(
            b,
            &bodies[0],
            "delivery {} differs from the first: {:?} vs {:?}",
            i + 1,
            String::from_utf8_lossy(b),
            String::from_utf8_lossy(&bodies[0])
        );
    }
    r.expect_none(Duration::from_millis(1500), "delivered; no more attempts")
        .await;
    r2.expect_none(Duration::from_millis(100), "one delivery")
        .await;

    if payload == Payload::Thin {
        let events = app
            .list_all(&format!("{EVENTS}?types[0]={ty}&limit=100"), TEST_KEY)
            .await;
        assert_eq!(
            events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(),
            vec![json!(id)],
            "the events list shows one event"
        );
    }
    let log = app.wait_attempts(Of::Event, id, 4).await;
    let outcomes = |dest: &str| -> Vec<Value> {
        log.iter()
            .filter(|a| a["event_destination"] == dest)
            .map(|a| a["outcome"].clone())
            .collect()
    };
    assert_eq!(
        outcomes(&d.id),
        vec![json!("failed"), json!("failed"), json!("succeeded")]
    );
    assert_eq!(outcomes(&d2.id), vec![json!("succeeded")]);
}

#[tokio::test]
async fn c08_every_attempt_to_every_destination_carries_one_id_and_the_same_bytes() {
    run_cases(vec![
        case("thin", c08_one_event_one_id(Payload::Thin)),
        case("snapshot", c08_one_event_one_id(Payload::Snapshot)),
    ])
    .await;
}

/// C05 (in process): a delivery waiting for its retry survives a restart on the same data.
#[tokio::test]
async fn c05_a_pending_retry_survives_a_restart() {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[2])).await;
    let mut r = TestReceiver::start(statuses(&[503])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    let e = app.emit_thin(json!({"survives": "restart"})).await;
    let id = e["id"].as_str().unwrap();
    let first = r.expect(PROMPT, "first attempt").await;
    assert_eq!(first.event_id(), id);
    let log = app.wait_attempts(Of::Event, id, 1).await;
    assert!(
        log[0]["next_attempt"].is_string(),
        "a retry is due: {log:#?}"
    );

    let app = app.restart().await;
    r.set_replies(statuses(&[200]));
    let retry = r.expect(MAX_WAIT, "the retry after the restart").await;
    assert_signed(&retry, &d.secret, &[]);
    assert_eq!(retry.event_id(), id, "same event id after the restart");
    assert_eq!(retry.body, first.body, "same body after the restart");
    let log = app.wait_attempts(Of::Event, id, 2).await;
    assert_eq!(log[1]["outcome"], "succeeded", "{log:#?}");

    // New events flow too.
    let e2 = app.emit_thin(json!({"after": "restart"})).await;
    let got = r.expect(PROMPT, "a new event after the restart").await;
    assert_eq!(got.event_id(), e2["id"].as_str().unwrap());
    r.expect_none(Duration::from_millis(500), "nothing else")
        .await;
}

/// Graceful shutdown with an attempt still open after the grace period: the attempt is cut off,
/// recorded as failed (reason `shutdown`) with its retry on schedule, and the next start sends it
/// again only when that retry is due, never while the receiver may still hold the first request.
#[tokio::test]
async fn shutdown_cuts_off_attempts_after_the_grace_and_retries_them_on_schedule() {
    let app = DeliveryApp::start(|c| {
        c.delivery.retry_schedule = schedule(&[3]);
        c.delivery.shutdown_grace = Duration::from_secs(1);
    })
    .await;
    let mut r = TestReceiver::start(vec![Reply::status(200).after(Duration::from_secs(30))]).await;
    app.webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    let e = app.emit_thin(json!({"cut": "off"})).await;
    let id = e["id"].as_str().unwrap();
    let first = r.expect(PROMPT, "the first attempt").await;

    let stopping = Instant::now();
    let app = app.restart().await;
    let stopped_in = stopping.elapsed();
    assert!(
        stopped_in < Duration::from_secs(5),
        "shutdown took {stopped_in:?} with a 1 s grace"
    );
    let log = app.wait_attempts(Of::Event, id, 1).await;
    assert_eq!(log[0]["outcome"], "failed", "{log:#?}");
    let error = log[0]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("shutdown"), "reason: {log:#?}");
    let due = ms(&log[0]["next_attempt"]);
    assert!(
        due - ms(&log[0]["created"]) >= 2_700,
        "the retry is on schedule, not at once: {log:#?}"
    );

    r.set_replies(statuses(&[200]));
    let retry = r.expect(MAX_WAIT, "the retry").await;
    assert_eq!(retry.event_id(), id);
    assert!(
        gap(&first, &retry) >= Duration::from_millis(2_700),
        "re-sent {:?} after the first attempt began",
        gap(&first, &retry)
    );
    let log = app.wait_attempts(Of::Event, id, 2).await;
    assert_eq!(log[1]["outcome"], "succeeded", "{log:#?}");
}

/// Retry-After on 429 and 503 lengthens the next delay (never shortens it).
async fn retry_after(status: u16) {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[1])).await;
    let mut r = TestReceiver::start(vec![
        Reply::status(status).header("Retry-After", "2"),
        Reply::status(200),
    ])
    .await;
    app.webhook(Payload::Thin, &[THIN_TYPE], &r.url("/busy"))
        .await;
    let e = app.emit_thin(json!({})).await;
    let first = r.expect(PROMPT, "first attempt").await;
    let second = r.expect(MAX_WAIT, "the retry").await;
    assert_eq!(second.event_id(), e["id"].as_str().unwrap());
    let g = gap(&first, &second);
    assert!(
        g >= Duration::from_millis(1980),
        "{status} with Retry-After: 2 under a 1 s schedule: retried after {g:?}"
    );
    assert!(
        g < Duration::from_secs(5),
        "{status}: retried only after {g:?}"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_when_longer_than_the_schedule() {
    run_cases(vec![
        case("429", retry_after(429)),
        case("503", retry_after(503)),
    ])
    .await;
}

/// C12: disabling cancels retries that come due while disabled; events emitted while disabled
/// are listed but never delivered; after enabling, new events flow.
async fn c12_disable_cancels_due_retries() {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[1, 1])).await;
    let mut r = TestReceiver::start(statuses(&[500])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    let e1 = app.emit_thin(json!({"e": 1})).await;
    let e1_id = e1["id"].as_str().unwrap();
    r.expect(PROMPT, "E1's first attempt").await;
    let log = app.wait_attempts(Of::Event, e1_id, 1).await;
    let retry_due = ms(&log[0]["next_attempt"]);

    let disabled = app.action(&d.id, "disable").await;
    let disabled_at = ms(&disabled["updated"]);
    let e2 = app.emit_thin(json!({"e": 2})).await;
    let ping = app.ping(&d.id).await;
    // Past E1's retry, plus the worker's one-second sweep and polling, nothing arrives.
    let wait = retry_due - chrono::Utc::now().timestamp_millis() + 2500;
    r.expect_none(
        Duration::from_millis(wait.max(0) as u64),
        "the destination is disabled",
    )
    .await;

    app.action(&d.id, "enable").await;
    r.set_replies(statuses(&[200]));
    let e3 = app.emit_thin(json!({"e": 3})).await;
    let got = r.expect(PROMPT, "E3 after enabling").await;
    assert_eq!(
        got.event_id(),
        e3["id"].as_str().unwrap(),
        "only E3 arrives"
    );
    assert_signed(&got, &d.secret, &[]);
    r.expect_none(
        Duration::from_millis(1500),
        "E1's cancelled retry and E2 stay undelivered",
    )
    .await;

    let listed: Vec<Value> = app
        .list_all(&format!("{EVENTS}?limit=100"), TEST_KEY)
        .await
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    for e in [&e1, &e2, &e3, &ping] {
        assert!(listed.contains(&e["id"]), "{} listed: {listed:?}", e["id"]);
    }
    let e1_log = app.attempts(Of::Event, e1_id).await;
    assert_eq!(e1_log.len(), 1, "E1: no attempt after disable: {e1_log:#?}");
    assert!(ms(&e1_log[0]["created"]) < disabled_at);
    assert!(
        e1_log[0]["next_attempt"].is_null() && e1_log[0]["next_attempt_canceled"] == true,
        "the log shows E1's retry was canceled: {e1_log:#?}"
    );
    for e in [&e2, &ping] {
        let log = app.attempts(Of::Event, e["id"].as_str().unwrap()).await;
        assert!(log.is_empty(), "{} never attempted: {log:#?}", e["id"]);
    }
    let e3_log = app.attempts(Of::Event, e3["id"].as_str().unwrap()).await;
    assert_eq!(e3_log.len(), 1);
    assert_eq!(e3_log[0]["outcome"], "succeeded");
}

/// C12: disabling and enabling again before the retry is due keeps the retry.
async fn c12_reenable_before_due_keeps_the_retry() {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[3])).await;
    let mut r = TestReceiver::start(statuses(&[500, 200])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    let e = app.emit_thin(json!({})).await;
    let first = r.expect(PROMPT, "first attempt").await;
    app.wait_attempts(Of::Event, e["id"].as_str().unwrap(), 1)
        .await;
    app.action(&d.id, "disable").await;
    app.action(&d.id, "enable").await;
    let retry = r.expect(MAX_WAIT, "the retry").await;
    assert_eq!(retry.event_id(), e["id"].as_str().unwrap());
    assert!(gap(&first, &retry) >= Duration::from_millis(2650));
}

/// C12: deleting a destination cancels its pending retries.
async fn c12_delete_cancels_retries() {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[1, 1])).await;
    let mut r = TestReceiver::start(statuses(&[500])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    let e = app.emit_thin(json!({})).await;
    let id = e["id"].as_str().unwrap();
    r.expect(PROMPT, "first attempt").await;
    let log = app.wait_attempts(Of::Event, id, 1).await;
    let retry_due = ms(&log[0]["next_attempt"]);
    app.delete_destination(&d.id).await;
    let wait = retry_due - chrono::Utc::now().timestamp_millis() + 2500;
    r.expect_none(
        Duration::from_millis(wait.max(0) as u64),
        "the destination is deleted",
    )
    .await;
    let log = app.attempts(Of::Event, id).await;
    assert_eq!(log.len(), 1, "no attempt after delete: {log:#?}");
    assert!(
        log[0]["next_attempt"].is_null() && log[0]["next_attempt_canceled"] == true,
        "the log shows the retry was canceled: {log:#?}"
    );
}

#[tokio::test]
async fn c12_disabled_and_deleted_destinations_follow_one_rule() {
    run_cases(vec![
        case(
            "disable cancels due retries",
            c12_disable_cancels_due_retries(),
        ),
        case(
            "re-enable before due keeps the retry",
            c12_reenable_before_due_keeps_the_retry(),
        ),
        case("delete cancels retries", c12_delete_cancels_retries()),
    ])
    .await;
}

/// Once a disable or delete has been answered, no request to that destination starts: the
/// deliveries it still had waiting are not sent (the attempt already on the wire finishes).
/// (Prefetched deliveries, tried once, were sent after the disable when their slot came free.)
async fn no_request_starts_after(action: &str) {
    let app = DeliveryApp::start(|c| c.delivery.max_in_flight_per_destination = 1).await;
    let mut r =
        TestReceiver::start(vec![Reply::status(200).after(Duration::from_millis(1500))]).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/one-at-a-time"))
        .await;
    for n in 0..4 {
        app.emit_thin(json!({"n": n})).await;
    }
    r.expect(PROMPT, "the first attempt").await;
    // Let the worker claim whatever it would claim while the first request is open.
    tokio::time::sleep(Duration::from_millis(300)).await;
    if action == "delete" {
        app.delete_destination(&d.id).await;
    } else {
        app.action(&d.id, action).await;
    }
    r.expect_none(
        Duration::from_secs(3),
        &format!("no request after {action} (the open one ends after 1.5 s)"),
    )
    .await;
}

#[tokio::test]
async fn no_request_starts_after_a_disable() {
    no_request_starts_after("disable").await;
}

#[tokio::test]
async fn no_request_starts_after_a_delete() {
    no_request_starts_after("delete").await;
}

/// Once shutdown has begun no request starts: the open attempt finishes within the grace period,
/// and the deliveries still waiting go out after the restart, at once (none was leased while
/// waiting). (Prefetched deliveries, tried once, started during the grace period and were then cut
/// off, so their receiver got them twice.)
#[tokio::test]
async fn no_request_starts_once_shutdown_has_begun() {
    let app = DeliveryApp::start(|c| {
        c.delivery.max_in_flight_per_destination = 1;
        c.delivery.shutdown_grace = Duration::from_secs(5);
    })
    .await;
    let mut r =
        TestReceiver::start(vec![Reply::status(200).after(Duration::from_millis(1000))]).await;
    app.webhook(Payload::Thin, &[THIN_TYPE], &r.url("/one-at-a-time"))
        .await;
    let mut want = app.emit_thin_ids(4).await;
    let first = r.expect(PROMPT, "the first attempt").await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let app = app.restart().await;
    let restarted = Instant::now();
    let mut got = vec![first.event_id()];
    for i in 1..want.len() {
        let later = r.expect(MAX_WAIT, &format!("delivery {i}")).await;
        assert!(
            later.at >= restarted,
            "delivery {i} started while eventd was shutting down"
        );
        got.push(later.event_id());
    }
    got.sort();
    want.sort();
    assert_eq!(got, want, "every event once");
    let log = app.wait_attempts(Of::Event, &first.event_id(), 1).await;
    assert_eq!(
        log[0]["outcome"], "succeeded",
        "finished in the grace period: {log:#?}"
    );
}
