//! SQLite schema and migrations, applied in order by `PRAGMA user_version`.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    parent_id TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE api_keys (
    hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    livemode INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE event_destinations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    livemode INTEGER NOT NULL,
    status TEXT NOT NULL,
    is_webhook INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE INDEX event_destinations_scope ON event_destinations (account_id, livemode, deleted, seq);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    livemode INTEGER NOT NULL,
    family TEXT NOT NULL,
    type TEXT NOT NULL,
    related_id TEXT,
    created_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX events_scope ON events (account_id, livemode, family, seq);
CREATE INDEX events_related ON events (related_id, seq);
CREATE INDEX events_created ON events (created_ms);
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    event_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER,
    lease_expires_ms INTEGER,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_destination ON deliveries (destination_id, seq);
CREATE TABLE idempotency_keys (
    account_id TEXT NOT NULL,
    livemode INTEGER NOT NULL,
    operation TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (account_id, livemode, operation, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_ms);
"#,
    r#"
CREATE INDEX deliveries_claim ON deliveries (destination_id, status, next_attempt_ms);
CREATE TABLE delivery_attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX delivery_attempts_event ON delivery_attempts (event_id, seq);
CREATE INDEX delivery_attempts_destination ON delivery_attempts (destination_id, seq);
"#,
    // Only pending deliveries are ever looked up by due time: partial indexes hold just those, so
    // a delivery that ends leaves them instead of moving to another part of a full index.
    r#"
DROP INDEX deliveries_due;
DROP INDEX deliveries_claim;
DROP INDEX deliveries_destination;
CREATE INDEX deliveries_pending ON deliveries (destination_id, next_attempt_ms) WHERE status = 'pending';
CREATE INDEX deliveries_pending_due ON deliveries (next_attempt_ms) WHERE status = 'pending';
"#,
    // A value every change to destinations or accounts replaces (see `routes.rs`).
    r#"
CREATE TABLE route_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
INSERT INTO route_version (id, version) VALUES (1, 0);
"#,
];

pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before the writer answers; group commit amortises the fsync.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    // Savepoint sub-journals and sort spills stay in memory; a 32 MiB page cache per connection
    // keeps the hot index pages of the write path resident.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", -32_768)?;
    Ok(())
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
