//! Delivery to one subscriber. [`Delivery`] sends a set of changes: rate-limited
//! ProcessNotification calls, failures retried with exponential backoff and full
//! jitter, and a call answered ResultCode=ERROR split in halves until the refused
//! transactions are isolated, so only they become dead letters (with the subscriber's
//! comment) and the rest is delivered. The worker ([`run`]) reads the outbox from the
//! subscriber's cursor on a blocking thread, keeps the changes its filters want,
//! coalesces them (a later change of a key replaces an earlier one, so keys are unique
//! per call), sends them, and moves the cursor in memory; [`super::upkeep`] writes
//! cursors in batches. A batch with dead letters is written at once, with its cursor,
//! in one synced write. A slow subscriber only delays itself.

use super::blocking;
use super::call::{CallOutcome, NotificationCall};
use super::member::{SubscriberState, Worker};
use super::subscriber::Subscriber;
use super::tls::Clients;
use super::NotifyMetrics;
use crate::config::NotificationConfig;
use crate::model::{Engagement, Transaction};
use crate::store::schema::{self, OutboxEntry};
use crate::store::{DeadLetter, Store};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Outbox entries read per store call while collecting a batch.
const READ_CHUNK: usize = 1024;

/// What sends to one subscriber, shared by its worker, replays and resyncs.
pub struct Delivery {
    pub subscriber: Subscriber,
    pub state: Arc<SubscriberState>,
    config: NotificationConfig,
    own_hsa_id: String,
    clients: Arc<Clients>,
    metrics: Arc<NotifyMetrics>,
    limiter: DefaultDirectRateLimiter,
}

/// Sent, or not, after every attempt; `None` from [`Delivery::send`] when stopped.
pub type Undelivered = Vec<DeadLetter>;

/// How the error of a refused transaction's dead letter starts.
const REFUSED: &str = "ResultCode=ERROR: ";

/// Whether a dead letter holds a transaction the subscriber refused (rather than a
/// part that ran out of attempts).
pub fn is_refused(d: &DeadLetter) -> bool {
    d.error.starts_with(REFUSED)
}

impl Delivery {
    pub fn new(
        subscriber: Subscriber,
        state: Arc<SubscriberState>,
        config: NotificationConfig,
        own_hsa_id: String,
        clients: Arc<Clients>,
        metrics: Arc<NotifyMetrics>,
    ) -> Delivery {
        let rate = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
        Delivery {
            subscriber,
            state,
            config,
            own_hsa_id,
            clients,
            metrics,
            limiter,
        }
    }

    /// Sends `entries` (keys unique) with up to `attempts` attempts per call; returns
    /// what became dead letters: a part out of attempts (with the last error) and
    /// each refused transaction alone (with the subscriber's comment). `None` when
    /// `stop` turned true meanwhile (nothing is dead-lettered then).
    pub async fn send(
        &self,
        entries: Vec<OutboxEntry>,
        attempts: u32,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Undelivered> {
        let mut dead = Vec::new();
        let mut parts = VecDeque::from([entries]);
        while let Some(part) = parts.pop_front() {
            match self.with_retry(&part, attempts, stop).await? {
                CallOutcome::Delivered => {}
                CallOutcome::Refused(comment) if part.len() == 1 => dead.push(DeadLetter {
                    id: 0,
                    error: format!("{REFUSED}{comment}"),
                    entries: part,
                }),
                CallOutcome::Refused(_) => {
                    // Split, keeping commit order: first half first.
                    let mut first = part;
                    let second = first.split_off(first.len() / 2);
                    parts.push_front(second);
                    parts.push_front(first);
                }
                CallOutcome::Failed(error) => dead.push(DeadLetter {
                    id: 0,
                    error,
                    entries: part,
                }),
            }
        }
        Some(dead)
    }

    /// One part, retried until delivered, refused, or out of attempts.
    async fn with_retry(
        &self,
        part: &[OutboxEntry],
        attempts: u32,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<CallOutcome> {
        let mut last = CallOutcome::Failed("no attempt".into());
        for attempt in 1..=attempts.max(1) {
            if attempt > 1 {
                self.state.retried.fetch_add(1, Relaxed);
                if !sleep_or_stop(stop, self.backoff(attempt - 1)).await {
                    return None;
                }
            }
            last = self.call(attempt, part).await;
            match &last {
                CallOutcome::Failed(e) => {
                    tracing::info!(subscriber = %self.subscriber.logical_address, attempt, error = %e, "delivery failed; will retry");
                    self.state.set_error(e.clone());
                }
                _ => return Some(last),
            }
        }
        Some(last)
    }

    /// The delay before retry `n` (1-based): full jitter, uniform in
    /// `0..=min(retry_delay_ms * 2^(n-1), max_backoff_ms)`, so subscribers that fail
    /// together do not retry together.
    pub fn backoff(&self, n: u32) -> Duration {
        full_jitter(self.config.retry_delay_ms, self.config.max_backoff_ms, n)
    }

    /// One ProcessNotification call with `part`.
    pub async fn call(&self, attempt: u32, part: &[OutboxEntry]) -> CallOutcome {
        let client = match self.clients.get(&self.subscriber.tls).await {
            Ok(c) => c,
            Err(e) => return CallOutcome::Failed(e.to_string()),
        };
        self.limiter.until_ready().await;
        let la = &self.subscriber.logical_address;
        let txs: Vec<Transaction> = part.iter().map(to_transaction).collect();
        let first = part.first().map(|e| e.committed_ms).unwrap_or(0);
        let correlation = format!("ei-notify-{la}-{first}-{}-{attempt}", part.len());
        let started = Instant::now();
        let outcome = NotificationCall {
            url: &self.subscriber.url,
            logical_address: la,
            own_hsa_id: &self.own_hsa_id,
            vp_instance_id: &self.config.vp_instance_id,
            correlation_id: &correlation,
            timeout: Duration::from_millis(self.config.timeout_ms),
            max_response_bytes: self.clients.max_response_bytes,
        }
        .send(&client, &txs)
        .await;
        match &outcome {
            CallOutcome::Delivered => {
                self.state.delivered.fetch_add(part.len() as u64, Relaxed);
                self.metrics
                    .latency
                    .observe(started.elapsed().as_secs_f64());
                tracing::debug!(subscriber = %la, correlation_id = %correlation, transactions = part.len(), "notification delivered");
            }
            CallOutcome::Refused(c) => {
                tracing::warn!(subscriber = %la, correlation_id = %correlation, transactions = part.len(), comment = %c, "subscriber answered ResultCode=ERROR");
                self.state.set_error(format!("ResultCode=ERROR: {c}"));
            }
            CallOutcome::Failed(_) => {}
        }
        outcome
    }
}

/// What a worker needs besides its [`Delivery`].
pub struct WorkerContext {
    pub store: Arc<Store>,
    pub cursor_writes: Arc<Mutex<()>>,
    pub metrics: Arc<NotifyMetrics>,
}

/// Starts the worker of `delivery`.
pub fn spawn(delivery: Arc<Delivery>, ctx: WorkerContext) -> Worker {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run(delivery, ctx, rx));
    Worker { stop, task }
}

/// The worker loop; returns when `stop` turns true. An undelivered batch is left at
/// the cursor and sent again after a restart.
async fn run(d: Arc<Delivery>, ctx: WorkerContext, mut stop: watch::Receiver<bool>) {
    let la = d.subscriber.logical_address.clone();
    let mut commits = ctx.store.outbox_commits();
    while !*stop.borrow() {
        let cursor = d.state.cursor.load(Relaxed);
        let (sub, max) = (d.subscriber.clone(), d.config.batch_size);
        let collected = blocking::run(&ctx.store, move |s| collect(s, &sub, cursor, max)).await;
        let (batch, next, oldest) = match collected {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(subscriber = %la, error = %e, "reading the outbox failed");
                d.state.set_error(format!("reading the outbox: {e}"));
                sleep_or_stop(&mut stop, Duration::from_secs(1)).await;
                continue;
            }
        };
        d.state.oldest_pending_ms.store(oldest, Relaxed);
        if batch.is_empty() {
            if next != cursor {
                d.state.cursor.store(next, Relaxed);
                continue;
            }
            tokio::select! {
                _ = commits.changed() => {}
                r = stop.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let Some(dead) = d.send(batch, d.config.max_attempts, &mut stop).await else {
            return;
        };
        if dead.is_empty() {
            d.state.cursor.store(next, Relaxed);
        } else if !store_dead_letters(&d, &ctx, next, dead).await {
            sleep_or_stop(&mut stop, Duration::from_secs(1)).await;
        }
    }
}

/// Writes dead letters with the cursor after their batch in one synced write (so a
/// crash neither loses them nor makes them twice); false when the store failed (the
/// batch is sent again).
async fn store_dead_letters(
    d: &Delivery,
    ctx: &WorkerContext,
    next: u64,
    dead: Vec<DeadLetter>,
) -> bool {
    let la = d.subscriber.logical_address.clone();
    let lock = ctx.cursor_writes.clone();
    let (batches, txs) = (dead.len(), dead.iter().map(|x| x.entries.len()).sum());
    let written = {
        let (la, dead) = (la.clone(), dead.clone());
        blocking::run(&ctx.store, move |s| {
            let _serial = lock.lock().unwrap_or_else(|p| p.into_inner());
            s.advance_cursor(&la, next, &dead)
        })
        .await
    };
    match written {
        Ok(_) => {
            ctx.metrics.syncs.fetch_add(1, Relaxed);
            d.state.persisted.store(next, Relaxed);
            d.state.cursor.store(next, Relaxed);
            d.state.add_dead_letters(batches, txs);
            for x in &dead {
                tracing::warn!(subscriber = %la, transactions = x.entries.len(), error = %x.error, "moved to dead letters");
            }
            true
        }
        Err(e) => {
            tracing::error!(subscriber = %la, error = %e, "cannot store dead letters; the batch is sent again");
            false
        }
    }
}

/// The next batch from `cursor`: wanted entries, coalesced per key; the cursor after
/// the last entry looked at; the commit time of the first entry at or after `cursor`
/// (0 when there is none). Blocking.
pub fn collect(
    store: &Store,
    sub: &Subscriber,
    cursor: u64,
    max: usize,
) -> Result<(Vec<OutboxEntry>, u64, u64), crate::store::StoreError> {
    let mut batch: Vec<OutboxEntry> = Vec::new();
    let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
    let (mut next, mut oldest) = (cursor, 0);
    loop {
        let chunk = store.read_outbox(next, READ_CHUNK)?;
        if chunk.is_empty() {
            return Ok((batch, next, oldest));
        }
        for (seq, entry) in chunk {
            if oldest == 0 {
                // 0 = written before commit times were kept: the next one tells.
                oldest = entry.committed_ms;
            }
            if !sub.wants(&entry.engagement) {
                next = seq + 1;
                continue;
            }
            let key = schema::encode_key(&entry.engagement.key);
            match index.get(&key) {
                Some(&i) => batch[i] = entry,
                None if batch.len() == max => return Ok((batch, seq, oldest)),
                None => {
                    index.insert(key, batch.len());
                    batch.push(entry);
                }
            }
            next = seq + 1;
        }
    }
}

/// The transaction sent for an outbox entry: owner and times filled in, updateTime =
/// creationTime for a post never updated.
pub fn to_transaction(e: &OutboxEntry) -> Transaction {
    let en = &e.engagement;
    Transaction {
        action: e.action,
        engagement: Engagement {
            update_time: en.update_time.or(en.creation_time),
            ..en.clone()
        },
    }
}

/// A delay uniform in `0..=min(first_ms * 2^(n-1), cap_ms)` milliseconds.
fn full_jitter(first_ms: u64, cap_ms: u64, n: u32) -> Duration {
    let cap = first_ms
        .saturating_mul(1u64 << (n.max(1) - 1).min(30))
        .min(cap_ms);
    Duration::from_millis(fastrand::u64(0..=cap))
}

/// Sleeps; false when `stop` turned true meanwhile.
pub async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_are_fully_jittered_and_capped() {
        let delays: Vec<Duration> = (0..200).map(|_| full_jitter(100, 1000, 3)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400)));
        assert!(
            delays.iter().any(|d| *d < Duration::from_millis(200)),
            "spread over the whole range, not only near the cap"
        );
        assert!((0..200).all(|_| full_jitter(100, 1000, 30) <= Duration::from_millis(1000)));
        assert_eq!(full_jitter(0, 1000, 5), Duration::ZERO);
    }
}
