//! Whether the store can take writes, and getting it back when it could not.
//!
//! [`Health`] records what an operator needs to know (`/ready`, `/status`): the writer
//! thread died, the last group commit failed (and why), free disk space is under the
//! configured floor. [`DbCell`] holds the open database so the writer can replace it:
//! after a failed write RocksDB stays in its background-error state and refuses every
//! later write, even once space is back, and its C API has no `Resume`. So the writer,
//! once free space is above the floor again, closes the database and opens it anew
//! (WAL recovery keeps every acknowledged write), retrying every second until that
//! works. Reads go on throughout, except for the moment of the reopen itself.

use super::rocks::Rocks;
use super::StoreError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The open database, replaceable by the writer.
pub(super) struct DbCell(RwLock<Option<Arc<Rocks>>>);

impl DbCell {
    pub(super) fn new(db: Arc<Rocks>) -> DbCell {
        DbCell(RwLock::new(Some(db)))
    }

    /// The database, or [`StoreError::Recovering`] while it is being reopened after a
    /// failed reopen.
    pub(super) fn get(&self) -> Result<Arc<Rocks>, StoreError> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StoreError::Recovering)
    }

    /// Closes the database (waiting, at most `wait`, for readers to let go of it) and
    /// opens it again with `open`. Readers wait meanwhile.
    pub(super) fn reopen(
        &self,
        wait: Duration,
        open: impl FnOnce() -> Result<Rocks, StoreError>,
    ) -> Result<(), StoreError> {
        let mut slot = self.0.write().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = slot.as_ref() {
            let deadline = std::time::Instant::now() + wait;
            while Arc::strong_count(db) > 1 {
                if std::time::Instant::now() > deadline {
                    return Err(StoreError::Recovering);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // Dropping the last handle closes the database and releases its lock file.
        *slot = None;
        *slot = Some(Arc::new(open()?));
        Ok(())
    }
}

/// What `/ready` and `/status` report about the store.
pub struct Health {
    data_dir: PathBuf,
    /// Free bytes below which the index is not ready.
    min_free_bytes: u64,
    writer_dead: AtomicBool,
    commit_error: Mutex<Option<String>>,
    recoveries: AtomicU64,
}

impl Health {
    pub(super) fn new(data_dir: &Path, min_free_bytes: u64) -> Health {
        Health {
            data_dir: data_dir.to_owned(),
            min_free_bytes,
            writer_dead: AtomicBool::new(false),
            commit_error: Mutex::new(None),
            recoveries: AtomicU64::new(0),
        }
    }

    pub(super) fn writer_died(&self) {
        self.writer_dead.store(true, Relaxed);
    }

    pub(super) fn commit_failed(&self, why: String) {
        *self.commit_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    pub(super) fn commit_succeeded(&self) {
        let mut e = self.commit_error.lock().unwrap_or_else(|e| e.into_inner());
        if e.is_some() {
            *e = None;
        }
    }

    pub(super) fn recovered(&self) {
        self.recoveries.fetch_add(1, Relaxed);
    }

    /// Whether the last group commit failed.
    pub fn commit_failing(&self) -> bool {
        self.commit_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Times the store was reopened after a failure.
    pub fn recoveries(&self) -> u64 {
        self.recoveries.load(Relaxed)
    }

    /// Free bytes on the data directory's filesystem (`None` when it cannot be asked).
    pub fn free_bytes(&self) -> Option<u64> {
        free_bytes(&self.data_dir)
    }

    /// Whether free space is at or above the floor (true when it cannot be asked).
    pub fn enough_space(&self) -> bool {
        self.free_bytes().is_none_or(|b| b >= self.min_free_bytes)
    }

    /// Why the store cannot take writes now; empty when it can.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.writer_dead.load(Relaxed) {
            out.push("the store's writer thread has stopped".to_owned());
        }
        if let Some(e) = self
            .commit_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            out.push(format!("the last group commit failed: {e}"));
        }
        if let Some(free) = self.free_bytes().filter(|b| *b < self.min_free_bytes) {
            out.push(format!(
                "free disk space {} MiB is under the floor of {} MiB",
                free >> 20,
                self.min_free_bytes >> 20
            ));
        }
        out
    }
}

/// Free bytes for unprivileged users on the filesystem holding `path`.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Marks the writer dead when its thread unwinds.
pub(super) struct WriterAlive(pub(super) Arc<Health>);

impl Drop for WriterAlive {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.writer_died();
        }
    }
}
