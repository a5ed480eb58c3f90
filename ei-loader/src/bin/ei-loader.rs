//! The `ei-loader` binary: parses the command line, runs the command, maps the result
//! to the exit code (see `ei-loader --help`).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = ei_loader::cli::Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "ei-loader: {:#}",
                anyhow::Error::from(e).context("cannot start the async runtime")
            );
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(ei_loader::cli::execute(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e.exit_code();
            if !e.is_quiet() {
                eprintln!("ei-loader: {:#}", anyhow::Error::from(e));
            }
            ExitCode::from(code)
        }
    }
}
