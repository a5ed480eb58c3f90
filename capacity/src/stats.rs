//! Counting one stream of calls: an HDR histogram of latencies (microseconds, three
//! significant digits, up to an hour) plus success and error counts, and the
//! [`Summary`] reports print.

use crate::client::CallError;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies and outcomes of one stream (or of several, merged).
#[derive(Clone, Debug)]
pub struct Tally {
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub first_error: Option<String>,
    /// Calls that took longer than the objective's bound.
    pub over_bound: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            errors: BTreeMap::new(),
            first_error: None,
            over_bound: 0,
        }
    }
}

impl Tally {
    /// Records one finished call: its latency (from its scheduled time) and outcome.
    pub fn record(&mut self, latency: Duration, outcome: &Result<(), CallError>, bound: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, self.latency.high());
        self.latency.saturating_record(us);
        if latency > bound {
            self.over_bound += 1;
        }
        match outcome {
            Ok(()) => self.ok += 1,
            Err(e) => {
                *self.errors.entry(e.kind()).or_default() += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn count(&self) -> u64 {
        self.ok + self.error_count()
    }

    /// Adds another tally's calls to this one.
    pub fn merge(&mut self, other: &Tally) {
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds add");
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.over_bound += other.over_bound;
    }

    /// The latency percentiles in milliseconds; `None` when nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.latency.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            p50_ms: ms(self.latency.value_at_quantile(0.50)),
            p95_ms: ms(self.latency.value_at_quantile(0.95)),
            p99_ms: ms(self.latency.value_at_quantile(0.99)),
            max_ms: ms(self.latency.max()),
        })
    }
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_errors() {
        let bound = Duration::from_millis(100);
        let mut t = Tally::default();
        for ms in 1..=100 {
            t.record(Duration::from_millis(ms), &Ok(()), bound);
        }
        t.record(
            Duration::from_millis(500),
            &Err(CallError::Status(503)),
            bound,
        );
        let p = t.percentiles().unwrap();
        assert!((p.p50_ms - 51.0).abs() < 0.1, "{p:?}");
        assert!((p.p99_ms - 100.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 500.0).abs() < 0.5, "{p:?}");
        assert_eq!((t.ok, t.error_count(), t.over_bound), (100, 1, 1));
        assert_eq!(t.first_error.as_deref(), Some("HTTP status 503"));
        let mut all = Tally::default();
        all.merge(&t);
        all.merge(&t);
        assert_eq!((all.count(), all.errors["http-status"]), (202, 2));
        assert!(Tally::default().percentiles().is_none());
    }
}
