//! Bad records: what the rules refuse is rejected before sending; what the index
//! refuses (here: a logicalAddress only the server reserves, a key repeated inside a
//! call) is isolated by splitting the call, written to the reject file with the
//! index's own reason, and everything else is loaded.

mod common;

use common::*;
use ei_loader::clock::SystemClock;
use ei_loader::run::{rejects_path_for, run, Outcome, RunOptions};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_go_to_the_reject_file_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"), |c| {
        c.reserved_hsa_ids = Some(vec![
            INDEX_HSA_ID.into(),
            "platform-hsa-id".into(),
            "SE-RESERVED".into(),
        ]);
    })
    .await;
    let rows = (0..60u64).map(|i| match i {
        5 | 17 | 33 => row_with(i, "SE-RESERVED", "20240101120000"),
        41 => row(40),
        50 => row_with(i, "SE2321000016-15CQ", "20241301120000"),
        _ => row(i),
    });
    let input = write_csv(dir.path(), "load.csv", rows);
    let (plan_path, plan) = plan(
        dir.path(),
        &server.base,
        &[&input],
        &["--batch-size", "20", "--pause-ms", "0", "--accept-invalid"],
    )
    .await;
    assert_eq!((plan.order.posts, plan.order.invalid_records), (59, 1));

    let summary = run(
        &plan_path,
        &plan,
        Arc::new(SystemClock),
        RunOptions {
            now: true,
            progress: false,
        },
        std::future::pending(),
    )
    .await
    .unwrap();

    assert_eq!(summary.outcome, Outcome::Completed);
    assert_eq!((summary.loaded, summary.rejected), (55, 5));
    assert_eq!(count(&server.base).await, 55);
    let text = std::fs::read_to_string(rejects_path_for(&plan_path)).unwrap();
    let mut rejects: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    rejects.sort_by_key(|r| r["seq"].as_u64());
    let got: Vec<(u64, u64, &str)> = rejects
        .iter()
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["line"].as_u64().unwrap(),
                r["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (5, 7, "EI005"),
            (17, 19, "EI005"),
            (33, 35, "EI005"),
            (41, 43, "EI002"),
            (50, 52, "EI004")
        ]
    );
    assert!(rejects[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("EI005: The logicalAddress in EngagementTransaction #"));
    assert!(rejects[0]["reason"]
        .as_str()
        .unwrap()
        .ends_with("is reserved and not allowed, hsa-id: SE-RESERVED"));
    assert!(rejects[3]["reason"]
        .as_str()
        .unwrap()
        .contains("have the same key. That is not allowed."));
    assert_eq!(
        rejects[4]["reason"],
        "EI004: The payload does not validate, error messge: Field \"mostRecentContent\": 20241301120000 has an invalid month (13)"
    );
    assert_eq!(rejects[0]["record"]["logicalAddress"], "SE-RESERVED");
    assert_eq!(
        rejects[0]["record"]["registeredResidentIdentification"],
        resident(5)
    );
    server.stop().await;
}
