//! The writer thread: takes queued requests in groups, applies them against one
//! view of the store ([`GroupView`]), writes each group as one synced `WriteBatch`,
//! then answers every request of the group (see the module above for why).

use super::health::{DbCell, Health, WriterAlive};
use super::lock::{self, LockState};
use super::stats::{self, PostStats, StatsDelta};
use super::{outbox, schema, Faults, Rocks, StoreError, StoreOptions};
use crate::apply::{apply, Change, ChangeKind, Stored, View};
use crate::metrics::Metrics;
use crate::model::{Engagement, EngagementKey, Timestamp, Transaction};
use crate::operation::WriteOperation;
use rocksdb::{WriteBatch, WriteOptions};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use tokio::sync::oneshot;

pub(super) struct WriteJob {
    pub(super) service: WriteOperation,
    pub(super) transactions: Vec<Transaction>,
    /// The store keys the request will read, sorted and unique, encoded by the
    /// caller so the writer thread does not have to.
    pub(super) read_keys: Vec<Vec<u8>>,
    pub(super) now: Timestamp,
    /// Who asked: the request's access records go into the batch of its posts.
    pub(super) access: Option<super::audit::Access>,
    pub(super) span: tracing::Span,
    /// The changes, and the transactions handed back so they are freed off the
    /// writer thread.
    pub(super) reply: oneshot::Sender<WriteReply>,
}

/// What the writer answers a request: its changes and its transactions back.
type WriteReply = Result<(Vec<Change>, Vec<Transaction>), Arc<StoreError>>;

pub(super) enum Message {
    Write(WriteJob),
    /// Turn the write lock on or off after every write queued before.
    SetWriteLock {
        enabled: bool,
        reply: oneshot::Sender<Result<schema::WriteLock, Arc<StoreError>>>,
    },
    Stop,
}

/// How often a failing writer tries to recover without traffic.
const RETRY_RECOVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The writer thread's state.
pub(super) struct Writer {
    /// The writer's handle on the database; `None` only while a reopen failed.
    pub(super) db: Option<Arc<Rocks>>,
    /// Where the store keeps the database, to replace it after a failure.
    pub(super) cell: Arc<DbCell>,
    pub(super) health: Arc<Health>,
    pub(super) path: std::path::PathBuf,
    pub(super) options: StoreOptions,
    pub(super) count: Arc<AtomicU64>,
    pub(super) metrics: Arc<Metrics>,
    /// The next outbox sequence number.
    pub(super) next_seq: u64,
    pub(super) commits: tokio::sync::watch::Sender<u64>,
    pub(super) lock: Arc<LockState>,
    pub(super) stats: Arc<std::sync::Mutex<PostStats>>,
    /// Requests queued and not yet taken (the store's queue depth).
    pub(super) queued: Arc<AtomicU64>,
    /// The test seam consulted before each group commit.
    pub(super) faults: Arc<Faults>,
}

/// A group's work before it is written.
struct Group {
    batch: WriteBatch,
    /// Each request's effective changes.
    results: Vec<Vec<Change>>,
    /// The change in the number of posts.
    delta: i64,
    /// The next outbox sequence number after the group's entries.
    seq: u64,
    /// The change in the statistics counters.
    stats: StatsDelta,
}

/// A stored post's timestamps (its key is the map key).
type Times = [Option<Timestamp>; 3];

/// The posts one group commit has read or written, keyed by store key; `None` = absent.
/// Only the timestamps are kept: the caller knows the key, so no strings are copied.
/// Writes go straight into the group's batch, with the key bytes the lookup used:
/// keys are encoded into one reused buffer, so the writer allocates nothing per post
/// for them.
struct GroupView<'a> {
    db: &'a Rocks,
    posts: HashMap<Vec<u8>, Option<Times>, KeyHasher>,
    batch: WriteBatch,
    /// The last key encoded (reused: a post is looked up, then written).
    key: Vec<u8>,
    /// The value being written (reused).
    value: Vec<u8>,
}

/// A fast hasher for the group's map (FxHash's mixing step over 8-byte words),
/// seeded per process so clients cannot aim for collisions.
#[derive(Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    fn new() -> KeyHasher {
        use std::hash::BuildHasher;
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        KeyHasher(
            *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64)),
        )
    }
}

impl std::hash::BuildHasher for KeyHasher {
    type Hasher = KeyHasherState;
    fn build_hasher(&self) -> KeyHasherState {
        KeyHasherState(self.0)
    }
}

struct KeyHasherState(u64);

impl std::hash::Hasher for KeyHasherState {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.mix(u64::from_le_bytes(last) ^ bytes.len() as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl KeyHasherState {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

fn stored(t: Times) -> Stored {
    let [most_recent_content, creation_time, update_time] = t;
    Stored {
        most_recent_content,
        creation_time,
        update_time,
    }
}

impl View for GroupView<'_> {
    type Error = StoreError;

    fn get(&mut self, key: &EngagementKey) -> Result<Option<Engagement>, StoreError> {
        Ok(self.get_times(key)?.map(|t| t.with_key(key)))
    }

    fn get_times(&mut self, key: &EngagementKey) -> Result<Option<Stored>, StoreError> {
        self.key.clear();
        schema::encode_key_into(&mut self.key, key);
        if let Some(v) = self.posts.get(self.key.as_slice()) {
            return Ok(v.map(stored));
        }
        let found = match self.db.get_pinned_cf(self.db.cf().engagements, &self.key)? {
            Some(v) => Some(schema::decode_times(&v)?),
            None => None,
        };
        self.posts.insert(self.key.clone(), found);
        Ok(found.map(stored))
    }

    /// Records the write and puts it into the group's batch.
    fn set(&mut self, key: &EngagementKey, value: Option<&Engagement>) {
        if !schema::key_is(&self.key, key) {
            self.key.clear();
            schema::encode_key_into(&mut self.key, key);
        }
        let times = value.map(|e| [e.most_recent_content, e.creation_time, e.update_time]);
        match self.posts.get_mut(self.key.as_slice()) {
            Some(slot) => *slot = times,
            None => {
                self.posts.insert(self.key.clone(), times);
            }
        }
        let cf = self.db.cf().engagements;
        match value {
            Some(e) => {
                self.value.clear();
                schema::encode_value_into(&mut self.value, e);
                self.batch.put_cf(cf, &self.key, &self.value);
            }
            None => self.batch.delete_cf(cf, &self.key),
        }
    }
}

impl GroupView<'_> {
    /// Reads the posts a request will look at (`keys`: sorted, unique) with one
    /// batched multi-get, so the per-transaction lookups hit memory.
    fn prefetch(&mut self, keys: Vec<Vec<u8>>) -> Result<(), StoreError> {
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|k| !self.posts.contains_key(k))
            .collect();
        let cf = self.db.cf().engagements;
        let results = self.db.batched_multi_get_cf(cf, keys.iter(), true);
        let mut found = Vec::with_capacity(keys.len());
        for r in results {
            found.push(match r? {
                Some(v) => Some(schema::decode_times(&v)?),
                None => None,
            });
        }
        self.posts.extend(keys.into_iter().zip(found));
        Ok(())
    }
}

impl Writer {
    pub(super) fn run(mut self, rx: mpsc::Receiver<Message>) {
        let _alive = WriterAlive(self.health.clone());
        crate::priority::lower_current_thread(self.options.write_nice);
        // A message that is not a write ends a group; it is handled right after it.
        let mut next: Option<Message> = None;
        loop {
            let message = match next.take() {
                Some(m) => m,
                // While failing, wake every second to try recovering without traffic.
                None if self.failing() => match rx.recv_timeout(RETRY_RECOVERY) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.try_recover();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            match message {
                Message::Stop => break,
                Message::SetWriteLock { enabled, reply } => {
                    let switched = match &self.db {
                        Some(db) => lock::switch(db, &self.lock, enabled),
                        None => Err(StoreError::Recovering),
                    };
                    let _ = reply.send(switched.map_err(Arc::new));
                }
                Message::Write(first) => {
                    let jobs = gather(first, &rx, self.options.max_group_requests, &mut next);
                    self.queued.fetch_sub(jobs.len() as u64, Ordering::Relaxed);
                    self.commit_group(jobs);
                }
            }
        }
        // Anything still queued after Stop is answered with Closed (its reply sender
        // is dropped with the receiver).
        drop(rx);
        tracing::info!("store writer stopped");
    }

    /// The database (present except while a reopen after a failure has failed).
    fn db(&self) -> &Rocks {
        self.db.as_deref().expect("checked by commit_group")
    }

    fn failing(&self) -> bool {
        self.db.is_none() || self.health.commit_failing()
    }

    /// After a failed commit, once free space is above the floor: closes and reopens
    /// the database (RocksDB keeps refusing writes after a failed one), reloads the
    /// writer's counters from it and proves a synced write works.
    fn try_recover(&mut self) {
        if !self.failing() || !self.health.enough_space() {
            return;
        }
        drop(self.db.take());
        let (path, options) = (self.path.clone(), self.options.clone());
        let reopened = self
            .cell
            .reopen(std::time::Duration::from_secs(5), || {
                super::open_db(&path, &options).and_then(Rocks::with_handles)
            })
            .and_then(|()| self.cell.get());
        let db = match reopened {
            Ok(db) => db,
            Err(e) => {
                self.db = self.cell.get().ok();
                tracing::warn!(error = %e, "reopening the store after a failed write failed; retrying");
                return;
            }
        };
        self.db = Some(db);
        match self.reload_and_probe() {
            Ok(()) => {
                self.health.commit_succeeded();
                self.health.recovered();
                tracing::info!("store recovered: writes are accepted again");
            }
            Err(e) => {
                self.health.commit_failed(e.to_string());
                tracing::warn!(error = %e, "the store is still failing after a reopen; retrying");
            }
        }
    }

    /// Rereads the post count, outbox head and statistics, then writes the count back
    /// synced: a write that must work for the store to count as recovered.
    fn reload_and_probe(&mut self) -> Result<(), StoreError> {
        let db = self.db.clone().expect("just reopened");
        let count = super::read_count(&db)?;
        self.count.store(count, Ordering::Relaxed);
        let head = outbox::read_head(&db)?;
        if head != self.next_seq {
            self.next_seq = head;
            self.commits.send_replace(head);
        }
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = super::load_stats(&db)?;
        let meta = db.cf().meta;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, schema::META_ENGAGEMENT_COUNT, count.to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        Ok(db.write_opt(batch, &wo)?)
    }

    /// Applies, writes (one synced batch) and answers one group of requests.
    fn commit_group(&mut self, mut jobs: Vec<WriteJob>) {
        self.faults.before_group();
        if self.lock.is_on() {
            let e = Arc::new(StoreError::WriteLocked);
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
        self.try_recover();
        if self.db.is_none() {
            let e = Arc::new(StoreError::Recovering);
            for job in jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
            return;
        }
        let outcome = self.build_batch(&mut jobs).and_then(|g| {
            self.write(g.batch, g.delta, g.seq, &g.stats, jobs.len())
                .map(|()| g.results)
        });
        match outcome {
            Ok(results) => {
                self.health.commit_succeeded();
                for (job, changes) in jobs.into_iter().zip(results) {
                    count_changes(&self.metrics, &job, &changes);
                    let _ = job.reply.send(Ok((changes, job.transactions)));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = jobs.len(), "group commit failed; nothing of it was written");
                self.health.commit_failed(e.to_string());
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Applies the group's requests in order against one view.
    fn build_batch(&self, jobs: &mut [WriteJob]) -> Result<Group, StoreError> {
        let mut view = GroupView {
            db: self.db(),
            posts: HashMap::with_hasher(KeyHasher::new()),
            batch: WriteBatch::default(),
            key: Vec::with_capacity(256),
            value: Vec::with_capacity(32),
        };
        let mut results = Vec::with_capacity(jobs.len());
        let (mut delta, mut seq) = (0i64, self.next_seq);
        let mut stats = StatsDelta::default();
        for job in jobs.iter_mut() {
            let _enter = job.span.enter();
            view.prefetch(std::mem::take(&mut job.read_keys))?;
            let out = apply(
                job.service,
                &self.options.own_hsa_id,
                &job.transactions,
                job.now,
                &mut view,
            )?;
            // The posts' writes are in the batch already (GroupView::set).
            delta += tally(&out.changes, &mut stats);
            if self.options.outbox {
                outbox::append(self.db(), &mut view.batch, &mut seq, &out.changes);
            }
            if let Some(access) = &job.access {
                let records = super::audit::write_records(
                    access,
                    job.service.name(),
                    &job.transactions,
                    &out.changes,
                );
                super::audit::put_records(&mut view.batch, self.db().cf().audit, &records);
            }
            results.push(out.changes);
        }
        Ok(Group {
            batch: view.batch,
            results,
            delta,
            seq,
            stats,
        })
    }

    /// Adds the new post count and writes the batch (WAL synced unless configured
    /// off); then publishes the count and the outbox head.
    fn write(
        &mut self,
        mut batch: WriteBatch,
        delta: i64,
        seq: u64,
        stats_delta: &StatsDelta,
        requests: usize,
    ) -> Result<(), StoreError> {
        let new_count = (self.count.load(Ordering::Relaxed) as i64 + delta).max(0) as u64;
        let meta = self.db().cf().meta;
        batch.put_cf(meta, schema::META_ENGAGEMENT_COUNT, new_count.to_be_bytes());
        let counters = {
            let now = self.stats.lock().unwrap_or_else(|e| e.into_inner());
            stats_delta.put(meta, &now, &mut batch)
        };
        let mut wo = WriteOptions::default();
        wo.set_sync(self.options.sync);
        let entries = batch.len() - counters.len();
        self.faults.before_write(self.options.sync)?;
        self.db().write_opt(batch, &wo)?;
        self.count.store(new_count, Ordering::Relaxed);
        stats::publish(
            &mut self.stats.lock().unwrap_or_else(|e| e.into_inner()),
            counters,
        );
        if seq != self.next_seq {
            self.next_seq = seq;
            self.commits.send_replace(seq);
        }
        self.metrics
            .group_commit(requests, entries.saturating_sub(1));
        Ok(())
    }
}

/// Counts a committed request's changes in the metrics (both backends' writers).
/// A group: `first` and the write jobs queued behind it, up to `max` in all. A message
/// of another kind ends the group and is kept in `next`, to be handled after it.
pub(super) fn gather(
    first: WriteJob,
    rx: &mpsc::Receiver<Message>,
    max: usize,
    next: &mut Option<Message>,
) -> Vec<WriteJob> {
    let mut jobs = vec![first];
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(Message::Write(j)) => jobs.push(j),
            Ok(other) => {
                *next = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    jobs
}

pub(super) fn count_changes(m: &Metrics, job: &WriteJob, changes: &[Change]) {
    use std::sync::atomic::Ordering::Relaxed;
    for c in changes {
        match c.kind {
            ChangeKind::Inserted => m.inserted.fetch_add(1, Relaxed),
            ChangeKind::Deleted => m.deleted.fetch_add(1, Relaxed),
            ChangeKind::ContentChanged | ChangeKind::TimesChanged => {
                m.updated.fetch_add(1, Relaxed)
            }
            ChangeKind::OwnerChanged { .. } => m.owner_changed.fetch_add(1, Relaxed),
        };
    }
    let unchanged = job.transactions.len().saturating_sub(changes.len());
    m.unchanged.fetch_add(unchanged as u64, Relaxed);
    let _enter = job.span.enter();
    tracing::debug!(
        transactions = job.transactions.len(),
        changes = changes.len(),
        "request committed"
    );
}

/// Adds the changes' effects on the post count to the statistics; answers the effect
/// on the count.
pub(super) fn tally(changes: &[Change], stats: &mut StatsDelta) -> i64 {
    let mut delta = 0;
    for c in changes {
        let d = count_delta(c);
        if d != 0 {
            delta += d;
            stats.add(c.engagement.key.parts(), d);
        }
    }
    delta
}

/// A change's effect on the number of posts.
pub(super) fn count_delta(c: &Change) -> i64 {
    match c.kind {
        ChangeKind::Inserted => 1,
        ChangeKind::Deleted => -1,
        _ => 0,
    }
}
