//! The server in-process, for tests, benchmarks and `capacity --embedded`: the one
//! place that starts [`crate::server`] on a loopback port with a temporary or given
//! data directory and hands back its URL, its store (and so its metrics and the
//! fault-injection seam, [`crate::store::Faults`]) and a clean stop.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ei_server::harness::HarnessError> {
//! use ei_server::harness::{Harness, Options};
//! let config = ei_server::config::Config::default();
//! let server = Harness::start(config, Options::default()).await?;
//! let url = server.url("/skltp-ei/update-service/v1");
//! # let _ = url;
//! server.stop().await?;
//! # Ok(())
//! # }
//! ```
//!
//! On PostgreSQL: create a throwaway database with [`TestDatabase::create`] (on the
//! server `EI_TEST_PG` names; `None` means skip) and set `config.store =
//! db.url().into()` before [`Harness::start`]; keep `db` alive until the harness has
//! stopped (dropping it drops the database).
//!
//! The server runs on the caller's runtime by default, or on its own thread and
//! runtime ([`Options::own_runtime`]) so that its tasks do not share a load
//! generator's scheduler and stopping it does not depend on the caller's runtime.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::server::{self, ServerError};
use crate::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Where the harness keeps the store.
#[derive(Clone, Debug, Default)]
pub enum DataDir {
    /// A fresh temporary directory, removed when the harness is dropped.
    #[default]
    Temp,
    /// `Config::data_dir` as given (kept after the stop, e.g. to start again on it).
    Config,
}

/// How the harness starts the server.
#[derive(Clone, Debug)]
pub struct Options {
    pub data_dir: DataDir,
    /// The address to bind; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Run on a dedicated thread with its own two-worker runtime.
    pub own_runtime: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            data_dir: DataDir::Temp,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            own_runtime: false,
        }
    }
}

/// Why the harness could not start or stop the server.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot prepare the in-process server: {0}")]
    Setup(#[from] std::io::Error),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("the in-process server's task or thread panicked")]
    Panicked,
}

/// How the server runs.
enum Running {
    Task(tokio::task::JoinHandle<Result<(), ServerError>>),
    Thread {
        done: oneshot::Receiver<Result<(), ServerError>>,
        thread: std::thread::JoinHandle<()>,
    },
}

/// A running in-process server. [`Harness::stop`] drains it, closes the store and
/// reports how the server ended; dropping it also asks it to stop (and, on its own
/// runtime, waits until the store is closed).
pub struct Harness {
    /// `http://127.0.0.1:PORT` (`https://` when the configuration sets `tls_cert`).
    pub base: String,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    store: Arc<Store>,
    shutdown: Option<oneshot::Sender<()>>,
    running: Option<Running>,
    // Declared last: removed after the server has stopped.
    _temp: Option<tempfile::TempDir>,
}

impl Harness {
    /// Opens the store described by `config` (in the directory `options` says) and
    /// serves it on `options.listen`.
    pub async fn start(mut config: Config, options: Options) -> Result<Harness, HarnessError> {
        let temp = match options.data_dir {
            DataDir::Temp => {
                let t = tempfile::Builder::new().prefix("ei-harness-").tempdir()?;
                config.data_dir = t.path().join("data");
                Some(t)
            }
            DataDir::Config => None,
        };
        let listener = std::net::TcpListener::bind(options.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        config.listen = addr;
        // Its admin listener too on a free loopback port (the address is in /status).
        config.admin_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let store = open(&config).await?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let stop = async move {
            let _ = stop.await;
        };
        let serving = {
            let (config, store) = (config.clone(), store.clone());
            async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                server::run_with_store(listener, config, store, stop).await
            }
        };
        let running = if options.own_runtime {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("ei-harness")
                .enable_all()
                .build()?;
            let (tx, done) = oneshot::channel();
            let thread = std::thread::Builder::new()
                .name("ei-harness".into())
                .spawn(move || {
                    let _ = tx.send(runtime.block_on(serving));
                })?;
            Running::Thread { done, thread }
        } else {
            Running::Task(tokio::spawn(serving))
        };
        Ok(Harness {
            base: match config.tls_cert {
                Some(_) => format!("https://{addr}"),
                None => format!("http://{addr}"),
            },
            addr,
            data_dir: config.data_dir,
            store,
            shutdown: Some(shutdown),
            running: Some(running),
            _temp: temp,
        })
    }

    /// `base` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The store the server serves: its counts, metrics and fault seam.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The server's metrics (what `/metrics` renders).
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.store.metrics()
    }

    /// Stops the server: it stops accepting, drains in-flight requests, finishes
    /// queued writes and closes the store; then the store's files are released (a new
    /// harness may open the same directory).
    pub async fn stop(mut self) -> Result<(), HarnessError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.running.take() {
            Some(Running::Task(task)) => task.await.map_err(|_| HarnessError::Panicked)??,
            Some(Running::Thread { done, thread }) => {
                let result = done.await;
                let joined = thread.join();
                match (result, joined) {
                    (Ok(r), Ok(())) => r?,
                    _ => return Err(HarnessError::Panicked),
                }
            }
            None => {}
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(Running::Thread { thread, .. }) = self.running.take() {
            let _ = thread.join();
        }
    }
}

async fn open(config: &Config) -> Result<Arc<Store>, HarnessError> {
    let config = config.clone();
    let metrics = Arc::new(Metrics::default());
    let store = tokio::task::spawn_blocking(move || server::open_store(&config, metrics))
        .await
        .map_err(|_| HarnessError::Panicked)??;
    Ok(Arc::new(store))
}

/// A throwaway PostgreSQL database for one test, on the server the environment
/// variable `EI_TEST_PG` names (a libpq URL of a database on which the test user may
/// `CREATE DATABASE`). Dropped (with its connections) when this is dropped. Run the
/// harness on it with `config.store = db.url().into()`.
pub struct TestDatabase {
    /// The URL `EI_TEST_PG` gave (read only with the `postgres` feature).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A fresh database named after `label`; `None`, with a message on stderr, when
    /// `EI_TEST_PG` is unset (the test then skips). Panics when the server refuses.
    pub fn create(label: &str) -> Option<TestDatabase> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        if !cfg!(feature = "postgres") {
            eprintln!("skipped on PostgreSQL ({label}): built without the `postgres` feature");
            return None;
        }
        let Some(admin) = std::env::var("EI_TEST_PG").ok().filter(|u| !u.is_empty()) else {
            eprintln!("skipped on PostgreSQL ({label}): EI_TEST_PG is not set");
            return None;
        };
        let clean: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        let name = format!(
            "ei_t_{}_{}_{clean}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let url = with_database(&admin, &name);
        let db = TestDatabase { admin, name, url };
        let sql = format!("CREATE DATABASE {}", db.name);
        db.admin_sql(&sql).unwrap_or_else(|e| panic!("{e}"));
        Some(db)
    }

    /// The database's URL (for `config.store` or [`Store::open_postgres`]).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs one statement on the admin database, on a thread of its own (the
    /// synchronous client must not run on an async executor's thread).
    #[cfg(not(feature = "postgres"))]
    fn admin_sql(&self, _sql: &str) -> Result<(), String> {
        Err("built without the `postgres` feature".into())
    }

    #[cfg(feature = "postgres")]
    fn admin_sql(&self, sql: &str) -> Result<(), String> {
        let (admin, sql) = (self.admin.clone(), sql.to_owned());
        std::thread::spawn(move || {
            let mut c = crate::store::pg::parse_url(&admin)
                .and_then(|c| Ok(c.connect(postgres::NoTls)?))
                .map_err(|e| format!("EI_TEST_PG: cannot connect: {e}"))?;
            c.batch_execute(&sql)
                .map_err(|e| format!("EI_TEST_PG: {sql}: {e}"))
        })
        .join()
        .unwrap_or_else(|_| Err("the admin statement's thread panicked".into()))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = self.admin_sql(&sql) {
            eprintln!("{e}");
        }
    }
}

/// `url` (a libpq URL or `key=value` string) naming database `name` instead.
pub fn with_database(url: &str, name: &str) -> String {
    let Some(scheme) = url.find("://") else {
        return format!("{url} dbname={name}");
    };
    let (head, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_end = head[scheme + 3..]
        .find('/')
        .map_or(head.len(), |i| scheme + 3 + i);
    format!("{}/{name}{query}", &head[..authority_end])
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn test_databases_replace_the_database_of_the_url() {
        for (url, want) in [
            (
                "postgresql://postgres@/postgres?host=/tmp/pg",
                "postgresql://postgres@/ei_x?host=/tmp/pg",
            ),
            (
                "postgresql://u:p@h1:5432,h2/db",
                "postgresql://u:p@h1:5432,h2/ei_x",
            ),
            ("postgresql://h", "postgresql://h/ei_x"),
            (
                "host=/tmp/pg user=postgres",
                "host=/tmp/pg user=postgres dbname=ei_x",
            ),
        ] {
            assert_eq!(with_database(url, "ei_x"), want);
        }
    }
}
