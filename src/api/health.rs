//! `/healthz` (database state, no auth) and `/openapi.json` (the API description, no auth).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;

pub const OPENAPI: &str = include_str!("../../openapi/eventd.openapi.json");

pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping_database().await {
        Ok(()) => (
            StatusCode::OK,
            Json(json!({"status": "ok", "database": "ok"})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "database": "unavailable"})),
            )
        }
    }
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Prometheus text: delivery counters, latency histogram, pending deliveries and claim-loop health.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = state.clock.now_ms();
    let (pending, oldest) = match state.store.pending_stats().await {
        Ok((count, due)) => (
            Some(count),
            Some(due.map_or(0.0, |d| (now - d).max(0) as f64 / 1000.0)),
        ),
        Err(_) => (None, None),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(pending, oldest, now),
    )
}
