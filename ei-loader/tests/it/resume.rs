//! Resume after a crash: the built binary is killed (SIGKILL) mid-run, started again,
//! and the index ends up with every post while the second run re-sends nothing the
//! first had seen acknowledged (only what was in flight at the kill).

use crate::common::*;
use ei_loader::journal::{Event, Ranges};
use std::process::{Command, Stdio};
use std::time::Duration;

fn loader(plan: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ei-loader"));
    c.args([
        "run",
        plan.to_str().unwrap(),
        "--now",
        "--no-progress",
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

fn acks(events: &[Event]) -> Ranges {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Ack { ranges, .. } => Some(ranges.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn overlaps(a: &Ranges, b: &Ranges) -> bool {
    a.iter()
        .any(|(f1, t1)| b.iter().any(|(f2, t2)| f1 < t2 && f2 < t1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_resumes_without_resending_acknowledged_posts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let input = write_csv(dir.path(), "load.csv", (0..400).map(row));
    let (plan_path, _) = plan(
        dir.path(),
        &server.base,
        &[&input],
        &[
            "--concurrency",
            "2",
            "--batch-size",
            "10",
            "--pause-ms",
            "50",
        ],
    )
    .await;

    let mut child = loader(&plan_path).spawn().unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if acks(&journal(&plan_path)).len() >= 4 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the first run ended before it was killed"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first = journal(&plan_path);
    let first_acks = acks(&first);
    let acked_first: u64 = first_acks.iter().map(|(a, b)| b - a).sum();
    assert!(acked_first < 400, "killed mid-run");
    assert!(
        count(&server.base).await >= acked_first,
        "every acknowledged post is in the index"
    );

    let out = tokio::task::spawn_blocking(move || loader(&plan_path).output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "second run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "completed");
    assert_eq!(summary["loaded"], 400);
    assert_eq!(
        summary["loaded_this_run"].as_u64().unwrap(),
        400 - acked_first
    );
    assert_eq!(count(&server.base).await, 400);

    let all = journal(&dir.path().join("grundladdning.toml"));
    let second = &all[first.len()..];
    assert!(matches!(second[0], Event::Start { .. }));
    for e in second {
        if let Event::Send { ranges, call, .. } = e {
            assert!(
                !overlaps(ranges, &first_acks),
                "call {call} re-sent acknowledged posts {ranges:?}"
            );
        }
    }
    let mut covered: Vec<u64> = acks(&all).iter().flat_map(|(a, b)| *a..*b).collect();
    covered.sort_unstable();
    assert_eq!(
        covered,
        (0..400).collect::<Vec<_>>(),
        "every post acknowledged exactly once"
    );

    // A finished load run again sends nothing.
    let plan_path = dir.path().join("grundladdning.toml");
    let before = journal(&plan_path).len();
    let again = plan_path.clone();
    let out = tokio::task::spawn_blocking(move || loader(&again).output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            summary["loaded"].as_u64(),
            summary["loaded_this_run"].as_u64(),
            summary["calls"].as_u64()
        ),
        (Some(400), Some(0), Some(0))
    );
    assert!(!journal(&plan_path)[before..]
        .iter()
        .any(|e| matches!(e, Event::Send { .. })));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_cleanly_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let input = write_csv(dir.path(), "load.csv", (0..300).map(row));
    let (plan_path, _) = plan(
        dir.path(),
        &server.base,
        &[&input],
        &["--batch-size", "10", "--pause-ms", "30"],
    )
    .await;

    let child = loader(&plan_path).spawn().unwrap();
    while acks(&journal(&plan_path)).len() < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["outcome"], "interrupted");
    let loaded = summary["loaded"].as_u64().unwrap();
    assert!(loaded < 300);
    assert_eq!(
        count(&server.base).await,
        loaded,
        "a clean stop leaves nothing unacknowledged in the index"
    );

    let out = tokio::task::spawn_blocking(move || loader(&plan_path).output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(count(&server.base).await, 300);
    server.stop().await.unwrap();
}
