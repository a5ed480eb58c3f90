//! The open database and its column-family handles, resolved and checked once when
//! the store opens: reads and writes take a handle from a field instead of looking a
//! name up (and asserting it exists) on every call.
//!
//! A RocksDB handle borrows from the database that owns it, so the two live in one
//! self-referential cell ([`self_cell`]); [`Rocks`] dereferences to the database.

use super::{schema, StoreError};
use rocksdb::{ColumnFamily, DB};

/// The store's column families (declared in [`schema`]).
pub(super) struct Families<'db> {
    pub(super) engagements: &'db ColumnFamily,
    pub(super) meta: &'db ColumnFamily,
    pub(super) outbox: &'db ColumnFamily,
    pub(super) dead_letters: &'db ColumnFamily,
    pub(super) audit: &'db ColumnFamily,
}

/// The handle of `db`'s column family `name`; an error when it is missing.
pub(super) fn handle<'db>(db: &'db DB, name: &str) -> Result<&'db ColumnFamily, StoreError> {
    db.cf_handle(name).ok_or_else(|| {
        StoreError::Corrupt(schema::Corrupt(format!(
            "the column family {name} is missing"
        )))
    })
}

/// The handles of `db`'s column families.
fn families(db: &DB) -> Result<Families<'_>, StoreError> {
    Ok(Families {
        engagements: handle(db, schema::CF_ENGAGEMENTS)?,
        meta: handle(db, schema::CF_META)?,
        outbox: handle(db, schema::CF_OUTBOX)?,
        dead_letters: handle(db, schema::CF_DEAD_LETTERS)?,
        audit: handle(db, schema::CF_AUDIT)?,
    })
}

self_cell::self_cell!(
    /// The database with its column-family handles.
    pub(super) struct Rocks {
        owner: DB,
        #[covariant]
        dependent: Families,
    }
);

impl Rocks {
    /// Takes `db` (opened with every column family of the schema) and resolves its
    /// handles.
    pub(super) fn with_handles(db: DB) -> Result<Rocks, StoreError> {
        Rocks::try_new(db, families)
    }

    /// The column-family handles.
    pub(super) fn cf(&self) -> &Families<'_> {
        self.borrow_dependent()
    }
}

impl std::ops::Deref for Rocks {
    type Target = DB;

    fn deref(&self) -> &DB {
        self.borrow_owner()
    }
}
