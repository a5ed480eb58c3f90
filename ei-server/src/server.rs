//! Starting and stopping the server: `run(listener, config, shutdown)` opens the store,
//! serves until `shutdown` resolves, drains in-flight requests and closes the store.
//! Only `main` reads ports and signals (one exception: with TLS, SIGHUP rereads the
//! certificate files and the `[access]` table, see [`reload_on_sighup`]); tests bind `127.0.0.1:0` and pass their own
//! shutdown future.

use crate::config::Config;
use crate::http::{router, serve, AppState, ConnStats, Limits};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::service::Service;
use crate::store::{Store, StoreError, StoreKind, StoreOptions};
use crate::systemd;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store (data directory {path}): {source}")]
    Store {
        path: std::path::PathBuf,
        source: StoreError,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Opens the store described by `config`.
pub fn open_store(config: &Config, metrics: Arc<Metrics>) -> Result<Store, ServerError> {
    let path = config.data_dir.clone();
    std::fs::create_dir_all(&path).map_err(|source| ServerError::DataDir {
        path: path.clone(),
        source,
    })?;
    let mut opts = StoreOptions::new(&config.hsa_id);
    opts.sync = config.wal_sync;
    opts.max_group_requests = config.max_group_requests;
    opts.block_cache_bytes = config.block_cache_mb << 20;
    opts.outbox = config.notifications.enabled();
    opts.writer_queue = config.writer_queue;
    opts.write_nice = config.write_nice;
    opts.min_free_bytes = config.min_free_disk_mb << 20;
    let kind = config.store_kind().map_err(|source| ServerError::Store {
        path: path.clone(),
        source,
    })?;
    match kind {
        StoreKind::RocksDb => Store::open(&path, opts, metrics),
        StoreKind::Postgres(url) => Store::open_postgres(&url, &path, opts, metrics),
    }
    .map_err(|source| ServerError::Store { path, source })
}

/// Starts delivery when any subscriber can exist.
async fn start_notifications(
    config: &Config,
    store: &Arc<Store>,
) -> Result<Option<Arc<Notifier>>, ServerError> {
    let n = &config.notifications;
    if !n.enabled() {
        return Ok(None);
    }
    let notifier = Notifier::start(
        store.clone(),
        n.clone(),
        config.hsa_id.clone(),
        config.data_dir.clone(),
    )
    .await
    .map_err(|source| ServerError::Store {
        path: config.data_dir.clone(),
        source,
    })?;
    Ok(Some(notifier))
}

async fn wait_for(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves on `listener` until `shutdown` resolves, then drains and closes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::default());
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_store(&config, metrics))
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))??
    };
    run_with_store(listener, config, Arc::new(store), shutdown).await
}

/// Serves an opened `store` (see [`open_store`]) on `listener` until `shutdown`
/// resolves, then drains and closes the store. [`run`] is this after opening the
/// store; the in-process harness ([`crate::harness`]) calls it to keep a handle on
/// the store it serves.
pub async fn run_with_store(
    listener: TcpListener,
    config: Config,
    store: Arc<Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let tls = match config.tls_files() {
        Some(files) => Some(Arc::new(crate::tls::Tls::load(files)?)),
        None => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let notifier = start_notifications(&config, &store).await?;
    let admin = crate::admin::router(
        store.clone(),
        notifier.clone(),
        config.notifications.admin_token.clone(),
    );
    let (admin_addr, admin_task) =
        crate::admin::start(config.admin_listen, admin, stop_rx.clone()).await?;
    let auditor = Arc::new(if config.audit {
        let store = store.clone();
        let days = config.audit_retention_days;
        crate::audit::Auditor::start(store, days, config.write_nice)?
    } else {
        crate::audit::Auditor::off(store.metrics().clone())
    });
    let service = Service::new(config.rules(), config.error_mode, store.clone())
        .with_max_in_flight(config.max_in_flight)
        .with_auditor(auditor.clone())
        .with_access(config.access.clone())
        .with_write_runtime(crate::priority::WriteRuntime::start(config.write_nice)?);
    if config.access.is_set() {
        for line in config.access.describe() {
            tracing::info!("access: {line}");
        }
    }
    let connections = Arc::new(ConnStats::default());
    let state = Arc::new(AppState {
        service: Arc::new(service),
        config: config.clone(),
        started: Instant::now(),
        ready: AtomicBool::new(true),
        notifier: notifier.clone(),
        admin_addr: Some(admin_addr),
        connections: connections.clone(),
    });
    if let Some(tls) = &tls {
        reload_on_sighup(tls.clone(), state.clone(), stop_rx.clone());
    }
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), engagements = store.engagement_count(), "ei-server listening");
    let app = router(state.clone());
    let ready = state.clone();
    // The store is open and every listener bound: a Type=notify unit is started.
    systemd::tell(&format!(
        "READY=1\nSTATUS=serving on {addr}, {} posts",
        store.engagement_count()
    ));
    let watchdog = tokio::spawn(systemd::watchdog());
    let stopping = stop_rx.clone();
    tokio::spawn(async move {
        wait_for(stopping).await;
        ready.ready.store(false, Ordering::Relaxed);
        systemd::tell("STOPPING=1\nSTATUS=draining in-flight requests");
        tracing::info!("shutting down: draining in-flight requests");
    });
    serve(listener, app, limits(&config), connections, tls, stop_rx).await;
    drop(state);
    if let Some(n) = notifier {
        n.shutdown().await;
    }
    let _ = admin_task.await;
    tokio::task::spawn_blocking(move || auditor.stop())
        .await
        .ok();
    tokio::task::spawn_blocking(move || store.close())
        .await
        .ok();
    watchdog.abort();
    tracing::info!("store closed");
    Ok(())
}

/// Rereads the TLS files and the configuration file's `[access]` table on SIGHUP
/// until `stop`: new handshakes get the new TLS configuration, open connections keep
/// theirs, the next request meets the new table; a failed reload keeps the old one.
fn reload_on_sighup(
    tls: Arc<crate::tls::Tls>,
    state: Arc<AppState>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS files are not reloaded");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate, key and client CAs reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: TLS reload failed; the previous configuration stays in use")
                }
            }
            reload_access(&state);
        }
    });
}

/// Puts the configuration file's `[access]` table (as it is now) in force; a file
/// that cannot be read or fails the check keeps the table in force.
fn reload_access(state: &AppState) {
    match state.config.reread_access() {
        None => {}
        Some(Ok(access)) if access == *state.service.access() => {
            tracing::info!("SIGHUP: [access] unchanged");
        }
        Some(Ok(access)) => {
            if access.is_set() {
                for line in access.describe() {
                    tracing::info!("SIGHUP: access: {line}");
                }
            } else {
                tracing::info!(
                    "SIGHUP: [access] removed: every caller with a certificate may call everything"
                );
            }
            state.service.set_access(access);
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "SIGHUP: [access] not reloaded; the previous table stays in force")
        }
    }
}

/// The service listener's bounds from the configuration.
fn limits(c: &Config) -> Limits {
    use std::time::Duration;
    Limits {
        header_read: Duration::from_millis(c.header_read_timeout_ms),
        idle: Duration::from_millis(c.idle_timeout_ms),
        max_connections: c.max_connections,
        drain: Duration::from_millis(c.drain_timeout_ms),
    }
}
