//! Whole runs against the embedded server: every row and phase is in the report (in
//! JSON, Markdown and SVG alike), and the verdict flips when the objective cannot be met.

use crate::common;
use capacity::progress::Progress;
use capacity::report::{markdown, svg, PhaseKind, RowVerdict, Verdict};
use capacity::run;
use capacity::seed::SeedSpec;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_reports_every_row_and_phase() {
    let mut settings = common::settings(common::PLAN);
    settings.seed = Some(SeedSpec {
        residents: 300,
        per_resident: 4,
    });
    let r = run::run(&settings, &Progress::hidden()).await.unwrap();

    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "normal flow",
            "max flow",
            "grundladdning Journal A + normal flow",
            "step-up ×2",
            "step-up ×5"
        ]
    );
    for p in &r.phases {
        let labels: Vec<&str> = p.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Journal A / Update",
                "Journal A / FindContent",
                "Other index / ProcessNotification"
            ],
            "{}",
            p.name
        );
        for row in &p.rows {
            assert!(
                row.ok_calls > 0,
                "{} {}: {:?}",
                p.name,
                row.label,
                row.first_error
            );
            assert_eq!(
                row.errors, 0,
                "{} {}: {:?}",
                p.name, row.label, row.first_error
            );
            assert_eq!(row.verdict, RowVerdict::Passes, "{} {}", p.name, row.label);
        }
        assert_eq!(
            p.total.ok_calls,
            p.rows.iter().map(|r| r.ok_calls).sum::<u64>()
        );
    }
    // Normal flow: 2 + 4 + 1 calls/s for 1 s, exactly as scheduled.
    let normal = &r.phases[0];
    assert_eq!(normal.kind, PhaseKind::Normal);
    assert_eq!(normal.total.planned_calls, 7);
    assert_eq!(normal.total.offered_calls_per_s, 7.0);
    assert_eq!(normal.rows[0].offered_posts_per_hour, 36000.0);
    assert_eq!(normal.factor_of_max, Some(0.5));
    assert_eq!(r.phases[4].total.planned_calls, 70, "×5 of 14 calls/s");

    assert_eq!(r.verdict, Verdict::Holds, "{:?}", r.verdict_reasons);
    assert_eq!(r.headroom.factor, Some(5.0), "{}", r.headroom.reason);
    assert_eq!(r.headroom.first_failing_factor, None);

    let seed = r.seed.as_ref().unwrap();
    assert_eq!((seed.posts, seed.failed_calls), (1200, 0));
    assert!(seed.seconds > 0.0);
    assert_eq!(r.index_engagements_before, Some(0));
    assert!(r.index_engagements_after.unwrap() > 1200);

    let g = &r.grundladdning[0];
    assert_eq!(g.failed_calls, 0, "{:?}", g.first_error);
    assert!(g.calls >= 4, "2 callers, 300 ms pause, 2 s: {}", g.calls);
    assert_eq!(g.posts_acknowledged, g.calls * 500);
    assert!(!g.finished_in_window);
    assert!(g.normal_flow_within_objective);
    let steady = g.steady_posts_per_second.unwrap();
    assert!(steady > 0.0 && steady < 2.0 * 500.0 / 0.3, "{steady}");
    let projected = g.projected_s.unwrap();
    assert!((projected - 100_000.0 / steady).abs() < 1e-6 * projected);

    // JSON carries the same numbers under the same names.
    let json: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(json["verdict"], "holds");
    assert_eq!(json["headroom"]["factor"], 5.0);
    assert_eq!(
        json["phases"][1]["rows"][2]["ok_calls"],
        r.phases[1].rows[2].ok_calls
    );
    assert_eq!(
        json["phases"][0]["total"]["latency"]["p99_ms"],
        normal.total.latency.unwrap().p99_ms
    );
    assert_eq!(json["grundladdning"][0]["projected_s"], projected);

    // Markdown names every phase and row; the SVG has a point per flow phase.
    let md = markdown::render(&r, Some("report.svg"));
    for p in &r.phases {
        assert!(md.contains(&format!("| {} |", p.name)), "{}", p.name);
        for row in &p.rows {
            assert!(md.contains(&format!("| {} | {} |", p.name, row.label)));
        }
    }
    assert!(md.contains("| Journal A | SE2321000016-15CQ | Update | 36000 | 72000 |  | 5 |"));
    assert!(md.contains("**Verdict: holds.**"));
    assert!(md.contains("**Headroom: ×5** of max flow"));
    assert!(md.contains("![latency percentiles and throughput against offered load](report.svg)"));
    assert!(md.contains(&format!("| {} |", g.projected)));
    let chart = svg::render(&r);
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    assert_eq!(
        chart.matches("<polyline").count(),
        5,
        "p50, p95, p99, max, achieved"
    );
    assert_eq!(
        chart.matches("<circle").count(),
        5 * 4,
        "4 flow phases per line"
    );
}

/// The objective flips to "fails" when it cannot be met: a 1 µs p99 bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_fails_when_the_objective_is_impossible() {
    let mut settings = common::settings(common::PLAN);
    settings.bound = Duration::from_micros(1);
    let r = run::run(&settings, &Progress::hidden()).await.unwrap();
    assert_eq!(r.verdict, Verdict::Fails);
    for p in &r.phases {
        assert_eq!(p.verdict, RowVerdict::Fails, "{}", p.name);
        assert!(p.rows.iter().all(|r| r.verdict == RowVerdict::Fails));
        assert_eq!(p.total.errors, 0, "slow, not broken");
    }
    assert_eq!(r.phases.len(), 3, "no step-up when max flow fails");
    assert_eq!(r.headroom.factor, None);
    assert_eq!(r.headroom.first_failing_factor, Some(1.0));
    assert!(!r.grundladdning[0].normal_flow_within_objective);
    assert!(
        r.verdict_reasons[0].starts_with("normal flow fails: p99 "),
        "{:?}",
        r.verdict_reasons
    );
    let md = markdown::render(&r, None);
    assert!(md.contains("**Verdict: fails.**"));
    assert!(md.contains("**Headroom: none**"));
}

/// A step-up that breaks the objective ends the search with the factor before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_step_up_stops_at_the_first_failing_factor() {
    // One call in flight at a time caps throughput like a single connection would;
    // as the offered rate grows, calls queue behind each other and their latency
    // (from the schedule) passes the bound at some step.
    let mut settings = common::settings(common::PLAN);
    settings.max_factor = 1000.0;
    settings.max_in_flight = 1;
    settings.bound = Duration::from_millis(300);
    settings.plan.grundladdning.clear();
    let r = run::run(&settings, &Progress::hidden()).await.unwrap();
    let last = r.phases.last().unwrap();
    assert_eq!(last.kind, PhaseKind::StepUp);
    assert_eq!(last.verdict, RowVerdict::Fails);
    assert!(last.stopped_early_after_s.is_some());
    let failing = r.headroom.first_failing_factor.unwrap();
    assert_eq!(last.factor_of_max, Some(failing));
    assert!(failing <= 1000.0);
    let passed = r.headroom.factor.unwrap();
    assert!(passed < failing);
    assert!(r
        .headroom
        .reason
        .starts_with(&format!("×{failing} of max flow fails: ")));
}
