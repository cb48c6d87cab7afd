//! Event destinations: the object's exact shape, include-gated fields, update, disable/enable, delete.

use serde_json::{json, Value};

use crate::support::*;

fn path(id: &str) -> String {
    format!("{DESTINATIONS}/{id}")
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn create_returns_the_documented_webhook_object() {
    let app = TestApp::start().await;
    let r = app
        .post(
            DESTINATIONS,
            json!({
                "name": "My Event Destination",
                "description": "This is my event destination",
                "type": "webhook_endpoint",
                "event_payload": "thin",
                "events_from": ["@self"],
                "enabled_events": ["v1.billing.meter.error_report_triggered"],
                "webhook_endpoint": {"url": "https://127.0.0.1:9/my/webhook/endpoint"},
                "include": ["webhook_endpoint.url", "webhook_endpoint.signing_secret"],
                "metadata": {"team": "billing"}
            }),
        )
        .await;
    let body = r.assert_ok().clone();
    assert_eq!(r.header("content-type"), Some("application/json"));
    let id = id_of(&body);
    assert!(id.starts_with("ed_test_") && id.len() > 8, "{id}");
    let secret = body["webhook_endpoint"]["signing_secret"]
        .as_str()
        .expect("secret with include");
    assert!(secret.starts_with("whsec_") && secret.len() > 6, "{secret}");
    assert_eq!(
        body,
        json!({
            "id": id,
            "object": "v2.core.event_destination",
            "created": T0,
            "description": "This is my event destination",
            "enabled_events": ["v1.billing.meter.error_report_triggered"],
            "event_payload": "thin",
            "events_from": ["@self"],
            "livemode": false,
            "metadata": {"team": "billing"},
            "name": "My Event Destination",
            "snapshot_api_version": null,
            "status": "enabled",
            "status_details": null,
            "type": "webhook_endpoint",
            "updated": T0,
            "webhook_endpoint": {
                "signing_secret": secret,
                "url": "https://127.0.0.1:9/my/webhook/endpoint"
            }
        })
    );
    // Retrieve: same object, secret never again, url only with include.
    let got = app.get(&path(&id)).await;
    let mut expected = body.clone();
    expected["webhook_endpoint"] = json!({"signing_secret": null, "url": null});
    assert_eq!(got.assert_ok(), &expected);
}

#[tokio::test]
async fn defaults_for_optional_fields() {
    let app = TestApp::start().await;
    let d = app
        .create_destination(webhook("minimal", &["v2.core.event_destination.ping"]))
        .await;
    assert_eq!(d["description"], "");
    assert_eq!(d["events_from"], json!(["@self"]));
    assert_eq!(d["metadata"], json!({}));
    assert_eq!(d["snapshot_api_version"], Value::Null);
    assert_eq!(d["status_details"], Value::Null);
    assert_eq!(
        d["webhook_endpoint"],
        json!({"signing_secret": null, "url": null})
    );
    assert_eq!(
        keys(&d),
        [
            "created",
            "description",
            "enabled_events",
            "event_payload",
            "events_from",
            "id",
            "livemode",
            "metadata",
            "name",
            "object",
            "snapshot_api_version",
            "status",
            "status_details",
            "type",
            "updated",
            "webhook_endpoint"
        ]
    );
    assert!(is_rfc3339_ms_z(d["created"].as_str().unwrap()));
    assert!(is_rfc3339_ms_z(d["updated"].as_str().unwrap()));
}

#[tokio::test]
async fn live_key_creates_live_objects_with_plain_ids() {
    let app = TestApp::start().await;
    let body = with(
        webhook("live", &["*"]),
        "webhook_endpoint",
        json!({"url": "https://127.0.0.1:9/live"}),
    );
    let d = app
        .create_destination_with(Call::post(DESTINATIONS, body).key(LIVE_KEY))
        .await;
    let id = id_of(&d);
    assert!(id.starts_with("ed_") && !id.starts_with("ed_test_"), "{id}");
    assert_eq!(d["livemode"], true);
    let test = app.create_destination(webhook("test", &["*"])).await;
    assert_eq!(test["livemode"], false);
    assert!(id_of(&test).starts_with("ed_test_"));
}

#[tokio::test]
async fn include_gates_url_and_secret() {
    let app = TestApp::start().await;
    let url = hook_url("gated");
    let secret_and_url = |d: &Value| {
        (
            d["webhook_endpoint"]["signing_secret"].is_string(),
            d["webhook_endpoint"]["url"].as_str().map(str::to_owned),
        )
    };
    // Create: (include, secret shown, url shown).
    let create_cases: [(Value, bool, bool); 4] = [
        (json!([]), false, false),
        (json!(["webhook_endpoint.url"]), false, true),
        (json!(["webhook_endpoint.signing_secret"]), true, false),
        (
            json!(["webhook_endpoint.signing_secret", "webhook_endpoint.url"]),
            true,
            true,
        ),
    ];
    let mut id = String::new();
    for (include, secret, shown) in create_cases {
        let d = app
            .create_destination(with(webhook("gated", &["*"]), "include", include.clone()))
            .await;
        assert_eq!(
            secret_and_url(&d),
            (secret, shown.then(|| url.clone())),
            "create include {include}"
        );
        if let Some(s) = d["webhook_endpoint"]["signing_secret"].as_str() {
            assert!(s.starts_with("whsec_"), "{s}");
        }
        id = id_of(&d);
    }
    // Retrieve and list: only the url is includable, in every query form.
    let read_cases = [
        ("", false),
        ("?include[0]=webhook_endpoint.url", true),
        ("?include[]=webhook_endpoint.url", true),
        ("?include=webhook_endpoint.url", true),
        ("?include%5B0%5D=webhook_endpoint.url", true),
        ("?include%5B%5D=webhook_endpoint.url", true),
    ];
    for (query, shown) in read_cases {
        let d = app.get(&format!("{}{query}", path(&id))).await;
        assert_eq!(
            secret_and_url(d.assert_ok()),
            (false, shown.then(|| url.clone())),
            "retrieve {query}"
        );
        let list = app.get(&format!("{DESTINATIONS}{query}")).await;
        for d in list.assert_ok()["data"].as_array().unwrap() {
            assert_eq!(
                secret_and_url(d),
                (false, shown.then(|| url.clone())),
                "list {query}"
            );
        }
    }
    // Update: url with include, never the secret.
    let u = app
        .post(&path(&id), json!({"include": ["webhook_endpoint.url"]}))
        .await;
    assert_eq!(secret_and_url(u.assert_ok()), (false, Some(url.clone())));
    let u = app.post(&path(&id), json!({})).await;
    assert_eq!(secret_and_url(u.assert_ok()), (false, None));
}

#[tokio::test]
async fn events_from_is_echoed_as_sent() {
    let app = TestApp::start().await;
    for events_from in [
        json!(["@self"]),
        json!(["@accounts"]),
        json!(["@self", "@accounts"]),
        json!(["self"]),
        json!(["other_accounts"]),
        json!(["self", "other_accounts"]),
    ] {
        let d = app
            .create_destination(with(
                webhook("scopes", &["*"]),
                "events_from",
                events_from.clone(),
            ))
            .await;
        assert_eq!(d["events_from"], events_from);
        let got = app.get(&path(&id_of(&d))).await;
        assert_eq!(got.assert_ok()["events_from"], events_from);
    }
}

#[tokio::test]
async fn webhook_url_is_stored_exactly_as_given() {
    let app = TestApp::start().await;
    for url in [
        "https://Hooks.Example.invalid:8443/a/B/c?x=1&y=%41",
        "http://127.0.0.1:9/hook",
        "HTTPS://127.0.0.1:9",
        "https://127.0.0.1:9/path?q=a%20b",
    ] {
        let body = json!({
            "name": "exact", "type": "webhook_endpoint", "event_payload": "thin",
            "enabled_events": ["*"], "webhook_endpoint": {"url": url},
            "include": ["webhook_endpoint.url"]
        });
        let d = app.create_destination(body).await;
        assert_eq!(d["webhook_endpoint"]["url"], url);
        let got = app
            .get(&format!(
                "{}?include[0]=webhook_endpoint.url",
                path(&id_of(&d))
            ))
            .await;
        assert_eq!(got.assert_ok()["webhook_endpoint"]["url"], url);
    }
}

#[tokio::test]
async fn snapshot_api_version_defaults_to_the_request_version() {
    let app = TestApp::start().await;
    // (Stripe-Version header, body snapshot_api_version, payload, expected)
    let cases: [(Option<&str>, Option<&str>, &str, Value); 5] = [
        (None, None, "snapshot", json!(DEFAULT_VERSION)),
        (
            Some("2025-07-30.basil"),
            None,
            "snapshot",
            json!("2025-07-30.basil"),
        ),
        (Some("2024-06-20"), None, "snapshot", json!("2024-06-20")),
        (
            Some("2025-07-30.basil"),
            Some("2024-06-20"),
            "snapshot",
            json!("2024-06-20"),
        ),
        (Some("2025-07-30.basil"), None, "thin", Value::Null),
    ];
    for (header, explicit, payload, expected) in cases {
        let events = if payload == "thin" {
            "v2.core.event_destination.ping"
        } else {
            "customer.created"
        };
        let mut body = webhook("snap", &[events]);
        if let Some(v) = explicit {
            body["snapshot_api_version"] = json!(v);
        }
        let mut call = Call::post(DESTINATIONS, body);
        if let Some(h) = header {
            call = call.header("stripe-version", h);
        }
        let d = app.create_destination_with(call).await;
        assert_eq!(d["event_payload"], payload);
        assert_eq!(
            d["snapshot_api_version"], expected,
            "header {header:?}, body {explicit:?}"
        );
        let got = app.get(&path(&id_of(&d))).await;
        assert_eq!(
            got.assert_ok()["snapshot_api_version"],
            expected,
            "retrieve keeps it"
        );
    }
}

#[tokio::test]
async fn eventbridge_destination_shape() {
    let app = TestApp::start().await;
    let d = app
        .create_destination(json!({
            "name": "prod-bus",
            "type": "amazon_eventbridge",
            "event_payload": "snapshot",
            "enabled_events": ["customer.created"],
            "snapshot_api_version": "2025-07-30.basil",
            "amazon_eventbridge": {"aws_account_id": "111122223333", "aws_region": "us-east-1"}
        }))
        .await;
    let id = id_of(&d);
    assert_eq!(
        d,
        json!({
            "id": id,
            "object": "v2.core.event_destination",
            "amazon_eventbridge": {
                "aws_account_id": "111122223333",
                "aws_event_source_arn": format!("arn:aws:events:us-east-1::event-source/aws.partner/stripe.com/{id}"),
                "aws_event_source_status": "pending"
            },
            "created": T0,
            "description": "",
            "enabled_events": ["customer.created"],
            "event_payload": "snapshot",
            "events_from": ["@self"],
            "livemode": false,
            "metadata": {},
            "name": "prod-bus",
            "snapshot_api_version": "2025-07-30.basil",
            "status": "enabled",
            "status_details": null,
            "type": "amazon_eventbridge",
            "updated": T0
        })
    );
    assert_eq!(app.get(&path(&id)).await.assert_ok(), &d);
}

#[tokio::test]
async fn update_changes_fields_merges_metadata_and_bumps_updated() {
    let app = TestApp::start().await;
    let d = app
        .create_destination(with(
            webhook("before", &["v1.billing.meter.error_report_triggered"]),
            "metadata",
            json!({"team": "billing", "keep": "yes"}),
        ))
        .await;
    let id = id_of(&d);
    app.advance_ms(1500);
    let r = app
        .post(
            &path(&id),
            json!({
                "name": "after",
                "description": "A better description",
                "enabled_events": ["v1.billing.meter.no_meter_found", "v2.core.event_destination.ping"],
                "metadata": {"team": null, "new": "value"},
                "webhook_endpoint": {"url": "https://127.0.0.1:9/moved"},
                "include": ["webhook_endpoint.url"]
            }),
        )
        .await;
    let mut expected = d.clone();
    expected["name"] = json!("after");
    expected["description"] = json!("A better description");
    expected["enabled_events"] = json!([
        "v1.billing.meter.no_meter_found",
        "v2.core.event_destination.ping"
    ]);
    expected["metadata"] = json!({"keep": "yes", "new": "value"});
    expected["webhook_endpoint"] =
        json!({"signing_secret": null, "url": "https://127.0.0.1:9/moved"});
    expected["updated"] = json!("2026-03-01T12:00:01.623Z");
    assert_eq!(r.assert_ok(), &expected);
    let got = app
        .get(&format!("{}?include[0]=webhook_endpoint.url", path(&id)))
        .await;
    assert_eq!(got.assert_ok(), &expected);
    // An empty update still answers the object; fields are unchanged.
    app.advance_ms(1000);
    let r = app.post(&path(&id), json!({})).await;
    assert_eq!(r.assert_ok()["name"], "after");
    assert_eq!(r.body["metadata"], json!({"keep": "yes", "new": "value"}));
    assert_eq!(r.body["created"], T0);
}

#[tokio::test]
async fn disable_and_enable_set_status_details_and_bump_updated() {
    let app = TestApp::start().await;
    let d = app.create_destination(webhook("toggle", &["*"])).await;
    let id = id_of(&d);
    // (action, expected status, expected status_details)
    let steps = [
        (
            "disable",
            "disabled",
            json!({"disabled": {"reason": "user"}}),
        ),
        (
            "disable",
            "disabled",
            json!({"disabled": {"reason": "user"}}),
        ),
        ("enable", "enabled", Value::Null),
        ("enable", "enabled", Value::Null),
        (
            "disable",
            "disabled",
            json!({"disabled": {"reason": "user"}}),
        ),
    ];
    let mut last_updated = d["updated"].as_str().unwrap().to_owned();
    for (i, (action, status, details)) in steps.into_iter().enumerate() {
        app.advance_ms(1000);
        let r = app
            .post(&format!("{}/{action}", path(&id)), json!({}))
            .await;
        let body = r.assert_ok();
        assert_eq!(body["status"], status, "step {i} {action}");
        assert_eq!(body["status_details"], details, "step {i} {action}");
        assert_eq!(body["object"], "v2.core.event_destination");
        assert_eq!(body["created"], T0);
        let updated = body["updated"].as_str().unwrap().to_owned();
        assert!(
            updated > last_updated,
            "step {i}: {updated} after {last_updated}"
        );
        assert_eq!(
            body["webhook_endpoint"],
            json!({"signing_secret": null, "url": null})
        );
        last_updated = updated;
        let got = app.get(&path(&id)).await;
        assert_eq!(got.assert_ok(), body, "retrieve after step {i}");
    }
}

#[tokio::test]
async fn delete_returns_deleted_object_then_404_and_leaves_the_list() {
    let app = TestApp::start().await;
    let keep = app.create_destination(webhook("keep", &["*"])).await;
    let gone = app.create_destination(webhook("gone", &["*"])).await;
    let id = id_of(&gone);
    let r = app.delete(&path(&id)).await;
    assert_eq!(
        r.assert_ok(),
        &json!({"id": id, "object": "v2.core.event_destination"})
    );
    let after: [(reqwest::Method, String); 6] = [
        (reqwest::Method::GET, path(&id)),
        (reqwest::Method::POST, path(&id)),
        (reqwest::Method::DELETE, path(&id)),
        (reqwest::Method::POST, format!("{}/disable", path(&id))),
        (reqwest::Method::POST, format!("{}/enable", path(&id))),
        (reqwest::Method::POST, format!("{}/ping", path(&id))),
    ];
    for (method, p) in after {
        let r = app.send(Call::new(method.clone(), &p)).await;
        assert_eq!(r.status, 404, "{method} {p}: {}", r.body);
        r.assert_error(404, "invalid_request_error", "not_found");
    }
    let list = app.list_all(DESTINATIONS, TEST_KEY).await;
    assert_eq!(ids(&list), [id_of(&keep)]);
}

#[tokio::test]
async fn at_most_16_webhook_endpoints_per_account_and_mode() {
    let app = TestApp::start().await;
    let mut created = Vec::new();
    for i in 0..16 {
        created.push(
            app.create_destination(webhook(&format!("hook {i}"), &["*"]))
                .await,
        );
    }
    let before = app.visible_state().await;
    let r = app
        .post(DESTINATIONS, webhook("one too many", &["*"]))
        .await;
    r.assert_error(400, "invalid_request_error", "invalid_fields");
    assert_eq!(app.visible_state().await, before, "nothing stored");
    // EventBridge destinations and the other mode do not count.
    app.create_destination(json!({
        "name": "bus", "type": "amazon_eventbridge", "event_payload": "thin",
        "enabled_events": ["*"],
        "amazon_eventbridge": {"aws_account_id": "111122223333", "aws_region": "eu-west-1"}
    }))
    .await;
    app.create_destination_with(
        Call::post(
            DESTINATIONS,
            with(
                webhook("live", &["*"]),
                "webhook_endpoint",
                json!({"url": "https://127.0.0.1:9/live"}),
            ),
        )
        .key(LIVE_KEY),
    )
    .await;
    // A deleted endpoint frees its slot.
    app.delete(&path(&id_of(&created[0]))).await.assert_ok();
    app.create_destination(webhook("replacement", &["*"])).await;
}
