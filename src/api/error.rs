//! The one public error: renders Stripe's v2 envelope `{"error":{"type","code","message"}}`.
//! Internal details of 5xx errors go to the log with the request id, never to the client.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::request::current_request_id;
use crate::store::StoreError;

/// One invalid field: its path (`webhook_endpoint.url`, `events_from[0]`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid fields")]
    InvalidFields(Vec<FieldError>),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("not found")]
    NotFound,
    #[error("unrecognized request url")]
    RouteNotFound { method: String, path: String },
    #[error("method not allowed")]
    MethodNotAllowed { method: String, path: String },
    #[error("idempotency conflict")]
    IdempotencyConflict,
    #[error("request body too large")]
    PayloadTooLarge { limit: usize },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidFields(vec![FieldError {
            path: path.into(),
            message: message.into(),
        }])
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        const INVALID: &str = "invalid_request_error";
        match self {
            ApiError::InvalidFields(fields) => {
                let list: Vec<String> = fields
                    .iter()
                    .map(|f| format!("'{}: {}'", f.path, f.message))
                    .collect();
                let message = format!(
                    "Some fields in the request were invalid: {}",
                    list.join(", ")
                );
                (StatusCode::BAD_REQUEST, INVALID, "invalid_fields", message)
            }
            ApiError::BadRequest { code, message } => {
                (StatusCode::BAD_REQUEST, INVALID, code, message.clone())
            }
            ApiError::Unauthorized(message) => (
                StatusCode::UNAUTHORIZED,
                INVALID,
                "invalid_api_key",
                message.clone(),
            ),
            ApiError::Forbidden { code, message } => {
                (StatusCode::FORBIDDEN, INVALID, code, message.clone())
            }
            ApiError::NotFound => (
                StatusCode::NOT_FOUND,
                INVALID,
                "not_found",
                "The resource wasn't found.".to_owned(),
            ),
            ApiError::RouteNotFound { method, path } => (
                StatusCode::NOT_FOUND,
                INVALID,
                "unrecognized_request_url",
                format!("Unrecognized request URL ({method}: {path})."),
            ),
            ApiError::MethodNotAllowed { method, path } => (
                StatusCode::METHOD_NOT_ALLOWED,
                INVALID,
                "method_not_allowed",
                format!("The method {method} is not allowed for {path}."),
            ),
            ApiError::IdempotencyConflict => (
                StatusCode::CONFLICT,
                "idempotency_error",
                "idempotency_error",
                "An idempotent retry occurred with different request parameters.".to_owned(),
            ),
            ApiError::PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                INVALID,
                "request_too_large",
                format!("The request body is larger than the limit of {limit} bytes."),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
                format!(
                    "An unexpected error occurred. Please try again; if it persists, report request {}.",
                    current_request_id()
                ),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound,
            StoreError::IdempotencyConflict => ApiError::IdempotencyConflict,
            StoreError::WebhookEndpointLimit(n) => ApiError::field(
                "type",
                format!("An account can have at most {n} webhook endpoints in each mode."),
            ),
            StoreError::NotResendable(why) => ApiError::field("event_destination", why.to_string()),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code, message) = self.parts();
        if let ApiError::Internal(source) = &self {
            tracing::error!(request_id = %current_request_id(), error = ?source, "internal error");
        }
        let body = json!({"error": {"type": kind, "code": code, "message": message}});
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self, ApiError::IdempotencyConflict) {
            response
                .headers_mut()
                .insert("stripe-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}
