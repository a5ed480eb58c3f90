//! `ei-server`: parses the command line; without a subcommand it loads the
//! configuration, sets up logging, binds, and runs the server until SIGTERM or
//! Ctrl-C; a subcommand (export, import, restore) runs through `ei_server::cli`.

use anyhow::Context;
use clap::Parser;
use ei_server::cli::Cli;
use ei_server::config::{Config, LogFormat};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(command) = cli.command {
        // The subcommands report on stderr themselves: only warnings are logged.
        init_logging(LogFormat::Text, "warn");
        return match ei_server::cli::run(command) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("ei-server: {e}");
                ExitCode::from(1)
            }
        };
    }
    let config = match Config::load(&cli.serve) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ei-server: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(config.log_format, "info");
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ei-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only on a terminal (and not when NO_COLOR is set).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    ei_server::server::run(listener, config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
