//! Targets (cases C09, C10, C11): URLs are stored and requested exactly as given, IPv6 literals
//! work, and the default address policy refuses internal targets, judged on the resolved address.

use std::time::Duration;

use eventd::config::AllowList;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::delivery_support::*;
use super::receiver::{statuses, Reply, TestReceiver};
use super::support::DESTINATIONS;

/// Retrieves a destination with its URL.
async fn stored_url(app: &DeliveryApp, id: &str) -> Value {
    let r = app
        .get(&format!(
            "{DESTINATIONS}/{id}?include[0]=webhook_endpoint.url"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["webhook_endpoint"]["url"].clone()
}

async fn update_url(app: &DeliveryApp, id: &str, url: &str) -> super::support::Resp {
    app.post(
        &format!("{DESTINATIONS}/{id}"),
        json!({"webhook_endpoint": {"url": url}}),
    )
    .await
}

#[tokio::test]
async fn c09_urls_are_stored_returned_and_requested_exactly_as_given() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    // (path and query as written in the URL, request target expected on the wire)
    let cases = [
        (
            "/index.php?option=app1&task=hook&sig=a%2Fb",
            "/index.php?option=app1&task=hook&sig=a%2Fb",
        ),
        (
            "/hooks/a%2Fb/%7Euser/?q=%3D%26&empty=&flag&x=1&x=2",
            "/hooks/a%2Fb/%7Euser/?q=%3D%26&empty=&flag&x=1&x=2",
        ),
        (
            "/p;v=1/Case%2f%2F?a=b=c&plus=a+b&colon=a:b&at=a@b&q=?",
            "/p;v=1/Case%2f%2F?a=b=c&plus=a+b&colon=a:b&at=a@b&q=?",
        ),
        (
            "/%E2%9C%93?q=%E2%9C%93&r=%e2%9c%93",
            "/%E2%9C%93?q=%E2%9C%93&r=%e2%9c%93",
        ),
        ("/x?sub=!$()*,;", "/x?sub=!$()*,;"),
        ("/trailing/", "/trailing/"),
        ("", "/"),
    ];
    let mut mangled = Vec::new();
    for (path, target) in cases {
        let url = r.url(path);
        let d = app.webhook(Payload::Thin, &[THIN_TYPE], &url).await;
        assert_eq!(d.body["webhook_endpoint"]["url"], url, "create response");
        assert_eq!(stored_url(&app, &d.id).await, url, "retrieve");
        let listed = app.destinations().await;
        let mine = listed.iter().find(|x| x["id"] == d.id.as_str()).unwrap();
        assert_eq!(mine["webhook_endpoint"]["url"], url, "list");
        app.ping(&d.id).await;
        let got = r.expect(PROMPT, &format!("ping to {url}")).await;
        assert_eq!(got.header("host"), Some(r.addr.to_string().as_str()));
        assert_signed(&got, &d.secret, &[]);
        if got.target != target {
            mangled.push(format!("{url}: sent {:?}, expected {target:?}", got.target));
        }
    }
    assert!(
        mangled.is_empty(),
        "request targets differ from the stored URLs:\n{}",
        mangled.join("\n")
    );
}

/// URLs eventd could not send exactly as written are refused: a `#fragment` (never sent on the wire)
/// and characters the HTTP stack would percent-encode (`'` in a query).
#[tokio::test]
async fn c09_a_fragment_is_refused_at_create_and_update() {
    let app = DeliveryApp::start(|_| {}).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    let d = app
        .webhook(Payload::Thin, &[THIN_TYPE], &r.url("/hook"))
        .await;
    for url in [
        r.url("/hook#fragment"),
        r.url("/hook?a=1#"),
        r.url("/#x"),
        r.url("/index.php?option=app1&task=hook&sig=a%2Fb#top"),
        r.url("/x?sub=!$'()*,;"),
    ] {
        let before = app.destinations().await;
        let mut body = d.body.clone();
        for k in [
            "id",
            "object",
            "created",
            "updated",
            "livemode",
            "status",
            "status_details",
        ] {
            body.as_object_mut().unwrap().remove(k);
        }
        body["webhook_endpoint"] = json!({"url": url});
        body["include"] = json!(["webhook_endpoint.url"]);
        let created = app.post(DESTINATIONS, body).await;
        created.assert_invalid(&["webhook_endpoint.url"]);
        update_url(&app, &d.id, &url)
            .await
            .assert_invalid(&["webhook_endpoint.url"]);
        assert_eq!(app.destinations().await, before, "{url}: nothing stored");
    }
    app.ping(&d.id).await;
    let got = r.expect(PROMPT, "ping").await;
    assert_eq!(got.target, "/hook");
}

/// Binds `[::1]:0`, or says why not.
async fn ipv6_loopback() -> Option<TcpListener> {
    match TcpListener::bind("[::1]:0").await {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("C10: this machine has no IPv6 loopback ({e}); the IPv6 checks did not run");
            None
        }
    }
}

#[tokio::test]
async fn c10_ipv6_targets_are_stored_as_given_and_reached_over_ipv6() {
    let Some(listener) = ipv6_loopback().await else {
        println!("C10 SKIPPED AT RUN TIME: no IPv6 loopback");
        return;
    };
    let app = DeliveryApp::start(|_| {}).await;
    let mut r6 = TestReceiver::serve(listener, statuses(&[200]));
    let port = r6.addr.port();
    let url = format!("http://[::1]:{port}/hook");
    let d = app.webhook(Payload::Thin, &[THIN_TYPE], &url).await;
    assert_eq!(d.body["webhook_endpoint"]["url"], url);
    assert_eq!(stored_url(&app, &d.id).await, url);
    let ping = app.ping(&d.id).await;
    let got = r6.expect(PROMPT, "ping over IPv6").await;
    assert_eq!(got.event_id(), ping["id"].as_str().unwrap());
    assert_eq!(got.header("host"), Some(format!("[::1]:{port}").as_str()));
    assert_eq!(got.target, "/hook");
    assert_signed(&got, &d.secret, &[]);

    // The IPv4-mapped form reaches the IPv4 loopback (allowed by the test policy's 127.0.0.0/8).
    let mut r4 = TestReceiver::start(statuses(&[200])).await;
    let url = format!("http://[::ffff:127.0.0.1]:{}/hook", r4.addr.port());
    let d = app.webhook(Payload::Thin, &[THIN_TYPE], &url).await;
    assert_eq!(d.body["webhook_endpoint"]["url"], url, "stored as given");
    assert_eq!(stored_url(&app, &d.id).await, url);
    let ping = app.ping(&d.id).await;
    let got = r4.expect(PROMPT, "ping to the IPv4-mapped address").await;
    assert_eq!(got.event_id(), ping["id"].as_str().unwrap());
    assert_signed(&got, &d.secret, &[]);
}

/// Internal targets, in every spelling that reaches them.
const REFUSED: &[&str] = &[
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:6379/",
    "http://[fd00::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://10.0.0.5/",
    "https://127.0.0.1/hook",
    "http://127.8.9.10/",
    "http://[::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://[fe80::1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[::ffff:10.0.0.5]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::1]/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://017700000001/",
];

#[tokio::test]
async fn c11_default_policy_refuses_internal_literal_targets_at_create_and_update() {
    let app = DeliveryApp::start(|c| c.delivery.allow_private_targets = AllowList::default()).await;
    let public = "https://hooks.example.com/ok";
    let d = app.webhook(Payload::Thin, &[THIN_TYPE], public).await;
    let before = app.destinations().await;
    let mut failures = Vec::new();
    for url in REFUSED {
        let created = app
            .post(
                DESTINATIONS,
                json!({
                    "name": "ssrf", "type": "webhook_endpoint", "event_payload": "thin",
                    "enabled_events": [THIN_TYPE], "webhook_endpoint": {"url": url},
                }),
            )
            .await;
        let updated = update_url(&app, &d.id, url).await;
        for (what, r) in [("create", created), ("update", updated)] {
            let named = r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("'webhook_endpoint.url: "));
            if r.status != 400 || r.body["error"]["code"] != "invalid_fields" || !named {
                failures.push(format!("{what} {url}: {} {}", r.status, r.body));
            }
        }
    }
    assert_eq!(
        app.destinations().await,
        before,
        "nothing stored or changed"
    );
    assert!(
        failures.is_empty(),
        "internal targets not refused with 400 naming webhook_endpoint.url:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn c11_a_name_resolving_to_loopback_is_blocked_before_connecting() {
    let app = DeliveryApp::start(|c| c.delivery.allow_private_targets = AllowList::default()).await;
    let mut r = TestReceiver::start(statuses(&[200])).await;
    let url = format!("http://localhost:{}/hook", r.addr.port());
    let d = app.webhook(Payload::Thin, &[THIN_TYPE], &url).await;
    assert_eq!(
        d.body["webhook_endpoint"]["url"], url,
        "names are accepted as given"
    );
    let ping = app.ping(&d.id).await;
    let log = app.wait_attempts(Of::Destination, &d.id, 1).await;
    let a = &log[0];
    assert_eq!(a["event"], ping["id"]);
    assert_eq!(a["outcome"], "failed", "{a}");
    assert!(
        a["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("refused_address")),
        "a refused_address reason: {a}"
    );
    assert!(a["http_status"].is_null(), "never connected: {a}");
    assert!(a["response_body"].is_null(), "nothing echoed: {a}");
    r.expect_none(Duration::from_millis(500), "blocked before connecting")
        .await;
}

#[tokio::test]
async fn c11_attempt_records_keep_at_most_256_bytes_of_a_response_body() {
    let app = DeliveryApp::start(|_| {}).await;
    let secret_page: String = "internal-config: password=hunter2; "
        .repeat(300)
        .chars()
        .take(10 * 1024)
        .collect();
    let cases = [
        ("ascii", secret_page.clone()),
        ("multibyte", "ü🦀".repeat(2000)),
    ];
    for (what, body) in cases {
        let r = TestReceiver::start(vec![Reply::status(500).body(body.clone())]).await;
        let d = app.webhook(Payload::Thin, &[THIN_TYPE], &r.url("/")).await;
        app.ping(&d.id).await;
        let log = app.wait_attempts(Of::Destination, &d.id, 1).await;
        let kept = &log[0]["response_body"];
        let kept = kept.as_str().unwrap_or_default();
        assert!(
            kept.len() <= 256,
            "{what}: the attempt record keeps {} bytes of the response body",
            kept.len()
        );
        assert!(
            body.starts_with(kept.trim_end_matches('\u{fffd}')),
            "{what}: a prefix of the body: {kept:?}"
        );
        assert_eq!(log[0]["http_status"], 500);
    }
}
