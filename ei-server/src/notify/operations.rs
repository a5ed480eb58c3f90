//! What an operator can do to a subscriber through the admin endpoints:
//! - **replay** its dead letters: each is sent again with the *current* state of its
//!   keys from the index (a key deleted since is sent as a delete), never the old
//!   copy; what is delivered is removed, what is refused again stays (isolated);
//! - **resync** it from the index: every post matching its filters, as it is now,
//!   then delivery continues from the outbox head taken at the start (so nothing
//!   committed meanwhile is missed); this brings a parked subscriber back;
//! - **drop** its dead letters.

use super::delivery::Delivery;
use super::member::Phase;
use super::record::{now_secs, Parked};
use super::{blocking, upkeep, Notifier};
use crate::model::Action;
use crate::store::schema::OutboxEntry;
use crate::store::{DeadLetter, Store, StoreError};
use serde::Serialize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Posts read per store call during a resync.
const RESYNC_CHUNK: usize = 1000;

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplayReport {
    /// Dead letters delivered whole (and removed).
    pub delivered_batches: usize,
    /// Dead letters of which something is still undelivered.
    pub failed_batches: usize,
    pub delivered_transactions: usize,
    pub last_error: Option<String>,
}

/// A dead letter as the admin endpoint lists it.
#[derive(Debug, Serialize)]
pub struct DeadLetterView {
    pub id: u64,
    pub error: String,
    pub transactions: Vec<TransactionView>,
}

/// One transaction of a dead letter: its delete flag and fields by contract name.
#[derive(Debug, Serialize)]
pub struct TransactionView {
    #[serde(rename = "deleteFlag")]
    pub delete_flag: bool,
    pub engagement: std::collections::BTreeMap<&'static str, String>,
}

impl From<DeadLetter> for DeadLetterView {
    fn from(d: DeadLetter) -> Self {
        DeadLetterView {
            id: d.id,
            error: d.error,
            transactions: d
                .entries
                .iter()
                .map(|e| TransactionView {
                    delete_flag: e.action == Action::Delete,
                    engagement: crate::model::Field::ALL
                        .iter()
                        .filter_map(|f| Some((f.name(), e.engagement.field(*f)?)))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Why an admin operation could not run.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("no subscriber {0}")]
    NotFound(String),
    #[error("subscriber {0} is {1:?}: a resync needs it in the subscriber set, active or parked")]
    Conflict(String, Phase),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Notifier {
    /// The member's [`Delivery`] (its subscriber and live state), if it has a definition.
    fn delivery_of(&self, la: &str) -> Result<Delivery, OperationError> {
        let members = self.members();
        let m = members
            .get(la)
            .filter(|m| m.known)
            .ok_or_else(|| OperationError::NotFound(la.to_owned()))?;
        let sub = m
            .subscriber()
            .cloned()
            .ok_or_else(|| OperationError::Conflict(la.to_owned(), m.phase()))?;
        Ok(self.delivery(sub, m.state.clone()))
    }

    /// Sends a subscriber's dead letters again, oldest first, once each, with the
    /// current state of their keys.
    pub async fn replay(&self, la: &str) -> Result<ReplayReport, OperationError> {
        let d = self.delivery_of(la)?;
        let mut stop = self.stop.subscribe();
        let mut report = ReplayReport::default();
        let owner = la.to_owned();
        let letters = blocking::run(&self.store, move |s| s.dead_letters(&owner)).await?;
        for letter in letters {
            let entries = letter.entries.clone();
            let current = blocking::run(&self.store, move |s| current_state(s, entries)).await?;
            let Some(undelivered) = d.send(current, 1, &mut stop).await else {
                break;
            };
            let still: usize = undelivered.iter().map(|x| x.entries.len()).sum();
            report.delivered_transactions += letter.entries.len() - still;
            match undelivered.last() {
                None => report.delivered_batches += 1,
                Some(x) => {
                    report.failed_batches += 1;
                    report.last_error = Some(x.error.clone());
                }
            }
            let (owner, id, n) = (la.to_owned(), letter.id, undelivered.len());
            blocking::run(&self.store, move |s| {
                s.replace_dead_letter(&owner, id, &undelivered)
            })
            .await?;
            self.metrics.syncs.fetch_add(1, Relaxed);
            let st = &d.state;
            st.dead_letter_batches.fetch_sub(1, Relaxed);
            st.dead_letter_batches.fetch_add(n as u64, Relaxed);
            st.dead_letter_transactions
                .fetch_sub((letter.entries.len() - still) as u64, Relaxed);
        }
        tracing::info!(subscriber = %la, delivered = report.delivered_transactions, failed_batches = report.failed_batches, "dead letters replayed");
        Ok(report)
    }

    /// A subscriber's dead letters, oldest first.
    pub async fn dead_letters(&self, la: &str) -> Result<Vec<DeadLetterView>, OperationError> {
        if !self.members().contains_key(la) {
            return Err(OperationError::NotFound(la.to_owned()));
        }
        let owner = la.to_owned();
        let letters = blocking::run(&self.store, move |s| s.dead_letters(&owner)).await?;
        Ok(letters.into_iter().map(DeadLetterView::from).collect())
    }

    /// Deletes a subscriber's dead letters; returns how many.
    pub async fn drop_dead_letters(&self, la: &str) -> Result<usize, OperationError> {
        let state = self
            .members()
            .get(la)
            .map(|m| m.state.clone())
            .ok_or_else(|| OperationError::NotFound(la.to_owned()))?;
        let owner = la.to_owned();
        let n = blocking::run(&self.store, move |s| {
            let letters = s.dead_letters(&owner)?;
            for l in &letters {
                s.remove_dead_letter(&owner, l.id)?;
            }
            Ok(letters.len())
        })
        .await?;
        state.dead_letter_batches.store(0, Relaxed);
        state.dead_letter_transactions.store(0, Relaxed);
        tracing::warn!(subscriber = %la, batches = n, "dead letters dropped by an operator");
        Ok(n)
    }

    /// Starts a resync of `la` from the index; returns the outbox position delivery
    /// continues from when it is done. Progress is in the admin status.
    pub async fn resync(self: &Arc<Self>, la: &str) -> Result<u64, OperationError> {
        let _guard = self.refreshing.lock().await;
        let head = *self.store.outbox_commits().borrow();
        let (worker, record, d) = {
            let mut members = self.members();
            let m = members
                .get_mut(la)
                .filter(|m| m.known)
                .ok_or_else(|| OperationError::NotFound(la.to_owned()))?;
            let phase = m.phase();
            let Some(sub) = m
                .subscriber()
                .cloned()
                .filter(|_| matches!(phase, Phase::Active | Phase::Parked))
            else {
                return Err(OperationError::Conflict(la.to_owned(), phase));
            };
            // Parked while it runs: a crash meanwhile leaves it parked, never past posts
            // it was not sent.
            if m.record.parked.is_none() {
                m.record.parked = Some(Parked {
                    since: now_secs(),
                    reason: "resync in progress".into(),
                });
            }
            m.resyncing = Some(head);
            m.state.resync_sent.store(0, Relaxed);
            (
                m.worker.take(),
                m.record.clone(),
                self.delivery(sub, m.state.clone()),
            )
        };
        if let Some(w) = worker {
            w.stop().await;
        }
        upkeep::save_records(self, vec![(la.to_owned(), record)]).await;
        tracing::info!(subscriber = %la, from = head, "resync from the index started");
        let me = self.clone();
        tokio::spawn(async move { me.run_resync(d, head).await });
        Ok(head)
    }

    async fn run_resync(self: Arc<Self>, d: Delivery, from: u64) {
        let la = d.subscriber.logical_address.clone();
        let outcome = self.send_index(&d).await;
        let (record, cursor) = {
            let mut members = self.members();
            let Some(m) = members.get_mut(&la) else {
                return;
            };
            m.resyncing = None;
            match &outcome {
                Ok(true) => {
                    m.record.parked = None;
                    m.state.cursor.store(from, Relaxed);
                    m.state.persisted.store(from, Relaxed);
                    m.state.oldest_pending_ms.store(0, Relaxed);
                    (m.record.clone(), Some(from))
                }
                Ok(false) => return, // stopping: stays parked
                Err(e) => {
                    m.record.parked = Some(Parked {
                        since: now_secs(),
                        reason: format!("resync failed: {e}"),
                    });
                    (m.record.clone(), None)
                }
            }
        };
        let stored = blocking::run(&self.store, {
            let la = la.clone();
            move |s| s.put_subscriber_record(&la, &record.encode(), cursor)
        })
        .await;
        self.metrics.syncs.fetch_add(1, Relaxed);
        match (outcome, stored) {
            (Ok(_), Ok(())) => {
                tracing::info!(subscriber = %la, sent = d.state.resync_sent.load(Relaxed), from, "resync done; delivering from the outbox");
                self.start_workers();
            }
            (Err(e), _) => {
                tracing::error!(subscriber = %la, error = %e, "resync failed; the subscriber stays parked");
                d.state.set_error(format!("resync failed: {e}"));
            }
            (_, Err(e)) => {
                tracing::error!(subscriber = %la, error = %e, "storing the resynced position failed")
            }
        }
    }

    /// Sends every post matching the filters; refused ones become dead letters.
    /// `Ok(false)` when stopped, `Err` when a call ran out of attempts.
    async fn send_index(&self, d: &Delivery) -> Result<bool, String> {
        let mut stop = self.stop.subscribe();
        let la = d.subscriber.logical_address.clone();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let from = after.clone();
            let (posts, last) = blocking::run(&self.store, move |s| {
                s.posts_after(from.as_deref(), RESYNC_CHUNK)
            })
            .await
            .map_err(|e| e.to_string())?;
            if posts.is_empty() {
                return Ok(true);
            }
            after = last;
            let batch: Vec<OutboxEntry> = posts
                .into_iter()
                .filter(|p| d.subscriber.wants(p))
                .map(|engagement| OutboxEntry {
                    action: Action::Save,
                    engagement,
                    committed_ms: 0,
                })
                .collect();
            let n = batch.len() as u64;
            let mut left = batch;
            while !left.is_empty() {
                let rest = left.split_off(left.len().min(self.config.batch_size));
                let Some(undelivered) = d.send(left, self.config.max_attempts, &mut stop).await
                else {
                    return Ok(false);
                };
                let (refused, failed): (Vec<DeadLetter>, Vec<DeadLetter>) = undelivered
                    .into_iter()
                    .partition(super::delivery::is_refused);
                if !refused.is_empty() {
                    let txs = refused.iter().map(|x| x.entries.len()).sum();
                    let batches = refused.len();
                    let owner = la.clone();
                    blocking::run(&self.store, move |s| s.add_dead_letters(&owner, &refused))
                        .await
                        .map_err(|e| e.to_string())?;
                    d.state.add_dead_letters(batches, txs);
                }
                if let Some(f) = failed.first() {
                    return Err(f.error.clone());
                }
                left = rest;
            }
            d.state.resync_sent.fetch_add(n, Relaxed);
        }
    }
}

/// The entries to send for a dead letter's keys: each key's current post, or a delete
/// when it is gone. Blocking.
fn current_state(store: &Store, entries: Vec<OutboxEntry>) -> Result<Vec<OutboxEntry>, StoreError> {
    entries
        .into_iter()
        .map(|e| {
            Ok(match store.post(&e.engagement.key)? {
                Some(post) => OutboxEntry {
                    action: Action::Save,
                    engagement: post,
                    committed_ms: e.committed_ms,
                },
                None => OutboxEntry {
                    action: Action::Delete,
                    ..e
                },
            })
        })
        .collect()
}
