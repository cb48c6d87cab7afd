//! Events: publishing thin and snapshot events, retrieving them, list filters, and ping.

use serde_json::{json, Value};

use crate::support::*;

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn publish_thin_event_and_retrieve_it() {
    let app = TestApp::start().await;
    let r = app
        .send(
            Call::post(
                EVENTS,
                json!({
                    "type": "v1.billing.meter.error_report_triggered",
                    "related_object": {"id": "mtr_test_123", "type": "billing.meter", "url": "/v1/billing/meters/mtr_test_123"},
                    "data": {"developer_message_summary": "There is 1 invalid event", "reason": {"error_count": 1}},
                    "changes": {"before": {"status": "active"}, "after": {"status": "inactive"}}
                }),
            )
            .idem("publish-1"),
        )
        .await;
    let body = r.assert_ok().clone();
    let request_id = r.header("request-id").unwrap().to_owned();
    let id = id_of(&body);
    assert!(id.starts_with("evt_test_") && id.len() > 9, "{id}");
    assert_eq!(
        body,
        json!({
            "id": id,
            "object": "v2.core.event",
            "context": null,
            "created": T0,
            "livemode": false,
            "reason": {"type": "request", "request": {"id": request_id, "idempotency_key": "publish-1"}},
            "related_object": {"id": "mtr_test_123", "type": "billing.meter", "url": "/v1/billing/meters/mtr_test_123"},
            "type": "v1.billing.meter.error_report_triggered",
            "data": {"developer_message_summary": "There is 1 invalid event", "reason": {"error_count": 1}},
            "changes": {"before": {"status": "active"}, "after": {"status": "inactive"}}
        })
    );
    let got = app.get(&format!("{EVENTS}/{id}")).await;
    assert_eq!(got.assert_ok(), &body);
    let list = app.list_all(EVENTS, TEST_KEY).await;
    assert_eq!(list, vec![body]);
}

#[tokio::test]
async fn publish_minimal_thin_event_has_nulls() {
    let app = TestApp::start().await;
    let r = app
        .post(EVENTS, json!({"type": "v2.test.thing.happened"}))
        .await;
    let body = r.assert_ok().clone();
    assert_eq!(body["context"], Value::Null);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["related_object"], Value::Null);
    assert_eq!(body["reason"]["type"], "request");
    assert_eq!(
        body["reason"]["request"]["id"],
        r.header("request-id").unwrap()
    );
    assert!(
        body["reason"]["request"]["idempotency_key"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "a generated key is recorded: {body}"
    );
    assert!(is_rfc3339_ms_z(body["created"].as_str().unwrap()));
    for k in [
        "id",
        "object",
        "context",
        "created",
        "livemode",
        "reason",
        "related_object",
        "type",
        "data",
    ] {
        assert!(body.get(k).is_some(), "{k} present: {body}");
    }
    // A related object without an id.
    let r = app
        .post(
            EVENTS,
            json!({"type": "v2.test.thing.happened", "related_object": {"type": "thing", "url": "/v2/things"}}),
        )
        .await;
    assert_eq!(
        r.assert_ok()["related_object"],
        json!({"type": "thing", "url": "/v2/things"})
    );
}

#[tokio::test]
async fn live_events_have_plain_ids_and_are_separate() {
    let app = TestApp::start().await;
    let live = app
        .publish_with(Call::post(EVENTS, json!({"type": "v2.test.live"})).key(LIVE_KEY))
        .await;
    let id = id_of(&live);
    assert!(
        id.starts_with("evt_") && !id.starts_with("evt_test_"),
        "{id}"
    );
    assert_eq!(live["livemode"], true);
    assert_eq!(ids(&app.list_all(EVENTS, LIVE_KEY).await), [id]);
    assert!(app.list_all(EVENTS, TEST_KEY).await.is_empty());
    let snap = app
        .publish_with(Call::post(EVENTS, customer_created("cus_live")).key(LIVE_KEY))
        .await;
    assert_eq!(snap["livemode"], true);
    assert!(!id_of(&snap).starts_with("evt_test_"));
}

#[tokio::test]
async fn publish_snapshot_event_returns_a_v1_event() {
    let app = TestApp::start().await;
    let data = json!({
        "object": {"id": "cus_123", "object": "customer", "email": "a@127.0.0.1:9"},
        "previous_attributes": {"email": null}
    });
    let r = app
        .send(Call::post(EVENTS, json!({"type": "customer.updated", "data": data})).idem("snap-1"))
        .await;
    let body = r.assert_ok().clone();
    let request_id = r.header("request-id").unwrap().to_owned();
    let id = id_of(&body);
    assert!(id.starts_with("evt_test_"), "{id}");
    assert_eq!(body["object"], "event");
    assert_eq!(body["type"], "customer.updated");
    assert_eq!(body["created"], json!(T0_MS / 1000));
    assert_eq!(body["data"], data);
    assert_eq!(body["livemode"], false);
    assert_eq!(body["pending_webhooks"], 0);
    assert_eq!(
        body["request"],
        json!({"id": request_id, "idempotency_key": "snap-1"})
    );
    let got = app.get(&format!("/v1/events/{id}")).await;
    assert_eq!(got.assert_ok(), &body);
    // Not a thin event: not listed, not retrievable on the v2 route.
    assert!(app.list_all(EVENTS, TEST_KEY).await.is_empty());
    app.get(&format!("{EVENTS}/{id}")).await.assert_error(
        404,
        "invalid_request_error",
        "not_found",
    );
}

#[tokio::test]
async fn invalid_publishes_are_refused() {
    let app = TestApp::start().await;
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("missing type", json!({}), vec!["type"]),
        ("type not a string", json!({"type": 5}), vec!["type"]),
        (
            "malformed type",
            json!({"type": "Customer Created"}),
            vec!["type"],
        ),
        ("wildcard type", json!({"type": "*"}), vec!["type"]),
        (
            "ping type",
            json!({"type": "v2.core.event_destination.ping"}),
            vec!["type"],
        ),
        (
            "related_object not an object",
            json!({"type": "v2.a.b", "related_object": "x"}),
            vec!["related_object"],
        ),
        (
            "related_object without url",
            json!({"type": "v2.a.b", "related_object": {"type": "t"}}),
            vec!["related_object.url"],
        ),
        (
            "related_object without type",
            json!({"type": "v2.a.b", "related_object": {"url": "/v2/x"}}),
            vec!["related_object.type"],
        ),
        (
            "absolute related url",
            json!({"type": "v2.a.b", "related_object": {"type": "t", "url": "https://127.0.0.1:9/x"}}),
            vec!["related_object.url"],
        ),
        (
            "relative without slash",
            json!({"type": "v2.a.b", "related_object": {"type": "t", "url": "v2/x"}}),
            vec!["related_object.url"],
        ),
        (
            "unknown related field",
            json!({"type": "v2.a.b", "related_object": {"type": "t", "url": "/x", "name": "n"}}),
            vec!["related_object.name"],
        ),
        (
            "data not an object",
            json!({"type": "v2.a.b", "data": [1]}),
            vec!["data"],
        ),
        (
            "changes not an object",
            json!({"type": "v2.a.b", "changes": "x"}),
            vec!["changes"],
        ),
        (
            "unknown field",
            json!({"type": "v2.a.b", "colour": "blue"}),
            vec!["colour"],
        ),
        (
            "snapshot without data",
            json!({"type": "customer.created"}),
            vec!["data"],
        ),
        (
            "snapshot without data.object",
            json!({"type": "customer.created", "data": {}}),
            vec!["data.object"],
        ),
        (
            "snapshot data.object not an object",
            json!({"type": "customer.created", "data": {"object": 1}}),
            vec!["data.object"],
        ),
        (
            "snapshot with related_object",
            json!({"type": "customer.created", "data": {"object": {}}, "related_object": {"type": "customer", "url": "/v1/customers/c"}}),
            vec!["related_object"],
        ),
        (
            "snapshot with changes",
            json!({"type": "customer.created", "data": {"object": {}}, "changes": {}}),
            vec!["changes"],
        ),
        (
            "snapshot unknown data field",
            json!({"type": "customer.created", "data": {"object": {}, "extra": 1}}),
            vec!["data.extra"],
        ),
    ];
    let before = app.visible_state().await;
    for (case, body, paths) in cases {
        let r = app.post(EVENTS, body).await;
        assert_eq!(r.status, 400, "{case}: {}", r.body);
        r.assert_invalid(&paths);
        // An unusable type is the only complaint: what else is required depends on the type.
        if paths == ["type"] {
            let message = r.body["error"]["message"].as_str().unwrap_or_default();
            assert!(!message.contains("'data"), "{case}: {message}");
        }
    }
    assert_eq!(app.visible_state().await, before);
}

#[tokio::test]
async fn list_filters() {
    let app = TestApp::start().await;
    // e1 at T0, e2 at T0+1s, e3 at T0+2s; a snapshot event in between is never listed.
    let e1 = app
        .publish(json!({"type": "v2.test.widget.created", "related_object": {"id": "wid_a", "type": "widget", "url": "/v2/widgets/wid_a"}}))
        .await;
    app.advance_ms(1000);
    let e2 = app
        .publish(json!({"type": "v1.test.widget.updated", "related_object": {"id": "wid_b", "type": "widget", "url": "/v2/widgets/wid_b"}}))
        .await;
    app.publish(customer_created("cus_1")).await;
    app.advance_ms(1000);
    let e3 = app
        .publish(json!({"type": "v2.test.widget.created", "related_object": {"id": "wid_b", "type": "widget", "url": "/v2/widgets/wid_b"}}))
        .await;
    let (e1, e2, e3) = (id_of(&e1), id_of(&e2), id_of(&e3));
    let cases: Vec<(&str, Vec<&String>)> = vec![
        ("", vec![&e3, &e2, &e1]),
        ("object_id=wid_b", vec![&e3, &e2]),
        ("object_id=wid_a", vec![&e1]),
        ("object_id=wid_none", vec![]),
        ("types[0]=v2.test.widget.created", vec![&e3, &e1]),
        ("types[0]=v1.test.widget.updated", vec![&e2]),
        (
            "types[0]=v2.test.widget.created&types[1]=v1.test.widget.updated",
            vec![&e3, &e2, &e1],
        ),
        ("types[0]=customer.created", vec![]),
        ("created[gte]=2026-03-01T12:00:01.123Z", vec![&e3, &e2]),
        ("created[gt]=2026-03-01T12:00:01.123Z", vec![&e3]),
        ("created[lt]=2026-03-01T12:00:01.123Z", vec![&e1]),
        ("created[lte]=2026-03-01T12:00:01.123Z", vec![&e2, &e1]),
        (
            "created[gt]=2026-03-01T12:00:00.123Z&created[lt]=2026-03-01T12:00:02.123Z",
            vec![&e2],
        ),
        (
            "created[gte]=2026-03-01T13:00:01.123%2B01:00",
            vec![&e3, &e2],
        ),
        ("created[gt]=2026-03-01T12:00:02.123Z", vec![]),
        ("object_id=wid_b&types[0]=v2.test.widget.created", vec![&e3]),
        (
            "object_id=wid_b&created[lt]=2026-03-01T12:00:02Z",
            vec![&e2],
        ),
    ];
    for (query, expected) in cases {
        let r = app.get(&format!("{EVENTS}?{query}")).await;
        let data = r.assert_ok()["data"].as_array().unwrap().clone();
        assert_eq!(
            ids(&data),
            expected.into_iter().cloned().collect::<Vec<_>>(),
            "{query}"
        );
        assert_eq!(r.body["next_page_url"], Value::Null, "{query}");
        assert_eq!(r.body["previous_page_url"], Value::Null, "{query}");
        for e in &data {
            assert_eq!(e["object"], "v2.core.event");
        }
    }
}

#[tokio::test]
async fn at_most_20_types() {
    let app = TestApp::start().await;
    let query = |n: usize| {
        (0..n)
            .map(|i| format!("types[{i}]=v2.test.t{i}"))
            .collect::<Vec<_>>()
            .join("&")
    };
    app.get(&format!("{EVENTS}?{}", query(20)))
        .await
        .assert_ok();
    let r = app.get(&format!("{EVENTS}?{}", query(21))).await;
    r.assert_invalid(&["types"]);
}

#[tokio::test]
async fn ping_creates_a_ping_event() {
    let app = TestApp::start().await;
    // Ping works whatever the destination's events, payload or status.
    let thin = app
        .create_destination(webhook("thin", &["v1.billing.meter.no_meter_found"]))
        .await;
    let snapshot = app
        .create_destination(webhook("snap", &["customer.created"]))
        .await;
    let disabled = app.create_destination(webhook("off", &["*"])).await;
    app.post(
        &format!("{DESTINATIONS}/{}/disable", id_of(&disabled)),
        json!({}),
    )
    .await
    .assert_ok();
    let bridge = app
        .create_destination(json!({
            "name": "bus", "type": "amazon_eventbridge", "event_payload": "thin", "enabled_events": ["*"],
            "amazon_eventbridge": {"aws_account_id": "111122223333", "aws_region": "us-east-1"}
        }))
        .await;
    for d in [&thin, &snapshot, &disabled, &bridge] {
        let ed = id_of(d);
        app.advance_ms(10);
        let r = app
            .send(
                Call::post(&format!("{DESTINATIONS}/{ed}/ping"), json!({}))
                    .idem(&format!("ping-{ed}")),
            )
            .await;
        let event = r.assert_ok().clone();
        let id = id_of(&event);
        assert!(id.starts_with("evt_test_"), "{id}");
        assert_eq!(
            event,
            json!({
                "id": id,
                "object": "v2.core.event",
                "context": null,
                "created": event["created"],
                "data": null,
                "livemode": false,
                "reason": {"type": "request", "request": {"id": r.header("request-id").unwrap(), "idempotency_key": format!("ping-{ed}")}},
                "related_object": {
                    "id": ed,
                    "type": "v2.core.event_destination",
                    "url": format!("/v2/core/event_destinations/{ed}")
                },
                "type": "v2.core.event_destination.ping"
            })
        );
        assert!(is_rfc3339_ms_z(event["created"].as_str().unwrap()));
        assert_eq!(app.get(&format!("{EVENTS}/{id}")).await.assert_ok(), &event);
        let listed = app
            .get(&format!(
                "{EVENTS}?object_id={ed}&types[0]=v2.core.event_destination.ping"
            ))
            .await;
        assert_eq!(listed.assert_ok()["data"], json!([event]));
    }
    // The ping did not change the destinations.
    let got = app
        .get(&format!("{DESTINATIONS}/{}", id_of(&disabled)))
        .await;
    assert_eq!(got.assert_ok()["status"], "disabled");
}
