//! The open-model generator against real servers on loopback: it keeps its schedule,
//! and latency is measured from the scheduled time (queueing included).

use crate::common;
use capacity::client::Client;
use capacity::loadgen::{self, Schedule, Stream};
use capacity::progress::Progress;
use capacity::target::Embedded;
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

/// Guards the schedule: at low rates against the real server every planned call is
/// sent and answered, and the achieved rate is the offered one within 3 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_its_schedule_against_the_real_server() {
    let server = Embedded::start("5565594230").unwrap();
    let client = Client::new(&server.base_url);
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
        let achieved = s.tally.ok as f64 / r.elapsed.as_secs_f64();
        let off = (achieved - s.rate_per_s).abs() / s.rate_per_s;
        assert!(
            off < 0.03,
            "{}: {achieved:.2}/s vs {}/s",
            s.label,
            s.rate_per_s
        );
    }
    assert!(r.elapsed < Duration::from_secs_f64(3.3), "{:?}", r.elapsed);
    assert!(
        r.max_send_lag < Duration::from_millis(200),
        "{:?}",
        r.max_send_lag
    );
    server.stop().unwrap();
}

/// Guards against coordinated omission: a stub that serves one request per 100 ms
/// gets 20 calls in the first second anyway (the schedule ignores answers), and the
/// latencies include the queueing behind earlier calls, not just the 100 ms service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_measured_from_the_schedule() {
    let stub = common::SlowStub::start(Duration::from_millis(100)).await;
    let client = Client::new(&stub.base);
    let streams = [stream(Operation::FindContent, 1, 20.0, 1)];
    let r = loadgen::run(&client, &streams, &schedule(1.0), &Progress::hidden(), "t").await;
    let s = &r.streams[0];
    assert_eq!((s.sent, s.tally.ok), (20, 20), "{:?}", s.tally.first_error);
    let arrivals = stub.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 20);
    let spread = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    assert!(spread < Duration::from_millis(1100), "sent over {spread:?}");
    // Call k is due at 50k ms and answered at about 100(k+1) ms: 100 … 1050 ms.
    let p = s.tally.percentiles().unwrap();
    assert!(p.p50_ms > 450.0, "p50 {} ms hides the queueing", p.p50_ms);
    assert!(p.max_ms > 950.0, "max {} ms hides the queueing", p.max_ms);
    assert!(p.max_ms < 1500.0, "max {} ms", p.max_ms);
    assert!(r.elapsed > Duration::from_millis(1900), "{:?}", r.elapsed);
    let achieved = s.tally.ok as f64 / r.elapsed.as_secs_f64();
    assert!(achieved < 11.0, "the stub serves 10/s, achieved {achieved}");
}

/// An early stop (step-up phases) ends the phase once the objective is broken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_early_once_the_objective_is_broken() {
    let stub = common::SlowStub::start(Duration::from_millis(100)).await;
    let client = Client::new(&stub.base);
    let mut sched = schedule(5.0);
    sched.stop_when_failed = true;
    sched.bound = Duration::from_millis(50);
    let streams = [stream(Operation::FindContent, 1, 20.0, 1)];
    let r = loadgen::run(&client, &streams, &sched, &Progress::hidden(), "t").await;
    let stopped = r.stopped_after.expect("stopped early");
    assert!(stopped < Duration::from_secs(1), "{stopped:?}");
    assert!(r.streams[0].sent < 100, "{}", r.streams[0].sent);
    assert!(r.streams[0].tally.over_bound >= 2);
}
