//! The transactional outbox: notifiable changes are appended to the `outbox` column
//! family in the same write batch as the posts they describe, so a change is in the
//! outbox exactly when it is in the index. Delivery reads the log from each
//! subscriber's cursor; cursors, dead letters and garbage collection live here too.

use super::{schema, Rocks, Store, StoreError};
use crate::apply::{Change, ChangeKind};
use crate::model::{Action, Engagement};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use schema::OutboxEntry;

/// The next sequence number: one past the last entry in the outbox (or the highest
/// cursor, if the outbox was emptied by garbage collection).
pub(super) fn read_head(db: &Rocks) -> Result<u64, StoreError> {
    let cf = db.cf().outbox;
    let last = match db.iterator_cf(cf, IteratorMode::End).next() {
        Some(item) => seq_of(&item?.0)? + 1,
        None => 0,
    };
    let meta = db.cf().meta;
    let mut head = last;
    for item in db.prefix_iterator_cf(meta, schema::META_CURSOR_PREFIX.as_bytes()) {
        let (k, v) = item?;
        if !k.starts_with(schema::META_CURSOR_PREFIX.as_bytes()) {
            break;
        }
        head = head.max(seq_of(&v)?);
    }
    Ok(head)
}

fn seq_of(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| schema::Corrupt(format!("bad sequence number {bytes:?}")))?;
    Ok(u64::from_be_bytes(arr))
}

/// The outbox entries of one request's effective changes. An owner change is told as
/// the delete of this index's post followed by the new owner's post.
pub fn entries_of(changes: &[Change]) -> Vec<OutboxEntry> {
    let mut out = Vec::with_capacity(changes.len());
    for c in changes.iter().filter(|c| c.is_notified()) {
        let save = |e: &Engagement| OutboxEntry {
            action: Action::Save,
            engagement: e.clone(),
        };
        match &c.kind {
            ChangeKind::Deleted => out.push(OutboxEntry {
                action: Action::Delete,
                engagement: c.engagement.clone(),
            }),
            ChangeKind::OwnerChanged { previous_owner } => {
                let old = Engagement {
                    key: c.engagement.key.with_owner(previous_owner),
                    ..c.engagement.clone()
                };
                out.push(OutboxEntry {
                    action: Action::Delete,
                    engagement: old,
                });
                out.push(save(&c.engagement));
            }
            _ => out.push(save(&c.engagement)),
        }
    }
    out
}

/// Appends a request's changes to the batch, numbering them from `*seq`.
pub(super) fn append(db: &Rocks, batch: &mut WriteBatch, seq: &mut u64, changes: &[Change]) {
    let cf = db.cf().outbox;
    for e in entries_of(changes) {
        batch.put_cf(cf, seq.to_be_bytes(), schema::encode_outbox(&e));
        *seq += 1;
    }
}

/// A subscriber's batch that could not be delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub batch: u64,
    pub error: String,
    pub entries: Vec<OutboxEntry>,
}

impl Store {
    /// The next outbox sequence number; changes follow it as they commit.
    pub fn outbox_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.clone()
    }

    /// Up to `limit` outbox entries with sequence numbers from `from`, in order.
    pub fn read_outbox(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let cf = self.db.cf().outbox;
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
            .take(limit)
        {
            let (k, v) = item?;
            out.push((seq_of(&k)?, schema::decode_outbox(&v)?));
        }
        Ok(out)
    }

    /// A subscriber's cursor (the next sequence number to deliver), if it has one.
    pub fn cursor(&self, subscriber: &str) -> Result<Option<u64>, StoreError> {
        let meta = self.db.cf().meta;
        match self
            .db
            .get_pinned_cf(meta, schema::cursor_key(subscriber))?
        {
            Some(v) => Ok(Some(seq_of(&v)?)),
            None => Ok(None),
        }
    }

    /// Moves a subscriber's cursor to `to`, storing `dead` (a batch that could not be
    /// delivered) in the same synced write.
    pub fn advance_cursor(
        &self,
        subscriber: &str,
        to: u64,
        dead: Option<&DeadLetter>,
    ) -> Result<(), StoreError> {
        let meta = self.db.cf().meta;
        let mut batch = WriteBatch::default();
        batch.put_cf(meta, schema::cursor_key(subscriber), to.to_be_bytes());
        if let Some(d) = dead {
            let cf = self.db.cf().dead_letters;
            batch.put_cf(
                cf,
                schema::dead_letter_key(subscriber, d.batch),
                schema::encode_dead_letter(&d.error, &d.entries),
            );
        }
        self.write_synced(batch)
    }

    /// A subscriber's dead letters, oldest first.
    pub fn dead_letters(&self, subscriber: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let prefix = schema::dead_letter_prefix(subscriber);
        let mut out = Vec::new();
        for item in self.scan_prefix(self.db.cf().dead_letters, &prefix) {
            let (k, v) = item?;
            let batch = seq_of(&k[prefix.len()..])?;
            let (error, entries) = schema::decode_dead_letter(&v)?;
            out.push(DeadLetter {
                batch,
                error,
                entries,
            });
        }
        Ok(out)
    }

    /// Removes one dead-letter batch (after a replay delivered it, or on drop).
    pub fn remove_dead_letter(&self, subscriber: &str, batch: u64) -> Result<(), StoreError> {
        let cf = self.db.cf().dead_letters;
        let mut b = WriteBatch::default();
        b.delete_cf(cf, schema::dead_letter_key(subscriber, batch));
        self.write_synced(b)
    }

    /// Deletes outbox entries below `below` (every subscriber has passed them).
    pub fn collect_outbox(&self, below: u64) -> Result<(), StoreError> {
        if below == 0 {
            return Ok(());
        }
        let cf = self.db.cf().outbox;
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf, 0u64.to_be_bytes(), below.to_be_bytes());
        self.write_synced(b)
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        Ok(self.db.write_opt(batch, &wo)?)
    }
}
