//! `ei-fill`: fills an empty data directory with N posts of a region's variety,
//! fast (SST files ingested whole; see `ei_benches::fill`), for measurements at
//! 10–100 M posts. Prints what it did as JSON on stdout.
//!
//! Exit codes: 0 filled, 1 failed (e.g. the directory holds posts), 2 bad arguments.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    about = "Fills an empty ei-server data directory with N varied posts (SST files ingested whole)",
    after_help = "Exit codes: 0 filled, 1 failed (e.g. the directory holds posts), 2 bad arguments."
)]
struct Args {
    /// The data directory (created; must hold no posts).
    #[arg(long)]
    data_dir: PathBuf,
    /// About this many posts (whole residents of 6.25 posts each on average).
    #[arg(long, default_value_t = 10_000_000)]
    posts: u64,
    /// Seed of the pseudo-random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Threads writing files (each a range of residents) [default: the cores].
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    match ei_benches::fill::fill(&args.data_dir, args.posts, args.seed, threads) {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string(&report).expect("a plain struct")
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ei-fill: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
