//! PostgreSQL restarts under a running eventd: `/healthz` reports the outage (503) and eventd
//! recovers by itself when the database is back (health 200, publishing and delivery work).
//!
//! It stops and starts a database, so it never touches a shared one: it creates a private
//! throwaway cluster (`initdb` + `pg_ctl` in a temporary directory, on a free loopback port) and
//! runs only when `EVENTD_TEST_PG_RESTART` names the PostgreSQL bin directory, e.g.
//! `EVENTD_TEST_PG_RESTART=/usr/lib/postgresql/15/bin`. As root, the cluster runs as `postgres`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::process::{client, free_port, lock, log_tail, Eventd, NodeConfig};

const ENV: &str = "EVENTD_TEST_PG_RESTART";
const KEY: &str = "sk_test_pgrestart000";
const LIVE_KEY: &str = "sk_live_pgrestart000";

/// A private PostgreSQL cluster, stopped and removed on drop.
struct Cluster {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    fn create(bin: &Path) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let as_postgres = command_output("id", &["-u"]).trim() == "0";
        if as_postgres {
            command_output("chown", &["postgres", &dir.path().display().to_string()]);
        }
        let cluster = Cluster {
            bin: bin.to_path_buf(),
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program).display().to_string();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run a PostgreSQL tool");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c.arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd.args(["-D", &data, "-m", "immediate", "stop"]).output();
    }
}

fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .expect("run a command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn record(State(seen): State<Arc<Mutex<HashSet<String>>>>, body: Bytes) {
    if let Some(id) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_str().map(str::to_owned))
    {
        lock(&seen).insert(id);
    }
}

/// Polls `/healthz` until it answers `status` (or panics after `limit`).
async fn wait_health(
    http: &reqwest::Client,
    base: &str,
    status: u16,
    limit: Duration,
    log: &Path,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = http
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(12))
            .send()
            .await
            .map(|r| r.status().as_u16());
        if got.as_ref().is_ok_and(|s| *s == status) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "/healthz never answered {status} within {limit:?} (last {got:?}); log:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes one event and waits until the receiver has it.
async fn publish_and_deliver(
    http: &reqwest::Client,
    base: &str,
    seen: &Mutex<HashSet<String>>,
    log: &Path,
) {
    let r = http
        .post(format!("{base}/v2/core/events"))
        .bearer_auth(KEY)
        .json(&json!({"type": "v2.core.account.created"}))
        .send()
        .await
        .expect("publish");
    assert_eq!(r.status(), 200, "publish; log:\n{}", log_tail(log));
    let id = r.json::<Value>().await.expect("event")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lock(seen).contains(&id) {
        assert!(
            Instant::now() < deadline,
            "{id} not delivered; log:\n{}",
            log_tail(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventd_reports_a_postgresql_restart_and_recovers_by_itself() {
    let Some(bin) = std::env::var_os(ENV).filter(|v| !v.is_empty()) else {
        println!("pg_restart: SKIPPED — set {ENV} to a PostgreSQL bin directory (it starts a private throwaway cluster)");
        return;
    };
    let cluster = Cluster::create(Path::new(&bin));
    let dir = tempfile::tempdir().expect("temp dir");
    let http = client();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind receiver");
    let hook = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().expect("addr").port()
    );
    let app = Router::new()
        .route("/hook", post(record))
        .with_state(seen.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let node = NodeConfig {
        data_dir: dir.path().join("data"),
        database: Some(cluster.url()),
        log: dir.path().join("eventd.log"),
        keys: (KEY.to_owned(), LIVE_KEY.to_owned()),
        env: Vec::new(),
    };
    let mut eventd = Eventd::start(&node, &http).await;
    let created = http
        .post(format!("{}/v2/core/event_destinations", eventd.base))
        .bearer_auth(KEY)
        .json(
            &json!({"name": "restart", "type": "webhook_endpoint", "event_payload": "thin",
            "enabled_events": ["*"], "webhook_endpoint": {"url": hook}}),
        )
        .send()
        .await
        .expect("create destination");
    assert_eq!(created.status(), 200);
    publish_and_deliver(&http, &eventd.base, &seen, &node.log).await;

    cluster.stop();
    let noticed = wait_health(&http, &eventd.base, 503, Duration::from_secs(15), &node.log).await;
    let r = http
        .post(format!("{}/v2/core/events", eventd.base))
        .bearer_auth(KEY)
        .json(&json!({"type": "v2.core.account.created"}))
        .send()
        .await
        .expect("publish while down");
    assert_eq!(
        r.status(),
        500,
        "a write while the database is down fails (and is not acknowledged)"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    cluster.start();
    let recovered = wait_health(&http, &eventd.base, 200, Duration::from_secs(15), &node.log).await;
    publish_and_deliver(&http, &eventd.base, &seen, &node.log).await;
    assert!(
        eventd.still_running(),
        "eventd exited; log:\n{}",
        log_tail(&node.log)
    );
    println!("pg_restart: outage reported after {noticed:?}, healthy again {recovered:?} after PostgreSQL restarted; delivery resumed");
    drop(eventd);
    server.abort();
}
