//! `capacity FILE (--url URL | --embedded) [options]`: parses the arguments, runs the
//! plan, writes the report, and maps the outcome to an exit code (see `--help`).

use anyhow::Context;
use capacity::cli::{Args, EXIT_FAILS, EXIT_HOLDS, EXIT_RUN, EXIT_USAGE};
use capacity::progress::Progress;
use capacity::report::{markdown, svg, Report, Verdict};
use clap::Parser;
use std::path::Path;

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
    if let Some(dir) = &args.out {
        write_files(dir, &report)
            .with_context(|| format!("cannot write the report into {}", dir.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let chart = args.out.as_ref().map(|_| "report.svg");
        print!("{}", markdown::render(&report, chart));
    }
    eprintln!("{}", summary(&report));
    Ok(report.verdict)
}

fn write_files(dir: &Path, report: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.md"),
        markdown::render(report, Some("report.svg")),
    )?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(dir.join("report.svg"), svg::render(report))?;
    Ok(())
}

/// The one line that always ends a run on stderr.
fn summary(r: &Report) -> String {
    let verdict = match r.verdict {
        Verdict::Holds => "holds",
        Verdict::Fails => "fails",
    };
    let headroom = r
        .headroom
        .factor
        .map_or("none".to_owned(), |f| format!("×{}", markdown::num(f)));
    let grund: Vec<String> = r
        .grundladdning
        .iter()
        .map(|g| format!("grundladdning {}: {}", g.row.source_system, g.projected))
        .collect();
    let mut line = format!("capacity: {verdict}; headroom {headroom} of max flow");
    for g in grund {
        line.push_str("; ");
        line.push_str(&g);
    }
    line
}
