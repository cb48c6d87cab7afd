//! Routing, seen through a published snapshot event's v1 `pending_webhooks`: one pending delivery
//! per matching destination (enabled, same mode, `events_from` covers the account, type enabled,
//! payload family).

use serde_json::{json, Value};

use crate::support::*;

/// Where a destination or an event lives.
#[derive(Debug, Clone, Copy, PartialEq)]
enum In {
    Root,
    RootLive,
    Child,
    /// The child account acting with its own key.
    ChildKey,
}

struct Dest {
    name: &'static str,
    owner: In,
    payload: &'static str,
    events: &'static [&'static str],
    events_from: &'static [&'static str],
    eventbridge: bool,
}

const fn dest(
    name: &'static str,
    owner: In,
    payload: &'static str,
    events: &'static [&'static str],
    events_from: &'static [&'static str],
) -> Dest {
    Dest {
        name,
        owner,
        payload,
        events,
        events_from,
        eventbridge: false,
    }
}

const DESTS: &[Dest] = &[
    dest(
        "thin-star",
        In::Root,
        "thin",
        &["*"],
        &["@self", "@accounts"],
    ),
    dest(
        "thin-v1",
        In::Root,
        "thin",
        &["v1.billing.meter.no_meter_found"],
        &["@self"],
    ),
    dest(
        "created-self",
        In::Root,
        "snapshot",
        &["customer.created"],
        &["@self"],
    ),
    dest("star-self", In::Root, "snapshot", &["*"], &["@self"]),
    dest(
        "created-accounts",
        In::Root,
        "snapshot",
        &["customer.created"],
        &["@accounts"],
    ),
    dest(
        "created-both",
        In::Root,
        "snapshot",
        &["customer.created"],
        &["@self", "@accounts"],
    ),
    dest(
        "created-disabled",
        In::Root,
        "snapshot",
        &["customer.created"],
        &["@self", "@accounts"],
    ),
    dest(
        "updated-self",
        In::Root,
        "snapshot",
        &["customer.updated", "invoice.paid"],
        &["@self"],
    ),
    dest(
        "created-legacy-self",
        In::Root,
        "snapshot",
        &["customer.created"],
        &["self"],
    ),
    dest(
        "created-legacy-other",
        In::Root,
        "snapshot",
        &["customer.created"],
        &["other_accounts"],
    ),
    dest(
        "star-accounts",
        In::Root,
        "snapshot",
        &["*"],
        &["@accounts"],
    ),
    Dest {
        name: "bridge-created",
        owner: In::Root,
        payload: "snapshot",
        events: &["customer.created"],
        events_from: &["@self"],
        eventbridge: true,
    },
    dest(
        "live-created",
        In::RootLive,
        "snapshot",
        &["customer.created"],
        &["@self"],
    ),
    dest(
        "live-star-accounts",
        In::RootLive,
        "snapshot",
        &["*"],
        &["@accounts"],
    ),
    dest(
        "child-created-self",
        In::Child,
        "snapshot",
        &["customer.created"],
        &["@self"],
    ),
    dest(
        "child-created-accounts",
        In::Child,
        "snapshot",
        &["customer.created"],
        &["@accounts"],
    ),
];

fn body(d: &Dest) -> Value {
    let mut b = json!({
        "name": d.name,
        "type": "webhook_endpoint",
        "event_payload": d.payload,
        "enabled_events": d.events,
        "events_from": d.events_from,
        "webhook_endpoint": {"url": hook_url(d.name)},
    });
    if d.eventbridge {
        b.as_object_mut().unwrap().remove("webhook_endpoint");
        b["type"] = json!("amazon_eventbridge");
        b["amazon_eventbridge"] =
            json!({"aws_account_id": "111122223333", "aws_region": "us-east-1"});
    }
    b
}

struct Accounts {
    child: eventd::store::CreatedAccount,
}

fn call(accounts: &Accounts, place: In, c: Call) -> Call {
    match place {
        In::Root => c,
        In::RootLive => c.key(LIVE_KEY),
        In::Child => c.context(&accounts.child.account_id),
        In::ChildKey => c.key(&accounts.child.test_key),
    }
}

async fn pending(app: &TestApp, accounts: &Accounts, place: In, kind: &str) -> i64 {
    let body = json!({"type": kind, "data": {"object": {"id": "obj_1"}}});
    let e = app
        .publish_with(call(accounts, place, Call::post(EVENTS, body)))
        .await;
    assert_eq!(e["object"], "event");
    let id = e["id"].as_str().unwrap();
    let got = app
        .send(call(
            accounts,
            place,
            Call::get(&format!("/v1/events/{id}")),
        ))
        .await;
    assert_eq!(
        got.assert_ok()["pending_webhooks"],
        e["pending_webhooks"],
        "stored count"
    );
    e["pending_webhooks"].as_i64().expect("pending_webhooks")
}

#[tokio::test]
async fn pending_webhooks_counts_matching_destinations() {
    let app = TestApp::start().await;
    let accounts = Accounts {
        child: app.connected_account(&app.account_id).await,
    };
    let mut ids = std::collections::HashMap::new();
    for d in DESTS {
        let created = app
            .create_destination_with(call(&accounts, d.owner, Call::post(DESTINATIONS, body(d))))
            .await;
        ids.insert(d.name, created["id"].as_str().unwrap().to_owned());
    }
    let disabled = &ids["created-disabled"];
    app.post(&format!("{DESTINATIONS}/{disabled}/disable"), json!({}))
        .await
        .assert_ok();

    // (event published in, type, the destinations it must reach)
    let cases: &[(In, &str, &[&str])] = &[
        (
            In::Root,
            "customer.created",
            &[
                "created-self",
                "star-self",
                "created-both",
                "created-legacy-self",
                "bridge-created",
            ],
        ),
        (In::Root, "customer.updated", &["star-self", "updated-self"]),
        (In::Root, "invoice.paid", &["star-self", "updated-self"]),
        (In::Root, "charge.refunded", &["star-self"]),
        (In::RootLive, "customer.created", &["live-created"]),
        (In::RootLive, "customer.updated", &[]),
        (
            In::Child,
            "customer.created",
            &[
                "created-accounts",
                "created-both",
                "created-legacy-other",
                "star-accounts",
                "child-created-self",
            ],
        ),
        (In::Child, "customer.updated", &["star-accounts"]),
        (
            In::ChildKey,
            "customer.created",
            &[
                "created-accounts",
                "created-both",
                "created-legacy-other",
                "star-accounts",
                "child-created-self",
            ],
        ),
        (In::ChildKey, "invoice.paid", &["star-accounts"]),
    ];
    for (place, kind, reached) in cases {
        let n = pending(&app, &accounts, *place, kind).await;
        assert_eq!(
            n,
            reached.len() as i64,
            "{kind} in {place:?} should reach {reached:?}"
        );
    }

    // Status changes and deletion are taken into account at publish time.
    let steps: &[(&str, &str, i64)] = &[
        ("disable", "created-self", 4),
        ("enable", "created-self", 5),
        ("enable", "created-disabled", 6),
        ("delete", "bridge-created", 5),
    ];
    for (action, name, expected) in steps {
        let id = &ids[name];
        let r = match *action {
            "delete" => app.delete(&format!("{DESTINATIONS}/{id}")).await,
            _ => {
                app.post(&format!("{DESTINATIONS}/{id}/{action}"), json!({}))
                    .await
            }
        };
        r.assert_ok();
        let n = pending(&app, &accounts, In::Root, "customer.created").await;
        assert_eq!(n, *expected, "after {action} {name}");
    }
}

#[tokio::test]
async fn thin_events_are_not_counted_by_snapshot_destinations() {
    let app = TestApp::start().await;
    let body = with(
        webhook("snap-star", &["*"]),
        "event_payload",
        json!("snapshot"),
    );
    app.create_destination(body).await;
    let e = app.publish(json!({"type": "v2.test.thing"})).await;
    assert_eq!(e["object"], "v2.core.event");
    let snap = app.publish(customer_created("cus_1")).await;
    assert_eq!(snap["pending_webhooks"], 1);
}
