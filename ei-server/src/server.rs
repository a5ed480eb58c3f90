//! Starting and stopping the server: `run(listener, config, shutdown)` opens the store,
//! serves until `shutdown` resolves, drains in-flight requests and closes the store.
//! Only `main` reads ports and signals; tests bind `127.0.0.1:0` and pass their own
//! shutdown future.

use crate::config::Config;
use crate::http::{router, AppState};
use crate::metrics::Metrics;
use crate::service::Service;
use crate::store::{Store, StoreError, StoreOptions};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the store in {path}: {source}")]
    Store {
        path: std::path::PathBuf,
        source: StoreError,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
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
    Store::open(&path, opts, metrics).map_err(|source| ServerError::Store { path, source })
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
    let store = Arc::new(store);
    let service = Service::new(config.rules(), config.error_mode, store.clone());
    let state = Arc::new(AppState {
        service,
        config: config.clone(),
        started: Instant::now(),
        ready: AtomicBool::new(true),
    });
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %config.data_dir.display(), engagements = store.engagement_count(), "ei-server listening");
    let app = router(state.clone());
    let ready = state.clone();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            ready.ready.store(false, Ordering::Relaxed);
            tracing::info!("shutting down: draining in-flight requests");
        })
        .await;
    drop(state);
    tokio::task::spawn_blocking(move || store.close())
        .await
        .ok();
    tracing::info!("store closed");
    Ok(result?)
}
