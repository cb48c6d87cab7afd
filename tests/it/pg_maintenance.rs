//! PostgreSQL table maintenance (runs only when `EVENTD_TEST_DATABASE_URL` is set): eventd itself
//! ANALYZEs its tables once they have changed enough, so the planner has statistics within
//! seconds of a fresh install even where autovacuum is off or slow. Without them, statements
//! planned while a table was empty keep scanning it whole (delivery latency climbs to seconds).

use std::time::{Duration, Instant};

use serde_json::json;

use super::support::{webhook, TestApp};

#[tokio::test]
async fn eventd_analyzes_its_tables_once_they_have_changed() {
    let app = TestApp::start().await;
    let Some(db) = app.database() else {
        return; // SQLite: nothing to maintain.
    };
    app.create_destination(webhook("stats", &["v2.test.stats"]))
        .await;
    // 300 events, 300 deliveries: far past "100 + a fifth of the rows" since the last analysis.
    for _ in 0..300 {
        app.publish(json!({"type": "v2.test.stats"})).await;
    }
    let client = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // `last_analyze` is set by an explicit ANALYZE only (autovacuum sets `last_autoanalyze`).
        let analyzed: Vec<String> = client
            .query(
                "SELECT relname::TEXT FROM pg_stat_user_tables
                 WHERE schemaname = $1 AND last_analyze IS NOT NULL
                   AND relname IN ('events', 'deliveries')",
                &[&db.schema()],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        if analyzed.len() == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events and deliveries not analyzed within 30 s (analyzed: {analyzed:?})"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
