//! The command line: clap [`Args`], checked into a [`Settings`] plan (first stage
//! parses, second validates and reads the capacity file), and the exit codes.

use crate::file::{self, FileError};
use crate::run::Settings;
use crate::seed::SeedSpec;
use crate::target::TargetSpec;
use std::path::PathBuf;
use std::time::Duration;

/// The objective holds (normal flow, max flow, normal flow during grundladdning).
pub const EXIT_HOLDS: i32 = 0;
/// The run completed and the objective does not hold.
pub const EXIT_FAILS: i32 = 1;
/// Bad arguments or capacity file (clap's own usage errors use 2 as well).
pub const EXIT_USAGE: i32 = 2;
/// The run could not be completed (target unreachable, report not writable, …).
pub const EXIT_RUN: i32 = 3;

const AFTER_HELP: &str = "\
Exit codes:
  0  the index holds the load: normal flow, max flow and normal flow during each
     grundladdning meet the objective (p99 <= bound, no errors)
  1  the run completed and the objective does not hold
  2  bad arguments or capacity file (the message names the row and field)
  3  the run could not be completed (target unreachable, report not writable)
A closed stdout pipe (`capacity … | head` after head quit) ends the run quietly
with 0.

The report goes to stdout as Markdown (--json: JSON) and, with --out DIR, to
DIR/report.md, DIR/report.json and DIR/report.svg. Progress goes to stderr when it
is a terminal; one summary line always ends the run on stderr.";

/// Load an engagement index with a förstudie's capacity tables and report.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "capacity", version, after_help = AFTER_HELP)]
pub struct Args {
    /// The capacity file (TOML): [[flow]] and [[grundladdning]] rows.
    pub file: PathBuf,
    /// The index to load, e.g. http://127.0.0.1:8080.
    #[arg(
        long,
        conflicts_with = "embedded",
        required_unless_present = "embedded"
    )]
    pub url: Option<String>,
    /// Start ei-server in-process on a temporary data directory and load it.
    #[arg(long)]
    pub embedded: bool,
    /// The index's HSA-id (the Update LogicalAddress; also the embedded server's id).
    #[arg(long, default_value = "ei-hsa-id")]
    pub index_hsa_id: String,
    /// Length of each load phase (normal, max, every step-up), in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub phase_secs: f64,
    /// How long each grundladdning is simulated alongside normal flow, in seconds.
    #[arg(long, default_value_t = 30.0)]
    pub grundladdning_secs: f64,
    /// The p99 bound in milliseconds (default: the file's [objective] p99_ms, else 1000).
    #[arg(long)]
    pub p99_ms: Option<f64>,
    /// Seed this many residents before the phases (with --seed-per-resident).
    #[arg(long, default_value_t = 0)]
    pub seed_residents: u64,
    /// Engagements seeded per resident.
    #[arg(long, default_value_t = 10)]
    pub seed_per_resident: u64,
    /// Residents that traffic picks from when nothing is seeded.
    #[arg(long, default_value_t = 10_000)]
    pub residents: u64,
    /// The step-up stops after this multiple of max flow.
    #[arg(long, default_value_t = 1000.0)]
    pub max_factor: f64,
    /// Most calls in flight at once (like a connection pool); calls due beyond it
    /// wait, and their wait counts as latency.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// A call unanswered after this many seconds is an error (the platform's 29 s).
    #[arg(long, default_value_t = 29.0)]
    pub timeout_secs: f64,
    /// After a phase, wait this long for answers; later ones count as errors.
    #[arg(long, default_value_t = 10.0)]
    pub drain_secs: f64,
    /// Quiet time between phases, in seconds.
    #[arg(long, default_value_t = 1.0)]
    pub settle_secs: f64,
    /// Also write report.md, report.json and report.svg into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the JSON report on stdout instead of the Markdown.
    #[arg(long)]
    pub json: bool,
}

/// Why the arguments do not make a run.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("--{flag}: {problem}")]
    Flag { flag: &'static str, problem: String },
}

impl Args {
    /// The second stage: checks the flags and reads the capacity file.
    pub fn settings(&self) -> Result<Settings, ArgsError> {
        let plan = file::load(&self.file)?;
        let bound = match (self.p99_ms, plan.p99_bound) {
            (Some(ms), _) => secs("p99-ms", ms / 1000.0)?,
            (None, Some(b)) => b,
            (None, None) => Duration::from_secs(1),
        };
        let seed = (self.seed_residents > 0).then_some(SeedSpec {
            residents: self.seed_residents,
            per_resident: positive("seed-per-resident", self.seed_per_resident)?,
        });
        if self.max_factor < 1.0 || !self.max_factor.is_finite() {
            return Err(flag(
                "max-factor",
                format!("must be at least 1, got {}", self.max_factor),
            ));
        }
        check_ids(&plan, &self.index_hsa_id)?;
        Ok(Settings {
            plan,
            target: match &self.url {
                Some(url) => TargetSpec::Url(url.clone()),
                None => TargetSpec::Embedded,
            },
            index_hsa_id: self.index_hsa_id.clone(),
            phase: secs("phase-secs", self.phase_secs)?,
            grundladdning: secs("grundladdning-secs", self.grundladdning_secs)?,
            bound,
            seed,
            residents: positive("residents", self.residents)?,
            max_factor: self.max_factor,
            max_in_flight: positive("max-in-flight", self.max_in_flight as u64)? as usize,
            timeout: secs("timeout-secs", self.timeout_secs)?,
            drain: non_negative("drain-secs", self.drain_secs)?,
            settle: non_negative("settle-secs", self.settle_secs)?,
        })
    }
}

fn flag(flag: &'static str, problem: String) -> ArgsError {
    ArgsError::Flag { flag, problem }
}

fn secs(name: &'static str, s: f64) -> Result<Duration, ArgsError> {
    if s > 0.0 && s.is_finite() {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(flag(name, format!("must be above 0, got {s}")))
    }
}

fn non_negative(name: &'static str, s: f64) -> Result<Duration, ArgsError> {
    Duration::try_from_secs_f64(s).map_err(|_| flag(name, format!("must be 0 or more, got {s}")))
}

fn positive(name: &'static str, n: u64) -> Result<u64, ArgsError> {
    if n > 0 {
        Ok(n)
    } else {
        Err(flag(name, "must be at least 1".into()))
    }
}

/// A row's HSA-id may not be the index's own: the server refuses it (EI005/EI006).
fn check_ids(plan: &file::CapacityPlan, index: &str) -> Result<(), ArgsError> {
    let ids = plan
        .flows
        .iter()
        .map(|r| (&r.source_system, &r.hsa_id))
        .chain(
            plan.grundladdning
                .iter()
                .map(|r| (&r.source_system, &r.hsa_id)),
        );
    for (name, id) in ids {
        if id == index {
            return Err(flag(
                "index-hsa-id",
                format!("\"{index}\" is also the hsa_id of {name}; the index refuses its own id as a source system"),
            ));
        }
    }
    Ok(())
}
