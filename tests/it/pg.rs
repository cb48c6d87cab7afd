//! PostgreSQL for the tests: `EVENTD_TEST_DATABASE_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/test`) selects the PostgreSQL backend for every server-level
//! suite; unset, they run on SQLite. Each test gets its own schema `eventd_t_<time>_<random>`
//! (reached through `options=-c search_path=…` in the URL), dropped with CASCADE when the
//! `TestDatabase` is dropped.

use std::time::Duration;

use eventd::clock::SharedClock;
use eventd::config::StoreConfig;
use eventd::store::Store;
use rand::Rng;

pub const ENV: &str = "EVENTD_TEST_DATABASE_URL";
const PREFIX: &str = "eventd_t_";
/// Schemas of earlier runs older than this are dropped (a run killed before its destructors ran).
const STALE_AFTER_S: u64 = 6 * 3600;

/// The base URL from `EVENTD_TEST_DATABASE_URL`, if set and not empty.
pub fn base_url() -> Option<String> {
    std::env::var(ENV).ok().filter(|s| !s.trim().is_empty())
}

/// A schema of its own in the test database, dropped on `Drop`.
pub struct TestDatabase {
    base: String,
    schema: String,
    url: String,
}

impl TestDatabase {
    /// A fresh schema when `EVENTD_TEST_DATABASE_URL` is set; `None` (use SQLite) otherwise.
    pub async fn from_env() -> Option<TestDatabase> {
        match base_url() {
            Some(base) => Some(TestDatabase::create(&base).await),
            None => None,
        }
    }

    /// Creates a fresh schema in the database at `base` (panics when PostgreSQL is unreachable:
    /// a set `EVENTD_TEST_DATABASE_URL` means the PostgreSQL suites must run).
    pub async fn create(base: &str) -> TestDatabase {
        let now = unix_s();
        let schema = format!("{PREFIX}{now}_{:016x}", rand::thread_rng().gen::<u64>());
        let client = connect(base)
            .await
            .unwrap_or_else(|e| panic!("{ENV}={base}: cannot connect to PostgreSQL: {e}"));
        sweep_stale(&client, now).await;
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE SCHEMA {schema}: {e}"));
        let url = with_search_path(base, &schema);
        TestDatabase {
            base: base.to_owned(),
            schema,
            url,
        }
    }

    /// The base URL with `options=-c search_path=<schema>`: what eventd gets as `--database`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A client of its own on the test database, for looking into the schema.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url)
            .await
            .expect("connect to the test schema")
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let base = self.base.clone();
        let schema = self.schema.clone();
        // Drop runs outside async (or inside a runtime we must not block_on): a thread of its own
        // with its own runtime does the work; we wait for it so the schema is gone when we return.
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test schema");
            rt.block_on(drop_schema(&base, &schema))
        });
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test schema {}: {e}", self.schema),
            Err(_) => eprintln!("warning: dropping test schema {} panicked", self.schema),
        }
    }
}

/// `DROP SCHEMA … CASCADE`. The eventd that used it may still hold a transaction open (its
/// runtime may be the very thread waiting for us), so a short lock timeout is used and whatever
/// holds locks in the schema is terminated before the next try.
async fn drop_schema(base: &str, schema: &str) -> Result<(), String> {
    let client = connect(base).await.map_err(|e| e.to_string())?;
    client
        .batch_execute("SET lock_timeout = '2s'")
        .await
        .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _ in 0..5 {
        match client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        let _ = client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM (
                     SELECT DISTINCT l.pid FROM pg_locks l
                     JOIN pg_class c ON c.oid = l.relation
                     JOIN pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()) holders",
                &[&schema],
            )
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last)
}

/// Drops `eventd_t_<time>_…` schemas left behind by runs that were killed long ago.
async fn sweep_stale(client: &tokio_postgres::Client, now: u64) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    SWEPT.call_once(|| first = true);
    if !first {
        return;
    }
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'eventd\\_t\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t + STALE_AFTER_S < now) {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await;
        }
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(Duration::from_secs(5));
    config.application_name("eventd-tests");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `base` plus the query parameter `options=-c search_path=<schema>`, percent-encoded.
pub fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

fn unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The backends a store-level test runs on: SQLite always, PostgreSQL when configured.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(TestDatabase, tempfile::TempDir),
}

impl Backend {
    /// SQLite, plus PostgreSQL when `EVENTD_TEST_DATABASE_URL` is set.
    pub async fn all() -> Vec<Backend> {
        let mut out = vec![Backend::Sqlite(tempfile::tempdir().expect("temp dir"))];
        if let Some(db) = TestDatabase::from_env().await {
            out.push(Backend::Postgres(
                db,
                tempfile::tempdir().expect("temp dir"),
            ));
        }
        out
    }

    /// The backend the server suites use (PostgreSQL when configured, else SQLite).
    pub async fn selected() -> Backend {
        match TestDatabase::from_env().await {
            Some(db) => Backend::Postgres(db, tempfile::tempdir().expect("temp dir")),
            None => Backend::Sqlite(tempfile::tempdir().expect("temp dir")),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(..) => "postgres",
        }
    }

    pub fn store_config(&self) -> StoreConfig {
        let (dir, database) = match self {
            Backend::Sqlite(dir) => (dir, None),
            Backend::Postgres(db, dir) => (dir, Some(db.url())),
        };
        StoreConfig {
            data_dir: dir.path().to_path_buf(),
            database,
            pool_size: 16,
        }
    }

    /// Opens (another) `Store` on this backend: a second one is a second "node".
    pub async fn open(&self, clock: SharedClock) -> Store {
        Store::connect(&self.store_config(), clock)
            .await
            .unwrap_or_else(|e| panic!("{}: open store: {e:?}", self.name()))
    }
}
