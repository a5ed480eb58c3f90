//! `ei-load`: end-to-end load on loopback against an in-process ei-server (or
//! `--url`). Prints a Markdown table to stdout (`--json` for JSON); progress and
//! errors go to stderr.
//!
//! Exit codes: 0 run finished without request errors (or stdout's reader quit
//! early, which ends it quietly), 1 the run failed, 2 bad arguments, 3 the run
//! finished but some requests failed.

use clap::Parser;
use ei_benches::load::{self, Plan, Target, UpdateKind, Verify};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    about = "HTTP load generator for ei-server (SOAP on loopback)",
    after_help = "Exit codes: 0 ok (also when stdout's reader quit early, e.g. `| head`), 1 run failed, 2 bad arguments, 3 some requests failed."
)]
struct Args {
    /// A running server (HSA-id 5565594230) instead of one started in-process.
    #[arg(long)]
    url: Option<String>,
    /// With --url: the server's pid, whose CPU per phase and peak RSS are reported.
    #[arg(long, requires = "url")]
    server_pid: Option<u32>,
    /// Data directory of the in-process server (default: a temp dir, removed after).
    #[arg(long, conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// WAL fsync before answering (in-process server).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    wal_sync: bool,
    /// Most write requests per group commit (in-process server).
    #[arg(long, default_value_t = 64)]
    max_group_requests: usize,
    /// RocksDB block cache in MiB (in-process server).
    #[arg(long, default_value_t = 128)]
    block_cache_mb: usize,
    /// Posts to load first (whole 1000-post Updates of new residents).
    #[arg(long, default_value_t = 100_000)]
    preload: u64,
    /// Posts of ei-load's data the server already holds (an earlier run's
    /// --preload against the same --url): used by the phases, not sent again.
    #[arg(long, default_value_t = 0)]
    preloaded: u64,
    /// Clients for the pre-load.
    #[arg(long, default_value_t = 4)]
    preload_clients: usize,
    /// Client counts for 1000-post Updates, comma-separated (empty: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    update_clients: Vec<usize>,
    /// What 1000-post Updates send.
    #[arg(long, value_enum, default_value_t = UpdateKind::Changed)]
    update_kind: UpdateKind,
    /// Client counts for 1-post Updates (empty: skip).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    single_clients: Vec<usize>,
    /// Client counts for FindContent alone (empty: skip).
    #[arg(long, value_delimiter = ',', default_value = "16")]
    find_clients: Vec<usize>,
    /// Rows per FindContent: 50 (resident + domain) or 10 (+ categorization).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(10..=50))]
    find_rows: u64,
    /// FindContent clients while Updates run (0: skip).
    #[arg(long, default_value_t = 16)]
    mixed_find_clients: usize,
    /// 1000-post Update clients during the mixed phases, comma-separated: one mixed
    /// phase per count (0: FindContent alone again).
    #[arg(long, value_delimiter = ',', default_value = "4")]
    mixed_update_clients: Vec<usize>,
    /// Posts per second the mixed phases' Update clients send together, on a fixed
    /// schedule (default: as fast as they can).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    update_rate: Option<u64>,
    /// How FindContent replies are checked: `full` reads every row as the index's
    /// clients do, `count` checks HTTP 200 and counts the rows (a lean client).
    #[arg(long, value_enum, default_value_t = Verify::Full)]
    verify: Verify,
    /// Seconds per timed phase.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Flush and compact the data dir at the end and report that size (in-process).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    compact: bool,
    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: load::ClientTls,
}

impl Args {
    fn plan(self) -> Result<Plan, String> {
        if self.find_rows != 10 && self.find_rows != 50 {
            return Err(format!(
                "--find-rows must be 10 or 50, not {}",
                self.find_rows
            ));
        }
        let target = match self.url {
            Some(base) => Target::Url {
                base,
                pid: self.server_pid,
            },
            None => Target::InProcess {
                data_dir: self.data_dir,
                wal_sync: self.wal_sync,
                max_group_requests: self.max_group_requests,
                block_cache_mb: self.block_cache_mb,
            },
        };
        let nonzero = |v: Vec<usize>| v.into_iter().filter(|&c| c > 0).collect();
        Ok(Plan {
            target,
            preload_posts: self.preload,
            preloaded_posts: self.preloaded,
            preload_clients: self.preload_clients.max(1),
            update_clients: nonzero(self.update_clients),
            update_kind: self.update_kind,
            single_clients: nonzero(self.single_clients),
            find_clients: nonzero(self.find_clients),
            find_rows: self.find_rows,
            mixed: match self.mixed_find_clients {
                0 => Vec::new(),
                f => self.mixed_update_clients.iter().map(|&u| (f, u)).collect(),
            },
            update_rate: self.update_rate,
            verify: self.verify,
            phase: Duration::from_secs_f64(self.secs.max(0.1)),
            compact: self.compact,
            tls: self.tls,
        })
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let json = args.json;
    let plan = match args.plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ei-load: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ei-load: cannot start the runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(load::run(plan)) {
        Ok(report) => {
            let failed = report.rows.iter().any(|r| r.measured.errors > 0);
            match report.print(json) {
                Ok(()) => std::process::ExitCode::from(if failed { 3 } else { 0 }),
                // Stdout's reader quit (`ei-load … | head`): ends quietly with success.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    std::process::ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ei-load: cannot write the report to stdout: {e}");
                    std::process::ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("ei-load: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
