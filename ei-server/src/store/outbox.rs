//! The transactional outbox: notifiable changes are appended to the `outbox` column
//! family in the same write batch as the posts they describe, so a change is in the
//! outbox exactly when it is in the index. Delivery reads the log from each
//! subscriber's cursor; cursors, dead letters, subscriber records and garbage
//! collection live here too, and the reads a resync or replay makes of the posts.
//! Every method blocks: the notifier calls them on blocking threads.

use super::{schema, Rocks, Store, StoreError};
use crate::apply::{Change, ChangeKind};
use crate::model::{Action, Engagement, EngagementKey};
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};
use schema::OutboxEntry;
use std::sync::Mutex;

/// Serialises dead-letter id allocation (read the last id, write the next).
static DEAD_LETTER_IDS: Mutex<()> = Mutex::new(());

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

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The outbox entries of one request's effective changes, committed at
/// `committed_ms`. An owner change is told as the delete of this index's post followed
/// by the new owner's post.
pub fn entries_of(changes: &[Change], committed_ms: u64) -> Vec<OutboxEntry> {
    let mut out = Vec::with_capacity(changes.len());
    for c in changes.iter().filter(|c| c.is_notified()) {
        let entry = |action, engagement: Engagement| OutboxEntry {
            action,
            engagement,
            committed_ms,
        };
        match &c.kind {
            ChangeKind::Deleted => out.push(entry(Action::Delete, c.engagement.clone())),
            ChangeKind::OwnerChanged { previous_owner } => {
                let old = Engagement {
                    key: c.engagement.key.with_owner(previous_owner),
                    ..c.engagement.clone()
                };
                out.push(entry(Action::Delete, old));
                out.push(entry(Action::Save, c.engagement.clone()));
            }
            _ => out.push(entry(Action::Save, c.engagement.clone())),
        }
    }
    out
}

/// Appends a request's changes to the batch, numbering them from `*seq`.
pub(super) fn append(db: &Rocks, batch: &mut WriteBatch, seq: &mut u64, changes: &[Change]) {
    let cf = db.cf().outbox;
    for e in entries_of(changes, unix_ms()) {
        batch.put_cf(cf, seq.to_be_bytes(), schema::encode_outbox(&e));
        *seq += 1;
    }
}

/// Changes a subscriber could not be told: a batch out of attempts, or transactions
/// it refused (ResultCode=ERROR), with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// Per subscriber, counting up (ignored when adding: the store assigns it).
    pub id: u64,
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
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.read_outbox(from, limit);
        }
        let db = self.db()?;
        let cf = db.cf().outbox;
        let start = from.to_be_bytes();
        let mut out = Vec::new();
        for item in db
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
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.cursor(subscriber);
        }
        let db = self.db()?;
        let meta = Store::meta(&db);
        let found = db.get_pinned_cf(meta, schema::cursor_key(subscriber))?;
        match found {
            Some(v) => Ok(Some(seq_of(&v)?)),
            None => Ok(None),
        }
    }

    /// Every stored cursor: the subscribers the store knows, by logical address.
    pub fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.cursors();
        }
        let db = self.db()?;
        let prefix = schema::META_CURSOR_PREFIX.as_bytes();
        let mut out = Vec::new();
        for item in Store::scan_prefix(&db, db.cf().meta, prefix, ReadOptions::default()) {
            let (k, v) = item?;
            let la = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((la, seq_of(&v)?));
        }
        Ok(out)
    }

    /// Stores several cursors in one synced write (the notifier's batched advance).
    pub fn write_cursors(&self, cursors: &[(String, u64)]) -> Result<(), StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.write_cursors(cursors);
        }
        let db = self.db()?;
        let meta = Store::meta(&db);
        let mut batch = WriteBatch::default();
        for (la, to) in cursors {
            batch.put_cf(meta, schema::cursor_key(la), to.to_be_bytes());
        }
        self.write_synced(batch)
    }

    /// Moves a subscriber's cursor to `to` and adds `dead` (their ids assigned here)
    /// in the same synced write; returns the ids.
    pub fn advance_cursor(
        &self,
        subscriber: &str,
        to: u64,
        dead: &[DeadLetter],
    ) -> Result<Vec<u64>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.dead_letter_change(subscriber, Some(to), None, dead);
        }
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            Store::meta(&db),
            schema::cursor_key(subscriber),
            to.to_be_bytes(),
        );
        self.write_dead_letters(subscriber, batch, dead)
    }

    /// Adds dead letters (ids assigned here) in one synced write; returns the ids.
    pub fn add_dead_letters(
        &self,
        subscriber: &str,
        dead: &[DeadLetter],
    ) -> Result<Vec<u64>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.dead_letter_change(subscriber, None, None, dead);
        }
        self.write_dead_letters(subscriber, WriteBatch::default(), dead)
    }

    /// Replaces dead letter `id` by `dead` (what is still undelivered of it after a
    /// replay; empty when all of it was delivered) in one synced write.
    pub fn replace_dead_letter(
        &self,
        subscriber: &str,
        id: u64,
        dead: &[DeadLetter],
    ) -> Result<Vec<u64>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.dead_letter_change(subscriber, None, Some(id), dead);
        }
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(Store::dead_cf(&db), schema::dead_letter_key(subscriber, id));
        self.write_dead_letters(subscriber, batch, dead)
    }

    fn write_dead_letters(
        &self,
        subscriber: &str,
        mut batch: WriteBatch,
        dead: &[DeadLetter],
    ) -> Result<Vec<u64>, StoreError> {
        let db = self.db()?;
        let _ids = DEAD_LETTER_IDS.lock().unwrap_or_else(|p| p.into_inner());
        let first = self.next_dead_letter_id(subscriber)?;
        let ids: Vec<u64> = (first..).take(dead.len()).collect();
        for (id, d) in ids.iter().zip(dead) {
            batch.put_cf(
                Store::dead_cf(&db),
                schema::dead_letter_key(subscriber, *id),
                schema::encode_dead_letter(&d.error, &d.entries),
            );
        }
        self.write_synced(batch)?;
        Ok(ids)
    }

    fn next_dead_letter_id(&self, subscriber: &str) -> Result<u64, StoreError> {
        let db = self.db()?;
        let prefix = schema::dead_letter_prefix(subscriber);
        let upper = schema::prefix_upper_bound(&prefix);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(prefix.clone());
        let last = db
            .iterator_cf_opt(
                Store::dead_cf(&db),
                ro,
                IteratorMode::From(&upper, Direction::Reverse),
            )
            .next();
        match last {
            Some(item) => {
                let (k, _) = item?;
                Ok(seq_of(&k[prefix.len()..])? + 1)
            }
            None => Ok(0),
        }
    }

    /// A subscriber's dead letters, oldest first.
    pub fn dead_letters(&self, subscriber: &str) -> Result<Vec<DeadLetter>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.dead_letters(subscriber);
        }
        let db = self.db()?;
        let prefix = schema::dead_letter_prefix(subscriber);
        let mut out = Vec::new();
        for item in Store::scan_prefix(&db, db.cf().dead_letters, &prefix, ReadOptions::default()) {
            let (k, v) = item?;
            let id = seq_of(&k[prefix.len()..])?;
            let (error, entries) = schema::decode_dead_letter(&v)?;
            out.push(DeadLetter { id, error, entries });
        }
        Ok(out)
    }

    /// Removes one dead letter (on drop).
    pub fn remove_dead_letter(&self, subscriber: &str, id: u64) -> Result<(), StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg
                .dead_letter_change(subscriber, None, Some(id), &[])
                .map(drop);
        }
        let db = self.db()?;
        let mut b = WriteBatch::default();
        b.delete_cf(Store::dead_cf(&db), schema::dead_letter_key(subscriber, id));
        self.write_synced(b)
    }

    /// Every subscriber record (`meta` `subscriber/…`, JSON owned by the notifier).
    pub fn subscriber_records(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.subscriber_records();
        }
        let db = self.db()?;
        let prefix = schema::META_SUBSCRIBER_PREFIX.as_bytes();
        let mut out = Vec::new();
        for item in Store::scan_prefix(&db, db.cf().meta, prefix, ReadOptions::default()) {
            let (k, v) = item?;
            let la = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((la, v.to_vec()));
        }
        Ok(out)
    }

    /// Stores a subscriber's record, and its cursor when given, in one synced write.
    pub fn put_subscriber_record(
        &self,
        subscriber: &str,
        record: &[u8],
        cursor: Option<u64>,
    ) -> Result<(), StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.subscriber_change(subscriber, record, cursor.map(Some));
        }
        let db = self.db()?;
        let meta = Store::meta(&db);
        let mut b = WriteBatch::default();
        b.put_cf(meta, schema::subscriber_key(subscriber), record);
        if let Some(c) = cursor {
            b.put_cf(meta, schema::cursor_key(subscriber), c.to_be_bytes());
        }
        self.write_synced(b)
    }

    /// Forgets a subscriber's cursor (it no longer holds back the clean-up) and
    /// stores its record (which says why) in one synced write.
    pub fn drop_cursor(&self, subscriber: &str, record: &[u8]) -> Result<(), StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.subscriber_change(subscriber, record, Some(None));
        }
        let db = self.db()?;
        let meta = Store::meta(&db);
        let mut b = WriteBatch::default();
        b.delete_cf(meta, schema::cursor_key(subscriber));
        b.put_cf(meta, schema::subscriber_key(subscriber), record);
        self.write_synced(b)
    }

    /// The stored post of `key`, if any (replay sends the current state).
    pub fn post(&self, key: &EngagementKey) -> Result<Option<Engagement>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.post(key);
        }
        let db = self.db()?;
        let cf = db.cf().engagements;
        let found = db.get_pinned_cf(cf, schema::encode_key(key))?;
        match found {
            Some(v) => Ok(Some(schema::decode_value(key.clone(), &v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` posts in key order after store key `after` (from the start when
    /// `None`), with the store key of the last one: a resync walks the index with it.
    pub fn posts_after(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Engagement>, Option<Vec<u8>>), StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.posts_after(after, limit);
        }
        let db = self.db()?;
        let cf = db.cf().engagements;
        let mode = match after {
            Some(k) => IteratorMode::From(k, Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::with_capacity(limit);
        let mut last = None;
        for item in db.iterator_cf(cf, mode) {
            let (k, v) = item?;
            if after.is_some_and(|a| a == &k[..]) {
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push(schema::decode_value(schema::decode_key(&k)?, &v)?);
            last = Some(k.to_vec());
        }
        Ok((out, last))
    }

    /// Deletes outbox entries below `below` (every known, unparked subscriber has
    /// passed them). Not synced: if the deletion is lost in a crash it is redone, and
    /// the cursors it relies on were synced before.
    pub fn collect_outbox(&self, below: u64) -> Result<(), StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.collect_outbox(below);
        }
        let db = self.db()?;
        if below == 0 {
            return Ok(());
        }
        let cf = db.cf().outbox;
        let mut b = WriteBatch::default();
        b.delete_range_cf(cf, 0u64.to_be_bytes(), below.to_be_bytes());
        Ok(db.write(b)?)
    }

    fn meta(db: &Rocks) -> &rocksdb::ColumnFamily {
        db.cf().meta
    }

    fn dead_cf(db: &Rocks) -> &rocksdb::ColumnFamily {
        db.cf().dead_letters
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let db = self.db()?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        Ok(db.write_opt(batch, &wo)?)
    }
}
