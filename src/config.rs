//! The one configuration type, resolved once from defaults, `EVENTD_*` environment variables and flags
//! (declared with clap; nothing else reads the environment).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

/// The Stripe API version used when a request sends no `Stripe-Version` header.
pub const DEFAULT_STRIPE_VERSION: &str = "2026-10-28.endive";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4210";

#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Directory holding the SQLite database.
    #[arg(long, env = "EVENTD_DATA_DIR", default_value = "./eventd-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    /// Largest accepted request body, in bytes (larger → 413).
    #[arg(long, env = "EVENTD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Stripe-Version assumed when a request sends none.
    #[arg(long, env = "EVENTD_DEFAULT_STRIPE_VERSION", default_value = DEFAULT_STRIPE_VERSION)]
    pub default_stripe_version: String,
}

#[derive(Debug, Clone, Args)]
pub struct RetentionConfig {
    /// How long events are kept, in days.
    #[arg(long, env = "EVENTD_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub event_retention_days: u32,
}

impl RetentionConfig {
    pub fn event_retention_ms(&self) -> i64 {
        i64::from(self.event_retention_days) * DAY_MS
    }
}

pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// Idempotency keys are honoured for 30 days (Stripe v2).
pub const IDEMPOTENCY_RETENTION_MS: i64 = 30 * DAY_MS;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "EVENTD_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// `sk_test_…,sk_live_…`: the keys of the first account, instead of generated ones.
    #[arg(long, env = "EVENTD_BOOTSTRAP_KEYS", value_parser = parse_bootstrap_keys)]
    pub bootstrap_keys: Option<BootstrapKeys>,
    #[command(flatten)]
    pub store: StoreConfig,
    #[command(flatten)]
    pub api: ApiConfig,
    #[command(flatten)]
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapKeys {
    pub test: String,
    pub live: String,
}

fn parse_bootstrap_keys(s: &str) -> Result<BootstrapKeys, String> {
    let (test, live) = s.split_once(',').ok_or("expected sk_test_…,sk_live_…")?;
    let (test, live) = (test.trim(), live.trim());
    let valid = |k: &str, prefix: &str| {
        k.len() > prefix.len() + 7
            && k.starts_with(prefix)
            && k[prefix.len()..].chars().all(|c| c.is_ascii_alphanumeric())
    };
    if !valid(test, "sk_test_") || !valid(live, "sk_live_") {
        return Err(
            "expected sk_test_<8+ letters or digits>,sk_live_<8+ letters or digits>".into(),
        );
    }
    Ok(BootstrapKeys {
        test: test.to_owned(),
        live: live.to_owned(),
    })
}

impl Config {
    /// A configuration for tests: loopback port 0 and the given data directory.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Config {
            listen: "127.0.0.1:0".parse().expect("valid literal address"),
            bootstrap_keys: None,
            store: StoreConfig { data_dir },
            api: ApiConfig {
                max_body_bytes: 1024 * 1024,
                default_stripe_version: DEFAULT_STRIPE_VERSION.to_owned(),
            },
            retention: RetentionConfig {
                event_retention_days: 30,
            },
        }
    }
}
