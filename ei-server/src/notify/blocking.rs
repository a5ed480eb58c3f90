//! The notifier's way to the store: every RocksDB call (reads, synced writes) runs on
//! tokio's blocking threads, so the executor that serves SOAP never waits for a disk.

use crate::store::{Store, StoreError};
use std::sync::Arc;

/// Runs `f` with the store on a blocking thread. A panic in `f` is passed on.
pub async fn run<T, F>(store: &Arc<Store>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only when the runtime is shutting down.
        Err(_) => Err(StoreError::Closed),
    }
}
