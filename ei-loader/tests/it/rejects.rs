//! Bad records: what the rules refuse is rejected before sending; what the index
//! refuses (here: a logicalAddress only the server reserves, a key repeated inside a
//! call) is isolated by splitting the call, written to the reject file with the
//! index's own reason, and everything else is loaded.

use crate::common::*;
use ei_loader::run::{rejects_path_for, Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_records_go_to_the_reject_file_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |c| {
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

    let summary = run_now(&plan_path, &plan).await;

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
    server.stop().await.unwrap();
}

/// Forwards to `upstream`, rewriting each fault's text so it names no transaction
/// (as EI004 does), which leaves the loader only halving to find the bad record.
async fn start_unnamed_fault_proxy(upstream: String) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().fallback(
        |axum::extract::State(upstream): axum::extract::State<String>,
         uri: axum::http::Uri,
         headers: HeaderMap,
         body: Bytes| async move {
            let resp = reqwest::Client::new()
                .post(format!("{upstream}{}", uri.path()))
                .header(
                    "x-skltp-correlation-id",
                    headers
                        .get("x-skltp-correlation-id")
                        .unwrap()
                        .to_str()
                        .unwrap(),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
            let text = resp.text().await.unwrap();
            let text = match (
                text.find("EngagementTransaction #"),
                text.find(" is reserved"),
            ) {
                (Some(a), Some(b)) => format!("{}a transaction{}", &text[..a], &text[b..]),
                _ => text,
            };
            (status, text)
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, app.with_state(upstream))
            .await
            .unwrap()
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_naming_no_transaction_is_isolated_by_halving() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |c| {
        c.reserved_hsa_ids = Some(vec![INDEX_HSA_ID.into(), "SE-RESERVED".into()]);
    })
    .await;
    let proxy = start_unnamed_fault_proxy(server.base.clone()).await;
    let rows = (0..40u64).map(|i| match i {
        6 | 29 => row_with(i, "SE-RESERVED", "20240101120000"),
        _ => row(i),
    });
    let input = write_csv(dir.path(), "load.csv", rows);
    let (plan_path, plan) = plan(
        dir.path(),
        &proxy,
        &[&input],
        &["--batch-size", "16", "--pause-ms", "0"],
    )
    .await;

    let summary = run_now(&plan_path, &plan).await;

    assert_eq!(summary.outcome, Outcome::Completed);
    assert_eq!((summary.loaded, summary.rejected), (38, 2));
    assert_eq!(count(&server.base).await, 38);
    let text = std::fs::read_to_string(rejects_path_for(&plan_path)).unwrap();
    let mut seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [6, 29]);
    assert!(
        text.contains(
            "The logicalAddress in a transaction is reserved and not allowed, hsa-id: SE-RESERVED"
        ),
        "{text}"
    );
    // Each call of 16 holding one bad record costs 9 calls: the call, then two halves
    // at each of 4 levels (16 -> 8 -> 4 -> 2 -> 1); the third call of 8 is clean.
    assert_eq!(summary.calls, 9 + 9 + 1);
    server.stop().await.unwrap();
}
