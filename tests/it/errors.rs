//! Error answers: unknown routes, wrong methods, unreadable bodies, oversized bodies, bad and
//! foreign ids. Every one is the v2 envelope with a `Request-Id`, and stores nothing.

use reqwest::Method;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn unknown_routes_are_404_unrecognized_request_url() {
    let app = TestApp::start().await;
    let before = app.visible_state().await;
    let cases = [
        (Method::GET, "/v2/core/nothing_here"),
        (Method::GET, "/v2/core/event_destinations/ed_test_x/bogus"),
        (Method::POST, "/v1/customers"),
        (Method::GET, "/"),
        (Method::DELETE, "/v2"),
    ];
    for (method, path) in cases {
        for call in [
            Call::new(method.clone(), path),
            Call::new(method.clone(), path).no_key(),
        ] {
            let r = app.send(call.raw_body(b"{}".to_vec())).await;
            assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
            r.assert_error(404, "invalid_request_error", "unrecognized_request_url");
        }
    }
    assert_eq!(app.visible_state().await, before);
}

#[tokio::test]
async fn wrong_methods_are_405() {
    let app = TestApp::start().await;
    let cases = [
        (Method::PUT, "/v2/core/event_destinations"),
        (Method::DELETE, "/v2/core/event_destinations"),
        (Method::PATCH, "/v2/core/event_destinations/ed_test_x"),
        (Method::GET, "/v2/core/event_destinations/ed_test_x/disable"),
        (Method::DELETE, "/v2/core/event_destinations/ed_test_x/ping"),
        (Method::DELETE, "/v2/core/events"),
        (Method::POST, "/v2/core/events/evt_test_x"),
        (Method::POST, "/v1/events/evt_test_x"),
    ];
    let before = app.visible_state().await;
    for (method, path) in cases {
        let call =
            Call::new(method.clone(), path).raw_body(webhook("x", &["*"]).to_string().into_bytes());
        let r = app.send(call).await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        r.assert_error(405, "invalid_request_error", "method_not_allowed");
    }
    assert_eq!(app.visible_state().await, before);
}

#[tokio::test]
async fn unreadable_bodies_are_400_naming_body() {
    let app = TestApp::start().await;
    let d = app.create_destination(webhook("target", &["*"])).await;
    let id = d["id"].as_str().unwrap();
    let paths = [
        DESTINATIONS.to_owned(),
        format!("{DESTINATIONS}/{id}"),
        format!("{DESTINATIONS}/{id}/disable"),
        format!("{DESTINATIONS}/{id}/ping"),
        EVENTS.to_owned(),
    ];
    let bodies: [(&str, Vec<u8>); 9] = [
        ("array", b"[]".to_vec()),
        ("string", b"\"name\"".to_vec()),
        ("number", b"1".to_vec()),
        ("null", b"null".to_vec()),
        ("truncated", br#"{"name": "#.to_vec()),
        ("trailing garbage", br#"{"name": "x"} trailing"#.to_vec()),
        ("single quotes", b"{'name': 'x'}".to_vec()),
        ("invalid UTF-8", b"{\"name\": \"\xff\xfe\"}".to_vec()),
        ("form encoded", b"name=x&type=webhook_endpoint".to_vec()),
    ];
    let before = app.visible_state().await;
    for path in &paths {
        for (case, bytes) in &bodies {
            let r = app
                .send(
                    Call::new(Method::POST, path)
                        .header("content-type", "application/json")
                        .raw_body(bytes.clone()),
                )
                .await;
            assert_eq!(r.status, 400, "{path} {case}: {}", r.body);
            r.assert_invalid(&["body"]);
        }
    }
    assert_eq!(app.visible_state().await, before, "nothing stored");
    let got = app.get(&format!("{DESTINATIONS}/{id}")).await;
    assert_eq!(got.assert_ok()["status"], "enabled");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = TestApp::start_with(|c| c.api.max_body_bytes = 1000).await;
    let before = app.visible_state().await;
    let big = with(
        webhook("big", &["*"]),
        "description",
        json!("d".repeat(1200)),
    );
    let r = app.post(DESTINATIONS, big).await;
    r.assert_error(413, "invalid_request_error", "request_too_large");
    let r = app
        .post(
            EVENTS,
            json!({"type": "v2.test.big", "data": {"x": "y".repeat(2000)}}),
        )
        .await;
    r.assert_error(413, "invalid_request_error", "request_too_large");
    assert_eq!(app.visible_state().await, before, "nothing stored");
    // Just under the limit is fine.
    let body = webhook("small", &["*"]);
    let room = 990 - body.to_string().len() - ",\"description\":\"\"".len();
    let small = with(body, "description", json!("d".repeat(room)));
    assert!(small.to_string().len() <= 1000);
    app.create_destination(small).await;
}

#[tokio::test]
async fn ids_with_a_wrong_prefix_are_400_naming_id() {
    let app = TestApp::start().await;
    let before = app.visible_state().await;
    let cases = [
        (Method::GET, format!("{DESTINATIONS}/evt_test_123")),
        (Method::POST, format!("{DESTINATIONS}/cus_123")),
        (Method::DELETE, format!("{DESTINATIONS}/we_123")),
        (Method::POST, format!("{DESTINATIONS}/123/disable")),
        (Method::POST, format!("{DESTINATIONS}/ed/enable")),
        (Method::POST, format!("{DESTINATIONS}/ed_/ping")),
        (Method::GET, format!("{EVENTS}/ed_test_123")),
        (Method::GET, format!("{EVENTS}/evt")),
        (Method::GET, "/v1/events/cus_123".to_owned()),
    ];
    for (method, path) in cases {
        let mut call = Call::new(method.clone(), &path);
        if method == Method::POST {
            call = call.raw_body(b"{}".to_vec());
        }
        let r = app.send(call).await;
        assert_eq!(r.status, 400, "{method} {path}: {}", r.body);
        r.assert_invalid(&["id"]);
    }
    assert_eq!(app.visible_state().await, before);
}

#[tokio::test]
async fn unknown_foreign_and_other_mode_ids_are_404() {
    let app = TestApp::start().await;
    let d = app.create_destination(webhook("mine", &["*"])).await;
    let id = d["id"].as_str().unwrap().to_owned();
    let event = app.publish(json!({"type": "v2.test.thing.happened"})).await;
    let evt = event["id"].as_str().unwrap().to_owned();
    let snap = app.publish(customer_created("cus_1")).await;
    let snap_id = snap["id"].as_str().unwrap().to_owned();
    let child = app.connected_account(&app.account_id).await;
    let other_root = app.store().create_account(None).await.unwrap();

    let dest_calls = |id: &str| {
        vec![
            Call::get(&format!("{DESTINATIONS}/{id}")),
            Call::post(&format!("{DESTINATIONS}/{id}"), json!({"name": "stolen"})),
            Call::post(&format!("{DESTINATIONS}/{id}/disable"), json!({})),
            Call::post(&format!("{DESTINATIONS}/{id}/enable"), json!({})),
            Call::post(&format!("{DESTINATIONS}/{id}/ping"), json!({})),
            Call::delete(&format!("{DESTINATIONS}/{id}")),
        ]
    };
    let mut cases: Vec<(&str, Call)> = Vec::new();
    for c in dest_calls("ed_test_doesnotexist0000") {
        cases.push(("unknown destination", c));
    }
    for c in dest_calls(&id) {
        cases.push(("live key, test destination", c.clone().key(LIVE_KEY)));
        cases.push(("connected account", c.clone().context(&child.account_id)));
        cases.push(("child's own key", c.clone().key(&child.test_key)));
        cases.push(("another root account", c.key(&other_root.test_key)));
    }
    for p in [format!("{EVENTS}/{evt}"), format!("/v1/events/{snap_id}")] {
        cases.push(("event, live key", Call::get(&p).key(LIVE_KEY)));
        cases.push(("event, child", Call::get(&p).context(&child.account_id)));
        cases.push(("event, other root", Call::get(&p).key(&other_root.test_key)));
    }
    cases.push((
        "unknown event",
        Call::get(&format!("{EVENTS}/evt_test_doesnotexist")),
    ));
    cases.push((
        "unknown v1 event",
        Call::get("/v1/events/evt_test_doesnotexist"),
    ));
    cases.push((
        "snapshot event on the v2 route",
        Call::get(&format!("{EVENTS}/{snap_id}")),
    ));
    cases.push((
        "thin event on the v1 route",
        Call::get(&format!("/v1/events/{evt}")),
    ));

    let before = app.visible_state().await;
    for (case, call) in cases {
        let what = format!("{case}: {} {}", call.method, call.path);
        let r = app.send(call).await;
        assert_eq!(r.status, 404, "{what}: {}", r.body);
        r.assert_error(404, "invalid_request_error", "not_found");
    }
    assert_eq!(app.visible_state().await, before, "nothing changed");
    let got = app.get(&format!("{DESTINATIONS}/{id}")).await;
    assert_eq!(got.assert_ok()["name"], "mine");
}

#[tokio::test]
async fn every_error_kind_carries_a_request_id_and_json() {
    let app = TestApp::start_with(|c| c.api.max_body_bytes = 1000).await;
    let d = app.create_destination(webhook("x", &["*"])).await;
    let id = d["id"].as_str().unwrap();
    app.send(Call::post(&format!("{DESTINATIONS}/{id}"), json!({"name": "a"})).idem("k"))
        .await
        .assert_ok();
    let cases: Vec<(u16, Call)> = vec![
        (200, Call::get(DESTINATIONS)),
        (400, Call::post(DESTINATIONS, json!({}))),
        (
            400,
            Call::get(DESTINATIONS).header("stripe-version", "banana"),
        ),
        (401, Call::get(DESTINATIONS).no_key()),
        (401, Call::get(DESTINATIONS).key("sk_test_unknownkey000")),
        (403, Call::get(DESTINATIONS).key("rk_test_restricted000")),
        (403, Call::get(DESTINATIONS).context("acct_unknown")),
        (404, Call::get(&format!("{DESTINATIONS}/ed_test_missing"))),
        (404, Call::get("/v2/nope")),
        (405, Call::new(Method::PUT, DESTINATIONS)),
        (
            409,
            Call::post(&format!("{DESTINATIONS}/{id}"), json!({"name": "b"})).idem("k"),
        ),
        (
            413,
            Call::post(DESTINATIONS, json!({"name": "n".repeat(2000)})),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (status, call) in cases {
        let what = format!("{} {}", call.method, call.path);
        let r = app.send(call).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert_request_id(&r);
        assert!(
            seen.insert(r.header("request-id").unwrap().to_owned()),
            "request ids are unique"
        );
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        if status != 200 {
            assert!(r.body["error"]["code"].is_string(), "{what}: {}", r.body);
            assert!(r.body["error"]["type"].is_string(), "{what}: {}", r.body);
            assert!(r.body["error"]["message"].is_string(), "{what}: {}", r.body);
        }
    }
}
