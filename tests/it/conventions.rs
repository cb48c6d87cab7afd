//! v2 conventions: authentication, `Stripe-Version`, request ids, bodies on actions, `Content-Type`
//! on GET and DELETE, and the query-string forms.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::Method;
use serde_json::json;

use crate::support::*;

fn basic(user: &str) -> String {
    format!("Basic {}", STANDARD.encode(user))
}

#[tokio::test]
async fn authentication_schemes_and_key_kinds() {
    let app = TestApp::start().await;
    // (Authorization header, expected status, expected error code)
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (Some(format!("Bearer {TEST_KEY}")), 200, ""),
        (Some(format!("bearer {TEST_KEY}")), 200, ""),
        (Some(format!("Bearer {LIVE_KEY}")), 200, ""),
        (Some(basic(&format!("{TEST_KEY}:"))), 200, ""),
        (Some(basic(TEST_KEY)), 200, ""),
        (Some(basic(&format!("{LIVE_KEY}:"))), 200, ""),
        (None, 401, "invalid_api_key"),
        (Some("Bearer".to_owned()), 401, "invalid_api_key"),
        (Some("Bearer ".to_owned()), 401, "invalid_api_key"),
        (
            Some("Bearer sk_test_unknownkey0000".to_owned()),
            401,
            "invalid_api_key",
        ),
        (
            Some("Bearer sk_live_unknownkey0000".to_owned()),
            401,
            "invalid_api_key",
        ),
        (Some("Bearer not-a-key".to_owned()), 401, "invalid_api_key"),
        (Some(format!("Token {TEST_KEY}")), 401, "invalid_api_key"),
        (Some(TEST_KEY.to_owned()), 401, "invalid_api_key"),
        (
            Some("Basic !!!not-base64".to_owned()),
            401,
            "invalid_api_key",
        ),
        (
            Some(basic("sk_test_unknownkey0000:")),
            401,
            "invalid_api_key",
        ),
        (
            Some("Bearer rk_test_restricted0000".to_owned()),
            403,
            "secret_key_required",
        ),
        (
            Some("Bearer rk_live_restricted0000".to_owned()),
            403,
            "secret_key_required",
        ),
        (
            Some("Bearer pk_test_publishable0000".to_owned()),
            403,
            "secret_key_required",
        ),
        (
            Some("Bearer pk_live_publishable0000".to_owned()),
            403,
            "secret_key_required",
        ),
        (
            Some(basic("rk_test_restricted0000:")),
            403,
            "secret_key_required",
        ),
    ];
    for (auth, status, code) in cases {
        for call in [
            Call::get(DESTINATIONS),
            Call::post(DESTINATIONS, webhook("auth", &["*"])),
        ] {
            let mut call = call.no_key();
            if let Some(a) = &auth {
                call = call.header("authorization", a);
            }
            let method = call.method.clone();
            let before = if status == 200 {
                None
            } else {
                Some(app.visible_state().await)
            };
            let r = app.send(call).await;
            assert_eq!(r.status, status, "{method} with {auth:?}: {}", r.body);
            assert_request_id(&r);
            if status != 200 {
                r.assert_error(status, "invalid_request_error", code);
                let message = r.body["error"]["message"].as_str().unwrap();
                assert!(
                    !message.contains("unknownkey0000") && !message.contains("restricted0000"),
                    "keys are redacted in messages: {message}"
                );
                assert_eq!(Some(app.visible_state().await), before, "nothing stored");
            }
        }
    }
}

#[tokio::test]
async fn stripe_version_is_echoed_defaulted_or_refused() {
    let app = TestApp::start().await;
    let good = [
        (None, DEFAULT_VERSION),
        (Some("2025-07-30.basil"), "2025-07-30.basil"),
        (Some("2026-11-18.endive"), "2026-11-18.endive"),
        (Some("2026-01-28.preview"), "2026-01-28.preview"),
        (Some("2024-06-20"), "2024-06-20"),
    ];
    for (header, echoed) in good {
        let mut call = Call::get(DESTINATIONS);
        if let Some(h) = header {
            call = call.header("stripe-version", h);
        }
        let r = app.send(call).await;
        r.assert_ok();
        assert_eq!(r.header("stripe-version"), Some(echoed), "{header:?}");
    }
    let before = app.visible_state().await;
    for bad in [
        "banana",
        "2026-1-01",
        "2026-10-28.",
        "20261028",
        "2026/10/28",
        "latest",
        "",
    ] {
        for call in [
            Call::get(DESTINATIONS),
            Call::post(DESTINATIONS, webhook("v", &["*"])),
        ] {
            let r = app.send(call.header("stripe-version", bad)).await;
            assert_eq!(r.status, 400, "{bad:?}: {}", r.body);
            r.assert_error(400, "invalid_request_error", "invalid_stripe_version");
        }
    }
    assert_eq!(app.visible_state().await, before);
}

#[tokio::test]
async fn actions_accept_empty_object_and_empty_bodies() {
    let app = TestApp::start().await;
    let d = app.create_destination(webhook("actions", &["*"])).await;
    let id = d["id"].as_str().unwrap();
    let bodies: [(&str, Option<&str>, &[u8]); 5] = [
        ("{}", Some("application/json"), b"{}"),
        ("empty with json type", Some("application/json"), b""),
        ("empty without type", None, b""),
        ("whitespace", Some("application/json"), b"  \n"),
        ("{} as text/plain", Some("text/plain"), b"{}"),
    ];
    for (case, content_type, bytes) in bodies {
        for (action, status) in [("disable", "disabled"), ("enable", "enabled"), ("ping", "")] {
            let mut call = Call::new(Method::POST, &format!("{DESTINATIONS}/{id}/{action}"))
                .raw_body(bytes.to_vec());
            if let Some(ct) = content_type {
                call = call.header("content-type", ct);
            }
            let r = app.send(call).await;
            assert_eq!(r.status, 200, "{action} with {case}: {}", r.body);
            if action == "ping" {
                assert_eq!(r.body["object"], "v2.core.event");
            } else {
                assert_eq!(r.body["status"], status, "{action} with {case}");
            }
        }
        // An update with an empty body changes nothing.
        let mut call =
            Call::new(Method::POST, &format!("{DESTINATIONS}/{id}")).raw_body(bytes.to_vec());
        if let Some(ct) = content_type {
            call = call.header("content-type", ct);
        }
        let r = app.send(call).await;
        assert_eq!(r.assert_ok()["name"], "actions", "update with {case}");
    }
}

#[tokio::test]
async fn create_ignores_the_content_type() {
    let app = TestApp::start().await;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-8",
    ] {
        let r = app
            .send(
                Call::new(Method::POST, DESTINATIONS)
                    .header("content-type", ct)
                    .raw_body(webhook("ct", &["*"]).to_string().into_bytes()),
            )
            .await;
        assert_eq!(r.status, 200, "{ct}: {}", r.body);
    }
    let r = app
        .send(
            Call::new(Method::POST, DESTINATIONS)
                .raw_body(webhook("none", &["*"]).to_string().into_bytes()),
        )
        .await;
    r.assert_ok();
}

#[tokio::test]
async fn get_and_delete_accept_a_json_content_type_and_empty_body() {
    let app = TestApp::start().await;
    let d = app.create_destination(webhook("node", &["*"])).await;
    let id = d["id"].as_str().unwrap();
    let evt = app.publish(json!({"type": "v2.test.thing"})).await;
    let json_ct = |c: Call| {
        c.header("content-type", "application/json")
            .raw_body(Vec::new())
    };
    for call in [
        Call::get(DESTINATIONS),
        Call::get(&format!("{DESTINATIONS}/{id}")),
        Call::get(EVENTS),
        Call::get(&format!("{EVENTS}/{}", evt["id"].as_str().unwrap())),
        Call::delete(&format!("{DESTINATIONS}/{id}")),
    ] {
        let what = format!("{} {}", call.method, call.path);
        let r = app.send(json_ct(call)).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn query_array_and_object_forms() {
    let app = TestApp::start().await;
    let a = app.publish(json!({"type": "v2.test.alpha"})).await;
    app.advance_ms(1000);
    let b = app.publish(json!({"type": "v2.test.beta"})).await;
    app.advance_ms(1000);
    app.publish(json!({"type": "v2.test.gamma"})).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let both = vec![b.to_owned(), a.to_owned()];
    let cases = [
        "types[0]=v2.test.alpha&types[1]=v2.test.beta",
        "types[1]=v2.test.beta&types[0]=v2.test.alpha",
        "types[]=v2.test.alpha&types[]=v2.test.beta",
        "types=v2.test.alpha&types=v2.test.beta",
        "types%5B0%5D=v2.test.alpha&types%5B1%5D=v2.test.beta",
        "types%5B%5D=v2.test.alpha&types%5B%5D=v2.test.beta",
        "types%5b0%5d=v2.test.alpha&types%5b1%5d=v2.test.beta",
        "types[0]=v2.test.alpha&types[1]=v2.test.beta&created[lte]=2026-03-01T12:00:01.123Z",
        "types[0]=v2.test.alpha&types[1]=v2.test.beta&created%5Blt%5D=2026-03-01T12%3A00%3A02.123Z",
    ];
    for query in cases {
        let r = app.get(&format!("{EVENTS}?{query}")).await;
        let data = r.assert_ok()["data"].as_array().unwrap().clone();
        assert_eq!(ids(&data), both, "{query}");
    }
}
