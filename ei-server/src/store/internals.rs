//! RocksDB's own state for `/metrics`: write stalls, compaction debt, memtables,
//! block cache and SST bytes per level, read from RocksDB properties and the live
//! file list. Plain numbers leave this module, so `rocksdb::` stays in the store.

use super::{schema, Store};
use rocksdb::DB;

/// The column families reported, in schema order.
const COLUMN_FAMILIES: [&str; 4] = [
    schema::CF_ENGAGEMENTS,
    schema::CF_META,
    schema::CF_OUTBOX,
    schema::CF_DEAD_LETTERS,
];

/// RocksDB's levels (its default `num_levels`, which the store keeps).
pub const LEVELS: usize = 7;

/// One reading of the engine's internals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// 1 while RocksDB stops writes (too many L0 files, memtables or compaction debt).
    pub write_stopped: u64,
    /// The rate writes are slowed to, in bytes/s; 0 while writes are not delayed.
    pub delayed_write_rate: u64,
    /// Compactions and flushes running now.
    pub running_compactions: u64,
    pub running_flushes: u64,
    /// The `engagements` block cache: bytes in use, of which pinned, and capacity.
    pub block_cache_usage: u64,
    pub block_cache_pinned: u64,
    pub block_cache_capacity: u64,
    pub column_families: Vec<CfStats>,
}

/// One column family's share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CfStats {
    pub name: &'static str,
    /// Active and unflushed immutable memtables, bytes.
    pub memtable_bytes: u64,
    /// Bytes compaction must rewrite to bring every level under its target.
    pub pending_compaction_bytes: u64,
    /// Write stalls since the store opened: delays (slowed writes) and stops.
    pub stall_delays: u64,
    pub stall_stops: u64,
    /// SST files and bytes per level, index = level.
    pub level_files: [u64; LEVELS],
    pub level_bytes: [u64; LEVELS],
}

impl Store {
    /// Reads the engine's internals (cheap: properties and the file list, no I/O).
    pub fn engine_stats(&self) -> EngineStats {
        let Ok(db) = self.db() else {
            return EngineStats::default();
        };
        let db = &**db;
        let int = |name: &str| db.property_int_value(name).ok().flatten().unwrap_or(0);
        let mut stats = EngineStats {
            write_stopped: int("rocksdb.is-write-stopped"),
            delayed_write_rate: int("rocksdb.actual-delayed-write-rate"),
            running_compactions: int("rocksdb.num-running-compactions"),
            running_flushes: int("rocksdb.num-running-flushes"),
            ..EngineStats::default()
        };
        if let Some(cf) = db.cf_handle(schema::CF_ENGAGEMENTS) {
            let cf_int = |name: &str| {
                db.property_int_value_cf(cf, name)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            stats.block_cache_usage = cf_int("rocksdb.block-cache-usage");
            stats.block_cache_pinned = cf_int("rocksdb.block-cache-pinned-usage");
            stats.block_cache_capacity = cf_int("rocksdb.block-cache-capacity");
        }
        stats.column_families = COLUMN_FAMILIES
            .iter()
            .filter_map(|name| cf_stats(db, name))
            .collect();
        add_live_files(db, &mut stats.column_families);
        stats
    }
}

fn cf_stats(db: &DB, name: &'static str) -> Option<CfStats> {
    let cf = db.cf_handle(name)?;
    let int = |p: &str| db.property_int_value_cf(cf, p).ok().flatten().unwrap_or(0);
    let stalls = db
        .property_value_cf(cf, "rocksdb.cf-write-stall-stats")
        .ok()
        .flatten()
        .unwrap_or_default();
    Some(CfStats {
        name,
        memtable_bytes: int("rocksdb.cur-size-all-mem-tables"),
        pending_compaction_bytes: int("rocksdb.estimate-pending-compaction-bytes"),
        stall_delays: stall_count(&stalls, "total-delays"),
        stall_stops: stall_count(&stalls, "total-stops"),
        ..CfStats::default()
    })
}

/// Sums the live SST files into their column family's levels.
fn add_live_files(db: &DB, cfs: &mut [CfStats]) {
    let Ok(files) = db.live_files() else { return };
    for f in files {
        let Some(cf) = cfs.iter_mut().find(|c| c.name == f.column_family_name) else {
            continue;
        };
        let level = usize::try_from(f.level).unwrap_or(0).min(LEVELS - 1);
        cf.level_files[level] += 1;
        cf.level_bytes[level] += f.size as u64;
    }
}

/// One counter of `rocksdb.cf-write-stall-stats`, whose text reads
/// `Write Stall (count): key: n, key: n, ...` (0 when absent).
fn stall_count(text: &str, key: &str) -> u64 {
    let body = text.split_once("):").map_or(text, |(_, b)| b);
    body.split(',')
        .filter_map(|pair| pair.split_once(':'))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::store::StoreOptions;
    use std::sync::Arc;

    #[test]
    fn stall_counters_are_read_from_rocksdb_text() {
        let text = "Write Stall (count): l0-file-count-limit-delays: 3, \
                    memtable-limit-stops: 1, total-delays: 7, total-stops: 2\n";
        assert_eq!(stall_count(text, "total-delays"), 7);
        assert_eq!(stall_count(text, "total-stops"), 2);
        assert_eq!(stall_count(text, "missing"), 0);
        assert_eq!(stall_count("", "total-stops"), 0);
    }

    #[test]
    fn a_fresh_store_reports_its_cache_memtables_and_flushed_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = StoreOptions::new("own");
        opts.block_cache_bytes = 8 << 20;
        let store = Store::open(dir.path(), opts, Arc::new(Metrics::default())).unwrap();
        let before = store.engine_stats();
        assert_eq!(before.block_cache_capacity, 8 << 20);
        assert_eq!(before.write_stopped, 0);
        let names: Vec<_> = before.column_families.iter().map(|c| c.name).collect();
        assert_eq!(names, COLUMN_FAMILIES);
        // The schema version is written at open: the meta memtable holds it.
        assert!(before.column_families[1].memtable_bytes > 0);
        assert_eq!(store.queue_depth(), 0);
        assert_eq!(before.column_families[1].level_files, [0; LEVELS]);
        // A flush turns it into an SST file on level 0 with its bytes counted.
        let db = store.db().unwrap();
        db.flush_cf(db.cf().meta).unwrap();
        let after = store.engine_stats();
        let meta = &after.column_families[1];
        assert_eq!(meta.level_files[0], 1);
        assert!(meta.level_bytes[0] > 0);
        store.close();
    }
}
