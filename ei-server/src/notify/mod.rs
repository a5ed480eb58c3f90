//! Notifying subscribers (contract §5) from the transactional outbox.
//!
//! The writer puts every notifiable change into the `outbox` column family in the same
//! synced batch as the posts ([`crate::store`]), so nothing acknowledged is ever lost
//! between index and notification. Here: the set of subscribers (configuration and/or
//! the registry, cached with a file fallback), one [`delivery`] worker each, garbage
//! collection of the outbox below every cursor, and what the admin endpoints
//! ([`admin`]) and `/metrics` show.

pub mod admin;
pub mod delivery;
pub mod registry;
pub mod subscriber;

use crate::config::{NotificationConfig, SubscriberConfig};
use crate::store::Store;
use delivery::{CallOutcome, Delivery};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use subscriber::{Source, Subscriber};
use tokio::sync::watch;

/// Delivery latency buckets in seconds.
const BOUNDS: &[f64] = &[0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0];

/// Latency of successful calls, over all subscribers.
pub struct NotifyMetrics {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for NotifyMetrics {
    fn default() -> Self {
        NotifyMetrics {
            buckets: BOUNDS.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl NotifyMetrics {
    fn latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

struct Worker {
    delivery: Arc<Delivery>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The running notification side.
pub struct Notifier {
    store: Arc<Store>,
    config: NotificationConfig,
    own_hsa_id: String,
    cache_file: PathBuf,
    client: reqwest::Client,
    metrics: Arc<NotifyMetrics>,
    workers: Mutex<BTreeMap<String, Worker>>,
    /// Serialises refreshes.
    refreshing: tokio::sync::Mutex<()>,
}

/// A subscriber as the admin endpoint lists it.
#[derive(Debug, Serialize)]
pub struct SubscriberStatus {
    #[serde(flatten)]
    pub subscriber: Subscriber,
    pub cursor: u64,
    /// Outbox entries not yet looked at for this subscriber.
    pub pending: u64,
    pub dead_letter_batches: usize,
    pub dead_letter_transactions: usize,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub last_error: Option<String>,
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    pub delivered_batches: usize,
    pub failed_batches: usize,
    pub last_error: Option<String>,
}

impl Notifier {
    /// Resolves the subscribers and starts their workers and the outbox collector.
    pub async fn start(
        store: Arc<Store>,
        config: NotificationConfig,
        own_hsa_id: String,
        data_dir: PathBuf,
    ) -> Arc<Notifier> {
        let cache_file = config
            .registry
            .as_ref()
            .and_then(|r| r.cache_file.clone())
            .unwrap_or_else(|| data_dir.join("subscribers-cache.json"));
        let n = Arc::new(Notifier {
            store,
            config,
            own_hsa_id,
            cache_file,
            client: reqwest::Client::new(),
            metrics: Arc::default(),
            workers: Mutex::new(BTreeMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
        });
        if let Err(e) = n.refresh().await {
            tracing::warn!(error = %e, "subscriber registry unavailable at start");
        }
        tokio::spawn(Self::housekeeping(Arc::downgrade(&n)));
        n
    }

    /// Asks the registry again (if configured) and reconciles the workers; returns
    /// the number of subscribers. When the registry fails, the cache file is used
    /// and the error is returned after reconciling.
    pub async fn refresh(&self) -> Result<usize, registry::RegistryError> {
        let _guard = self.refreshing.lock().await;
        let mut wanted: BTreeMap<String, Subscriber> = BTreeMap::new();
        let mut failure = None;
        if let Some(reg) = &self.config.registry {
            let from_registry = match registry::fetch(
                &self.client,
                reg,
                &self.own_hsa_id,
                &self.config.vp_instance_id,
            )
            .await
            {
                Ok(subs) => {
                    if let Err(e) = registry::save_cache(&self.cache_file, &subs) {
                        tracing::warn!(file = %self.cache_file.display(), error = %e, "cannot write the subscriber cache");
                    }
                    subs
                }
                Err(e) => {
                    tracing::warn!(error = %e, cache = %self.cache_file.display(), "registry unavailable; using the cached subscribers");
                    failure = Some(e);
                    registry::load_cache(&self.cache_file).unwrap_or_default()
                }
            };
            self.add(&mut wanted, &from_registry, Source::Registry);
        }
        self.add(&mut wanted, &self.config.subscribers, Source::Config);
        let n = wanted.len();
        self.reconcile(wanted);
        match failure {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    fn add(
        &self,
        into: &mut BTreeMap<String, Subscriber>,
        subs: &[SubscriberConfig],
        source: Source,
    ) {
        for s in subs {
            match Subscriber::from_config(s, self.config.default_url.as_deref(), source) {
                Some(sub) => {
                    into.insert(sub.logical_address.clone(), sub);
                }
                None => {
                    tracing::warn!(subscriber = %s.logical_address, "subscriber has no URL and there is no default_url; skipped")
                }
            }
        }
    }

    /// Starts workers for new or changed subscribers, stops those that are gone.
    fn reconcile(&self, wanted: BTreeMap<String, Subscriber>) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers.retain(|la, w| {
            let keep = wanted.get(la) == Some(&w.delivery.subscriber);
            if !keep {
                let _ = w.stop.send(true);
            }
            keep
        });
        for (la, sub) in wanted {
            if workers.contains_key(&la) {
                continue;
            }
            tracing::info!(subscriber = %la, url = %sub.url, source = ?sub.source, "starting delivery");
            let delivery = Arc::new(Delivery::new(
                sub,
                self.store.clone(),
                self.config.clone(),
                self.own_hsa_id.clone(),
                self.client.clone(),
                self.metrics.clone(),
            ));
            let (stop, rx) = watch::channel(false);
            let task = tokio::spawn(delivery.clone().run(rx));
            workers.insert(
                la,
                Worker {
                    delivery,
                    stop,
                    task,
                },
            );
        }
    }

    /// Every few seconds: drop outbox entries every subscriber has passed, and
    /// refresh from the registry when its TTL has run out.
    async fn housekeeping(me: std::sync::Weak<Notifier>) {
        let mut last_refresh = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let Some(n) = me.upgrade() else { return };
            let below = n.min_cursor();
            if let Err(e) = n.store.collect_outbox(below) {
                tracing::warn!(error = %e, "outbox garbage collection failed");
            }
            let ttl = n
                .config
                .registry
                .as_ref()
                .map(|r| Duration::from_secs(r.ttl_seconds));
            if ttl.is_some_and(|t| last_refresh.elapsed() >= t) {
                last_refresh = tokio::time::Instant::now();
                let _ = n.refresh().await;
            }
        }
    }

    fn min_cursor(&self) -> u64 {
        let head = *self.store.outbox_commits().borrow();
        let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        workers
            .values()
            .map(|w| w.delivery.state.cursor.load(Relaxed))
            .min()
            .unwrap_or(head)
    }

    fn delivery(&self, la: &str) -> Option<Arc<Delivery>> {
        self.workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(la)
            .map(|w| w.delivery.clone())
    }

    /// Every subscriber with its counts.
    pub fn status(&self) -> Vec<SubscriberStatus> {
        self.status_of(true)
    }

    /// How many subscribers are being delivered to.
    pub fn subscriber_count(&self) -> usize {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Every subscriber's counters; the dead-letter counts (which read the store)
    /// only when asked for, so a metrics scrape stays in memory.
    fn status_of(&self, read_dead_letters: bool) -> Vec<SubscriberStatus> {
        let head = *self.store.outbox_commits().borrow();
        let deliveries: Vec<Arc<Delivery>> = self
            .workers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|w| w.delivery.clone())
            .collect();
        deliveries
            .into_iter()
            .map(|d| {
                let dead = match read_dead_letters {
                    true => self
                        .store
                        .dead_letters(&d.subscriber.logical_address)
                        .unwrap_or_default(),
                    false => Vec::new(),
                };
                let cursor = d.state.cursor.load(Relaxed);
                SubscriberStatus {
                    subscriber: d.subscriber.clone(),
                    cursor,
                    pending: head.saturating_sub(cursor),
                    dead_letter_batches: dead.len(),
                    dead_letter_transactions: dead.iter().map(|b| b.entries.len()).sum(),
                    delivered: d.state.delivered.load(Relaxed),
                    retried: d.state.retried.load(Relaxed),
                    dead_lettered: d.state.dead_lettered.load(Relaxed),
                    last_error: d
                        .state
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone(),
                }
            })
            .collect()
    }

    /// Sends a subscriber's dead letters again, oldest first, once each; delivered
    /// (or refused) batches are removed. `None` when there is no such subscriber.
    pub async fn replay(&self, la: &str) -> Option<ReplayReport> {
        let d = self.delivery(la)?;
        let mut report = ReplayReport::default();
        for batch in self.store.dead_letters(la).unwrap_or_default() {
            match d.call(batch.batch, 0, &batch.entries).await {
                CallOutcome::Failed(e) => {
                    report.failed_batches += 1;
                    report.last_error = Some(e);
                }
                _ => {
                    if let Err(e) = self.store.remove_dead_letter(la, batch.batch) {
                        report.last_error = Some(e.to_string());
                    }
                    report.delivered_batches += 1;
                }
            }
        }
        Some(report)
    }

    /// Deletes a subscriber's dead letters; returns how many batches.
    pub fn drop_dead_letters(&self, la: &str) -> Result<usize, crate::store::StoreError> {
        let batches = self.store.dead_letters(la)?;
        for b in &batches {
            self.store.remove_dead_letter(la, b.batch)?;
        }
        Ok(batches.len())
    }

    /// Prometheus lines for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let status = self.status_of(false);
        for (name, help, f) in [
            (
                "ei_notify_pending",
                "Outbox entries not yet looked at, per subscriber.",
                (|s: &SubscriberStatus| s.pending) as fn(&SubscriberStatus) -> u64,
            ),
            (
                "ei_notify_delivered_total",
                "Transactions delivered, per subscriber.",
                |s| s.delivered,
            ),
            (
                "ei_notify_retried_total",
                "Retried calls, per subscriber.",
                |s| s.retried,
            ),
            (
                "ei_notify_dead_lettered_total",
                "Transactions moved to dead letters, per subscriber.",
                |s| s.dead_lettered,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {}",
                if name.ends_with("_total") {
                    "counter"
                } else {
                    "gauge"
                }
            );
            for s in &status {
                let _ = writeln!(
                    out,
                    "{name}{{subscriber=\"{}\"}} {}",
                    crate::metrics::LabelValue(&s.subscriber.logical_address),
                    f(s)
                );
            }
        }
        out.push_str("# HELP ei_notify_delivery_seconds Latency of successful ProcessNotification calls.\n# TYPE ei_notify_delivery_seconds histogram\n");
        let mut cumulative = 0;
        for (b, c) in BOUNDS.iter().zip(&self.metrics.buckets) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(
                out,
                "ei_notify_delivery_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = self.metrics.count.load(Relaxed);
        let _ = writeln!(
            out,
            "ei_notify_delivery_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "ei_notify_delivery_seconds_sum {}",
            self.metrics.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "ei_notify_delivery_seconds_count {count}");
        out
    }

    /// Stops every worker (an in-flight batch is sent again after a restart).
    pub async fn shutdown(&self) {
        let workers: Vec<Worker> =
            std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()))
                .into_values()
                .collect();
        for w in &workers {
            let _ = w.stop.send(true);
        }
        for w in workers {
            let _ = tokio::time::timeout(Duration::from_secs(5), w.task).await;
        }
    }
}
