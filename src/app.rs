//! `Application::build(config)` opens the store, bootstraps the first account and binds the
//! listener; `run(shutdown)` serves until the shutdown future completes. Tests use it on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api;
use crate::clock::SharedClock;
use crate::config::{Config, IDEMPOTENCY_RETENTION_MS};
use crate::delivery::address::AddressPolicy;
use crate::delivery::{Metrics, Worker};
use crate::store::{CreatedAccount, Store};

pub struct Application {
    listener: TcpListener,
    state: api::AppState,
    bootstrapped: Option<CreatedAccount>,
    config: Config,
}

impl Application {
    pub async fn build(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        let store = Store::connect(&config.store, clock.clone()).await?;
        let keys = config
            .bootstrap_keys
            .as_ref()
            .map(|k| (k.test.clone(), k.live.clone()));
        let (_, bootstrapped) = store.bootstrap(keys).await?;
        let listener = TcpListener::bind(config.listen).await?;
        let policy = AddressPolicy::new(config.delivery.allow_private_targets.0.clone());
        let state = api::AppState::new(
            store,
            Arc::new(config.api.clone()),
            Arc::new(policy),
            Arc::new(Metrics::default()),
            clock.clone(),
        );
        Ok(Application {
            listener,
            state,
            bootstrapped,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has a local address")
    }

    /// The first account, when this start created it.
    pub fn bootstrapped(&self) -> Option<&CreatedAccount> {
        self.bootstrapped.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves (and, by role, delivers) until `shutdown` completes; then stops claiming and lets
    /// attempts in flight finish or gives their leases back.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let pruner = tokio::spawn(prune_loop(
            self.state.store.clone(),
            self.config.retention.event_retention_ms(),
        ));
        let worker = if self.config.role.runs_worker() {
            let worker = Worker::new(
                self.state.store.clone(),
                self.config.delivery.clone(),
                self.state.clock.clone(),
                self.state.metrics.clone(),
            )?;
            Some(tokio::spawn(worker.run(stop_rx)))
        } else {
            None
        };
        let router = if self.config.role.serves_api() {
            api::router(self.state)
        } else {
            api::operations_router(self.state)
        };
        let result = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        pruner.abort();
        Ok(result?)
    }
}

/// Deletes expired events and idempotency keys at start and then hourly.
async fn prune_loop(store: Store, event_retention_ms: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match store
            .prune(event_retention_ms, IDEMPOTENCY_RETENTION_MS)
            .await
        {
            Ok(n) if n > 0 => tracing::info!(events = n, "pruned expired events"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}
