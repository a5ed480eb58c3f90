//! The load generator's results: one row per phase, printed as a Markdown table and
//! as JSON.

use serde::Serialize;
use std::fmt::Write as _;

/// What a phase measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Measured {
    pub requests: u64,
    pub errors: u64,
    /// Posts sent in OK Updates, or rows returned by FindContent.
    pub posts: u64,
    pub secs: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// Server group commits (one WAL write, synced when `wal_sync`) during the phase.
    pub group_commits: Option<u64>,
    /// CPU seconds this whole process (server and clients when in-process) used.
    pub cpu_secs: Option<f64>,
    /// CPU seconds the server used (`--server-pid`, a server in its own process).
    pub server_cpu_secs: Option<f64>,
    /// The phase ran other requests beside these (a mixed phase): its commits and CPU
    /// are not these requests' alone, so no per-request CPU is derived from them.
    pub shared: bool,
    pub first_error: Option<String>,
}

/// One phase's row.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseRow {
    pub phase: String,
    pub clients: usize,
    pub requests_per_s: f64,
    pub posts_per_s: f64,
    #[serde(flatten)]
    pub measured: Measured,
}

impl PhaseRow {
    pub fn new(phase: &str, clients: usize, m: Measured) -> PhaseRow {
        let ok = m.requests.saturating_sub(m.errors) as f64;
        PhaseRow {
            phase: phase.to_owned(),
            clients,
            requests_per_s: ok / m.secs.max(1e-9),
            posts_per_s: m.posts as f64 / m.secs.max(1e-9),
            measured: m,
        }
    }
}

/// A whole run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// UTC, RFC 3339.
    pub date: String,
    pub target: String,
    pub wal_sync: Option<bool>,
    pub preload_posts: u64,
    pub rows: Vec<PhaseRow>,
    /// Posts in the index at the end (`/status`).
    pub index_posts: Option<u64>,
    /// Data directory size after the server stopped.
    pub disk_bytes: Option<u64>,
    /// After a flush and full compaction.
    pub disk_bytes_compacted: Option<u64>,
    /// `VmHWM`: of this process for an in-process server (server and clients), else of
    /// `--server-pid`.
    pub peak_rss_bytes: Option<u64>,
}

impl Report {
    /// An empty report dated now: `target` names the server ("in-process" or its
    /// URL), `wal_sync` is known for an in-process server only.
    pub fn new(target: String, wal_sync: Option<bool>, preload_posts: u64) -> Report {
        Report {
            date: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            target,
            wal_sync,
            preload_posts,
            ..Report::default()
        }
    }

    /// Writes the report to stdout: the Markdown table, or JSON.
    pub fn print(&self, json: bool) -> std::io::Result<()> {
        let text = if json {
            serde_json::to_string_pretty(self)? + "\n"
        } else {
            self.markdown()
        };
        let mut out = std::io::stdout().lock();
        std::io::Write::write_all(&mut out, text.as_bytes())?;
        std::io::Write::flush(&mut out)
    }

    /// Bytes per post on disk (after compaction when measured).
    pub fn bytes_per_post(&self) -> Option<f64> {
        let bytes = self.disk_bytes_compacted.or(self.disk_bytes)?;
        Some(bytes as f64 / self.index_posts.filter(|&n| n > 0)? as f64)
    }

    /// The Markdown table and a summary of disk and memory.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| phase | clients | requests/s | posts/s | p50 ms | p99 ms | max ms | errors | group commits | requests/commit | cores busy | requests per CPU-s | server cores | server CPU µs/request |"
        );
        let _ = writeln!(
            s,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &self.rows {
            let m = &r.measured;
            let per_commit = m
                .group_commits
                .filter(|&c| c > 0)
                .map(|c| format!("{:.1}", m.requests as f64 / c as f64))
                .unwrap_or_else(|| "–".into());
            let commits = m.group_commits.map_or("–".into(), |c| c.to_string());
            let busy = m
                .cpu_secs
                .map_or("–".into(), |c| format!("{:.2}", c / m.secs.max(1e-9)));
            let per_cpu = m
                .cpu_secs
                .filter(|&c| c > 0.0 && !m.shared)
                .map_or("–".into(), |c| format!("{:.0}", m.requests as f64 / c));
            let server_busy = m
                .server_cpu_secs
                .map_or("–".into(), |c| format!("{:.2}", c / m.secs.max(1e-9)));
            let server_per_request = m
                .server_cpu_secs
                .filter(|_| m.requests > 0 && !m.shared)
                .map_or("–".into(), |c| {
                    format!("{:.0}", c * 1e6 / m.requests as f64)
                });
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                r.phase,
                r.clients,
                r.requests_per_s,
                r.posts_per_s,
                ms(m.p50_us),
                ms(m.p99_us),
                ms(m.max_us),
                m.errors,
                commits,
                per_commit,
                busy,
                per_cpu,
                server_busy,
                server_per_request
            );
        }
        for line in self.isolation() {
            let _ = writeln!(s, "\n{line}");
        }
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        let _ = writeln!(
            s,
            "\nindex: {} posts; disk: {} after stop, {} compacted; {} bytes/post; peak RSS {}",
            self.index_posts.map_or("?".into(), |n| n.to_string()),
            self.disk_bytes.map_or("–".into(), mib),
            self.disk_bytes_compacted.map_or("–".into(), mib),
            self.bytes_per_post()
                .map_or("–".into(), |b| format!("{b:.0}")),
            self.peak_rss_bytes.map_or("–".into(), mib),
        );
        for r in self.rows.iter().filter(|r| r.measured.errors > 0) {
            let e = r.measured.first_error.as_deref().unwrap_or("");
            let _ = writeln!(s, "first error in {}: {e}", r.phase);
        }
        s
    }
}

impl Report {
    /// Each mixed phase against the same run's phases alone: FindContent req/s and
    /// p99 during the Updates / alone (same client count), and the Updates' posts/s
    /// / alone (same client count). One line per mixed phase whose baselines ran.
    pub fn isolation(&self) -> Vec<String> {
        let alone = |prefix: &str, clients: usize| {
            self.rows
                .iter()
                .find(|r| r.clients == clients && !r.measured.shared && r.phase.starts_with(prefix))
        };
        let mut lines = Vec::new();
        for (i, f) in self.rows.iter().enumerate() {
            let Some(stem) = f.phase.strip_suffix(", during updates") else {
                continue;
            };
            let Some(base) = alone(stem, f.clients) else {
                continue;
            };
            let mut line = format!(
                "isolation: {} clients `{stem}` during updates / alone: req/s {:.2}×, p99 {:.2}×",
                f.clients,
                f.requests_per_s / base.requests_per_s.max(1e-9),
                f.measured.p99_us as f64 / base.measured.p99_us.max(1) as f64,
            );
            let writer = self
                .rows
                .get(i + 1)
                .filter(|u| u.phase.ends_with(", during finds"));
            if let Some(u) = writer {
                let stem = u.phase.split(&[',', ')'][..]).next().unwrap_or("");
                if let Some(solo) = alone(stem, u.clients) {
                    let _ = write!(
                        line,
                        "; {} update clients' posts/s {:.2}× their rate alone",
                        u.clients,
                        u.posts_per_s / solo.posts_per_s.max(1e-9)
                    );
                }
            }
            lines.push(line);
        }
        lines
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}
