//! Row-level queries for PostgreSQL, mirroring the SQLite ones table by table.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::paging::{self, Param};
use crate::config::IDEMPOTENCY_RETENTION_MS;
use crate::domain::account::{Account, KeyOwner};
use crate::domain::delivery::{AttemptOutcome, DeliveryAttempt};
use crate::domain::destination::EventDestination;
use crate::domain::event::{Event, Family};
use crate::domain::{ids, Mode, Scope};
use crate::store::{
    hash_key, AttemptsOf, ClaimedDelivery, Cursor, EventFilter, IdempotencyKey, Page, StoreError,
};

// Every statement here is prepared once per connection (deadpool's statement cache): the
// server parses and plans it once, and each call is a single round trip.

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

pub(super) async fn exec<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.execute(&statement, params).await
}

pub(super) async fn rows<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query(&statement, params).await
}

pub(super) async fn one_row<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Row, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query_one(&statement, params).await
}

pub(super) async fn row_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, tokio_postgres::Error> {
    let statement = c.prepare_cached(sql).await?;
    c.query_opt(&statement, params).await
}

fn family_str(f: Family) -> &'static str {
    match f {
        Family::Thin => "thin",
        Family::Snapshot => "snapshot",
    }
}

// --- accounts and keys ---

pub async fn insert_account<C: GenericClient>(
    c: &C,
    id: &str,
    parent: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    if let Some(parent) = parent {
        get_account(c, parent).await?.ok_or(StoreError::NotFound)?;
    }
    exec(
        c,
        "INSERT INTO accounts (id, parent_id, created_ms) VALUES ($1, $2, $3)",
        &[&id, &parent, &now],
    )
    .await?;
    Ok(())
}

pub async fn insert_key<C: GenericClient>(
    c: &C,
    account_id: &str,
    mode: Mode,
    secret: &str,
    now: i64,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO api_keys (hash, account_id, livemode, created_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (hash) DO NOTHING",
        &[&hash_key(secret), &account_id, &mode.livemode(), &now],
    )
    .await?;
    Ok(())
}

pub async fn find_key<C: GenericClient>(
    c: &C,
    secret: &str,
) -> Result<Option<KeyOwner>, StoreError> {
    let row = row_opt(
        c,
        "SELECT account_id, livemode FROM api_keys WHERE hash = $1",
        &[&hash_key(secret)],
    )
    .await?;
    Ok(row.map(|r| KeyOwner {
        account_id: r.get(0),
        mode: Mode::from_livemode(r.get(1)),
    }))
}

pub async fn get_account<C: GenericClient>(c: &C, id: &str) -> Result<Option<Account>, StoreError> {
    let row = row_opt(
        c,
        "SELECT id, parent_id FROM accounts WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(row.map(|r| Account {
        id: r.get(0),
        parent_id: r.get(1),
    }))
}

pub async fn list_accounts<C: GenericClient>(c: &C) -> Result<Vec<Account>, StoreError> {
    let rows = rows(
        c,
        "SELECT id, parent_id FROM accounts ORDER BY created_ms, id",
        &[],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| Account {
            id: r.get(0),
            parent_id: r.get(1),
        })
        .collect())
}

pub async fn first_root_account<C: GenericClient>(c: &C) -> Result<Option<String>, StoreError> {
    let row = row_opt(
        c,
        "SELECT id FROM accounts WHERE parent_id IS NULL ORDER BY created_ms, id LIMIT 1",
        &[],
    )
    .await?;
    Ok(row.map(|r| r.get(0)))
}

// --- idempotency ---

pub async fn check_idempotency<C: GenericClient>(
    c: &C,
    scope: &Scope,
    key: &IdempotencyKey,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let row = row_opt(c,
            "SELECT fingerprint, resource_id FROM idempotency_keys
             WHERE account_id = $1 AND livemode = $2 AND operation = $3 AND key = $4 AND created_ms >= $5",
            &[&scope.account_id, &scope.mode.livemode(), &key.operation, &key.key, &(now - IDEMPOTENCY_RETENTION_MS)],
        )
        .await?;
    match row {
        Some(r) if r.get::<_, String>(0) != key.fingerprint => Err(StoreError::IdempotencyConflict),
        Some(r) => Ok(Some(r.get(1))),
        None => Ok(None),
    }
}

pub async fn record_idempotency<C: GenericClient>(
    c: &C,
    scope: &Scope,
    key: &IdempotencyKey,
    resource_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    exec(c,
        "INSERT INTO idempotency_keys (account_id, livemode, operation, key, fingerprint, resource_id, created_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (account_id, livemode, operation, key) DO UPDATE
         SET fingerprint = EXCLUDED.fingerprint, resource_id = EXCLUDED.resource_id, created_ms = EXCLUDED.created_ms",
        &[&scope.account_id, &scope.mode.livemode(), &key.operation, &key.key, &key.fingerprint, &resource_id, &now],
    )
    .await?;
    Ok(())
}

// --- event destinations ---

pub async fn insert_destination<C: GenericClient>(
    c: &C,
    d: &EventDestination,
) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO event_destinations (id, account_id, livemode, status, is_webhook, body)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &d.id,
            &d.account_id,
            &d.mode.livemode(),
            &d.status.as_str(),
            &d.is_webhook(),
            &serde_json::to_string(d)?,
        ],
    )
    .await?;
    Ok(())
}

pub async fn save_destination<C: GenericClient>(
    c: &C,
    d: &EventDestination,
) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE event_destinations SET status = $2, body = $3 WHERE id = $1",
        &[&d.id, &d.status.as_str(), &serde_json::to_string(d)?],
    )
    .await?;
    Ok(())
}

pub async fn count_webhooks<C: GenericClient>(c: &C, scope: &Scope) -> Result<usize, StoreError> {
    let n: i64 = one_row(
        c,
        "SELECT COUNT(*) FROM event_destinations
             WHERE account_id = $1 AND livemode = $2 AND NOT deleted AND is_webhook",
        &[&scope.account_id, &scope.mode.livemode()],
    )
    .await?
    .get(0);
    Ok(n as usize)
}

pub async fn get_destination<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
) -> Result<EventDestination, StoreError> {
    let row = row_opt(
        c,
        "SELECT body FROM event_destinations
             WHERE id = $1 AND account_id = $2 AND livemode = $3 AND NOT deleted",
        &[&id, &scope.account_id, &scope.mode.livemode()],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(serde_json::from_str(row.get(0))?)
}

pub async fn delete_destination<C: GenericClient>(
    c: &C,
    id: &str,
    now: i64,
) -> Result<(), StoreError> {
    exec(
        c,
        "UPDATE event_destinations SET deleted = TRUE WHERE id = $1",
        &[&id],
    )
    .await?;
    exec(
        c,
        &format!(
            "WITH canceled AS (
                 UPDATE deliveries SET status = 'canceled', next_attempt_ms = NULL, updated_ms = $2
                 WHERE destination_id = $1 AND status = 'pending'
                 RETURNING id, destination_id, attempts)
             {LOG_CANCELED}"
        ),
        &[&id, &now],
    )
    .await?;
    Ok(())
}

/// Follows a `canceled` CTE (the canceled deliveries' `id, destination_id, attempts`): marks the
/// last attempt of each in the delivery log, whose next attempt will not happen.
pub const LOG_CANCELED: &str = "UPDATE delivery_attempts a
    SET body = (a.body::jsonb || '{\"next_attempt_ms\": null, \"next_attempt_canceled\": true}')::text
    FROM canceled c
    WHERE a.destination_id = c.destination_id AND a.delivery_id = c.id AND a.attempt = c.attempts";

pub async fn list_destinations<C: GenericClient>(
    c: &C,
    scope: &Scope,
    cursor: Cursor,
    limit: usize,
) -> Result<Page<EventDestination>, StoreError> {
    let params: Vec<Param> = vec![
        Box::new(scope.account_id.clone()),
        Box::new(scope.mode.livemode()),
    ];
    paging::fetch_page(
        c,
        "FROM event_destinations WHERE account_id = $1 AND livemode = $2 AND NOT deleted",
        &params,
        cursor,
        limit,
        |b| Ok(serde_json::from_str(b)?),
    )
    .await
}

// --- events ---

pub async fn insert_event<C: GenericClient>(c: &C, e: &Event) -> Result<(), StoreError> {
    exec(
        c,
        "INSERT INTO events (id, account_id, livemode, family, type, related_id, created_ms, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &e.id,
            &e.account_id,
            &e.mode.livemode(),
            &family_str(e.family),
            &e.type_,
            &e.related_object_id(),
            &e.created_ms,
            &serde_json::to_string(e)?,
        ],
    )
    .await?;
    Ok(())
}

pub async fn insert_delivery<C: GenericClient>(
    c: &C,
    event_id: &str,
    destination_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    exec(c,
        "INSERT INTO deliveries (id, event_id, destination_id, status, next_attempt_ms, created_ms, updated_ms)
         VALUES ($1, $2, $3, 'pending', $4, $4, $4)",
        &[&ids::delivery(now), &event_id, &destination_id, &now],
    )
    .await?;
    Ok(())
}

pub async fn get_event<C: GenericClient>(
    c: &C,
    scope: &Scope,
    id: &str,
    family: Option<Family>,
) -> Result<Event, StoreError> {
    let family = family.map(family_str);
    let row = row_opt(
        c,
        "SELECT body FROM events WHERE id = $1 AND account_id = $2 AND livemode = $3
               AND ($4::TEXT IS NULL OR family = $4)",
        &[&id, &scope.account_id, &scope.mode.livemode(), &family],
    )
    .await?
    .ok_or(StoreError::NotFound)?;
    Ok(serde_json::from_str(row.get(0))?)
}

pub async fn list_events<C: GenericClient>(
    c: &C,
    scope: &Scope,
    f: &EventFilter,
    cursor: Cursor,
    limit: usize,
) -> Result<Page<Event>, StoreError> {
    let mut base =
        String::from("FROM events WHERE account_id = $1 AND livemode = $2 AND family = 'thin'");
    let mut params: Vec<Param> = vec![
        Box::new(scope.account_id.clone()),
        Box::new(scope.mode.livemode()),
    ];
    if let Some(object_id) = &f.object_id {
        params.push(Box::new(object_id.clone()));
        base.push_str(&format!(" AND related_id = ${}", params.len()));
    }
    for (cond, bound) in [
        (">", f.created_gt),
        (">=", f.created_gte),
        ("<", f.created_lt),
        ("<=", f.created_lte),
    ] {
        if let Some(ms) = bound {
            params.push(Box::new(ms));
            base.push_str(&format!(" AND created_ms {cond} ${}", params.len()));
        }
    }
    if !f.types.is_empty() {
        params.push(Box::new(f.types.clone()));
        base.push_str(&format!(" AND type = ANY(${})", params.len()));
    }
    paging::fetch_page(c, &base, &params, cursor, limit, |b| {
        Ok(serde_json::from_str(b)?)
    })
    .await
}

pub async fn prune<C: GenericClient>(
    c: &C,
    event_before: i64,
    idempotency_before: i64,
) -> Result<usize, StoreError> {
    exec(
        c,
        "DELETE FROM idempotency_keys WHERE created_ms < $1",
        &[&idempotency_before],
    )
    .await?;
    for table in ["delivery_attempts", "deliveries"] {
        exec(c,
            &format!("DELETE FROM {table} WHERE event_id IN (SELECT id FROM events WHERE created_ms < $1)"),
            &[&event_before],
        )
        .await?;
    }
    Ok(exec(
        c,
        "DELETE FROM events WHERE created_ms < $1",
        &[&event_before],
    )
    .await? as usize)
}

// --- deliveries ---

/// Leases up to `n` due deliveries of each `(destination, n)` that is (still) enabled; rows
/// another node holds are skipped. One statement leases for every destination (a `LATERAL`
/// probe of each destination's pending deliveries), and two more read the destinations as they
/// are now and the events, whatever the number of destinations.
pub async fn claim<C: GenericClient>(
    c: &C,
    wants: Vec<(String, usize)>,
    now: i64,
    lease_until: i64,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    if wants.is_empty() {
        return Ok(Vec::new());
    }
    let (ids, limits): (Vec<String>, Vec<i64>) =
        wants.into_iter().map(|(id, n)| (id, n as i64)).unzip();
    let lease_params: [&(dyn ToSql + Sync); 4] = [&ids, &limits, &now, &lease_until];
    let claimed = rows(
        c,
        // `= ANY(ARRAY(…))`, not `IN (…)`: the planner cannot tell how few rows the probes
        // return and would join them to a scan of the whole table (80 ms a round with 1,000,000
        // deliveries); an array makes it look each one up by its key. Each probe is ordered
        // like `deliveries_pending`, so it reads that index from the destination's oldest due
        // delivery on (ordered by due time alone, the planner may walk `deliveries_pending_due`
        // through every destination's deliveries).
        "UPDATE deliveries SET lease_expires_ms = $4 WHERE seq = ANY(ARRAY(
             SELECT x.seq FROM unnest($1::TEXT[], $2::BIGINT[]) AS w(destination_id, n)
             JOIN event_destinations d
               ON d.id = w.destination_id AND d.status = 'enabled' AND NOT d.deleted
             CROSS JOIN LATERAL (
                 SELECT seq FROM deliveries
                 WHERE destination_id = w.destination_id AND status = 'pending'
                   AND next_attempt_ms <= $3
                   AND (lease_expires_ms IS NULL OR lease_expires_ms <= $3)
                 ORDER BY destination_id, next_attempt_ms LIMIT w.n
                 FOR UPDATE SKIP LOCKED) x))
         RETURNING id, event_id, destination_id, attempts",
        &lease_params,
    );
    let destination_params: [&(dyn ToSql + Sync); 1] = [&ids];
    let destinations = rows(
        c,
        "SELECT body FROM event_destinations WHERE id = ANY($1)",
        &destination_params,
    );
    let (claimed, destinations) = futures_util::future::try_join(claimed, destinations).await?;
    let destinations: HashMap<String, Arc<EventDestination>> = destinations
        .iter()
        .map(|r| {
            let d: EventDestination = serde_json::from_str(r.get(0))?;
            Ok((d.id.clone(), Arc::new(d)))
        })
        .collect::<Result<_, StoreError>>()?;
    let mut leased = Vec::with_capacity(claimed.len());
    for r in claimed {
        let destination_id: &str = r.get(2);
        let destination = destinations
            .get(destination_id)
            .cloned()
            .ok_or(StoreError::NotFound)?;
        let row: (String, String, i64) = (r.get(0), r.get(1), r.get(3));
        leased.push((row, destination));
    }
    let mut event_ids: Vec<&str> = leased.iter().map(|((_, e, _), _)| e.as_str()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let mut events: HashMap<String, Arc<Event>> = HashMap::new();
    if !event_ids.is_empty() {
        for row in rows(
            c,
            "SELECT body FROM events WHERE id = ANY($1)",
            &[&event_ids],
        )
        .await?
        {
            let e: Event = serde_json::from_str(row.get(0))?;
            events.insert(e.id.clone(), Arc::new(e));
        }
    }
    leased
        .into_iter()
        .map(|((delivery_id, event_id, attempts), destination)| {
            Ok(ClaimedDelivery {
                event: events.get(&event_id).cloned().ok_or(StoreError::NotFound)?,
                delivery_id,
                destination,
                previous_attempts: attempts as u32,
            })
        })
        .collect()
}

/// Records attempts and moves their deliveries on (succeeded, retry later, failed for good), two
/// statements for all of them. A delivery canceled while its attempt was in flight stays
/// canceled, and its attempt is logged with no next attempt.
pub async fn record_attempts<C: GenericClient>(
    c: &C,
    attempts: &[DeliveryAttempt],
    now: i64,
) -> Result<(), StoreError> {
    let ids: Vec<&str> = attempts.iter().map(|a| a.delivery_id.as_str()).collect();
    let statuses: Vec<&str> = attempts
        .iter()
        .map(|a| match (a.outcome, a.next_attempt_ms) {
            (AttemptOutcome::Succeeded, _) => "succeeded",
            (AttemptOutcome::Failed, Some(_)) => "pending",
            (AttemptOutcome::Failed, None) => "failed",
        })
        .collect();
    let numbers: Vec<i64> = attempts.iter().map(|a| i64::from(a.attempt)).collect();
    let next: Vec<Option<i64>> = attempts.iter().map(|a| a.next_attempt_ms).collect();
    let moved: std::collections::HashSet<String> = rows(
        c,
        "UPDATE deliveries d SET status = u.status, attempts = u.attempt, next_attempt_ms = u.next,
             lease_expires_ms = NULL, updated_ms = $5
         FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[]) AS u(id, status, attempt, next)
         WHERE d.id = u.id AND d.status = 'pending'
         RETURNING d.id",
        &[&ids, &statuses, &numbers, &next, &now],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    let events: Vec<&str> = attempts.iter().map(|a| a.event_id.as_str()).collect();
    let destinations: Vec<&str> = attempts.iter().map(|a| a.destination_id.as_str()).collect();
    let started: Vec<i64> = attempts.iter().map(|a| a.started_ms).collect();
    let bodies: Vec<String> = attempts
        .iter()
        .map(|a| a.log_body(moved.contains(&a.delivery_id)))
        .collect::<Result<_, _>>()?;
    exec(
        c,
        "INSERT INTO delivery_attempts (delivery_id, event_id, destination_id, attempt, started_ms, body)
         SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[])",
        &[&ids, &events, &destinations, &numbers, &started, &bodies],
    )
    .await?;
    Ok(())
}

pub async fn attempts<C: GenericClient>(
    c: &C,
    of: AttemptsOf,
    id: &str,
    cursor: Cursor,
    limit: usize,
) -> Result<Page<DeliveryAttempt>, StoreError> {
    let base = match of {
        AttemptsOf::Event => "FROM delivery_attempts WHERE event_id = $1",
        AttemptsOf::Destination => "FROM delivery_attempts WHERE destination_id = $1",
    };
    let params: Vec<Param> = vec![Box::new(id.to_owned())];
    paging::fetch_page(c, base, &params, cursor, limit, |b| {
        Ok(serde_json::from_str(b)?)
    })
    .await
}
