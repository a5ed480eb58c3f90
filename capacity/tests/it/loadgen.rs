//! The open-model generator against real servers on loopback: it keeps its schedule,
//! and latency is measured from the scheduled time (queueing included).

use crate::common;
use capacity::client::Client;
use capacity::loadgen::{self, Schedule, Stream};
use capacity::progress::Progress;
use capacity::workload::{Bodies, FlowCalls, ResidentSpace};
use ei_server::operation::Operation;
use std::sync::Arc;
use std::time::Duration;

fn schedule(secs: f64) -> Schedule {
    Schedule {
        duration: Duration::from_secs_f64(secs),
        max_in_flight: 256,
        timeout: Duration::from_secs(10),
        drain: Duration::from_secs(10),
        bound: Duration::from_secs(1),
        stop_when_failed: false,
    }
}

fn stream(op: Operation, posts: u64, rate: f64, no: u64) -> Stream {
    let calls = FlowCalls {
        bodies: Bodies::new("5565594230"),
        operation: op,
        source_system: "SE2321000016-15CQ".into(),
        posts_per_call: posts,
        residents: ResidentSpace { count: 500 },
        stream: no,
    };
    Stream {
        label: format!("{op:?}"),
        rate_per_s: rate,
        make: Arc::new(move |seq| calls.request(seq)),
    }
}

/// Guards the schedule against the real server: every planned call is sent and
/// answered OK (the rates are low enough for a debug build on two cores). How evenly
/// the calls are spaced is the schedule's own unit test; the rate a machine achieves
/// is a benchmark figure, not asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_its_schedule_against_the_real_server() {
    let server = capacity::target::start_embedded("5565594230")
        .await
        .unwrap();
    let client = Client::new(&server.base);
    let streams = [
        stream(Operation::FindContent, 1, 40.0, 1),
        stream(Operation::Update, 10, 10.0, 2),
        stream(Operation::ProcessNotification, 3, 4.0, 3),
    ];
    let r = loadgen::run(&client, &streams, &schedule(3.0), &Progress::hidden(), "t").await;
    assert!(r.stopped_after.is_none());
    for (s, planned) in r.streams.iter().zip([120, 30, 12]) {
        assert_eq!((s.planned, s.sent), (planned, planned), "{}", s.label);
        assert_eq!(
            s.tally.ok, planned,
            "{}: {:?}",
            s.label, s.tally.first_error
        );
    }
    assert!(r.elapsed >= Duration::from_secs(3), "{:?}", r.elapsed);
    server.stop().await.unwrap();
}

/// Guards the open model and against coordinated omission, with bounds that hold on
/// any machine: a stub answers nothing until all 20 calls of a 20/s second have
/// arrived, so every call is sent without waiting for an answer; no call arrives
/// before it is due; and call k, due at 50k ms, is answered no earlier than the last
/// one is due (950 ms), so its latency, counted from its due time, is at least
/// 950 - 50k ms: the queueing is not hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_measured_from_the_schedule() {
    let stub = common::Stub::start(common::Answer::AfterArrivals(20)).await;
    let client = Client::new(&stub.base);
    let streams = [stream(Operation::FindContent, 1, 20.0, 1)];
    let before = tokio::time::Instant::now();
    let r = loadgen::run(&client, &streams, &schedule(1.0), &Progress::hidden(), "t").await;
    let s = &r.streams[0];
    assert_eq!((s.sent, s.tally.ok), (20, 20), "{:?}", s.tally.first_error);
    let mut arrivals = stub.arrivals.lock().unwrap().clone();
    arrivals.sort();
    assert_eq!(arrivals.len(), 20);
    for (k, at) in arrivals.iter().enumerate() {
        let due = loadgen::due(20.0, k as u64);
        assert!(*at >= before + due, "call {k} arrived before it was due");
    }
    let p = s.tally.percentiles().unwrap();
    assert!(p.max_ms >= 950.0, "max {} ms hides the queueing", p.max_ms);
    // The 10th-smallest of the lower bounds 950 - 50k ms is 450 ms.
    assert!(p.p50_ms >= 450.0, "p50 {} ms hides the queueing", p.p50_ms);
}

/// An early stop (step-up phases) ends the phase once the objective is broken: the
/// stub holds the first 30 calls until the 30th arrives, so at least 29 answers come
/// 50 ms or more after their due time, over a 40 ms bound: more than 1 % of the
/// phase's 600 planned calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_early_once_the_objective_is_broken() {
    let stub = common::Stub::start(common::Answer::AfterArrivals(30)).await;
    let client = Client::new(&stub.base);
    let mut sched = schedule(30.0);
    sched.stop_when_failed = true;
    sched.bound = Duration::from_millis(40);
    let streams = [stream(Operation::FindContent, 1, 20.0, 1)];
    let r = loadgen::run(&client, &streams, &sched, &Progress::hidden(), "t").await;
    let s = &r.streams[0];
    assert_eq!(s.planned, 600);
    assert!(r.stopped_after.is_some(), "not stopped: {} sent", s.sent);
    assert!(s.sent < s.planned, "{} of {} sent", s.sent, s.planned);
    assert!(
        s.tally.over_bound * 100 > s.planned,
        "{}",
        s.tally.over_bound
    );
}

/// A server fault breaks the objective at once (any error counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_early_on_a_fault() {
    let stub = common::Stub::start(common::Answer::Fault).await;
    let client = Client::new(&stub.base);
    let mut sched = schedule(30.0);
    sched.stop_when_failed = true;
    let streams = [stream(Operation::FindContent, 1, 20.0, 1)];
    let r = loadgen::run(&client, &streams, &sched, &Progress::hidden(), "t").await;
    let s = &r.streams[0];
    assert!(r.stopped_after.is_some(), "not stopped: {} sent", s.sent);
    assert!(s.sent < s.planned, "{} of {} sent", s.sent, s.planned);
    assert!(
        s.tally.ok == 0 && s.tally.first_error.is_some(),
        "{:?}",
        s.tally
    );
}
