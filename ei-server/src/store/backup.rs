//! Backup and restore with RocksDB's BackupEngine. A backup directory holds any
//! number of backups that share their SST files, so each backup after the first only
//! copies the files that are new since (incremental).
//!
//! A backup is taken online, while writers run, and is consistent: first a
//! checkpoint (hard links to the live SST files plus the WAL tail, one point in time
//! across every column family) inside the data directory, then that checkpoint is
//! opened as a private store (its engagement count is the backup's, exactly) and
//! backed up, and the checkpoint is removed. Restoring is offline, into an empty
//! directory.

use super::{open_db, read_count, Store, StoreError, StoreOptions};
use rocksdb::backup::{BackupEngine, BackupEngineOptions, RestoreOptions};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::Env;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The checkpoint's directory name inside the data directory.
const CHECKPOINT_DIR: &str = "backup-checkpoint";

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a backup is already running")]
    Busy,
    #[error("{0} is not empty: restore only writes into an empty directory")]
    NotEmpty(PathBuf),
    #[error("{0} holds no backup")]
    NoBackup(PathBuf),
}

impl From<rocksdb::Error> for BackupError {
    fn from(e: rocksdb::Error) -> Self {
        BackupError::Store(StoreError::Rocks(e))
    }
}

/// What a backup wrote.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BackupReport {
    /// The backup's number in its directory (restore takes the latest by default).
    pub backup_id: u32,
    /// Posts in the backup.
    pub posts: u64,
    /// Bytes this backup added to the directory (the files new since the last one).
    pub bytes: u64,
    /// Bytes of the whole backup (shared files included).
    pub backup_bytes: u64,
    pub seconds: f64,
    pub dir: PathBuf,
}

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RestoreReport {
    pub backup_id: u32,
    pub posts: u64,
    pub bytes: u64,
    pub seconds: f64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

fn engine(dir: &Path) -> Result<BackupEngine, BackupError> {
    let opts = BackupEngineOptions::new(dir)?;
    Ok(BackupEngine::open(&opts, &Env::new()?)?)
}

impl Store {
    /// Backs the store up into `to` (created when missing) while it serves. Blocking:
    /// call it off the async executor. One backup at a time.
    pub fn backup(&self, to: &Path) -> Result<BackupReport, BackupError> {
        if self.is_postgres() {
            return Err(StoreError::RocksDbOnly("backup").into());
        }
        let _one = self.backup_lock.try_lock().map_err(|_| BackupError::Busy)?;
        let started = Instant::now();
        std::fs::create_dir_all(to).map_err(io(to))?;
        let before = tree_size(to);
        let checkpoint = self.path.join(CHECKPOINT_DIR);
        if checkpoint.exists() {
            // Left by a backup that did not finish (a crash): it is only hard links.
            std::fs::remove_dir_all(&checkpoint).map_err(io(&checkpoint))?;
        }
        let db = self.db()?;
        Checkpoint::new(&**db)?.create_checkpoint(&checkpoint)?;
        let result = back_up_checkpoint(&checkpoint, to);
        if let Err(e) = std::fs::remove_dir_all(&checkpoint) {
            tracing::warn!(error = %e, path = %checkpoint.display(), "removing the backup checkpoint failed");
        }
        let (posts, info) = result?;
        let report = BackupReport {
            backup_id: info.backup_id,
            posts,
            bytes: tree_size(to).saturating_sub(before),
            backup_bytes: info.size,
            seconds: started.elapsed().as_secs_f64(),
            dir: to.to_owned(),
        };
        tracing::info!(backup_id = report.backup_id, posts, bytes = report.bytes, seconds = report.seconds, dir = %to.display(), "backup done");
        Ok(report)
    }
}

/// Opens the checkpoint as a private store and backs it up; its count and the
/// backup's info.
fn back_up_checkpoint(
    checkpoint: &Path,
    to: &Path,
) -> Result<(u64, rocksdb::backup::BackupEngineInfo), BackupError> {
    let db = open_db(checkpoint, &StoreOptions::new(""))?;
    let posts = read_count(&db)?;
    let mut engine = engine(to)?;
    engine.create_new_backup_flush(&db, true)?;
    let info = engine
        .get_backup_info()
        .into_iter()
        .max_by_key(|i| i.backup_id)
        .ok_or_else(|| BackupError::NoBackup(to.to_owned()))?;
    Ok((posts, info))
}

/// Restores a backup (the latest unless `backup_id` is given) from `from` into the
/// empty or missing directory `to`, then opens it to check it and count its posts.
pub fn restore(
    from: &Path,
    to: &Path,
    backup_id: Option<u32>,
) -> Result<RestoreReport, BackupError> {
    let started = Instant::now();
    if !from.is_dir() {
        return Err(BackupError::NoBackup(from.to_owned()));
    }
    if to.exists() && std::fs::read_dir(to).map_err(io(to))?.next().is_some() {
        return Err(BackupError::NotEmpty(to.to_owned()));
    }
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut engine = engine(from)?;
    let infos = engine.get_backup_info();
    let id = match backup_id {
        Some(id) => id,
        None => infos
            .iter()
            .map(|i| i.backup_id)
            .max()
            .ok_or_else(|| BackupError::NoBackup(from.to_owned()))?,
    };
    engine.verify_backup(id)?;
    engine.restore_from_backup(to, to, &RestoreOptions::default(), id)?;
    let db = open_db(to, &StoreOptions::new(""))?;
    super::check_schema_read_only(&db, to)?;
    let posts = read_count(&db)?;
    drop(db);
    let report = RestoreReport {
        backup_id: id,
        posts,
        bytes: tree_size(to),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(report)
}

/// Bytes of every file below `path`.
fn tree_size(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
