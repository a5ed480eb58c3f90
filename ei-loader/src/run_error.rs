//! Why a run stopped before the load was done (the journal keeps what was done):
//! what the run, its workers and the reject file all return.

use crate::input::InputError;
use crate::journal::JournalError;
use crate::plan::PlanError;
use std::path::PathBuf;

/// Why a run stopped before the load was done (the journal keeps what was done).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "input {path} changed since the plan was made (its SHA-256 differs); refusing to load it"
    )]
    InputChanged { path: PathBuf },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("reject file {path}: {source}")]
    RejectFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("call {call} failed and retrying cannot help: {message}")]
    Fatal { call: String, message: String },
    #[error("call {call} still failing after {attempts} attempts: {message}")]
    GaveUp {
        call: String,
        attempts: u32,
        message: String,
    },
}
