//! The access log: who (the caller [`crate::access::identify`] names) looked up
//! (FindContent) or changed (Update, ProcessNotification) which resident's posts, kept durably in the store's `audit`
//! column family and answered by `GET /admin/audit` ([`crate::admin`]).
//!
//! The write services' records go into the group commit of their posts (see
//! [`crate::store::Store::write_audited`]). FindContent's go to [`Auditor`]'s
//! appender thread through a bounded queue; it writes what has gathered every
//! [`FLUSH_EVERY`] without a WAL sync, so a crash can lose about the last
//! [`FLUSH_EVERY`] of lookups (and what the operating system had not written out). A
//! full queue drops the record, counts it in `ei_audit_dropped_total` and logs a
//! warning. Between flushes, the same thread deletes records older than the
//! retention (`audit_retention_days`) once an hour.

use crate::metrics::Metrics;
use crate::store::audit::{Access, AuditRecord};
use crate::store::Store;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// How often the appender writes the lookups' records.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How often records past the retention are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Lookups' records waiting for the appender; more are dropped (and counted).
const QUEUE: usize = 65_536;

/// The access log's writer side; `None` parts when auditing is off.
pub struct Auditor {
    queue: Option<mpsc::SyncSender<Msg>>,
    metrics: Arc<Metrics>,
    threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

enum Msg {
    Record(Vec<AuditRecord>),
    Stop,
}

impl Auditor {
    /// Auditing off: nothing is recorded.
    pub fn off(metrics: Arc<Metrics>) -> Auditor {
        Auditor {
            queue: None,
            metrics,
            threads: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Starts the appender and the retention clean-up (`retention_days` 0 = keep
    /// forever) for `store`, on a thread `nice` nicer than the caller (background
    /// work: lookups get the CPU first, see [`crate::priority`]).
    pub fn start(store: Arc<Store>, retention_days: u64, nice: u8) -> std::io::Result<Auditor> {
        let metrics = store.metrics().clone();
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let appender = {
            let store = store.clone();
            std::thread::Builder::new()
                .name("ei-audit".into())
                .spawn(move || {
                    crate::priority::lower_current_thread(nice);
                    append_loop(&store, &rx, retention_days)
                })?
        };
        Ok(Auditor {
            queue: Some(tx),
            metrics,
            threads: std::sync::Mutex::new(vec![appender]),
        })
    }

    /// Whether records are kept.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues a lookup's records; a full queue drops them, counted and logged.
    pub fn lookup(&self, records: Vec<AuditRecord>) {
        let Some(queue) = &self.queue else {
            return;
        };
        let n = records.len() as u64;
        if let Err(e) = queue.try_send(Msg::Record(records)) {
            let total = self.metrics.audit_dropped.fetch_add(n, Ordering::Relaxed) + n;
            match e {
                mpsc::TrySendError::Full(_) => {
                    tracing::warn!(
                        dropped = n,
                        total,
                        "audit queue full: access records dropped"
                    )
                }
                mpsc::TrySendError::Disconnected(_) => {
                    tracing::error!(
                        dropped = n,
                        total,
                        "audit appender gone: access records dropped"
                    )
                }
            }
        }
    }

    /// Writes what is queued and stops the threads (before the store closes).
    pub fn stop(&self) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(Msg::Stop);
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The access of a request now.
pub fn access(caller: String, correlation_id: Option<&str>) -> Access {
    Access {
        time_ms: crate::store::unix_ms(),
        caller,
        correlation_id: correlation_id.unwrap_or("").to_owned(),
    }
}

fn append_loop(store: &Store, rx: &mpsc::Receiver<Msg>, retention_days: u64) {
    let mut pending: Vec<AuditRecord> = Vec::new();
    let mut next_purge = std::time::Instant::now();
    loop {
        // Wait for the first record (asleep while nobody looks anything up), then let
        // the rest of the tick's records gather in the queue before taking them all:
        // one wake-up and one write per tick under load, not one per lookup (a sender
        // wakes this thread only while it waits in `recv`).
        let until_purge = if retention_days > 0 {
            next_purge.saturating_duration_since(std::time::Instant::now())
        } else {
            PURGE_EVERY
        };
        let stop = match rx.recv_timeout(until_purge) {
            Ok(Msg::Record(r)) => {
                pending.extend(r);
                std::thread::sleep(FLUSH_EVERY);
                let mut stop = false;
                while let Ok(m) = rx.try_recv() {
                    match m {
                        Msg::Record(r) => pending.extend(r),
                        Msg::Stop => stop = true,
                    }
                }
                stop
            }
            Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        };
        if !pending.is_empty() {
            // In key order (resident, then time), RocksDB inserts each record next
            // to the one before it instead of searching the memtable from its top.
            pending.sort_by(|a, b| (&a.resident, a.time_ms).cmp(&(&b.resident, b.time_ms)));
            if let Err(e) = store.append_audit(&pending) {
                let n = pending.len() as u64;
                let total = store
                    .metrics()
                    .audit_dropped
                    .fetch_add(n, Ordering::Relaxed)
                    + n;
                tracing::error!(error = %e, dropped = n, total, "writing access records failed: dropped");
            }
            pending.clear();
        }
        if stop {
            break;
        }
        if retention_days > 0 && std::time::Instant::now() >= next_purge {
            next_purge = std::time::Instant::now() + PURGE_EVERY;
            purge(store, retention_days, crate::store::unix_ms());
        }
    }
}

/// Deletes the records older than `retention_days` before `now_ms`.
pub fn purge(store: &Store, retention_days: u64, now_ms: u64) -> u64 {
    let before = now_ms.saturating_sub(retention_days.saturating_mul(86_400_000));
    match store.purge_audit(before) {
        Ok(n) => {
            if n > 0 {
                tracing::info!(deleted = n, retention_days, "old access records deleted");
            }
            n
        }
        Err(e) => {
            tracing::error!(error = %e, "deleting old access records failed");
            0
        }
    }
}
