//! The index goes down mid-run and comes back on the same address: the loader retries
//! with backoff and the load completes with nothing lost.

use crate::common::*;
use ei_loader::clock::SystemClock;
use ei_loader::run::Outcome;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_completes_when_the_index_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_index(&data, |_| {}).await;
    let input = write_csv(dir.path(), "load.csv", (0..300).map(row));
    let (plan_path, plan) = plan(
        dir.path(),
        &server.base,
        &[&input],
        &[
            "--batch-size",
            "10",
            "--pause-ms",
            "40",
            "--retry-initial-ms",
            "50",
            "--retry-max-ms",
            "200",
        ],
    )
    .await;
    let loading =
        tokio::spawn(async move { run_on(&plan_path, &plan, Arc::new(SystemClock), true).await });
    while count(&server.base).await < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let addr = server.addr;
    server.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let server = start_index_at(&data, addr, |_| {}).await;

    let summary = loading.await.unwrap().unwrap();
    assert_eq!(summary.outcome, Outcome::Completed);
    assert!(summary.retries >= 1, "the outage was retried");
    assert_eq!((summary.loaded, summary.rejected), (300, 0));
    assert_eq!(count(&server.base).await, 300);
    server.stop().await.unwrap();
}
