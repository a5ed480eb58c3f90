//! The command line as a user meets it: `check` across files (the binary, exit codes,
//! line numbers), `plan` (the file, the 14-day rule per environment), and `run`
//! refusing inputs that changed since the plan.

use crate::common::*;
use std::process::Command;

fn ei_loader(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ei-loader"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_reports_bad_records_and_duplicates_across_files_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_csv(
        dir.path(),
        "a.csv",
        [row(1), row(2), row_with(3, "SE2321000016-15CQ", "2024")],
    );
    let b = write_csv(dir.path(), "b.csv", [row(4), row(2)]);
    let jsonl = dir.path().join("c.jsonl");
    std::fs::write(&jsonl, format!("{{\"registeredResidentIdentification\":\"{}\",\"serviceDomain\":\"{DOMAIN}\",\"categorization\":\"NA\",\"logicalAddress\":\"SE2321000016-15CQ\",\"businessObjectInstanceIdentifier\":\"NA\",\"clinicalProcessInterestId\":\"NA\",\"mostRecentContent\":\"20240101120000\",\"sourceSystem\":\"SE2321000016-15CQ\",\"dataController\":\"SE2321000016-A12B\"}}\n", resident(1))).unwrap();
    let (code, out, _) = ei_loader(&[
        "check",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        jsonl.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    let (a, b, c) = (a.display(), b.display(), jsonl.display());
    assert!(out.contains(&format!("{a}:4: mostRecentContent: EI004: The payload does not validate, error messge: Field \"mostRecentContent\": 2024 is not 14 digits (yyyyMMddHHmmss)")), "{out}");
    assert!(
        out.contains(&format!("{b}:3: duplicate key, first at {a}:3")),
        "{out}"
    );
    assert!(
        out.contains(&format!("{c}:1: duplicate key, first at {a}:2")),
        "{out}"
    );
    assert!(out.contains("SE2321000016-15CQ"), "{out}");
    assert!(
        out.ends_with("6 records: 5 valid (0 deletes), 1 invalid, 2 duplicate keys\n"),
        "{out}"
    );

    let clean = write_csv(dir.path(), "clean.csv", (0..10).map(row));
    let (code, out, _) = ei_loader(&["check", clean.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(summary["report"]["valid"], 10);
    assert_eq!(summary["report"]["per_source"][0]["posts"], 10);
}

#[test]
fn plan_refuses_a_production_start_within_fourteen_days_but_not_in_test() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_file(dir.path(), "http://127.0.0.1:9");
    let input = write_csv(dir.path(), "load.csv", (0..2500).map(row));
    let out = dir.path().join("p.toml");
    let args = |env_name: &'static str, start: &'static str| {
        vec![
            "--config".to_string(),
            env.display().to_string(),
            "plan".into(),
            input.display().to_string(),
            "--env".into(),
            env_name.into(),
            "--start".into(),
            start.into(),
            "--order-date".into(),
            "2026-12-01".into(),
            "--name".into(),
            "Journal X".into(),
            "--window".into(),
            "22:00-06:00".into(),
            "-o".into(),
            out.display().to_string(),
        ]
    };
    let run = |a: Vec<String>| ei_loader(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (code, _, err) = run(args("prod", "2026-12-14T22:00"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("at least 14 days after the order date"),
        "{err}"
    );
    assert!(!out.exists());
    let (code, form, err) = run(args("prod", "2026-12-15T22:00"));
    assert_eq!(code, 0, "{err}");
    assert!(
        form.contains("Antal indexposter (index posts)") && form.contains("2500"),
        "{form}"
    );
    assert!(
        form.contains("SE2321000016-15CQ")
            && form.contains("urn:riv:itintegration:engagementindex:Update:1"),
        "{form}"
    );
    let plan = ei_loader::plan::load(&out).unwrap();
    assert_eq!(
        (
            plan.order.posts,
            plan.throttle.batch_size,
            plan.throttle.concurrency,
            plan.throttle.pause_ms
        ),
        (2500, 1000, 1, 5000)
    );
    assert_eq!(plan.order.source_system_hsa_id, "SE2321000016-15CQ");
    assert_eq!(plan.schedule.planned_start, "2026-12-15T22:00");
    assert_eq!(plan.estimate.calls, 3);
    assert_eq!(
        plan.inputs[0].bytes,
        std::fs::metadata(&input).unwrap().len()
    );
    assert_eq!(plan.inputs[0].sha256.len(), 64);
    let (code, _, err) = run(args("test", "2026-12-01T00:00"));
    assert_eq!(code, 0, "test environments have no lead time: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_inputs_that_changed_since_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let input = write_csv(dir.path(), "load.csv", (0..5).map(row));
    let (plan_path, _) = plan(dir.path(), &server.base, &[&input], &["--pause-ms", "0"]).await;
    write_csv(dir.path(), "load.csv", (0..6).map(row));
    let plan_arg = plan_path.to_str().unwrap().to_owned();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || ei_loader(&["run", &plan_arg, "--now"]))
            .await
            .unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("changed since the plan was made"), "{err}");
    assert_eq!(count(&server.base).await, 0);
    server.stop().await.unwrap();
}

#[test]
fn shipped_examples_pass_check() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    for file in ["engagements.csv", "engagements.jsonl"] {
        let path = format!("{examples}/{file}");
        let (code, out, err) = ei_loader(&[
            "--config",
            &format!("{examples}/ei-loader.toml"),
            "check",
            &path,
            "--env",
            "prod",
        ]);
        assert_eq!(code, 0, "{file}: {out}{err}");
        assert!(out.contains("0 invalid, 0 duplicate keys"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_retrying_cannot_fix_stops_the_run_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    // An index with another HSA-id: every Update is refused with EI003 (invalid routing).
    let server = start_index(&dir.path().join("data"), |c| {
        c.hsa_id = "another-index".into()
    })
    .await;
    let input = write_csv(dir.path(), "load.csv", (0..5).map(row));
    let (plan_path, _) = plan(dir.path(), &server.base, &[&input], &["--pause-ms", "0"]).await;
    let plan_arg = plan_path.to_str().unwrap().to_owned();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || ei_loader(&["run", &plan_arg, "--now"]))
            .await
            .unwrap();
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains(
            "EI003: Invalid routing. Logical address is 5565594230 but the owner is another-index"
        ),
        "{err}"
    );
    assert_eq!(count(&server.base).await, 0);
    server.stop().await.unwrap();
}

/// Runs the binary with stdout a pipe whose reader is already gone, as in
/// `ei-loader check … | head` after head quit.
fn ei_loader_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_ei-loader"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_pipe_ends_quietly_with_success() {
    let dir = tempfile::tempdir().unwrap();
    // Findings would make the exit code 1 and fill stdout.
    let bad = write_csv(
        dir.path(),
        "bad.csv",
        (0..50).map(|i| row_with(i, "SE2321000016-15CQ", "2024")),
    );
    for extra in [None, Some("--json")] {
        let mut args = vec!["check", bad.to_str().unwrap()];
        args.extend(extra);
        let out = ei_loader_into_closed_pipe(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: nothing on stderr, got {err}");
    }
}
