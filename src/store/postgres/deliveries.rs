//! The worker's side of the store on PostgreSQL: claims, outcomes, cancellation, the delivery log.

use super::{queries, PgStore};
use crate::domain::Scope;
use deadpool_postgres::Transaction;

use crate::store::{
    Allot, AttemptsOf, ClaimRound, ClaimedDelivery, Cursor, DeliveryAttempt, IdempotencyKey, Page,
    StoreError,
};

impl PgStore {
    /// Leases due deliveries; `FOR UPDATE SKIP LOCKED` keeps two nodes from taking the same one.
    pub async fn claim_deliveries(
        &self,
        wants: Vec<(String, usize)>,
        lease_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let now = self.clock.now_ms();
        let mut client = self.client().await?;
        let tx = bookkeeping(&mut client).await?;
        let out = queries::claim(&tx, wants, now, now + lease_ms).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn record_attempts(&self, attempts: Vec<DeliveryAttempt>) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let mut client = self.client().await?;
        let tx = bookkeeping(&mut client).await?;
        queries::record_attempts(&tx, &attempts, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Cancels due deliveries of disabled destinations, and of deleted ones: a publish, ping or
    /// resend on another node can commit a delivery just after the delete cancelled the others.
    pub async fn cancel_inactive_due(&self) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let n = self
            .client()
            .await?
            .query_one(
                &format!(
                    "WITH canceled AS (
                         UPDATE deliveries SET status = 'canceled', next_attempt_ms = NULL, updated_ms = $1
                         WHERE status = 'pending' AND next_attempt_ms <= $1
                           AND (lease_expires_ms IS NULL OR lease_expires_ms <= $1)
                           AND destination_id IN (SELECT id FROM event_destinations WHERE status = 'disabled' OR deleted)
                         RETURNING id, destination_id, attempts),
                     logged AS ({})
                     SELECT count(*) FROM canceled",
                    queries::LOG_CANCELED
                ),
                &[&now],
            )
            .await?
            .get::<_, i64>(0);
        Ok(n as usize)
    }

    pub async fn claim_due(&self, allot: Allot, lease_ms: i64) -> Result<ClaimRound, StoreError> {
        let now = self.clock.now_ms();
        let mut client = self.client().await?;
        let due: Vec<String> = queries::rows(
            &client,
            // One index probe per enabled destination (LATERAL … LIMIT 1). Not `EXISTS`: the
            // planner turns that into a semi-join that reads every pending delivery due (300 ms
            // a round with a backlog of 800,000).
            "SELECT d.id FROM event_destinations d
                 CROSS JOIN LATERAL (
                     SELECT 1 FROM deliveries x
                     WHERE x.destination_id = d.id AND x.status = 'pending'
                       AND x.next_attempt_ms <= $1
                       AND (x.lease_expires_ms IS NULL OR x.lease_expires_ms <= $1)
                     ORDER BY x.destination_id, x.next_attempt_ms LIMIT 1) due
                 WHERE NOT d.deleted AND d.status = 'enabled' AND d.is_webhook",
            &[&now],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        let wants = allot(due);
        let wanted = wants.iter().map(|w| w.1).sum();
        let tx = bookkeeping(&mut client).await?;
        let claimed = queries::claim(&tx, wants, now, now + lease_ms).await?;
        tx.commit().await?;
        let next_due_ms = match claimed.len() < wanted || wanted == 0 {
            true => queries::one_row(
                &client,
                "SELECT MIN(next_attempt_ms) FROM deliveries WHERE status = 'pending' AND next_attempt_ms > $1",
                &[&now],
            )
            .await?
            .get(0),
            false => None,
        };
        Ok(ClaimRound {
            claimed,
            wanted,
            next_due_ms,
        })
    }

    pub async fn pending_stats(&self) -> Result<(i64, Option<i64>), StoreError> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT COUNT(*), MIN(next_attempt_ms) FROM deliveries WHERE status = 'pending'",
                &[],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    pub async fn resend(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        event_id: String,
        destination_id: String,
    ) -> Result<(), StoreError> {
        self.idempotent(
            scope,
            idem,
            true,
            async |_: &Transaction<'_>, _: &Scope, _: &str| Ok(()),
            async move |tx: &Transaction<'_>, scope: &Scope, now| {
                let event = queries::get_event(tx, scope, &event_id, None).await?;
                let d = queries::get_destination(tx, scope, &destination_id).await?;
                crate::domain::routing::resendable(&d, &event)?;
                queries::insert_delivery(tx, &event.id, &d.id, now).await?;
                Ok((event.id, ()))
            },
        )
        .await
    }

    pub async fn list_attempts(
        &self,
        scope: Scope,
        of: AttemptsOf,
        id: String,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<DeliveryAttempt>, StoreError> {
        let client = self.client().await?;
        match of {
            AttemptsOf::Event => queries::get_event(&client, &scope, &id, None)
                .await
                .map(drop)?,
            AttemptsOf::Destination => queries::get_destination(&client, &scope, &id)
                .await
                .map(drop)?,
        }
        queries::attempts(&client, of, &id, cursor, limit).await
    }
}

/// A transaction for the worker's bookkeeping (leases, attempt outcomes): its commit does not
/// wait for the WAL flush (`synchronous_commit = off`). A database crash can lose the last such
/// commits, which only means one more attempt of a delivery, never a lost event; acknowledged
/// writes (publishes, API changes) keep waiting for the flush.
async fn bookkeeping(
    client: &mut deadpool_postgres::Object,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL synchronous_commit TO OFF")
        .await?;
    Ok(tx)
}
