//! `Idempotency-Key`: replays change nothing and answer the current state; other parameters → 409;
//! keys are scoped by account, mode and path; concurrent duplicates create one object; failed
//! requests store no key.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::*;

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// Everything observable: the visible state plus the destination and the snapshot events.
async fn observe(app: &TestApp, dest: &str, snapshots: &[String]) -> Value {
    let mut v = vec![app.visible_state().await];
    let d = app
        .get(&format!(
            "{DESTINATIONS}/{dest}?include[0]=webhook_endpoint.url"
        ))
        .await;
    v.push(json!([d.status, d.body]));
    for id in snapshots {
        let e = app.get(&format!("/v1/events/{id}")).await;
        v.push(json!([e.status, e.body]));
    }
    Value::Array(v)
}

#[tokio::test]
async fn replays_return_the_same_result_and_change_nothing() {
    let app = TestApp::start().await;
    let d = app.create_destination(webhook("target", &["*"])).await;
    let target = id_of(&d);
    let doomed = app.create_destination(webhook("doomed", &["*"])).await;
    let doomed = id_of(&doomed);
    let p = format!("{DESTINATIONS}/{target}");
    let snap = app.publish(customer_created("cus_seed")).await;
    // (operation, method, path, body)
    let cases: Vec<(&str, Method, String, Option<Value>)> = vec![
        (
            "create",
            Method::POST,
            DESTINATIONS.to_owned(),
            Some(with(
                webhook("new", &["*"]),
                "include",
                json!(["webhook_endpoint.signing_secret", "webhook_endpoint.url"]),
            )),
        ),
        (
            "update",
            Method::POST,
            p.clone(),
            Some(json!({"name": "renamed", "metadata": {"a": "1"}})),
        ),
        (
            "disable",
            Method::POST,
            format!("{p}/disable"),
            Some(json!({})),
        ),
        (
            "enable",
            Method::POST,
            format!("{p}/enable"),
            Some(json!({})),
        ),
        ("ping", Method::POST, format!("{p}/ping"), Some(json!({}))),
        (
            "publish thin",
            Method::POST,
            EVENTS.to_owned(),
            Some(json!({"type": "v2.test.thing", "data": {"n": 1}})),
        ),
        (
            "publish snapshot",
            Method::POST,
            EVENTS.to_owned(),
            Some(customer_created("cus_2")),
        ),
        (
            "delete",
            Method::DELETE,
            format!("{DESTINATIONS}/{doomed}"),
            None,
        ),
    ];
    for (op, method, path, body) in cases {
        let call = || {
            let c = match &body {
                Some(b) => Call::post(&path, b.clone()),
                None => Call::new(method.clone(), &path),
            };
            c.idem(&format!("replay-{op}"))
        };
        let first = app.send(call()).await;
        assert_eq!(first.status, 200, "{op}: {}", first.body);
        let snapshots = vec![id_of(&snap), id_of(&first.body)];
        let state = observe(&app, &target, &snapshots).await;
        app.advance_ms(5000);
        for attempt in 0..2 {
            let again = app.send(call()).await;
            assert_eq!(again.status, 200, "{op} replay {attempt}: {}", again.body);
            assert_eq!(again.body, first.body, "{op} replay {attempt}");
            assert_eq!(
                observe(&app, &target, &snapshots).await,
                state,
                "{op}: nothing changed"
            );
        }
    }
}

#[tokio::test]
async fn replay_answers_the_current_state() {
    let app = TestApp::start().await;
    let d = app.create_destination(webhook("state", &["*"])).await;
    let p = format!("{DESTINATIONS}/{}", id_of(&d));
    let disabled = app
        .send(Call::post(&format!("{p}/disable"), json!({})).idem("dis"))
        .await;
    assert_eq!(disabled.assert_ok()["status"], "disabled");
    app.advance_ms(1000);
    let enabled = app.post(&format!("{p}/enable"), json!({})).await;
    assert_eq!(enabled.assert_ok()["status"], "enabled");
    app.advance_ms(1000);
    let replay = app
        .send(Call::post(&format!("{p}/disable"), json!({})).idem("dis"))
        .await;
    assert_eq!(
        replay.assert_ok(),
        &enabled.body,
        "current state, not a copy"
    );
    assert_eq!(app.get(&p).await.assert_ok(), &enabled.body);
    // A replayed create with the secret included shows the secret again.
    let body = with(
        webhook("secret", &["*"]),
        "include",
        json!(["webhook_endpoint.signing_secret"]),
    );
    let first = app
        .send(Call::post(DESTINATIONS, body.clone()).idem("create-secret"))
        .await;
    let secret = first.assert_ok()["webhook_endpoint"]["signing_secret"].clone();
    assert!(secret.as_str().unwrap().starts_with("whsec_"));
    app.post(
        &format!("{DESTINATIONS}/{}", id_of(&first.body)),
        json!({"name": "renamed"}),
    )
    .await
    .assert_ok();
    let replay = app
        .send(Call::post(DESTINATIONS, body).idem("create-secret"))
        .await;
    assert_eq!(replay.assert_ok()["id"], first.body["id"]);
    assert_eq!(replay.body["name"], "renamed");
    assert_eq!(replay.body["webhook_endpoint"]["signing_secret"], secret);
}

#[tokio::test]
async fn same_key_other_parameters_is_409() {
    let app = TestApp::start().await;
    let d = app.create_destination(webhook("conflict", &["*"])).await;
    let p = format!("{DESTINATIONS}/{}", id_of(&d));
    // (path, first body, second body)
    let cases = [
        (
            DESTINATIONS.to_owned(),
            webhook("one", &["*"]),
            webhook("two", &["*"]),
        ),
        (p.clone(), json!({"name": "a"}), json!({"name": "b"})),
        (
            p.clone(),
            json!({"name": "a", "include": []}),
            json!({"name": "a"}),
        ),
        (
            EVENTS.to_owned(),
            json!({"type": "v2.test.a"}),
            json!({"type": "v2.test.b"}),
        ),
        (
            EVENTS.to_owned(),
            customer_created("cus_1"),
            customer_created("cus_2"),
        ),
    ];
    for (i, (path, first, second)) in cases.into_iter().enumerate() {
        let key = format!("conflict-{i}");
        app.send(Call::post(&path, first).idem(&key))
            .await
            .assert_ok();
        let before = app.visible_state().await;
        let r = app.send(Call::post(&path, second).idem(&key)).await;
        assert_eq!(r.status, 409, "case {i}: {}", r.body);
        r.assert_error(409, "idempotency_error", "idempotency_error");
        assert_eq!(r.header("stripe-should-retry"), Some("false"), "case {i}");
        assert_eq!(
            app.visible_state().await,
            before,
            "case {i}: nothing stored"
        );
    }
}

#[tokio::test]
async fn body_comparison_is_canonical() {
    let app = TestApp::start().await;
    let a = r#"{"name":"canon","type":"webhook_endpoint","event_payload":"thin","enabled_events":["*"],"webhook_endpoint":{"url":"https://127.0.0.1:9/c"}}"#;
    let b = r#"{"webhook_endpoint":{"url":"https://127.0.0.1:9/c"},"enabled_events":["*"],"event_payload":"thin","type":"webhook_endpoint","name":"canon"}"#;
    let send = |body: &str| {
        Call::new(Method::POST, DESTINATIONS)
            .header("content-type", "application/json")
            .raw_body(body.as_bytes().to_vec())
            .idem("canonical")
    };
    let first = app.send(send(a)).await;
    let second = app.send(send(b)).await;
    assert_eq!(second.assert_ok()["id"], first.assert_ok()["id"]);
    assert_eq!(app.list_all(DESTINATIONS, TEST_KEY).await.len(), 1);
    // `{}` and an empty body are the same request.
    let p = format!("{DESTINATIONS}/{}/disable", id_of(&first.body));
    let r1 = app.send(Call::post(&p, json!({})).idem("empty")).await;
    let r2 = app.send(Call::new(Method::POST, &p).idem("empty")).await;
    assert_eq!(r2.assert_ok(), r1.assert_ok());
}

#[tokio::test]
async fn keys_are_scoped_by_account_mode_and_path() {
    let app = TestApp::start().await;
    let child = app.connected_account(&app.account_id).await;
    let live_body = with(
        webhook("scoped", &["*"]),
        "webhook_endpoint",
        json!({"url": "https://127.0.0.1:9/s"}),
    );
    let key = "shared-key";
    let test = app
        .send(Call::post(DESTINATIONS, live_body.clone()).idem(key))
        .await;
    let live = app
        .send(
            Call::post(DESTINATIONS, live_body.clone())
                .idem(key)
                .key(LIVE_KEY),
        )
        .await;
    let in_child = app
        .send(
            Call::post(DESTINATIONS, live_body.clone())
                .idem(key)
                .context(&child.account_id),
        )
        .await;
    let ids: Vec<String> = [&test, &live, &in_child]
        .iter()
        .map(|r| id_of(r.assert_ok()))
        .collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    // Same key, other paths: independent operations even with other bodies.
    let event = app
        .send(Call::post(EVENTS, json!({"type": "v2.test.x"})).idem(key))
        .await;
    event.assert_ok();
    let other = app.create_destination(webhook("other", &["*"])).await;
    for id in [&ids[0], &id_of(&other)] {
        let r = app
            .send(Call::post(&format!("{DESTINATIONS}/{id}/disable"), json!({})).idem(key))
            .await;
        assert_eq!(r.assert_ok()["status"], "disabled");
        assert_eq!(r.body["id"], json!(id));
    }
    let r = app
        .send(Call::post(&format!("{DESTINATIONS}/{}", ids[0]), json!({"name": "x"})).idem(key))
        .await;
    assert_eq!(r.assert_ok()["name"], "x");
    assert_eq!(app.list_all(DESTINATIONS, TEST_KEY).await.len(), 2);
    assert_eq!(app.list_all(DESTINATIONS, LIVE_KEY).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_create_exactly_one_object() {
    let app = std::sync::Arc::new(TestApp::start().await);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.send(Call::post(DESTINATIONS, webhook("race", &["*"])).idem("race"))
                .await
        }));
    }
    let mut ids_seen = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, 200, "{}", r.body);
        ids_seen.insert(id_of(&r.body));
    }
    assert_eq!(ids_seen.len(), 1, "{ids_seen:?}");
    assert_eq!(app.list_all(DESTINATIONS, TEST_KEY).await.len(), 1);
    // And for events.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.send(Call::post(EVENTS, json!({"type": "v2.test.race"})).idem("race-event"))
                .await
        }));
    }
    let mut events = std::collections::BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!(r.status, 200, "{}", r.body);
        events.insert(id_of(&r.body));
    }
    assert_eq!(events.len(), 1);
    assert_eq!(app.list_all(EVENTS, TEST_KEY).await.len(), 1);
}

#[tokio::test]
async fn failed_requests_store_no_key() {
    let app = TestApp::start().await;
    let bad = app
        .send(
            Call::post(DESTINATIONS, with(webhook("x", &["*"]), "name", json!("")))
                .idem("retry-me"),
        )
        .await;
    bad.assert_invalid(&["name"]);
    let good = app
        .send(Call::post(DESTINATIONS, webhook("fixed", &["*"])).idem("retry-me"))
        .await;
    let id = id_of(good.assert_ok());
    let again = app
        .send(Call::post(DESTINATIONS, webhook("fixed", &["*"])).idem("retry-me"))
        .await;
    assert_eq!(id_of(again.assert_ok()), id);
    // 404 and 400 answers store no key either.
    let r = app
        .send(Call::post(&format!("{DESTINATIONS}/ed_test_missing/ping"), json!({})).idem("k404"))
        .await;
    r.assert_error(404, "invalid_request_error", "not_found");
    let r = app
        .send(Call::post(EVENTS, json!({"type": "v2.core.event_destination.ping"})).idem("k400"))
        .await;
    r.assert_invalid(&["type"]);
    let r = app
        .send(Call::post(EVENTS, json!({"type": "v2.test.ok"})).idem("k400"))
        .await;
    r.assert_ok();
    assert_eq!(app.list_all(DESTINATIONS, TEST_KEY).await.len(), 1);
}

#[tokio::test]
async fn key_length_limit() {
    let app = TestApp::start().await;
    let ok = "k".repeat(255);
    app.send(Call::post(EVENTS, json!({"type": "v2.test.k"})).idem(&ok))
        .await
        .assert_ok();
    let before = app.visible_state().await;
    let r = app
        .send(Call::post(EVENTS, json!({"type": "v2.test.k"})).idem(&"k".repeat(256)))
        .await;
    r.assert_error(400, "invalid_request_error", "invalid_idempotency_key");
    assert_eq!(app.visible_state().await, before);
}

#[tokio::test]
async fn keys_expire_after_30_days() {
    let app = TestApp::start().await;
    let first = app
        .send(Call::post(EVENTS, json!({"type": "v2.test.a"})).idem("old-key"))
        .await;
    first.assert_ok();
    app.advance_ms(31 * 24 * 3600 * 1000);
    let r = app
        .send(Call::post(EVENTS, json!({"type": "v2.test.b"})).idem("old-key"))
        .await;
    assert_eq!(
        r.status, 200,
        "a key older than 30 days is a new operation: {}",
        r.body
    );
    assert_ne!(r.body["id"], first.body["id"]);
}

#[tokio::test]
async fn publish_records_the_key_in_reason() {
    let app = TestApp::start().await;
    let r = app
        .send(Call::post(EVENTS, json!({"type": "v2.test.reason"})).idem("my-key"))
        .await;
    assert_eq!(
        r.assert_ok()["reason"],
        json!({"type": "request", "request": {"id": r.header("request-id").unwrap(), "idempotency_key": "my-key"}})
    );
    // A replay returns the original event, with the original request id.
    let again = app
        .send(Call::post(EVENTS, json!({"type": "v2.test.reason"})).idem("my-key"))
        .await;
    assert_eq!(again.assert_ok(), &r.body);
    assert_ne!(again.header("request-id"), r.header("request-id"));
}
