//! The chart, written by hand as SVG: against the offered load (all rows, calls/s,
//! log scale) the top panel draws latency p50/p95/p99/max with the p99 bound, the
//! bottom panel the achieved throughput with the offered = achieved diagonal. One
//! point per flow phase (normal, max, each step-up); grundladdning phases are left out
//! because their load is not a multiple of the rows' rates.

use super::{PhaseKind, Report};
use std::fmt::Write;

const WIDTH: f64 = 760.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const PANEL_H: f64 = 220.0;
const TOP1: f64 = 50.0;
const TOP2: f64 = 340.0;
const HEIGHT: f64 = 620.0;

/// A log-scaled axis mapping `[lo, hi]` onto `[from, to]` pixels.
#[derive(Clone, Copy)]
struct LogAxis {
    lo: f64,
    hi: f64,
    from: f64,
    to: f64,
}

impl LogAxis {
    /// An axis around `values`, padded by a factor 1.5 on each side.
    fn around(values: impl Iterator<Item = f64>, from: f64, to: f64) -> LogAxis {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN_POSITIVE);
        for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            (lo, hi) = (1.0, 10.0);
        }
        LogAxis {
            lo: lo / 1.5,
            hi: hi * 1.5,
            from,
            to,
        }
    }

    fn at(&self, v: f64) -> f64 {
        let v = v.max(self.lo);
        let t = (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln());
        self.from + t * (self.to - self.from)
    }

    /// 1-2-5 ticks inside the axis.
    fn ticks(&self) -> Vec<f64> {
        let mut out = Vec::new();
        let mut decade = 10f64.powf(self.lo.log10().floor());
        while decade <= self.hi {
            for m in [1.0, 2.0, 5.0] {
                let v = decade * m;
                if v >= self.lo && v <= self.hi {
                    out.push(v);
                }
            }
            decade *= 10.0;
        }
        out
    }
}

struct Point {
    label: String,
    offered: f64,
    achieved: f64,
    lat: [f64; 4],
    failed: bool,
}

const SERIES: [(&str, &str); 4] = [
    ("p50", "#1b9e77"),
    ("p95", "#7570b3"),
    ("p99", "#d95f02"),
    ("max", "#999999"),
];

/// The chart as an SVG document.
pub fn render(r: &Report) -> String {
    let points: Vec<Point> = r
        .phases
        .iter()
        .filter(|p| p.kind != PhaseKind::Grundladdning)
        .filter_map(|p| {
            let l = p.total.latency?;
            Some(Point {
                label: match p.kind {
                    PhaseKind::Normal => "normal".into(),
                    PhaseKind::Max => "max".into(),
                    _ => format!("×{}", super::markdown::num(p.factor_of_max.unwrap_or(0.0))),
                },
                offered: p.total.offered_calls_per_s,
                achieved: p.total.achieved_calls_per_s,
                lat: [l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms],
                failed: p.verdict == super::RowVerdict::Fails,
            })
        })
        .collect();
    let bound = r.settings.p99_bound_ms;
    let x = LogAxis::around(points.iter().map(|p| p.offered), LEFT, WIDTH - RIGHT);
    let lat_values = points.iter().flat_map(|p| p.lat).chain([bound]);
    let y1 = LogAxis::around(lat_values, TOP1 + PANEL_H, TOP1);
    let rates = points.iter().flat_map(|p| [p.offered, p.achieved]);
    let y2 = LogAxis::around(rates, TOP2 + PANEL_H, TOP2);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    s.push_str(r#"<rect width="100%" height="100%" fill="white"/>"#);
    latency_panel(&mut s, &points, x, y1, bound);
    throughput_panel(&mut s, &points, x, y2);
    s.push_str("</svg>\n");
    s
}

fn latency_panel(s: &mut String, points: &[Point], x: LogAxis, y: LogAxis, bound: f64) {
    frame(s, x, y, TOP1, "latency (ms, from scheduled send)");
    let yb = y.at(bound);
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" y1="{yb:.1}" x2="{:.1}" y2="{yb:.1}" stroke="#e7298a" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" fill="#e7298a" text-anchor="end">p99 bound {bound} ms</text>"##,
        WIDTH - RIGHT,
        WIDTH - RIGHT - 4.0,
        yb - 4.0
    );
    for (i, (name, color)) in SERIES.iter().enumerate() {
        let xy: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (x.at(p.offered), y.at(p.lat[i])))
            .collect();
        polyline(s, &xy, color, false);
        let lx = LEFT + 10.0 + 60.0 * i as f64;
        let _ = write!(
            s,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{name}</text>"#,
            TOP1 - 22.0,
            lx + 14.0,
            TOP1 - 13.0
        );
    }
}

fn throughput_panel(s: &mut String, points: &[Point], x: LogAxis, y: LogAxis) {
    frame(s, x, y, TOP2, "achieved calls/s");
    let lo = x.lo.max(y.lo);
    let hi = x.hi.min(y.hi);
    if lo < hi {
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#bbbbbb" stroke-dasharray="4 4"/>"##,
            x.at(lo),
            y.at(lo),
            x.at(hi),
            y.at(hi)
        );
    }
    let xy: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (x.at(p.offered), y.at(p.achieved)))
        .collect();
    polyline(s, &xy, "#1f78b4", true);
    for (p, (px, py)) in points.iter().zip(&xy) {
        if p.failed {
            let _ = write!(
                s,
                r##"<circle cx="{px:.1}" cy="{py:.1}" r="7" fill="none" stroke="#e31a1c" stroke-width="2"/>"##
            );
        }
        let _ = write!(
            s,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
            py - 8.0,
            p.label
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">offered load, all rows (calls/s)</text><text x="{:.1}" y="{:.1}" fill="#888888">dashed: achieved = offered; red ring: phase fails the objective</text>"##,
        (LEFT + WIDTH - RIGHT) / 2.0,
        TOP2 + PANEL_H + 34.0,
        LEFT + 6.0,
        TOP2 + 14.0
    );
}

/// Axes, grid and tick labels of one panel.
fn frame(s: &mut String, x: LogAxis, y: LogAxis, top: f64, title: &str) {
    let bottom = top + PANEL_H;
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{PANEL_H}" fill="none" stroke="#333333"/><text x="{LEFT}" y="{:.1}" font-weight="bold">{title}</text>"##,
        WIDTH - LEFT - RIGHT,
        top - 30.0
    );
    for v in x.ticks() {
        let px = x.at(v);
        let _ = write!(
            s,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{bottom}" stroke="#eeeeee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            bottom + 14.0,
            tick(v)
        );
    }
    for v in y.ticks() {
        let py = y.at(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#eeeeee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            tick(v)
        );
    }
}

fn polyline(s: &mut String, xy: &[(f64, f64)], color: &str, bold: bool) {
    let pts: Vec<String> = xy.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let width = if bold { 2.5 } else { 1.5 };
    let _ = write!(
        s,
        r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="{width}"/>"#,
        pts.join(" ")
    );
    for (x, y) in xy {
        let _ = write!(
            s,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{color}"/>"#
        );
    }
}

fn tick(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_maps_ends_and_ticks() {
        let a = LogAxis {
            lo: 1.0,
            hi: 100.0,
            from: 0.0,
            to: 200.0,
        };
        assert!((a.at(10.0) - 100.0).abs() < 1e-9);
        assert!((a.at(100.0) - 200.0).abs() < 1e-9);
        assert_eq!(a.ticks(), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
    }
}
