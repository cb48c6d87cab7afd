//! Per-request context: the request id and API version (a task-local set by `request_context`),
//! the authenticated scope (`Ctx`), JSON bodies (`JsonBody`) and path ids (`PathId`).

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::AppState;
use crate::domain::event::Event;
use crate::domain::{ids, Scope};
use crate::store::IdempotencyKey;

#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub id: String,
    pub stripe_version: String,
}

tokio::task_local! {
    static REQUEST: RequestInfo;
}

pub fn current_request_id() -> String {
    REQUEST
        .try_with(|r| r.id.clone())
        .unwrap_or_else(|_| "unknown".to_owned())
}

pub fn current_stripe_version() -> Option<String> {
    REQUEST.try_with(|r| r.stripe_version.clone()).ok()
}

fn valid_stripe_version(v: &str) -> bool {
    let (date, name) = v.split_once('.').unwrap_or((v, "x"));
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Middleware: assigns the request id, resolves `Stripe-Version`, and stamps both on the response.
pub async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = ids::request();
    let requested = req
        .headers()
        .get("stripe-version")
        .map(|v| v.to_str().map(str::trim).unwrap_or("").to_owned());
    let (version, bad) = match requested {
        None => (state.config.default_stripe_version.clone(), false),
        Some(v) if valid_stripe_version(&v) => (v, false),
        Some(_) => (state.config.default_stripe_version.clone(), true),
    };
    let info = RequestInfo {
        id: id.clone(),
        stripe_version: version.clone(),
    };
    let mut response = REQUEST
        .scope(info, async move {
            if bad {
                ApiError::BadRequest {
                    code: "invalid_stripe_version",
                    message: "The Stripe-Version header must look like 2026-10-28.endive."
                        .to_owned(),
                }
                .into_response()
            } else {
                next.run(req).await
            }
        })
        .await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert("request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&version) {
        headers.insert("stripe-version", v);
    }
    response
}

/// The authenticated caller: the scope it acts in and its idempotency key, if any.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub scope: Scope,
    /// The path from the root to the key's own account (`None`: a root account's key).
    pub key_account_path: Option<String>,
    pub request_id: String,
    pub idempotency_key: Option<String>,
}

impl Ctx {
    /// An event's `context` as this caller sees it: `None` for the key's own account's events.
    pub fn context_of(&self, event: &Event) -> Option<String> {
        event.context_seen_from(self.key_account_path.as_deref())
    }

    /// The idempotency record for this request's operation, fingerprinted by its canonical body.
    pub fn idempotency(&self, operation: String, body: &Value) -> Option<IdempotencyKey> {
        let key = self.idempotency_key.clone()?;
        // serde_json's map is ordered, so `to_string` is canonical (key order never matters).
        let fingerprint = hex::encode(Sha256::digest(body.to_string().as_bytes()));
        Some(IdempotencyKey {
            key,
            operation,
            fingerprint,
        })
    }

    /// The key to record in an event's `reason`: the client's, or a generated one (as Stripe does).
    pub fn reason_idempotency_key(&self) -> String {
        self.idempotency_key
            .clone()
            .unwrap_or_else(ids::generated_idempotency_key)
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = api_key(&parts.headers)?;
        let owner = state.authenticate(&key).await?;
        let context = header(&parts.headers, "stripe-context")
            .or_else(|| header(&parts.headers, "stripe-account"));
        let own = state.root_scope(&owner).await?;
        let key_account_path = own.context.clone();
        let scope = match context {
            None => own,
            Some(path) => state.resolve_context(&owner, &path).await?,
        };
        let idempotency_key = match header(&parts.headers, "idempotency-key") {
            Some(k) if k.is_empty() || k.chars().count() > 255 => {
                return Err(ApiError::BadRequest {
                    code: "invalid_idempotency_key",
                    message: "The Idempotency-Key header must be 1 to 255 characters.".to_owned(),
                })
            }
            other => other,
        };
        Ok(Ctx {
            scope,
            key_account_path,
            request_id: current_request_id(),
            idempotency_key,
        })
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
}

/// The secret key from `Authorization: Bearer …` or HTTP Basic (the key as user name).
fn api_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let missing = || {
        ApiError::Unauthorized(
            "You did not provide an API key. Provide it as 'Authorization: Bearer sk_…'."
                .to_owned(),
        )
    };
    let value = header(headers, "authorization").ok_or_else(missing)?;
    let (scheme, rest) = value.split_once(' ').ok_or_else(missing)?;
    let rest = rest.trim();
    let key = if scheme.eq_ignore_ascii_case("bearer") {
        rest.to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| missing())?;
        let text = String::from_utf8(decoded).map_err(|_| missing())?;
        text.split_once(':')
            .map_or(text.clone(), |(u, _)| u.to_owned())
    } else {
        return Err(missing());
    };
    if key.is_empty() {
        return Err(missing());
    }
    if key.starts_with("rk_") || key.starts_with("pk_") {
        return Err(ApiError::Forbidden {
            code: "secret_key_required",
            message: "The v2 API accepts secret keys (sk_…) only.".to_owned(),
        });
    }
    Ok(key)
}

/// Stripe's form, `sk_test_****abcd`: the first 8 and last 4 characters; a key too short to
/// show both without overlap shows only its first 4 (or nothing).
pub fn redact_key(key: &str) -> String {
    let n = key.chars().count();
    if n <= 12 {
        let head: String = key.chars().take(n.saturating_sub(4).min(4)).collect();
        return format!("{head}****");
    }
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let head: String = key.chars().take(8).collect();
    format!("{head}****{tail}")
}

pub fn invalid_key(key: &str) -> ApiError {
    ApiError::Unauthorized(format!("Invalid API Key provided: {}", redact_key(key)))
}

pub fn is_secret_key_shape(key: &str) -> bool {
    (key.starts_with("sk_test_") || key.starts_with("sk_live_"))
        && key.len() <= 256
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A JSON object body. An empty body counts as `{}`. Oversized → 413; not JSON → 400 naming `body`.
pub struct JsonBody(pub Map<String, Value>);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge { limit })?;
        parse_body(&bytes).map(JsonBody)
    }
}

pub fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::field("body", "The request body is not valid UTF-8."))?;
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::field("body", "Expected a JSON object.")),
        Err(e) => Err(ApiError::field("body", format!("Invalid JSON: {e}."))),
    }
}

/// The `{id}` path segment, percent-decoded.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            Err(_) => Err(ApiError::field("id", "The id in the path is not valid.")),
        }
    }
}

/// Checks an id's prefix (`ed_`, `evt_`): a wrong prefix is a 400 naming `id`.
pub fn check_id_prefix(id: &str, prefix: &str, what: &str) -> Result<(), ApiError> {
    if id.starts_with(prefix) && id.len() > prefix.len() {
        Ok(())
    } else {
        Err(ApiError::field(
            "id",
            format!("'{id}' is not an {what} id; those start with '{prefix}'."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::redact_key;

    #[test]
    fn keys_are_redacted_without_showing_more_than_a_part() {
        for (key, shown) in [
            ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_****p7dc"),
            ("sk_test_abcdefgh", "sk_test_****efgh"),
            ("hello", "h****"),
            ("sk_live_1234", "sk_l****"),
            ("abc", "****"),
            ("", "****"),
        ] {
            assert_eq!(redact_key(key), shown, "{key}");
        }
    }
}
