//! The reject file: one JSON line per rejected record with the reason, each
//! rejection also journalled durably.

use crate::input::{record_json, Location};
use crate::journal::{Event, Journal};
use crate::run_error::RunError;
use ei_server::model::RawTransaction;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The reject file: one JSON line per rejected record with the reason.
#[derive(Debug)]
pub struct Rejects {
    path: PathBuf,
    inputs: Vec<PathBuf>,
    file: Mutex<File>,
}

impl Rejects {
    pub(crate) fn open(path: &Path, inputs: Vec<PathBuf>) -> Result<Rejects, RunError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RunError::RejectFile {
                path: path.to_owned(),
                source,
            })?;
        Ok(Rejects {
            path: path.to_owned(),
            inputs,
            file: Mutex::new(file),
        })
    }

    /// Writes the record and its reason, then journals the rejection durably.
    pub fn reject(
        &self,
        journal: &Journal,
        seq: u64,
        at: Location,
        raw: Option<&RawTransaction>,
        code: &str,
        reason: &str,
    ) -> Result<(), RunError> {
        let line = serde_json::json!({
            "seq": seq,
            "file": self.inputs.get(at.file),
            "line": at.line,
            "code": code,
            "reason": reason,
            "record": raw.map(record_json),
        });
        let mut text = line.to_string();
        text.push('\n');
        self.file
            .lock()
            .expect("reject lock")
            .write_all(text.as_bytes())
            .map_err(|source| RunError::RejectFile {
                path: self.path.clone(),
                source,
            })?;
        journal.append(
            &Event::Reject {
                seq,
                code: code.to_owned(),
            },
            true,
        )?;
        Ok(())
    }
}

/// The reject file's path for a plan.
pub fn rejects_path_for(plan: &Path) -> PathBuf {
    plan.with_extension("rejects.jsonl")
}
