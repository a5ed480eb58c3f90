//! Counters and histograms an operator scrapes from `/metrics`, in the Prometheus
//! text format. Lock-free on the hot path (atomics), except the per-code request
//! counters, which take a short mutex.

use crate::operation::Operation;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

const LATENCY_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
const ENGAGEMENT_BOUNDS: &[f64] = &[1.0, 10.0, 100.0, 1000.0, 5000.0, 10000.0, 50000.0];

/// A cumulative histogram with fixed bounds (the one histogram of the crate: the
/// notifier's delivery latency uses it too).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in millionths of the unit, to stay in integers.
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Appends the `_bucket`, `_sum` and `_count` lines; `labels` (already escaped)
    /// go before `le`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// A label value as the Prometheus text format needs it: `\\`, `"` and newline
/// escaped (the only three the format escapes). Values that reach `/metrics` from
/// outside (a subscriber's logical address from the registry) go through this, so
/// no value can end its label early and break the whole scrape.
pub struct LabelValue<'a>(pub &'a str);

impl std::fmt::Display for LabelValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['\\', '"', '\n']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'\\' => "\\\\",
                b'"' => "\\\"",
                _ => "\\n",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Everything `/metrics` reports.
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Indexed by [`Operation::index`].
    latency: [Histogram; 3],
    pub inserted: AtomicU64,
    pub updated: AtomicU64,
    pub deleted: AtomicU64,
    pub owner_changed: AtomicU64,
    pub unchanged: AtomicU64,
    pub group_commits: AtomicU64,
    /// FindContent access records dropped because the audit appender's queue was full.
    pub audit_dropped: AtomicU64,
    /// FindContent scans answered from memory on the request's thread / read again on
    /// a blocking thread because a block was not cached (or on PostgreSQL).
    find_in_memory: AtomicU64,
    find_blocking: AtomicU64,
    batch_requests: Histogram,
    batch_engagements: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: [
                Histogram::new(LATENCY_BOUNDS),
                Histogram::new(LATENCY_BOUNDS),
                Histogram::new(LATENCY_BOUNDS),
            ],
            inserted: AtomicU64::new(0),
            updated: AtomicU64::new(0),
            deleted: AtomicU64::new(0),
            owner_changed: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            group_commits: AtomicU64::new(0),
            audit_dropped: AtomicU64::new(0),
            find_in_memory: AtomicU64::new(0),
            find_blocking: AtomicU64::new(0),
            batch_requests: Histogram::new(BATCH_BOUNDS),
            batch_engagements: Histogram::new(ENGAGEMENT_BOUNDS),
        }
    }
}

impl Metrics {
    /// Records one finished request: its operation (the `service` label), its outcome
    /// (`OK`, an EI code, or `header`) and how long it took.
    pub fn request(&self, op: Operation, outcome: &'static str, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((op.name(), outcome)).or_default() += 1;
        }
        self.latency[op.index()].observe(elapsed.as_secs_f64());
    }

    /// Records where one FindContent scan ran: `blocking` when it went to a blocking
    /// thread (a block it needed was not cached, or the store is PostgreSQL).
    pub fn find_read(&self, blocking: bool) {
        let n = if blocking {
            &self.find_blocking
        } else {
            &self.find_in_memory
        };
        n.fetch_add(1, Relaxed);
    }

    /// Records one group commit (one WAL fsync) of `requests` requests writing
    /// `engagements` posts.
    pub fn group_commit(&self, requests: usize, engagements: usize) {
        self.group_commits.fetch_add(1, Relaxed);
        self.batch_requests.observe(requests as f64);
        self.batch_engagements.observe(engagements as f64);
    }

    /// The Prometheus text exposition; `gauges` are extra `(name, help, value)` lines.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP ei_requests_total Requests by service and outcome (OK, EI code, or header).\n# TYPE ei_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for ((service, outcome), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "ei_requests_total{{service=\"{service}\",outcome=\"{outcome}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP ei_request_duration_seconds Request latency by service.\n# TYPE ei_request_duration_seconds histogram\n");
        for (op, h) in Operation::ALL.iter().zip(&self.latency) {
            h.render(
                &mut out,
                "ei_request_duration_seconds",
                &format!("service=\"{}\"", op.name()),
            );
        }
        labelled_counter(
            &mut out,
            "ei_engagements_changed_total",
            "Effective changes written, by kind.",
            "kind",
            &[
                ("inserted", &self.inserted),
                ("updated", &self.updated),
                ("deleted", &self.deleted),
                ("owner_changed", &self.owner_changed),
                ("unchanged", &self.unchanged),
            ],
        );
        out.push_str("# HELP ei_audit_dropped_total FindContent access records dropped because the audit queue was full.\n# TYPE ei_audit_dropped_total counter\n");
        let _ = writeln!(
            out,
            "ei_audit_dropped_total {}",
            self.audit_dropped.load(Relaxed)
        );
        labelled_counter(
            &mut out,
            "ei_find_reads_total",
            "FindContent scans by where they ran: memory (every block cached, on the request's thread) or blocking (a blocking thread that may read the disk; always on PostgreSQL).",
            "from",
            &[
                ("memory", &self.find_in_memory),
                ("blocking", &self.find_blocking),
            ],
        );
        out.push_str("# HELP ei_store_group_commits_total Write batches committed, each with one WAL fsync.\n# TYPE ei_store_group_commits_total counter\n");
        let _ = writeln!(
            out,
            "ei_store_group_commits_total {}",
            self.group_commits.load(Relaxed)
        );
        out.push_str("# HELP ei_store_batch_requests Requests per group commit.\n# TYPE ei_store_batch_requests histogram\n");
        self.batch_requests
            .render(&mut out, "ei_store_batch_requests", "");
        out.push_str("# HELP ei_store_batch_engagements Posts written per group commit.\n# TYPE ei_store_batch_engagements histogram\n");
        self.batch_engagements
            .render(&mut out, "ei_store_batch_engagements", "");
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

/// A counter family with one label: its HELP and TYPE lines, then a line per value.
fn labelled_counter(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, &AtomicU64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (value, n) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {}", n.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_without_labels() {
        let h = Histogram::new(&[0.01, 1.0]);
        h.observe(0.005);
        h.observe(0.5);
        h.observe(7.0);
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "");
        assert!(out.contains("x_seconds_bucket{le=\"0.01\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum 7.505\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request(Operation::Update, "OK", Duration::from_micros(300));
        m.request(Operation::Update, "EI004", Duration::from_millis(3));
        m.group_commit(3, 1500);
        let text = m.render(&[("ei_engagements", "Posts.", 7.0)]);
        assert!(text.contains("ei_requests_total{service=\"Update\",outcome=\"OK\"} 1"));
        assert!(text.contains("ei_requests_total{service=\"Update\",outcome=\"EI004\"} 1"));
        assert!(
            text.contains("ei_request_duration_seconds_bucket{service=\"Update\",le=\"0.0005\"} 1")
        );
        assert!(
            text.contains("ei_request_duration_seconds_bucket{service=\"Update\",le=\"0.005\"} 2")
        );
        assert!(text.contains("ei_request_duration_seconds_count{service=\"Update\"} 2"));
        assert!(text.contains("ei_store_group_commits_total 1"));
        assert!(text.contains("ei_store_batch_requests_bucket{le=\"4\"} 1"));
        assert!(text.contains("ei_engagements 7"));
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(
            LabelValue("SE2321000016-15CQ").to_string(),
            "SE2321000016-15CQ"
        );
        assert_eq!(
            LabelValue("a\"b\\c\nd").to_string(),
            "a\\\"b\\\\c\\nd",
            "quote, backslash and newline are escaped"
        );
        assert_eq!(LabelValue("\"\"\n").to_string(), "\\\"\\\"\\n");
        assert_eq!(
            LabelValue("åäö\t").to_string(),
            "åäö\t",
            "nothing else is touched"
        );
    }
}
