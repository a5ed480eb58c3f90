//! Bulk import into an **empty** store, beside the write path: posts arrive in
//! sorted batches ([`BatchBuilder`], built on the caller's threads), are kept in
//! memory up to a budget and spilled to sorted run files beyond it, then merged in
//! key order into SST files that RocksDB ingests whole (no WAL, no memtable, no
//! compaction). The merges run on every core: sample keys of the batches cut the key
//! space into one range per thread, and each range is merged into its own run and
//! SST files (the ranges do not overlap, so their files ingest together). The SST
//! files are LZ4-compressed (zstd, the bottommost level's choice, would cost a fifth
//! of the import's CPU time); a compaction that reaches them rewrites them with zstd.
//! The merge sees equal keys side by side, so duplicates are found there; it also
//! counts the posts and the statistics, which are written to `meta` with the count
//! after ingestion.
//!
//! A record in a batch or run file is `[key length u16 BE][key][value length
//! u8][value][file u32 BE][line u64 BE]`: the store's own key and value bytes
//! ([`super::schema`]) and where the post came from.

use super::stats::{PostStats, StatsDelta};
use super::{engagements_options, open_db, schema, table_options, StoreError, StoreOptions};
use crate::model::Engagement;
use rocksdb::{
    IngestExternalFileOptions, IteratorMode, SstFileWriter, WriteBatch, WriteOptions, DB,
};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Where a post came from: the input file's number and the line in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub file: u32,
    pub line: u64,
}

/// A key that more than one input line holds; the first (lowest origin) is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Duplicate {
    pub at: Origin,
    pub first: Origin,
}

/// Why an import could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the store in {path} is not empty ({posts} posts): import only loads an empty store")]
    NotEmpty { path: PathBuf, posts: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("temporary import files in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<rocksdb::Error> for ImportError {
    fn from(e: rocksdb::Error) -> Self {
        ImportError::Store(StoreError::Rocks(e))
    }
}

/// Tuning of an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Bytes of sorted batches kept in memory before they are spilled to a run file.
    pub memory_bytes: usize,
    /// Target size of one ingested SST file (key and value bytes before compression).
    pub sst_bytes: u64,
    /// Threads of the merges: the key space is cut into this many ranges, merged
    /// side by side into their own run and SST files.
    pub threads: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            memory_bytes: 1 << 30,
            sst_bytes: 256 << 20,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Collects posts, then sorts them into one batch (on the caller's thread).
#[derive(Default)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    /// Start of each record in `buf`.
    starts: Vec<u32>,
    /// The batch's posts counted for the statistics (on the caller's thread).
    stats: StatsDelta,
}

impl BatchBuilder {
    pub fn with_capacity(posts: usize) -> BatchBuilder {
        BatchBuilder {
            buf: Vec::with_capacity(posts * 200),
            starts: Vec::with_capacity(posts),
            stats: StatsDelta::default(),
        }
    }

    /// Adds a valid post (its key fields are at most 1,400 bytes: always fits u16;
    /// its value at most 19).
    pub fn push(&mut self, e: &Engagement, at: Origin) {
        let start = self.buf.len();
        self.starts.push(start as u32);
        self.buf.extend_from_slice(&[0, 0]);
        schema::encode_key_into(&mut self.buf, &e.key);
        let klen = (self.buf.len() - start - 2) as u16;
        self.buf[start..start + 2].copy_from_slice(&klen.to_be_bytes());
        let vpos = self.buf.len();
        self.buf.push(0);
        schema::encode_value_into(&mut self.buf, e);
        self.buf[vpos] = (self.buf.len() - vpos - 1) as u8;
        self.buf.extend_from_slice(&at.file.to_be_bytes());
        self.buf.extend_from_slice(&at.line.to_be_bytes());
        self.stats.add(e.key.parts(), 1);
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The posts in key order (then input order).
    pub fn finish(self) -> SortedBatch {
        let buf = &self.buf;
        // Each record's start and its key, so comparisons read no lengths.
        let mut order: Vec<(u32, &[u8])> = self
            .starts
            .iter()
            .map(|&s| {
                let s = s as usize;
                let klen = u16::from_be_bytes([buf[s], buf[s + 1]]) as usize;
                (s as u32, &buf[s + 2..s + 2 + klen])
            })
            .collect();
        order.sort_unstable_by(|a, b| {
            a.1.cmp(b.1).then_with(|| {
                let origin = |s: u32| record_at(buf, s as usize).0.origin;
                origin(a.0).cmp(&origin(b.0))
            })
        });
        let mut out = Vec::with_capacity(buf.len());
        let mut starts = Vec::with_capacity(order.len());
        let mut samples = Vec::with_capacity(order.len() / SAMPLE_EVERY + 1);
        for (i, (start, _)) in order.iter().enumerate() {
            let (r, _) = record_at(buf, *start as usize);
            starts.push(out.len() as u32);
            if i % SAMPLE_EVERY == 0 {
                samples.push(r.key.to_vec());
            }
            push_record(&mut out, r.key, r.value, r.origin);
        }
        SortedBatch {
            buf: out,
            starts,
            samples,
            stats: self.stats,
        }
    }
}

/// One key in this many of a sorted batch is kept as a sample, to cut the key space
/// into ranges of about equal size for the merges.
const SAMPLE_EVERY: usize = 128;

/// Posts sorted by store key, as records (see the module doc).
pub struct SortedBatch {
    buf: Vec<u8>,
    /// Start of each record in `buf`, in key order.
    starts: Vec<u32>,
    /// Some of the keys (see [`SAMPLE_EVERY`]).
    samples: Vec<Vec<u8>>,
    stats: StatsDelta,
}

impl SortedBatch {
    pub fn posts(&self) -> usize {
        self.starts.len()
    }

    /// Bytes held.
    fn size(&self) -> usize {
        self.buf.len() + 4 * self.starts.len() + self.samples.iter().map(Vec::len).sum::<usize>()
    }

    /// The position of the first record whose key is not below `key` (the end of the
    /// buffer for `None` or when every key is below).
    fn seek(&self, key: Option<&[u8]>) -> usize {
        let Some(key) = key else {
            return self.buf.len();
        };
        let i = self
            .starts
            .partition_point(|&s| record_at(&self.buf, s as usize).0.key < key);
        self.starts.get(i).map_or(self.buf.len(), |&s| s as usize)
    }

    /// This batch's records in `range` as a merge source.
    fn source(&self, range: &Range<'_>) -> Source<'_> {
        Source::Memory {
            buf: &self.buf,
            pos: range.lo.map_or(0, |lo| self.seek(Some(lo))),
            end: self.seek(range.hi),
        }
    }
}

/// A range of keys, `lo` included, `hi` not (`None`: unbounded).
struct Range<'a> {
    index: usize,
    lo: Option<&'a [u8]>,
    hi: Option<&'a [u8]>,
}

/// Runs `f` on each range that `splits` cut the key space into, each on its own
/// thread; the results in range order.
fn in_ranges<T: Send>(
    splits: &[Vec<u8>],
    f: impl Fn(&Range<'_>) -> Result<T, ImportError> + Sync,
) -> Result<Vec<T>, ImportError> {
    let ranges: Vec<Range<'_>> = (0..=splits.len())
        .map(|index| Range {
            index,
            lo: index.checked_sub(1).map(|i| splits[i].as_slice()),
            hi: splits.get(index).map(Vec::as_slice),
        })
        .collect();
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = ranges.iter().map(|r| scope.spawn(move || f(r))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn push_record(out: &mut Vec<u8>, key: &[u8], value: &[u8], at: Origin) {
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
    out.extend_from_slice(&at.file.to_be_bytes());
    out.extend_from_slice(&at.line.to_be_bytes());
}

struct RecordRef<'a> {
    key: &'a [u8],
    value: &'a [u8],
    origin: Origin,
}

/// The record starting at `pos` and the position after it (records are written by
/// [`push_record`] only, so the layout holds).
fn record_at(buf: &[u8], pos: usize) -> (RecordRef<'_>, usize) {
    let klen = u16::from_be_bytes([buf[pos], buf[pos + 1]]) as usize;
    let key = &buf[pos + 2..pos + 2 + klen];
    let vpos = pos + 2 + klen;
    let vlen = buf[vpos] as usize;
    let value = &buf[vpos + 1..vpos + 1 + vlen];
    let o = vpos + 1 + vlen;
    let file = u32::from_be_bytes(buf[o..o + 4].try_into().expect("4 bytes"));
    let line = u64::from_be_bytes(buf[o + 4..o + 12].try_into().expect("8 bytes"));
    (
        RecordRef {
            key,
            value,
            origin: Origin { file, line },
        },
        o + 12,
    )
}

/// One sorted input of the merge: (a range of) a batch in memory or a run file.
enum Source<'a> {
    Memory {
        buf: &'a [u8],
        pos: usize,
        end: usize,
    },
    File {
        reader: BufReader<File>,
        record: Vec<u8>,
    },
}

impl Source<'_> {
    /// The current record; `None` when done.
    fn current(&self) -> Option<RecordRef<'_>> {
        match self {
            Source::Memory { buf, pos, end } => (*pos < *end).then(|| record_at(buf, *pos).0),
            Source::File { record, .. } => (!record.is_empty()).then(|| record_at(record, 0).0),
        }
    }

    fn advance(&mut self) -> std::io::Result<()> {
        match self {
            Source::Memory { buf, pos, .. } => {
                *pos = record_at(buf, *pos).1;
                Ok(())
            }
            Source::File { reader, record } => read_record(reader, record),
        }
    }
}

/// Reads the next record of a run file into `record` (emptied at the end).
fn read_record(reader: &mut BufReader<File>, record: &mut Vec<u8>) -> std::io::Result<()> {
    record.clear();
    let mut klen = [0u8; 2];
    match reader.read_exact(&mut klen) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
        other => other?,
    }
    let klen = u16::from_be_bytes(klen) as usize;
    record.extend_from_slice(&(klen as u16).to_be_bytes());
    record.resize(2 + klen + 1, 0);
    reader.read_exact(&mut record[2..])?;
    let vlen = record[2 + klen] as usize;
    let start = record.len();
    record.resize(start + vlen + 12, 0);
    reader.read_exact(&mut record[start..])
}

/// Merges sources in key order, calling `f` with each record (equal keys in origin
/// order).
fn merge(
    mut sources: Vec<Source<'_>>,
    mut f: impl FnMut(&RecordRef<'_>) -> Result<(), ImportError>,
    io_path: &Path,
) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: io_path.to_owned(),
        source,
    };
    // Heap entries own a copy of the source's current key and origin; the buffers are
    // reused, so the merge allocates nothing per record.
    let mut heap = BinaryHeap::with_capacity(sources.len());
    for (i, s) in sources.iter().enumerate() {
        if let Some(r) = s.current() {
            heap.push(Reverse((r.key.to_vec(), r.origin, i)));
        }
    }
    while let Some(Reverse((mut key, _, i))) = heap.pop() {
        let s = &mut sources[i];
        f(&s.current().expect("a source in the heap has a record"))?;
        s.advance().map_err(io)?;
        if let Some(r) = s.current() {
            key.clear();
            key.extend_from_slice(r.key);
            heap.push(Reverse((key, r.origin, i)));
        }
    }
    Ok(())
}

/// An import in progress: the store is open and empty; posts are being collected.
pub struct Importer {
    db: DB,
    path: PathBuf,
    options: ImportOptions,
    temp: tempfile::TempDir,
    memory: Vec<SortedBatch>,
    memory_bytes: usize,
    /// Sample keys of every batch added.
    samples: Vec<Vec<u8>>,
    /// The keys that cut the key space into the merges' ranges, chosen from the
    /// samples at the first spill (or at [`Importer::prepare`]), then kept.
    splits: Option<Vec<Vec<u8>>>,
    /// Each spill's run files, one per range.
    runs: Vec<Vec<PathBuf>>,
    /// Every added post counted (duplicates are taken out in the merge).
    stats: PostStats,
}

/// The posts merged into SST files, waiting to be ingested (or dropped).
pub struct Prepared {
    importer: Importer,
    files: Vec<PathBuf>,
    /// Distinct posts in the files.
    pub posts: u64,
    pub stats: PostStats,
    /// Keys that more than one line holds (the first is in the files).
    pub duplicates: Vec<Duplicate>,
}

/// One range's part of [`Importer::prepare`].
struct RangeOutput {
    files: Vec<PathBuf>,
    posts: u64,
    duplicates: Vec<Duplicate>,
    /// The duplicates taken out of the counts.
    stats: StatsDelta,
}

impl Importer {
    /// Opens (creating when missing) the store in `path` and checks that it holds no
    /// post. Temporary files go to a directory inside it.
    pub fn open_empty(path: &Path, options: ImportOptions) -> Result<Importer, ImportError> {
        std::fs::create_dir_all(path).map_err(|source| ImportError::Io {
            path: path.to_owned(),
            source,
        })?;
        let db = open_db(path, &StoreOptions::new(""))?;
        super::check_schema(&db, path)?;
        let posts = super::read_count(&db)?;
        let cf = db
            .cf_handle(schema::CF_ENGAGEMENTS)
            .expect("column family exists");
        let any = db.iterator_cf(cf, IteratorMode::Start).next().transpose()?;
        if posts > 0 || any.is_some() {
            return Err(ImportError::NotEmpty {
                path: path.to_owned(),
                posts: posts.max(1),
            });
        }
        let temp = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(path)
            .map_err(|source| ImportError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(Importer {
            db,
            path: path.to_owned(),
            options,
            temp,
            memory: Vec::new(),
            memory_bytes: 0,
            samples: Vec::new(),
            splits: None,
            runs: Vec::new(),
            stats: PostStats::default(),
        })
    }

    /// Takes one sorted batch; spills the batches in memory to run files when they
    /// pass the memory budget.
    pub fn add(&mut self, mut batch: SortedBatch) -> Result<(), ImportError> {
        std::mem::take(&mut batch.stats).fold_into(&mut self.stats);
        self.memory_bytes += batch.size();
        self.samples.append(&mut batch.samples);
        self.memory.push(batch);
        if self.memory_bytes > self.options.memory_bytes {
            self.spill()?;
        }
        Ok(())
    }

    /// The split keys: `threads - 1` quantiles of the samples, chosen once.
    fn splits(&mut self) -> Vec<Vec<u8>> {
        if let Some(s) = &self.splits {
            return s.clone();
        }
        let mut samples = std::mem::take(&mut self.samples);
        samples.sort_unstable();
        let n = self.options.threads.max(1);
        let mut splits: Vec<Vec<u8>> = (1..n)
            .filter_map(|i| samples.get(samples.len() * i / n).cloned())
            .collect();
        splits.dedup();
        self.splits = Some(splits.clone());
        splits
    }

    /// Merges the batches in memory into one run file per range (side by side).
    fn spill(&mut self) -> Result<(), ImportError> {
        let splits = self.splits();
        let memory = std::mem::take(&mut self.memory);
        self.memory_bytes = 0;
        let (temp, run) = (self.temp.path(), self.runs.len());
        let files = in_ranges(&splits, |range| {
            let path = temp.join(format!("run-{run}-{}", range.index));
            let io = |source| ImportError::Io {
                path: path.clone(),
                source,
            };
            let mut out = BufWriter::with_capacity(1 << 20, File::create(&path).map_err(io)?);
            let sources = memory.iter().map(|b| b.source(range)).collect();
            let mut rec = Vec::new();
            merge(
                sources,
                |r| {
                    rec.clear();
                    push_record(&mut rec, r.key, r.value, r.origin);
                    out.write_all(&rec).map_err(io)
                },
                &path,
            )?;
            out.flush().map_err(io)?;
            Ok(path)
        })?;
        self.runs.push(files);
        Ok(())
    }

    /// Merges everything into SST files (nothing is in the store yet), one range of
    /// keys per thread.
    pub fn prepare(mut self) -> Result<Prepared, ImportError> {
        let splits = self.splits();
        let memory = std::mem::take(&mut self.memory);
        let (temp, runs, limit) = (self.temp.path(), &self.runs, self.options.sst_bytes);
        let parts = in_ranges(&splits, |range| {
            let mut sources: Vec<Source<'_>> = memory.iter().map(|b| b.source(range)).collect();
            for run in runs {
                let path = &run[range.index];
                let io = |source| ImportError::Io {
                    path: path.clone(),
                    source,
                };
                let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
                let mut record = Vec::new();
                read_record(&mut reader, &mut record).map_err(io)?;
                sources.push(Source::File { reader, record });
            }
            merge_range(sources, temp, range.index, limit)
        })?;
        let (mut files, mut posts, mut duplicates) = (Vec::new(), 0, Vec::new());
        let mut stats = std::mem::take(&mut self.stats);
        for part in parts {
            files.extend(part.files);
            posts += part.posts;
            duplicates.extend(part.duplicates);
            part.stats.fold_into(&mut stats);
        }
        drop(memory);
        Ok(Prepared {
            importer: self,
            files,
            posts,
            stats,
            duplicates,
        })
    }
}

/// Merges one range's sources into SST files named after the range, keeping the
/// first post of each key.
fn merge_range(
    sources: Vec<Source<'_>>,
    dir: &Path,
    range: usize,
    limit: u64,
) -> Result<RangeOutput, ImportError> {
    let mut opts = engagements_options(&table_options(8 << 20));
    // LZ4 rather than the bottommost level's zstd: a fifth of the CPU time; the
    // files are rewritten with zstd when a compaction reaches them.
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    opts.set_bottommost_compression_type(rocksdb::DBCompressionType::Lz4);
    let mut out = SstOutput {
        opts: &opts,
        dir,
        range,
        writer: None,
        files: Vec::new(),
        limit,
        bytes: 0,
    };
    let mut pending: Option<(Vec<u8>, Vec<u8>, Origin)> = None;
    let (mut posts, mut duplicates) = (0u64, Vec::new());
    let mut stats = StatsDelta::default();
    merge(
        sources,
        |r| {
            if let Some((key, value, first)) = &mut pending {
                if key.as_slice() == r.key {
                    duplicates.push(Duplicate {
                        at: r.origin,
                        first: *first,
                    });
                    stats.add(&schema::key_parts(r.key).map_err(StoreError::from)?, -1);
                    return Ok(());
                }
                out.put(key, value)?;
                key.clear();
                key.extend_from_slice(r.key);
                value.clear();
                value.extend_from_slice(r.value);
                *first = r.origin;
            } else {
                pending = Some((r.key.to_vec(), r.value.to_vec(), r.origin));
            }
            posts += 1;
            Ok(())
        },
        dir,
    )?;
    if let Some((key, value, _)) = &pending {
        out.put(key, value)?;
    }
    Ok(RangeOutput {
        files: out.finish()?,
        posts,
        duplicates,
        stats,
    })
}

/// SST files written in key order, a new one past the size limit.
struct SstOutput<'a> {
    opts: &'a rocksdb::Options,
    dir: &'a Path,
    /// The range's number, in the file names.
    range: usize,
    writer: Option<SstFileWriter<'a>>,
    files: Vec<PathBuf>,
    limit: u64,
    bytes: u64,
}

impl<'a> SstOutput<'a> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ImportError> {
        if self.writer.is_none() {
            let path = self
                .dir
                .join(format!("{:03}-{:06}.sst", self.range, self.files.len()));
            let w = SstFileWriter::create(self.opts);
            w.open(&path)?;
            self.writer = Some(w);
            self.files.push(path);
            self.bytes = 0;
        }
        let w = self.writer.as_mut().expect("opened above");
        w.put(key, value)?;
        self.bytes += (key.len() + value.len()) as u64;
        if self.bytes >= self.limit {
            if let Some(mut w) = self.writer.take() {
                w.finish()?;
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<PathBuf>, ImportError> {
        if let Some(mut w) = self.writer.take() {
            w.finish()?;
        }
        Ok(self.files)
    }
}

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    pub posts: u64,
    pub sst_files: usize,
}

impl Prepared {
    /// Ingests the files, then writes the count and the statistics (WAL synced) and
    /// flushes; the store then opens with every post.
    pub fn ingest(self) -> Result<ImportReport, ImportError> {
        let db = &self.importer.db;
        if !self.files.is_empty() {
            let cf = db
                .cf_handle(schema::CF_ENGAGEMENTS)
                .expect("column family exists");
            let mut io = IngestExternalFileOptions::default();
            io.set_move_files(true);
            db.ingest_external_file_cf_opts(cf, &io, self.files.clone())?;
        }
        let meta = db.cf_handle(schema::CF_META).expect("column family exists");
        let mut batch = WriteBatch::default();
        batch.put_cf(
            meta,
            schema::META_ENGAGEMENT_COUNT,
            self.posts.to_be_bytes(),
        );
        self.stats.put_all(db, &mut batch);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)?;
        db.flush_cf(meta)?;
        tracing::info!(posts = self.posts, path = %self.importer.path.display(), "import ingested");
        Ok(ImportReport {
            posts: self.posts,
            sst_files: self.files.len(),
        })
    }

    /// Drops the files: the store stays empty.
    pub fn discard(self) {
        drop(self);
    }
}
