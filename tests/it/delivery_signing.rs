//! Delivery bodies and signatures (cases C01–C04): every delivery verifies over its raw bytes with
//! its own destination's secret only, carries Stripe's headers, and parses to the stored event.

use serde_json::{json, Value};

use super::delivery_support::*;
use super::receiver::{statuses, Received, TestReceiver};
use super::support::EVENTS;

/// Characters that real senders have signed differently from what they sent (C01).
fn tricky_data() -> Value {
    json!({
        "query": "a=b",
        "html": "<p>x&y</p>",
        "umlaut": "ü",
        "emoji": "🦀👍🏽",
        "line_separator": "a\u{2028}b\u{2029}c",
        "quote": "say \"quote\"",
        "slash": "/a/b",
        "backslash": "back\\slash",
        "control": "tab\there\nnewline",
        "all": "a=b <p>x&y</p> ü 🦀 \u{2028} \"q\" /a/b \\ ",
        "nested": {"list": ["<", ">", "&", "'", "\u{2028}"], "n": 1.5},
    })
}

/// The thin notification equals `GET /v2/core/events/{id}` without `data`, and `data` was stored
/// as published.
async fn check_thin(app: &DeliveryApp, r: &Received, dest: &Dest, published: &Value, data: &Value) {
    assert_signed(r, &dest.secret, &[]);
    let body = r.json();
    let id = body["id"].as_str().expect("id");
    assert_eq!(id, published["id"], "delivered event id");
    let stored = app.get(&format!("{EVENTS}/{id}")).await;
    assert_eq!(stored.status, 200, "GET event: {}", stored.body);
    assert_eq!(&stored.body["data"], data, "stored data");
    assert_eq!(body["object"], "v2.core.event");
    assert_eq!(
        body,
        without(&stored.body, "data"),
        "thin notification = event minus data"
    );
}

/// The snapshot body is the v1 event of `GET /v1/events/{id}`, rendered for the destination's
/// `snapshot_api_version`.
async fn check_snapshot(
    app: &DeliveryApp,
    r: &Received,
    dest: &Dest,
    published: &Value,
    object: &Value,
) {
    assert_signed(r, &dest.secret, &[]);
    let body = r.json();
    let id = body["id"].as_str().expect("id");
    assert_eq!(id, published["id"], "delivered event id");
    assert_eq!(body["object"], "event");
    assert_eq!(body["api_version"], SNAPSHOT_VERSION, "api_version");
    assert_eq!(&body["data"]["object"], object, "data.object");
    let stored = app.get(&format!("/v1/events/{id}")).await;
    assert_eq!(stored.status, 200, "GET /v1/events: {}", stored.body);
    let comparable = |v: &Value| without(&without(v, "api_version"), "pending_webhooks");
    assert_eq!(
        comparable(&body),
        comparable(&stored.body),
        "snapshot delivery = stored v1 event"
    );
}

#[tokio::test]
async fn c01_tricky_bodies_verify_over_raw_bytes_and_match_the_stored_event() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut thin_r = TestReceiver::start(statuses(&[200])).await;
    let mut snap_r = TestReceiver::start(statuses(&[200])).await;
    let thin = app
        .webhook(Payload::Thin, &[THIN_TYPE], &thin_r.url("/thin"))
        .await;
    let snap = app
        .webhook(Payload::Snapshot, &[SNAPSHOT_TYPE], &snap_r.url("/snap"))
        .await;

    // The same characters as values, as keys, and alone.
    let mut keyed = tricky_data();
    keyed["k=<&>ü🦀\u{2028}\"/\\"] = json!("key with every character");
    let cases = [
        tricky_data(),
        keyed,
        json!({"only": "\u{2028}"}),
        json!({"only": "\\"}),
    ];
    for data in cases {
        let e = app.emit_thin(data.clone()).await;
        let r = thin_r.expect(PROMPT, "thin delivery").await;
        check_thin(&app, &r, &thin, &e, &data).await;

        let mut object = data.clone();
        object["id"] = json!("cus_tricky");
        object["object"] = json!("customer");
        let e = app.emit(snapshot_event(object.clone())).await;
        let r = snap_r.expect(PROMPT, "snapshot delivery").await;
        check_snapshot(&app, &r, &snap, &e, &object).await;
    }
}

#[tokio::test]
async fn c02_every_delivery_carries_stripes_headers_and_one_well_formed_signature() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    let thin = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/thin"))
        .await;
    let snap = app
        .webhook(Payload::Snapshot, &[SNAPSHOT_TYPE], &r.url("/snap"))
        .await;

    // Each kind of delivery: thin ping, snapshot ping, thin event, snapshot event.
    app.ping(&thin.id).await;
    app.ping(&snap.id).await;
    app.emit_thin(json!({"n": 1})).await;
    app.emit(snapshot_event(json!({"id": "cus_1", "object": "customer"})))
        .await;
    for _ in 0..4 {
        let got = r.expect(PROMPT, "a delivery").await;
        let secret = if got.target == "/thin" {
            &thin.secret
        } else {
            &snap.secret
        };
        assert_eq!(
            got.header_count("stripe-signature"),
            1,
            "{}: exactly one Stripe-Signature",
            got.target
        );
        let header = got.header("stripe-signature").unwrap();
        assert!(
            !header.contains(' '),
            "no spaces in Stripe-Signature: {header:?}"
        );
        if let Err(e) = parse_signature(header) {
            panic!("{}: Stripe-Signature format: {e}", got.target);
        }
        assert_signed(&got, secret, &[]);
        for (name, value) in [
            ("content-type", "application/json; charset=utf-8"),
            (
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            ),
            ("accept", "*/*; q=0.5, application/xml"),
            ("cache-control", "no-cache"),
        ] {
            assert_eq!(
                got.header(name),
                Some(value),
                "{}: header {name}",
                got.target
            );
        }
        assert_eq!(
            got.header("host"),
            Some(r.addr.to_string().as_str()),
            "Host header"
        );
    }
    r.expect_none(
        std::time::Duration::from_millis(300),
        "four deliveries only",
    )
    .await;
}

/// Emits T (to both) and pings D2 (to R2 only); checks each delivery against its own secret.
async fn c03_round(
    app: &DeliveryApp,
    receivers: &mut [TestReceiver; 2],
    dests: &[Dest; 2],
    round: &str,
) {
    let secrets = [dests[0].secret.as_str(), dests[1].secret.as_str()];
    let e = app.emit_thin(json!({"round": round})).await;
    let mut ids = Vec::new();
    for i in 0..2 {
        let got = receivers[i]
            .expect(PROMPT, &format!("{round}: event to R{}", i + 1))
            .await;
        assert_signed(&got, secrets[i], &[secrets[1 - i]]);
        ids.push(got.event_id());
    }
    assert_eq!(
        ids[0], ids[1],
        "{round}: both destinations get the same event id"
    );
    assert_eq!(
        ids[0],
        e["id"].as_str().unwrap(),
        "{round}: the published id"
    );

    let ping = app.ping(&dests[1].id).await;
    let got = receivers[1]
        .expect(PROMPT, &format!("{round}: ping to R2"))
        .await;
    assert_signed(&got, secrets[1], &[secrets[0]]);
    assert_eq!(got.event_id(), ping["id"].as_str().unwrap());
    receivers[0]
        .expect_none(
            std::time::Duration::from_millis(500),
            "a ping goes only to the pinged destination",
        )
        .await;
}

#[tokio::test]
async fn c03_each_destination_signs_with_its_own_secret_also_after_a_restart() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut receivers = [
        TestReceiver::start(statuses(&[200])).await,
        TestReceiver::start(statuses(&[200])).await,
    ];
    let dests = [
        app.webhook(Payload::Thin, &[THIN_TYPE], &receivers[0].url("/r1"))
            .await,
        app.webhook(Payload::Thin, &[THIN_TYPE], &receivers[1].url("/r2"))
            .await,
    ];
    assert_ne!(dests[0].secret, dests[1].secret, "secrets differ");
    for d in &dests {
        assert!(d.secret.starts_with("whsec_"), "secret {:?}", d.secret);
    }
    c03_round(&app, &mut receivers, &dests, "before restart").await;
    let app = app.restart().await;
    c03_round(&app, &mut receivers, &dests, "after restart").await;
}

#[tokio::test]
async fn c04_ping_right_after_create_is_a_signed_retrievable_ping_notification() {
    let app = DeliveryApp::start(|_| {}).await;
    for (payload, events) in [
        (Payload::Thin, [THIN_TYPE]),
        (Payload::Snapshot, [SNAPSHOT_TYPE]),
    ] {
        let mut r = TestReceiver::start(statuses(&[200])).await;
        let d = app.webhook(payload, &events, &r.url("/hook")).await;
        let ping = app.ping(&d.id).await;
        let got = r.expect(PROMPT, "ping delivery").await;
        assert_signed(&got, &d.secret, &[]);
        let body = got.json();
        let what = payload.as_str();
        assert_eq!(body["id"], ping["id"], "{what}: id");
        assert_eq!(
            body["object"], "v2.core.event",
            "{what}: a thin notification"
        );
        assert_eq!(body["type"], "v2.core.event_destination.ping", "{what}");
        assert_eq!(
            body["related_object"],
            json!({"id": d.id, "type": "v2.core.event_destination",
                   "url": format!("/v2/core/event_destinations/{}", d.id)}),
            "{what}: related_object is the destination"
        );
        let stored = app
            .get(&format!("{EVENTS}/{}", body["id"].as_str().unwrap()))
            .await;
        assert_eq!(stored.status, 200, "{what}: ping event retrievable");
        assert_eq!(body, without(&stored.body, "data"), "{what}");
        r.expect_none(
            std::time::Duration::from_millis(300),
            "one ping, one delivery",
        )
        .await;
    }
}
