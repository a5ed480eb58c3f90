//! One delivery worker per subscriber: reads the outbox from the subscriber's cursor,
//! keeps the changes its filters want, coalesces them into ProcessNotification calls
//! of at most `batch_size` transactions (a later change of a key replaces an earlier
//! one in the same call, so keys are unique per call), sends them rate-limited,
//! retries failures with exponential backoff, dead-letters a batch after the last
//! attempt, and only then moves the cursor. A slow subscriber only delays itself.

use super::subscriber::Subscriber;
use super::NotifyMetrics;
use crate::codec::{self, Reply, ResultCode, WriteOperation};
use crate::config::NotificationConfig;
use crate::model::{Engagement, Transaction};
use crate::store::schema::{self, OutboxEntry};
use crate::store::{DeadLetter, Store};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the admin endpoints and metrics see of a worker.
#[derive(Default)]
pub struct SubscriberState {
    pub cursor: AtomicU64,
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// A worker's fixed parts, shared with the admin endpoints (for replays).
pub struct Delivery {
    pub subscriber: Subscriber,
    pub state: Arc<SubscriberState>,
    pub store: Arc<Store>,
    pub config: NotificationConfig,
    pub own_hsa_id: String,
    pub client: reqwest::Client,
    pub metrics: Arc<NotifyMetrics>,
    limiter: DefaultDirectRateLimiter,
}

/// How one call ended.
#[derive(Debug)]
pub enum CallOutcome {
    Delivered,
    /// ResultCode=ERROR: logged, not retried.
    Refused(String),
    Failed(String),
}

impl Delivery {
    pub fn new(
        subscriber: Subscriber,
        store: Arc<Store>,
        config: NotificationConfig,
        own_hsa_id: String,
        client: reqwest::Client,
        metrics: Arc<NotifyMetrics>,
    ) -> Delivery {
        let rate = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN));
        Delivery {
            subscriber,
            state: Arc::default(),
            store,
            config,
            own_hsa_id,
            client,
            metrics,
            limiter,
        }
    }

    /// The worker loop; returns when `stop` turns true. An undelivered batch is
    /// left at the cursor and sent again after a restart.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let la = self.subscriber.logical_address.clone();
        let mut commits = self.store.outbox_commits();
        let mut cursor = match self.start_cursor() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(subscriber = %la, error = %e, "cannot read the subscriber's cursor; not delivering");
                return;
            }
        };
        while !*stop.borrow() {
            self.state.cursor.store(cursor, Ordering::Relaxed);
            let (batch, next) = match self.collect(cursor) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(subscriber = %la, error = %e, "reading the outbox failed");
                    sleep_or_stop(&mut stop, Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                if next != cursor && self.advance(next, None) {
                    cursor = next;
                    continue;
                }
                tokio::select! {
                    _ = commits.changed() => {}
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let Some(outcome) = self.deliver_with_retry(cursor, &batch, &mut stop).await else {
                return;
            };
            let dead = match outcome {
                CallOutcome::Failed(error) => Some(DeadLetter {
                    batch: cursor,
                    error,
                    entries: batch,
                }),
                _ => None,
            };
            if self.advance(next, dead.as_ref()) {
                cursor = next;
            }
        }
    }

    fn start_cursor(&self) -> Result<u64, crate::store::StoreError> {
        let la = &self.subscriber.logical_address;
        match self.store.cursor(la)? {
            Some(c) => Ok(c),
            None => {
                // A new subscriber starts with the changes made from now on.
                let head = *self.store.outbox_commits().borrow();
                self.store.advance_cursor(la, head, None)?;
                Ok(head)
            }
        }
    }

    fn advance(&self, to: u64, dead: Option<&DeadLetter>) -> bool {
        match self
            .store
            .advance_cursor(&self.subscriber.logical_address, to, dead)
        {
            Ok(()) => {
                if let Some(d) = dead {
                    self.state
                        .dead_lettered
                        .fetch_add(d.entries.len() as u64, Ordering::Relaxed);
                    tracing::warn!(subscriber = %self.subscriber.logical_address, batch = d.batch, transactions = d.entries.len(), error = %d.error, "batch moved to dead letters");
                }
                self.state.cursor.store(to, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::error!(subscriber = %self.subscriber.logical_address, error = %e, "cannot move the cursor");
                false
            }
        }
    }

    /// The next batch from `cursor`: wanted entries, coalesced per key, and the
    /// cursor after the last entry looked at.
    fn collect(&self, cursor: u64) -> Result<(Vec<OutboxEntry>, u64), crate::store::StoreError> {
        let max = self.config.batch_size;
        let mut batch: Vec<OutboxEntry> = Vec::new();
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut next = cursor;
        loop {
            let chunk = self.store.read_outbox(next, 1024)?;
            if chunk.is_empty() {
                return Ok((batch, next));
            }
            for (seq, entry) in chunk {
                if !self.subscriber.wants(&entry.engagement) {
                    next = seq + 1;
                    continue;
                }
                let key = schema::encode_key(&entry.engagement.key);
                match index.get(&key) {
                    Some(&i) => batch[i] = entry,
                    None if batch.len() == max => return Ok((batch, seq)),
                    None => {
                        index.insert(key, batch.len());
                        batch.push(entry);
                    }
                }
                next = seq + 1;
            }
        }
    }

    /// Sends a batch until it is delivered, refused, or out of attempts; `None` when
    /// stopped meanwhile.
    async fn deliver_with_retry(
        &self,
        id: u64,
        batch: &[OutboxEntry],
        stop: &mut watch::Receiver<bool>,
    ) -> Option<CallOutcome> {
        let mut last = String::new();
        for attempt in 1..=self.config.max_attempts {
            if attempt > 1 {
                self.state.retried.fetch_add(1, Ordering::Relaxed);
                if !sleep_or_stop(stop, self.backoff(attempt - 1)).await {
                    return None;
                }
            }
            match self.call(id, attempt, batch).await {
                CallOutcome::Failed(e) => {
                    tracing::info!(subscriber = %self.subscriber.logical_address, attempt, error = %e, "delivery failed; will retry");
                    *self
                        .state
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                    last = e;
                }
                other => return Some(other),
            }
        }
        Some(CallOutcome::Failed(last))
    }

    /// The delay before retry `n` (1-based): `retry_delay_ms * 2^(n-1)`, capped.
    pub fn backoff(&self, n: u32) -> Duration {
        let ms = self
            .config
            .retry_delay_ms
            .saturating_mul(1u64 << (n - 1).min(30));
        Duration::from_millis(ms.min(self.config.max_backoff_ms))
    }

    /// One ProcessNotification call with the batch.
    pub async fn call(&self, id: u64, attempt: u32, batch: &[OutboxEntry]) -> CallOutcome {
        self.limiter.until_ready().await;
        let la = &self.subscriber.logical_address;
        let txs: Vec<Transaction> = batch.iter().map(to_transaction).collect();
        let mut body = String::with_capacity(600 + txs.len() * 900);
        codec::write_write_request(&mut body, WriteOperation::ProcessNotification, la, &txs);
        let correlation = format!("ei-notify-{la}-{id}-{attempt}");
        let started = Instant::now();
        let sent = self
            .client
            .post(&self.subscriber.url)
            .timeout(Duration::from_millis(self.config.timeout_ms))
            .header("content-type", "text/xml; charset=UTF-8")
            .header("SOAPAction", "urn:riv:itintegration:engagementindex:ProcessNotificationResponder:1:ProcessNotification")
            .header("x-vp-sender-id", &self.own_hsa_id)
            .header("x-vp-instance-id", &self.config.vp_instance_id)
            .header("x-skltp-correlation-id", &correlation)
            .body(body)
            .send()
            .await;
        let outcome = match sent {
            Err(e) => CallOutcome::Failed(format!("transport: {e}")),
            Ok(resp) => {
                let status = resp.status();
                match resp.bytes().await {
                    Err(e) => CallOutcome::Failed(format!(
                        "HTTP {status}: reading the answer failed: {e}"
                    )),
                    Ok(bytes) => judge(status.as_u16(), &bytes),
                }
            }
        };
        match &outcome {
            CallOutcome::Delivered => {
                self.state
                    .delivered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.metrics.latency(started.elapsed());
                tracing::debug!(subscriber = %la, correlation_id = %correlation, transactions = batch.len(), "notification delivered");
            }
            CallOutcome::Refused(c) => {
                tracing::warn!(subscriber = %la, correlation_id = %correlation, comment = %c, "subscriber answered ResultCode=ERROR; not retried");
                *self
                    .state
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(format!("ResultCode=ERROR: {c}"));
            }
            CallOutcome::Failed(_) => {}
        }
        outcome
    }
}

/// Reads a subscriber's answer: OK, ResultCode=ERROR, or a failure to retry.
fn judge(status: u16, body: &[u8]) -> CallOutcome {
    match codec::parse_reply(body) {
        Ok(Reply::Result { code, .. }) if status == 200 && code == ResultCode::Ok => {
            CallOutcome::Delivered
        }
        Ok(Reply::Result { code, comment }) if status == 200 && code == ResultCode::Error => {
            CallOutcome::Refused(comment.unwrap_or_default())
        }
        Ok(Reply::Fault { code, message }) => {
            CallOutcome::Failed(format!("HTTP {status}: fault {code}: {message}"))
        }
        Ok(other) => CallOutcome::Failed(format!("HTTP {status}: unexpected answer {other:?}")),
        Err(e) => CallOutcome::Failed(format!("HTTP {status}: unreadable answer: {e}")),
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

/// Sleeps; false when `stop` turned true meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => !*stop.borrow(),
        _ = stop.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_answers() {
        let mut ok = String::new();
        codec::write_result(
            &mut ok,
            WriteOperation::ProcessNotification,
            codec::ResultCode::Ok,
            None,
        );
        assert!(matches!(judge(200, ok.as_bytes()), CallOutcome::Delivered));
        let mut err = String::new();
        codec::write_result(
            &mut err,
            WriteOperation::ProcessNotification,
            codec::ResultCode::Error,
            Some("no"),
        );
        assert!(matches!(judge(200, err.as_bytes()), CallOutcome::Refused(c) if c == "no"));
        let mut fault = String::new();
        codec::write_fault(&mut fault, "soap:Server", "down");
        assert!(
            matches!(judge(500, fault.as_bytes()), CallOutcome::Failed(e) if e.contains("down"))
        );
        assert!(matches!(judge(502, b"Bad gateway"), CallOutcome::Failed(_)));
        assert!(
            matches!(judge(500, ok.as_bytes()), CallOutcome::Failed(_)),
            "OK with HTTP 500 is not delivered"
        );
    }
}
