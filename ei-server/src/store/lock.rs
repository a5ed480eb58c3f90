//! The write lock (maintenance mode). While it is on, the writer refuses every write
//! request with [`StoreError::WriteLocked`]; reads go on. A switch goes through the
//! writer's queue, so every write queued before it is committed first and none after
//! it; it is stored in `meta` with the WAL synced, so a restart keeps it.

use super::schema::{self, WriteLock};
use super::StoreError;
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The lock as the store's readers and its writer see it.
pub(super) struct LockState {
    /// Checked on every write: one atomic load.
    enabled: AtomicBool,
    current: Mutex<WriteLock>,
}

impl LockState {
    pub(super) fn new(lock: WriteLock) -> LockState {
        LockState {
            enabled: AtomicBool::new(lock.enabled),
            current: Mutex::new(lock),
        }
    }

    pub(super) fn is_on(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub(super) fn get(&self) -> WriteLock {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set(&self, lock: WriteLock) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = lock;
        self.enabled.store(lock.enabled, Ordering::Release);
    }
}

/// The stored lock; off when never set.
pub(super) fn read(db: &DB) -> Result<WriteLock, StoreError> {
    let meta = super::rocks::handle(db, schema::CF_META)?;
    Ok(match db.get_pinned_cf(meta, schema::META_WRITE_LOCK)? {
        Some(v) => schema::decode_write_lock(&v)?,
        None => WriteLock::default(),
    })
}

/// Turns the lock on or off (durably) unless it already is; returns the lock now.
/// Called on the writer thread only.
pub(super) fn switch(db: &DB, state: &LockState, enabled: bool) -> Result<WriteLock, StoreError> {
    let now = state.get();
    if now.enabled == enabled {
        return Ok(now);
    }
    let lock = WriteLock {
        enabled,
        since_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let meta = super::rocks::handle(db, schema::CF_META)?;
    let mut batch = WriteBatch::default();
    batch.put_cf(
        meta,
        schema::META_WRITE_LOCK,
        schema::encode_write_lock(lock),
    );
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(batch, &wo)?;
    state.set(lock);
    tracing::warn!(enabled, "write lock switched");
    Ok(lock)
}
