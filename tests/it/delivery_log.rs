//! The delivery log and manual resend (eventd extensions): attempts of an event and of a
//! destination, newest first and paginated; resend delivers again at once; other accounts' and
//! other modes' ids answer 404.

use std::time::Duration;

use serde_json::json;

use super::delivery_support::*;
use super::receiver::{statuses, TestReceiver};
use super::support::{Call, EVENTS, LIVE_KEY, TEST_KEY};

fn resend_path(event: &str) -> String {
    format!("{EVENTS}/{event}/resend")
}

/// Sends each call and checks it answers 404 `not_found`, naming the case when it does not.
async fn assert_all_not_found(app: &DeliveryApp, cases: impl IntoIterator<Item = (&str, Call)>) {
    for (what, call) in cases {
        let got = app.send(call).await;
        assert_eq!(got.status, 404, "{what}: {}", got.body);
        assert_eq!(
            got.body["error"]["code"], "not_found",
            "{what}: {}",
            got.body
        );
    }
}

#[tokio::test]
async fn delivery_log_lists_attempts_of_events_and_destinations_newest_first() {
    let app = DeliveryApp::start(|c| c.delivery.retry_schedule = schedule(&[1])).await;
    let mut r = TestReceiver::start(statuses(&[500, 200])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    let e = app.emit_thin(json!({"logged": true})).await;
    let id = e["id"].as_str().unwrap();
    r.expect(PROMPT, "first attempt").await;
    r.expect(MAX_WAIT, "retry").await;
    let log = app.wait_attempts(Of::Event, id, 2).await;

    let (first, second) = (&log[0], &log[1]);
    for (a, n) in [(first, 1), (second, 2)] {
        assert_eq!(a["object"], "eventd.delivery_attempt", "{a}");
        assert_eq!(a["attempt"], n, "{a}");
        assert_eq!(a["event"], id, "{a}");
        assert_eq!(a["event_destination"], d.id.as_str(), "{a}");
        assert!(a["latency_ms"].as_i64().is_some_and(|l| l >= 0), "{a}");
        assert!(a["created"].is_string(), "{a}");
    }
    assert_eq!(first["outcome"], "failed");
    assert_eq!(first["http_status"], 500);
    assert!(first["error"].is_string(), "{first}");
    let due = ms(&first["next_attempt"]);
    let gap = due - ms(&first["created"]);
    assert!(
        (900..=1100 + 1000).contains(&gap),
        "next_attempt 1 s later: {first}"
    );
    assert_eq!(second["outcome"], "succeeded");
    assert_eq!(second["http_status"], 200);
    assert!(second["error"].is_null(), "{second}");
    assert!(second["next_attempt"].is_null(), "{second}");
    assert!(
        ms(&second["created"]) >= due - 50,
        "retried when due: {log:#?}"
    );

    // Newest first on the wire; pages of one give the same attempts.
    let page = app.get(&Of::Event.path(id)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["data"][0]["attempt"], 2, "newest first");
    let paged = app
        .list_all(&format!("{}?limit=1", Of::Event.path(id)), TEST_KEY)
        .await;
    let mut paged_oldest_first = paged.clone();
    paged_oldest_first.reverse();
    assert_eq!(paged_oldest_first, log, "pages of one");
    let one = app.get(&format!("{}?limit=1", Of::Event.path(id))).await;
    assert_eq!(one.body["data"].as_array().unwrap().len(), 1);
    assert!(one.body["next_page_url"].is_string(), "{}", one.body);

    // The destination's log holds the same attempts (and later the ping's).
    assert_eq!(app.attempts(Of::Destination, &d.id).await, log);
    let ping = app.ping(&d.id).await;
    r.expect(PROMPT, "ping").await;
    let by_dest = app.wait_attempts(Of::Destination, &d.id, 3).await;
    assert_eq!(by_dest[2]["event"], ping["id"]);
    let paged = app
        .list_all(
            &format!("{}?limit=2", Of::Destination.path(&d.id)),
            TEST_KEY,
        )
        .await;
    assert_eq!(paged.len(), 3, "pages of two: {paged:#?}");
}

#[tokio::test]
async fn resend_delivers_the_same_event_again_now() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    let e = app.emit_thin(json!({"again": true})).await;
    let id = e["id"].as_str().unwrap();
    let first = r.expect(PROMPT, "delivery").await;
    app.wait_attempts(Of::Event, id, 1).await;

    let resent = app
        .post(&resend_path(id), json!({"event_destination": d.id}))
        .await;
    assert_eq!(resent.status, 200, "{}", resent.body);
    let again = r.expect(PROMPT, "the resend").await;
    assert_signed(&again, &d.secret, &[]);
    assert_eq!(again.event_id(), id);
    assert_eq!(again.body, first.body, "the same bytes again");
    let log = app.wait_attempts(Of::Event, id, 2).await;
    assert!(log.iter().all(|a| a["outcome"] == "succeeded"), "{log:#?}");
    r.expect_none(Duration::from_millis(300), "one resend, one delivery")
        .await;

    // With an Idempotency-Key, a replay queues nothing more; another body is a conflict.
    let keyed =
        || Call::post(&resend_path(id), json!({"event_destination": d.id})).idem("resend-1");
    for _ in 0..2 {
        assert_eq!(app.send(keyed()).await.status, 200);
    }
    r.expect(PROMPT, "the keyed resend").await;
    r.expect_none(Duration::from_millis(500), "a replay sends nothing")
        .await;
    app.wait_attempts(Of::Event, id, 3).await;
    let other = Call::post(
        &resend_path(id),
        json!({"event_destination": "ed_test_other"}),
    )
    .idem("resend-1");
    app.send(other)
        .await
        .assert_error(409, "idempotency_error", "idempotency_error");
}

#[tokio::test]
async fn delivery_log_and_resend_answer_404_for_other_accounts_and_modes() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    let mut r_other = TestReceiver::start(statuses(&[200])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/mine"))
        .await;
    let e = app.emit_thin(json!({})).await;
    let id = e["id"].as_str().unwrap().to_owned();
    r.expect(PROMPT, "own delivery").await;

    let other = app.other_account().await;
    let created = app
        .send(
            Call::post(
                super::support::DESTINATIONS,
                json!({
                    "name": "other", "type": "webhook_endpoint", "event_payload": "thin",
                    "enabled_events": [THIN_TYPE], "webhook_endpoint": {"url": r_other.url("/other")},
                }),
            )
            .key(&other.test_key),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let other_d = created.body["id"].as_str().unwrap().to_owned();
    let emitted = app
        .send(Call::post(EVENTS, thin_event(json!({}))).key(&other.test_key))
        .await;
    assert_eq!(emitted.status, 200, "{}", emitted.body);
    let other_e = emitted.body["id"].as_str().unwrap().to_owned();
    r_other.expect(PROMPT, "the other account's delivery").await;

    let resend = |event: &str, dest: &str| {
        Call::post(&resend_path(event), json!({"event_destination": dest}))
    };
    let cases: Vec<(&str, Call)> = vec![
        (
            "other account: event log",
            Call::get(&Of::Event.path(&id)).key(&other.test_key),
        ),
        (
            "other account: destination log",
            Call::get(&Of::Destination.path(&d.id)).key(&other.test_key),
        ),
        (
            "other account: resend",
            resend(&id, &d.id).key(&other.test_key),
        ),
        (
            "live key: event log",
            Call::get(&Of::Event.path(&id)).key(LIVE_KEY),
        ),
        (
            "live key: destination log",
            Call::get(&Of::Destination.path(&d.id)).key(LIVE_KEY),
        ),
        ("live key: resend", resend(&id, &d.id).key(LIVE_KEY)),
        (
            "another account's event log",
            Call::get(&Of::Event.path(&other_e)),
        ),
        (
            "another account's destination log",
            Call::get(&Of::Destination.path(&other_d)),
        ),
        ("resend another account's event", resend(&other_e, &d.id)),
        (
            "resend to another account's destination",
            resend(&id, &other_d),
        ),
        (
            "unknown event",
            Call::get(&Of::Event.path("evt_test_doesnotexist")),
        ),
        (
            "unknown destination",
            Call::get(&Of::Destination.path("ed_test_doesnotexist")),
        ),
    ];
    assert_all_not_found(&app, cases).await;
    r.expect_none(Duration::from_millis(500), "no cross-account resend")
        .await;
    r_other
        .expect_none(Duration::from_millis(100), "no cross-account resend")
        .await;
}

/// Deleting a destination: its own log answers 404 like the destination, a resend to it (or to an
/// unknown id) is a 404 that queues nothing, and the attempts it had stay listed under their events.
#[tokio::test]
async fn a_deleted_destinations_attempts_stay_listed_under_their_events() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    let e = app.emit_thin(json!({})).await;
    let id = e["id"].as_str().unwrap().to_owned();
    r.expect(PROMPT, "the delivery").await;
    let before = app.wait_attempts(Of::Event, &id, 1).await;
    app.delete_destination(&d.id).await;

    let resend = |dest: &str| Call::post(&resend_path(&id), json!({"event_destination": dest}));
    let cases = [
        (
            "the deleted destination's log",
            Call::get(&Of::Destination.path(&d.id)),
        ),
        ("resend to the deleted destination", resend(&d.id)),
        (
            "resend to an unknown destination",
            resend("ed_test_doesnotexist"),
        ),
    ];
    assert_all_not_found(&app, cases).await;
    r.expect_none(Duration::from_millis(500), "nothing queued")
        .await;
    assert_eq!(
        app.attempts(Of::Event, &id).await,
        before,
        "the attempt stays"
    );
}

/// A resend goes only where the event would have been delivered: an enabled webhook destination
/// taking its type and payload kind (a ping: its own destination). Anything else is a 400 naming
/// `event_destination` that sends and stores nothing.
#[tokio::test]
async fn resend_refuses_destinations_that_would_not_receive_the_event() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    let thin = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/thin"))
        .await;
    let snapshot = app
        .webhook(Payload::Snapshot, &[SNAPSHOT_TYPE], &r.url("/snapshot"))
        .await;
    let other_type = app
        .webhook(Payload::Thin, &["v2.core.account.closed"], &r.url("/other"))
        .await;
    let disabled = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/disabled"))
        .await;
    let thin_event = app.emit_thin(json!({})).await;
    let snapshot_event = app
        .emit(snapshot_event(json!({"id": "cus_1", "object": "customer"})))
        .await;
    let ping = app.ping(&thin.id).await;
    for _ in 0..4 {
        r.expect(PROMPT, "the original deliveries").await;
    }
    app.action(&disabled.id, "disable").await;
    let id = |e: &serde_json::Value| e["id"].as_str().unwrap().to_owned();
    let cases = [
        (
            "thin event to a snapshot destination",
            id(&thin_event),
            &snapshot.id,
        ),
        (
            "snapshot event to a thin destination",
            id(&snapshot_event),
            &thin.id,
        ),
        (
            "a type the destination does not take",
            id(&thin_event),
            &other_type.id,
        ),
        ("a disabled destination", id(&thin_event), &disabled.id),
        ("another destination's ping", id(&ping), &other_type.id),
    ];
    for (what, event, dest) in cases {
        let before = app.attempts(Of::Event, &event).await;
        let res = app
            .post(&resend_path(&event), json!({"event_destination": dest}))
            .await;
        assert_eq!(res.status, 400, "{what}: {}", res.body);
        res.assert_invalid(&["event_destination"]);
        r.expect_none(Duration::from_millis(300), what).await;
        assert_eq!(app.attempts(Of::Event, &event).await, before, "{what}");
    }
    // A ping goes again to its own destination.
    let res = app
        .post(
            &resend_path(&id(&ping)),
            json!({"event_destination": thin.id}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(
        r.expect(PROMPT, "the ping again").await.event_id(),
        id(&ping)
    );
}
