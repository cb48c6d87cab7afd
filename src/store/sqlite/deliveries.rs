//! Delivery rows: claiming with a lease, recording attempts, cancelling, and the delivery log.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use super::paging;
use crate::domain::delivery::{AttemptOutcome, DeliveryAttempt};
use crate::domain::destination::EventDestination;
use crate::domain::event::Event;
use crate::store::{ClaimedDelivery, Cursor, Page, StoreError};

/// Leases up to `limit` due deliveries of one destination until `lease_until_ms`, if the
/// destination is (still) enabled; each comes with the destination as it is now.
pub fn claim(
    c: &Connection,
    destination_id: &str,
    limit: usize,
    now_ms: i64,
    lease_until_ms: i64,
    events: &mut HashMap<String, Arc<Event>>,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let body: Option<String> = c
        .prepare_cached(
            "SELECT body FROM event_destinations WHERE id = ?1 AND status = 'enabled' AND deleted = 0",
        )?
        .query_row([destination_id], |r| r.get(0))
        .optional()?;
    let Some(body) = body else {
        return Ok(Vec::new());
    };
    let destination: Arc<EventDestination> = Arc::new(serde_json::from_str(&body)?);
    let rows: Vec<(String, String, u32)> = c
        .prepare_cached(
            "UPDATE deliveries SET lease_expires_ms = ?4 WHERE seq IN (
                 SELECT seq FROM deliveries
                 WHERE destination_id = ?1 AND status = 'pending' AND next_attempt_ms <= ?2
                   AND (lease_expires_ms IS NULL OR lease_expires_ms <= ?2)
                 ORDER BY next_attempt_ms LIMIT ?3)
             RETURNING id, event_id, attempts",
        )?
        .query_map(
            params![destination_id, now_ms, limit as i64, lease_until_ms],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (delivery_id, event_id, attempts) in rows {
        let event = match events.get(&event_id) {
            Some(e) => e.clone(),
            None => {
                let body: String = c
                    .prepare_cached("SELECT body FROM events WHERE id = ?1")?
                    .query_row([&event_id], |r| r.get(0))?;
                let e: Arc<Event> = Arc::new(serde_json::from_str(&body)?);
                events.insert(event_id, e.clone());
                e
            }
        };
        out.push(ClaimedDelivery {
            delivery_id,
            destination: destination.clone(),
            previous_attempts: attempts,
            event,
        });
    }
    Ok(out)
}

/// Records an attempt and moves the delivery on: succeeded, retry later, or failed for good.
/// A delivery cancelled while the attempt was in flight stays cancelled.
pub fn record(c: &Connection, a: &DeliveryAttempt, now_ms: i64) -> Result<(), StoreError> {
    let status = match (a.outcome, a.next_attempt_ms) {
        (AttemptOutcome::Succeeded, _) => "succeeded",
        (AttemptOutcome::Failed, Some(_)) => "pending",
        (AttemptOutcome::Failed, None) => "failed",
    };
    let moved = c
        .prepare_cached(
            "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_ms = ?4,
             lease_expires_ms = NULL, updated_ms = ?5
         WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![
            a.delivery_id,
            status,
            a.attempt,
            a.next_attempt_ms,
            now_ms
        ])?;
    c.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt, started_ms, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        a.delivery_id,
        a.event_id,
        a.destination_id,
        a.attempt,
        a.started_ms,
        a.log_body(moved > 0)?
    ])?;
    Ok(())
}

/// Cancels the due deliveries of disabled destinations (re-enabling before a retry is due keeps
/// it). Deleting a destination cancels its deliveries at once.
pub fn cancel_inactive_due(c: &Connection, now_ms: i64) -> Result<usize, StoreError> {
    let inactive: Vec<String> = c
        .prepare_cached(
            "SELECT id FROM event_destinations WHERE status = 'disabled' AND deleted = 0",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut n = 0;
    for id in inactive {
        n += cancel(c, &id, Cancel::DueNow, now_ms)?;
    }
    Ok(n)
}

/// Which pending deliveries of a destination `cancel` cancels.
#[derive(Debug, Clone, Copy)]
pub enum Cancel {
    /// Those due by now that nobody holds a lease on (a disabled destination).
    DueNow,
    /// All of them, in flight or not (a deleted destination: an attempt in flight records its
    /// outcome, but nothing follows it).
    All,
}

/// Cancels pending deliveries of the destination and marks the last attempt of each in the
/// delivery log: its next attempt will not happen.
pub fn cancel(
    c: &Connection,
    destination_id: &str,
    which: Cancel,
    now_ms: i64,
) -> Result<usize, StoreError> {
    const CANCELABLE: &str = "destination_id = ?1 AND status = 'pending' AND next_attempt_ms <= ?2
        AND (lease_expires_ms IS NULL OR lease_expires_ms <= ?2)";
    let bound = match which {
        Cancel::DueNow => now_ms,
        Cancel::All => i64::MAX,
    };
    c.prepare_cached(&format!(
        "UPDATE delivery_attempts
         SET body = json_set(body, '$.next_attempt_ms', NULL, '$.next_attempt_canceled', json('true'))
         WHERE destination_id = ?1
           AND (delivery_id, attempt) IN (SELECT id, attempts FROM deliveries WHERE {CANCELABLE})"
    ))?
    .execute(params![destination_id, bound])?;
    Ok(c.prepare_cached(&format!(
        "UPDATE deliveries SET status = 'canceled', next_attempt_ms = NULL, updated_ms = ?3
             WHERE {CANCELABLE}"
    ))?
    .execute(params![destination_id, bound, now_ms])?)
}

/// Ids of the enabled, not deleted webhook destinations that have a due delivery nobody holds a
/// lease on: the ones the worker should claim for now.
pub fn due_destinations(c: &Connection, now_ms: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT d.id FROM event_destinations d
         WHERE d.deleted = 0 AND d.status = 'enabled' AND d.is_webhook = 1
           AND EXISTS (SELECT 1 FROM deliveries x
                       WHERE x.destination_id = d.id AND x.status = 'pending'
                         AND x.next_attempt_ms <= ?1
                         AND (x.lease_expires_ms IS NULL OR x.lease_expires_ms <= ?1))",
    )?;
    let rows = stmt.query_map([now_ms], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// When the earliest pending delivery is due, if any (the oldest overdue one included).
pub fn next_due_ms(c: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(
        c.prepare_cached("SELECT MIN(next_attempt_ms) FROM deliveries WHERE status = 'pending'")?
            .query_row([], |r| r.get(0))
            .optional()?
            .flatten(),
    )
}

/// When the earliest pending delivery that is not yet due becomes due, if any.
pub fn next_due_after(c: &Connection, now_ms: i64) -> Result<Option<i64>, StoreError> {
    Ok(c
        .prepare_cached(
            "SELECT MIN(next_attempt_ms) FROM deliveries WHERE status = 'pending' AND next_attempt_ms > ?1",
        )?
        .query_row([now_ms], |r| r.get(0))
        .optional()?
        .flatten())
}

/// Pending deliveries and the due time of the oldest one (for metrics).
pub fn pending_stats(c: &Connection) -> Result<(i64, Option<i64>), StoreError> {
    let count: i64 = c
        .prepare_cached("SELECT COUNT(*) FROM deliveries WHERE status = 'pending'")?
        .query_row([], |r| r.get(0))?;
    Ok((count, next_due_ms(c)?))
}

/// A new pending delivery of an existing event, due now (manual resend).
pub fn resend(
    c: &Connection,
    event_id: &str,
    destination_id: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    super::events::insert_delivery(c, event_id, destination_id, now_ms)
}

/// The delivery log of one event or one destination, newest first.
pub fn attempts(
    c: &Connection,
    column: AttemptsOf,
    id: &str,
    cursor: Cursor,
    limit: usize,
) -> Result<Page<DeliveryAttempt>, StoreError> {
    let base = match column {
        AttemptsOf::Event => "FROM delivery_attempts WHERE event_id = ?1",
        AttemptsOf::Destination => "FROM delivery_attempts WHERE destination_id = ?1",
    };
    paging::fetch_page(
        c,
        base,
        vec![Value::Text(id.to_owned())],
        cursor,
        limit,
        |b| Ok(serde_json::from_str(b)?),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptsOf {
    Event,
    Destination,
}
