//! The report: one [`Report`] value holds every number; [`markdown`] renders it for a
//! förstudie, `serde_json` for machines (same numbers, same names), and [`svg`] draws
//! latency percentiles and throughput against offered load; [`publish`] puts it where
//! the command line asked.

pub mod markdown;
pub mod publish;
pub mod svg;

use crate::file::{FlowRow, GrundRow};
use crate::loadgen::StreamResult;
use crate::seed::SeedResult;
use crate::stats::{Percentiles, Tally};
use ei_server::operation::Operation;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: String,
    pub started_utc: String,
    pub target: String,
    pub settings: RunSettings,
    pub flows: Vec<FlowRow>,
    pub seed: Option<SeedResult>,
    pub index_engagements_before: Option<u64>,
    pub index_engagements_after: Option<u64>,
    pub phases: Vec<PhaseReport>,
    pub headroom: Headroom,
    pub grundladdning: Vec<GrundReport>,
    pub verdict: Verdict,
    /// Why the verdict is what it is, one sentence per reason.
    pub verdict_reasons: Vec<String>,
}

/// The run's settings, as used.
#[derive(Clone, Debug, Serialize)]
pub struct RunSettings {
    pub index_hsa_id: String,
    pub phase_s: f64,
    pub grundladdning_s: f64,
    pub p99_bound_ms: f64,
    pub max_in_flight: usize,
    pub timeout_s: f64,
    pub drain_s: f64,
    pub max_factor: f64,
    pub resident_space: u64,
}

/// Does the index hold the förstudie's load?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Holds,
    Fails,
}

/// A row's or a phase's verdict against the objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowVerdict {
    Passes,
    Fails,
    /// No call was due in the phase (rate × phase length rounds to 0).
    NotMeasured,
}

impl RowVerdict {
    pub fn text(self) -> &'static str {
        match self {
            RowVerdict::Passes => "passes",
            RowVerdict::Fails => "fails",
            RowVerdict::NotMeasured => "not measured",
        }
    }

    /// Fails if any fails, passes if any passes, else not measured.
    pub fn all(verdicts: impl IntoIterator<Item = RowVerdict>) -> RowVerdict {
        verdicts
            .into_iter()
            .fold(RowVerdict::NotMeasured, |acc, v| match (acc, v) {
                (RowVerdict::Fails, _) | (_, RowVerdict::Fails) => RowVerdict::Fails,
                (RowVerdict::Passes, _) | (_, RowVerdict::Passes) => RowVerdict::Passes,
                _ => RowVerdict::NotMeasured,
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseKind {
    Normal,
    Max,
    StepUp,
    Grundladdning,
}

/// One phase: each flow row's numbers and the sum of all rows.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub name: String,
    pub kind: PhaseKind,
    /// The rates as a multiple of max flow (normal flow is below 1).
    pub factor_of_max: Option<f64>,
    pub duration_s: f64,
    /// The window achieved rates are computed over.
    pub elapsed_s: f64,
    pub stopped_early_after_s: Option<f64>,
    pub max_send_lag_ms: f64,
    pub rows: Vec<RowResult>,
    pub total: RowResult,
    pub verdict: RowVerdict,
}

/// One row's (or all rows') numbers in a phase.
#[derive(Clone, Debug, Serialize)]
pub struct RowResult {
    pub label: String,
    pub contract: Option<Operation>,
    pub offered_calls_per_s: f64,
    pub offered_posts_per_hour: f64,
    pub planned_calls: u64,
    pub sent_calls: u64,
    pub ok_calls: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub first_error: Option<String>,
    pub achieved_calls_per_s: f64,
    pub achieved_posts_per_hour: f64,
    pub latency: Option<Percentiles>,
    pub verdict: RowVerdict,
}

impl RowResult {
    /// A row's result from its stream; `posts_per_call` turns calls into posts.
    pub fn from_stream(
        s: &StreamResult,
        row: &FlowRow,
        elapsed: Duration,
        bound: Duration,
    ) -> RowResult {
        let mut r = RowResult::from_tally(&s.tally, s.label.clone(), elapsed, bound);
        r.contract = Some(row.contract);
        r.offered_calls_per_s = s.rate_per_s;
        r.offered_posts_per_hour = s.rate_per_s * row.posts_per_call as f64 * 3600.0;
        r.achieved_posts_per_hour = r.achieved_calls_per_s * row.posts_per_call as f64 * 3600.0;
        r.planned_calls = s.planned;
        r.sent_calls = s.sent;
        r
    }

    /// The numbers a tally gives; offered rates and posts are the caller's to fill.
    pub fn from_tally(t: &Tally, label: String, elapsed: Duration, bound: Duration) -> RowResult {
        let latency = t.percentiles();
        let errors = t.error_count();
        let verdict = match latency {
            None => RowVerdict::NotMeasured,
            Some(p) if errors > 0 || p.p99_ms > bound.as_secs_f64() * 1000.0 => RowVerdict::Fails,
            Some(_) => RowVerdict::Passes,
        };
        RowResult {
            label,
            contract: None,
            offered_calls_per_s: 0.0,
            offered_posts_per_hour: 0.0,
            planned_calls: t.count(),
            sent_calls: t.count(),
            ok_calls: t.ok,
            errors,
            error_kinds: t.errors.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            first_error: t.first_error.clone(),
            achieved_calls_per_s: t.ok as f64 / elapsed.as_secs_f64().max(1e-9),
            achieved_posts_per_hour: 0.0,
            latency,
            verdict,
        }
    }
}

/// How far beyond max flow the index still meets the objective.
#[derive(Clone, Debug, Serialize)]
pub struct Headroom {
    /// The largest multiple of max flow that passed (1 when max passed and ×2 did
    /// not); `None` when max flow itself failed.
    pub factor: Option<f64>,
    /// The first multiple that failed; `None` when none did up to the limit.
    pub first_failing_factor: Option<f64>,
    pub reason: String,
}

/// One grundladdning row's simulation and projection.
#[derive(Clone, Debug, Serialize)]
pub struct GrundReport {
    pub row: GrundRow,
    pub simulated_s: f64,
    pub calls: u64,
    pub failed_calls: u64,
    pub first_error: Option<String>,
    pub posts_acknowledged: u64,
    /// Posts acknowledged ÷ the window.
    pub posts_per_second: f64,
    /// concurrent calls × posts per call ÷ (mean call latency + pause), times the
    /// share of calls that succeeded: what the projection uses.
    pub steady_posts_per_second: Option<f64>,
    pub call_latency: Option<Percentiles>,
    /// All posts ÷ the steady rate (or the measured time, when the load finished).
    pub projected_s: Option<f64>,
    pub projected: String,
    pub finished_in_window: bool,
    /// The phase that ran normal flow alongside.
    pub normal_flow_phase: String,
    pub normal_flow_within_objective: bool,
}

/// "3 h 12 min" and the like.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else if s < 86_400.0 * 2.0 {
        format!(
            "{} h {} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    } else {
        format!("{:.1} days", s / 86_400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_planner_writes_them() {
        assert_eq!(human_duration(Duration::from_secs_f64(12.34)), "12.3 s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2 min 5 s");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 3600 + 720)),
            "3 h 12 min"
        );
        assert_eq!(human_duration(Duration::from_secs(5 * 86_400)), "5.0 days");
    }

    #[test]
    fn phase_verdict_combines_rows() {
        use RowVerdict::*;
        assert_eq!(RowVerdict::all([Passes, NotMeasured]), Passes);
        assert_eq!(RowVerdict::all([Passes, Fails, NotMeasured]), Fails);
        assert_eq!(RowVerdict::all([NotMeasured]), NotMeasured);
    }
}
