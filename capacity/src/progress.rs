//! Progress on stderr while a run goes on: one status line rewritten in place, and a
//! line per finished step. Shown only when stderr is a terminal, so logs and pipes
//! get nothing but the final summary (which the binary prints).

use crate::stats::Tally;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Where progress goes (nowhere when disabled).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Enabled exactly when stderr is a terminal.
    pub fn stderr() -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
        }
    }

    pub fn hidden() -> Progress {
        Progress { enabled: false }
    }

    /// Rewrites the status line.
    pub fn status(&self, text: &str) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{text}");
            let _ = err.flush();
        }
    }

    /// Replaces the status line with a permanent one.
    pub fn line(&self, text: &str) {
        if self.enabled {
            eprintln!("\r\x1b[2K{text}");
        }
    }

    /// The status line of a running load phase.
    pub fn load_tick(&self, phase: &str, elapsed: Duration, of: Duration, tallies: &[Tally]) {
        if !self.enabled {
            return;
        }
        let mut all = Tally::default();
        tallies.iter().for_each(|t| all.merge(t));
        let p99 = all
            .percentiles()
            .map(|p| format!("{:.1} ms", p.p99_ms))
            .unwrap_or_else(|| "-".into());
        self.status(&format!(
            "{phase}: {:.0}/{:.0} s, {} ok, {} errors, p99 {p99}",
            elapsed.as_secs_f64(),
            of.as_secs_f64(),
            all.ok,
            all.error_count(),
        ));
    }
}
