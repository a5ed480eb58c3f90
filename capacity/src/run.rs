//! A whole run: start (or reach) the target, seed, then the phases in order: normal
//! flow, max flow, each grundladdning alongside normal flow, and the step-up
//! (×2, ×5, ×10, ×20, … of max flow) until the objective breaks. Builds the
//! [`Report`] with its verdicts.

use crate::client::Client;
use crate::file::{CapacityPlan, GrundRow};
use crate::grund;
use crate::loadgen::{self, Schedule, Stream};
use crate::progress::Progress;
use crate::report::{
    human_duration, GrundReport, Headroom, PhaseKind, PhaseReport, Report, RowResult, RowVerdict,
    RunSettings, Verdict,
};
use crate::seed::{self, SeedSpec};
use crate::stats::Tally;
use crate::target::{TargetError, TargetSpec};
use crate::workload::{Bodies, FlowCalls, ResidentSpace};
use std::sync::Arc;
use std::time::Duration;

/// A validated plan for one run (what the command line and the file asked for).
#[derive(Clone, Debug)]
pub struct Settings {
    pub plan: CapacityPlan,
    pub target: TargetSpec,
    pub index_hsa_id: String,
    pub phase: Duration,
    pub grundladdning: Duration,
    pub bound: Duration,
    pub seed: Option<SeedSpec>,
    /// Residents traffic picks from when nothing is seeded.
    pub residents: u64,
    pub max_factor: f64,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub drain: Duration,
    /// Quiet time between phases, so one phase's stragglers do not start the next.
    pub settle: Duration,
}

/// Why a run could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("the target {url} does not answer: {message}")]
    Unreachable { url: String, message: String },
}

/// Runs `settings` and reports.
pub async fn run(settings: &Settings, progress: &Progress) -> Result<Report, RunError> {
    match &settings.target {
        TargetSpec::Url(url) => run_against(url, "url", settings, progress).await,
        TargetSpec::Embedded => run_embedded(settings, progress).await,
    }
}

#[cfg(feature = "embedded")]
async fn run_embedded(settings: &Settings, progress: &Progress) -> Result<Report, RunError> {
    let server = crate::target::start_embedded(&settings.index_hsa_id).await?;
    progress.line(&format!("embedded ei-server on {}", server.base));
    let report = run_against(&server.base, "embedded", settings, progress).await;
    server.stop().await.map_err(TargetError::from)?;
    report
}

#[cfg(not(feature = "embedded"))]
async fn run_embedded(_: &Settings, _: &Progress) -> Result<Report, RunError> {
    Err(TargetError::NoEmbedded.into())
}

async fn run_against(
    base: &str,
    kind: &str,
    settings: &Settings,
    progress: &Progress,
) -> Result<Report, RunError> {
    let client = Client::new(base);
    let before = probe(&client).await?;
    let bodies = Bodies::new(&settings.index_hsa_id);
    let mut seeded = None;
    if let Some(spec) = settings.seed {
        let s = seed::seed(&client, &bodies, spec, progress).await;
        progress.line(&format!(
            "seeded {} posts in {:.1} s ({:.0} posts/s)",
            s.posts, s.seconds, s.posts_per_second
        ));
        seeded = Some(s);
    }
    let residents = ResidentSpace {
        count: settings
            .seed
            .map_or(settings.residents, |s| s.residents)
            .max(1),
    };
    let phases = Phases {
        client: &client,
        bodies: &bodies,
        residents,
        settings,
        progress,
    };
    let mut report = phases.all().await;
    report.target = format!("{kind} {base}");
    report.seed = seeded;
    report.index_engagements_before = before;
    report.index_engagements_after = client.status().await.ok().flatten();
    Ok(report)
}

/// Asks the target for its status once (an embedded server's socket is bound before
/// it serves, so it answers as soon as its store is open); returns its engagement
/// count when it reports one.
async fn probe(client: &Client) -> Result<Option<u64>, RunError> {
    client.status().await.map_err(|e| RunError::Unreachable {
        url: client.base().to_owned(),
        message: e.message,
    })
}

struct Phases<'a> {
    client: &'a Client,
    bodies: &'a Bodies,
    residents: ResidentSpace,
    settings: &'a Settings,
    progress: &'a Progress,
}

/// Which rate of the rows a phase uses, times a factor.
#[derive(Clone, Copy)]
enum Rates {
    Normal,
    Max(f64),
}

impl Phases<'_> {
    /// Every phase in order, and the verdicts.
    async fn all(&self) -> Report {
        let started_utc = now_utc();
        let mut phases = vec![
            self.flow_phase("normal flow", PhaseKind::Normal, Rates::Normal, 0)
                .await,
            self.flow_phase("max flow", PhaseKind::Max, Rates::Max(1.0), 1)
                .await,
        ];
        let mut grunds = Vec::new();
        for (i, row) in self.settings.plan.grundladdning.iter().enumerate() {
            let (phase, g) = self.grundladdning(row, 2 + i as u64).await;
            phases.push(phase);
            grunds.push(g);
        }
        let max_passed = phases[1].verdict != RowVerdict::Fails;
        let headroom = if max_passed {
            let first = 2 + grunds.len() as u64;
            self.step_up(&mut phases, first).await
        } else {
            Headroom {
                factor: None,
                first_failing_factor: Some(1.0),
                reason: "max flow itself does not meet the objective; no step-up was run".into(),
            }
        };
        let (verdict, verdict_reasons) = verdict(&phases, &grunds);
        Report {
            tool: format!("capacity {}", env!("CARGO_PKG_VERSION")),
            started_utc,
            target: String::new(),
            settings: self.run_settings(),
            flows: self.settings.plan.flows.clone(),
            seed: None,
            index_engagements_before: None,
            index_engagements_after: None,
            phases,
            headroom,
            grundladdning: grunds,
            verdict,
            verdict_reasons,
        }
    }

    fn run_settings(&self) -> RunSettings {
        let s = self.settings;
        RunSettings {
            index_hsa_id: s.index_hsa_id.clone(),
            phase_s: s.phase.as_secs_f64(),
            grundladdning_s: s.grundladdning.as_secs_f64(),
            p99_bound_ms: s.bound.as_secs_f64() * 1000.0,
            max_in_flight: s.max_in_flight,
            timeout_s: s.timeout.as_secs_f64(),
            drain_s: s.drain.as_secs_f64(),
            max_factor: s.max_factor,
            resident_space: self.residents.count,
        }
    }

    /// One stream per flow row at the phase's rates. `phase_no` varies the keys.
    fn streams(&self, rates: Rates, phase_no: u64) -> Vec<Stream> {
        let rows = &self.settings.plan.flows;
        rows.iter()
            .enumerate()
            .map(|(i, row)| {
                let calls = FlowCalls {
                    bodies: self.bodies.clone(),
                    operation: row.contract,
                    source_system: row.hsa_id.clone(),
                    posts_per_call: row.posts_per_call,
                    residents: self.residents,
                    stream: phase_no << 8 | i as u64,
                };
                Stream {
                    label: row.label(),
                    rate_per_s: match rates {
                        Rates::Normal => row.calls_per_second(row.normal_per_hour),
                        Rates::Max(f) => row.calls_per_second(row.max_per_hour) * f,
                    },
                    make: Arc::new(move |seq| calls.request(seq)),
                }
            })
            .collect()
    }

    fn schedule(&self, duration: Duration, stop_when_failed: bool) -> Schedule {
        let s = self.settings;
        Schedule {
            duration,
            max_in_flight: s.max_in_flight,
            timeout: s.timeout,
            drain: s.drain,
            bound: s.bound,
            stop_when_failed,
        }
    }

    async fn flow_phase(
        &self,
        name: &str,
        kind: PhaseKind,
        rates: Rates,
        phase_no: u64,
    ) -> PhaseReport {
        let streams = self.streams(rates, phase_no);
        let schedule = self.schedule(self.settings.phase, kind == PhaseKind::StepUp);
        let result = loadgen::run(self.client, &streams, &schedule, self.progress, name).await;
        let report = self.phase_report(name, kind, rates, &schedule, &result);
        self.progress.line(&phase_line(&report));
        tokio::time::sleep(self.settings.settle).await;
        report
    }

    fn phase_report(
        &self,
        name: &str,
        kind: PhaseKind,
        rates: Rates,
        schedule: &Schedule,
        result: &loadgen::LoadResult,
    ) -> PhaseReport {
        let bound = self.settings.bound;
        let rows: Vec<RowResult> = result
            .streams
            .iter()
            .zip(&self.settings.plan.flows)
            .map(|(s, row)| RowResult::from_stream(s, row, result.elapsed, bound))
            .collect();
        let mut all = Tally::default();
        result.streams.iter().for_each(|s| all.merge(&s.tally));
        let mut total = RowResult::from_tally(&all, "all rows".into(), result.elapsed, bound);
        total.offered_calls_per_s = rows.iter().map(|r| r.offered_calls_per_s).sum();
        total.offered_posts_per_hour = rows.iter().map(|r| r.offered_posts_per_hour).sum();
        total.achieved_posts_per_hour = rows.iter().map(|r| r.achieved_posts_per_hour).sum();
        total.planned_calls = rows.iter().map(|r| r.planned_calls).sum();
        total.sent_calls = rows.iter().map(|r| r.sent_calls).sum();
        let verdict = RowVerdict::all(rows.iter().map(|r| r.verdict));
        total.verdict = verdict;
        PhaseReport {
            name: name.to_owned(),
            kind,
            factor_of_max: Some(self.factor_of_max(rates)),
            duration_s: schedule.duration.as_secs_f64(),
            elapsed_s: result.elapsed.as_secs_f64(),
            stopped_early_after_s: result.stopped_after.map(|d| d.as_secs_f64()),
            max_send_lag_ms: result.max_send_lag.as_secs_f64() * 1000.0,
            rows,
            total,
            verdict,
        }
    }

    /// Normal flow as a multiple of max flow (all rows together, in calls).
    fn factor_of_max(&self, rates: Rates) -> f64 {
        match rates {
            Rates::Max(f) => f,
            Rates::Normal => {
                let rows = &self.settings.plan.flows;
                let normal: f64 = rows
                    .iter()
                    .map(|r| r.calls_per_second(r.normal_per_hour))
                    .sum();
                let max: f64 = rows
                    .iter()
                    .map(|r| r.calls_per_second(r.max_per_hour))
                    .sum();
                normal / max
            }
        }
    }

    /// ×2, ×5, ×10, … of max flow until a step fails or the limit is passed.
    async fn step_up(&self, phases: &mut Vec<PhaseReport>, first_no: u64) -> Headroom {
        let mut passed = 1.0;
        for (i, factor) in step_factors(self.settings.max_factor).enumerate() {
            let name = format!("step-up ×{factor}");
            let phase_no = first_no + i as u64;
            let phase = self
                .flow_phase(&name, PhaseKind::StepUp, Rates::Max(factor), phase_no)
                .await;
            let failed = phase.verdict == RowVerdict::Fails;
            let why = failure_reason(&phase);
            phases.push(phase);
            if failed {
                return Headroom {
                    factor: Some(passed),
                    first_failing_factor: Some(factor),
                    reason: format!("×{factor} of max flow fails: {why}"),
                };
            }
            passed = factor;
        }
        Headroom {
            factor: Some(passed),
            first_failing_factor: None,
            reason: format!(
                "no step failed up to the limit ×{} (--max-factor); the headroom is at least this",
                self.settings.max_factor
            ),
        }
    }

    /// One grundladdning simulated alongside normal flow.
    async fn grundladdning(&self, row: &GrundRow, phase_no: u64) -> (PhaseReport, GrundReport) {
        let window = self.settings.grundladdning;
        let name = format!("grundladdning {} + normal flow", row.source_system);
        let streams = self.streams(Rates::Normal, phase_no);
        let schedule = self.schedule(window, false);
        let s = self.settings;
        let (load, g) = tokio::join!(
            loadgen::run(self.client, &streams, &schedule, self.progress, &name),
            grund::simulate(
                self.client,
                self.bodies,
                row,
                window,
                s.timeout,
                self.progress
            ),
        );
        let phase = self.phase_report(
            &name,
            PhaseKind::Grundladdning,
            Rates::Normal,
            &schedule,
            &load,
        );
        self.progress.line(&phase_line(&phase));
        let projected = g.projected(row);
        let report = GrundReport {
            row: row.clone(),
            simulated_s: g.elapsed.as_secs_f64(),
            calls: g.calls.count(),
            failed_calls: g.calls.error_count(),
            first_error: g.calls.first_error.clone(),
            posts_acknowledged: g.posts_acknowledged,
            posts_per_second: g.posts_per_second(),
            steady_posts_per_second: g.steady_rate(row),
            call_latency: g.calls.percentiles(),
            projected_s: projected.map(|d| d.as_secs_f64()),
            projected: projected.map_or("no post was acknowledged".into(), human_duration),
            finished_in_window: g.finished,
            normal_flow_phase: name,
            normal_flow_within_objective: phase.verdict != RowVerdict::Fails,
        };
        tokio::time::sleep(self.settings.settle).await;
        (phase, report)
    }
}

/// 2, 5, 10, 20, 50, 100, … up to `limit`.
pub fn step_factors(limit: f64) -> impl Iterator<Item = f64> {
    (0..)
        .map(|i: i32| [2.0, 5.0, 10.0][i as usize % 3] * 10f64.powi(i / 3))
        .take_while(move |f| *f <= limit)
}

fn failure_reason(phase: &PhaseReport) -> String {
    let t = &phase.total;
    if t.errors > 0 {
        let first = t.first_error.as_deref().unwrap_or("");
        format!("{} errors (first: {first})", t.errors)
    } else {
        let p99 = t.latency.map_or(0.0, |p| p.p99_ms);
        format!("p99 {p99:.1} ms is above the bound")
    }
}

/// Holds when normal and max flow pass, and every grundladdning ran without errors
/// while normal flow alongside it passed.
fn verdict(phases: &[PhaseReport], grunds: &[GrundReport]) -> (Verdict, Vec<String>) {
    let mut reasons = Vec::new();
    for p in phases.iter().filter(|p| p.kind != PhaseKind::StepUp) {
        if p.verdict == RowVerdict::Fails {
            reasons.push(format!("{} fails: {}", p.name, failure_reason(p)));
        }
    }
    for g in grunds.iter().filter(|g| g.failed_calls > 0) {
        reasons.push(format!(
            "grundladdning of {}: {} of {} calls failed",
            g.row.source_system, g.failed_calls, g.calls
        ));
    }
    let verdict = if reasons.is_empty() {
        reasons.push(
            "normal flow, max flow and normal flow during each grundladdning meet the objective"
                .into(),
        );
        Verdict::Holds
    } else {
        Verdict::Fails
    };
    (verdict, reasons)
}

fn phase_line(p: &PhaseReport) -> String {
    let t = &p.total;
    let p99 = t
        .latency
        .map_or("-".into(), |l| format!("{:.1} ms", l.p99_ms));
    format!(
        "{}: {:.1} of {:.1} calls/s, p99 {p99}, {} errors: {}",
        p.name,
        t.achieved_calls_per_s,
        t.offered_calls_per_s,
        t.errors,
        p.verdict.text()
    )
}

fn now_utc() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_factors_follow_one_two_five() {
        let f: Vec<f64> = step_factors(1000.0).collect();
        assert_eq!(f, [2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]);
        assert_eq!(step_factors(1.5).count(), 0);
    }
}
