//! Invalid create, update and action bodies: 400 `invalid_fields` naming each field path, and
//! nothing stored.

use serde_json::{json, Map, Value};

use crate::support::*;

fn base() -> Value {
    json!({
        "name": "valid",
        "type": "webhook_endpoint",
        "event_payload": "thin",
        "enabled_events": ["v2.core.event_destination.ping"],
        "webhook_endpoint": {"url": "https://127.0.0.1:9/hook"},
    })
}

fn without(mut body: Value, key: &str) -> Value {
    body.as_object_mut().unwrap().remove(key);
    body
}

fn bridge() -> Value {
    json!({
        "name": "bus", "type": "amazon_eventbridge", "event_payload": "thin",
        "enabled_events": ["*"],
        "amazon_eventbridge": {"aws_account_id": "111122223333", "aws_region": "us-east-1"},
    })
}

fn url(u: &str) -> Value {
    with(base(), "webhook_endpoint", json!({ "url": u }))
}

fn metadata(n: usize) -> Value {
    let m: Map<String, Value> = (0..n).map(|i| (format!("k{i}"), json!("v"))).collect();
    Value::Object(m)
}

/// `(case, body, paths the message must name)`.
fn bad_creates() -> Vec<(&'static str, Value, Vec<&'static str>)> {
    let long = |n: usize| "x".repeat(n);
    let many_types: Vec<String> = (0..501).map(|i| format!("v2.test.t{i}")).collect();
    vec![
        ("missing name", without(base(), "name"), vec!["name"]),
        ("empty name", with(base(), "name", json!("")), vec!["name"]),
        (
            "name 5001 chars",
            with(base(), "name", json!(long(5001))),
            vec!["name"],
        ),
        (
            "name not a string",
            with(base(), "name", json!(1)),
            vec!["name"],
        ),
        (
            "description 5001",
            with(base(), "description", json!(long(5001))),
            vec!["description"],
        ),
        (
            "description not a string",
            with(base(), "description", json!(["a"])),
            vec!["description"],
        ),
        ("missing type", without(base(), "type"), vec!["type"]),
        ("bad type", with(base(), "type", json!("sqs")), vec!["type"]),
        (
            "azure refused",
            with(
                with(
                    without(base(), "webhook_endpoint"),
                    "type",
                    json!("azure_event_grid"),
                ),
                "azure_event_grid",
                json!({"azure_region": "westus", "azure_resource_group_name": "g", "azure_subscription_id": "s"}),
            ),
            vec!["type"],
        ),
        (
            "missing event_payload",
            without(base(), "event_payload"),
            vec!["event_payload"],
        ),
        (
            "bad event_payload",
            with(base(), "event_payload", json!("fat")),
            vec!["event_payload"],
        ),
        (
            "event_payload not a string",
            with(base(), "event_payload", json!(true)),
            vec!["event_payload"],
        ),
        (
            "missing enabled_events",
            without(base(), "enabled_events"),
            vec!["enabled_events"],
        ),
        (
            "empty enabled_events",
            with(base(), "enabled_events", json!([])),
            vec!["enabled_events"],
        ),
        (
            "enabled_events a string",
            with(
                base(),
                "enabled_events",
                json!("v2.core.event_destination.ping"),
            ),
            vec!["enabled_events"],
        ),
        (
            "enabled_events item not a string",
            with(base(), "enabled_events", json!([1])),
            vec!["enabled_events[0]"],
        ),
        (
            "duplicate enabled event",
            with(base(), "enabled_events", json!(["v2.a.b", "v2.a.b"])),
            vec!["enabled_events[1]"],
        ),
        (
            "501 enabled events",
            with(base(), "enabled_events", json!(many_types)),
            vec!["enabled_events"],
        ),
        (
            "malformed event type",
            with(base(), "enabled_events", json!(["Customer Created"])),
            vec!["enabled_events[0]"],
        ),
        (
            "snapshot type on thin",
            with(
                base(),
                "enabled_events",
                json!(["v2.a.b", "customer.created"]),
            ),
            vec!["enabled_events[1]"],
        ),
        (
            "thin type on snapshot",
            with(
                with(base(), "event_payload", json!("snapshot")),
                "enabled_events",
                json!(["v2.core.event_destination.ping"]),
            ),
            vec!["enabled_events[0]"],
        ),
        (
            "organization scope",
            with(base(), "events_from", json!(["@organization_members"])),
            vec!["events_from[0]"],
        ),
        (
            "unknown scope",
            with(base(), "events_from", json!(["@self", "@bogus"])),
            vec!["events_from[1]"],
        ),
        (
            "empty events_from",
            with(base(), "events_from", json!([])),
            vec!["events_from"],
        ),
        (
            "events_from a string",
            with(base(), "events_from", json!("@self")),
            vec!["events_from"],
        ),
        (
            "unknown include",
            with(base(), "include", json!(["webhook_endpoint.bogus"])),
            vec!["include[0]"],
        ),
        (
            "include a string",
            with(base(), "include", json!("webhook_endpoint.url")),
            vec!["include"],
        ),
        (
            "51 metadata keys",
            with(base(), "metadata", metadata(51)),
            vec!["metadata"],
        ),
        (
            "metadata key 41 chars",
            with(
                base(),
                "metadata",
                json!({"abcdefghijabcdefghijabcdefghijabcdefghijk": "v"}),
            ),
            vec!["metadata.abcdefghijabcdefghijabcdefghijabcdefghijk"],
        ),
        (
            "metadata key with [",
            with(base(), "metadata", json!({"a[b": "v"})),
            vec!["metadata.a[b"],
        ),
        (
            "metadata key with ]",
            with(base(), "metadata", json!({"a]": "v"})),
            vec!["metadata.a]"],
        ),
        (
            "metadata value 501",
            with(base(), "metadata", json!({"k": long(501)})),
            vec!["metadata.k"],
        ),
        (
            "metadata value a number",
            with(base(), "metadata", json!({"k": 5})),
            vec!["metadata.k"],
        ),
        (
            "metadata null on create",
            with(base(), "metadata", json!({"k": null})),
            vec!["metadata.k"],
        ),
        (
            "metadata an array",
            with(base(), "metadata", json!(["k"])),
            vec!["metadata"],
        ),
        (
            "snapshot_api_version on thin",
            with(base(), "snapshot_api_version", json!("2025-07-30.basil")),
            vec!["snapshot_api_version"],
        ),
        (
            "malformed snapshot_api_version",
            with(
                with(
                    with(base(), "event_payload", json!("snapshot")),
                    "enabled_events",
                    json!(["customer.created"]),
                ),
                "snapshot_api_version",
                json!("latest"),
            ),
            vec!["snapshot_api_version"],
        ),
        (
            "unknown field",
            with(base(), "colour", json!("blue")),
            vec!["colour"],
        ),
        (
            "missing webhook_endpoint",
            without(base(), "webhook_endpoint"),
            vec!["webhook_endpoint"],
        ),
        (
            "webhook_endpoint a string",
            with(base(), "webhook_endpoint", json!("https://127.0.0.1:9")),
            vec!["webhook_endpoint"],
        ),
        (
            "missing url",
            with(base(), "webhook_endpoint", json!({})),
            vec!["webhook_endpoint.url"],
        ),
        (
            "unknown webhook field",
            with(
                base(),
                "webhook_endpoint",
                json!({"url": "https://127.0.0.1:9/h", "secret": "x"}),
            ),
            vec!["webhook_endpoint.secret"],
        ),
        (
            "url not a string",
            url_value(json!(5)),
            vec!["webhook_endpoint.url"],
        ),
        (
            "url not a URL",
            url("not a url"),
            vec!["webhook_endpoint.url"],
        ),
        (
            "relative url",
            url("/relative/hook"),
            vec!["webhook_endpoint.url"],
        ),
        (
            "url without scheme",
            url("127.0.0.1:9/hook"),
            vec!["webhook_endpoint.url"],
        ),
        (
            "ftp url",
            url("ftp://127.0.0.1:9/hook"),
            vec!["webhook_endpoint.url"],
        ),
        (
            "url with fragment",
            url("https://127.0.0.1:9/hook#frag"),
            vec!["webhook_endpoint.url"],
        ),
        (
            "url with user info",
            url("https://user:pw@127.0.0.1:9/hook"),
            vec!["webhook_endpoint.url"],
        ),
        (
            "url with user name",
            url("https://user@127.0.0.1:9/hook"),
            vec!["webhook_endpoint.url"],
        ),
        (
            "url without host",
            url("https://"),
            vec!["webhook_endpoint.url"],
        ),
        (
            "url 2049 chars",
            url(&format!("https://127.0.0.1:9/{}", long(2049 - 20))),
            vec!["webhook_endpoint.url"],
        ),
        (
            "eventbridge block on a webhook",
            with(
                base(),
                "amazon_eventbridge",
                json!({"aws_account_id": "111122223333", "aws_region": "us-east-1"}),
            ),
            vec!["amazon_eventbridge"],
        ),
        (
            "webhook block on eventbridge",
            with(
                bridge(),
                "webhook_endpoint",
                json!({"url": "https://127.0.0.1:9"}),
            ),
            vec!["webhook_endpoint"],
        ),
        (
            "missing eventbridge block",
            without(bridge(), "amazon_eventbridge"),
            vec!["amazon_eventbridge"],
        ),
        (
            "short aws account",
            with(
                bridge(),
                "amazon_eventbridge",
                json!({"aws_account_id": "1234", "aws_region": "us-east-1"}),
            ),
            vec!["amazon_eventbridge.aws_account_id"],
        ),
        (
            "non-digit aws account",
            with(
                bridge(),
                "amazon_eventbridge",
                json!({"aws_account_id": "11112222333a", "aws_region": "us-east-1"}),
            ),
            vec!["amazon_eventbridge.aws_account_id"],
        ),
        (
            "missing aws region",
            with(
                bridge(),
                "amazon_eventbridge",
                json!({"aws_account_id": "111122223333"}),
            ),
            vec!["amazon_eventbridge.aws_region"],
        ),
        (
            "bad aws region",
            with(
                bridge(),
                "amazon_eventbridge",
                json!({"aws_account_id": "111122223333", "aws_region": "Mars"}),
            ),
            vec!["amazon_eventbridge.aws_region"],
        ),
        (
            "every error is reported",
            with(
                with(
                    without(base(), "name"),
                    "webhook_endpoint",
                    json!({"url": "ftp://x"}),
                ),
                "metadata",
                json!({"k": 1}),
            ),
            vec!["name", "webhook_endpoint.url", "metadata.k"],
        ),
    ]
}

fn url_value(v: Value) -> Value {
    with(base(), "webhook_endpoint", json!({ "url": v }))
}

#[tokio::test]
async fn invalid_creates_are_refused_and_store_nothing() {
    let app = TestApp::start().await;
    app.create_destination(webhook("existing", &["*"])).await;
    let before = app.visible_state().await;
    for (case, body, paths) in bad_creates() {
        let r = app.post(DESTINATIONS, body).await;
        assert_eq!(r.status, 400, "{case}: {}", r.body);
        r.assert_invalid(&paths);
    }
    assert_eq!(app.visible_state().await, before, "nothing stored");
}

#[tokio::test]
async fn boundaries_are_accepted() {
    let app = TestApp::start().await;
    let many_types: Vec<String> = (0..500).map(|i| format!("v2.test.t{i}")).collect();
    let long_url = format!("https://127.0.0.1:9/{}", "x".repeat(2048 - 20));
    assert_eq!(long_url.len(), 2048);
    let cases = [
        with(base(), "name", json!("n".repeat(5000))),
        with(base(), "name", json!("n")),
        with(base(), "description", json!("d".repeat(5000))),
        with(base(), "metadata", metadata(50)),
        with(
            base(),
            "metadata",
            json!({ "k".repeat(40): "v".repeat(500) }),
        ),
        with(base(), "enabled_events", json!(many_types)),
        url(&long_url),
        url("http://127.0.0.1:9/plain-http-in-test-mode"),
        with(base(), "enabled_events", json!(["*"])),
    ];
    for body in cases {
        let r = app.post(DESTINATIONS, body.clone()).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let id = r.body["id"].as_str().unwrap();
        app.delete(&format!("{DESTINATIONS}/{id}"))
            .await
            .assert_ok();
    }
}

/// API.md: `name` is required, 1–5000 characters, not only whitespace.
#[tokio::test]
async fn a_name_of_spaces_is_refused() {
    let app = TestApp::start().await;
    let before = app.visible_state().await;
    let r = app
        .post(DESTINATIONS, with(base(), "name", json!(" ")))
        .await;
    r.assert_invalid(&["name"]);
    assert_eq!(app.visible_state().await, before);
}

#[tokio::test]
async fn live_mode_requires_https() {
    let app = TestApp::start().await;
    let before = app.visible_state().await;
    let r = app
        .send(Call::post(DESTINATIONS, url("http://127.0.0.1:9/hook")).key(LIVE_KEY))
        .await;
    r.assert_invalid(&["webhook_endpoint.url"]);
    assert_eq!(app.visible_state().await, before);
    let d = app
        .create_destination_with(
            Call::post(DESTINATIONS, url("https://127.0.0.1:9/hook")).key(LIVE_KEY),
        )
        .await;
    let r = app
        .send(
            Call::post(
                &format!("{DESTINATIONS}/{}", d["id"].as_str().unwrap()),
                json!({"webhook_endpoint": {"url": "http://127.0.0.1:9/plain"}}),
            )
            .key(LIVE_KEY),
        )
        .await;
    r.assert_invalid(&["webhook_endpoint.url"]);
}

#[tokio::test]
async fn invalid_updates_are_refused_and_change_nothing() {
    let app = TestApp::start().await;
    let d = app
        .create_destination(with(base(), "metadata", json!({"a": "1"})))
        .await;
    let id = d["id"].as_str().unwrap();
    let b = app.create_destination(bridge()).await;
    let bridge_id = b["id"].as_str().unwrap();
    let p = format!("{DESTINATIONS}/{id}");
    let bp = format!("{DESTINATIONS}/{bridge_id}");
    let cases: Vec<(&str, String, Value, Vec<&str>)> = vec![
        (
            "type",
            p.clone(),
            json!({"type": "amazon_eventbridge"}),
            vec!["type"],
        ),
        (
            "event_payload",
            p.clone(),
            json!({"event_payload": "snapshot"}),
            vec!["event_payload"],
        ),
        (
            "events_from",
            p.clone(),
            json!({"events_from": ["@accounts"]}),
            vec!["events_from"],
        ),
        (
            "snapshot_api_version",
            p.clone(),
            json!({"snapshot_api_version": "2025-07-30.basil"}),
            vec!["snapshot_api_version"],
        ),
        (
            "amazon_eventbridge",
            bp.clone(),
            json!({"amazon_eventbridge": {"aws_account_id": "999988887777", "aws_region": "us-east-1"}}),
            vec!["amazon_eventbridge"],
        ),
        (
            "azure_event_grid",
            p.clone(),
            json!({"azure_event_grid": {"azure_region": "westus"}}),
            vec!["azure_event_grid"],
        ),
        ("empty name", p.clone(), json!({"name": ""}), vec!["name"]),
        ("null name", p.clone(), json!({"name": null}), vec!["name"]),
        (
            "null description",
            p.clone(),
            json!({"description": null}),
            vec!["description"],
        ),
        (
            "null enabled_events",
            p.clone(),
            json!({"enabled_events": null}),
            vec!["enabled_events"],
        ),
        (
            "null metadata",
            p.clone(),
            json!({"metadata": null}),
            vec!["metadata"],
        ),
        (
            "null webhook_endpoint",
            p.clone(),
            json!({"webhook_endpoint": null}),
            vec!["webhook_endpoint"],
        ),
        (
            "long name",
            p.clone(),
            json!({"name": "n".repeat(5001)}),
            vec!["name"],
        ),
        (
            "long description",
            p.clone(),
            json!({"description": "d".repeat(5001)}),
            vec!["description"],
        ),
        (
            "empty enabled_events",
            p.clone(),
            json!({"enabled_events": []}),
            vec!["enabled_events"],
        ),
        (
            "snapshot type on thin",
            p.clone(),
            json!({"enabled_events": ["customer.created"]}),
            vec!["enabled_events[0]"],
        ),
        (
            "metadata value 501",
            p.clone(),
            json!({"metadata": {"a": "v".repeat(501)}}),
            vec!["metadata.a"],
        ),
        (
            "metadata value a number",
            p.clone(),
            json!({"metadata": {"a": 1}}),
            vec!["metadata.a"],
        ),
        (
            "51 metadata keys",
            p.clone(),
            json!({"metadata": metadata(51)}),
            vec!["metadata"],
        ),
        (
            "include secret on update",
            p.clone(),
            json!({"include": ["webhook_endpoint.signing_secret"]}),
            vec!["include[0]"],
        ),
        (
            "missing url",
            p.clone(),
            json!({"webhook_endpoint": {}}),
            vec!["webhook_endpoint.url"],
        ),
        (
            "ftp url",
            p.clone(),
            json!({"webhook_endpoint": {"url": "ftp://127.0.0.1:9"}}),
            vec!["webhook_endpoint.url"],
        ),
        (
            "fragment url",
            p.clone(),
            json!({"webhook_endpoint": {"url": "https://127.0.0.1:9/#x"}}),
            vec!["webhook_endpoint.url"],
        ),
        (
            "url on eventbridge",
            bp.clone(),
            json!({"webhook_endpoint": {"url": "https://127.0.0.1:9"}}),
            vec!["webhook_endpoint"],
        ),
        (
            "unknown field",
            p.clone(),
            json!({"status": "disabled"}),
            vec!["status"],
        ),
        (
            "unknown field on disable",
            format!("{p}/disable"),
            json!({"reason": "user"}),
            vec!["reason"],
        ),
        (
            "unknown field on enable",
            format!("{p}/enable"),
            json!({"force": true}),
            vec!["force"],
        ),
        (
            "unknown field on ping",
            format!("{p}/ping"),
            json!({"data": {}}),
            vec!["data"],
        ),
    ];
    let before = app.visible_state().await;
    for (case, path, body, paths) in cases {
        let r = app.post(&path, body).await;
        assert_eq!(r.status, 400, "{case}: {}", r.body);
        r.assert_invalid(&paths);
    }
    assert_eq!(app.visible_state().await, before, "nothing changed");
    let got = app
        .get(&format!("{p}?include[0]=webhook_endpoint.url"))
        .await;
    assert_eq!(got.assert_ok()["metadata"], json!({"a": "1"}));
    assert_eq!(got.body["status"], "enabled");
}

#[tokio::test]
async fn metadata_stays_within_50_keys_after_a_merge() {
    let app = TestApp::start().await;
    let d = app
        .create_destination(with(base(), "metadata", metadata(50)))
        .await;
    let p = format!("{DESTINATIONS}/{}", d["id"].as_str().unwrap());
    let r = app.post(&p, json!({"metadata": {"one_more": "v"}})).await;
    r.assert_invalid(&["metadata"]);
    let got = app.get(&p).await;
    assert_eq!(got.assert_ok()["metadata"], metadata(50));
    // Replacing a key or deleting one and adding another stays within the limit.
    let r = app
        .post(&p, json!({"metadata": {"k0": null, "other": "v"}}))
        .await;
    assert_eq!(r.assert_ok()["metadata"].as_object().unwrap().len(), 50);
}

#[tokio::test]
async fn invalid_query_parameters_are_refused() {
    let app = TestApp::start().await;
    let d = app.create_destination(base()).await;
    let id = d["id"].as_str().unwrap();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("{DESTINATIONS}?colour=blue"), vec!["colour"]),
        (
            format!("{DESTINATIONS}?include[0]=webhook_endpoint.signing_secret"),
            vec!["include[0]"],
        ),
        (
            format!("{DESTINATIONS}/{id}?include[0]=webhook_endpoint.signing_secret"),
            vec!["include[0]"],
        ),
        (
            format!("{DESTINATIONS}/{id}?include[0]=webhook_endpoint.url&include[1]=bogus"),
            vec!["include[1]"],
        ),
        (format!("{DESTINATIONS}/{id}?limit=3"), vec!["limit"]),
        (format!("{EVENTS}?colour=blue"), vec!["colour"]),
        (
            format!("{EVENTS}?types[0]=Not%20A%20Type"),
            vec!["types[0]"],
        ),
        (
            format!("{EVENTS}?created[gt]=yesterday"),
            vec!["created[gt]"],
        ),
        (
            format!("{EVENTS}?created[gte]=2026-13-01T00:00:00Z"),
            vec!["created[gte]"],
        ),
        (
            format!("{EVENTS}?created%5Blt%5D=1700000000"),
            vec!["created[lt]"],
        ),
        (
            format!("{EVENTS}?created[lte]=2026-01-01"),
            vec!["created[lte]"],
        ),
        (
            format!("{EVENTS}?created[after]=2026-01-01T00:00:00Z"),
            vec!["created[after]"],
        ),
        (format!("{EVENTS}/evt_test_x?colour=blue"), vec!["colour"]),
    ];
    for (path, paths) in cases {
        let r = app.get(&path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        r.assert_invalid(&paths);
    }
}
