//! Events and idempotency keys expire after their retention, measured on an injected clock (on the
//! backend `EVENTD_TEST_DATABASE_URL` selects).

use eventd::clock::ManualClock;
use eventd::config::{DAY_MS, IDEMPOTENCY_RETENTION_MS};
use eventd::domain::event::{Family, NewEvent};
use eventd::domain::{Mode, Scope};
use eventd::store::{IdempotencyKey, StoreError};

use super::pg::Backend;

fn key(k: &str, fingerprint: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey {
        key: k.to_owned(),
        operation: "POST /v2/core/events".to_owned(),
        fingerprint: fingerprint.to_owned(),
    })
}

fn thin(type_: &str) -> NewEvent {
    NewEvent {
        type_: type_.to_owned(),
        reason: None,
        related_object: None,
        data: None,
        changes: None,
    }
}

#[tokio::test]
async fn events_and_idempotency_keys_expire_after_their_retention() {
    let backend = Backend::selected().await;
    let clock = ManualClock::new(1_800_000_000_000);
    let store = backend.open(clock.clone()).await;
    let (account_id, _) = store.bootstrap(None).await.unwrap();
    let scope = Scope {
        account_id,
        mode: Mode::Test,
        context: None,
    };
    let old = store
        .publish_event(
            scope.clone(),
            key("k1", "a"),
            thin("v2.core.account.created"),
        )
        .await
        .unwrap();
    clock.advance_ms(29 * DAY_MS);
    let young = store
        .publish_event(scope.clone(), None, thin("v2.core.account.updated"))
        .await
        .unwrap();
    clock.advance_ms(2 * DAY_MS);

    store
        .prune(30 * DAY_MS, IDEMPOTENCY_RETENTION_MS)
        .await
        .unwrap();

    let gone = store
        .get_event(scope.clone(), old.id.clone(), Family::Thin)
        .await;
    assert!(matches!(gone, Err(StoreError::NotFound)), "{gone:?}");
    let kept = store
        .get_event(scope.clone(), young.id.clone(), Family::Thin)
        .await
        .unwrap();
    assert_eq!(kept.id, young.id);
    // The expired key no longer replays: the same key with another body creates a new event.
    let again = store
        .publish_event(scope, key("k1", "b"), thin("v2.core.account.created"))
        .await
        .unwrap();
    assert_ne!(again.id, old.id);
}

#[tokio::test]
async fn idempotency_key_replays_within_retention() {
    let backend = Backend::selected().await;
    let clock = ManualClock::new(1_800_000_000_000);
    let store = backend.open(clock.clone()).await;
    let (account_id, _) = store.bootstrap(None).await.unwrap();
    let scope = Scope {
        account_id,
        mode: Mode::Test,
        context: None,
    };
    let first = store
        .publish_event(
            scope.clone(),
            key("k", "a"),
            thin("v2.core.account.created"),
        )
        .await
        .unwrap();
    clock.advance_ms(29 * DAY_MS);
    store
        .prune(30 * DAY_MS, IDEMPOTENCY_RETENTION_MS)
        .await
        .unwrap();
    let replay = store
        .publish_event(
            scope.clone(),
            key("k", "a"),
            thin("v2.core.account.created"),
        )
        .await
        .unwrap();
    assert_eq!(replay.id, first.id);
    let conflict = store
        .publish_event(scope, key("k", "b"), thin("v2.core.account.created"))
        .await;
    assert!(matches!(conflict, Err(StoreError::IdempotencyConflict)));
}
