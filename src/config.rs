//! The one configuration type, resolved once from defaults, `EVENTD_*` environment variables and flags
//! (declared with clap; nothing else reads the environment).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::domain::retry::RetrySchedule;

/// The Stripe API version used when a request sends no `Stripe-Version` header.
pub const DEFAULT_STRIPE_VERSION: &str = "2026-10-28.endive";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4210";

#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Directory holding the SQLite database (when no --database is given).
    #[arg(long, env = "EVENTD_DATA_DIR", default_value = "./eventd-data")]
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://user@host:5432/db`): share one database between several nodes.
    #[arg(long = "database", env = "EVENTD_DATABASE_URL")]
    pub database: Option<String>,
    /// PostgreSQL connections per node.
    #[arg(long, env = "EVENTD_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,
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

/// Which halves of eventd a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Serve the API only.
    Api,
    /// Deliver events only (still answers /healthz and /metrics).
    Worker,
    /// Both.
    All,
}

impl Role {
    pub fn runs_worker(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }

    pub fn serves_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }
}

/// A CIDR allow-list, e.g. `127.0.0.0/8,::1/128`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(pub Vec<ipnet::IpNet>);

fn parse_allow_list(s: &str) -> Result<AllowList, String> {
    crate::delivery::address::AddressPolicy::parse_allow_list(s).map(AllowList)
}

fn parse_schedule(s: &str) -> Result<RetryScheduleArg, String> {
    crate::domain::retry::parse_schedule(s).map(RetryScheduleArg)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryScheduleArg(pub Vec<Duration>);

#[derive(Debug, Clone, Args)]
pub struct DeliveryConfig {
    /// Delays between attempts for both modes, e.g. `1s,2s,4s` (default: Stripe-like live and test schedules).
    #[arg(long, env = "EVENTD_RETRY_SCHEDULE", value_parser = parse_schedule)]
    pub retry_schedule: Option<RetryScheduleArg>,
    /// Total time allowed for one attempt.
    #[arg(long, env = "EVENTD_ATTEMPT_TIMEOUT", default_value = "30s", value_parser = crate::domain::retry::parse_duration)]
    pub attempt_timeout: Duration,
    /// Time allowed to connect.
    #[arg(long, env = "EVENTD_CONNECT_TIMEOUT", default_value = "10s", value_parser = crate::domain::retry::parse_duration)]
    pub connect_timeout: Duration,
    /// CIDR ranges that are otherwise refused as targets (loopback, private…), e.g. `127.0.0.0/8,::1/128`.
    #[arg(long, env = "EVENTD_ALLOW_PRIVATE_TARGETS", value_parser = parse_allow_list, default_value = "")]
    pub allow_private_targets: AllowList,
    /// Attempts in flight at once, over all destinations (at least 1).
    #[arg(long, env = "EVENTD_MAX_IN_FLIGHT", default_value_t = 512, value_parser = at_least_one())]
    pub max_in_flight: usize,
    /// Attempts in flight at once to one destination (at least 1).
    #[arg(
        long,
        env = "EVENTD_MAX_IN_FLIGHT_PER_DESTINATION",
        default_value_t = 64,
        value_parser = at_least_one()
    )]
    pub max_in_flight_per_destination: usize,
    /// On SIGTERM, how long attempts in flight may go on; then they are cut off and recorded as
    /// failed, and retried on schedule.
    #[arg(long, env = "EVENTD_SHUTDOWN_GRACE", default_value = "10s", value_parser = crate::domain::retry::parse_duration)]
    pub shutdown_grace: Duration,
}

/// A count that must be positive: a limit of 0 would accept work and never deliver it.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

impl DeliveryConfig {
    pub fn schedule(&self) -> RetrySchedule {
        match &self.retry_schedule {
            Some(s) => RetrySchedule::uniform(s.0.clone()),
            None => RetrySchedule::default(),
        }
    }

    /// A lease outlives the longest possible attempt, so a live worker never loses one mid-attempt.
    pub fn lease(&self) -> Duration {
        self.attempt_timeout + self.connect_timeout + Duration::from_secs(5)
    }
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Which halves to run.
    #[arg(long, env = "EVENTD_ROLE", value_enum, default_value = "all")]
    pub role: Role,
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
    #[command(flatten)]
    pub delivery: DeliveryConfig,
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
    /// A configuration for tests: loopback port 0, the given data directory, and loopback
    /// targets allowed (tests' receivers listen there).
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Config {
            role: Role::All,
            listen: "127.0.0.1:0".parse().expect("valid literal address"),
            bootstrap_keys: None,
            store: StoreConfig {
                data_dir,
                database: None,
                pool_size: 16,
            },
            api: ApiConfig {
                max_body_bytes: 1024 * 1024,
                default_stripe_version: DEFAULT_STRIPE_VERSION.to_owned(),
            },
            retention: RetentionConfig {
                event_retention_days: 30,
            },
            delivery: DeliveryConfig {
                retry_schedule: None,
                attempt_timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(10),
                allow_private_targets: AllowList(vec![
                    "127.0.0.0/8".parse().expect("valid literal network"),
                    "::1/128".parse().expect("valid literal network"),
                ]),
                max_in_flight: 512,
                max_in_flight_per_destination: 64,
                shutdown_grace: Duration::from_secs(10),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::DeliveryConfig;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        delivery: DeliveryConfig,
    }

    #[test]
    fn in_flight_limits_must_be_positive() {
        for flag in ["--max-in-flight", "--max-in-flight-per-destination"] {
            let err = Cli::try_parse_from(["eventd", flag, "0"])
                .err()
                .unwrap_or_else(|| panic!("{flag} 0 is refused"));
            assert!(err.to_string().contains(flag), "{flag}: {err}");
            let ok = Cli::try_parse_from(["eventd", flag, "1"]).expect("1 is accepted");
            let set = match flag {
                "--max-in-flight" => ok.delivery.max_in_flight,
                _ => ok.delivery.max_in_flight_per_destination,
            };
            assert_eq!(set, 1);
        }
    }
}
