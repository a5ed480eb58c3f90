//! The PostgreSQL backend of [`super::Store`] (cargo feature `postgres`): the same
//! contract as RocksDB on a database that runs with synchronous replication and
//! automatic failover.
//!
//! Writes go through the same queue and group-commit shape as RocksDB's: one writer
//! thread (`writer`) takes the waiting requests and applies them with the shared
//! pure [`crate::apply`] code against a [`crate::apply::View`] over rows it read in
//! **one** transaction, which it commits before answering any of them. Reads and the
//! notifier's outbox, cursor and dead-letter calls run on the caller's (blocking)
//! thread with a connection from a small pool (`pool`). The schema and why the
//! counter row gives commit order are in [`schema`].
//!
//! The client is the synchronous `postgres` crate: every call blocks, so none runs on
//! the async executor (the writer is a thread; readers are on blocking threads).
//! Connections are plain (no TLS): a unix socket or a trusted network.

pub(crate) mod pool;
pub mod schema;
mod writer;

pub(in crate::store) use writer::PgWriter;

use super::audit::AuditRecord;
use super::outbox::DeadLetter;
use super::schema::{self as codec, OutboxEntry};
use super::stats::{PostStats, StatsField};
use super::{StoreError, WriteLock};
use crate::model::{Engagement, EngagementKey, FindQuery, PostRef};
use pool::{Conn, Pool};
use std::sync::Mutex;
use std::time::Duration;

/// Most pooled read connections.
const POOL_SIZE: usize = 16;

/// The state the store starts from, read at open.
pub(crate) struct Initial {
    pub(crate) count: u64,
    pub(crate) next_seq: u64,
    pub(crate) lock: WriteLock,
    pub(crate) stats: PostStats,
}

/// The open PostgreSQL side of a store: its connection settings and read pool.
pub struct Pg {
    config: postgres::Config,
    pool: Pool,
    /// Serialises dead-letter id allocation within this process.
    dead_letter_ids: Mutex<()>,
}

/// Parses a libpq connection string (URL or `key=value` form) and fills in the
/// timeouts a failover needs when the string does not set them.
pub fn parse_url(url: &str) -> Result<postgres::Config, StoreError> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Config(format!("the PostgreSQL URL does not parse: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("ei-server");
    }
    config.keepalives_idle(Duration::from_secs(10));
    Ok(config)
}

/// The URL with its password replaced by `***`, for logs and `/status`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme) = url.find("://") {
        let rest = &url[scheme + 3..];
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..auth_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                out = format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &rest[..colon],
                    &rest[at..]
                );
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let end = out[i..].find([' ', '&']).map_or(out.len(), |e| i + e);
        out.replace_range(i + "password=".len()..end, "***");
    }
    out
}

impl Pg {
    /// Connects, creates or migrates the schema, and reads the starting state.
    /// Runs on a thread of its own, so it may be called from anywhere.
    pub(crate) fn open(url: &str) -> Result<(Pg, Conn, Initial), StoreError> {
        let config = parse_url(url)?;
        let (conn, initial) = std::thread::scope(|s| {
            s.spawn(|| -> Result<(Conn, Initial), StoreError> {
                let mut conn = Conn::open(&config)?;
                migrate(&mut conn.client)?;
                let initial = read_initial(&mut conn.client)?;
                Ok((conn, initial))
            })
            .join()
            .unwrap_or_else(|_| Err(StoreError::Config("opening PostgreSQL panicked".into())))
        })?;
        let pool = Pool::new(config.clone(), POOL_SIZE);
        let pg = Pg {
            config,
            pool,
            dead_letter_ids: Mutex::new(()),
        };
        Ok((pg, conn, initial))
    }

    /// A new connection for the writer (after a failure).
    pub(crate) fn connect(&self) -> Result<Conn, StoreError> {
        Conn::open(&self.config)
    }

    /// FindContent: one range of the primary key, then the query's other filters.
    pub(crate) fn find_each(
        &self,
        q: &FindQuery,
        f: &mut dyn FnMut(&PostRef<'_>),
    ) -> Result<usize, StoreError> {
        let prefix = codec::query_prefix_tail(q);
        let upper = codec::prefix_upper_bound(&prefix);
        let resident = &q.registered_resident_identification;
        let rows = self.pool.read(|c| {
            let st = c.statement(
                "SELECT key, times FROM ei_engagements \
                 WHERE resident = $1 AND key >= $2 AND key < $3 ORDER BY key",
            )?;
            Ok(c.client.query(&st, &[resident, &prefix, &upper])?)
        })?;
        let mut n = 0;
        for row in rows {
            let (key, times): (&[u8], &[u8]) = (row.get(0), row.get(1));
            let post = post_ref(resident, key, times)?;
            if q.matches(&post) {
                f(&post);
                n += 1;
            }
        }
        Ok(n)
    }

    pub(crate) fn post(&self, key: &EngagementKey) -> Result<Option<Engagement>, StoreError> {
        let (resident, tail) = split_key(key);
        let row = self.pool.read(|c| {
            let st =
                c.statement("SELECT times FROM ei_engagements WHERE resident = $1 AND key = $2")?;
            Ok(c.client.query_opt(&st, &[&resident, &tail])?)
        })?;
        match row {
            Some(r) => Ok(Some(codec::decode_value(key.clone(), r.get(0))?)),
            None => Ok(None),
        }
    }

    /// Posts in (resident, key) order after `after` (an [`codec::encode_key`] this
    /// returned before), with the position of the last one.
    pub(crate) fn posts_after(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Engagement>, Option<Vec<u8>>), StoreError> {
        let rows = self.pool.read(|c| match after {
            Some(k) => {
                let key = codec::decode_key(k)?;
                let (resident, tail) = split_key(&key);
                let st = c.statement(
                    "SELECT resident, key, times FROM ei_engagements \
                     WHERE (resident, key) > ($1, $2) ORDER BY resident, key LIMIT $3",
                )?;
                Ok(c.client.query(&st, &[&resident, &tail, &(limit as i64)])?)
            }
            None => {
                let st = c.statement(
                    "SELECT resident, key, times FROM ei_engagements \
                     ORDER BY resident, key LIMIT $1",
                )?;
                Ok(c.client.query(&st, &[&(limit as i64)])?)
            }
        })?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let post = post_ref(row.get(0), row.get(1), row.get(2))?;
            out.push(post.to_engagement());
        }
        let last = out.last().map(|e| codec::encode_key(&e.key));
        Ok((out, last))
    }

    pub(crate) fn read_outbox(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OutboxEntry)>, StoreError> {
        let rows = self.pool.read(|c| {
            let st = c.statement(
                "SELECT seq, entry FROM ei_outbox WHERE seq >= $1 ORDER BY seq LIMIT $2",
            )?;
            Ok(c.client.query(&st, &[&(from as i64), &(limit as i64)])?)
        })?;
        rows.iter()
            .map(|r| Ok((r.get::<_, i64>(0) as u64, codec::decode_outbox(r.get(1))?)))
            .collect()
    }

    pub(crate) fn cursor(&self, subscriber: &str) -> Result<Option<u64>, StoreError> {
        let row = self.pool.read(|c| {
            let st = c.statement("SELECT next_seq FROM ei_cursors WHERE subscriber = $1")?;
            Ok(c.client.query_opt(&st, &[&subscriber])?)
        })?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    pub(crate) fn cursors(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = self.pool.read(|c| {
            let st =
                c.statement("SELECT subscriber, next_seq FROM ei_cursors ORDER BY subscriber")?;
            Ok(c.client.query(&st, &[])?)
        })?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    pub(crate) fn write_cursors(&self, cursors: &[(String, u64)]) -> Result<(), StoreError> {
        self.pool.with(|c| {
            let st = c.statement(UPSERT_CURSOR)?;
            let mut tx = c.client.transaction()?;
            for (la, to) in cursors {
                tx.execute(&st, &[la, &(*to as i64)])?;
            }
            Ok(tx.commit()?)
        })
    }

    /// Sets a cursor (when `to` is given), deletes dead letter `remove` (when given)
    /// and adds `dead` with fresh ids, in one transaction; returns the ids.
    pub(crate) fn dead_letter_change(
        &self,
        subscriber: &str,
        to: Option<u64>,
        remove: Option<u64>,
        dead: &[DeadLetter],
    ) -> Result<Vec<u64>, StoreError> {
        let _ids = self
            .dead_letter_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.pool.with(|c| {
            let upsert = c.statement(UPSERT_CURSOR)?;
            let delete =
                c.statement("DELETE FROM ei_dead_letters WHERE subscriber = $1 AND id = $2")?;
            let next = c.statement(
                "SELECT COALESCE(max(id) + 1, 0) FROM ei_dead_letters WHERE subscriber = $1",
            )?;
            let insert = c.statement(
                "INSERT INTO ei_dead_letters (subscriber, id, letter) VALUES ($1, $2, $3)",
            )?;
            let mut tx = c.client.transaction()?;
            if let Some(to) = to {
                tx.execute(&upsert, &[&subscriber, &(to as i64)])?;
            }
            if let Some(id) = remove {
                tx.execute(&delete, &[&subscriber, &(id as i64)])?;
            }
            let first: i64 = tx.query_one(&next, &[&subscriber])?.get(0);
            let ids: Vec<u64> = (first as u64..).take(dead.len()).collect();
            for (id, d) in ids.iter().zip(dead) {
                let letter = codec::encode_dead_letter(&d.error, &d.entries);
                tx.execute(&insert, &[&subscriber, &(*id as i64), &letter])?;
            }
            tx.commit()?;
            Ok(ids)
        })
    }

    pub(crate) fn dead_letters(&self, subscriber: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = self.pool.read(|c| {
            let st = c.statement(
                "SELECT id, letter FROM ei_dead_letters WHERE subscriber = $1 ORDER BY id",
            )?;
            Ok(c.client.query(&st, &[&subscriber])?)
        })?;
        rows.iter()
            .map(|r| {
                let (error, entries) = codec::decode_dead_letter(r.get(1))?;
                Ok(DeadLetter {
                    id: r.get::<_, i64>(0) as u64,
                    error,
                    entries,
                })
            })
            .collect()
    }

    pub(crate) fn subscriber_records(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows = self.pool.read(|c| {
            let st =
                c.statement("SELECT subscriber, record FROM ei_subscribers ORDER BY subscriber")?;
            Ok(c.client.query(&st, &[])?)
        })?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Stores a subscriber's record and sets (`Some(Some)`), deletes (`Some(None)`)
    /// or keeps (`None`) its cursor, in one transaction.
    pub(crate) fn subscriber_change(
        &self,
        subscriber: &str,
        record: &[u8],
        cursor: Option<Option<u64>>,
    ) -> Result<(), StoreError> {
        self.pool.with(|c| {
            let put = c.statement(
                "INSERT INTO ei_subscribers (subscriber, record) VALUES ($1, $2) \
                 ON CONFLICT (subscriber) DO UPDATE SET record = EXCLUDED.record",
            )?;
            let upsert = c.statement(UPSERT_CURSOR)?;
            let delete = c.statement("DELETE FROM ei_cursors WHERE subscriber = $1")?;
            let mut tx = c.client.transaction()?;
            tx.execute(&put, &[&subscriber, &record])?;
            match cursor {
                Some(Some(to)) => {
                    tx.execute(&upsert, &[&subscriber, &(to as i64)])?;
                }
                Some(None) => {
                    tx.execute(&delete, &[&subscriber])?;
                }
                None => {}
            }
            Ok(tx.commit()?)
        })
    }

    pub(crate) fn collect_outbox(&self, below: u64) -> Result<(), StoreError> {
        self.execute("DELETE FROM ei_outbox WHERE seq < $1", &[&(below as i64)])
            .map(drop)
    }

    pub(crate) fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let (residents, times, json) = audit_columns(records);
        self.execute(INSERT_AUDIT, &[&residents, &times, &json])
            .map(drop)
    }

    pub(crate) fn audit(
        &self,
        resident: &str,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = self.pool.read(|c| {
            let st = c.statement(
                "SELECT record FROM ei_audit \
                 WHERE resident = $1 AND time_ms >= $2 AND time_ms < $3 \
                 ORDER BY time_ms DESC, seq DESC LIMIT $4",
            )?;
            Ok(c.client.query(
                &st,
                &[
                    &resident,
                    &(from_ms as i64),
                    &(to_ms.min(i64::MAX as u64) as i64),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )?)
        })?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r.get(0)).map_err(|e| {
                    codec::Corrupt(format!("an audit record does not parse: {e}")).into()
                })
            })
            .collect()
    }

    pub(crate) fn purge_audit(&self, before_ms: u64) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM ei_audit WHERE time_ms < $1",
            &[&(before_ms.min(i64::MAX as u64) as i64)],
        )
    }

    /// Bytes of the index's tables and their indexes.
    pub(crate) fn size_on_disk(&self) -> Result<u64, StoreError> {
        let row = self.pool.read(|c| {
            let st = c.statement(
                "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = current_schema() AND c.relkind = 'r' \
                 AND c.relname LIKE 'ei\\_%'",
            )?;
            Ok(c.client.query_one(&st, &[])?)
        })?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.pool.write(|c| {
            let st = c.statement(sql)?;
            Ok(c.client.execute(&st, params)?)
        })
    }
}

const UPSERT_CURSOR: &str = "INSERT INTO ei_cursors (subscriber, next_seq) VALUES ($1, $2) \
     ON CONFLICT (subscriber) DO UPDATE SET next_seq = EXCLUDED.next_seq";

const INSERT_AUDIT: &str = "INSERT INTO ei_audit (resident, time_ms, record) \
     SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])";

/// The audit records as the three arrays [`INSERT_AUDIT`] takes.
fn audit_columns(records: &[AuditRecord]) -> (Vec<&str>, Vec<i64>, Vec<String>) {
    let residents = records.iter().map(|r| r.resident.as_str()).collect();
    let times = records
        .iter()
        .map(|r| r.time_ms.min(i64::MAX as u64) as i64)
        .collect();
    let json = records
        .iter()
        .map(|r| serde_json::to_string(r).expect("an audit record serializes"))
        .collect();
    (residents, times, json)
}

/// The resident and the encoded rest of a key: the two key columns.
fn split_key(key: &EngagementKey) -> (&str, Vec<u8>) {
    (
        key.registered_resident_identification(),
        codec::encode_key_tail(key),
    )
}

/// A post from its row, borrowing the row's bytes.
fn post_ref<'a>(resident: &'a str, key: &'a [u8], times: &[u8]) -> Result<PostRef<'a>, StoreError> {
    let tail = codec::key_tail_parts(key)?;
    let [most_recent_content, creation_time, update_time] = codec::decode_times(times)?;
    let mut tail = tail.into_iter();
    let parts = std::array::from_fn(|i| match i {
        0 => std::borrow::Cow::Borrowed(resident),
        _ => tail.next().unwrap_or_default(),
    });
    Ok(PostRef {
        parts,
        most_recent_content,
        creation_time,
        update_time,
    })
}

/// Creates the schema or brings it to [`schema::SCHEMA_VERSION`]; refuses a
/// database a newer build has migrated.
fn migrate(client: &mut postgres::Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.batch_execute(schema::MIGRATION_LOCK)?;
    tx.batch_execute(schema::MIGRATION_TABLE)?;
    let found: Option<i32> = tx
        .query_one("SELECT max(version) FROM ei_schema_migrations", &[])?
        .get(0);
    let found = found.unwrap_or(0);
    if found > schema::SCHEMA_VERSION {
        return Err(StoreError::PgSchemaVersion {
            found,
            expected: schema::SCHEMA_VERSION,
        });
    }
    for (version, description, sql) in schema::MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO ei_schema_migrations (version, description) VALUES ($1, $2)",
            &[version, description],
        )?;
        tracing::info!(version, description, "PostgreSQL schema migrated");
    }
    Ok(tx.commit()?)
}

/// The counter row and the statistics.
fn read_initial(client: &mut postgres::Client) -> Result<Initial, StoreError> {
    let meta = client.query_one(
        "SELECT engagement_count, next_seq, write_lock, write_lock_since FROM ei_meta WHERE id = 1",
        &[],
    )?;
    Ok(Initial {
        count: meta.get::<_, i64>(0) as u64,
        next_seq: meta.get::<_, i64>(1) as u64,
        lock: WriteLock {
            enabled: meta.get(2),
            since_unix: meta.get::<_, i64>(3) as u64,
        },
        stats: read_stats(client)?,
    })
}

/// The statistics counters as stored.
fn read_stats(client: &mut postgres::Client) -> Result<PostStats, StoreError> {
    let mut stats = PostStats::default();
    for row in client.query(
        "SELECT field, value, posts FROM ei_stats WHERE posts > 0",
        &[],
    )? {
        let field: &str = row.get(0);
        let f = StatsField::from_name(field)
            .ok_or_else(|| codec::Corrupt(format!("unknown statistics field {field}")))?;
        let n: i64 = row.get(2);
        stats
            .counts
            .entry(f)
            .or_default()
            .insert(row.get(1), n as u64);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests;
