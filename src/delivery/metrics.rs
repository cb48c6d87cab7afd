//! Delivery counters and the attempt latency histogram, rendered in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    pub attempts_succeeded: AtomicU64,
    pub attempts_failed: AtomicU64,
    pub deliveries_failed: AtomicU64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    pub in_flight: AtomicI64,
    pub claim_rounds: AtomicU64,
    pub claim_errors: AtomicU64,
    /// When a claim round last succeeded (ms since the epoch), 0 before the first.
    pub last_claim_ok_ms: AtomicI64,
}

impl Metrics {
    pub fn observe_latency(&self, ms: i64) {
        let secs = ms.max(0) as f64 / 1000.0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(ms.max(0) as u64 * 1000, Relaxed);
    }

    /// The exposition text; `pending` and `oldest_due_age_s` come from the store at scrape time.
    pub fn render(
        &self,
        pending: Option<i64>,
        oldest_due_age_s: Option<f64>,
        now_ms: i64,
    ) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, labels: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{labels} {v}"
            );
        };
        counter(
            "eventd_delivery_attempts_total",
            "Delivery attempts by outcome.",
            "{outcome=\"succeeded\"}",
            self.attempts_succeeded.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "eventd_delivery_attempts_total{{outcome=\"failed\"}} {}",
            self.attempts_failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP eventd_deliveries_failed_total Deliveries that failed for good after their last attempt.\n# TYPE eventd_deliveries_failed_total counter\neventd_deliveries_failed_total {}",
            self.deliveries_failed.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP eventd_delivery_attempt_duration_seconds Time from sending to the answer."
        );
        let _ = writeln!(
            out,
            "# TYPE eventd_delivery_attempt_duration_seconds histogram"
        );
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "eventd_delivery_attempt_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "eventd_delivery_attempt_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "eventd_delivery_attempt_duration_seconds_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "eventd_delivery_attempt_duration_seconds_count {count}"
        );
        let gauge = |out: &mut String, name: &str, help: &str, v: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "eventd_deliveries_in_flight",
            "Attempts in flight.",
            self.in_flight.load(Relaxed).to_string(),
        );
        if let Some(p) = pending {
            gauge(
                &mut out,
                "eventd_deliveries_pending",
                "Deliveries waiting for an attempt.",
                p.to_string(),
            );
        }
        if let Some(age) = oldest_due_age_s {
            gauge(
                &mut out,
                "eventd_oldest_due_delivery_age_seconds",
                "How long the oldest due delivery has waited.",
                format!("{age:.3}"),
            );
        }
        let _ = writeln!(
            out,
            "# HELP eventd_claim_rounds_total Claim rounds of the delivery worker.\n# TYPE eventd_claim_rounds_total counter\neventd_claim_rounds_total {}",
            self.claim_rounds.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP eventd_claim_errors_total Claim rounds that failed (database unavailable).\n# TYPE eventd_claim_errors_total counter\neventd_claim_errors_total {}",
            self.claim_errors.load(Relaxed)
        );
        let last = self.last_claim_ok_ms.load(Relaxed);
        if last > 0 {
            gauge(
                &mut out,
                "eventd_seconds_since_last_claim",
                "Seconds since the worker last claimed successfully.",
                format!("{:.3}", (now_ms - last).max(0) as f64 / 1000.0),
            );
        }
        out
    }
}
