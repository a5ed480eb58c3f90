//! `ei-gen`: writes N posts as the Java index's MySQL export (`SELECT * FROM
//! engagement_index_table INTO OUTFILE`: TAB-separated, `\N` for NULL, a correct
//! `id` on every row) or as JSON lines, for the import and restore benchmarks. The
//! posts vary like a region's index: about 8 posts per resident, 25 service
//! domains, hundreds of logical addresses, UUID business object ids, datetimes
//! spread over ten years. Deterministic for a given --seed.

use clap::Parser;
use ei_benches::gen::{Generator, OutputFormat};
use std::io::Write;

#[derive(Parser, Debug)]
#[command(about = "Generates posts as the Java index's MySQL export (or JSON lines) on stdout")]
struct Args {
    /// How many posts (all with distinct keys).
    #[arg(long, default_value_t = 10_000_000)]
    posts: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "mysql-tsv")]
    format: OutputFormat,
    /// Seed of the pseudo-random choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout);
    let mut g = Generator::new(args.seed, args.posts);
    let mut line = String::with_capacity(512);
    for i in 0..args.posts {
        line.clear();
        g.post(i, args.format, &mut line);
        if let Err(e) = out.write_all(line.as_bytes()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return std::process::ExitCode::SUCCESS;
            }
            eprintln!("ei-gen: {e}");
            return std::process::ExitCode::from(1);
        }
    }
    match out.flush() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ei-gen: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
