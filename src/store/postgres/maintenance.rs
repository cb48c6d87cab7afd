//! Keeps eventd's tables fit for the planner on PostgreSQL. Without column statistics the planner
//! guesses: a statement planned while a table was nearly empty keeps scanning it whole as it
//! grows, or a claim fetches and sorts every pending delivery of a destination to take 64. So one
//! node per schema at a time (an advisory lock) ANALYZEs a table as soon as a fifth of it changed
//! since its last analysis (autovacuum's own rule, but checked every few seconds, so a fresh
//! install gets statistics in its first seconds, not minutes), and, where autovacuum is off,
//! VACUUMs a table once a fifth of it is dead rows.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::pool_error;
use crate::store::StoreError;

/// How often the tables are checked.
const CHECK_EVERY: Duration = Duration::from_secs(3);
/// Any constant naming eventd's maintenance lock; the lock's second key is the schema's, so
/// installations in different schemas of one database maintain their tables independently.
const MAINTENANCE_LOCK: i32 = 0x6576_6d74;
/// The tables that grow and change.
const TABLES: [&str; 4] = [
    "deliveries",
    "events",
    "delivery_attempts",
    "event_destinations",
];

/// Runs until the process ends.
pub async fn maintain(pool: Pool) {
    loop {
        if let Err(e) = round(&pool).await {
            tracing::debug!(error = %e, "table maintenance skipped");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

/// One check; does nothing when another node holds the maintenance lock.
async fn round(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(pool_error)?;
    let locked: bool = client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext(current_schema()))",
            &[&MAINTENANCE_LOCK],
        )
        .await?
        .get(0);
    if !locked {
        return Ok(());
    }
    let result = async {
        // A VACUUM of a large table may take longer than the statement timeout every other
        // statement has; cancelled, it would start over on the next check and never finish.
        client.batch_execute("SET statement_timeout = 0").await?;
        let autovacuum: bool = client
            .query_one("SELECT current_setting('autovacuum') = 'on'", &[])
            .await?
            .get(0);
        let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
        let rows = client
            .query(
                "SELECT relname::TEXT, n_mod_since_analyze, n_dead_tup, n_live_tup
                 FROM pg_stat_user_tables
                 WHERE relid = ANY(SELECT to_regclass(t)::oid FROM unnest($1::TEXT[]) AS t)",
                &[&tables],
            )
            .await?;
        for row in rows {
            let (table, changed, dead, live): (String, i64, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            if !autovacuum && dead > 1_000 + live / 5 {
                client.batch_execute(&format!("VACUUM {table}")).await?;
            }
            if changed > 100 + live / 5 {
                client.batch_execute(&format!("ANALYZE {table}")).await?;
            }
        }
        Ok::<_, StoreError>(())
    }
    .await;
    client.batch_execute("RESET statement_timeout").await?;
    client
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext(current_schema()))",
            &[&MAINTENANCE_LOCK],
        )
        .await?;
    result
}
