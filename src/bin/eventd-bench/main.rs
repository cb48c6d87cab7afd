//! eventd-bench: measures eventd against a loopback webhook receiver and the physical ceiling of
//! the same HTTP client stack without eventd. See BENCHMARKS.md.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/eventd-bench --quick     # < 1 minute
//! target/release/eventd-bench             # full: N = 100,000, latency 30 s, backlog 1,000,000
//! ```
//!
//! Progress goes to stderr; the report to stdout, whose last line is machine-readable:
//! `RESULT store=sqlite ceiling_rps=… ingest_eps=… e2e_1_dps=… e2e_10_dps=… p99_ms=… rss_mb=… cpu_us_per_event=…`

/// The same allocator as eventd, so the ceiling measures the same client stack.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod receiver;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

use scenarios::{Ctx, Latency, Row};
use server::Launcher;

#[derive(Parser, Debug)]
#[command(name = "eventd-bench", about = "Benchmark eventd on loopback")]
struct Args {
    /// Small sizes that finish in under a minute (5,000 events, 10 s latency run, backlog 20,000).
    #[arg(long)]
    quick: bool,
    /// The eventd binary to start (a fresh data directory per scenario).
    #[arg(long, default_value = "target/release/eventd")]
    eventd: PathBuf,
    /// Benchmark a running eventd at this base URL instead (no backlog run; ingest runs with the
    /// worker on; CPU and RSS only with --pid, RSS then being the process's lifetime peak).
    #[arg(long)]
    target: Option<String>,
    /// Secret key for --target (test mode).
    #[arg(long, default_value = server::TEST_KEY)]
    key: String,
    /// Process id of the --target eventd, for /proc CPU and memory accounting.
    #[arg(long)]
    pid: Option<u32>,
    /// Events per ingest and end-to-end run. Default 100,000 (quick: 5,000).
    #[arg(long)]
    events: Option<u64>,
    /// Duration of the ceiling run in seconds. Default 10 (quick: 2).
    #[arg(long)]
    ceiling_secs: Option<f64>,
    /// Destinations in the fan-out run (an account may have at most 16).
    #[arg(long, default_value_t = 10)]
    fanout: usize,
    /// Concurrent clients for the ceiling, ingest and end-to-end runs.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Publish rate of the latency run (events/s, open loop).
    #[arg(long, default_value_t = 1000.0)]
    latency_rate: f64,
    /// Duration of the latency run in seconds. Default 30 (quick: 10).
    #[arg(long)]
    latency_secs: Option<f64>,
    /// Pending deliveries in the backlog run. Default 1,000,000 (quick: 20,000).
    #[arg(long)]
    backlog: Option<u64>,
    #[arg(long)]
    skip_backlog: bool,
    /// Run only these scenarios (comma-separated: ceiling, ingest, e2e1, e2e10, latency, backlog),
    /// e.g. to profile one of them; figures of the others print as 0.
    #[arg(long, value_delimiter = ',', value_parser = ["ceiling", "ingest", "e2e1", "e2e10", "latency", "backlog"])]
    only: Vec<String>,
    /// Give up when no delivery arrives for this many seconds.
    #[arg(long, default_value_t = 60)]
    stall_secs: u64,
    /// Extra environment for every eventd started, e.g. `--eventd-env EVENTD_MAX_IN_FLIGHT=1024` (repeatable).
    #[arg(long = "eventd-env", value_name = "KEY=VALUE")]
    eventd_env: Vec<String>,
    /// Keep the data directories (printed) instead of deleting them.
    #[arg(long)]
    keep_data: bool,
    /// Run eventd on PostgreSQL at this URL (a schema per run, dropped at the end) instead of
    /// SQLite; e.g. postgres://postgres@127.0.0.1:5432/test.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

impl Args {
    fn runs(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

/// Removes the scratch directory at the end (children are stopped before this drops).
struct Scratch(PathBuf, bool);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => {}
        Err(e) => {
            eprintln!("eventd-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.fanout == 0 || args.fanout > 16 {
        anyhow::bail!("--fanout must be 1..=16 (webhook destinations per account)");
    }
    let n = args
        .events
        .unwrap_or(if args.quick { 5_000 } else { 100_000 });
    let ceiling_secs = args
        .ceiling_secs
        .unwrap_or(if args.quick { 2.0 } else { 10.0 });
    let latency_secs = args
        .latency_secs
        .unwrap_or(if args.quick { 10.0 } else { 30.0 });
    let backlog_n = args
        .backlog
        .unwrap_or(if args.quick { 20_000 } else { 1_000_000 });
    let scratch = Scratch(
        std::env::temp_dir().join(format!("eventd-bench-{}", std::process::id())),
        args.keep_data,
    );
    let launcher = match &args.target {
        Some(base) => Launcher::Target {
            base: base.clone(),
            key: args.key.clone(),
            pid: args.pid,
        },
        None => {
            if !args.eventd.exists() {
                anyhow::bail!(
                    "{} not found (build it: cargo build --release --bins, or pass --eventd PATH)",
                    args.eventd.display()
                );
            }
            std::fs::create_dir_all(&scratch.0)?;
            let mut env = Vec::new();
            for kv in &args.eventd_env {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--eventd-env {kv}: expected KEY=VALUE"))?;
                env.push((k.to_owned(), v.to_owned()));
            }
            Launcher::Spawn {
                bin: args.eventd.clone(),
                root: scratch.0.clone(),
                env,
                database: args.database.clone().map(server::Postgres::new),
            }
        }
    };
    let run_backlog = !args.skip_backlog && launcher.spawns() && args.runs("backlog");
    let ctx = Ctx {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()?,
        receiver: receiver::Receiver::start().await?,
        launcher,
        concurrency: args.concurrency,
        stall: Duration::from_secs(args.stall_secs),
        postgres: args.database.is_some(),
    };
    let store = if ctx.postgres { "postgres" } else { "sqlite" };
    eprintln!(
        "eventd-bench: N={n}, fan-out {}, {} clients, latency {} ev/s for {latency_secs} s, backlog {}; scratch {}",
        args.fanout,
        args.concurrency,
        args.latency_rate,
        if run_backlog { backlog_n.to_string() } else { "skipped".into() },
        scratch.0.display()
    );
    let began = Instant::now();
    let result = measure(
        &ctx,
        &args,
        n,
        ceiling_secs,
        latency_secs,
        backlog_n,
        run_backlog,
    )
    .await;
    if let server::Launcher::Spawn {
        database: Some(pg), ..
    } = &ctx.launcher
    {
        if let Err(e) = pg.drop_schemas().await {
            eprintln!("eventd-bench: could not drop the benchmark schemas: {e:#}");
        }
    }
    let rows = result?;
    report(&rows, &args, n, store, began);
    Ok(())
}

/// The measured results of one run, in order.
struct Rows {
    all: Vec<Row>,
    ceiling_rps: f64,
    ingest_eps: f64,
    e2e1: Row,
    e2e10: Row,
    lat: Latency,
    backlog_dps: Option<f64>,
}

async fn measure(
    ctx: &Ctx,
    args: &Args,
    n: u64,
    ceiling_secs: f64,
    latency_secs: f64,
    backlog_n: u64,
    run_backlog: bool,
) -> anyhow::Result<Rows> {
    let began = Instant::now();
    let mut rows: Vec<Row> = Vec::new();
    let step = |rows: &mut Vec<Row>, row: Row| {
        eprintln!(
            "  [{:>5.1} s] {:<22} {:>10.0} {:<5} in {:.2} s  {}",
            began.elapsed().as_secs_f64(),
            row.name,
            row.rate,
            row.unit,
            row.secs,
            row.note
        );
        rows.push(row);
    };
    let mut ceiling_rps = 0.0;
    if args.runs("ceiling") {
        let ceiling = scenarios::ceiling(ctx, ceiling_secs).await?;
        ceiling_rps = ceiling.rate;
        step(&mut rows, ceiling);
    }
    let mut ingest_eps = 0.0;
    if args.runs("ingest") {
        let ingest = scenarios::ingest(ctx, n).await?;
        ingest_eps = ingest.rate;
        step(&mut rows, ingest);
    }
    let mut e2e1_row = Row::default();
    if args.runs("e2e1") {
        e2e1_row = scenarios::end_to_end(ctx, n, 1).await?;
        step(&mut rows, e2e1_row.clone());
    }
    let mut e2e10_row = Row::default();
    if args.runs("e2e10") {
        e2e10_row = scenarios::end_to_end(ctx, n, args.fanout).await?;
        step(&mut rows, e2e10_row.clone());
    }
    let mut lat = Latency::default();
    if args.runs("latency") {
        let lat_row;
        (lat_row, lat) = scenarios::latency(ctx, args.latency_rate, latency_secs).await?;
        step(&mut rows, lat_row);
    }
    let mut backlog_dps = None;
    if run_backlog {
        let (load, drain) = scenarios::backlog(ctx, backlog_n).await?;
        backlog_dps = Some(drain.rate);
        step(&mut rows, load);
        step(&mut rows, drain);
    }

    Ok(Rows {
        all: rows,
        ceiling_rps,
        ingest_eps,
        e2e1: e2e1_row,
        e2e10: e2e10_row,
        lat,
        backlog_dps,
    })
}

fn report(r: &Rows, args: &Args, n: u64, store: &str, began: Instant) {
    let (rows, ceiling_rps, ingest_eps, e2e1_row, e2e10_row, lat, backlog_dps) = (
        &r.all,
        r.ceiling_rps,
        r.ingest_eps,
        &r.e2e1,
        &r.e2e10,
        r.lat,
        r.backlog_dps,
    );
    print_table(rows, ceiling_rps);
    let rss_mb = rows
        .iter()
        .filter_map(|r| r.rss_mb)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let db_per_1m = e2e1_row
        .db_bytes
        .filter(|_| e2e1_row.events > 0)
        .map(|b| b as f64 / e2e1_row.events as f64 * 1e6 / (1024.0 * 1024.0));
    println!(
        "\nrss_mb = highest eventd peak RSS of all runs; db_mb_per_1m_events from the 1-destination end-to-end run \
         (events, deliveries and attempt records, WAL checkpointed at shutdown);\n\
         cpu_us_per_event from the 1-destination end-to-end run (publish + 1 delivery), \
         cpu_us_per_delivery from the {}-destination run. Total {:.1} s.",
        args.fanout,
        began.elapsed().as_secs_f64()
    );
    println!(
        "RESULT store={store} ceiling_rps={} ingest_eps={} e2e_1_dps={} e2e_10_dps={} p50_ms={} p99_ms={} max_ms={} \
         backlog_dps={} rss_mb={} db_mb_per_1m_events={} cpu_us_per_event={} cpu_us_per_delivery={} \
         db_cpu_us_per_event={} db_cpu_us_per_delivery={} events={n} fanout={}",
        fmt(Some(ceiling_rps), 0),
        fmt(Some(ingest_eps), 0),
        fmt(Some(e2e1_row.rate), 0),
        fmt(Some(e2e10_row.rate), 0),
        fmt(Some(lat.p50_ms), 2),
        fmt(Some(lat.p99_ms), 2),
        fmt(Some(lat.max_ms), 2),
        fmt(backlog_dps, 0),
        fmt(rss_mb, 1),
        fmt(db_per_1m, 0),
        fmt(e2e1_row.us_per_event(), 1),
        fmt(e2e10_row.us_per_delivery(), 1),
        fmt(e2e1_row.db_us_per_event(), 1),
        fmt(e2e10_row.db_us_per_delivery(), 1),
        args.fanout,
    );
}

fn fmt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "na".into(),
    }
}

fn print_table(rows: &[Row], ceiling: f64) {
    println!(
        "\n{:<22} {:>9} {:>10} {:>8} {:>10} {:<5} {:>7} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9}",
        "run",
        "events",
        "deliveries",
        "seconds",
        "rate",
        "",
        "%ceil",
        "cpu s",
        "us/event",
        "us/deliv",
        "rss MB",
        "db MB",
        "bench s",
        "db cpu s"
    );
    for r in rows {
        let pct = if r.unit == "req/s" || ceiling <= 0.0 {
            "-".to_owned()
        } else {
            format!("{:.1}", r.rate * 100.0 / ceiling)
        };
        println!(
            "{:<22} {:>9} {:>10} {:>8.2} {:>10.0} {:<5} {:>7} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9}",
            r.name,
            r.events,
            r.deliveries,
            r.secs,
            r.rate,
            r.unit,
            pct,
            fmt(r.cpu_s, 2),
            fmt(r.us_per_event(), 1),
            fmt(r.us_per_delivery(), 1),
            fmt(r.rss_mb, 1),
            fmt(r.db_bytes.map(|b| b as f64 / 1048576.0), 1),
            fmt(r.bench_cpu_s, 2),
            fmt(r.db_cpu_s, 2),
        );
    }
    println!("\nnotes:");
    for r in rows {
        println!("  {}: {}", r.name, r.note);
    }
}
