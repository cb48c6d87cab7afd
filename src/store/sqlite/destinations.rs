//! Event destination rows: the domain object as JSON beside the columns that queries filter on.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::paging;
use crate::domain::destination::EventDestination;
use crate::domain::Scope;
use crate::store::{Cursor, Page, StoreError};

pub fn insert(c: &Connection, d: &EventDestination) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO event_destinations (id, account_id, livemode, status, is_webhook, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        d.id,
        d.account_id,
        d.mode.livemode(),
        d.status.as_str(),
        d.is_webhook(),
        serde_json::to_string(d)?
    ])?;
    super::routes::changed(c)
}

pub fn save(c: &Connection, d: &EventDestination) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE event_destinations SET status = ?2, body = ?3 WHERE id = ?1")?
        .execute(params![d.id, d.status.as_str(), serde_json::to_string(d)?])?;
    super::routes::changed(c)
}

pub fn count_webhooks(c: &Connection, scope: &Scope) -> Result<usize, StoreError> {
    let n: i64 = c
        .prepare_cached(
            "SELECT COUNT(*) FROM event_destinations
             WHERE account_id = ?1 AND livemode = ?2 AND deleted = 0 AND is_webhook = 1",
        )?
        .query_row(params![scope.account_id, scope.mode.livemode()], |r| {
            r.get(0)
        })?;
    Ok(n as usize)
}

/// A live (not deleted) destination of the scope.
pub fn get(c: &Connection, scope: &Scope, id: &str) -> Result<EventDestination, StoreError> {
    let body: Option<String> = c
        .prepare_cached(
            "SELECT body FROM event_destinations
             WHERE id = ?1 AND account_id = ?2 AND livemode = ?3 AND deleted = 0",
        )?
        .query_row(params![id, scope.account_id, scope.mode.livemode()], |r| {
            r.get(0)
        })
        .optional()?;
    let body = body.ok_or(StoreError::NotFound)?;
    Ok(serde_json::from_str(&body)?)
}

/// Marks the destination deleted and cancels its pending deliveries.
pub fn delete(c: &Connection, id: &str, now_ms: i64) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE event_destinations SET deleted = 1 WHERE id = ?1")?
        .execute([id])?;
    super::routes::changed(c)?;
    super::deliveries::cancel(c, id, super::deliveries::Cancel::All, now_ms)?;
    Ok(())
}

pub fn list(
    c: &Connection,
    scope: &Scope,
    cursor: Cursor,
    limit: usize,
) -> Result<Page<EventDestination>, StoreError> {
    paging::fetch_page(
        c,
        "FROM event_destinations WHERE account_id = ?1 AND livemode = ?2 AND deleted = 0",
        vec![
            Value::Text(scope.account_id.clone()),
            Value::Integer(scope.mode.livemode() as i64),
        ],
        cursor,
        limit,
        |body| Ok(serde_json::from_str(body)?),
    )
}
