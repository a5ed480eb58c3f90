//! Notifying subscribers (contract §5) from the transactional outbox.
//!
//! The writer puts every notifiable change into the `outbox` column family in the same
//! synced batch as the posts ([`crate::store`]), so nothing acknowledged is ever lost
//! between index and notification. This module is the map and the lifecycle (start,
//! shutdown) of the notification side:
//! - [`subscriber`]: a subscriber and its filters; [`member`]: what the notifier keeps
//!   of each known subscriber (active, absent, parked, resyncing or dropped) and
//!   [`record`], its persisted part;
//! - [`refresh`]: the subscriber set from configuration and registry ([`registry`]),
//!   suspect answers, absent subscribers;
//! - [`delivery`]: one worker per active subscriber, [`call`]: one ProcessNotification
//!   call over [`tls`] clients;
//! - [`upkeep`]: batched cursor writes, parking, grace period, outbox clean-up;
//! - [`operations`]: replay and resync; [`status`]: admin status and metrics text;
//!   [`admin`]: the admin routes.
//!
//! Every RocksDB call runs on a blocking thread ([`blocking`]), never on the executor.

pub mod admin;
pub mod blocking;
pub mod call;
pub mod delivery;
pub mod member;
pub mod operations;
pub mod record;
pub mod refresh;
pub mod registry;
pub mod status;
pub mod subscriber;
pub mod tls;
pub mod upkeep;

use crate::config::NotificationConfig;
use crate::metrics::Histogram;
use crate::store::Store;
use member::Member;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// Delivery latency buckets in seconds.
const LATENCY_BOUNDS: &[f64] = &[0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// The notifier's own counters (per-subscriber ones live in [`member::SubscriberState`]).
pub struct NotifyMetrics {
    /// Latency of successful calls, over all subscribers.
    pub latency: Histogram,
    /// Synced writes the notifier made (cursors, dead letters, records).
    pub syncs: AtomicU64,
    /// Finished upkeep rounds.
    pub upkeep_rounds: AtomicU64,
    /// Subscribers whose backlog was dropped after the grace period.
    pub gaps: AtomicU64,
    /// Registry answers not obeyed because they dropped too many subscribers.
    pub suspect_answers: AtomicU64,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        NotifyMetrics {
            latency: Histogram::new(LATENCY_BOUNDS),
            syncs: AtomicU64::new(0),
            upkeep_rounds: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            suspect_answers: AtomicU64::new(0),
        }
    }
}

/// The running notification side.
pub struct Notifier {
    store: Arc<Store>,
    config: NotificationConfig,
    own_hsa_id: String,
    cache_file: PathBuf,
    clients: Arc<tls::Clients>,
    metrics: Arc<NotifyMetrics>,
    /// Every subscriber the notifier knows, by logical address.
    members: Mutex<BTreeMap<String, Member>>,
    /// Serialises refreshes (and resyncs, which change a member's phase).
    refreshing: tokio::sync::Mutex<()>,
    /// Serialises cursor writes: the batched writer and a worker's dead letters.
    cursor_writes: Arc<Mutex<()>>,
    /// Set at shutdown: workers and resyncs stop.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Notifier {
    /// Loads the known subscribers from the store, resolves the subscriber set, and
    /// starts the workers and the upkeep task.
    pub async fn start(
        store: Arc<Store>,
        config: NotificationConfig,
        own_hsa_id: String,
        data_dir: PathBuf,
    ) -> Result<Arc<Notifier>, crate::store::StoreError> {
        let cache_file = config
            .registry
            .as_ref()
            .and_then(|r| r.cache_file.clone())
            .unwrap_or_else(|| data_dir.join("subscribers-cache.json"));
        let known = blocking::run(&store, member::load_known).await?;
        let (stop, _) = tokio::sync::watch::channel(false);
        let n = Arc::new(Notifier {
            store,
            clients: Arc::new(tls::Clients::new(config.max_response_bytes)),
            config,
            own_hsa_id,
            cache_file,
            metrics: Arc::default(),
            members: Mutex::new(known),
            refreshing: tokio::sync::Mutex::new(()),
            cursor_writes: Arc::default(),
            stop,
        });
        if let Err(e) = n.refresh(false).await {
            tracing::warn!(error = %e, "subscriber registry not usable at start");
        }
        tokio::spawn(upkeep::run(Arc::downgrade(&n)));
        Ok(n)
    }

    fn members(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many subscribers are being delivered to.
    pub fn subscriber_count(&self) -> usize {
        self.members()
            .values()
            .filter(|m| m.phase() == member::Phase::Active)
            .count()
    }

    /// Stops every worker and resync, then writes the cursors (an in-flight batch is
    /// sent again after a restart).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = self
            .members()
            .values_mut()
            .filter_map(|m| m.worker.take())
            .collect();
        for w in tasks {
            w.stop().await;
        }
        upkeep::write_cursors(self).await;
    }
}
