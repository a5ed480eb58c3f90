//! Posts per sourceSystem, dataController and serviceDomain, kept exact: the writer
//! adds each group's changes to the counters in the same write batch as the posts,
//! and the import writes them with the posts it ingests. `GET /admin/stats` reads
//! them from memory; a data directory written before the counters existed gets them
//! by one scan when it is opened.

use super::schema;
use super::StoreError;
use rocksdb::{ColumnFamily, IteratorMode, WriteBatch, DB};
use std::collections::{BTreeMap, HashMap};

/// Which field a counter counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatsField {
    SourceSystem,
    DataController,
    ServiceDomain,
}

impl StatsField {
    pub const ALL: [StatsField; 3] = [
        StatsField::SourceSystem,
        StatsField::DataController,
        StatsField::ServiceDomain,
    ];

    /// The contract's field name (also the counter's key segment in `meta`).
    pub const fn name(self) -> &'static str {
        match self {
            StatsField::SourceSystem => "sourceSystem",
            StatsField::DataController => "dataController",
            StatsField::ServiceDomain => "serviceDomain",
        }
    }

    /// Position of the field among the key parts ([`crate::model::Field::KEY`]).
    const fn key_index(self) -> usize {
        match self {
            StatsField::SourceSystem => 6,
            StatsField::DataController => 7,
            StatsField::ServiceDomain => 1,
        }
    }

    pub(super) fn from_name(name: &str) -> Option<StatsField> {
        StatsField::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// The posts per value of each counted field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PostStats {
    pub counts: BTreeMap<StatsField, BTreeMap<String, u64>>,
}

impl PostStats {
    /// Counts one post in (`delta` 1) or out (-1), given its key parts.
    pub fn add<S: AsRef<str>>(&mut self, parts: &[S; 9], delta: i64) {
        for f in StatsField::ALL {
            let value = parts[f.key_index()].as_ref();
            let by = self.counts.entry(f).or_default();
            let n = by
                .get(value)
                .copied()
                .unwrap_or(0)
                .saturating_add_signed(delta);
            if n == 0 {
                by.remove(value);
            } else if let Some(old) = by.get_mut(value) {
                *old = n;
            } else {
                by.insert(value.to_owned(), n);
            }
        }
    }

    /// The counters of one field.
    pub fn of(&self, f: StatsField) -> impl Iterator<Item = (&str, u64)> {
        self.counts
            .get(&f)
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), *v)))
    }

    /// Puts every counter (and the marker that they are complete) into `batch`.
    pub(super) fn put_all(&self, db: &DB, batch: &mut WriteBatch) {
        let meta = db.cf_handle(schema::CF_META).expect("column family exists");
        for f in StatsField::ALL {
            for (value, n) in self.of(f) {
                batch.put_cf(meta, schema::stats_key(f.name(), value), n.to_be_bytes());
            }
        }
        batch.put_cf(
            meta,
            schema::META_STATS_VERSION,
            schema::STATS_VERSION.to_be_bytes(),
        );
    }
}

/// Changes to the counters from one group commit, applied after it is written (one
/// map per field of [`StatsField::ALL`], looked up by `&str` so a post already
/// counted allocates nothing).
#[derive(Debug, Default)]
pub(super) struct StatsDelta([HashMap<String, i64>; 3]);

impl StatsDelta {
    pub(super) fn add<S: AsRef<str>>(&mut self, parts: &[S; 9], delta: i64) {
        for (f, map) in StatsField::ALL.into_iter().zip(&mut self.0) {
            let value = parts[f.key_index()].as_ref();
            match map.get_mut(value) {
                Some(d) => *d += delta,
                None => {
                    map.insert(value.to_owned(), delta);
                }
            }
        }
    }

    /// Adds the changes to `stats` (an import's counts, gathered per batch).
    /// The non-zero changes: field, value, change in its number of posts.
    #[cfg(feature = "postgres")]
    pub(super) fn changes(&self) -> impl Iterator<Item = (StatsField, &str, i64)> {
        StatsField::ALL
            .into_iter()
            .zip(&self.0)
            .flat_map(|(f, map)| map.iter().map(move |(v, d)| (f, v.as_str(), *d)))
            .filter(|(_, _, d)| *d != 0)
    }

    pub(super) fn fold_into(self, stats: &mut PostStats) {
        for (f, map) in StatsField::ALL.into_iter().zip(self.0) {
            let by = stats.counts.entry(f).or_default();
            for (value, d) in map {
                let n = by
                    .get(&value)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add_signed(d);
                if n == 0 {
                    by.remove(&value);
                } else {
                    by.insert(value, n);
                }
            }
        }
    }

    /// Puts the new values of the changed counters into `batch` (a counter at 0 is
    /// deleted) and returns them, to publish once the batch is written.
    pub(super) fn put(
        &self,
        meta: &ColumnFamily,
        now: &PostStats,
        batch: &mut WriteBatch,
    ) -> Vec<(StatsField, String, u64)> {
        let mut out = Vec::new();
        for (f, map) in StatsField::ALL.into_iter().zip(&self.0) {
            for (value, d) in map.iter().filter(|(_, d)| **d != 0) {
                let old = now.counts.get(&f).and_then(|m| m.get(value)).copied();
                let new = old.unwrap_or(0).saturating_add_signed(*d);
                let key = schema::stats_key(f.name(), value);
                if new == 0 {
                    batch.delete_cf(meta, key);
                } else {
                    batch.put_cf(meta, key, new.to_be_bytes());
                }
                out.push((f, value.clone(), new));
            }
        }
        out
    }
}

/// Applies counters returned by [`StatsDelta::put`].
pub(super) fn publish(stats: &mut PostStats, values: Vec<(StatsField, String, u64)>) {
    for (f, value, n) in values {
        let by = stats.counts.entry(f).or_default();
        if n == 0 {
            by.remove(&value);
        } else {
            by.insert(value, n);
        }
    }
}

/// The stored counters; `None` when this data directory has none yet.
pub(super) fn read(db: &DB) -> Result<Option<PostStats>, StoreError> {
    let meta = super::rocks::handle(db, schema::CF_META)?;
    if db
        .get_pinned_cf(meta, schema::META_STATS_VERSION)?
        .is_none()
    {
        return Ok(None);
    }
    let mut stats = PostStats::default();
    let prefix = schema::META_STATS_PREFIX.as_bytes();
    for item in db.prefix_iterator_cf(meta, prefix) {
        let (k, v) = item?;
        if !k.starts_with(prefix) {
            break;
        }
        let (field, value) = schema::decode_stats_key(&k)?;
        let f = StatsField::from_name(&field)
            .ok_or_else(|| schema::Corrupt(format!("unknown statistics field {field}")))?;
        let n = u64::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| schema::Corrupt("statistics counter is not 8 bytes".into()))?,
        );
        stats.counts.entry(f).or_default().insert(value, n);
    }
    Ok(Some(stats))
}

/// Counts every post (for a data directory written before the counters existed).
pub(super) fn scan(db: &DB) -> Result<PostStats, StoreError> {
    let cf = super::rocks::handle(db, schema::CF_ENGAGEMENTS)?;
    let mut stats = PostStats::default();
    for item in db.iterator_cf(cf, IteratorMode::Start) {
        let (k, _) = item?;
        stats.add(&schema::key_parts(&k)?, 1);
    }
    Ok(stats)
}
