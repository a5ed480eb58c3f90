//! The limits: RocksDB used directly, with the store's own options
//! (`ei_server::store::{db_options, table_options, engagements_options}`), on the
//! store's own data directory, so raw and ours touch the same keys, values and files.
//! Also small helpers about disk and memory use. `EI_BENCH_RAW_INDEX=uncached` keeps
//! index and filter blocks out of the block cache (a candidate option for the store;
//! [`compact`] rewrites every file with these options). The partitioned index that
//! `EI_BENCH_RAW_INDEX=partitioned` once tried is now the store's default.

use rocksdb::{
    BottommostLevelCompaction, ColumnFamilyDescriptor, CompactOptions, Direction, IteratorMode,
    Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use std::path::Path;

pub use ei_server::store::schema::{CF_ENGAGEMENTS, CF_META};

/// Opens a data directory the way the store does (same table, cache and compression
/// options), without the store's writer thread or schema check.
pub fn open(path: &Path, block_cache_bytes: usize) -> Result<DB, rocksdb::Error> {
    let (db_opts, cfs) = options(path, block_cache_bytes);
    DB::open_cf_descriptors(&db_opts, path, cfs)
}

/// The store's DB options and column family descriptors for `path` (see [`open`]).
pub fn options(path: &Path, block_cache_bytes: usize) -> (Options, Vec<ColumnFamilyDescriptor>) {
    let db_opts = ei_server::store::db_options();
    let mut table = ei_server::store::table_options(block_cache_bytes);
    if std::env::var("EI_BENCH_RAW_INDEX").as_deref() == Ok("uncached") {
        // The other candidate: index and filter blocks held by the table readers.
        table.set_cache_index_and_filter_blocks(false);
    }
    let cf_opts = ei_server::store::engagements_options(&table);
    // Every column family the directory has must be opened (the store may add some
    // beyond these two); the others get default options.
    let mut names = DB::list_cf(&db_opts, path).unwrap_or_default();
    for name in ["default", CF_ENGAGEMENTS, CF_META] {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    let cfs = names
        .into_iter()
        .map(|n| {
            let o = if n == CF_ENGAGEMENTS {
                cf_opts.clone()
            } else {
                Options::default()
            };
            ColumnFamilyDescriptor::new(n, o)
        })
        .collect();
    (db_opts, cfs)
}

/// Opens a data directory read-only (no lock, a snapshot of its files at open): the
/// raw limit beside an open store, for reads.
pub fn open_read_only(path: &Path, block_cache_bytes: usize) -> Result<DB, rocksdb::Error> {
    let (db_opts, cfs) = options(path, block_cache_bytes);
    DB::open_cf_descriptors_read_only(&db_opts, path, cfs, false)
}

/// A meta key as long as the store's `engagement_count`, so the raw batch carries the
/// same extra entry without touching the store's count.
const RAW_COUNT: &[u8] = b"bench_raw_count_";

/// One WriteBatch of the given entries plus a count update like the store's, written
/// with or without WAL sync.
pub fn write_batch(
    db: &DB,
    entries: &[(Vec<u8>, Vec<u8>)],
    sync: bool,
) -> Result<(), rocksdb::Error> {
    let cf = db.cf_handle(CF_ENGAGEMENTS).expect("column family exists");
    let meta = db.cf_handle(CF_META).expect("column family exists");
    let mut batch = WriteBatch::default();
    for (k, v) in entries {
        batch.put_cf(cf, k, v);
    }
    batch.put_cf(meta, RAW_COUNT, (entries.len() as u64).to_be_bytes());
    let mut wo = WriteOptions::default();
    wo.set_sync(sync);
    db.write_opt(batch, &wo)
}

/// The store's minimum work for an Update: one batched multi-get of the keys, then
/// the batch. Returns how many keys existed.
pub fn read_modify_write(
    db: &DB,
    entries: &[(Vec<u8>, Vec<u8>)],
    sync: bool,
) -> Result<usize, rocksdb::Error> {
    let cf = db.cf_handle(CF_ENGAGEMENTS).expect("column family exists");
    let mut keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
    keys.sort();
    let mut found = 0;
    for r in db.batched_multi_get_cf(cf, keys.iter(), true) {
        found += usize::from(r?.is_some());
    }
    write_batch(db, entries, sync)?;
    Ok(found)
}

/// A point get; returns the value length (0 if absent).
pub fn get(db: &DB, key: &[u8]) -> Result<usize, rocksdb::Error> {
    let cf = db.cf_handle(CF_ENGAGEMENTS).expect("column family exists");
    Ok(db.get_pinned_cf(cf, key)?.map_or(0, |v| v.len()))
}

/// A bounded prefix scan reading every key and value; returns the rows.
pub fn prefix_scan(db: &DB, prefix: &[u8]) -> Result<usize, rocksdb::Error> {
    let cf = db.cf_handle(CF_ENGAGEMENTS).expect("column family exists");
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(ei_server::store::schema::prefix_upper_bound(prefix));
    let mut rows = 0;
    let mut bytes = 0;
    for item in db.iterator_cf_opt(cf, ro, IteratorMode::From(prefix, Direction::Forward)) {
        let (k, v) = item?;
        bytes += k.len() + v.len();
        rows += 1;
    }
    std::hint::black_box(bytes);
    Ok(rows)
}

/// Flushes the memtables and rewrites every file (the bottommost level too, so the
/// files take this open's table options): the size a quiet index settles at.
pub fn compact(path: &Path) -> Result<(), rocksdb::Error> {
    let db = open(path, 8 << 20)?;
    let mut opts = CompactOptions::default();
    opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
    for name in DB::list_cf(&Options::default(), path)? {
        let cf = db.cf_handle(&name).expect("column family exists");
        db.flush_cf(cf)?;
        db.compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
    }
    Ok(())
}

/// Bytes of all files below `path`.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Peak resident set size of a process in bytes (`VmHWM` of `/proc/PID/status`).
pub fn peak_rss(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time (user + system) this process (or process `pid`) has used so far, in
/// seconds.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_on_a_temp_dir() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), 1 << 20).unwrap();
        let entries: Vec<_> = (0..10u8)
            .map(|i| (vec![b'a', 0, 1, i], vec![i; 19]))
            .collect();
        write_batch(&db, &entries, false).unwrap();
        assert_eq!(read_modify_write(&db, &entries, false).unwrap(), 10);
        assert_eq!(get(&db, &entries[3].0).unwrap(), 19);
        assert_eq!(prefix_scan(&db, &[b'a', 0, 1]).unwrap(), 10);
        drop(db);
        compact(dir.path()).unwrap();
        assert!(dir_size(dir.path()) > 0);
        assert!(peak_rss(None).unwrap() > 0);
        assert!(cpu_seconds(None).unwrap() >= 0.0);
        let me = std::process::id();
        assert!(cpu_seconds(Some(me)).unwrap() >= 0.0);
    }
}
