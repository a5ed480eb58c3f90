//! The report as Markdown: tables a planner pastes into the förstudie's
//! "Testning / Resultat" section. Every number comes from the [`Report`], as in JSON.

use super::{GrundReport, Report, RowResult, Verdict};
use std::fmt::Write;

/// The whole report; `chart` is the SVG's file name when one is written beside it.
pub fn render(r: &Report, chart: Option<&str>) -> String {
    let mut out = String::new();
    head(&mut out, r);
    inputs(&mut out, r);
    seeding(&mut out, r);
    phases(&mut out, r);
    rows(&mut out, r);
    grundladdning(&mut out, &r.grundladdning);
    if let Some(file) = chart {
        let _ = writeln!(
            out,
            "## Chart\n\n![latency percentiles and throughput against offered load]({file})\n"
        );
    }
    notes(&mut out, r);
    out
}

fn head(out: &mut String, r: &Report) {
    let s = &r.settings;
    let verdict = match r.verdict {
        Verdict::Holds => "holds",
        Verdict::Fails => "fails",
    };
    let _ = writeln!(out, "# Capacity report\n");
    let _ = writeln!(
        out,
        "Target: {} · started {} UTC · {}\n",
        r.target, r.started_utc, r.tool
    );
    let _ = writeln!(
        out,
        "Objective per row and phase: p99 ≤ {} ms and no errors. Phases of {} s; each \
         grundladdning simulated for {} s alongside normal flow.\n",
        num(s.p99_bound_ms),
        num(s.phase_s),
        num(s.grundladdning_s)
    );
    let _ = writeln!(
        out,
        "**Verdict: {verdict}.** {}\n",
        r.verdict_reasons.join("; ")
    );
    let factor = r
        .headroom
        .factor
        .map_or("none".to_owned(), |f| format!("×{}", num(f)));
    let _ = writeln!(
        out,
        "**Headroom: {factor}** of max flow ({}).\n",
        r.headroom.reason
    );
}

/// The capacity table as read from the file, so the report stands on its own.
fn inputs(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "## Capacity table (input)\n\n| source system | HSA-id | contract | normal per hour | max per hour | max occurs | posts per call |\n|---|---|---|---:|---:|---|---:|"
    );
    for f in &r.flows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            f.source_system,
            f.hsa_id,
            f.contract.name(),
            num(f.normal_per_hour),
            num(f.max_per_hour),
            f.max_occurs.as_deref().unwrap_or(""),
            f.posts_per_call
        );
    }
    out.push('\n');
}

fn seeding(out: &mut String, r: &Report) {
    if let Some(s) = &r.seed {
        let _ = writeln!(
            out,
            "## Seeding\n\nSeeded {} posts ({} residents × {}) in {} s ({} posts/s), {} failed calls.\n",
            s.posts,
            s.residents,
            s.per_resident,
            num(s.seconds),
            num(s.posts_per_second),
            s.failed_calls
        );
    }
    if let (Some(b), Some(a)) = (r.index_engagements_before, r.index_engagements_after) {
        let _ = writeln!(
            out,
            "Index size (`/status`): {b} engagements before the run, {a} after.\n"
        );
    }
}

const PHASE_HEAD: &str = "| phase | × max | offered calls/s | achieved calls/s | offered posts/h | achieved posts/h | p50 ms | p95 ms | p99 ms | max ms | errors | verdict |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|";

fn phases(out: &mut String, r: &Report) {
    let _ = writeln!(out, "## Phases (all rows together)\n\n{PHASE_HEAD}");
    for p in &r.phases {
        let factor = p
            .factor_of_max
            .map_or("".into(), |f| format!("×{}", num(f)));
        let name = match p.stopped_early_after_s {
            Some(s) => format!("{} (stopped at {} s)", p.name, num(s)),
            None => p.name.clone(),
        };
        let _ = writeln!(out, "| {name} | {factor} | {} |", numbers(&p.total));
    }
    out.push('\n');
}

fn rows(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "## Per row\n\n| phase | row | offered calls/s | achieved calls/s | offered posts/h | achieved posts/h | p50 ms | p95 ms | p99 ms | max ms | errors | verdict |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for p in &r.phases {
        for row in &p.rows {
            let _ = writeln!(out, "| {} | {} | {} |", p.name, row.label, numbers(row));
        }
    }
    out.push('\n');
}

/// The numeric cells shared by the phase and row tables.
fn numbers(r: &RowResult) -> String {
    let lat = |f: fn(&crate::stats::Percentiles) -> f64| {
        r.latency.as_ref().map_or("–".into(), |p| ms(f(p)))
    };
    format!(
        "{} | {} | {} | {} | {} | {} | {} | {} | {} | {}",
        num(r.offered_calls_per_s),
        num(r.achieved_calls_per_s),
        num(r.offered_posts_per_hour),
        num(r.achieved_posts_per_hour),
        lat(|p| p.p50_ms),
        lat(|p| p.p95_ms),
        lat(|p| p.p99_ms),
        lat(|p| p.max_ms),
        r.errors,
        r.verdict.text()
    )
}

fn grundladdning(out: &mut String, grunds: &[GrundReport]) {
    if grunds.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Grundladdning\n\n| source system | posts | concurrent calls | posts/call | pause ms | simulated s | calls (failed) | posts/s in window | steady posts/s | call p50 / p99 ms | projected full duration | normal flow meanwhile |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    );
    for g in grunds {
        let lat = g.call_latency.map_or("–".into(), |p| {
            format!("{} / {}", ms(p.p50_ms), ms(p.p99_ms))
        });
        let projected = if g.finished_in_window {
            format!("{} (the whole load ran)", g.projected)
        } else {
            g.projected.clone()
        };
        let steady = g.steady_posts_per_second.map_or("–".into(), num);
        let meanwhile = if g.normal_flow_within_objective {
            "within objective"
        } else {
            "**outside objective**"
        };
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {} | {} | {} | {} ({}) | {} | {steady} | {lat} | {projected} | {meanwhile} |",
            g.row.source_system,
            g.row.hsa_id,
            g.row.posts,
            g.row.concurrent_calls,
            g.row.posts_per_call,
            g.row.pause_ms,
            num(g.simulated_s),
            g.calls,
            g.failed_calls,
            num(g.posts_per_second),
        );
    }
    out.push('\n');
}

fn notes(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "## How these numbers were made\n\n\
         - Open model: each row's calls were due at fixed intervals and sent on time whatever \
         the answers; latency runs from the scheduled time, so queueing counts (at most {} calls \
         in flight; the longest wait past a scheduled time was {} ms).\n\
         - Achieved = successful calls ÷ the phase's length (or until the last answer, if later). \
         Posts/h = calls × posts per call.\n\
         - Grundladdning: each concurrent caller sends a call, waits for its answer, then pauses; \
         the projection is all posts ÷ steady posts/s = concurrent calls × posts per call ÷ \
         (mean call latency + pause), counting only successful calls.\n\
         - Errors are SOAP faults, non-200 answers, connection failures, timeouts ({} s) and \
         calls unanswered {} s after the phase.",
        r.settings.max_in_flight,
        ms(r.phases
            .iter()
            .map(|p| p.max_send_lag_ms)
            .fold(0.0, f64::max)),
        num(r.settings.timeout_s),
        num(r.settings.drain_s),
    );
    for p in &r.phases {
        if let Some(e) = &p.total.first_error {
            let _ = writeln!(out, "- First error in {}: {e}", p.name);
        }
    }
}

/// A rate or count with as many decimals as its size deserves.
pub fn num(x: f64) -> String {
    if (x == x.trunc() && x.abs() < 1e15) || x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Milliseconds: one decimal below 100 ms.
pub fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_rounded_to_their_size() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(1234.567), "1235");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(0.123), "0.12");
        assert_eq!(ms(0.84), "0.8");
        assert_eq!(ms(1234.4), "1234");
    }
}
