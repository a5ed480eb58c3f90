//! The spot check (stickprov) and the connectivity test against a loaded index.

use crate::common::*;
use ei_loader::client::EiClient;
use ei_loader::config::endpoint;
use ei_loader::verify::{sample, verify};
use ei_server::model::{Action, Transaction};
use ei_server::operation::Operation;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_every_loaded_post_and_reports_the_missing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let input = write_csv(dir.path(), "load.csv", (0..50).map(row));
    let (plan_path, plan) = plan(
        dir.path(),
        &server.base,
        &[&input],
        &["--batch-size", "25", "--pause-ms", "0"],
    )
    .await;
    run_now(&plan_path, &plan).await;
    let plan_arg = plan_path.to_str().unwrap();
    assert_eq!(
        cli(&["verify", plan_arg, "--sample", "20", "--seed", "7"]).await,
        0
    );

    let t = &plan.target;
    let client = EiClient::new(
        &t.update_url,
        &t.find_content_url,
        &t.logical_address,
        Duration::from_secs(5),
        &t.tls,
    )
    .unwrap();
    let everything = sample(&plan, 1000, 1, &Default::default()).unwrap();
    assert_eq!(everything.len(), 50);
    let deleted: Vec<Transaction> = everything[..3]
        .iter()
        .map(|(_, t)| Transaction {
            action: Action::Delete,
            engagement: t.engagement.clone(),
        })
        .collect();
    client.update(&deleted, "test-delete").await.unwrap();

    let report = verify(&plan, &client, &everything).await.unwrap();
    assert_eq!(
        (report.sampled, report.matched, report.mismatches.len()),
        (50, 47, 3)
    );
    assert!(report
        .mismatches
        .iter()
        .all(|m| m.problem == "missing from the index"));
    let mut lines: Vec<u64> = report.mismatches.iter().map(|m| m.line).collect();
    lines.sort_unstable();
    let mut expect: Vec<u64> = everything[..3].iter().map(|(at, _)| at.line).collect();
    expect.sort_unstable();
    assert_eq!(lines, expect);
    assert_eq!(cli(&["verify", plan_arg, "--sample", "50"]).await, 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_for_a_known_and_an_unknown_resident() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let input = write_csv(dir.path(), "load.csv", (0..3).map(row));
    let (plan_path, plan) = plan(dir.path(), &server.base, &[&input], &["--pause-ms", "0"]).await;
    run_now(&plan_path, &plan).await;

    let known = resident(1);
    assert_eq!(cli(&["probe", &server.base, "--known", &known]).await, 0);
    let url = endpoint(&server.base, Operation::FindContent);
    assert_eq!(
        cli(&[
            "probe",
            &url,
            "--known",
            &known,
            "--unknown",
            "191111111111"
        ])
        .await,
        0
    );
    assert_eq!(
        cli(&["probe", &server.base, "--known", "191111111111"]).await,
        1,
        "a resident without posts is not 'known'"
    );
    assert_eq!(
        cli(&[
            "probe",
            &server.base,
            "--known",
            &known,
            "--unknown",
            &known
        ])
        .await,
        1
    );
    let base = server.base.clone();
    server.stop().await.unwrap();
    assert_eq!(
        cli(&["probe", &base, "--known", &known, "--timeout-ms", "500"]).await,
        1,
        "an index that does not answer fails the probe"
    );
}
