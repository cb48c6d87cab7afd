//! Idempotency records: (account, mode, operation, key) → body fingerprint and the resource it produced.

use rusqlite::{params, Connection, OptionalExtension};

use crate::config::IDEMPOTENCY_RETENTION_MS;
use crate::domain::Scope;
use crate::store::{IdempotencyKey, StoreError};

/// The resource id a previous request with this key produced, or a conflict if the body differs.
/// Keys older than `IDEMPOTENCY_RETENTION_MS` are void even before pruning removes them.
pub fn check(
    c: &Connection,
    scope: &Scope,
    key: &IdempotencyKey,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let row: Option<(String, String)> = c
        .prepare_cached(
            "SELECT fingerprint, resource_id FROM idempotency_keys
             WHERE account_id = ?1 AND livemode = ?2 AND operation = ?3 AND key = ?4
               AND created_ms >= ?5",
        )?
        .query_row(
            params![
                scope.account_id,
                scope.mode.livemode(),
                key.operation,
                key.key,
                now_ms - IDEMPOTENCY_RETENTION_MS
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        Some((fingerprint, _)) if fingerprint != key.fingerprint => {
            Err(StoreError::IdempotencyConflict)
        }
        Some((_, resource_id)) => Ok(Some(resource_id)),
        None => Ok(None),
    }
}

pub fn record(
    c: &Connection,
    scope: &Scope,
    key: &IdempotencyKey,
    resource_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO idempotency_keys (account_id, livemode, operation, key, fingerprint, resource_id, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        scope.account_id,
        scope.mode.livemode(),
        key.operation,
        key.key,
        key.fingerprint,
        resource_id,
        now_ms
    ])?;
    Ok(())
}

pub fn prune(c: &Connection, older_than_ms: i64) -> Result<usize, StoreError> {
    Ok(
        c.prepare_cached("DELETE FROM idempotency_keys WHERE created_ms < ?1")?
            .execute([older_than_ms])?,
    )
}
