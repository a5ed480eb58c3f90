//! The built `capacity` binary as a process: exit codes, stdout/stderr, report files.

use crate::common;
use std::process::{Command, Output};

fn capacity(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capacity"))
        .args(args)
        .output()
        .unwrap()
}

fn plan_file(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("plan.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

const SHORT: &[&str] = &[
    "--embedded",
    "--index-hsa-id",
    "5565594230",
    "--phase-secs",
    "1",
    "--grundladdning-secs",
    "1",
    "--settle-secs",
    "0",
    "--max-factor",
    "2",
];

#[test]
fn a_bad_file_exits_2_naming_row_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = common::PLAN.replace("max_per_hour = 72000", "max_per_hour = 10");
    let file = plan_file(dir.path(), &bad);
    let out = capacity(&[&file, "--embedded"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim_end(),
        format!("capacity: {file}: flow row 1 (Journal A), field `max_per_hour`: must be at least normal_per_hour (36000), got 10")
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = plan_file(dir.path(), common::PLAN);
    let out = capacity(&[&file]);
    assert_eq!(out.status.code(), Some(2), "neither --url nor --embedded");
    let out = capacity(&[&file, "--embedded", "--index-hsa-id", "SE-EI2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("is also the hsa_id of Other index"), "{err}");
}

#[test]
fn an_unreachable_target_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let file = plan_file(dir.path(), common::PLAN);
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = capacity(&[&file, "--url", &format!("http://127.0.0.1:{port}")]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("does not answer"), "{err}");
}

#[test]
fn a_short_embedded_run_writes_the_report_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let file = plan_file(dir.path(), common::PLAN);
    let out_dir = dir.path().join("report");
    let mut args = vec![file.as_str(), "--out", out_dir.to_str().unwrap()];
    args.extend_from_slice(SHORT);
    let out = capacity(&args);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{err}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("# Capacity report"), "{stdout}");
    // stderr is not a terminal here: no progress, just the summary line.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("capacity: holds; headroom ×2 of max flow; grundladdning Journal A: "),
        "{err}"
    );
    let md = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert_eq!(md, stdout);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["verdict"], "holds");
    assert_eq!(json["phases"].as_array().unwrap().len(), 4);
    let svg = std::fs::read_to_string(out_dir.join("report.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
}

#[test]
fn an_impossible_objective_exits_1_with_json_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let file = plan_file(dir.path(), common::PLAN);
    let mut args = vec![file.as_str(), "--json", "--p99-ms", "0.001"];
    args.extend_from_slice(SHORT);
    let out = capacity(&args);
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("capacity: fails; headroom none"), "{err}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["verdict"], "fails");
    assert_eq!(json["settings"]["p99_bound_ms"], 0.001);
}

#[test]
fn a_closed_stdout_pipe_ends_quietly_with_success() {
    let dir = tempfile::tempdir().unwrap();
    let file = plan_file(dir.path(), common::PLAN);
    let out_dir = dir.path().join("report");
    // The objective fails (exit 1 on an open stdout); the files are still written.
    let mut args = vec![
        file.as_str(),
        "--p99-ms",
        "0.001",
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(SHORT);
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_capacity"))
        .args(&args)
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "nothing on stderr, got {err}");
    assert!(out_dir.join("report.md").exists());
}
