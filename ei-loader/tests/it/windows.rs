//! Windows and the planned start, on a test clock (sleeping moves it at once): the run
//! waits for the start and the window, stops at the window's end, resumes in the next
//! night's window, and sends no call outside a window.

use crate::common::*;
use ei_loader::clock::{parse_local, to_local, Clock, TestClock};
use ei_loader::journal::Event;
use ei_loader::run::Outcome;
use std::sync::Arc;
use time::macros::datetime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_for_the_window_pauses_at_its_end_and_resumes_in_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let input = write_csv(dir.path(), "load.csv", (0..100).map(row));
    let (plan_path, mut plan) = plan(
        dir.path(),
        &server.base,
        &[&input],
        &[
            "--batch-size",
            "10",
            "--pause-ms",
            "60000",
            "--window",
            "22:00-22:05",
        ],
    )
    .await;
    plan.schedule.planned_start = "2026-12-10T21:30".into();
    let clock = Arc::new(TestClock::at_local(datetime!(2026-12-10 21:00)));

    let summary = run_on(&plan_path, &plan, clock.clone(), false)
        .await
        .unwrap();

    assert_eq!(summary.outcome, Outcome::Completed);
    assert_eq!(
        (summary.loaded, summary.calls, summary.window_pauses),
        (100, 10, 1)
    );
    assert_eq!(count(&server.base).await, 100);
    let sends: Vec<String> = send_times(&plan_path);
    // One call a minute from 22:00: five fit in 22:00-22:05, the rest the next night.
    let expect: Vec<String> = ["2026-12-10", "2026-12-11"]
        .iter()
        .flat_map(|d| (0..5).map(move |m| format!("{d}T22:0{m}")))
        .collect();
    assert_eq!(sends, expect);
    for at in &sends {
        let t = parse_local(at).unwrap();
        assert!(
            t.hour() == 22 && t.minute() < 5,
            "call at {at} outside the window"
        );
    }
    assert!(to_local(clock.now()) >= datetime!(2026-12-11 22:04));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn does_not_start_before_the_planned_start_unless_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let input = write_csv(dir.path(), "load.csv", (0..5).map(row));
    let (plan_path, mut plan) =
        plan(dir.path(), &server.base, &[&input], &["--pause-ms", "0"]).await;
    plan.schedule.planned_start = "2026-12-10T21:30".into();

    let clock = Arc::new(TestClock::at_local(datetime!(2026-12-10 08:00)));
    let summary = run_on(&plan_path, &plan, clock.clone(), false)
        .await
        .unwrap();
    assert_eq!(summary.loaded, 5);
    let first_send = journal(&plan_path).into_iter().find_map(|e| match e {
        Event::Send { at, .. } => Some(at),
        _ => None,
    });
    assert_eq!(first_send.as_deref(), Some("2026-12-10T21:30"));

    let input2 = write_csv(dir.path(), "now.csv", (5..10).map(row));
    let sub = dir.path().join("now");
    std::fs::create_dir(&sub).unwrap();
    let (plan_path, mut plan) =
        crate::common::plan(&sub, &server.base, &[&input2], &["--pause-ms", "0"]).await;
    plan.schedule.planned_start = "2026-12-10T21:30".into();
    let clock = Arc::new(TestClock::at_local(datetime!(2026-12-10 08:00)));
    let summary = run_on(&plan_path, &plan, clock.clone(), true)
        .await
        .unwrap();
    assert_eq!(summary.loaded, 5);
    assert_eq!(
        to_local(clock.now()),
        datetime!(2026-12-10 08:00),
        "--now does not wait"
    );
    assert_eq!(count(&server.base).await, 10);
    server.stop().await.unwrap();
}
