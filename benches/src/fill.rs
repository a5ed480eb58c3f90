//! A large index with a region's variety, fast (`ei-fill`): posts are generated in
//! key order (residents ascending, each resident's posts sorted), written as SST
//! files with the store's own table options and zstd (what compaction leaves in the
//! bottommost level) and ingested whole into an empty store, as `ei-server import`
//! ingests, but without import's sort and run files, which at 100 M posts would need
//! about 20 GB of temporary disk. The post count goes into `meta`; the store counts
//! its statistics at the first open (one full scan, timed and reported here, so a
//! server started afterwards starts as one that has them).
//!
//! Variety per resident (ids `2` + 11 digits, above ei-load's `19…` residents so
//! both data sets can live in one index): 1–4 of 25 service domains, 1–4 posts per
//! domain (6.25 posts per resident on average), 12 categorizations, 5,000 logical
//! addresses, 3,000 source systems, 300 data controllers, UUID business object ids,
//! a clinicalProcessInterestId on one post in ten, another owner on one in twenty,
//! timestamps spread over ten years.

use crate::data::INDEX_HSA_ID;
use ei_server::model::Engagement;
use ei_server::rules;
use ei_server::store::schema::{encode_key, encode_value, CF_ENGAGEMENTS, CF_META};
use ei_server::store::{Store, StoreOptions};
use rocksdb::{DBCompressionType, IngestExternalFileOptions, SstFileWriter, WriteOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::gen::CATEGORIES;

const DOMAINS: usize = crate::gen::DOMAINS.len();

/// What a fill did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FillReport {
    pub posts: u64,
    pub residents: u64,
    pub sst_files: usize,
    /// Generating and writing the files.
    pub write_secs: f64,
    pub ingest_secs: f64,
    /// The store's first open (counts the statistics with a full scan).
    pub first_open_secs: f64,
    pub disk_bytes: u64,
}

/// Fills the empty store in `dir` with about `posts` posts (whole residents, 6.25
/// posts each on average).
pub fn fill(dir: &Path, posts: u64, seed: u64, threads: usize) -> anyhow::Result<FillReport> {
    let opts = StoreOptions::new(INDEX_HSA_ID);
    let metrics = std::sync::Arc::new(ei_server::metrics::Metrics::default());
    let store = Store::open(dir, opts.clone(), metrics.clone())?;
    anyhow::ensure!(
        store.engagement_count() == 0,
        "{} is not an empty store",
        dir.display()
    );
    store.close();
    drop(store);
    // 2.5 domains × 2.5 posts per resident on average.
    let residents = (posts * 4).div_ceil(25).max(1);
    let threads = threads.max(1) as u64;
    let started = Instant::now();
    let parts: Vec<anyhow::Result<(Vec<PathBuf>, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = residents * t / threads..residents * (t + 1) / threads;
                s.spawn(move || write_range(dir, range, seed ^ (t + 1), t))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a fill thread panicked"))
            .collect()
    });
    let (mut files, mut total) = (Vec::new(), 0);
    for p in parts {
        let (f, n) = p?;
        files.extend(f);
        total += n;
    }
    let write_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    {
        let db = crate::raw::open(dir, 8 << 20)?;
        let cf = db.cf_handle(CF_ENGAGEMENTS).expect("engagements");
        let mut io = IngestExternalFileOptions::default();
        io.set_move_files(true);
        db.ingest_external_file_cf_opts(cf, &io, files.clone())?;
        let meta = db.cf_handle(CF_META).expect("meta");
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let count = ei_server::store::schema::META_ENGAGEMENT_COUNT;
        db.put_cf_opt(meta, count, total.to_be_bytes(), &wo)?;
        // The empty store's statistics (all zero) are stale now: without their
        // version key the store counts them afresh at its next open.
        let stats = ei_server::store::schema::META_STATS_VERSION;
        db.delete_cf_opt(meta, stats, &wo)?;
        db.flush_cf(meta)?;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    Store::open(dir, opts, metrics)?.close();
    Ok(FillReport {
        posts: total,
        residents,
        sst_files: files.len(),
        write_secs,
        ingest_secs,
        first_open_secs: started.elapsed().as_secs_f64(),
        disk_bytes: crate::raw::dir_size(dir),
    })
}

/// Writes residents `range` into SST files of about 256 MiB (before compression).
fn write_range(
    dir: &Path,
    range: std::ops::Range<u64>,
    seed: u64,
    thread: u64,
) -> anyhow::Result<(Vec<PathBuf>, u64)> {
    let table = ei_server::store::table_options(8 << 20);
    let mut opts = ei_server::store::engagements_options(&table);
    opts.set_compression_type(DBCompressionType::Zstd);
    let mut g = Variety::new(seed);
    let (mut files, mut posts, mut bytes) = (Vec::new(), 0u64, 0u64);
    let mut writer: Option<SstFileWriter> = None;
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(16);
    for r in range {
        entries.clear();
        for e in g.resident(r) {
            entries.push((encode_key(&e.key), encode_value(&e)));
        }
        entries.sort_unstable();
        if writer.is_none() {
            let path = dir.join(format!("fill-{thread}-{}.sst", files.len()));
            let w = SstFileWriter::create(&opts);
            w.open(&path)?;
            files.push(path);
            writer = Some(w);
        }
        let w = writer.as_mut().expect("opened above");
        for (k, v) in &entries {
            w.put(k, v)?;
            bytes += (k.len() + v.len()) as u64;
        }
        posts += entries.len() as u64;
        if bytes >= 256 << 20 {
            writer.take().expect("open").finish()?;
            bytes = 0;
        }
    }
    if let Some(mut w) = writer {
        w.finish()?;
    }
    Ok((files, posts))
}

/// Pseudo-random choices (xorshift64*), deterministic per seed.
struct Variety {
    state: u64,
}

impl Variety {
    fn new(seed: u64) -> Variety {
        Variety {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A valid timestamp within ten years.
    fn time(&mut self) -> ei_server::model::Timestamp {
        let v = self.next();
        let n = (2015 + v % 10) * 10_000_000_000
            + (1 + (v >> 8) % 12) * 100_000_000
            + (1 + (v >> 16) % 28) * 1_000_000
            + ((v >> 24) % 24) * 10_000
            + ((v >> 32) % 60) * 100
            + (v >> 40) % 60;
        ei_server::model::Timestamp::from_u64(n).expect("valid by construction")
    }

    /// The posts of resident `r` (id `2` + 11 digits, ascending with `r`).
    fn resident(&mut self, r: u64) -> Vec<Engagement> {
        let resident = format!("{:012}", 200_000_000_000 + r * 37);
        let domains = 1 + self.below(4);
        let first = self.below(DOMAINS as u64);
        let mut out = Vec::with_capacity(16);
        for d in 0..domains {
            let domain = format!("riv:clinicalprocess:domain{:02}", (first + d * 7) % 25);
            for _ in 0..1 + self.below(4) {
                out.push(self.post(&resident, &domain));
            }
        }
        out
    }

    fn post(&mut self, resident: &str, domain: &str) -> Engagement {
        let (a, b) = (self.next(), self.next());
        let boi = format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 50),
            b & 0xffff_ffff_ffff
        );
        let cpi = if self.below(10) == 0 {
            format!(
                "{:032x}",
                u128::from(self.next()) << 64 | u128::from(self.next())
            )
        } else {
            "NA".to_owned()
        };
        let owner = if self.below(20) == 0 {
            "SE2321000016-EI2".to_owned()
        } else {
            INDEX_HSA_ID.to_owned()
        };
        let parts = [
            resident.to_owned(),
            domain.to_owned(),
            CATEGORIES[self.below(CATEGORIES.len() as u64) as usize].to_owned(),
            format!("SE2321000{:03}-{:04X}", self.below(21), self.below(5000)),
            boi,
            cpi,
            format!(
                "SE{:010}-S{:04}",
                2_321_000_000 + self.below(30),
                self.below(3000)
            ),
            format!("SE2321000016-D{:03}", self.below(300)),
            owner,
        ];
        let key = rules::key_from_parts(parts).expect("valid key by construction");
        let creation = self.time();
        let update = (self.below(3) == 0).then(|| self.time());
        Engagement {
            key,
            most_recent_content: Some(self.time()),
            creation_time: Some(creation),
            update_time: update,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_an_empty_store_that_then_finds_its_posts() {
        let dir = tempfile::tempdir().unwrap();
        let report = fill(dir.path(), 2000, 7, 2).unwrap();
        assert!(report.posts >= 250, "{report:?}");
        let metrics = std::sync::Arc::new(ei_server::metrics::Metrics::default());
        let store = Store::open(dir.path(), StoreOptions::new(INDEX_HSA_ID), metrics).unwrap();
        assert_eq!(store.engagement_count(), report.posts);
        let stats = store.stats();
        let by_domain: u64 = stats
            .of(ei_server::store::stats::StatsField::ServiceDomain)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(
            by_domain, report.posts,
            "statistics counted at the first open"
        );
        let mut g = Variety::new(7 ^ 1);
        let first = g.resident(0);
        let q = ei_server::model::FindQuery {
            registered_resident_identification: first[0]
                .key
                .registered_resident_identification()
                .into(),
            service_domain: first[0].key.service_domain().into(),
            categorization: None,
            filters: Vec::new(),
            most_recent_content: None,
        };
        let found = store.find(&q).unwrap();
        let want = first
            .iter()
            .filter(|e| e.key.service_domain() == q.service_domain)
            .count();
        assert_eq!(found.len(), want);
        assert!(found.iter().all(|e| first.contains(e)));
        store.close();
    }
}
