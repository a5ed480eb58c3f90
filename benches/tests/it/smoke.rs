//! Smoke test: every ei-load phase against an in-process server, tiny sizes, about a
//! second in all, so CI exercises the load generator (CI does not run `cargo bench`).

use ei_benches::load::{run, Plan, Target, UpdateKind};
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
        preload_clients: 2,
        update_clients: vec![2],
        update_kind: UpdateKind::Changed,
        single_clients: vec![4],
        find_clients: vec![4],
        find_rows: 50,
        mixed: Some((4, 1)),
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
