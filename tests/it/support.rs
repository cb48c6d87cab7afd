//! `TestApp`: a real eventd on a loopback port with a temporary data directory.

use std::sync::Arc;

use eventd::app::Application;
use eventd::clock;
use eventd::config::{BootstrapKeys, Config};

pub const TEST_KEY: &str = "sk_test_integration0000";
pub const LIVE_KEY: &str = "sk_live_integration0000";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub account_id: String,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::for_tests(dir.path().to_path_buf());
        config.bootstrap_keys = Some(BootstrapKeys {
            test: TEST_KEY.to_owned(),
            live: LIVE_KEY.to_owned(),
        });
        configure(&mut config);
        let app = Application::build(config, clock::system())
            .await
            .expect("app builds");
        let account_id = app
            .bootstrapped()
            .map(|a| a.account_id.clone())
            .expect("fresh database bootstraps an account");
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        let _ = Arc::new(());
        TestApp {
            base,
            client: reqwest::Client::new(),
            account_id,
            _dir: dir,
            shutdown: Some(tx),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
