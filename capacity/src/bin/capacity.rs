//! `capacity FILE (--url URL | --embedded) [options]`: parses the arguments, runs the
//! plan, publishes the report, and maps the outcome to an exit code (see `--help`).

use anyhow::Context;
use capacity::cli::{Args, EXIT_FAILS, EXIT_HOLDS, EXIT_RUN, EXIT_USAGE};
use capacity::progress::Progress;
use capacity::report::publish::{publish, summary, PublishError};
use capacity::report::Verdict;
use clap::Parser;

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("capacity: {e}");
            std::process::exit(EXIT_USAGE);
        }
    };
    let code = match run(&args, &settings) {
        Ok(Verdict::Holds) => EXIT_HOLDS,
        Ok(Verdict::Fails) => EXIT_FAILS,
        // Stdout's reader quit: ends quietly with success.
        Err(e) if matches!(e.downcast_ref(), Some(PublishError::StdoutClosed)) => 0,
        Err(e) => {
            eprintln!("capacity: {e:#}");
            EXIT_RUN
        }
    };
    std::process::exit(code);
}

fn run(args: &Args, settings: &capacity::run::Settings) -> anyhow::Result<Verdict> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    let report = runtime.block_on(capacity::run::run(settings, &Progress::stderr()))?;
    publish(&report, args.out.as_deref(), args.json)?;
    eprintln!("{}", summary(&report));
    Ok(report.verdict)
}
