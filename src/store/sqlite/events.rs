//! Event rows and the pending deliveries stored with them.

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::paging;
use crate::domain::event::{Event, Family};
use crate::domain::{ids, Scope};
use crate::store::{Cursor, EventFilter, Page, StoreError};

fn family_str(f: Family) -> &'static str {
    match f {
        Family::Thin => "thin",
        Family::Snapshot => "snapshot",
    }
}

pub fn insert(c: &Connection, e: &Event) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO events (id, account_id, livemode, family, type, related_id, created_ms, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        e.id,
        e.account_id,
        e.mode.livemode(),
        family_str(e.family),
        e.type_,
        e.related_object_id(),
        e.created_ms,
        serde_json::to_string(e)?
    ])?;
    Ok(())
}

/// One pending delivery of `event_id` to `destination_id`, due now.
pub fn insert_delivery(
    c: &Connection,
    event_id: &str,
    destination_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT INTO deliveries (id, event_id, destination_id, status, next_attempt_ms, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4)",
    )?
    .execute(params![ids::delivery(now_ms), event_id, destination_id, now_ms])?;
    Ok(())
}

pub fn get(c: &Connection, scope: &Scope, id: &str, family: Family) -> Result<Event, StoreError> {
    let body: Option<String> = c
        .prepare_cached(
            "SELECT body FROM events WHERE id = ?1 AND account_id = ?2 AND livemode = ?3 AND family = ?4",
        )?
        .query_row(
            params![id, scope.account_id, scope.mode.livemode(), family_str(family)],
            |r| r.get(0),
        )
        .optional()?;
    let body = body.ok_or(StoreError::NotFound)?;
    Ok(serde_json::from_str(&body)?)
}

/// Any event by id in the scope, whatever its family (for idempotent replays).
pub fn get_any(c: &Connection, scope: &Scope, id: &str) -> Result<Event, StoreError> {
    get(c, scope, id, Family::Thin).or_else(|e| match e {
        StoreError::NotFound => get(c, scope, id, Family::Snapshot),
        other => Err(other),
    })
}

pub fn list(
    c: &Connection,
    scope: &Scope,
    filter: &EventFilter,
    cursor: Cursor,
    limit: usize,
) -> Result<Page<Event>, StoreError> {
    let mut base =
        String::from("FROM events WHERE account_id = ?1 AND livemode = ?2 AND family = 'thin'");
    let mut params = vec![
        Value::Text(scope.account_id.clone()),
        Value::Integer(scope.mode.livemode() as i64),
    ];
    let mut push = |base: &mut String, cond: &str, v: Value| {
        params.push(v);
        base.push_str(&format!(" AND {cond} ?{}", params.len()));
    };
    if let Some(object_id) = &filter.object_id {
        push(&mut base, "related_id =", Value::Text(object_id.clone()));
    }
    for (cond, bound) in [
        ("created_ms >", filter.created_gt),
        ("created_ms >=", filter.created_gte),
        ("created_ms <", filter.created_lt),
        ("created_ms <=", filter.created_lte),
    ] {
        if let Some(ms) = bound {
            push(&mut base, cond, Value::Integer(ms));
        }
    }
    if !filter.types.is_empty() {
        let start = params.len() + 1;
        let marks: Vec<String> = (start..start + filter.types.len())
            .map(|i| format!("?{i}"))
            .collect();
        base.push_str(&format!(" AND type IN ({})", marks.join(", ")));
        params.extend(filter.types.iter().cloned().map(Value::Text));
    }
    paging::fetch_page(c, &base, params, cursor, limit, |body| {
        Ok(serde_json::from_str(body)?)
    })
}

/// Deletes events created before `older_than_ms`, with their deliveries and delivery log.
pub fn prune(c: &Connection, older_than_ms: i64) -> Result<usize, StoreError> {
    c.prepare_cached(
        "DELETE FROM delivery_attempts WHERE event_id IN (SELECT id FROM events WHERE created_ms < ?1)",
    )?
    .execute([older_than_ms])?;
    c.prepare_cached(
        "DELETE FROM deliveries WHERE event_id IN (SELECT id FROM events WHERE created_ms < ?1)",
    )?
    .execute([older_than_ms])?;
    Ok(
        c.prepare_cached("DELETE FROM events WHERE created_ms < ?1")?
            .execute([older_than_ms])?,
    )
}
