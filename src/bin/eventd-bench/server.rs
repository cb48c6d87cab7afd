//! The eventd under test: a child process started per scenario on a fresh data directory (or a
//! running instance given by `--target`), its OS accounting from `/proc`, and the two API calls the
//! benchmark makes (create a destination, publish an event).

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

pub const TEST_KEY: &str = "sk_test_bench00000000";
const LIVE_KEY: &str = "sk_live_bench00000000";

/// `POST /v2/core/events` body used by every publish.
pub const EVENT_BODY: &str = r#"{"type":"v2.core.account.created","related_object":{"id":"acct_1","type":"v2.core.account","url":"/v2/core/accounts/acct_1"}}"#;

/// How eventd processes are obtained.
#[derive(Clone)]
pub enum Launcher {
    /// Start `bin serve` per scenario, fresh data dir under `root`.
    Spawn {
        bin: PathBuf,
        root: PathBuf,
        /// Extra environment (`--eventd-env`), applied after the benchmark's own.
        env: Vec<(String, String)>,
        /// PostgreSQL instead of SQLite: each data directory name gets a schema of its own.
        database: Option<Postgres>,
    },
    /// Use a running eventd (`base` URL, secret key, optional pid for /proc accounting).
    Target {
        base: String,
        key: String,
        pid: Option<u32>,
    },
}

pub struct Eventd {
    pub base: String,
    pub key: String,
    pub pid: Option<u32>,
    pub data_dir: Option<PathBuf>,
    /// The PostgreSQL schema holding this eventd's data, when benchmarking PostgreSQL.
    pub schema: Option<(Postgres, String)>,
    child: Option<Child>,
    log: Option<PathBuf>,
    /// Destinations created by the benchmark (deleted at stop when targeting a running eventd).
    pub destinations: Vec<String>,
}

impl Launcher {
    pub fn spawns(&self) -> bool {
        matches!(self, Launcher::Spawn { .. })
    }

    /// Starts eventd with `role` on `<root>/<dir>` (created if missing; reused if it exists).
    pub async fn start(
        &self,
        http: &reqwest::Client,
        dir: &str,
        role: &str,
    ) -> anyhow::Result<Eventd> {
        match self {
            Launcher::Target { base, key, pid } => {
                let e = Eventd {
                    base: base.trim_end_matches('/').to_owned(),
                    key: key.clone(),
                    pid: *pid,
                    data_dir: None,
                    schema: None,
                    child: None,
                    log: None,
                    destinations: Vec::new(),
                };
                e.wait_healthy(http).await?;
                Ok(e)
            }
            Launcher::Spawn {
                bin,
                root,
                env,
                database,
            } => {
                let data_dir = root.join(dir);
                std::fs::create_dir_all(&data_dir)?;
                let mut db_env = Vec::new();
                let mut schema = None;
                if let Some(pg) = database {
                    let name = pg.schema_for(dir);
                    pg.create_schema(&name).await?;
                    db_env.push(("EVENTD_DATABASE_URL".to_owned(), pg.url_for(&name)));
                    schema = Some((pg.clone(), name));
                }
                let log = root.join(format!("{dir}-{role}.log"));
                let port = free_port()?;
                let child = Command::new(bin)
                    .arg("serve")
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .arg("--role")
                    .arg(role)
                    .env("EVENTD_BOOTSTRAP_KEYS", format!("{TEST_KEY},{LIVE_KEY}"))
                    .env("EVENTD_ALLOW_PRIVATE_TARGETS", "127.0.0.0/8")
                    .env("EVENTD_LOG", "warn")
                    .envs(db_env.iter().chain(env.iter()).map(|(k, v)| (k, v)))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(File::create(&log)?)
                    .spawn()
                    .with_context(|| format!("cannot start {}", bin.display()))?;
                let e = Eventd {
                    base: format!("http://127.0.0.1:{port}"),
                    key: TEST_KEY.to_owned(),
                    pid: Some(child.id()),
                    data_dir: Some(data_dir),
                    schema,
                    child: Some(child),
                    log: Some(log),
                    destinations: Vec::new(),
                };
                e.wait_healthy(http).await?;
                Ok(e)
            }
        }
    }
}

/// The PostgreSQL database the benchmark runs eventd against (`--database`).
#[derive(Clone)]
pub struct Postgres {
    pub url: String,
    /// Prefix of the schemas this run creates: `eventd_bench_<pid>_`.
    pub prefix: String,
}

impl Postgres {
    pub fn new(url: String) -> Postgres {
        Postgres {
            url,
            prefix: format!("eventd_bench_{}_", std::process::id()),
        }
    }

    pub fn schema_for(&self, dir: &str) -> String {
        let tail: String = dir
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("{}{tail}", self.prefix)
    }

    /// The URL eventd gets: `search_path` set to `schema`.
    pub fn url_for(&self, schema: &str) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-c%20search_path%3D{schema}", self.url)
    }

    async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to {}", self.url))?;
        tokio::spawn(conn);
        Ok(client)
    }

    pub async fn create_schema(&self, schema: &str) -> anyhow::Result<()> {
        self.client()
            .await?
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await?;
        Ok(())
    }

    /// Bytes of the schema's tables with their indexes and TOAST.
    pub async fn schema_bytes(&self, schema: &str) -> Option<u64> {
        let row = self
            .client()
            .await
            .ok()?
            .query_one(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = $1 AND c.relkind = 'r'",
                &[&schema],
            )
            .await
            .ok()?;
        Some(row.get::<_, i64>(0) as u64)
    }

    /// Drops every schema this run created.
    pub async fn drop_schemas(&self) -> anyhow::Result<()> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
                &[&self.prefix],
            )
            .await?;
        for row in rows {
            let name: String = row.get(0);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await?;
        }
        Ok(())
    }
}

/// utime + stime of every PostgreSQL server process on this machine, in seconds.
pub fn postgres_cpu_secs() -> Option<f64> {
    let mut total = 0.0;
    let mut seen = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() == "postgres" {
            if let Some(s) = proc_cpu_secs(&path.join("stat").to_string_lossy()) {
                total += s;
                seen = true;
            }
        }
    }
    seen.then_some(total)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Eventd {
    async fn wait_healthy(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if self.log.is_some() && !self.alive() {
                bail!("eventd exited during startup: {}", self.log_tail());
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("eventd not healthy after 30 s: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn alive(&self) -> bool {
        self.pid
            .is_some_and(|p| Path::new(&format!("/proc/{p}/stat")).exists())
            && !proc_state_is_zombie(self.pid)
    }

    pub fn log_tail(&self) -> String {
        let Some(log) = &self.log else {
            return String::new();
        };
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// utime + stime of the eventd process, in seconds (OS accounting).
    pub fn cpu_secs(&self) -> Option<f64> {
        self.pid
            .and_then(|p| proc_cpu_secs(&format!("/proc/{p}/stat")))
    }

    /// Peak resident set size (VmHWM) in MiB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        let p = self.pid?;
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    pub async fn create_destination(
        &mut self,
        http: &reqwest::Client,
        url: &str,
    ) -> anyhow::Result<String> {
        let body = json!({
            "name": "bench", "type": "webhook_endpoint", "event_payload": "thin",
            "enabled_events": ["*"], "webhook_endpoint": {"url": url},
        });
        let r = http
            .post(format!("{}/v2/core/event_destinations", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        if !status.is_success() {
            bail!("creating a destination: {status} {v}");
        }
        let id = v["id"]
            .as_str()
            .ok_or_else(|| anyhow!("destination without id: {v}"))?
            .to_owned();
        self.destinations.push(id.clone());
        Ok(id)
    }

    /// Stops the process (SIGTERM, then SIGKILL after 30 s). For a running target, deletes the
    /// destinations the benchmark created instead.
    pub async fn stop(mut self, http: &reqwest::Client) {
        if self.child.is_none() {
            for id in std::mem::take(&mut self.destinations) {
                let _ = http
                    .delete(format!("{}/v2/core/event_destinations/{id}", self.base))
                    .bearer_auth(&self.key)
                    .send()
                    .await;
            }
            return;
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

impl Drop for Eventd {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn proc_state_is_zombie(pid: Option<u32>) -> bool {
    let Some(p) = pid else { return false };
    std::fs::read_to_string(format!("/proc/{p}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Clock ticks per second for /proc accounting: `getconf CLK_TCK`, else 100 (Linux's USER_HZ).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime (fields 14 and 15 of /proc/<pid>/stat) in seconds.
pub fn proc_cpu_secs(stat_path: &str) -> Option<f64> {
    let s = std::fs::read_to_string(stat_path).ok()?;
    let (_, rest) = s.rsplit_once(')')?;
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
