//! Smoke test of the benchmark harness: `eventd-bench --quick` with tiny sizes against the debug
//! `eventd` exits 0 and ends with a complete `RESULT` line. No timing is asserted.

use std::process::Command;

#[test]
fn bench_quick_with_tiny_sizes_prints_a_complete_result_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_eventd-bench"))
        .args(["--quick", "--eventd", env!("CARGO_BIN_EXE_eventd")])
        .args([
            "--events",
            "200",
            "--concurrency",
            "16",
            "--fanout",
            "10",
            "--ceiling-secs",
            "0.5",
        ])
        .args(["--latency-rate", "100", "--latency-secs", "2"])
        .args(["--backlog", "500", "--stall-secs", "30"])
        .output()
        .expect("eventd-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "eventd-bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("RESULT store=sqlite "),
        "last line: {last}\nstdout:\n{stdout}"
    );
    for key in [
        "ceiling_rps",
        "ingest_eps",
        "e2e_1_dps",
        "e2e_10_dps",
        "p50_ms",
        "p99_ms",
        "max_ms",
        "backlog_dps",
        "rss_mb",
        "db_mb_per_1m_events",
        "cpu_us_per_event",
        "cpu_us_per_delivery",
    ] {
        let value = last
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {last}"));
        assert!(
            value == "na" || value.parse::<f64>().is_ok(),
            "{key}={value} is not a number"
        );
    }
}
