//! PostgreSQL schema and migrations; nodes starting together serialise on an advisory lock.

use tokio_postgres::Client;

use crate::store::StoreError;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    parent_id TEXT,
    created_ms BIGINT NOT NULL
);
CREATE TABLE api_keys (
    hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    livemode BOOLEAN NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE event_destinations (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    livemode BOOLEAN NOT NULL,
    status TEXT NOT NULL,
    is_webhook BOOLEAN NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    body TEXT NOT NULL
);
CREATE INDEX event_destinations_scope ON event_destinations (account_id, livemode, deleted, seq);
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    livemode BOOLEAN NOT NULL,
    family TEXT NOT NULL,
    type TEXT NOT NULL,
    related_id TEXT,
    created_ms BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_scope ON events (account_id, livemode, family, seq);
CREATE INDEX events_related ON events (related_id, seq);
CREATE INDEX events_created ON events (created_ms);
CREATE TABLE deliveries (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT,
    lease_expires_ms BIGINT,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_claim ON deliveries (destination_id, status, next_attempt_ms);
CREATE TABLE delivery_attempts (
    seq BIGSERIAL PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    started_ms BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id, seq);
CREATE INDEX delivery_attempts_destination ON delivery_attempts (destination_id, seq);
CREATE TABLE idempotency_keys (
    account_id TEXT NOT NULL,
    livemode BOOLEAN NOT NULL,
    operation TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (account_id, livemode, operation, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_ms);
"#,
    // Only pending deliveries are ever looked up by due time: partial indexes hold just those, so
    // a delivery that ends leaves them instead of moving to another part of a full index.
    r#"
DROP INDEX deliveries_due;
DROP INDEX deliveries_claim;
CREATE INDEX deliveries_pending ON deliveries (destination_id, next_attempt_ms) WHERE status = 'pending';
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_ms) WHERE status = 'pending';
"#,
    // A claim only sets the lease (no indexed column): with room left on each page the new row
    // version stays on it (a HOT update) and no index gets a new entry.
    r#"
ALTER TABLE deliveries SET (fillfactor = 70);
"#,
];

/// An arbitrary constant identifying eventd's migration lock.
const MIGRATION_LOCK: i64 = 0x6576_656e_7464;

pub async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS eventd_schema (version BIGINT NOT NULL);")
        .await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let version: i64 = tx
        .query_opt("SELECT version FROM eventd_schema", &[])
        .await?
        .map_or(0, |r| r.get(0));
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(sql).await?;
        let v = (i + 1) as i64;
        tx.execute("DELETE FROM eventd_schema", &[]).await?;
        tx.execute("INSERT INTO eventd_schema (version) VALUES ($1)", &[&v])
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
