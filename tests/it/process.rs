//! The built `eventd` binary as a child process on a loopback port (started, health-checked,
//! killed with SIGKILL), plus what the process-level tests share: the HTTP client, the
//! `Stripe-Signature` check and log tails. Used by the crash and multi-node tests.

use std::fs::OpenOptions;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How long one start may take before `/healthz` answers 200.
const STARTUP_LIMIT: Duration = Duration::from_secs(15);
/// Stripe's SDKs refuse signatures older than this.
const SIGNATURE_TOLERANCE_S: i64 = 300;

/// How to run one eventd node.
#[derive(Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// `EVENTD_DATABASE_URL` (PostgreSQL); `None` runs on SQLite in `data_dir`.
    pub database: Option<String>,
    pub log: PathBuf,
    /// `EVENTD_BOOTSTRAP_KEYS`: the test and live secret keys.
    pub keys: (String, String),
    /// Extra `EVENTD_*` settings.
    pub env: Vec<(String, String)>,
}

pub struct Eventd {
    child: Child,
    pub base: String,
}

impl Eventd {
    /// Starts `eventd serve` on a fresh loopback port and waits until `/healthz` answers 200.
    pub async fn start(node: &NodeConfig, http: &reqwest::Client) -> Eventd {
        let deadline = Instant::now() + STARTUP_LIMIT;
        let mut tries = 0;
        loop {
            tries += 1;
            let port = free_port();
            let mut child = spawn(node, port);
            let base = format!("http://127.0.0.1:{port}");
            loop {
                if let Some(status) = child.try_wait().expect("child status") {
                    // Most likely the port was taken in between; try another one.
                    assert!(
                        tries < 5 && Instant::now() < deadline,
                        "eventd exited at start ({status}); log:\n{}",
                        log_tail(&node.log)
                    );
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "eventd did not become healthy within {STARTUP_LIMIT:?}; log:\n{}",
                        log_tail(&node.log)
                    );
                }
                let healthy = http
                    .get(format!("{base}/healthz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if healthy {
                    return Eventd { child, base };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// SIGKILL: no shutdown path runs, leases stay taken, nothing is flushed.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL eventd");
        self.child.wait().expect("reap eventd");
    }

    pub fn still_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Eventd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn spawn(node: &NodeConfig, port: u16) -> Child {
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .expect("open eventd log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eventd"));
    // Only this test's settings, and no proxy between eventd and the loopback receiver.
    for (name, _) in std::env::vars_os() {
        let n = name.to_string_lossy().to_ascii_lowercase();
        if n.starts_with("eventd_") || n.ends_with("_proxy") {
            cmd.env_remove(&name);
        }
    }
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(&node.data_dir)
        .env(
            "EVENTD_BOOTSTRAP_KEYS",
            format!("{},{}", node.keys.0, node.keys.1),
        )
        .env("EVENTD_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8")
        .env(
            "EVENTD_RETRY_SCHEDULE",
            "200ms,500ms,1s,1s,1s,1s,1s,1s,1s,1s",
        )
        .env("EVENTD_ATTEMPT_TIMEOUT", "2s")
        .env("EVENTD_CONNECT_TIMEOUT", "1s")
        .env("EVENTD_LOG", "warn")
        .envs(node.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    if let Some(url) = &node.database {
        cmd.env("EVENTD_DATABASE_URL", url);
    }
    cmd.spawn().expect("spawn eventd")
}

pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `t=<unix s>,v1=<hex HMAC-SHA256("t.body")>[,v1=…]`, keyed by the whole `whsec_…` string.
pub fn signature_ok(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", s)) => signatures.push(s),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    let Ok(seconds) = t.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64;
    if (now - seconds).abs() > SIGNATURE_TOLERANCE_S {
        return false;
    }
    signatures.iter().any(|s| {
        let Ok(expected) = hex::decode(s) else {
            return false;
        };
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key");
        mac.update(t.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    })
}

/// A client for loopback: no proxy, bounded requests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
