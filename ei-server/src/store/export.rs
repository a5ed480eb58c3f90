//! Reading every post of a closed store, in key order, for `ei-server export`. The
//! store is opened read-only: it needs no write access and leaves no trace.

use super::{db_options, engagements_options, schema, table_options, StoreError};
use crate::model::PostRef;
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, DB};
use std::path::Path;

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}

impl From<rocksdb::Error> for ExportError {
    fn from(e: rocksdb::Error) -> Self {
        ExportError::Store(StoreError::Rocks(e))
    }
}

/// Opens the store in `path` read-only (it must exist and be of this schema).
pub fn open_read_only(path: &Path) -> Result<DB, StoreError> {
    let cfs = vec![
        ColumnFamilyDescriptor::new(
            schema::CF_ENGAGEMENTS,
            engagements_options(&table_options(64 << 20)),
        ),
        ColumnFamilyDescriptor::new(schema::CF_META, Options::default()),
        ColumnFamilyDescriptor::new(schema::CF_OUTBOX, Options::default()),
        ColumnFamilyDescriptor::new(schema::CF_DEAD_LETTERS, Options::default()),
    ];
    let mut opts = db_options();
    opts.create_if_missing(false);
    let db = DB::open_cf_descriptors_read_only(&opts, path, cfs, false)?;
    super::check_schema_read_only(&db, path)?;
    Ok(db)
}

/// Calls `f` with every post in key order; returns how many.
pub fn for_each_post(
    path: &Path,
    mut f: impl FnMut(&PostRef<'_>) -> std::io::Result<()>,
) -> Result<u64, ExportError> {
    let db = open_read_only(path)?;
    let cf = db
        .cf_handle(schema::CF_ENGAGEMENTS)
        .expect("column family exists");
    let mut n = 0;
    for item in db.iterator_cf(cf, IteratorMode::Start) {
        let (k, v) = item?;
        let [most_recent_content, creation_time, update_time] =
            schema::decode_times(&v).map_err(StoreError::from)?;
        let post = PostRef {
            parts: schema::key_parts(&k).map_err(StoreError::from)?,
            most_recent_content,
            creation_time,
            update_time,
        };
        f(&post)?;
        n += 1;
    }
    Ok(n)
}
