//! Event destinations and events on PostgreSQL.

use deadpool_postgres::Transaction;

use super::{queries, PgStore};
use crate::domain::destination::{
    DestinationPatch, EventDestination, NewDestination, NewTarget, Status, MAX_WEBHOOK_ENDPOINTS,
};
use crate::domain::event::{Event, Family, NewEvent, RelatedObject, RequestReason, PING_TYPE};
use crate::domain::{ids, Scope};
use crate::store::{Cursor, EventFilter, IdempotencyKey, Page, StoreError};

async fn replay_destination(
    tx: &Transaction<'_>,
    scope: &Scope,
    id: &str,
) -> Result<EventDestination, StoreError> {
    queries::get_destination(tx, scope, id).await
}

async fn replay_event(tx: &Transaction<'_>, scope: &Scope, id: &str) -> Result<Event, StoreError> {
    queries::get_event(tx, scope, id, None).await
}

impl PgStore {
    pub async fn create_destination(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        new: NewDestination,
    ) -> Result<EventDestination, StoreError> {
        self.idempotent(
            scope,
            idem,
            false,
            replay_destination,
            async move |tx: &Transaction<'_>, scope: &Scope, now| {
                if matches!(new.target, NewTarget::WebhookEndpoint { .. }) {
                    // Serialise creates per account so the endpoint limit holds across nodes.
                    tx.execute(
                        "SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE",
                        &[&scope.account_id],
                    )
                    .await?;
                    if queries::count_webhooks(tx, scope).await? >= MAX_WEBHOOK_ENDPOINTS {
                        return Err(StoreError::WebhookEndpointLimit(MAX_WEBHOOK_ENDPOINTS));
                    }
                }
                let d = EventDestination::new(
                    ids::event_destination(scope.mode),
                    scope.account_id.clone(),
                    scope.mode,
                    new,
                    now,
                );
                queries::insert_destination(tx, &d).await?;
                Ok((d.id.clone(), d))
            },
        )
        .await
    }

    pub async fn get_destination(
        &self,
        scope: Scope,
        id: String,
    ) -> Result<EventDestination, StoreError> {
        queries::get_destination(&self.client().await?, &scope, &id).await
    }

    pub async fn list_destinations(
        &self,
        scope: Scope,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<EventDestination>, StoreError> {
        queries::list_destinations(&self.client().await?, &scope, cursor, limit).await
    }

    pub async fn update_destination(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        id: String,
        patch: DestinationPatch,
    ) -> Result<EventDestination, StoreError> {
        self.idempotent(
            scope,
            idem,
            false,
            replay_destination,
            async move |tx: &Transaction<'_>, scope: &Scope, now| {
                let mut d = lock_destination(tx, scope, &id).await?;
                d.apply(patch, now);
                queries::save_destination(tx, &d).await?;
                Ok((id, d))
            },
        )
        .await
    }

    pub async fn set_destination_status(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        id: String,
        status: Status,
    ) -> Result<EventDestination, StoreError> {
        self.idempotent(
            scope,
            idem,
            false,
            replay_destination,
            async move |tx: &Transaction<'_>, scope: &Scope, now| {
                let mut d = lock_destination(tx, scope, &id).await?;
                d.set_status(status, now);
                queries::save_destination(tx, &d).await?;
                Ok((id, d))
            },
        )
        .await
    }

    pub async fn delete_destination(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        id: String,
    ) -> Result<String, StoreError> {
        let replay = async |_: &Transaction<'_>, _: &Scope, id: &str| Ok(id.to_owned());
        self.idempotent(
            scope,
            idem,
            false,
            replay,
            async move |tx: &Transaction<'_>, scope: &Scope, now| {
                lock_destination(tx, scope, &id).await?;
                queries::delete_destination(tx, &id, now).await?;
                Ok((id.clone(), id))
            },
        )
        .await
    }

    pub async fn ping_destination(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        id: String,
        reason: RequestReason,
    ) -> Result<Event, StoreError> {
        self.idempotent(
            scope,
            idem,
            true,
            replay_event,
            async move |tx: &Transaction<'_>, scope: &Scope, now| {
                let d = queries::get_destination(tx, scope, &id).await?;
                let enabled = d.status == Status::Enabled;
                let event = Event {
                    id: ids::event(scope.mode, now),
                    account_id: scope.account_id.clone(),
                    mode: scope.mode,
                    type_: PING_TYPE.to_owned(),
                    family: Family::Thin,
                    created_ms: now,
                    context: scope.context.clone(),
                    reason: Some(reason),
                    related_object: Some(RelatedObject {
                        url: format!("/v2/core/event_destinations/{}", d.id),
                        id: Some(d.id.clone()),
                        type_: "v2.core.event_destination".to_owned(),
                    }),
                    data: None,
                    changes: None,
                    fanout: enabled as i64,
                };
                queries::insert_event(tx, &event).await?;
                if enabled {
                    queries::insert_delivery(tx, &event.id, &d.id, now).await?;
                }
                Ok((event.id.clone(), event))
            },
        )
        .await
    }

    /// Stores the event and one pending delivery per matching destination, in one transaction
    /// shared with concurrent publishes (see `publish`).
    pub async fn publish_event(
        &self,
        scope: Scope,
        idem: Option<IdempotencyKey>,
        new: NewEvent,
    ) -> Result<Event, StoreError> {
        self.publisher.publish(scope, idem, new).await
    }

    pub async fn get_event(
        &self,
        scope: Scope,
        id: String,
        family: Family,
    ) -> Result<Event, StoreError> {
        queries::get_event(&self.client().await?, &scope, &id, Some(family)).await
    }

    pub async fn list_events(
        &self,
        scope: Scope,
        filter: EventFilter,
        cursor: Cursor,
        limit: usize,
    ) -> Result<Page<Event>, StoreError> {
        queries::list_events(&self.client().await?, &scope, &filter, cursor, limit).await
    }

    pub async fn prune(
        &self,
        event_retention_ms: i64,
        idempotency_retention_ms: i64,
    ) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = queries::prune(
            &tx,
            now - event_retention_ms,
            now - idempotency_retention_ms,
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// The destination, row-locked for the rest of the transaction (concurrent updates serialise).
async fn lock_destination(
    tx: &Transaction<'_>,
    scope: &Scope,
    id: &str,
) -> Result<EventDestination, StoreError> {
    tx.execute(
        "SELECT 1 FROM event_destinations WHERE id = $1 FOR UPDATE",
        &[&id],
    )
    .await?;
    queries::get_destination(tx, scope, id).await
}
