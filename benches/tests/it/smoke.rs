//! Smoke test: every ei-load phase against an in-process server, tiny sizes, about a
//! second in all, so CI exercises the load generator (CI does not run `cargo bench`).

use ei_benches::load::{run, Plan, Target, UpdateKind, Verify};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_phase_runs_without_errors() {
    let plan = Plan {
        target: Target::InProcess {
            data_dir: None,
            wal_sync: true,
            max_group_requests: 64,
            block_cache_mb: 8,
        },
        preload_posts: 3000,
        preloaded_posts: 0,
        preload_clients: 2,
        update_clients: vec![2],
        update_kind: UpdateKind::Changed,
        single_clients: vec![4],
        find_clients: vec![4],
        find_rows: 50,
        mixed: vec![(4, 1)],
        update_rate: None,
        verify: Verify::Full,
        phase: Duration::from_millis(200),
        compact: true,
        tls: Default::default(),
    };
    let report = run(plan).await.unwrap();
    let md = report.markdown();
    assert_eq!(report.rows.len(), 6, "{md}");
    for r in &report.rows {
        assert_eq!(r.measured.errors, 0, "{md}");
        assert!(r.measured.requests > 0, "{md}");
    }
    assert_eq!(report.rows[0].measured.posts, 3000, "{md}");
    assert!(report.index_posts.unwrap() >= 3000, "{md}");
    assert!(report.rows[0].measured.group_commits.unwrap() > 0, "{md}");
    assert!(report.bytes_per_post().unwrap() > 0.0, "{md}");
    assert!(md.contains("| find 50 rows, during updates | 4 |"), "{md}");
}

/// `ei-load … | head` after head quit: the binary ends quietly with success.
#[test]
fn a_closed_stdout_pipe_ends_quietly_with_success() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ei-load"))
        .args(["--preload", "1000", "--preload-clients", "1"])
        .args(["--update-clients", "0", "--single-clients", "0"])
        .args(["--find-clients", "0", "--mixed-find-clients", "0"])
        .args(["--block-cache-mb", "8", "--compact", "false"])
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "nothing on stderr, got {err}");
}

/// `--update-rate`: the mixed phase's Update clients send on a fixed schedule, so
/// they never send more than the schedule's slots (here 5 requests/s for 0.4 s: 2);
/// `--verify count` checks FindContent replies by their row count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_updates_keep_to_their_schedule() {
    let plan = Plan {
        target: Target::InProcess {
            data_dir: None,
            wal_sync: true,
            max_group_requests: 64,
            block_cache_mb: 8,
        },
        preload_posts: 2000,
        preloaded_posts: 0,
        preload_clients: 1,
        update_clients: vec![1],
        update_kind: UpdateKind::Changed,
        single_clients: vec![],
        find_clients: vec![2],
        find_rows: 10,
        mixed: vec![(2, 3)],
        update_rate: Some(5000),
        verify: Verify::Count,
        phase: Duration::from_millis(400),
        compact: false,
        tls: Default::default(),
    };
    let report = run(plan).await.unwrap();
    let md = report.markdown();
    let paced = report
        .rows
        .iter()
        .find(|r| r.phase == "update 1000 (changed) at 5000/s, during finds")
        .unwrap_or_else(|| panic!("no paced row in {md}"));
    assert!((1..=2).contains(&paced.measured.requests), "{md}");
    assert_eq!(paced.measured.errors, 0, "{md}");
    let finds = report
        .rows
        .iter()
        .find(|r| r.phase == "find 10 rows, during updates")
        .unwrap();
    assert!(finds.measured.requests > 0, "{md}");
    assert_eq!(finds.measured.errors, 0, "{md}");
    assert_eq!(finds.measured.posts, 10 * finds.measured.requests, "{md}");
    assert!(
        md.contains("isolation: 2 clients `find 10 rows` during updates / alone"),
        "{md}"
    );
}
