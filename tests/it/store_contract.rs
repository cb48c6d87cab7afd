//! The store contract: what every backend of `Store` must do, checked through the `Store` API on
//! each backend of `Backend::all()` (SQLite always, PostgreSQL when `EVENTD_TEST_DATABASE_URL`
//! is set). Two `Store`s opened on one backend stand for two eventd nodes sharing the database.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use eventd::clock::ManualClock;
use eventd::domain::destination::{
    DestinationPatch, EventPayload, NewDestination, NewTarget, Status, Target,
    MAX_WEBHOOK_ENDPOINTS,
};
use eventd::domain::event::{Family, NewEvent};
use eventd::domain::{Mode, Scope};
use eventd::store::{
    AttemptOutcome, AttemptsOf, ClaimedDelivery, Cursor, DeliveryAttempt, EventFilter,
    IdempotencyKey, Store, StoreError,
};
use serde_json::json;

use super::pg::Backend;

const T0_MS: i64 = 1_800_000_000_000;
/// Long enough that no lease expires unless a test moves the clock.
const LEASE_MS: i64 = 60_000;

/// One backend with a manual clock, its first account and a second "node" on the same database.
struct Fixture {
    name: &'static str,
    clock: Arc<ManualClock>,
    node_a: Store,
    node_b: Store,
    scope: Scope,
    _backend: Backend,
}

impl Fixture {
    async fn all() -> Vec<Fixture> {
        let mut out = Vec::new();
        for backend in Backend::all().await {
            let clock = ManualClock::new(T0_MS);
            let node_a = backend.open(clock.clone()).await;
            let node_b = backend.open(clock.clone()).await;
            let (account_id, _) = node_a.bootstrap(None).await.expect("bootstrap");
            out.push(Fixture {
                name: backend.name(),
                clock,
                node_a,
                node_b,
                scope: scope(&account_id, Mode::Test),
                _backend: backend,
            });
        }
        out
    }

    async fn destination(&self, scope: &Scope, new: NewDestination) -> String {
        self.node_a
            .create_destination(scope.clone(), None, new)
            .await
            .unwrap_or_else(|e| panic!("{}: create destination: {e:?}", self.name))
            .id
    }

    async fn publish(&self, scope: &Scope, new: NewEvent) -> String {
        self.node_a
            .publish_event(scope.clone(), None, new)
            .await
            .unwrap_or_else(|e| panic!("{}: publish: {e:?}", self.name))
            .id
    }

    /// Event ids of every delivery of `destination` that `node` can claim now.
    async fn claim_all(&self, node: &Store, destination: &str) -> Vec<ClaimedDelivery> {
        node.claim_deliveries(vec![(destination.to_owned(), 1000)], LEASE_MS)
            .await
            .unwrap_or_else(|e| panic!("{}: claim: {e:?}", self.name))
    }
}

fn scope(account_id: &str, mode: Mode) -> Scope {
    Scope {
        account_id: account_id.to_owned(),
        mode,
        context: None,
    }
}

fn webhook(events: &[&str], from: &[&str], payload: EventPayload) -> NewDestination {
    NewDestination {
        name: "contract".to_owned(),
        description: "a destination".to_owned(),
        target: NewTarget::WebhookEndpoint {
            url: "https://hooks.example.com/contract".to_owned(),
        },
        event_payload: payload,
        enabled_events: events.iter().map(|s| s.to_string()).collect(),
        events_from: from.iter().map(|s| s.to_string()).collect(),
        metadata: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        snapshot_api_version: None,
    }
}

fn thin_all() -> NewDestination {
    webhook(&["*"], &["@self"], EventPayload::Thin)
}

fn event(type_: &str) -> NewEvent {
    let data = (Family::of_type(type_) == Family::Snapshot)
        .then(|| json!({"object": {"id": "cus_1", "object": "customer"}}));
    NewEvent {
        type_: type_.to_owned(),
        reason: None,
        related_object: None,
        data,
        changes: None,
    }
}

fn key(k: &str, operation: &str, fingerprint: &str) -> Option<IdempotencyKey> {
    Some(IdempotencyKey {
        key: k.to_owned(),
        operation: operation.to_owned(),
        fingerprint: fingerprint.to_owned(),
    })
}

fn event_ids(claimed: &[ClaimedDelivery]) -> BTreeSet<String> {
    claimed.iter().map(|c| c.event.id.clone()).collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn attempt(
    c: &ClaimedDelivery,
    outcome: AttemptOutcome,
    started_ms: i64,
    next: Option<i64>,
) -> DeliveryAttempt {
    DeliveryAttempt {
        delivery_id: c.delivery_id.clone(),
        event_id: c.event.id.clone(),
        destination_id: c.destination.id.clone(),
        attempt: c.previous_attempts + 1,
        started_ms,
        latency_ms: 12,
        outcome,
        http_status: Some(if outcome == AttemptOutcome::Succeeded {
            200
        } else {
            503
        }),
        error: None,
        response_body: Some("body".to_owned()),
        next_attempt_ms: next,
        next_attempt_canceled: false,
    }
}

fn is_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::NotFound))
}

#[tokio::test]
async fn destinations_are_created_retrieved_listed_updated_and_deleted() {
    for f in Fixture::all().await {
        let n = f.name;
        let s = &f.scope;
        let created = f
            .node_a
            .create_destination(s.clone(), None, thin_all())
            .await
            .unwrap();
        assert_eq!(created.status, Status::Enabled, "{n}");
        assert_eq!(
            (created.created_ms, created.updated_ms),
            (T0_MS, T0_MS),
            "{n}"
        );
        assert!(
            matches!(&created.target, Target::WebhookEndpoint { url, signing_secret }
                if url == "https://hooks.example.com/contract" && signing_secret.starts_with("whsec_")),
            "{n}: {:?}",
            created.target
        );
        // The other node reads exactly what was stored; other scopes do not see it.
        let got = f
            .node_b
            .get_destination(s.clone(), created.id.clone())
            .await
            .unwrap();
        assert_eq!(got, created, "{n}");
        let live = scope(&s.account_id, Mode::Live);
        assert!(
            is_not_found(f.node_b.get_destination(live, created.id.clone()).await),
            "{n}"
        );
        let child = f
            .node_a
            .create_account(Some(s.account_id.clone()))
            .await
            .unwrap();
        let other = scope(&child.account_id, Mode::Test);
        assert!(
            is_not_found(f.node_b.get_destination(other, created.id.clone()).await),
            "{n}"
        );

        f.clock.advance_ms(1000);
        let patch = DestinationPatch {
            name: Some("renamed".to_owned()),
            enabled_events: Some(vec!["v2.core.account.updated".to_owned()]),
            metadata: Some(BTreeMap::from([
                ("k".to_owned(), None),
                ("k2".to_owned(), Some("v2".to_owned())),
            ])),
            ..DestinationPatch::default()
        };
        let updated = f
            .node_b
            .update_destination(s.clone(), None, created.id.clone(), patch)
            .await
            .unwrap();
        assert_eq!(updated.name, "renamed", "{n}");
        assert_eq!(updated.enabled_events, ["v2.core.account.updated"], "{n}");
        assert_eq!(
            updated.metadata,
            BTreeMap::from([("k2".to_owned(), "v2".to_owned())]),
            "{n}"
        );
        assert_eq!(updated.updated_ms, T0_MS + 1000, "{n}");
        assert_eq!(
            f.node_a
                .get_destination(s.clone(), created.id.clone())
                .await
                .unwrap(),
            updated,
            "{n}"
        );

        let disabled = f
            .node_a
            .set_destination_status(s.clone(), None, created.id.clone(), Status::Disabled)
            .await
            .unwrap();
        assert_eq!(disabled.status, Status::Disabled, "{n}");
        assert_eq!(
            f.node_b
                .get_destination(s.clone(), created.id.clone())
                .await
                .unwrap()
                .status,
            Status::Disabled,
            "{n}"
        );
        let enabled = f
            .node_b
            .set_destination_status(s.clone(), None, created.id.clone(), Status::Enabled)
            .await
            .unwrap();
        assert_eq!(
            (enabled.status, enabled.disabled_reason),
            (Status::Enabled, None),
            "{n}"
        );

        let second = f.destination(s, thin_all()).await;
        let listed: Vec<String> = f
            .node_b
            .list_destinations(s.clone(), Cursor::Start, 10)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(
            listed,
            [second.clone(), created.id.clone()],
            "{n}: newest first"
        );

        assert_eq!(
            f.node_b
                .delete_destination(s.clone(), None, created.id.clone())
                .await
                .unwrap(),
            created.id,
            "{n}"
        );
        assert!(
            is_not_found(
                f.node_a
                    .get_destination(s.clone(), created.id.clone())
                    .await
            ),
            "{n}"
        );
        assert!(
            is_not_found(
                f.node_a
                    .delete_destination(s.clone(), None, created.id.clone())
                    .await
            ),
            "{n}"
        );
        let patch = DestinationPatch {
            name: Some("x".to_owned()),
            ..DestinationPatch::default()
        };
        assert!(
            is_not_found(
                f.node_a
                    .update_destination(s.clone(), None, created.id.clone(), patch)
                    .await
            ),
            "{n}"
        );
        let listed: Vec<String> = f
            .node_a
            .list_destinations(s.clone(), Cursor::Start, 10)
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(listed, [second], "{n}: deleted ones are not listed");
    }
}

#[tokio::test]
async fn webhook_endpoints_are_limited_per_account_and_mode_across_nodes() {
    for f in Fixture::all().await {
        let n = f.name;
        // Both nodes create at once: the limit holds exactly.
        let creates = (0..MAX_WEBHOOK_ENDPOINTS + 4).map(|i| {
            let node = if i % 2 == 0 { &f.node_a } else { &f.node_b };
            node.create_destination(f.scope.clone(), None, thin_all())
        });
        let results = futures_util::future::join_all(creates).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let limited = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::WebhookEndpointLimit(_))))
            .count();
        assert_eq!(
            (ok, limited),
            (MAX_WEBHOOK_ENDPOINTS, 4),
            "{n}: {results:?}"
        );
        let first = results
            .iter()
            .find_map(|r| r.as_ref().ok())
            .unwrap()
            .id
            .clone();
        f.node_a
            .delete_destination(f.scope.clone(), None, first)
            .await
            .unwrap();
        f.node_b
            .create_destination(f.scope.clone(), None, thin_all())
            .await
            .unwrap_or_else(|e| panic!("{n}: a deleted endpoint frees its slot: {e:?}"));
        let live = scope(&f.scope.account_id, Mode::Live);
        f.node_b
            .create_destination(live, None, thin_all())
            .await
            .unwrap_or_else(|e| panic!("{n}: live mode counts apart: {e:?}"));
    }
}

#[tokio::test]
async fn published_events_get_one_pending_delivery_per_matching_destination() {
    for f in Fixture::all().await {
        let n = f.name;
        let parent = f.scope.clone();
        let child = scope(
            &f.node_a
                .create_account(Some(parent.account_id.clone()))
                .await
                .unwrap()
                .account_id,
            Mode::Test,
        );
        let live = scope(&parent.account_id, Mode::Live);
        let created_type = "v2.core.account.created";
        let self_created = f
            .destination(
                &parent,
                webhook(&[created_type], &["@self"], EventPayload::Thin),
            )
            .await;
        let from_accounts = f
            .destination(&parent, webhook(&["*"], &["@accounts"], EventPayload::Thin))
            .await;
        let from_both = f
            .destination(
                &parent,
                webhook(&["*"], &["@self", "@accounts"], EventPayload::Thin),
            )
            .await;
        let snapshot = f
            .destination(
                &parent,
                webhook(&["customer.created"], &["@self"], EventPayload::Snapshot),
            )
            .await;
        let updated_only = f
            .destination(
                &parent,
                webhook(&["v2.core.account.updated"], &["@self"], EventPayload::Thin),
            )
            .await;
        let disabled = f.destination(&parent, thin_all()).await;
        f.node_a
            .set_destination_status(parent.clone(), None, disabled.clone(), Status::Disabled)
            .await
            .unwrap();
        let live_all = f.destination(&live, thin_all()).await;
        let child_all = f.destination(&child, thin_all()).await;

        let e_parent = f.publish(&parent, event(created_type)).await;
        let e_child = f.publish(&child, event(created_type)).await;
        let e_snapshot = f.publish(&parent, event("customer.created")).await;
        let e_live = f.publish(&live, event(created_type)).await;
        let e_updated = f.publish(&parent, event("v2.core.account.updated")).await;

        let fanout = |scope: &Scope, id: &String, family| {
            let node = &f.node_b;
            let (scope, id) = (scope.clone(), id.clone());
            async move { node.get_event(scope, id, family).await.unwrap().fanout }
        };
        assert_eq!(fanout(&parent, &e_parent, Family::Thin).await, 2, "{n}");
        assert_eq!(fanout(&child, &e_child, Family::Thin).await, 3, "{n}");
        assert_eq!(
            fanout(&parent, &e_snapshot, Family::Snapshot).await,
            1,
            "{n}"
        );
        assert_eq!(fanout(&live, &e_live, Family::Thin).await, 1, "{n}");
        assert_eq!(fanout(&parent, &e_updated, Family::Thin).await, 2, "{n}");

        // The deliveries are committed with the events: the other node claims them at once.
        let expect = [
            (&self_created, set(&[&e_parent])),
            (&from_accounts, set(&[&e_child])),
            (&from_both, set(&[&e_parent, &e_child, &e_updated])),
            (&snapshot, set(&[&e_snapshot])),
            (&updated_only, set(&[&e_updated])),
            (&disabled, set(&[])),
            (&live_all, set(&[&e_live])),
            (&child_all, set(&[&e_child])),
        ];
        let (pending, _) = f.node_b.pending_stats().await.unwrap();
        assert_eq!(pending, 9, "{n}: one pending delivery per match");
        for (destination, events) in expect {
            let claimed = f.claim_all(&f.node_b, destination).await;
            assert_eq!(
                claimed.len(),
                events.len(),
                "{n}: {destination}: one delivery per event"
            );
            assert_eq!(event_ids(&claimed), events, "{n}: {destination}");
            for c in &claimed {
                assert_eq!(
                    (&c.destination.id, c.previous_attempts),
                    (destination, 0),
                    "{n}"
                );
            }
        }
    }
}

#[tokio::test]
async fn idempotent_requests_replay_conflict_and_create_exactly_one() {
    for f in Fixture::all().await {
        let n = f.name;
        let s = &f.scope;
        let destination = f.destination(s, thin_all()).await;
        let op = "POST /v2/core/events";
        let first = f
            .node_a
            .publish_event(
                s.clone(),
                key("k1", op, "fp1"),
                event("v2.core.account.created"),
            )
            .await
            .unwrap();
        f.clock.advance_ms(1000);
        let replay = f
            .node_b
            .publish_event(
                s.clone(),
                key("k1", op, "fp1"),
                event("v2.core.account.created"),
            )
            .await
            .unwrap();
        assert_eq!(
            replay, first,
            "{n}: a replay on the other node returns the same event"
        );
        let conflict = f
            .node_b
            .publish_event(
                s.clone(),
                key("k1", op, "fp2"),
                event("v2.core.account.updated"),
            )
            .await;
        assert!(
            matches!(conflict, Err(StoreError::IdempotencyConflict)),
            "{n}: {conflict:?}"
        );
        // The key is scoped by operation and mode.
        let other_op = f
            .node_a
            .publish_event(
                s.clone(),
                key("k1", "POST /other", "fp2"),
                event("v2.core.account.created"),
            )
            .await
            .unwrap();
        assert_ne!(other_op.id, first.id, "{n}");

        // Concurrent duplicates on both nodes create exactly one event and one delivery.
        let racers = (0..12).map(|i| {
            let node = if i % 2 == 0 { &f.node_a } else { &f.node_b };
            node.publish_event(
                s.clone(),
                key("race", op, "fp"),
                event("v2.core.account.created"),
            )
        });
        let results = futures_util::future::join_all(racers).await;
        let ids: HashSet<String> = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{n}: {e:?}")).id)
            .collect();
        assert_eq!(ids.len(), 1, "{n}: {ids:?}");
        let created = f.node_a.create_destination(
            s.clone(),
            key("d", "POST /v2/core/event_destinations", "x"),
            thin_all(),
        );
        let again = f.node_b.create_destination(
            s.clone(),
            key("d", "POST /v2/core/event_destinations", "x"),
            thin_all(),
        );
        let (created, again) = tokio::join!(created, again);
        assert_eq!(
            created.unwrap().id,
            again.unwrap().id,
            "{n}: one destination for one key"
        );

        let claimed = f.claim_all(&f.node_a, &destination).await;
        let race_id = ids.into_iter().next().unwrap();
        assert_eq!(
            event_ids(&claimed),
            set(&[&first.id, &other_op.id, &race_id]),
            "{n}"
        );
        assert_eq!(claimed.len(), 3, "{n}: replays add no delivery");
        let all = f
            .node_b
            .list_events(s.clone(), EventFilter::default(), Cursor::Start, 100)
            .await
            .unwrap();
        assert_eq!(
            all.items.len(),
            3,
            "{n}: replays and conflicts add no event"
        );
    }
}

#[tokio::test]
async fn pages_are_newest_first_with_insertion_order_breaking_ties_on_any_node() {
    for f in Fixture::all().await {
        let n = f.name;
        let s = &f.scope;
        // Seven events in the same millisecond, then three later ones.
        let mut published = Vec::new();
        for i in 0..10 {
            if i == 7 {
                f.clock.advance_ms(5);
            }
            published.push(f.publish(s, event("v2.core.account.created")).await);
        }
        let newest_first: Vec<String> = published.iter().rev().cloned().collect();
        let list = |node: &Store, cursor| {
            let (node, s) = (node.clone(), s.clone());
            async move {
                node.list_events(s, EventFilter::default(), cursor, 4)
                    .await
                    .unwrap()
            }
        };
        let ids = |p: &eventd::store::Page<eventd::domain::event::Event>| -> Vec<String> {
            p.items.iter().map(|e| e.id.clone()).collect()
        };
        let p1 = list(&f.node_a, Cursor::Start).await;
        assert_eq!(ids(&p1), newest_first[0..4], "{n}");
        assert_eq!((p1.has_newer, p1.has_older), (false, true), "{n}");
        // The next page from the other node.
        let p2 = list(&f.node_b, Cursor::Before(p1.last_seq.unwrap())).await;
        assert_eq!(
            ids(&p2),
            newest_first[4..8],
            "{n}: ties keep insertion order"
        );
        assert_eq!((p2.has_newer, p2.has_older), (true, true), "{n}");
        let p3 = list(&f.node_a, Cursor::Before(p2.last_seq.unwrap())).await;
        assert_eq!(ids(&p3), newest_first[8..10], "{n}");
        assert_eq!((p3.has_newer, p3.has_older), (true, false), "{n}");
        // Walking back gives the same pages.
        let back = list(&f.node_b, Cursor::After(p3.first_seq.unwrap())).await;
        assert_eq!(ids(&back), ids(&p2), "{n}");
        assert_eq!((back.has_newer, back.has_older), (true, true), "{n}");
        let back = list(&f.node_a, Cursor::After(back.first_seq.unwrap())).await;
        assert_eq!(ids(&back), ids(&p1), "{n}");
        assert_eq!((back.has_newer, back.has_older), (false, true), "{n}");
        // Filters apply within pages.
        let filter = EventFilter {
            created_gt: Some(T0_MS),
            ..EventFilter::default()
        };
        let later = f
            .node_b
            .list_events(s.clone(), filter, Cursor::Start, 10)
            .await
            .unwrap();
        assert_eq!(ids(&later), newest_first[0..3], "{n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_claiming_at_once_never_get_the_same_delivery() {
    for f in Fixture::all().await {
        let n = f.name;
        let destinations = [
            f.destination(&f.scope, thin_all()).await,
            f.destination(&f.scope, thin_all()).await,
        ];
        let publishes = (0..150).map(|_| {
            f.node_a
                .publish_event(f.scope.clone(), None, event("v2.core.account.created"))
        });
        for r in futures_util::future::join_all(publishes).await {
            r.unwrap_or_else(|e| panic!("{n}: publish: {e:?}"));
        }
        let claimer = |node: Store| {
            let wants: Vec<(String, usize)> = destinations.iter().map(|d| (d.clone(), 7)).collect();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut empty_rounds = 0;
                while empty_rounds < 3 {
                    let claimed = node
                        .claim_deliveries(wants.clone(), LEASE_MS)
                        .await
                        .expect("claim");
                    empty_rounds = if claimed.is_empty() {
                        empty_rounds + 1
                    } else {
                        0
                    };
                    got.extend(claimed.into_iter().map(|c| c.delivery_id));
                }
                got
            })
        };
        let tasks: Vec<_> = [&f.node_a, &f.node_b, &f.node_a, &f.node_b]
            .into_iter()
            .map(|node| claimer(node.clone()))
            .collect();
        let mut all = Vec::new();
        let mut per_claimer = Vec::new();
        for t in tasks {
            let got = t.await.unwrap();
            per_claimer.push(got.len());
            all.extend(got);
        }
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(
            unique.len(),
            all.len(),
            "{n}: a delivery was claimed twice ({per_claimer:?})"
        );
        assert_eq!(
            all.len(),
            300,
            "{n}: every delivery claimed once ({per_claimer:?})"
        );
    }
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_outcomes_show_in_the_attempt_log() {
    for f in Fixture::all().await {
        let n = f.name;
        let destination = f.destination(&f.scope, thin_all()).await;
        let event_id = f.publish(&f.scope, event("v2.core.account.created")).await;
        let wants = vec![(destination.clone(), 10)];
        let a = f
            .node_a
            .claim_deliveries(wants.clone(), 5_000)
            .await
            .unwrap();
        assert_eq!(a.len(), 1, "{n}");
        assert!(
            f.node_b
                .claim_deliveries(wants.clone(), 5_000)
                .await
                .unwrap()
                .is_empty(),
            "{n}: leased"
        );
        f.clock.advance_ms(4_999);
        assert!(
            f.node_b
                .claim_deliveries(wants.clone(), 5_000)
                .await
                .unwrap()
                .is_empty(),
            "{n}: lease still held"
        );
        // Node A died; its lease expires and node B takes the delivery over.
        f.clock.advance_ms(1);
        let b = f
            .node_b
            .claim_deliveries(wants.clone(), 5_000)
            .await
            .unwrap();
        assert_eq!(b.len(), 1, "{n}: taken over");
        assert_eq!(
            (&b[0].delivery_id, b[0].previous_attempts),
            (&a[0].delivery_id, 0),
            "{n}"
        );
        assert!(
            f.node_a
                .claim_deliveries(wants.clone(), 5_000)
                .await
                .unwrap()
                .is_empty(),
            "{n}: B holds it now"
        );

        let t1 = T0_MS + 5_000;
        f.node_b
            .record_attempts(vec![attempt(
                &b[0],
                AttemptOutcome::Failed,
                t1,
                Some(t1 + 1_000),
            )])
            .await
            .unwrap();
        assert!(
            f.node_a
                .claim_deliveries(wants.clone(), 5_000)
                .await
                .unwrap()
                .is_empty(),
            "{n}: retry not due yet"
        );
        f.clock.advance_ms(1_000);
        let retry = f
            .node_a
            .claim_deliveries(wants.clone(), 5_000)
            .await
            .unwrap();
        assert_eq!(retry.len(), 1, "{n}: retry due");
        assert_eq!(retry[0].previous_attempts, 1, "{n}");
        f.node_a
            .record_attempts(vec![attempt(
                &retry[0],
                AttemptOutcome::Succeeded,
                t1 + 1_000,
                None,
            )])
            .await
            .unwrap();
        // A late outcome of the first, expired attempt does not bring the delivery back.
        f.node_b
            .record_attempts(vec![attempt(
                &a[0],
                AttemptOutcome::Failed,
                T0_MS,
                Some(t1 + 1_000),
            )])
            .await
            .unwrap();
        f.clock.advance_ms(3_600_000);
        assert!(
            f.node_b
                .claim_deliveries(wants.clone(), 5_000)
                .await
                .unwrap()
                .is_empty(),
            "{n}: delivered"
        );
        assert_eq!(f.node_b.pending_stats().await.unwrap().0, 0, "{n}");

        for (of, id) in [
            (AttemptsOf::Event, &event_id),
            (AttemptsOf::Destination, &destination),
        ] {
            let log = f
                .node_b
                .list_attempts(f.scope.clone(), of, id.clone(), Cursor::Start, 10)
                .await
                .unwrap();
            let seen: Vec<(u32, AttemptOutcome, Option<u16>)> = log
                .items
                .iter()
                .map(|a| (a.attempt, a.outcome, a.http_status))
                .collect();
            assert_eq!(
                seen,
                [
                    (1, AttemptOutcome::Failed, Some(503)),
                    (2, AttemptOutcome::Succeeded, Some(200)),
                    (1, AttemptOutcome::Failed, Some(503))
                ],
                "{n}: {of:?}: newest first"
            );
            assert!(
                log.items
                    .iter()
                    .all(|a| a.event_id == event_id && a.destination_id == destination),
                "{n}"
            );
            assert_eq!(log.items[1].next_attempt_ms, None, "{n}");
            assert_eq!(log.items[2].next_attempt_ms, Some(t1 + 1_000), "{n}");
        }
        let other = scope(&f.scope.account_id, Mode::Live);
        assert!(
            is_not_found(
                f.node_b
                    .list_attempts(other, AttemptsOf::Event, event_id, Cursor::Start, 10)
                    .await
            ),
            "{n}"
        );
    }
}

#[tokio::test]
async fn leases_hold_off_other_nodes_and_inactive_destinations_cancel_their_deliveries() {
    for f in Fixture::all().await {
        let n = f.name;
        let s = &f.scope;
        let leased = f.destination(s, thin_all()).await;
        let disabled = f.destination(s, thin_all()).await;
        let deleted = f.destination(s, thin_all()).await;
        for _ in 0..2 {
            f.publish(s, event("v2.core.account.created")).await;
        }
        assert_eq!(f.node_b.pending_stats().await.unwrap().0, 6, "{n}");

        let held = f.claim_all(&f.node_a, &leased).await;
        assert_eq!(held.len(), 2, "{n}");
        assert!(
            f.claim_all(&f.node_b, &leased).await.is_empty(),
            "{n}: leased deliveries are not claimed by another node"
        );

        f.node_a
            .set_destination_status(s.clone(), None, disabled.clone(), Status::Disabled)
            .await
            .unwrap();
        assert!(
            f.claim_all(&f.node_b, &disabled).await.is_empty(),
            "{n}: disabled destinations are not sent to"
        );
        f.node_b
            .delete_destination(s.clone(), None, deleted.clone())
            .await
            .unwrap();
        assert!(f.claim_all(&f.node_b, &deleted).await.is_empty(), "{n}");
        assert_eq!(
            f.node_b.pending_stats().await.unwrap().0,
            4,
            "{n}: deleting cancels at once"
        );
        assert_eq!(
            f.node_a.cancel_inactive_due().await.unwrap(),
            2,
            "{n}: due deliveries of disabled destinations"
        );
        assert_eq!(
            f.node_b.pending_stats().await.unwrap().0,
            2,
            "{n}: only the leased ones are left"
        );
        f.node_a
            .set_destination_status(s.clone(), None, disabled.clone(), Status::Enabled)
            .await
            .unwrap();
        assert!(
            f.claim_all(&f.node_b, &disabled).await.is_empty(),
            "{n}: cancelled stays cancelled"
        );
    }
}

/// A claim round in one call: only enabled destinations with due, unleased work are offered to
/// `allot`, which decides how many each takes; when fewer than asked for are found, the round
/// says when the next delivery comes due.
#[tokio::test]
async fn a_claim_round_offers_due_destinations_and_tells_when_more_is_due() {
    use std::sync::Mutex;
    for f in Fixture::all().await {
        let n = f.name;
        let s = &f.scope;
        let busy = f.destination(s, thin_all()).await;
        let idle = f.destination(s, thin_all()).await;
        let disabled = f.destination(s, thin_all()).await;
        for _ in 0..3 {
            f.publish(s, event("v2.core.account.created")).await;
        }
        f.node_a
            .set_destination_status(s.clone(), None, disabled.clone(), Status::Disabled)
            .await
            .unwrap();
        // `idle` has nothing due: its deliveries are all leased by the other node.
        assert_eq!(f.claim_all(&f.node_b, &idle).await.len(), 3, "{n}");

        let offered = Arc::new(Mutex::new(Vec::new()));
        let seen = offered.clone();
        let round = f
            .node_a
            .claim_due(
                Box::new(move |due: Vec<String>| {
                    *seen.lock().unwrap() = due.clone();
                    due.into_iter().map(|d| (d, 2)).collect()
                }),
                LEASE_MS,
            )
            .await
            .unwrap();
        assert_eq!(
            *offered.lock().unwrap(),
            vec![busy.clone()],
            "{n}: only due work"
        );
        assert_eq!((round.claimed.len(), round.wanted), (2, 2), "{n}");
        assert!(
            round.claimed.iter().all(|c| c.destination.id == busy),
            "{n}"
        );
        assert_eq!(round.next_due_ms, None, "{n}: got all it asked for");
        let mut done = round.claimed;

        // Asking for more than is due: the round says when the next delivery comes due (none
        // here: the last one is due now, and then nothing is pending unleased).
        let round = f
            .node_a
            .claim_due(
                Box::new(|due: Vec<String>| due.into_iter().map(|d| (d, 10)).collect()),
                LEASE_MS,
            )
            .await
            .unwrap();
        assert_eq!((round.claimed.len(), round.wanted), (1, 10), "{n}");
        done.extend(round.claimed);
        f.node_a
            .record_attempts(
                done.iter()
                    .map(|c| attempt(c, AttemptOutcome::Succeeded, T0_MS, None))
                    .collect(),
            )
            .await
            .unwrap();
        let round = f
            .node_a
            .claim_due(
                Box::new(|due: Vec<String>| due.into_iter().map(|d| (d, 10)).collect()),
                LEASE_MS,
            )
            .await
            .unwrap();
        assert_eq!(
            (round.claimed.len(), round.wanted),
            (0, 0),
            "{n}: nothing due"
        );
        assert_eq!(round.next_due_ms, None, "{n}: nothing pending later");

        // A failed attempt due again in 30 s is what the next round waits for.
        assert!(
            f.claim_all(&f.node_a, &idle).await.is_empty(),
            "{n}: leased by node B"
        );
        f.clock.advance_ms(LEASE_MS);
        let again = f.claim_all(&f.node_a, &idle).await;
        assert_eq!(again.len(), 3, "{n}: expired leases are due again");
        let retry_at = T0_MS + LEASE_MS + 30_000;
        f.node_a
            .record_attempts(
                again
                    .iter()
                    .map(|c| attempt(c, AttemptOutcome::Failed, T0_MS + LEASE_MS, Some(retry_at)))
                    .collect(),
            )
            .await
            .unwrap();
        let round = f
            .node_a
            .claim_due(
                Box::new(|due: Vec<String>| due.into_iter().map(|d| (d, 10)).collect()),
                LEASE_MS,
            )
            .await
            .unwrap();
        assert!(round.claimed.is_empty(), "{n}");
        assert_eq!(round.next_due_ms, Some(retry_at), "{n}");
    }
}

/// Routing always follows the destinations as they are now, whichever node changed them: a node
/// that has published before sees a destination another node created, disabled, enabled again
/// or deleted since.
#[tokio::test]
async fn publishing_routes_by_the_destinations_as_they_are_now_on_every_node() {
    for f in Fixture::all().await {
        let n = f.name;
        let s = &f.scope;
        let routed = |node: &Store| {
            let (node, s) = (node.clone(), s.clone());
            async move {
                node.publish_event(s, None, event("v2.core.account.created"))
                    .await
                    .unwrap()
                    .fanout
            }
        };
        assert_eq!(routed(&f.node_a).await, 0, "{n}: nothing to route to yet");
        let d = f
            .node_b
            .create_destination(s.clone(), None, thin_all())
            .await
            .unwrap()
            .id;
        assert_eq!(routed(&f.node_a).await, 1, "{n}: created on the other node");
        f.node_b
            .set_destination_status(s.clone(), None, d.clone(), Status::Disabled)
            .await
            .unwrap();
        assert_eq!(
            routed(&f.node_a).await,
            0,
            "{n}: disabled on the other node"
        );
        f.node_b
            .set_destination_status(s.clone(), None, d.clone(), Status::Enabled)
            .await
            .unwrap();
        assert_eq!(routed(&f.node_a).await, 1, "{n}: enabled again");
        f.node_b
            .update_destination(
                s.clone(),
                None,
                d.clone(),
                DestinationPatch {
                    enabled_events: Some(vec!["v2.core.account.closed".into()]),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(routed(&f.node_a).await, 0, "{n}: another type now");
        f.node_b
            .delete_destination(s.clone(), None, d)
            .await
            .unwrap();
        assert_eq!(routed(&f.node_a).await, 0, "{n}: deleted");
    }
}
