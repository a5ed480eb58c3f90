//! Where a finished report goes: the files of `--out DIR` (Markdown, JSON, SVG), the
//! report on stdout (Markdown, or JSON with `--json`), and the one summary line that
//! ends every run on stderr.

use super::{markdown, svg, Report, Verdict};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the report did not reach its places.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot write the report into {}: {source}", dir.display())]
    Files {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the report to stdout: {0}")]
    Stdout(std::io::Error),
    /// Stdout's reader quit (`capacity … | head`): nothing is wrong, the program
    /// ends quietly with success, as Unix tools do.
    #[error("stdout was closed")]
    StdoutClosed,
}

/// Writes the report files into `dir` (when given), then the report to stdout.
pub fn publish(report: &Report, dir: Option<&Path>, json: bool) -> Result<(), PublishError> {
    if let Some(dir) = dir {
        write_files(dir, report).map_err(|source| PublishError::Files {
            dir: dir.to_owned(),
            source,
        })?;
    }
    let text = if json {
        serde_json::to_string_pretty(report).map_err(|e| PublishError::Stdout(e.into()))? + "\n"
    } else {
        markdown::render(report, dir.map(|_| "report.svg"))
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => PublishError::StdoutClosed,
            _ => PublishError::Stdout(e),
        })
}

/// `DIR/report.md`, `DIR/report.json` and `DIR/report.svg`.
pub fn write_files(dir: &Path, report: &Report) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("report.md"),
        markdown::render(report, Some("report.svg")),
    )?;
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(dir.join("report.svg"), svg::render(report))
}

/// The one line that always ends a run on stderr.
pub fn summary(r: &Report) -> String {
    let verdict = match r.verdict {
        Verdict::Holds => "holds",
        Verdict::Fails => "fails",
    };
    let headroom = r
        .headroom
        .factor
        .map_or("none".to_owned(), |f| format!("×{}", markdown::num(f)));
    let mut line = format!("capacity: {verdict}; headroom {headroom} of max flow");
    for g in &r.grundladdning {
        line.push_str(&format!(
            "; grundladdning {}: {}",
            g.row.source_system, g.projected
        ));
    }
    line
}
