//! How much WAL the store's write pattern keeps: `N` batches of 1000 sample posts plus
//! the one `meta` put every group commit adds, on RocksDB with the store's options,
//! with the default `max_total_wal_size` and with a bound. Prints Markdown.
//!
//! `cargo run --release -p ei-benches --example wal_retention -- 1000`

use ei_benches::data::{Posts, SAMPLE_MRC};
use ei_benches::raw;
use ei_server::store::schema::{encode_key, encode_value};
use rocksdb::DB;
use std::path::Path;

fn wal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn run(bodies: u64, max_total_wal: Option<u64>) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let (mut opts, cfs) = raw::options(dir.path(), 128 << 20);
    if let Some(m) = max_total_wal {
        opts.set_max_total_wal_size(m);
    }
    let db = DB::open_cf_descriptors(&opts, dir.path(), cfs).unwrap();
    let posts = Posts::new();
    for k in 0..bodies {
        let entries: Vec<_> = posts
            .body(k, SAMPLE_MRC)
            .into_iter()
            .map(|t| (encode_key(&t.engagement.key), encode_value(&t.engagement)))
            .collect();
        raw::write_batch(&db, &entries, false).unwrap();
    }
    db.flush_wal(true).unwrap();
    // Let background flushes finish and obsolete WAL files go.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let sizes = (wal_bytes(dir.path()), raw::dir_size(dir.path()));
    drop(db);
    sizes
}

fn main() {
    let bodies: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("| max_total_wal_size | posts | WAL MiB | data dir MiB |\n|---|---:|---:|---:|");
    for (name, m) in [("default (0)", None), ("64 MiB", Some(64 << 20))] {
        let (wal, total) = run(bodies, m);
        println!(
            "| {name} | {} | {:.1} | {:.1} |",
            bodies * 1000,
            mib(wal),
            mib(total)
        );
    }
}
