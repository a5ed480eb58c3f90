//! The command line's arguments (clap), with the help texts and exit codes that
//! `ei-loader --help` shows. [`crate::cli`] validates them and runs the commands.

use crate::window::Window;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

pub const EXIT_CODES: &str = "\
Exit codes:
  0    done, nothing to report; also when stdout is a pipe whose reader quit early
       (`ei-loader check … | head`), which ends the command quietly
  1    done, with findings: check found invalid records or duplicate keys, plan refused
       an input with findings, run rejected records (see the reject file), verify found
       missing or different posts, probe got a wrong answer
  2    refused: bad arguments, environment file or plan, the 14-day rule, inputs
       changed since the plan
  3    failed: a call retrying cannot fix, retries exhausted, I/O; `run` resumes from
       the journal when started again
  130  interrupted (Ctrl-C); `run` resumes from the journal when started again";

/// Plans, runs and verifies a grundladdning (initial load) of the engagement index.
#[derive(Debug, Parser)]
#[command(name = "ei-loader", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Environment profiles file (`[env.NAME]` tables).
    #[arg(
        long,
        global = true,
        env = "EI_LOADER_CONFIG",
        default_value = "ei-loader.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate every record with the index's rules, find duplicate keys across the
    /// whole load, count posts per source system and data controller.
    Check(CheckArgs),
    /// Write the plan file (the order) and print the order form.
    Plan(PlanArgs),
    /// Load what the plan says, throttled, in its windows, resumable.
    Run(RunArgs),
    /// Spot-check (stickprov) N random posts of the load with FindContent.
    Verify(VerifyArgs),
    /// Connectivity test: FindContent for a known and an unknown resident, timed.
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Input files: .csv (header of field names) or .jsonl.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Environment whose reserved HSA-ids apply (default: only the national index id).
    #[arg(long)]
    pub env: Option<String>,
    /// One JSON object per line: findings, then the summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Input files: .csv (header of field names) or .jsonl, in load order.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Target environment (from the profiles file).
    #[arg(long)]
    pub env: String,
    /// Planned start, Swedish local time: YYYY-MM-DD or YYYY-MM-DDTHH:MM.
    #[arg(long)]
    pub start: String,
    /// The day the order is sent (default: today).
    #[arg(long)]
    pub order_date: Option<String>,
    /// Source system name for the order form.
    #[arg(long)]
    pub name: String,
    /// Source system HSA-id (default: the input's only sourceSystem).
    #[arg(long)]
    pub source_system: Option<String>,
    /// Concurrent calls.
    #[arg(long, default_value_t = 1)]
    pub concurrency: u32,
    /// Posts per call (at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: u32,
    /// Pause after each reply before the same worker's next call, in ms.
    #[arg(long, default_value_t = 5000)]
    pub pause_ms: u64,
    /// Daily window HH:MM-HH:MM, Swedish local time (repeatable; none = any time).
    #[arg(long = "window")]
    pub windows: Vec<Window>,
    /// First retry delay, doubled per attempt.
    #[arg(long, default_value_t = 1000)]
    pub retry_initial_ms: u64,
    /// Longest retry delay.
    #[arg(long, default_value_t = 60_000)]
    pub retry_max_ms: u64,
    /// Attempts per call before the run stops (0 = keep trying).
    #[arg(long, default_value_t = 0)]
    pub max_attempts: u32,
    /// Per-call timeout.
    #[arg(long, default_value_t = 60_000)]
    pub timeout_ms: u64,
    /// Service time assumed per call for the estimate.
    #[arg(long, default_value_t = 250)]
    pub assumed_call_ms: u64,
    /// Plan even though the input has findings (they go to the reject file unsent).
    #[arg(long)]
    pub accept_invalid: bool,
    /// Plan file to write.
    #[arg(short, long, default_value = "grundladdning.toml")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan file (its journal and reject file go beside it).
    pub plan: PathBuf,
    /// Start now, not at the planned start (windows still apply).
    #[arg(long)]
    pub now: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The plan file of the load to check.
    pub plan: PathBuf,
    /// Posts to sample.
    #[arg(long)]
    pub sample: usize,
    /// Random seed (default: random; printed so a check can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The index's base URL or its FindContent endpoint.
    pub url: String,
    /// A resident the index holds posts for in --domain.
    #[arg(long)]
    pub known: String,
    /// A resident it holds none for.
    #[arg(long, default_value = "000000000000")]
    pub unknown: String,
    #[arg(long, default_value = "riv:clinicalprocess:healthcond:description")]
    pub domain: String,
    /// Take the TLS client certificate and roots from this environment's profile.
    #[arg(long)]
    pub env: Option<String>,
    /// Per-call timeout (the platform's aggregating services allow 29 s).
    #[arg(long, default_value_t = 29_000)]
    pub timeout_ms: u64,
    #[arg(long)]
    pub json: bool,
}
