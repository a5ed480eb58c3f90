//! Store: ours (`ei_server::store::Store`) beside raw RocksDB on the same data
//! directory, keys and values.
//!
//! One pre-loaded index (`EI_BENCH_POSTS`, default 100 000 posts of the 1000-post
//! sample, plus 1000 single-post residents), flushed and fully compacted (unless
//! `EI_BENCH_COMPACT=0`), is measured in this order, so the figures that should see
//! the nominal size come before the ones that grow it:
//! 1. `find/ours_{1,10,50}` (FindContent prefix scans returning 1, 10, 50 posts),
//!    each beside `find/raw_{1,10,50}` (RocksDB opened read-only on the same files),
//!    and `find/raw_point_get`; then `update_1000_nosync/ours_{same,changed}`
//!    (identical re-sends; changed mostRecentContent on existing keys);
//! 2. raw RocksDB on the same directory: `update_1000_{sync,nosync}/raw_multiget_put_changed`;
//! 3. ours with WAL sync: `update_1000_sync/ours_{same,changed}`, then new keys
//!    `new_keys_1000_{sync,nosync}/ours` (short runs: each iteration adds 1000 posts);
//! 4. raw: `new_keys_1000_{sync,nosync}/raw_{put_batch,multiget_put}` (the batch ours
//!    writes for new keys, alone and after the multi-get ours does).
//!
//! `EI_BENCH_POSTS=1000000 cargo bench -p ei-benches --bench store`; `EI_BENCH_DIR`
//! puts the index's temp dir elsewhere; `EI_BENCH_SECS` sets each measurement's
//! seconds (default 3). Criterion filters select benchmarks but the pre-load always
//! runs.

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, Criterion, Throughput,
};
use ei_benches::data::{self, Posts};
use ei_benches::raw;
use ei_server::metrics::Metrics;
use ei_server::model::{Engagement, Timestamp, Transaction};
use ei_server::operation::WriteOperation;
use ei_server::store::schema::{encode_key, encode_value, query_prefix};
use ei_server::store::{Store, StoreOptions};
use std::cell::{Cell, RefCell};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First body number of new keys for ours, and for raw (far apart, never pre-loaded).
const OURS_NEW: u64 = 5_000_000;
const RAW_NEW: u64 = 10_000_000;
const SINGLES: u64 = 1000;

struct Bench {
    rt: tokio::runtime::Runtime,
    posts: Posts,
    bodies: u64,
    /// The mostRecentContent each pre-loaded body holds now.
    stored_mrc: RefCell<Vec<u64>>,
    next_mrc: Cell<u64>,
    next_new: Cell<u64>,
    next_raw_new: Cell<u64>,
    rng: Cell<u64>,
}

impl Bench {
    fn random(&self, n: u64) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x % n.max(1)
    }

    fn open(&self, dir: &Path, sync: bool) -> Store {
        let mut o = StoreOptions::new(data::INDEX_HSA_ID);
        o.sync = sync;
        Store::open(dir, o, Arc::new(Metrics::default())).expect("store opens")
    }

    fn write(&self, store: &Store, txs: Vec<Transaction>) -> usize {
        let now = ei_server::clock::now();
        let changes = self
            .rt
            .block_on(store.write(WriteOperation::Update, txs, now))
            .expect("write");
        changes.len()
    }

    /// A pre-loaded body whose posts get a new mostRecentContent.
    fn changed(&self) -> Vec<Transaction> {
        let k = self.random(self.bodies);
        let mrc = data::timestamp(self.next_mrc.get());
        self.next_mrc.set(self.next_mrc.get() + 1);
        self.stored_mrc.borrow_mut()[k as usize] = mrc;
        self.posts.body(k, mrc)
    }

    /// A pre-loaded body exactly as stored.
    fn same(&self) -> Vec<Transaction> {
        let k = self.random(self.bodies);
        self.posts.body(k, self.stored_mrc.borrow()[k as usize])
    }

    fn new_keys(&self) -> Vec<Transaction> {
        let k = self.next_new.get();
        self.next_new.set(k + 1);
        self.posts.body(k, data::SAMPLE_MRC)
    }

    /// The (key, value) bytes ours writes for a body of new keys.
    fn raw_new_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let k = self.next_raw_new.get();
        self.next_raw_new.set(k + 1);
        let now: Timestamp = ei_server::clock::now();
        self.posts
            .body(k, data::SAMPLE_MRC)
            .into_iter()
            .map(|t| {
                let e = Engagement {
                    creation_time: Some(now),
                    ..t.engagement
                };
                (encode_key(&e.key), encode_value(&e))
            })
            .collect()
    }

    /// The (key, value) bytes ours writes for a pre-loaded body with a changed
    /// mostRecentContent (all three timestamps set).
    fn raw_changed_entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let now: Timestamp = ei_server::clock::now();
        self.changed()
            .into_iter()
            .map(|t| {
                let e = Engagement {
                    creation_time: Some(now),
                    update_time: Some(now),
                    ..t.engagement
                };
                (encode_key(&e.key), encode_value(&e))
            })
            .collect()
    }

    /// A query returning `rows` posts: 50 = resident + domain, 10 = + categorization,
    /// 1 = a single-post resident.
    fn query(&self, rows: u64) -> ei_server::model::FindQuery {
        let r = self.random(self.bodies * data::RESIDENTS_PER_BODY);
        let d = 1 + self.random(data::DOMAINS);
        match rows {
            1 => data::query(data::single_resident(self.random(SINGLES)), 1, None),
            10 => data::query(data::resident(r), d, Some(1 + self.random(5))),
            _ => data::query(data::resident(r), d, None),
        }
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn store_benches(c: &mut Criterion) {
    let posts_wanted = env_u64("EI_BENCH_POSTS", 100_000);
    let bodies = posts_wanted.div_ceil(data::POSTS_PER_BODY).max(1);
    let b = Bench {
        rt: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime"),
        posts: Posts::new(),
        bodies,
        stored_mrc: RefCell::new(vec![data::SAMPLE_MRC; bodies as usize]),
        next_mrc: Cell::new(0),
        next_new: Cell::new(OURS_NEW),
        next_raw_new: Cell::new(RAW_NEW),
        rng: Cell::new(0x2545_F491_4F6C_DD1D),
    };
    let temp = match std::env::var_os("EI_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let dir = temp.path();

    let store = b.open(dir, false);
    preload(&b, &store);
    store.close();
    drop(store);
    if env_u64("EI_BENCH_COMPACT", 1) != 0 {
        // A long-running index is mostly compacted SST files, not memtable.
        let started = Instant::now();
        raw::compact(dir).expect("compact");
        eprintln!(
            "flushed and compacted in {:.1} s: {} bytes on disk",
            started.elapsed().as_secs_f64(),
            raw::dir_size(dir)
        );
    }

    let store = b.open(dir, false);
    let ro = raw::open_read_only(dir, 128 << 20).expect("raw read-only open");
    find(c, &b, &store, &ro);
    drop(ro);
    updates(c, &b, &store, "update_1000_nosync");
    store.close();
    drop(store);
    let db = raw::open(dir, 128 << 20).expect("raw open");
    raw_changed(c, &b, &db);
    drop(db);

    let store = b.open(dir, true);
    updates(c, &b, &store, "update_1000_sync");
    new_keys(c, &b, &store, "new_keys_1000_sync");
    store.close();
    drop(store);
    let store = b.open(dir, false);
    new_keys(c, &b, &store, "new_keys_1000_nosync");
    store.close();
    drop(store);
    let db = raw::open(dir, 128 << 20).expect("raw open");
    raw_new(c, &b, &db);
}

fn preload(b: &Bench, store: &Store) {
    let started = Instant::now();
    for k in 0..b.bodies {
        b.write(store, b.posts.body(k, data::SAMPLE_MRC));
    }
    b.write(store, b.posts.singles(0, SINGLES));
    eprintln!(
        "pre-loaded {} posts in {:.1} s ({:.0} posts/s, WAL not synced)",
        store.engagement_count(),
        started.elapsed().as_secs_f64(),
        store.engagement_count() as f64 / started.elapsed().as_secs_f64()
    );
}

/// Ours and the raw limit side by side (the raw DB is a read-only view of the same
/// files, with a cache of its own), so both see the same machine load.
fn find(c: &mut Criterion, b: &Bench, store: &Store, db: &rocksdb::DB) {
    let mut g = c.benchmark_group("find");
    g.throughput(Throughput::Elements(1));
    for rows in [1, 10, 50] {
        g.bench_function(format!("ours_{rows}"), |bn| {
            bn.iter_batched(
                || b.query(rows),
                |q| {
                    let found = store.find(&q).expect("find");
                    assert_eq!(found.len() as u64, rows);
                    found
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("raw_{rows}"), |bn| {
            bn.iter_batched(
                || query_prefix(&b.query(rows)),
                |p| assert_eq!(raw::prefix_scan(db, &p).expect("scan") as u64, rows),
                BatchSize::SmallInput,
            )
        });
    }
    g.bench_function("raw_point_get", |bn| {
        bn.iter_batched(
            || {
                b.posts
                    .store_key(b.random(b.bodies), b.random(1000) as usize)
            },
            |k| assert!(raw::get(db, &k).expect("get") > 0),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Identical re-sends and changed mostRecentContent on pre-loaded keys.
fn updates(c: &mut Criterion, b: &Bench, store: &Store, group: &str) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(data::POSTS_PER_BODY));
    g.bench_function("ours_same", |bn| {
        bn.iter_batched(|| b.same(), |t| b.write(store, t), BatchSize::PerIteration)
    });
    g.bench_function("ours_changed", |bn| {
        bn.iter_batched(
            || b.changed(),
            |t| b.write(store, t),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    eprintln!("{group}: index holds {} posts", store.engagement_count());
}

/// New keys grow the index by 1000 per iteration: short runs (`EI_BENCH_NEW_MS`).
fn short<'a>(c: &'a mut Criterion, group: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(data::POSTS_PER_BODY));
    g.warm_up_time(Duration::from_millis(200));
    g.measurement_time(Duration::from_millis(env_u64("EI_BENCH_NEW_MS", 700)));
    g
}

fn new_keys(c: &mut Criterion, b: &Bench, store: &Store, group: &str) {
    let mut g = short(c, group);
    g.bench_function("ours", |bn| {
        bn.iter_batched(
            || b.new_keys(),
            |t| b.write(store, t),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    eprintln!("{group}: index holds {} posts", store.engagement_count());
}

/// The limit for `ours_changed`: a multi-get, then the batch of changed values (19
/// bytes: three timestamps) for pre-loaded keys.
fn raw_changed(c: &mut Criterion, b: &Bench, db: &rocksdb::DB) {
    for (group, sync) in [("update_1000_sync", true), ("update_1000_nosync", false)] {
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Elements(data::POSTS_PER_BODY));
        g.bench_function("raw_multiget_put_changed", |bn| {
            bn.iter_batched(
                || b.raw_changed_entries(),
                |e| black_box(raw::read_modify_write(db, &e, sync).expect("write")),
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

/// The limits for `ours` on new keys: the same batch alone, and after a multi-get.
fn raw_new(c: &mut Criterion, b: &Bench, db: &rocksdb::DB) {
    for (group, sync) in [
        ("new_keys_1000_sync", true),
        ("new_keys_1000_nosync", false),
    ] {
        let mut g = short(c, group);
        g.bench_function("raw_put_batch", |bn| {
            bn.iter_batched(
                || b.raw_new_entries(),
                |e| raw::write_batch(db, &e, sync).expect("write"),
                BatchSize::PerIteration,
            )
        });
        g.bench_function("raw_multiget_put", |bn| {
            bn.iter_batched(
                || b.raw_new_entries(),
                |e| black_box(raw::read_modify_write(db, &e, sync).expect("write")),
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

fn config() -> Criterion {
    let secs = env_u64("EI_BENCH_SECS", 3);
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(secs))
}

criterion_group! {
    name = benches;
    config = config();
    targets = store_benches
}
criterion_main!(benches);
