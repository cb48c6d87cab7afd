//! The HTTP API: routing, extractors, wire types and errors. The only module that knows the
//! Stripe wire format.

mod delivery_log;
mod error;
mod event_destinations;
mod events;
mod health;
mod pagination;
mod query;
mod request;
mod validate;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::extract::Request;
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::Router;

pub use error::{ApiError, FieldError};

use crate::clock::SharedClock;
use crate::config::ApiConfig;
use crate::delivery::address::AddressPolicy;
use crate::delivery::Metrics;
use crate::domain::account::KeyOwner;
use crate::domain::Scope;
use crate::store::Store;

/// What every handler shares: one `Arc`, so a request clones a single pointer.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    pub config: Arc<ApiConfig>,
    /// Which webhook targets are allowed (literal hosts are judged at create and update).
    pub policy: Arc<AddressPolicy>,
    pub metrics: Arc<Metrics>,
    pub clock: SharedClock,
    /// Resolved API keys (secret → owner); keys never change owner, so entries stay valid.
    keys: Arc<RwLock<HashMap<String, KeyOwner>>>,
    /// Account → parent; parents never change.
    parents: Arc<RwLock<HashMap<String, Option<String>>>>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    pub fn new(
        store: Store,
        config: Arc<ApiConfig>,
        policy: Arc<AddressPolicy>,
        metrics: Arc<Metrics>,
        clock: SharedClock,
    ) -> Self {
        AppState(Arc::new(Shared {
            store,
            config,
            policy,
            metrics,
            clock,
            keys: Default::default(),
            parents: Default::default(),
        }))
    }

    async fn authenticate(&self, key: &str) -> Result<KeyOwner, ApiError> {
        if let Some(owner) = read_lock(&self.keys).get(key) {
            return Ok(owner.clone());
        }
        if !request::is_secret_key_shape(key) {
            return Err(request::invalid_key(key));
        }
        let owner = self
            .store
            .find_key(key.to_owned())
            .await?
            .ok_or_else(|| request::invalid_key(key))?;
        write_lock(&self.keys).insert(key.to_owned(), owner.clone());
        Ok(owner)
    }

    /// The account's parent, `Err(NotFound)` for an unknown account.
    async fn parent_of(&self, account_id: &str) -> Result<Option<String>, ApiError> {
        if let Some(parent) = read_lock(&self.parents).get(account_id) {
            return Ok(parent.clone());
        }
        let account = self
            .store
            .get_account(account_id.to_owned())
            .await?
            .ok_or(ApiError::NotFound)?;
        write_lock(&self.parents).insert(account.id, account.parent_id.clone());
        Ok(account.parent_id)
    }

    /// The account path from the root (`acct_a/acct_b`), `None` for a root account.
    async fn context_path(&self, account_id: &str) -> Result<Option<String>, ApiError> {
        let mut path = vec![account_id.to_owned()];
        let mut current = account_id.to_owned();
        while let Some(parent) = self.parent_of(&current).await? {
            path.push(parent.clone());
            current = parent;
            if path.len() > 16 {
                break;
            }
        }
        path.pop();
        path.reverse();
        Ok((!path.is_empty()).then(|| path.join("/")))
    }

    async fn root_scope(&self, owner: &KeyOwner) -> Result<Scope, ApiError> {
        Ok(Scope {
            account_id: owner.account_id.clone(),
            mode: owner.mode,
            context: self.context_path(&owner.account_id).await?,
        })
    }

    /// Resolves `Stripe-Context: acct_a/acct_b`: each segment must be a connected account of the one
    /// before it, starting at the key's account (a leading segment naming that account is skipped).
    async fn resolve_context(&self, owner: &KeyOwner, path: &str) -> Result<Scope, ApiError> {
        let refuse = || ApiError::Forbidden {
            code: "account_invalid",
            message: format!(
                "The Stripe-Context '{path}' is not an account connected to the key's account."
            ),
        };
        let mut current = owner.account_id.clone();
        for (i, segment) in path.split('/').enumerate() {
            if i == 0 && segment == owner.account_id {
                continue;
            }
            let valid = segment.starts_with("acct_")
                && segment.len() <= 64
                && segment[5..].chars().all(|c| c.is_ascii_alphanumeric());
            if !valid {
                return Err(refuse());
            }
            match self.parent_of(segment).await {
                Ok(Some(parent)) if parent == current => current = segment.to_owned(),
                Ok(_) | Err(ApiError::NotFound) => return Err(refuse()),
                Err(e) => return Err(e),
            }
        }
        Ok(Scope {
            context: self.context_path(&current).await?,
            account_id: current,
            mode: owner.mode,
        })
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The whole API, shared by `main` and the tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/v2/core/event_destinations",
            post(event_destinations::create).get(event_destinations::list),
        )
        .route(
            "/v2/core/event_destinations/{id}",
            get(event_destinations::retrieve)
                .post(event_destinations::update)
                .delete(event_destinations::delete),
        )
        .route(
            "/v2/core/event_destinations/{id}/disable",
            post(event_destinations::disable),
        )
        .route(
            "/v2/core/event_destinations/{id}/enable",
            post(event_destinations::enable),
        )
        .route(
            "/v2/core/event_destinations/{id}/ping",
            post(event_destinations::ping),
        )
        .route("/v2/core/events", get(events::list).post(events::publish))
        .route("/v2/core/events/{id}", get(events::retrieve))
        .route("/v1/events/{id}", get(events::retrieve_v1))
        .route(
            "/v2/core/event_destinations/{id}/delivery_attempts",
            get(delivery_log::destination_attempts),
        )
        .route(
            "/v2/core/events/{id}/delivery_attempts",
            get(delivery_log::event_attempts),
        )
        .route("/v2/core/events/{id}/resend", post(delivery_log::resend))
        .merge(operations_routes())
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request::request_context,
        ))
        .with_state(state)
}

fn operations_routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(health::openapi))
}

/// What a worker-only process serves: health, metrics and the API description.
pub fn operations_router(state: AppState) -> Router {
    operations_routes()
        .fallback(route_not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request::request_context,
        ))
        .with_state(state)
}

async fn route_not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
    }
}
