//! A small, bounded pool of synchronous PostgreSQL connections for the store's
//! blocking reads, each with its own cache of prepared statements.
//!
//! A connection that fails is dropped, not returned, and the next caller opens a
//! fresh one: with a multi-host URL and `target_session_attrs=read-write` that is a
//! connection to whichever host is the primary now, which is how the store follows
//! a failover. At most [`Pool::max`] connections exist; a caller waits up to
//! [`WAIT`] for one, then gets [`StoreError::Busy`].
//!
//! After a failover every idle connection still leads to the old primary. A read
//! ([`Pool::read`]) that finds its connection gone drops all the idle ones with it
//! and is tried once more on a new connection, so the failover costs readers
//! nothing instead of one failed request per pooled connection.

use super::super::StoreError;
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How long a caller waits for a free connection.
const WAIT: Duration = Duration::from_secs(10);

/// One connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// Opens a connection. Its statements are planned at every execution
    /// (`plan_cache_mode = force_custom_plan`): a generic plan made while the table
    /// was small (a sequential scan and hash join for the writer's key lists) would
    /// otherwise stay in use as the table grows and slow every write down.
    pub(crate) fn open(config: &postgres::Config) -> Result<Conn, StoreError> {
        Conn::open_with(config, "SET plan_cache_mode = force_custom_plan")
    }

    /// Opens a pooled connection (reads, and the notifier's writes of one cursor or
    /// dead letter): its statements are planned once, for any parameters
    /// (`force_generic_plan`), not at every execution. Each leads with a primary key
    /// or an index, so the generic plan is an index scan even when made on an empty
    /// table (test `pooled_reads_plan_an_index_scan_on_an_empty_table`); planning each
    /// lookup again cost PostgreSQL more than running it (README: running on
    /// PostgreSQL, Connections).
    pub(crate) fn open_reader(config: &postgres::Config) -> Result<Conn, StoreError> {
        Conn::open_with(config, "SET plan_cache_mode = force_generic_plan")
    }

    fn open_with(config: &postgres::Config, settings: &str) -> Result<Conn, StoreError> {
        let mut client = config.connect(NoTls)?;
        if let Err(e) = client.batch_execute(settings) {
            // PostgreSQL before 12 and some derivatives lack the setting.
            tracing::warn!(error = %e, "plan_cache_mode is not available; the server's default planning stays");
        }
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// `sql` prepared on this connection (once).
    pub(crate) fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

struct Slots {
    idle: Vec<Conn>,
    /// Connections open (idle or lent).
    open: usize,
}

pub(crate) struct Pool {
    config: postgres::Config,
    max: usize,
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl Pool {
    pub(crate) fn new(config: postgres::Config, max: usize) -> Pool {
        Pool {
            config,
            max: max.max(1),
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Runs `f` on a pooled connection. The connection goes back to the pool when
    /// `f` succeeded; after an error it is dropped (it may be to a server that went
    /// away or is now a standby) and the next caller opens a new one.
    pub(crate) fn with<T>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (mut conn, _) = self.take()?;
        let result = f(&mut conn);
        self.give_back(conn, result.is_ok());
        result
    }

    /// [`Pool::with`] for a statement that writes: it is tried again on a new
    /// connection only when the server said the pooled connection's backend had ended
    /// (57P0x, sent when it terminated, so the statement was never run); after any
    /// other failure it may have run, and the error stands.
    pub(crate) fn write<T>(
        &self,
        f: impl Fn(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.retrying(f, backend_ended)
    }

    /// Runs `f`, which must change nothing (a read), on a pooled connection. When it
    /// fails because a connection taken from the pool is gone (its server died, was
    /// stopped or cut it off: after a failover, the old primary), the idle connections
    /// are dropped too and `f` runs once more on a new connection.
    pub(crate) fn read<T>(
        &self,
        f: impl Fn(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.retrying(f, connection_lost)
    }

    /// Runs `f`; when it failed on a connection taken from the pool and `gone` says
    /// the connection was, drops the idle connections and runs `f` once more.
    fn retrying<T>(
        &self,
        f: impl Fn(&mut Conn) -> Result<T, StoreError>,
        gone: impl Fn(&StoreError) -> bool,
    ) -> Result<T, StoreError> {
        let (mut conn, reused) = self.take()?;
        let result = f(&mut conn);
        let lost = reused && result.as_ref().is_err_and(&gone);
        self.give_back(conn, result.is_ok());
        if !lost {
            return result;
        }
        let dropped = self.drop_idle();
        tracing::warn!(
            error = %result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
            idle_dropped = dropped,
            "a pooled PostgreSQL connection was gone; trying again on a new connection"
        );
        self.with(f)
    }

    /// Closes every idle connection; answers how many.
    fn drop_idle(&self) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let idle: Vec<Conn> = slots.idle.drain(..).collect();
        slots.open -= idle.len();
        drop(slots);
        self.freed.notify_all();
        let n = idle.len();
        idle.into_iter().for_each(close);
        n
    }

    /// A connection from the pool, and whether it was open before (idle) rather than
    /// opened now.
    fn take(&self) -> Result<(Conn, bool), StoreError> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            while let Some(c) = slots.idle.pop() {
                if !c.client.is_closed() {
                    return Ok((c, true));
                }
                slots.open -= 1;
                close(c);
            }
            if slots.open < self.max {
                slots.open += 1;
                drop(slots);
                return Conn::open_reader(&self.config)
                    .map(|c| (c, false))
                    .inspect_err(|_| {
                        self.slots.lock().unwrap_or_else(|e| e.into_inner()).open -= 1;
                        self.freed.notify_one();
                    });
            }
            let (s, timeout) = self
                .freed
                .wait_timeout(slots, WAIT)
                .unwrap_or_else(|e| e.into_inner());
            slots = s;
            if timeout.timed_out() && slots.idle.is_empty() && slots.open >= self.max {
                return Err(StoreError::Busy);
            }
        }
    }

    fn give_back(&self, conn: Conn, healthy: bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if !healthy || conn.client.is_closed() {
            slots.open -= 1;
            close(conn);
        } else {
            slots.idle.push(conn);
        }
        self.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let slots = self.slots.get_mut().unwrap_or_else(|e| e.into_inner());
        for c in slots.idle.drain(..) {
            close(c);
        }
    }
}

/// Whether an error says the connection itself is gone: no SQLSTATE (an I/O error,
/// a closed socket), class 08 (connection exception) or 57P0x (the server shutting
/// down or terminating the backend).
fn connection_lost(e: &StoreError) -> bool {
    match e {
        StoreError::Postgres(e) => match e.code() {
            None => e.as_db_error().is_none(),
            Some(code) => {
                let code = code.code();
                code.starts_with("08") || code.starts_with("57P0")
            }
        },
        _ => false,
    }
}

/// Whether the server said the connection's backend ended (57P01 admin shutdown,
/// 57P02 crash shutdown, 57P03 cannot connect now): it sends that as it goes, before
/// reading another statement.
fn backend_ended(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(e) if e.code().is_some_and(|c| c.code().starts_with("57P0")))
}

/// Drops a connection on a thread of its own: the client's drop blocks on its
/// connection's runtime, which must not happen on an async executor's thread.
pub(crate) fn close(conn: Conn) {
    let _ = std::thread::Builder::new()
        .name("ei-pg-close".into())
        .spawn(move || drop(conn));
}
