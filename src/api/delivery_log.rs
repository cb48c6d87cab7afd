//! The delivery log and manual resend (eventd extensions; Stripe shows these only in its Dashboard):
//! `GET /v2/core/events/{id}/delivery_attempts`, `GET /v2/core/event_destinations/{id}/delivery_attempts`,
//! `POST /v2/core/events/{id}/resend`.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::pagination;
use super::query::Query;
use super::request::{check_id_prefix, Ctx, JsonBody, PathId};
use super::validate::{finish_errors, Fields};
use super::wire;
use super::AppState;
use crate::store::AttemptsOf;

type ApiResult = Result<Json<Value>, ApiError>;

pub async fn event_attempts(
    state: State<AppState>,
    ctx: Ctx,
    PathId(id): PathId,
    q: RawQuery,
) -> ApiResult {
    check_id_prefix(&id, "evt_", "event")?;
    let path = format!("/v2/core/events/{id}/delivery_attempts");
    list(state, ctx, AttemptsOf::Event, id, path, q).await
}

pub async fn destination_attempts(
    state: State<AppState>,
    ctx: Ctx,
    PathId(id): PathId,
    q: RawQuery,
) -> ApiResult {
    check_id_prefix(&id, "ed_", "event destination")?;
    let path = format!("/v2/core/event_destinations/{id}/delivery_attempts");
    list(state, ctx, AttemptsOf::Destination, id, path, q).await
}

async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    of: AttemptsOf,
    id: String,
    path: String,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    let mut q = Query::parse(raw.as_deref());
    let req = pagination::parse(&mut q, &path, |q| {
        finish_errors(std::mem::take(q).finish())?;
        Ok(json!({}))
    })?;
    let page = state
        .store
        .list_attempts(ctx.scope, of, id, req.cursor, req.limit)
        .await?;
    let data = page.items.iter().map(wire::delivery_attempt).collect();
    Ok(Json(pagination::envelope(&path, data, &page, &req)))
}

/// Queues one more delivery of the event to the destination, due now. Automatic retries of
/// earlier deliveries go on independently.
pub async fn resend(
    State(state): State<AppState>,
    ctx: Ctx,
    PathId(id): PathId,
    JsonBody(body): JsonBody,
) -> ApiResult {
    check_id_prefix(&id, "evt_", "event")?;
    let mut f = Fields::new(body);
    let v = f.required("event_destination");
    let destination = f.string("event_destination", v, 255);
    if destination
        .as_deref()
        .is_some_and(|d| !d.starts_with("ed_"))
    {
        f.error(
            "event_destination",
            "Must be an event destination id (ed_…).",
        );
    }
    f.finish()?;
    let destination = destination.unwrap_or_default();
    let idem = ctx.idempotency(
        format!("POST /v2/core/events/{id}/resend"),
        &json!({"event_destination": destination}),
    );
    state
        .store
        .resend(ctx.scope, idem, id.clone(), destination.clone())
        .await?;
    Ok(Json(json!({
        "object": "eventd.resend",
        "event": id,
        "event_destination": destination,
        "status": "pending",
    })))
}
