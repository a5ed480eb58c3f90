//! Throttling is honoured: a recording proxy between the loader and the real index
//! measures the calls in flight, the size of each call and each worker's gap between a
//! reply and its next call, and the test holds them to the plan.

use crate::common::*;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use ei_loader::run::Outcome;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Recording {
    in_flight: u32,
    max_in_flight: u32,
    largest_call: usize,
    /// Per worker: (arrival, reply) of each call, in order.
    calls: HashMap<String, Vec<(Instant, Instant)>>,
}

/// Forwards every request to `upstream`, recording as it goes.
async fn start_proxy(upstream: String) -> (String, Arc<Mutex<Recording>>) {
    let rec = Arc::new(Mutex::new(Recording::default()));
    let state = (rec.clone(), reqwest::Client::new(), upstream);
    let app = axum::Router::new().fallback(
        |axum::extract::State((rec, client, upstream)): axum::extract::State<(
            Arc<Mutex<Recording>>,
            reqwest::Client,
            String,
        )>,
         uri: axum::http::Uri,
         headers: HeaderMap,
         body: Bytes| async move {
            let arrived = Instant::now();
            let cid = headers
                .get("x-skltp-correlation-id")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let worker = cid
                .split('-')
                .find(|p| p.starts_with('w'))
                .unwrap()
                .to_owned();
            let posts = String::from_utf8_lossy(&body)
                .matches("<r:engagementTransaction>")
                .count();
            {
                let mut r = rec.lock().unwrap();
                r.in_flight += 1;
                r.max_in_flight = r.max_in_flight.max(r.in_flight);
                r.largest_call = r.largest_call.max(posts);
            }
            let resp = client
                .post(format!("{upstream}{}", uri.path()))
                .header("x-skltp-correlation-id", cid)
                .header("content-type", "text/xml; charset=UTF-8")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
            let reply = resp.bytes().await.unwrap();
            let mut r = rec.lock().unwrap();
            r.in_flight -= 1;
            r.calls
                .entry(worker)
                .or_default()
                .push((arrived, Instant::now()));
            (status, reply)
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app.with_state(state)).await.unwrap() });
    (base, rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_call_size_and_pause_respect_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let (proxy, rec) = start_proxy(server.base.clone()).await;
    let input = write_csv(dir.path(), "load.csv", (0..150).map(row));
    let (plan_path, plan) = plan(
        dir.path(),
        &proxy,
        &[&input],
        &[
            "--concurrency",
            "3",
            "--batch-size",
            "7",
            "--pause-ms",
            "100",
        ],
    )
    .await;

    let summary = run_now(&plan_path, &plan).await;

    assert_eq!(summary.outcome, Outcome::Completed);
    assert_eq!(
        (summary.loaded, summary.rejected, summary.calls),
        (150, 0, 22)
    );
    assert_eq!(count(&server.base).await, 150);
    let (max_in_flight, largest_call, calls) = {
        let r = rec.lock().unwrap();
        (r.max_in_flight, r.largest_call, r.calls.clone())
    };
    assert!(
        (1..=3).contains(&max_in_flight),
        "max in flight {}",
        max_in_flight
    );
    assert_eq!(largest_call, 7, "no call larger than the plan's batch size");
    assert_eq!(calls.values().map(Vec::len).sum::<usize>(), 22);
    assert_eq!(calls.len(), 3, "all three workers called");
    let smallest_gap = calls
        .values()
        .flat_map(|calls| calls.windows(2).map(|w| w[1].0 - w[0].1))
        .min()
        .unwrap();
    assert!(
        smallest_gap >= Duration::from_millis(100),
        "smallest gap between a worker's calls: {smallest_gap:?}"
    );
    server.stop().await.unwrap();
}
