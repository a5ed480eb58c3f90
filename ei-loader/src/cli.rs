//! The command line: the clap arguments ([`crate::args`]) turned into validated
//! options and handed to the commands; results go to stdout (text or `--json`),
//! diagnostics to stderr. Each command returns its exit code; errors carry theirs
//! ([`CliError::exit_code`]).

pub use crate::args::{CheckArgs, Cli, Command, PlanArgs, ProbeArgs, RunArgs, VerifyArgs};
use crate::check::{check, CheckReport, Finding};
use crate::client::EiClient;
use crate::clock::{parse_date, parse_local, to_local, Clock, SystemClock};
use crate::config::{self, rules_for, Profile};
use crate::input::Location;
use crate::plan::{self, fingerprint, LoadFacts, PlanOptions, Retry, Throttle};
use crate::run::{self, Outcome, RunOptions, Summary};
use crate::{probe, verify};
use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A command that could not do its job, with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
    /// Stdout's reader quit (`ei-loader check … | head`): the command stopped early,
    /// and ends quietly with success, as Unix tools do.
    #[error("stdout was closed")]
    OutputClosed,
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused(_) => 2,
            CliError::Failed(_) => 3,
            CliError::OutputClosed => 0,
        }
    }

    /// Whether the error is worth a message on stderr.
    pub fn is_quiet(&self) -> bool {
        matches!(self, CliError::OutputClosed)
    }
}

/// A failed write to stdout: a reader that went away is [`CliError::OutputClosed`].
fn output_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::OutputClosed
    } else {
        failed(format!("cannot write to stdout: {e}"))
    }
}

/// Writes a command's result to stdout.
fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(output_error)
}

fn refused(e: impl std::fmt::Display) -> CliError {
    CliError::Refused(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> CliError {
    CliError::Failed(e.to_string())
}

/// Runs a parsed command line; the exit code on success.
pub async fn execute(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Check(a) => cmd_check(&cli.config, a),
        Command::Plan(a) => cmd_plan(&cli.config, a, &SystemClock),
        Command::Run(a) => cmd_run(a).await,
        Command::Verify(a) => cmd_verify(a).await,
        Command::Probe(a) => cmd_probe(&cli.config, a).await,
    }
}

fn describe(inputs: &[PathBuf], at: Location) -> String {
    let name = inputs
        .get(at.file)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    format!("{name}:{}", at.line)
}

fn finding_text(inputs: &[PathBuf], f: &Finding) -> String {
    match f {
        Finding::Invalid { at, field, message } => {
            let field = field
                .as_deref()
                .map(|f| format!("{f}: "))
                .unwrap_or_default();
            format!("{}: {field}{message}", describe(inputs, *at))
        }
        Finding::Duplicate(d) => format!(
            "{}: duplicate key, first at {}",
            describe(inputs, d.again),
            describe(inputs, d.first)
        ),
    }
}

fn finding_json(inputs: &[PathBuf], f: &Finding) -> serde_json::Value {
    let loc = |at: Location| serde_json::json!({"file": inputs.get(at.file), "line": at.line});
    match f {
        Finding::Invalid { at, field, message } => {
            serde_json::json!({"type": "invalid", "at": loc(*at), "field": field, "message": message})
        }
        Finding::Duplicate(d) => {
            serde_json::json!({"type": "duplicate", "at": loc(d.again), "first": loc(d.first)})
        }
    }
}

fn check_rules(
    config_path: &Path,
    env: Option<&str>,
) -> Result<ei_server::rules::RulesConfig, CliError> {
    Ok(match env {
        Some(name) => config::load(config_path, name).map_err(refused)?.rules(),
        None => rules_for(NATIONAL_INDEX_HSA_ID, &[NATIONAL_INDEX_HSA_ID.to_owned()]),
    })
}

/// The national index's HSA-id (contract §2).
pub const NATIONAL_INDEX_HSA_ID: &str = "5565594230";

fn cmd_check(config_path: &Path, a: CheckArgs) -> Result<u8, CliError> {
    let rules = check_rules(config_path, a.env.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let inputs = a.inputs.clone();
    let mut write_error = None;
    let checked = check(&a.inputs, &rules, crate::dedup::DEFAULT_RUN_LEN, |f| {
        let line = if a.json {
            finding_json(&inputs, f).to_string()
        } else {
            finding_text(&inputs, f)
        };
        match writeln!(out, "{line}") {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_error = Some(e);
                ControlFlow::Break(())
            }
        }
    });
    if let Some(e) = write_error {
        return Err(output_error(e));
    }
    let report = checked.map_err(failed)?;
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"type": "summary", "report": report})
        )
        .map_err(output_error)?;
    } else {
        write_check_summary(&mut out, &report).map_err(output_error)?;
    }
    out.flush().map_err(output_error)?;
    Ok(if report.is_clean() { 0 } else { 1 })
}

fn write_check_summary(out: &mut impl Write, r: &CheckReport) -> std::io::Result<()> {
    writeln!(out, "posts per source system and data controller:")?;
    for ((source, controller), n) in &r.per_source {
        writeln!(out, "  {source:<30} {controller:<30} {n:>12}")?;
    }
    writeln!(
        out,
        "{} records: {} valid ({} deletes), {} invalid, {} duplicate keys",
        r.records, r.valid, r.deletes, r.invalid, r.duplicates
    )
}

/// `plan`: options from arguments, the facts from a check and the checksums, the file.
pub fn cmd_plan(config_path: &Path, a: PlanArgs, clock: &dyn Clock) -> Result<u8, CliError> {
    let profile = config::load(config_path, &a.env).map_err(refused)?;
    let opts = plan_options(&a, profile, clock)?;
    plan::validate_options(&opts).map_err(refused)?;
    let mut shown = 0;
    let report = check(
        &a.inputs,
        &opts.profile.rules(),
        crate::dedup::DEFAULT_RUN_LEN,
        |f| {
            shown += 1;
            if shown <= 20 {
                eprintln!("{}", finding_text(&a.inputs, f));
            }
            ControlFlow::Continue(())
        },
    )
    .map_err(failed)?;
    if !report.is_clean() && !a.accept_invalid {
        eprintln!(
            "ei-loader: the input has {} invalid records and {} duplicate keys (`ei-loader check` lists them all); fix it, or plan with --accept-invalid to reject them unsent",
            report.invalid, report.duplicates
        );
        return Ok(1);
    }
    let facts = LoadFacts {
        source_system_hsa_id: source_system(&a, &report)?,
        posts: report.valid,
        invalid_records: report.records - report.valid,
        inputs: a
            .inputs
            .iter()
            .map(|p| fingerprint(p))
            .collect::<Result<_, _>>()
            .map_err(failed)?,
    };
    let plan = plan::build(&opts, facts).map_err(refused)?;
    plan.save(&a.out).map_err(failed)?;
    eprintln!("plan written to {}", a.out.display());
    print(&plan::order_form(&plan))?;
    Ok(0)
}

fn plan_options(
    a: &PlanArgs,
    profile: Profile,
    clock: &dyn Clock,
) -> Result<PlanOptions, CliError> {
    let start = parse_local(&a.start).ok_or_else(|| {
        refused(format!(
            "bad --start {:?}: write YYYY-MM-DD or YYYY-MM-DDTHH:MM",
            a.start
        ))
    })?;
    let order_date = match &a.order_date {
        Some(d) => parse_date(d)
            .ok_or_else(|| refused(format!("bad --order-date {d:?}: write YYYY-MM-DD")))?,
        None => to_local(clock.now()).date(),
    };
    Ok(PlanOptions {
        profile,
        source_system_name: a.name.clone(),
        start,
        order_date,
        throttle: Throttle {
            concurrency: a.concurrency,
            batch_size: a.batch_size,
            pause_ms: a.pause_ms,
        },
        windows: a.windows.clone(),
        retry: Retry {
            initial_backoff_ms: a.retry_initial_ms,
            max_backoff_ms: a.retry_max_ms,
            max_attempts: a.max_attempts,
            timeout_ms: a.timeout_ms,
        },
        assumed_call_ms: a.assumed_call_ms,
    })
}

fn source_system(a: &PlanArgs, report: &CheckReport) -> Result<String, CliError> {
    if let Some(s) = &a.source_system {
        return Ok(s.clone());
    }
    let mut systems: Vec<&String> = report.per_source.keys().map(|(s, _)| s).collect();
    systems.dedup();
    match systems.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(refused("the input holds no valid posts")),
        many => Err(refused(format!(
            "the input holds {} source systems ({}); name the one placing the order with --source-system",
            many.len(),
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

async fn cmd_run(a: RunArgs) -> Result<u8, CliError> {
    let plan = plan::load(&a.plan).map_err(refused)?;
    let opts = RunOptions {
        now: a.now,
        progress: !a.no_progress,
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let summary = run::run(&a.plan, &plan, Arc::new(SystemClock), opts, shutdown)
        .await
        .map_err(|e| match e {
            run::RunError::InputChanged { .. } | run::RunError::Plan(_) => refused(e),
            run::RunError::Journal(crate::journal::JournalError::InputsChanged { .. }) => {
                refused(e)
            }
            other => failed(other),
        })?;
    print(&summary_text(&summary, a.json))?;
    Ok(match (summary.outcome, summary.rejected) {
        (Outcome::Interrupted, _) => 130,
        (Outcome::Completed, 0) => 0,
        (Outcome::Completed, _) => 1,
    })
}

fn summary_text(s: &Summary, json: bool) -> String {
    if json {
        return serde_json::to_string(s).expect("summary serialises") + "\n";
    }
    let verb = match s.outcome {
        Outcome::Completed => "completed",
        Outcome::Interrupted => "interrupted (run again to resume)",
    };
    format!(
        "{verb}: {} of {} records loaded ({} in this run), {} rejected ({}), {} calls, {} retries, {} window pauses, {:.1} s, {:.0} posts/s",
        s.loaded,
        s.records,
        s.loaded_this_run,
        s.rejected,
        s.reject_file.display(),
        s.calls,
        s.retries,
        s.window_pauses,
        s.seconds,
        s.posts_per_second
    )
}

async fn cmd_verify(a: VerifyArgs) -> Result<u8, CliError> {
    let plan = plan::load(&a.plan).map_err(refused)?;
    let seed = a.seed.unwrap_or_else(|| fastrand::u64(..));
    eprintln!("sampling {} posts with --seed {seed}", a.sample);
    let rejected = verify::rejected(&a.plan).map_err(failed)?;
    let picked = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || verify::sample(&plan, a.sample, seed, &rejected))
            .await
            .expect("sample task")
            .map_err(failed)?
    };
    let t = &plan.target;
    let client = EiClient::new(
        &t.update_url,
        &t.find_content_url,
        &t.logical_address,
        Duration::from_millis(plan.retry.timeout_ms),
        &t.tls,
    )
    .map_err(failed)?;
    let report = verify::verify(&plan, &client, &picked)
        .await
        .map_err(failed)?;
    let mut text = String::new();
    if a.json {
        text = serde_json::to_string(&report).expect("report serialises") + "\n";
    } else {
        for m in &report.mismatches {
            let (file, line) = (m.file.display(), m.line);
            text += &format!("{file}:{line}: {}: {}\n", m.resident, m.problem);
        }
        text += &format!(
            "{} sampled: {} as loaded, {} missing or different\n",
            report.sampled,
            report.matched,
            report.mismatches.len()
        );
    }
    print(&text)?;
    Ok(if report.mismatches.is_empty() { 0 } else { 1 })
}

async fn cmd_probe(config_path: &Path, a: ProbeArgs) -> Result<u8, CliError> {
    let tls = match &a.env {
        Some(name) => config::load(config_path, name).map_err(refused)?.tls,
        None => crate::client::TlsFiles::default(),
    };
    let url = if a.url.trim_end_matches('/').matches('/').count() <= 2 {
        config::endpoint(&a.url, ei_server::operation::Operation::FindContent)
    } else {
        a.url.clone()
    };
    let client = EiClient::new(
        &url,
        &url,
        NATIONAL_INDEX_HSA_ID,
        Duration::from_millis(a.timeout_ms),
        &tls,
    )
    .map_err(failed)?;
    let report = probe::probe(&client, &a.domain, &a.known, &a.unknown).await;
    let mut text = String::new();
    if a.json {
        text = serde_json::to_string(&report).expect("report serialises") + "\n";
    } else {
        for l in [&report.known, &report.unknown] {
            let found = l.found.map_or_else(
                || l.error.clone().unwrap_or_default(),
                |n| format!("{n} posts"),
            );
            let verdict = if l.ok { "ok" } else { "WRONG" };
            text += &format!(
                "{verdict}: {} (expected {}): {found} in {:.1} ms\n",
                l.resident, l.expected, l.millis
            );
        }
    }
    print(&text)?;
    Ok(if report.ok() { 0 } else { 1 })
}
