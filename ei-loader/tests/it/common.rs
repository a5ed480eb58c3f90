//! Shared test helpers: the real index in-process on loopback (the server's harness), input files, an
//! environment file and plans made through the CLI's own `plan` command.
#![allow(dead_code)]

use ei_loader::cli::{execute, Cli};
use ei_loader::plan::Plan;
use ei_server::config::Config;
pub use ei_server::harness::Harness;
use ei_server::harness::{DataDir, Options};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const INDEX_HSA_ID: &str = "5565594230";
pub const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";
pub const HEADER: &str = "registeredResidentIdentification,serviceDomain,categorization,logicalAddress,businessObjectInstanceIdentifier,clinicalProcessInterestId,mostRecentContent,sourceSystem,dataController,deleteFlag";

/// The index in-process on `data_dir` ([`ei_server::harness`]), on a free loopback port.
pub async fn start_index(data_dir: &Path, adjust: impl FnOnce(&mut Config)) -> Harness {
    start_index_at(data_dir, "127.0.0.1:0".parse().unwrap(), adjust).await
}

/// The index on a given address (to bring a stopped index back on its port).
pub async fn start_index_at(
    data_dir: &Path,
    addr: SocketAddr,
    adjust: impl FnOnce(&mut Config),
) -> Harness {
    let mut config = Config {
        data_dir: data_dir.to_owned(),
        hsa_id: INDEX_HSA_ID.into(),
        ..Config::default()
    };
    adjust(&mut config);
    let options = Options {
        data_dir: DataDir::Config,
        listen: addr,
        ..Options::default()
    };
    Harness::start(config, options).await.unwrap()
}

/// The exact number of posts in the index (`/status`).
pub async fn count(base: &str) -> u64 {
    let status: serde_json::Value = reqwest::get(format!("{base}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["engagements"].as_u64().unwrap()
}

/// Post number `i` as a CSV row (resident unique per i).
pub fn row(i: u64) -> String {
    row_with(i, "SE2321000016-15CQ", "20240101120000")
}

pub fn row_with(i: u64, logical_address: &str, mrc: &str) -> String {
    format!("19{i:010},{DOMAIN},NA,{logical_address},NA,NA,{mrc},SE2321000016-15CQ,SE2321000016-A12B,false")
}

pub fn resident(i: u64) -> String {
    format!("19{i:010}")
}

pub fn write_csv(dir: &Path, name: &str, rows: impl IntoIterator<Item = String>) -> PathBuf {
    let mut text = format!("{HEADER}\n");
    for r in rows {
        text.push_str(&r);
        text.push('\n');
    }
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// An environment file with `[env.test]` (no lead time) and `[env.prod]` for `base`.
pub fn env_file(dir: &Path, base: &str) -> PathBuf {
    let p = dir.join("ei-loader.toml");
    std::fs::write(
        &p,
        format!(
            "[env.test]\nurl = \"{base}\"\nlogical_address = \"{INDEX_HSA_ID}\"\n\n[env.prod]\nurl = \"{base}\"\nlogical_address = \"{INDEX_HSA_ID}\"\nproduction = true\n"
        ),
    )
    .unwrap();
    p
}

/// Runs `ei-loader ARGS` in-process; its exit code (errors mapped as the binary does).
pub async fn cli(args: &[&str]) -> u8 {
    let cli = <Cli as clap::Parser>::try_parse_from(
        std::iter::once("ei-loader").chain(args.iter().copied()),
    )
    .unwrap();
    match execute(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ei-loader: {e}");
            e.exit_code()
        }
    }
}

/// `plan` for the test environment starting today; extra flags appended.
pub async fn plan(dir: &Path, base: &str, inputs: &[&Path], extra: &[&str]) -> (PathBuf, Plan) {
    let env = env_file(dir, base);
    let out = dir.join("grundladdning.toml");
    let mut args: Vec<String> = vec!["--config".into(), env.display().to_string(), "plan".into()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    for a in [
        "--env",
        "test",
        "--start",
        "2000-01-01",
        "--name",
        "Testjournal",
        "-o",
    ] {
        args.push(a.into());
    }
    args.push(out.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(cli(&refs).await, 0, "plan {args:?}");
    let plan = ei_loader::plan::load(&out).unwrap();
    (out, plan)
}

/// Every event in a plan's journal.
pub fn journal(plan_path: &Path) -> Vec<ei_loader::journal::Event> {
    ei_loader::journal::read_events(&ei_loader::journal::path_for(plan_path))
        .unwrap()
        .0
}

/// Runs a plan to its end on `clock`, without progress bars; `now` starts at once
/// instead of at the planned start.
pub async fn run_on(
    plan_path: &Path,
    plan: &Plan,
    clock: std::sync::Arc<dyn ei_loader::clock::Clock>,
    now: bool,
) -> Result<ei_loader::run::Summary, ei_loader::run::RunError> {
    let options = ei_loader::run::RunOptions {
        now,
        progress: false,
    };
    ei_loader::run::run(plan_path, plan, clock, options, std::future::pending()).await
}

/// Runs a plan to its end on the system clock, now, without progress bars.
pub async fn run_now(plan_path: &Path, plan: &Plan) -> ei_loader::run::Summary {
    run_on(
        plan_path,
        plan,
        std::sync::Arc::new(ei_loader::clock::SystemClock),
        true,
    )
    .await
    .unwrap()
}

/// When each call of a run was sent, from its journal.
pub fn send_times(plan_path: &Path) -> Vec<String> {
    journal(plan_path)
        .into_iter()
        .filter_map(|e| match e {
            ei_loader::journal::Event::Send { at, .. } => Some(at),
            _ => None,
        })
        .collect()
}
