//! The access log's storage (column family `audit`, layout in [`schema`]): who
//! looked up or changed a resident's posts, when, and how many. Records are appended
//! in batches without a WAL sync (an access record is not an acknowledged write), read
//! newest first per resident by one range scan, and deleted after their retention by a
//! scan of the whole family (run on a blocking thread).

use super::{schema, Store, StoreError};
use crate::apply::Change;
use crate::model::Transaction;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, WriteOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// One access: a caller's operation on one resident's posts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Unix milliseconds of the request.
    pub time_ms: u64,
    /// The caller's HSA-id ("anonymous" when the request names none).
    pub caller: String,
    pub correlation_id: String,
    /// `FindContent`, `Update` or `ProcessNotification`.
    pub operation: String,
    pub resident: String,
    /// The service domain the request named or changed (empty: none / several).
    pub service_domain: String,
    /// Posts returned (FindContent) or changed (the write services).
    pub posts: u64,
}

/// Who made a request and when: what every record of the request shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Unix milliseconds.
    pub time_ms: u64,
    pub caller: String,
    pub correlation_id: String,
}

impl Access {
    /// The one record of this access (a lookup's), taking its parts.
    pub fn into_record(
        self,
        operation: &str,
        resident: String,
        service_domain: String,
        posts: u64,
    ) -> AuditRecord {
        AuditRecord {
            time_ms: self.time_ms,
            caller: self.caller,
            correlation_id: self.correlation_id,
            operation: operation.to_owned(),
            resident,
            service_domain,
            posts,
        }
    }

    /// The record of this access for `resident`.
    pub fn record(
        &self,
        operation: &str,
        resident: &str,
        service_domain: String,
        posts: u64,
    ) -> AuditRecord {
        AuditRecord {
            time_ms: self.time_ms,
            caller: self.caller.clone(),
            correlation_id: self.correlation_id.clone(),
            operation: operation.to_owned(),
            resident: resident.to_owned(),
            service_domain,
            posts,
        }
    }
}

/// The records of one write request: one per resident its transactions name, with
/// the service domains they name (comma-separated when several) and the number of
/// that resident's posts the request changed (0 for a request that changed nothing).
pub fn write_records(
    access: &Access,
    operation: &str,
    transactions: &[Transaction],
    changes: &[Change],
) -> Vec<AuditRecord> {
    let mut residents: BTreeMap<&str, (BTreeSet<&str>, u64)> = BTreeMap::new();
    for t in transactions {
        let k = &t.engagement.key;
        residents
            .entry(k.registered_resident_identification())
            .or_default()
            .0
            .insert(k.service_domain());
    }
    for c in changes {
        let k = &c.engagement.key;
        let entry = residents
            .entry(k.registered_resident_identification())
            .or_default();
        entry.0.insert(k.service_domain());
        entry.1 += 1;
    }
    residents
        .into_iter()
        .map(|(resident, (domains, posts))| {
            let domains: Vec<&str> = domains.into_iter().collect();
            access.record(operation, resident, domains.join(","), posts)
        })
        .collect()
}

/// Makes records that share resident and millisecond distinct (and keeps their
/// order); seeded with the start time so a restart in the same millisecond does not
/// reuse a number.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn next_seq() -> u64 {
    if SEQ.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let _ = SEQ.compare_exchange(0, seed, Ordering::Relaxed, Ordering::Relaxed);
    }
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Puts `records` into `batch` (used by [`Store::append_audit`]; the writer may use
/// it to put a write's records into the batch of its posts).
pub(super) fn put_records(
    batch: &mut WriteBatch,
    cf: &rocksdb::ColumnFamily,
    records: &[AuditRecord],
) {
    let mut value = Vec::with_capacity(128);
    for r in records {
        let key = schema::audit_key(&r.resident, r.time_ms, next_seq());
        value.clear();
        schema::encode_audit_value(&mut value, r);
        batch.put_cf(cf, key, &value);
    }
}

impl Store {
    /// Appends access records in one batch, not synced: a crash may lose the last
    /// moments' records (whatever the operating system had not written out).
    pub fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.append_audit(records);
        }
        if records.is_empty() {
            return Ok(());
        }
        let db = self.db()?;
        let mut batch = WriteBatch::default();
        put_records(&mut batch, db.cf().audit, records);
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        db.write_opt(batch, &wo)?;
        Ok(())
    }

    /// `resident`'s records with `from_ms <= time_ms < to_ms`, newest first, at most
    /// `limit`.
    pub fn audit(
        &self,
        resident: &str,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.audit(resident, from_ms, to_ms, limit);
        }
        let db = self.db()?;
        let lower = schema::audit_key(resident, from_ms, 0);
        let upper = schema::audit_key(resident, to_ms, 0);
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(lower);
        let iter = db.iterator_cf_opt(
            db.cf().audit,
            ro,
            IteratorMode::From(&upper, Direction::Reverse),
        );
        let mut out = Vec::new();
        for item in iter {
            let (key, value) = item?;
            // `From(upper, Reverse)` starts at the last key <= upper: skip it if equal.
            if *key == *upper {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(schema::decode_audit_value(&value, resident)?);
        }
        Ok(out)
    }

    /// Deletes every record older than `before_ms`; answers how many.
    pub fn purge_audit(&self, before_ms: u64) -> Result<u64, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.purge_audit(before_ms);
        }
        let db = self.db()?;
        let cf = db.cf().audit;
        let mut batch = WriteBatch::default();
        let mut deleted = 0u64;
        for item in db.iterator_cf(cf, IteratorMode::Start) {
            let (key, _) = item?;
            let Some(time_ms) = schema::audit_key_time(&key) else {
                return Err(schema::Corrupt("an audit key is too short".into()).into());
            };
            if time_ms < before_ms {
                batch.delete_cf(cf, &key);
                deleted += 1;
                if batch.len() >= 10_000 {
                    db.write(std::mem::take(&mut batch))?;
                }
            }
        }
        db.write(batch)?;
        Ok(deleted)
    }
}
