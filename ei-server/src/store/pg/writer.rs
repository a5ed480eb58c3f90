//! The PostgreSQL writer thread: takes queued requests in groups (as RocksDB's
//! writer does), applies a group with the shared [`apply`] code against the rows it
//! read (one statement for the group) in one transaction, writes posts, counters, outbox and access records in
//! that transaction, commits, and only then answers the group's requests.
//!
//! The transaction starts by locking the counter row (see [`super::schema`]): the
//! lock serialises writers across processes and gives the outbox commit order. When
//! anything fails (the primary went away, a statement failed) the transaction is
//! not committed and every request of the group gets the error, which the service
//! answers with the retryable EI000 fault; the connection is dropped and the next
//! group (or the idle refresh, every [`REFRESH`]) connects again, to the new primary
//! when the URL names several hosts with `target_session_attrs=read-write`.

use super::super::faults::Faults;
use super::super::health::{Health, WriterAlive};
use super::super::lock::LockState;
use super::super::stats::{self, PostStats, StatsDelta};
use super::super::writer::{gather, Message, WriteJob};
use super::super::{outbox, StoreError, StoreOptions, WriteLock};
use super::pool::{close, Conn};
use super::{audit_columns, Pg};
use crate::apply::{apply, Change, View};
use crate::metrics::Metrics;
use crate::model::{Engagement, EngagementKey, Timestamp};
use crate::operation::WriteOperation;
use postgres::Statement;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often an idle writer rereads the counter row: the outbox head, count (and
/// then statistics) of other servers' commits, the write lock, and whether
/// PostgreSQL is reachable.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// The writer's statements, prepared once per connection.
struct Statements {
    lock_meta: Statement,
    read_posts: Statement,
    upsert_posts: Statement,
    delete_posts: Statement,
    insert_outbox: Statement,
    insert_audit: Statement,
    add_stats: Statement,
    update_meta: Statement,
    switch_lock: Statement,
    refresh: Statement,
}

/// The writer's connection with its statements.
struct Session {
    conn: Conn,
    st: Statements,
}

impl Session {
    fn open(pg: &Pg) -> Result<Session, StoreError> {
        Session::prepare(pg.connect()?)
    }

    fn prepare(mut conn: Conn) -> Result<Session, StoreError> {
        let mut p = |sql| conn.client.prepare(sql);
        let st = Statements {
            lock_meta: p(
                "SELECT engagement_count, next_seq, write_lock, write_lock_since \
                 FROM ei_meta WHERE id = 1 FOR UPDATE",
            )?,
            read_posts: p("SELECT e.resident, e.key, e.times FROM ei_engagements e \
                 JOIN unnest($1::text[], $2::bytea[]) AS k(resident, key) \
                 ON e.resident = k.resident AND e.key = k.key")?,
            upsert_posts: p("INSERT INTO ei_engagements (resident, key, times) \
                 SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) \
                 ON CONFLICT (resident, key) DO UPDATE SET times = EXCLUDED.times")?,
            delete_posts: p("DELETE FROM ei_engagements e \
                 USING unnest($1::text[], $2::bytea[]) AS k(resident, key) \
                 WHERE e.resident = k.resident AND e.key = k.key")?,
            insert_outbox: p("INSERT INTO ei_outbox (seq, entry) \
                 SELECT * FROM unnest($1::bigint[], $2::bytea[])")?,
            insert_audit: p(super::INSERT_AUDIT)?,
            add_stats: p("INSERT INTO ei_stats (field, value, posts) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                 ON CONFLICT (field, value) DO UPDATE SET posts = ei_stats.posts + EXCLUDED.posts \
                 RETURNING field, value, posts")?,
            update_meta: p("UPDATE ei_meta SET engagement_count = $1, next_seq = $2 WHERE id = 1")?,
            switch_lock: p(
                "UPDATE ei_meta SET write_lock = $1, write_lock_since = $2 WHERE id = 1",
            )?,
            refresh: p(
                "SELECT engagement_count, next_seq, write_lock, write_lock_since, \
                 pg_is_in_recovery() FROM ei_meta WHERE id = 1",
            )?,
        };
        Ok(Session { conn, st })
    }
}

/// A stored post's timestamps.
type Times = [Option<Timestamp>; 3];

/// A post's two key columns.
type RowKey = (String, Vec<u8>);

fn row_key(key: &EngagementKey) -> RowKey {
    (
        key.registered_resident_identification().to_owned(),
        crate::store::schema::encode_key_tail(key),
    )
}

/// A key the group has seen: its post now (`None` = absent) and whether the group
/// wrote it.
#[derive(Clone, Copy)]
struct Slot {
    times: Option<Times>,
    dirty: bool,
}

/// The posts one group has read or written. Reads go to the group's transaction
/// (prefetched per request); writes stay here until the end of the group.
struct GroupView {
    posts: HashMap<RowKey, Slot>,
}

impl View for GroupView {
    type Error = StoreError;

    fn get(&mut self, key: &EngagementKey) -> Result<Option<Engagement>, StoreError> {
        // Every key a request reads is prefetched before it is applied.
        let times = self.posts.get(&row_key(key)).and_then(|s| s.times);
        Ok(times.map(
            |[most_recent_content, creation_time, update_time]| Engagement {
                key: key.clone(),
                most_recent_content,
                creation_time,
                update_time,
            },
        ))
    }

    fn set(&mut self, key: &EngagementKey, value: Option<&Engagement>) {
        let times = value.map(|e| [e.most_recent_content, e.creation_time, e.update_time]);
        self.posts.insert(row_key(key), Slot { times, dirty: true });
    }
}

/// The PostgreSQL writer thread's state.
pub(in crate::store) struct PgWriter {
    pub(in crate::store) pg: Arc<Pg>,
    pub(in crate::store) session: Option<Conn>,
    pub(in crate::store) options: StoreOptions,
    pub(in crate::store) count: Arc<AtomicU64>,
    pub(in crate::store) metrics: Arc<Metrics>,
    pub(in crate::store) next_seq: u64,
    pub(in crate::store) commits: tokio::sync::watch::Sender<u64>,
    pub(in crate::store) lock: Arc<LockState>,
    pub(in crate::store) stats: Arc<Mutex<PostStats>>,
    pub(in crate::store) queued: Arc<AtomicU64>,
    pub(in crate::store) faults: Arc<Faults>,
    pub(in crate::store) health: Arc<Health>,
}

/// What a group's transaction came to.
enum Outcome {
    Committed(Vec<Vec<Change>>),
    Locked,
}

/// The counter row as the transaction read it.
struct Meta {
    count: u64,
    next_seq: u64,
    lock: WriteLock,
}

impl PgWriter {
    pub(in crate::store) fn run(mut self, rx: mpsc::Receiver<Message>) {
        let _alive = WriterAlive(self.health.clone());
        // The connection the store was opened with, if it still works.
        let mut session = self.session.take().and_then(|c| Session::prepare(c).ok());
        let mut next: Option<Message> = None;
        loop {
            let message = match next.take() {
                Some(m) => m,
                None => match rx.recv_timeout(REFRESH) {
                    Ok(m) => m,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.refresh(&mut session);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
            };
            match message {
                Message::Stop => break,
                Message::SetWriteLock { enabled, reply } => {
                    let r = self.switch_lock(&mut session, enabled);
                    let _ = reply.send(r.map_err(Arc::new));
                }
                Message::Write(first) => {
                    let jobs = gather(first, &rx, self.options.max_group_requests, &mut next);
                    self.queued.fetch_sub(jobs.len() as u64, Ordering::Relaxed);
                    self.commit_group(&mut session, jobs);
                }
            }
        }
        if let Some(s) = session {
            close(s.conn);
        }
        drop(rx);
        tracing::info!("store writer stopped");
    }

    /// The open session, connecting when there is none or it was closed.
    fn session<'a>(&self, session: &'a mut Option<Session>) -> Result<&'a mut Session, StoreError> {
        if session.as_ref().is_some_and(|s| s.conn.client.is_closed()) {
            if let Some(s) = session.take() {
                close(s.conn);
            }
        }
        if session.is_none() {
            *session = Some(Session::open(&self.pg)?);
            tracing::info!("store writer connected to PostgreSQL");
        }
        Ok(session.as_mut().expect("just set"))
    }

    /// After an error the connection is dropped and the next use opens a new one:
    /// a server that went away, was restarted or is now a standby (a failover)
    /// answers with I/O errors or with SQLSTATE classes 57 or 25, and a fresh
    /// connection (to the new primary, with a multi-host URL) is the cure for all;
    /// errors are rare, so reconnecting on any of them costs nothing.
    fn after_error(&self, session: &mut Option<Session>, e: &StoreError) {
        self.health.commit_failed(e.to_string());
        if let Some(s) = session.take() {
            close(s.conn);
        }
    }

    fn commit_group(&mut self, session: &mut Option<Session>, mut jobs: Vec<WriteJob>) {
        self.faults.before_group();
        match self.try_group(session, &mut jobs) {
            Ok(Outcome::Committed(results)) => {
                self.succeeded();
                for (job, changes) in jobs.into_iter().zip(results) {
                    super::super::writer::count_changes(&self.metrics, &job, &changes);
                    let _ = job.reply.send(Ok((changes, job.transactions)));
                }
            }
            Ok(Outcome::Locked) => {
                self.succeeded();
                let e = Arc::new(StoreError::WriteLocked);
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = jobs.len(), "group commit failed; nothing of it was written");
                self.after_error(session, &e);
                let e = Arc::new(e);
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// One group in one transaction.
    fn try_group(
        &mut self,
        session: &mut Option<Session>,
        jobs: &mut [WriteJob],
    ) -> Result<Outcome, StoreError> {
        let sync = self.options.sync;
        let Session { conn, st } = self.session(session)?;
        let mut tx = conn.client.transaction()?;
        if !sync {
            tx.batch_execute("SET LOCAL synchronous_commit = off")?;
        }
        let meta = meta_of(&tx.query_one(&st.lock_meta, &[])?);
        self.lock_seen(meta.lock);
        if meta.lock.enabled {
            return Ok(Outcome::Locked);
        }
        let mut view = GroupView {
            posts: HashMap::new(),
        };
        let mut results = Vec::with_capacity(jobs.len());
        let (mut delta, mut stats) = (0i64, StatsDelta::default());
        let (mut seqs, mut entries) = (Vec::new(), Vec::new());
        let mut audit = Vec::new();
        let mut seq = meta.next_seq;
        let committed_ms = outbox::unix_ms();
        // One read for the whole group, before any request is applied: the view
        // then holds the stored state, and each request's writes on top of it.
        prefetch(
            &mut tx,
            &st.read_posts,
            &mut view,
            jobs,
            &self.options.own_hsa_id,
        )?;
        for job in jobs.iter_mut() {
            let _enter = job.span.enter();
            let out = apply(
                job.service,
                &self.options.own_hsa_id,
                &job.transactions,
                job.now,
                &mut view,
            )?;
            delta += super::super::writer::tally(&out.changes, &mut stats);
            if self.options.outbox {
                for e in outbox::entries_of(&out.changes, committed_ms) {
                    seqs.push(seq as i64);
                    entries.push(crate::store::schema::encode_outbox(&e));
                    seq += 1;
                }
            }
            if let Some(access) = &job.access {
                audit.extend(crate::store::audit::write_records(
                    access,
                    job.service.name(),
                    &job.transactions,
                    &out.changes,
                ));
            }
            results.push(out.changes);
        }
        let written = write_posts(&mut tx, st, &view)?;
        if !entries.is_empty() {
            tx.execute(&st.insert_outbox, &[&seqs, &entries])?;
        }
        if !audit.is_empty() {
            let (residents, times, json) = audit_columns(&audit);
            tx.execute(&st.insert_audit, &[&residents, &times, &json])?;
        }
        let counters = add_stats(&mut tx, &st.add_stats, &stats)?;
        let new_count = (meta.count as i64 + delta).max(0) as u64;
        tx.execute(&st.update_meta, &[&(new_count as i64), &(seq as i64)])?;
        self.faults.before_write(sync)?;
        tx.commit()?;
        self.count.store(new_count, Ordering::Relaxed);
        stats::publish(
            &mut self.stats.lock().unwrap_or_else(|e| e.into_inner()),
            counters,
        );
        self.publish_head(seq);
        self.metrics.group_commit(jobs.len(), written);
        Ok(Outcome::Committed(results))
    }

    /// PostgreSQL took a commit or answered the idle check: healthy (again).
    fn succeeded(&self) {
        if self.health.commit_failing() {
            tracing::info!("PostgreSQL reachable again: writes are accepted");
            self.health.recovered();
        }
        self.health.commit_succeeded();
    }

    fn publish_head(&mut self, seq: u64) {
        if seq != self.next_seq {
            self.next_seq = seq;
            self.commits.send_replace(seq);
        }
    }

    /// Takes the write lock as the database has it (another server may switch it).
    fn lock_seen(&self, lock: WriteLock) {
        if self.lock.get() != lock {
            self.lock.set(lock);
        }
    }

    /// Switches the write lock in the counter row, after the writes queued before.
    fn switch_lock(
        &mut self,
        session: &mut Option<Session>,
        enabled: bool,
    ) -> Result<WriteLock, StoreError> {
        let result = (|| {
            let Session { conn, st } = self.session(session)?;
            let mut tx = conn.client.transaction()?;
            let meta = meta_of(&tx.query_one(&st.lock_meta, &[])?);
            if meta.lock.enabled == enabled {
                tx.commit()?;
                return Ok(meta.lock);
            }
            let lock = WriteLock {
                enabled,
                since_unix: outbox::unix_ms() / 1000,
            };
            tx.execute(&st.switch_lock, &[&enabled, &(lock.since_unix as i64)])?;
            tx.commit()?;
            tracing::warn!(enabled, "write lock switched");
            Ok(lock)
        })();
        match result {
            Ok(lock) => {
                self.lock_seen(lock);
                Ok(lock)
            }
            Err(e) => {
                self.after_error(session, &e);
                Err(e)
            }
        }
    }

    /// The idle check: rereads the counter row (count, outbox head, write lock) and
    /// says in the store's health whether PostgreSQL takes writes.
    fn refresh(&mut self, session: &mut Option<Session>) {
        let result = (|| {
            let Session { conn, st } = self.session(session)?;
            let row = conn.client.query_one(&st.refresh, &[])?;
            let meta = meta_of(&row);
            // Another server changed the posts: its statistics changes too.
            let stats = if meta.count != self.count.load(Ordering::Relaxed) {
                Some(super::read_stats(&mut conn.client)?)
            } else {
                None
            };
            Ok::<_, StoreError>((meta, row.get::<_, bool>(4), stats))
        })();
        match result {
            Ok((_, true, _)) => {
                // Reconnect next time: after a failover the URL may lead to the primary.
                let e = StoreError::Config(
                    "connected to a PostgreSQL standby (read-only); use several hosts with target_session_attrs=read-write".into(),
                );
                tracing::warn!(error = %e, "PostgreSQL takes no writes");
                self.after_error(session, &e);
            }
            Ok((meta, false, stats)) => {
                if let Some(stats) = stats {
                    *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
                }
                self.count.store(meta.count, Ordering::Relaxed);
                self.publish_head(meta.next_seq);
                self.lock_seen(meta.lock);
                self.succeeded();
            }
            Err(e) => {
                tracing::warn!(error = %e, "PostgreSQL is not reachable");
                self.after_error(session, &e);
            }
        }
    }
}

fn meta_of(row: &postgres::Row) -> Meta {
    Meta {
        count: row.get::<_, i64>(0) as u64,
        next_seq: row.get::<_, i64>(1) as u64,
        lock: WriteLock {
            enabled: row.get(2),
            since_unix: row.get::<_, i64>(3) as u64,
        },
    }
}

/// Reads the posts the group's requests will look at, in one statement: their keys
/// and, for ProcessNotification, the same keys owned by this index.
fn prefetch(
    tx: &mut postgres::Transaction<'_>,
    read_posts: &Statement,
    view: &mut GroupView,
    jobs: &[WriteJob],
    own: &str,
) -> Result<(), StoreError> {
    let mut residents = Vec::new();
    let mut keys = Vec::new();
    let mut want = |key: &EngagementKey| {
        let k = row_key(key);
        if !view.posts.contains_key(&k) {
            let absent = Slot {
                times: None,
                dirty: false,
            };
            view.posts.insert(k.clone(), absent);
            residents.push(k.0);
            keys.push(k.1);
        }
    };
    for job in jobs {
        for t in &job.transactions {
            want(&t.engagement.key);
            if job.service == WriteOperation::ProcessNotification {
                want(&t.engagement.key.with_owner(own));
            }
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    for row in tx.query(read_posts, &[&residents, &keys])? {
        let times = crate::store::schema::decode_times(row.get(2))?;
        let found = Slot {
            times: Some(times),
            dirty: false,
        };
        view.posts.insert((row.get(0), row.get(1)), found);
    }
    Ok(())
}

/// Writes the group's final state of every key it changed: one upsert and one
/// delete statement. Returns how many rows that touched.
fn write_posts(
    tx: &mut postgres::Transaction<'_>,
    st: &Statements,
    view: &GroupView,
) -> Result<usize, StoreError> {
    let (mut put_r, mut put_k, mut put_v) = (Vec::new(), Vec::new(), Vec::new());
    let (mut del_r, mut del_k) = (Vec::new(), Vec::new());
    for (k, slot) in view.posts.iter().filter(|(_, s)| s.dirty) {
        match slot.times {
            Some(times) => {
                put_r.push(k.0.as_str());
                put_k.push(k.1.as_slice());
                let mut v = Vec::with_capacity(19);
                crate::store::schema::encode_times_into(&mut v, times);
                put_v.push(v);
            }
            None => {
                del_r.push(k.0.as_str());
                del_k.push(k.1.as_slice());
            }
        }
    }
    if !put_r.is_empty() {
        tx.execute(&st.upsert_posts, &[&put_r, &put_k, &put_v])?;
    }
    if !del_r.is_empty() {
        tx.execute(&st.delete_posts, &[&del_r, &del_k])?;
    }
    Ok(put_r.len() + del_r.len())
}

/// Adds the group's statistics changes; the counters' new values.
fn add_stats(
    tx: &mut postgres::Transaction<'_>,
    add: &Statement,
    delta: &StatsDelta,
) -> Result<Vec<(stats::StatsField, String, u64)>, StoreError> {
    let (mut fields, mut values, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
    for (f, v, d) in delta.changes() {
        fields.push(f.name());
        values.push(v);
        deltas.push(d);
    }
    if fields.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(fields.len());
    for row in tx.query(add, &[&fields, &values, &deltas])? {
        let field: &str = row.get(0);
        let f = stats::StatsField::from_name(field).ok_or_else(|| {
            crate::store::schema::Corrupt(format!("unknown statistics field {field}"))
        })?;
        out.push((f, row.get(1), row.get::<_, i64>(2).max(0) as u64));
    }
    Ok(out)
}
