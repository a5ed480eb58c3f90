//! What the notifier keeps of each subscriber it knows: the persisted [`Record`], the
//! live counters and positions ([`SubscriberState`], shared with its worker and read
//! by the admin status and `/metrics`), and its worker while it is delivered to.
//!
//! A subscriber is *known* while the store has its cursor. Its [`Phase`]:
//! active (in the subscriber set, delivered to), absent (missing from the set, backlog
//! kept for the grace period), parked (over its outbox budget: position kept, clean-up
//! no longer waits for it), resyncing (being sent the index's current state), or
//! dropped (cursor forgotten after the grace period; the gap is recorded).

use super::record::Record;
use super::subscriber::Subscriber;
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// Where a subscriber stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Active,
    Absent,
    Parked,
    Resyncing,
    Dropped,
}

/// Live positions and counters of one subscriber.
#[derive(Default)]
pub struct SubscriberState {
    /// The next outbox sequence number to look at (in memory; written in batches).
    pub cursor: AtomicU64,
    /// The cursor last written to the store.
    pub persisted: AtomicU64,
    /// Commit time (Unix ms) of the oldest change at or after the cursor; 0 = none.
    pub oldest_pending_ms: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    /// Transactions moved to dead letters (out of attempts or refused), ever.
    pub dead_lettered: AtomicU64,
    /// Dead letters stored now: entries and transactions.
    pub dead_letter_batches: AtomicU64,
    pub dead_letter_transactions: AtomicU64,
    /// Posts sent by the running (or last) resync.
    pub resync_sent: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl SubscriberState {
    pub fn at(cursor: u64) -> SubscriberState {
        let s = SubscriberState::default();
        s.cursor.store(cursor, Relaxed);
        s.persisted.store(cursor, Relaxed);
        s
    }

    pub fn set_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counts dead letters just stored.
    pub fn add_dead_letters(&self, batches: usize, transactions: usize) {
        self.dead_letter_batches.fetch_add(batches as u64, Relaxed);
        self.dead_letter_transactions
            .fetch_add(transactions as u64, Relaxed);
        self.dead_lettered.fetch_add(transactions as u64, Relaxed);
    }

    /// Age in seconds of the oldest undelivered change, given the outbox head.
    pub fn lag_seconds(&self, head: u64, now_ms: u64) -> f64 {
        let oldest = self.oldest_pending_ms.load(Relaxed);
        if self.cursor.load(Relaxed) >= head || oldest == 0 {
            return 0.0;
        }
        now_ms.saturating_sub(oldest) as f64 / 1000.0
    }
}

/// A running delivery worker.
pub struct Worker {
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Stops it and waits (at most 5 s) for its in-flight call.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// One known (or dropped) subscriber.
pub struct Member {
    pub record: Record,
    pub state: std::sync::Arc<SubscriberState>,
    /// False once dropped (its cursor is gone).
    pub known: bool,
    /// The position a running resync continues from.
    pub resyncing: Option<u64>,
    pub worker: Option<Worker>,
}

impl Member {
    pub fn new(record: Record, cursor: u64) -> Member {
        Member {
            record,
            state: std::sync::Arc::new(SubscriberState::at(cursor)),
            known: true,
            resyncing: None,
            worker: None,
        }
    }

    pub fn phase(&self) -> Phase {
        if !self.known {
            Phase::Dropped
        } else if self.resyncing.is_some() {
            Phase::Resyncing
        } else if self.record.parked.is_some() {
            Phase::Parked
        } else if self.record.absent_since.is_some() {
            Phase::Absent
        } else {
            Phase::Active
        }
    }

    pub fn subscriber(&self) -> Option<&Subscriber> {
        self.record.subscriber.as_ref()
    }

    /// The position below which the outbox may be cleaned up for this member; `None`
    /// when it holds nothing back (parked or dropped).
    pub fn holds_back(&self) -> Option<u64> {
        match self.phase() {
            Phase::Parked | Phase::Dropped => None,
            Phase::Resyncing => self.resyncing,
            Phase::Active | Phase::Absent => Some(self.state.persisted.load(Relaxed)),
        }
    }
}

/// Every subscriber the store knows (a cursor) or has a record of, with its dead-letter
/// counts. Blocking.
pub fn load_known(store: &Store) -> Result<BTreeMap<String, Member>, StoreError> {
    let mut records: BTreeMap<String, Record> = store
        .subscriber_records()?
        .into_iter()
        .map(|(la, bytes)| {
            let r = Record::decode(&la, &bytes);
            (la, r)
        })
        .collect();
    let mut out = BTreeMap::new();
    for (la, cursor) in store.cursors()? {
        let record = records.remove(&la).unwrap_or_default();
        out.insert(la, Member::new(record, cursor));
    }
    for (la, record) in records {
        let mut m = Member::new(record, 0);
        m.known = false;
        out.insert(la, m);
    }
    for (la, m) in &out {
        let dead = store.dead_letters(la)?;
        m.state
            .dead_letter_batches
            .store(dead.len() as u64, Relaxed);
        m.state
            .dead_letter_transactions
            .store(dead.iter().map(|d| d.entries.len() as u64).sum(), Relaxed);
    }
    Ok(out)
}
