//! Connected accounts and `Stripe-Context`: isolation, path resolution, refusals, and the context
//! of events published in a connected account.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn context_acts_in_the_connected_account_and_isolates_objects() {
    let app = TestApp::start().await;
    let child = app.connected_account(&app.account_id).await;
    let root_dest = app.create_destination(webhook("root", &["*"])).await;
    let child_dest = app
        .create_destination_with(
            Call::post(DESTINATIONS, webhook("child", &["*"])).context(&child.account_id),
        )
        .await;
    let child_id = child_dest["id"].as_str().unwrap();
    assert!(child_id.starts_with("ed_test_"));
    let root_id = root_dest["id"].as_str().unwrap();

    let root_list = app.list_all(DESTINATIONS, TEST_KEY).await;
    assert_eq!(ids(&root_list), [root_id]);
    // Every way to name the child: context header, full path, legacy header, the child's own key.
    let as_child = [
        Call::get(DESTINATIONS).context(&child.account_id),
        Call::get(DESTINATIONS).context(&format!("{}/{}", app.account_id, child.account_id)),
        Call::get(DESTINATIONS).header("stripe-account", &child.account_id),
        Call::get(DESTINATIONS).key(&child.test_key),
    ];
    for call in as_child {
        let what = format!("{:?}", call.headers);
        let r = app.send(call).await;
        assert_eq!(
            ids(r.assert_ok()["data"].as_array().unwrap()),
            [child_id],
            "{what}"
        );
    }
    // The key's own account as the context is the root itself.
    let r = app
        .send(Call::get(DESTINATIONS).context(&app.account_id))
        .await;
    assert_eq!(ids(r.assert_ok()["data"].as_array().unwrap()), [root_id]);
    let got = app
        .send(Call::get(&format!("{DESTINATIONS}/{child_id}")).context(&child.account_id))
        .await;
    assert_eq!(got.assert_ok(), &child_dest);
    app.get(&format!("{DESTINATIONS}/{child_id}"))
        .await
        .assert_error(404, "invalid_request_error", "not_found");
}

#[tokio::test]
async fn contexts_that_are_not_connected_accounts_are_403() {
    let app = TestApp::start().await;
    let child = app.connected_account(&app.account_id).await;
    let grandchild = app.connected_account(&child.account_id).await;
    let other_root = app.store().create_account(None).await.unwrap();
    let others_child = app.connected_account(&other_root.account_id).await;
    let root = app.account_id.clone();
    // (key, Stripe-Context)
    let cases: Vec<(String, String)> = vec![
        (TEST_KEY.into(), "acct_doesnotexist000".into()),
        (TEST_KEY.into(), other_root.account_id.clone()),
        (TEST_KEY.into(), others_child.account_id.clone()),
        (TEST_KEY.into(), grandchild.account_id.clone()),
        (TEST_KEY.into(), format!("{}/{}", child.account_id, root)),
        (
            TEST_KEY.into(),
            format!("{}/{}", child.account_id, others_child.account_id),
        ),
        (TEST_KEY.into(), "not-an-account".into()),
        (TEST_KEY.into(), format!("{}/", child.account_id)),
        (child.test_key.clone(), root.clone()),
        (child.test_key.clone(), other_root.account_id.clone()),
        (LIVE_KEY.into(), other_root.account_id.clone()),
    ];
    let before = app.visible_state().await;
    for (key, context) in cases {
        for call in [
            Call::get(DESTINATIONS),
            Call::post(DESTINATIONS, webhook("ctx", &["*"])),
            Call::post(EVENTS, json!({"type": "v2.test.ctx"})),
        ] {
            let r = app.send(call.key(&key).context(&context)).await;
            assert_eq!(r.status, 403, "context {context:?}: {}", r.body);
            r.assert_error(403, "invalid_request_error", "account_invalid");
        }
    }
    assert_eq!(app.visible_state().await, before, "nothing stored");
    for who in [&child, &grandchild] {
        assert!(app.list_all(DESTINATIONS, &who.test_key).await.is_empty());
    }
    // The grandchild is reachable through its full path.
    let path = format!("{}/{}", child.account_id, grandchild.account_id);
    app.send(Call::get(DESTINATIONS).context(&path))
        .await
        .assert_ok();
}

#[tokio::test]
async fn events_published_in_a_connected_account_carry_its_context() {
    let app = TestApp::start().await;
    let child = app.connected_account(&app.account_id).await;
    let grandchild = app.connected_account(&child.account_id).await;
    let grand_path = format!("{}/{}", child.account_id, grandchild.account_id);
    // (Stripe-Context sent, expected event context)
    let cases = [
        (child.account_id.clone(), child.account_id.clone()),
        (
            format!("{}/{}", app.account_id, child.account_id),
            child.account_id.clone(),
        ),
        (grand_path.clone(), grand_path.clone()),
    ];
    for (sent, expected) in cases {
        let e = app
            .publish_with(Call::post(EVENTS, json!({"type": "v2.test.ctx"})).context(&sent))
            .await;
        assert_eq!(e["context"], json!(expected), "context {sent}");
        let id = e["id"].as_str().unwrap();
        let got = app
            .send(Call::get(&format!("{EVENTS}/{id}")).context(&expected))
            .await;
        assert_eq!(got.assert_ok(), &e);
        app.get(&format!("{EVENTS}/{id}")).await.assert_error(
            404,
            "invalid_request_error",
            "not_found",
        );
    }
    // Ping in the child: the ping event carries the child's context.
    let d = app
        .create_destination_with(
            Call::post(DESTINATIONS, webhook("child", &["*"])).context(&child.account_id),
        )
        .await;
    let ping = app
        .send(
            Call::post(
                &format!("{DESTINATIONS}/{}/ping", d["id"].as_str().unwrap()),
                json!({}),
            )
            .context(&child.account_id),
        )
        .await;
    assert_eq!(ping.assert_ok()["context"], json!(child.account_id));
    // The root's own events have no context; its list does not show the children's events.
    let own = app.publish(json!({"type": "v2.test.own"})).await;
    assert_eq!(own["context"], serde_json::Value::Null);
    assert_eq!(
        ids(&app.list_all(EVENTS, TEST_KEY).await),
        [own["id"].as_str().unwrap()]
    );
    // The child's list: the two events published in it and its ping.
    let child_events = app.send(Call::get(EVENTS).context(&child.account_id)).await;
    let listed = child_events.assert_ok()["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .all(|e| e["context"] == json!(child.account_id)));
    // With its own key, the child's events are its own (no context); its connected account's
    // events carry the path from the child.
    let own_key = |call: Call| call.key(&child.test_key);
    let mine = app.send(own_key(Call::get(EVENTS))).await;
    let mine = mine.assert_ok()["data"].as_array().unwrap().clone();
    assert_eq!(mine.len(), 3);
    assert!(mine.iter().all(|e| e["context"].is_null()), "{mine:#?}");
    let e = app
        .publish_with(own_key(Call::post(EVENTS, json!({"type": "v2.test.own"}))))
        .await;
    assert!(e["context"].is_null(), "{e}");
    let e = app
        .publish_with(
            own_key(Call::post(EVENTS, json!({"type": "v2.test.grand"})))
                .context(&grandchild.account_id),
        )
        .await;
    assert_eq!(e["context"], json!(grandchild.account_id));
    let id = e["id"].as_str().unwrap();
    let from_root = app
        .send(Call::get(&format!("{EVENTS}/{id}")).context(&grand_path))
        .await;
    assert_eq!(from_root.assert_ok()["context"], json!(grand_path));
}
