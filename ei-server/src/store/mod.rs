//! The index's storage: embedded RocksDB, one writer thread doing group commits.
//!
//! Writes: every request goes to the writer thread through a queue. The writer takes
//! the first waiting request and everything queued behind it (up to
//! [`StoreOptions::max_group_requests`]), applies them in arrival order against one
//! view of the store (so a later request sees an earlier one's posts), puts all their
//! mutations into **one** `WriteBatch` and writes it with the WAL synced: one fsync
//! for the whole group, and a request is answered only after its fsync. A burst of N
//! concurrent requests thus costs between 1 and N fsyncs, about N / (requests that
//! arrive during one fsync). Being the only writer makes every read-modify-write
//! atomic per key; the batch makes every request all-or-nothing for readers.
//!
//! Reads (FindContent) go straight to RocksDB with one prefix scan; they see whole
//! batches or nothing.
//!
//! `rocksdb::` is used only in this module tree; the layout is in [`schema`].
//!
//! # Two backends behind one type
//! [`Store`] is the boundary every caller uses, on either backend: RocksDB (the
//! default, in `data_dir`) or PostgreSQL ([`pg`], cargo feature `postgres`, opened
//! with [`Store::open_postgres`]). What both share lives in `Store` itself: the
//! writer queue and its group-commit shape, the exact post count, the statistics,
//! the outbox head, the write lock, health, metrics and the fault seam; the private
//! `Backend` enum holds what differs, and each public method that touches stored
//! data picks its backend with one `match` (an enum rather than a trait object: two
//! known backends, no boxing, and RocksDB-only operations such as backup refuse
//! clearly on PostgreSQL with [`StoreError::RocksDbOnly`]).

pub mod audit;
pub mod backup;
pub mod export;
mod faults;
mod health;
pub mod import;
mod internals;
mod lock;
mod outbox;
#[cfg(feature = "postgres")]
pub mod pg;
mod rocks;
pub mod schema;
pub mod stats;
mod writer;

pub use faults::{Fault, Faults, Hold, Times};
pub use health::Health;
pub use internals::{CfStats, EngineStats, LEVELS};
pub use outbox::{unix_ms, DeadLetter};
use rocks::Rocks;
pub use schema::WriteLock;
use writer::{Message, WriteJob, Writer};

use crate::apply::Change;
use crate::metrics::Metrics;
use crate::model::{Engagement, FindQuery, PostRef, Timestamp, Transaction};
use crate::operation::WriteOperation;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor,
    DBCompressionType, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Storage failures. Callers answer them with a server fault and log the cause.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error(transparent)]
    Corrupt(#[from] schema::Corrupt),
    #[error("the data directory {path} holds schema version {found}; this build reads version {expected}")]
    SchemaVersion {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("the store is closed")]
    Closed,
    /// A fault a test armed through [`Faults`].
    #[error("{0}")]
    Injected(Fault),
    /// The writer's queue is full ([`StoreOptions::writer_queue`]): retry later.
    #[error("the writer queue is full")]
    Busy,
    /// The database is being reopened after a failure.
    #[error("the store is recovering from a failed write")]
    Recovering,
    #[error("index in maintenance: the write lock is on")]
    WriteLocked,
    /// A PostgreSQL statement, connection or commit failed. A failed commit may or
    /// may not have been applied: the request is answered with a retryable fault,
    /// never with OK.
    #[cfg(feature = "postgres")]
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("the PostgreSQL database holds schema version {found}; this build knows versions up to {expected}")]
    PgSchemaVersion { found: i32, expected: i32 },
    /// A setting the store cannot use (e.g. a URL that does not parse).
    #[error("{0}")]
    Config(String),
    /// An operation only the RocksDB backend has (backup, engine internals).
    #[error("{0} works on the RocksDB store only; this index runs on PostgreSQL (use PostgreSQL's own tools: pg_basebackup, pg_dump)")]
    RocksDbOnly(&'static str),
}

/// Where a store keeps its data: `rocksdb` (in `data_dir`) or a PostgreSQL URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreKind {
    RocksDb,
    /// A libpq connection string (`postgresql://…` or `postgres://…`).
    Postgres(String),
}

impl StoreKind {
    /// Reads the `store` setting: `rocksdb`, or a URL starting `postgresql://` or
    /// `postgres://`.
    pub fn parse(s: &str) -> Result<StoreKind, StoreError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("rocksdb") {
            Ok(StoreKind::RocksDb)
        } else if t.starts_with("postgresql://") || t.starts_with("postgres://") {
            Ok(StoreKind::Postgres(t.to_owned()))
        } else {
            Err(StoreError::Config(format!(
                "store must be `rocksdb` or a PostgreSQL URL (postgresql://user@host:port/db?...), not {:?}",
                redact(t)
            )))
        }
    }

    /// The setting for logs and `/status`, without a password.
    pub fn display(&self) -> String {
        match self {
            StoreKind::RocksDb => "rocksdb".into(),
            StoreKind::Postgres(url) => redact(url),
        }
    }
}

/// `url` without its password.
fn redact(url: &str) -> String {
    #[cfg(feature = "postgres")]
    return pg::redact(url);
    #[cfg(not(feature = "postgres"))]
    url.split_once('@')
        .map_or_else(|| url.to_owned(), |(_, host)| format!("…@{host}"))
}

/// What differs between the backends.
enum Backend {
    Rocks(Arc<health::DbCell>),
    #[cfg(feature = "postgres")]
    Pg(Arc<pg::Pg>),
}

/// Tuning of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// This index's HSA-id (ProcessNotification's owner change looks for it).
    pub own_hsa_id: String,
    /// Sync the WAL before answering (the default; off only for benchmarks).
    pub sync: bool,
    /// Most requests one group commit takes.
    pub max_group_requests: usize,
    /// Block cache size in bytes.
    pub block_cache_bytes: usize,
    /// Record notifiable changes in the outbox (when any subscriber can exist).
    pub outbox: bool,
    /// Most write requests waiting for the writer; a write beyond is refused with
    /// [`StoreError::Busy`] instead of queueing without bound.
    pub writer_queue: usize,
    /// Free bytes on the data directory's filesystem below which the store reports
    /// itself unhealthy (and does not try to recover from a failed write).
    pub min_free_bytes: u64,
    /// Reads first ([`crate::priority`]): the writer thread's nice increment; above
    /// 0 RocksDB's compaction threads also run at low CPU priority.
    pub write_nice: u8,
}

impl StoreOptions {
    pub fn new(own_hsa_id: &str) -> StoreOptions {
        StoreOptions {
            own_hsa_id: own_hsa_id.to_owned(),
            sync: true,
            max_group_requests: 64,
            block_cache_bytes: 128 << 20,
            outbox: false,
            writer_queue: 128,
            min_free_bytes: 0,
            write_nice: 0,
        }
    }
}

/// The open store. Share it behind an `Arc`; call [`Store::close`] once at the end.
pub struct Store {
    backend: Backend,
    health: Arc<Health>,
    path: PathBuf,
    queue: mpsc::SyncSender<Message>,
    own_hsa_id: String,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    count: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    /// The next outbox sequence number, published after each commit.
    commits: tokio::sync::watch::Receiver<u64>,
    lock: Arc<lock::LockState>,
    /// Held while a backup runs (one at a time).
    backup_lock: Mutex<()>,
    /// Posts per sourceSystem, dataController and serviceDomain (the writer keeps it).
    stats: Arc<Mutex<stats::PostStats>>,
    /// Write requests queued and not yet taken by the writer.
    queued: Arc<AtomicU64>,
    /// The fault-injection seam its writer consults (tests only).
    faults: Arc<Faults>,
}

/// What a store and its writer thread share, made from what the backend read at open.
struct Shared {
    count: Arc<AtomicU64>,
    /// The store's side of the commits channel (the writer gets the sender).
    commits: tokio::sync::watch::Receiver<u64>,
    lock: Arc<lock::LockState>,
    stats: Arc<Mutex<stats::PostStats>>,
    queued: Arc<AtomicU64>,
    faults: Arc<Faults>,
    health: Arc<Health>,
}

impl Shared {
    /// The shared state at open, and the sender that publishes the next outbox
    /// sequence number after each commit (starting at `next_seq`).
    fn new(
        count: u64,
        next_seq: u64,
        lock: WriteLock,
        stats: stats::PostStats,
        health: Health,
    ) -> (Shared, tokio::sync::watch::Sender<u64>) {
        let (commits_tx, commits) = tokio::sync::watch::channel(next_seq);
        let shared = Shared {
            count: Arc::new(AtomicU64::new(count)),
            commits,
            lock: Arc::new(lock::LockState::new(lock)),
            stats: Arc::new(Mutex::new(stats)),
            queued: Arc::new(AtomicU64::new(0)),
            faults: Arc::new(Faults::default()),
            health: Arc::new(health),
        };
        (shared, commits_tx)
    }
}

impl Store {
    /// Opens (or creates) the store in `path` and starts its writer thread.
    pub fn open(
        path: &Path,
        options: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        let db = Arc::new(Rocks::with_handles(open_db(path, &options)?)?);
        check_schema(&db, path)?;
        let head = outbox::read_head(&db)?;
        let (shared, commits) = Shared::new(
            read_count(&db)?,
            head,
            lock::read(&db)?,
            load_stats(&db)?,
            Health::new(path, options.min_free_bytes),
        );
        let db = Arc::new(health::DbCell::new(db));
        let (own_hsa_id, queue) = (options.own_hsa_id.clone(), options.writer_queue);
        let writer = Writer {
            queued: shared.queued.clone(),
            faults: shared.faults.clone(),
            db: Some(db.get()?),
            cell: db.clone(),
            health: shared.health.clone(),
            path: path.to_owned(),
            options,
            count: shared.count.clone(),
            metrics: metrics.clone(),
            next_seq: head,
            commits,
            lock: shared.lock.clone(),
            stats: shared.stats.clone(),
        };
        Store::start(
            Backend::Rocks(db),
            path,
            own_hsa_id,
            queue,
            metrics,
            shared,
            move |rx| writer.run(rx),
        )
    }

    /// Opens the store in the PostgreSQL database at `url` (a libpq URL), creating or
    /// migrating its schema, and starts its writer thread. `data_dir` is where the
    /// server keeps its other files (it is not used by the store). Blocking.
    #[cfg(feature = "postgres")]
    pub fn open_postgres(
        url: &str,
        data_dir: &Path,
        options: StoreOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        let (pg, conn, initial) = pg::Pg::open(url)?;
        let pg = Arc::new(pg);
        let (shared, commits) = Shared::new(
            initial.count,
            initial.next_seq,
            initial.lock,
            initial.stats,
            // The disk is PostgreSQL's: no free-space floor here.
            Health::new(data_dir, 0),
        );
        let (own_hsa_id, queue) = (options.own_hsa_id.clone(), options.writer_queue);
        let writer = pg::PgWriter {
            pg: pg.clone(),
            session: Some(conn),
            options,
            count: shared.count.clone(),
            metrics: metrics.clone(),
            next_seq: initial.next_seq,
            commits,
            lock: shared.lock.clone(),
            stats: shared.stats.clone(),
            queued: shared.queued.clone(),
            faults: shared.faults.clone(),
            health: shared.health.clone(),
        };
        let store = Store::start(
            Backend::Pg(pg),
            data_dir,
            own_hsa_id,
            queue,
            metrics,
            shared,
            move |rx| writer.run(rx),
        )?;
        tracing::info!(store = %pg::redact(url), "store opened on PostgreSQL");
        Ok(store)
    }

    /// The last step of opening either backend: starts the writer thread (`run`, fed
    /// by a queue of `queue` requests) and makes the store around what it shares with
    /// it.
    fn start(
        backend: Backend,
        path: &Path,
        own_hsa_id: String,
        queue: usize,
        metrics: Arc<Metrics>,
        shared: Shared,
        run: impl FnOnce(mpsc::Receiver<Message>) + Send + 'static,
    ) -> Result<Store, StoreError> {
        let (queue, rx) = mpsc::sync_channel(queue.max(1));
        let handle = std::thread::Builder::new()
            .name("ei-store-writer".into())
            .spawn(move || run(rx))
            .map_err(|e| StoreError::Config(format!("cannot start the writer: {e}")))?;
        let Shared {
            count,
            commits,
            lock,
            stats,
            queued,
            faults,
            health,
        } = shared;
        Ok(Store {
            backend,
            health,
            path: path.to_owned(),
            queue,
            own_hsa_id,
            writer: Mutex::new(Some(handle)),
            count,
            metrics,
            commits,
            lock,
            backup_lock: Mutex::new(()),
            stats,
            queued,
            faults,
        })
    }

    /// Without the `postgres` feature: refuses, saying so.
    #[cfg(not(feature = "postgres"))]
    pub fn open_postgres(
        _url: &str,
        _data_dir: &Path,
        _options: StoreOptions,
        _metrics: Arc<Metrics>,
    ) -> Result<Store, StoreError> {
        Err(StoreError::Config(
            "this build has no PostgreSQL support (cargo feature `postgres`)".into(),
        ))
    }

    /// The PostgreSQL side, when the store runs on PostgreSQL.
    #[cfg(feature = "postgres")]
    fn pg(&self) -> Option<&pg::Pg> {
        match &self.backend {
            Backend::Pg(pg) => Some(pg),
            Backend::Rocks(_) => None,
        }
    }

    /// Without the `postgres` feature there is no PostgreSQL side.
    #[cfg(not(feature = "postgres"))]
    fn pg(&self) -> Option<&std::convert::Infallible> {
        None
    }

    /// Whether the store runs on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.pg().is_some()
    }

    /// Posts per sourceSystem, dataController and serviceDomain, exact as of the last
    /// commit.
    pub fn stats(&self) -> stats::PostStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The write lock now.
    pub fn write_lock(&self) -> WriteLock {
        self.lock.get()
    }

    /// Whether writes are refused (maintenance mode).
    pub fn is_write_locked(&self) -> bool {
        self.lock.is_on()
    }

    /// Turns the write lock on or off, durably, after every write queued before this
    /// call; returns the lock now (unchanged, with its old `since`, when it already
    /// was so).
    pub async fn set_write_lock(&self, enabled: bool) -> Result<WriteLock, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Message::SetWriteLock { enabled, reply })
            .map_err(|_| Arc::new(StoreError::Closed))?;
        rx.await.map_err(|_| Arc::new(StoreError::Closed))?
    }

    /// Applies one validated request atomically and durably; returns its effective
    /// changes with their final timestamps.
    pub async fn write(
        &self,
        service: WriteOperation,
        transactions: Vec<Transaction>,
        now: Timestamp,
    ) -> Result<Vec<Change>, Arc<StoreError>> {
        self.write_audited(service, transactions, now, None).await
    }

    /// [`Store::write`], with the request's access records (when `access` is given)
    /// written in the same batch as its posts.
    pub async fn write_audited(
        &self,
        service: WriteOperation,
        transactions: Vec<Transaction>,
        now: Timestamp,
        access: Option<audit::Access>,
    ) -> Result<Vec<Change>, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        // PostgreSQL's writer reads by its own key columns.
        let read_keys = match self.is_postgres() {
            true => Vec::new(),
            false => read_keys(service, &self.own_hsa_id, &transactions),
        };
        let job = WriteJob {
            service,
            transactions,
            read_keys,
            now,
            access,
            span: tracing::Span::current(),
            reply,
        };
        self.queued.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.queue.try_send(Message::Write(job)) {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(Arc::new(match e {
                mpsc::TrySendError::Full(_) => StoreError::Busy,
                mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
            }));
        }
        let (changes, transactions) = rx.await.map_err(|_| Arc::new(StoreError::Closed))??;
        drop(transactions);
        Ok(changes)
    }

    /// FindContent: one prefix scan, then the query's remaining filters. Blocking.
    pub fn find(&self, q: &FindQuery) -> Result<Vec<Engagement>, StoreError> {
        let mut out = Vec::new();
        self.find_each(q, |p| out.push(p.to_engagement()))?;
        Ok(out)
    }

    /// FindContent without copies: calls `f` with each matching post, borrowed from
    /// the store's bytes, in key order; returns how many matched. Blocking.
    pub fn find_each(
        &self,
        q: &FindQuery,
        f: impl FnMut(&PostRef<'_>),
    ) -> Result<usize, StoreError> {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            let mut f = f;
            return pg.find_each(q, &mut f);
        }
        let found = self.scan_posts(q, ReadOptions::default(), usize::MAX, f)?;
        Ok(found.expect("a read allowed to use the disk and every entry is never incomplete"))
    }

    /// [`Store::find_each`] from memory alone: the memtables and RocksDB's block cache,
    /// never a file read, so it does not block and may run on the async executor.
    /// `Ok(None)` when a block it needs is not cached (or on PostgreSQL, whose reads
    /// always go over the network): then `f` may have seen some of the posts, and the
    /// caller drops what it built and asks [`Store::find_each`] on a blocking thread.
    /// It also declines when the scan meets more than `max_entries` stored posts (a
    /// resident with very many), so that no scan holds an executor thread for long.
    pub fn find_cached(
        &self,
        q: &FindQuery,
        max_entries: usize,
        f: impl FnMut(&PostRef<'_>),
    ) -> Result<Option<usize>, StoreError> {
        if !matches!(self.backend, Backend::Rocks(_)) {
            return Ok(None);
        }
        let mut ro = ReadOptions::default();
        ro.set_read_tier(rocksdb::ReadTier::BlockCache);
        self.scan_posts(q, ro, max_entries, f)
    }

    /// The RocksDB scan behind [`Store::find_each`] and [`Store::find_cached`]:
    /// `Ok(None)` when `ro` forbade a read the scan needed (RocksDB's `Incomplete`) or
    /// the prefix holds more than `max_entries` posts.
    fn scan_posts(
        &self,
        q: &FindQuery,
        ro: ReadOptions,
        max_entries: usize,
        mut f: impl FnMut(&PostRef<'_>),
    ) -> Result<Option<usize>, StoreError> {
        let mut n = 0;
        let db = self.db()?;
        let cf = db.cf().engagements;
        let scan = Store::scan_prefix(&db, cf, &schema::query_prefix(q), ro);
        for (seen, item) in scan.enumerate() {
            if seen == max_entries {
                return Ok(None);
            }
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) if e.kind() == rocksdb::ErrorKind::Incomplete => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let [most_recent_content, creation_time, update_time] = schema::decode_times(&v)?;
            let post = PostRef {
                parts: schema::key_parts(&k)?,
                most_recent_content,
                creation_time,
                update_time,
            };
            if q.matches(&post) {
                f(&post);
                n += 1;
            }
        }
        Ok(Some(n))
    }

    /// Every entry of a column family whose key starts with `prefix`, read with `ro` (prefixes end in
    /// a byte below 0xFF, see [`schema::prefix_upper_bound`]).
    fn scan_prefix<'a>(
        db: &'a DB,
        cf: &'a ColumnFamily,
        prefix: &[u8],
        mut ro: ReadOptions,
    ) -> rocksdb::DBIteratorWithThreadMode<'a, DB> {
        ro.set_iterate_upper_bound(schema::prefix_upper_bound(prefix));
        db.iterator_cf_opt(cf, ro, IteratorMode::From(prefix, Direction::Forward))
    }

    /// The open RocksDB database (the writer may replace it after a failure);
    /// on PostgreSQL, [`StoreError::RocksDbOnly`].
    fn db(&self) -> Result<Arc<Rocks>, StoreError> {
        match &self.backend {
            Backend::Rocks(cell) => cell.get(),
            #[cfg(feature = "postgres")]
            Backend::Pg(_) => Err(StoreError::RocksDbOnly("this operation")),
        }
    }

    /// Whether the store can take writes, and why not.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The exact number of stored posts.
    pub fn engagement_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Write requests waiting for the writer thread (not yet in a group commit).
    pub fn queue_depth(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Bytes on disk: SST files plus WAL and other files in the data directory.
    /// On PostgreSQL: the size of the index's tables and indexes.
    pub fn size_on_disk(&self) -> u64 {
        #[cfg(feature = "postgres")]
        if let Some(pg) = self.pg() {
            return pg.size_on_disk().unwrap_or(0);
        }
        dir_size(&self.path)
    }

    /// A RocksDB integer property (e.g. `rocksdb.estimate-live-data-size`).
    pub fn property(&self, name: &str) -> Option<u64> {
        let db = self.db().ok()?;
        let cf = db.cf().engagements;
        db.property_int_value_cf(cf, name).ok().flatten()
    }

    /// The metrics the store updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The fault-injection seam of this store's writer (tests only; see [`Faults`]).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Finishes every queued write, stops the writer and flushes. Later writes fail
    /// with [`StoreError::Closed`]. Blocks until the writer has stopped.
    pub fn close(&self) {
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = self.queue.send(Message::Stop);
            let _ = handle.join();
            if self.is_postgres() {
                return;
            }
            if let Err(e) = self.db().and_then(|db| Ok(db.flush_wal(true)?)) {
                tracing::error!(error = %e, "flushing the WAL at close failed");
            }
        }
    }
}

/// The store keys a request reads: its own keys and, for ProcessNotification, the
/// same keys owned by this index (a possible owner change); sorted and unique.
fn read_keys(service: WriteOperation, own: &str, txs: &[Transaction]) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = txs
        .iter()
        .map(|t| schema::encode_key(&t.engagement.key))
        .collect();
    if service == WriteOperation::ProcessNotification {
        keys.extend(
            txs.iter()
                .map(|t| schema::encode_key(&t.engagement.key.with_owner(own))),
        );
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn open_db(path: &Path, options: &StoreOptions) -> Result<DB, StoreError> {
    let cf_opts = engagements_options(&table_options(options.block_cache_bytes));
    let cfs = vec![
        ColumnFamilyDescriptor::new(schema::CF_ENGAGEMENTS, cf_opts),
        ColumnFamilyDescriptor::new(schema::CF_META, Options::default()),
        ColumnFamilyDescriptor::new(schema::CF_OUTBOX, Options::default()),
        ColumnFamilyDescriptor::new(schema::CF_DEAD_LETTERS, Options::default()),
        ColumnFamilyDescriptor::new(schema::CF_AUDIT, Options::default()),
    ];
    let mut db_opts = db_options();
    if options.write_nice > 0 {
        // Reads first: compactions (the low-priority pool) at RocksDB's low CPU
        // priority (nice 19); flushes keep theirs so memtables do not stall writes.
        let mut env = rocksdb::Env::new()?;
        env.lower_thread_pool_cpu_priority();
        db_opts.set_env(&env);
    }
    Ok(DB::open_cf_descriptors(&db_opts, path, cfs)?)
}

/// The store's database-wide RocksDB options. Public, with [`table_options`] and
/// [`engagements_options`], so the benchmarks' raw RocksDB limit opens the same files
/// exactly as the store does.
pub fn db_options() -> Options {
    let mut db_opts = Options::default();
    db_opts.create_if_missing(true);
    db_opts.create_missing_column_families(true);
    db_opts.set_max_background_jobs(2);
    db_opts.set_bytes_per_sync(1 << 20);
    db_opts.set_keep_log_file_num(5);
    // The small column families (meta, outbox) would otherwise keep every WAL file
    // alive: bound the WAL so their memtables are flushed (disk use, recovery time).
    db_opts.set_max_total_wal_size(64 << 20);
    db_opts
}

/// The `engagements` table format: block cache, bloom filter, partitioned index.
pub fn table_options(block_cache_bytes: usize) -> BlockBasedOptions {
    let cache = Cache::new_lru_cache(block_cache_bytes);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    // Partitioned index and filters: only their top level must stay cached, so reads
    // keep working when a big file's index outgrows a cache shard (measured: 10 M posts
    // went from milliseconds to microseconds per read, benches/README.md).
    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4096);
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_top_level_index_and_filter(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    table.set_format_version(5);
    table
}

/// The `engagements` column family's options with the given table format.
pub fn engagements_options(table: &BlockBasedOptions) -> Options {
    let mut cf_opts = Options::default();
    cf_opts.set_block_based_table_factory(table);
    cf_opts.set_compression_type(DBCompressionType::Lz4);
    cf_opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    cf_opts.set_write_buffer_size(64 << 20);
    cf_opts
}

fn check_schema(db: &DB, path: &Path) -> Result<(), StoreError> {
    let meta = rocks::handle(db, schema::CF_META)?;
    match db.get_pinned_cf(meta, schema::META_SCHEMA_VERSION)? {
        Some(v) => {
            let found = u32::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| schema::Corrupt("schema_version is not 4 bytes".into()))?,
            );
            if found != schema::SCHEMA_VERSION {
                return Err(StoreError::SchemaVersion {
                    path: path.to_owned(),
                    found,
                    expected: schema::SCHEMA_VERSION,
                });
            }
        }
        None => {
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            let mut b = WriteBatch::default();
            b.put_cf(
                meta,
                schema::META_SCHEMA_VERSION,
                schema::SCHEMA_VERSION.to_be_bytes(),
            );
            db.write_opt(b, &wo)?;
        }
    }
    Ok(())
}

/// The schema check of a store opened read-only: it must already be one of ours.
fn check_schema_read_only(db: &DB, path: &Path) -> Result<(), StoreError> {
    let meta = rocks::handle(db, schema::CF_META)?;
    match db.get_pinned_cf(meta, schema::META_SCHEMA_VERSION)? {
        Some(_) => check_schema(db, path),
        None => Err(StoreError::Corrupt(schema::Corrupt(format!(
            "{} holds no engagement index (no schema_version)",
            path.display()
        )))),
    }
}

/// The statistics counters; a directory written before they existed is counted
/// once and the counters stored.
fn load_stats(db: &DB) -> Result<stats::PostStats, StoreError> {
    if let Some(s) = stats::read(db)? {
        return Ok(s);
    }
    let s = stats::scan(db)?;
    let mut batch = WriteBatch::default();
    s.put_all(db, &mut batch);
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(batch, &wo)?;
    tracing::info!("statistics counters written for this data directory");
    Ok(s)
}

fn read_count(db: &DB) -> Result<u64, StoreError> {
    let meta = rocks::handle(db, schema::CF_META)?;
    Ok(
        match db.get_pinned_cf(meta, schema::META_ENGAGEMENT_COUNT)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| schema::Corrupt("engagement_count is not 8 bytes".into()))?,
            ),
            None => 0,
        },
    )
}

#[cfg(test)]
mod tests;
