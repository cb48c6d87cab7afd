//! List pagination: limits, order, keyset walking (also while objects come and go), page URLs that
//! carry `include` and filters, walking back, and bad tokens.

use serde_json::{json, Value};

use crate::support::*;

async fn publish_n(app: &TestApp, n: usize, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let e = app
            .publish(json!({"type": kind, "related_object": {"id": format!("obj_{i}"), "type": "thing", "url": format!("/v2/things/obj_{i}")}}))
            .await;
        out.push(e["id"].as_str().unwrap().to_owned());
    }
    out
}

fn bridge(name: &str) -> Value {
    json!({
        "name": name, "type": "amazon_eventbridge", "event_payload": "thin", "enabled_events": ["*"],
        "amazon_eventbridge": {"aws_account_id": "111122223333", "aws_region": "us-east-1"}
    })
}

/// Walks forward from `path`, checking the envelope of each page; returns the pages' ids.
async fn walk(app: &TestApp, path: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(path.to_owned());
    while let Some(p) = next {
        let r = app.get(&p).await;
        let body = r.assert_ok();
        assert_eq!(keys(body), ["data", "next_page_url", "previous_page_url"]);
        let data = body["data"].as_array().unwrap();
        next = body["next_page_url"].as_str().map(str::to_owned);
        if data.is_empty() {
            assert_eq!(next, None, "an empty page has no next page ({p})");
        }
        if let Some(n) = &next {
            assert!(n.starts_with(path.split('?').next().unwrap()), "{n}");
            assert!(
                n.starts_with('/') && !n.starts_with("//") && !n.contains("://"),
                "{n}"
            );
        }
        pages.push(ids(data));
        assert!(pages.len() < 200);
    }
    pages
}

#[tokio::test]
async fn limit_default_max_and_bounds() {
    let app = TestApp::start().await;
    let created = publish_n(&app, 105, "v2.test.thing").await;
    // (query, page size)
    for (query, size) in [
        ("", 20),
        ("?limit=1", 1),
        ("?limit=100", 100),
        ("?limit=20", 20),
    ] {
        let r = app.get(&format!("{EVENTS}{query}")).await;
        let data = r.assert_ok()["data"].as_array().unwrap();
        assert_eq!(data.len(), size, "{query}");
        assert!(r.body["next_page_url"].is_string(), "{query}");
        assert_eq!(r.body["previous_page_url"], Value::Null, "{query}");
    }
    for bad in ["0", "101", "-1", "abc", "", "1.5", "1e2"] {
        let r = app.get(&format!("{EVENTS}?limit={bad}")).await;
        assert_eq!(r.status, 400, "limit={bad}: {}", r.body);
        r.assert_invalid(&["limit"]);
        let r = app.get(&format!("{DESTINATIONS}?limit={bad}")).await;
        r.assert_invalid(&["limit"]);
    }
    // Newest first, every object once.
    let pages = walk(&app, &format!("{EVENTS}?limit=7")).await;
    let all: Vec<String> = pages.concat();
    let mut expected = created.clone();
    expected.reverse();
    assert_eq!(all, expected);
    assert!(pages.iter().all(|p| p.len() <= 7));
}

#[tokio::test]
async fn exact_multiple_has_no_trailing_empty_page() {
    let app = TestApp::start().await;
    let created = publish_n(&app, 6, "v2.test.thing").await;
    let pages = walk(&app, &format!("{EVENTS}?limit=3")).await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    let mut expected = created;
    expected.reverse();
    assert_eq!(pages.concat(), expected);
    // An empty list: no page URLs at all.
    let r = app.get(DESTINATIONS).await;
    assert_eq!(
        r.assert_ok(),
        &json!({"data": [], "next_page_url": null, "previous_page_url": null})
    );
}

#[tokio::test]
async fn walking_while_objects_are_created_and_deleted() {
    let app = TestApp::start().await;
    let mut created = Vec::new();
    for i in 0..10 {
        let d = app.create_destination(bridge(&format!("bus {i}"))).await;
        created.push(d["id"].as_str().unwrap().to_owned());
    }
    // newest first: created[9], created[8], ...
    let first = app.get(&format!("{DESTINATIONS}?limit=3")).await;
    let page1 = ids(first.assert_ok()["data"].as_array().unwrap());
    assert_eq!(
        page1,
        [created[9].clone(), created[8].clone(), created[7].clone()]
    );
    // Meanwhile: two new objects, one deleted from the seen page, one from an unseen page.
    for i in 0..2 {
        app.create_destination(bridge(&format!("late {i}"))).await;
    }
    for id in [&created[8], &created[3]] {
        app.delete(&format!("{DESTINATIONS}/{id}"))
            .await
            .assert_ok();
    }
    let next = first.body["next_page_url"].as_str().unwrap().to_owned();
    let rest = walk(&app, &next).await.concat();
    let expected: Vec<String> = [6, 5, 4, 2, 1, 0]
        .iter()
        .map(|i| created[*i].clone())
        .collect();
    assert_eq!(rest, expected);
    // Deleting everything that is left after the first page: the next page is empty and final.
    for id in &expected {
        app.delete(&format!("{DESTINATIONS}/{id}"))
            .await
            .assert_ok();
    }
    let r = app.get(&next).await;
    assert_eq!(r.assert_ok()["data"], json!([]));
    assert_eq!(r.body["next_page_url"], Value::Null);
}

#[tokio::test]
async fn page_urls_carry_include_filters_and_limit() {
    let app = TestApp::start().await;
    for i in 0..5 {
        app.create_destination(webhook(&format!("hook {i}"), &["*"]))
            .await;
    }
    let start = format!("{DESTINATIONS}?limit=2&include[0]=webhook_endpoint.url");
    let mut next = Some(start);
    let mut seen = 0;
    while let Some(p) = next {
        let r = app.get(&p).await;
        let data = r.assert_ok()["data"].as_array().unwrap().clone();
        assert!(data.len() <= 2, "limit kept: {p}");
        for d in &data {
            assert!(
                d["webhook_endpoint"]["url"].is_string(),
                "include kept on {p}"
            );
        }
        seen += data.len();
        next = r.body["next_page_url"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, 5);

    // Event filters survive, and parameters added to a page URL are ignored in favour of the token.
    let mut wanted = Vec::new();
    for i in 0..9 {
        let kind = if i % 3 == 0 {
            "v2.test.wanted"
        } else {
            "v2.test.other"
        };
        let e = app.publish(json!({"type": kind})).await;
        if i % 3 == 0 {
            wanted.push(e["id"].as_str().unwrap().to_owned());
        }
    }
    wanted.reverse();
    let first = app
        .get(&format!("{EVENTS}?limit=1&types[0]=v2.test.wanted"))
        .await;
    let next = first.assert_ok()["next_page_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.starts_with("/v2/core/events?page="), "{next}");
    let rest = walk(&app, &next).await.concat();
    assert_eq!(rest, wanted[1..].to_vec());
    let tampered = app
        .get(&format!("{next}&limit=50&types[0]=v2.test.other"))
        .await;
    assert_eq!(
        ids(tampered.assert_ok()["data"].as_array().unwrap()),
        [wanted[1].clone()]
    );
}

#[tokio::test]
async fn previous_page_url_walks_back() {
    let app = TestApp::start().await;
    let mut created = publish_n(&app, 10, "v2.test.thing").await;
    created.reverse();
    let forward = walk(&app, &format!("{EVENTS}?limit=3")).await;
    assert_eq!(forward.concat(), created);
    // Go to the last page, then follow previous_page_url back to the first.
    let mut p = format!("{EVENTS}?limit=3");
    let last = loop {
        let r = app.get(&p).await;
        let body = r.assert_ok().clone();
        match body["next_page_url"].as_str() {
            Some(n) => p = n.to_owned(),
            None => break body,
        }
    };
    let mut back = vec![ids(last["data"].as_array().unwrap())];
    let mut prev = last["previous_page_url"].as_str().map(str::to_owned);
    while let Some(p) = prev {
        assert!(p.starts_with("/v2/core/events?page="), "{p}");
        let r = app.get(&p).await;
        let body = r.assert_ok();
        back.push(ids(body["data"].as_array().unwrap()));
        prev = body["previous_page_url"].as_str().map(str::to_owned);
        assert!(back.len() < 20);
    }
    back.reverse();
    assert_eq!(back, forward);
}

#[tokio::test]
async fn bad_page_tokens_are_400_naming_page() {
    let app = TestApp::start().await;
    publish_n(&app, 3, "v2.test.thing").await;
    for path in [EVENTS, DESTINATIONS] {
        for token in ["garbage", "page_", "page_!!!", "page_eyJ4IjoxfQ", "cGFnZQ"] {
            let r = app.get(&format!("{path}?page={token}")).await;
            assert_eq!(r.status, 400, "{path} page={token}: {}", r.body);
            r.assert_invalid(&["page"]);
        }
    }
}

/// A page token is not a secret: anyone can write one. Whatever it carries is checked again like a
/// first request's parameters, and it only works on the list it came from, so a hand-made token
/// can never ask for more than the query string could (no signing secrets, no 21 types).
#[tokio::test]
async fn hand_made_page_tokens_ask_for_nothing_a_query_could_not() {
    use base64::Engine;
    let app = TestApp::start().await;
    app.create_destination(webhook("hook", &["*"])).await;
    publish_n(&app, 3, "v2.test.thing").await;
    let token = |p: &str, q: Value| {
        let t = json!({"c": "b", "s": i64::MAX, "l": 10, "p": p, "q": q});
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t.to_string());
        format!("page_{b}")
    };
    let types: Vec<String> = (0..21).map(|i| format!("v2.test.t{i}")).collect();
    // (list path, token path, carried parameters, the field named in the 400)
    let cases = [
        (
            DESTINATIONS,
            DESTINATIONS,
            json!({"include": ["webhook_endpoint.signing_secret"]}),
            "include[0]",
        ),
        (
            DESTINATIONS,
            DESTINATIONS,
            json!({"include": "webhook_endpoint.url", "bogus": "1"}),
            "bogus",
        ),
        (DESTINATIONS, DESTINATIONS, json!({"include": [1]}), "page"),
        (DESTINATIONS, EVENTS, json!({}), "page"),
        (EVENTS, DESTINATIONS, json!({"include": []}), "page"),
        (EVENTS, EVENTS, json!({"types": types}), "types"),
        (
            EVENTS,
            EVENTS,
            json!({"created": {"gte": "yesterday"}}),
            "created[gte]",
        ),
        (EVENTS, EVENTS, json!({"created": {"gte": 5}}), "page"),
    ];
    for (path, token_path, q, field) in cases {
        let r = app
            .get(&format!("{path}?page={}", token(token_path, q.clone())))
            .await;
        assert_eq!(r.status, 400, "{path} with {q}: {}", r.body);
        r.assert_invalid(&[field]);
        assert!(!r.body.to_string().contains("whsec_"), "{}", r.body);
    }
    // The same hand-made token with what a query may carry works.
    let r = app
        .get(&format!(
            "{DESTINATIONS}?page={}",
            token(DESTINATIONS, json!({"include": ["webhook_endpoint.url"]}))
        ))
        .await;
    let data = r.assert_ok()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1);
    assert!(data[0]["webhook_endpoint"]["url"].is_string());
    assert!(data[0]["webhook_endpoint"]["signing_secret"].is_null());
}
