//! The subscriber set and how members follow it. The set is the `[notifications]`
//! subscribers plus the registry's answer (or its cache file when the registry cannot
//! be reached; or, with no cache file either, every registry subscriber the store
//! knows, with its stored definition: nobody known is dropped because the registry is
//! down at a start). An answer that drops more than `max_drop_percent` of the
//! registry's current subscribers is suspect: warned about, counted, and not obeyed
//! unless forced. A member missing from the set becomes *absent*: its worker stops,
//! its cursor and backlog stay for the grace period ([`super::upkeep`]); back in time,
//! it gets every change it missed, in order.

use super::delivery::{self, Delivery, WorkerContext};
use super::member::{Member, Phase, SubscriberState};
use super::record::{now_secs, Record};
use super::registry::{self, RegistryError};
use super::subscriber::{Source, Subscriber};
use super::{blocking, Notifier};
use crate::config::{RegistryConfig, SubscriberConfig};
use crate::store::StoreError;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Why a refresh did not simply obey the registry.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The registry failed; the cache file (or the stored definitions) was used.
    #[error("{0}; using the cached subscribers")]
    Registry(#[from] RegistryError),
    #[error("the registry's answer drops {dropped} of its {known} subscribers at once; not obeyed (the previous set is kept) unless the refresh is forced")]
    Suspect { dropped: usize, known: usize },
    #[error("storing subscriber records failed: {0}")]
    Store(#[from] StoreError),
}

impl Notifier {
    /// Asks the registry again (if configured) and reconciles the members; returns
    /// the size of the subscriber set. `force` obeys even a suspect answer.
    pub async fn refresh(&self, force: bool) -> Result<usize, RefreshError> {
        let _guard = self.refreshing.lock().await;
        let mut wanted: BTreeMap<String, Subscriber> = BTreeMap::new();
        let mut failure = None;
        if let Some(reg) = &self.config.registry {
            match self.ask_registry(reg, force).await {
                Ok(subs) => wanted.extend(subs),
                Err((e, fallback)) => {
                    wanted.extend(fallback);
                    failure = Some(e);
                }
            }
        }
        wanted.extend(self.resolve(&self.config.subscribers, Source::Config));
        let n = wanted.len();
        self.reconcile(wanted).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// The registry's subscribers, or an error with the set to use instead.
    async fn ask_registry(
        &self,
        reg: &RegistryConfig,
        force: bool,
    ) -> Result<BTreeMap<String, Subscriber>, (RefreshError, BTreeMap<String, Subscriber>)> {
        let fetched = match self.clients.get(&self.config.tls()).await {
            Ok(client) => {
                registry::fetch(&client, reg, &self.own_hsa_id, &self.config.vp_instance_id).await
            }
            Err(e) => Err(RegistryError::Call(e.to_string())),
        };
        let subs = match fetched {
            Ok(subs) => subs,
            Err(e) => return Err((e.into(), self.fallback().await)),
        };
        let answer = self.resolve(&subs, Source::Registry);
        let previous = self.registry_members();
        let dropped: Vec<&String> = previous
            .keys()
            .filter(|la| !answer.contains_key(*la))
            .collect();
        if !force && dropped.len() * 100 > reg.max_drop_percent as usize * previous.len() {
            self.metrics.suspect_answers.fetch_add(1, Relaxed);
            tracing::warn!(dropped = dropped.len(), known = previous.len(), answered = answer.len(), "suspect registry answer: it drops too many subscribers at once; keeping the previous set");
            let (dropped, known) = (dropped.len(), previous.len());
            let mut keep = previous;
            keep.extend(answer);
            return Err((RefreshError::Suspect { dropped, known }, keep));
        }
        let file = self.cache_file.clone();
        let saved = tokio::task::spawn_blocking(move || registry::save_cache(&file, &subs)).await;
        if let Ok(Err(e)) = saved {
            tracing::warn!(file = %self.cache_file.display(), error = %e, "cannot write the subscriber cache");
        }
        Ok(answer)
    }

    /// The set when the registry failed: its cache file, else the stored definitions
    /// of the registry subscribers the store knows.
    async fn fallback(&self) -> BTreeMap<String, Subscriber> {
        let file = self.cache_file.clone();
        let cached = tokio::task::spawn_blocking(move || registry::load_cache(&file))
            .await
            .ok()
            .flatten();
        match cached {
            Some(subs) => {
                tracing::warn!(cache = %self.cache_file.display(), "registry unavailable; using the cached subscribers");
                self.resolve(&subs, Source::Registry)
            }
            None => {
                let known = self.registry_members();
                tracing::warn!(cache = %self.cache_file.display(), kept = known.len(), "registry unavailable and no cache file; keeping every registry subscriber the store knows");
                known
            }
        }
    }

    /// The registry's subscribers as the members know them (absent and dropped ones
    /// excluded).
    fn registry_members(&self) -> BTreeMap<String, Subscriber> {
        self.members()
            .iter()
            .filter(|(_, m)| !matches!(m.phase(), Phase::Absent | Phase::Dropped))
            .filter_map(|(la, m)| m.subscriber().map(|s| (la.clone(), s.clone())))
            .filter(|(_, s)| s.source == Source::Registry)
            .collect()
    }

    fn resolve(&self, subs: &[SubscriberConfig], source: Source) -> BTreeMap<String, Subscriber> {
        let default_tls = self.config.tls();
        let mut out = BTreeMap::new();
        for s in subs {
            match Subscriber::from_config(
                s,
                self.config.default_url.as_deref(),
                &default_tls,
                source,
            ) {
                Some(sub) => {
                    out.insert(sub.logical_address.clone(), sub);
                }
                None => {
                    tracing::warn!(subscriber = %s.logical_address, "subscriber has no URL and there is no default_url; skipped")
                }
            }
        }
        out
    }

    /// Makes the members follow `wanted`: new ones start at the head, missing ones
    /// become absent, returning ones resume (from their cursor, or from the head with
    /// the gap recorded when they were dropped), changed ones restart.
    async fn reconcile(&self, wanted: BTreeMap<String, Subscriber>) -> Result<(), StoreError> {
        let head = *self.store.outbox_commits().borrow();
        let now = now_secs();
        let mut stops = Vec::new();
        let mut writes: Vec<(String, Record, Option<u64>)> = Vec::new();
        {
            let mut members = self.members();
            for (la, m) in members.iter_mut() {
                if m.known && m.record.absent_since.is_none() && !wanted.contains_key(la) {
                    tracing::warn!(subscriber = %la, grace_seconds = self.config.absent_grace_seconds, "missing from the subscriber set; its backlog is kept for the grace period");
                    m.record.absent_since = Some(now);
                    stops.extend(m.worker.take());
                    writes.push((la.clone(), m.record.clone(), None));
                }
            }
            for (la, sub) in wanted {
                let mut cursor = None;
                if !members.contains_key(&la) {
                    tracing::info!(subscriber = %la, url = %sub.url, source = ?sub.source, "new subscriber; it gets the changes from now on");
                    cursor = Some(head);
                }
                let m = members
                    .entry(la.clone())
                    .or_insert_with(|| Member::new(Record::default(), head));
                if !m.known {
                    tracing::warn!(subscriber = %la, from = head, "a dropped subscriber is back; it starts at the head (the gap is in its status)");
                    m.record.close_gap(head);
                    m.record.absent_since = None;
                    let state = SubscriberState::at(head);
                    for (to, from) in [
                        (&state.dead_letter_batches, &m.state.dead_letter_batches),
                        (
                            &state.dead_letter_transactions,
                            &m.state.dead_letter_transactions,
                        ),
                    ] {
                        to.store(from.load(Relaxed), Relaxed);
                    }
                    m.state = Arc::new(state);
                    m.known = true;
                    cursor = Some(head);
                }
                let mut changed = cursor.is_some();
                if m.record.absent_since.take().is_some() {
                    tracing::info!(subscriber = %la, "back in the subscriber set; it gets every change it missed");
                    changed = true;
                }
                if m.record.subscriber.as_ref() != Some(&sub) {
                    m.record.subscriber = Some(sub);
                    stops.extend(m.worker.take());
                    changed = true;
                }
                if changed {
                    writes.push((la, m.record.clone(), cursor));
                }
            }
        }
        for w in stops {
            w.stop().await;
        }
        let n = writes.len() as u64;
        let written = blocking::run(&self.store, move |s| {
            for (la, record, cursor) in &writes {
                s.put_subscriber_record(la, &record.encode(), *cursor)?;
            }
            Ok(())
        })
        .await;
        self.metrics.syncs.fetch_add(n, Relaxed);
        self.start_workers();
        written
    }

    /// Starts a worker for every active member without one.
    pub(super) fn start_workers(&self) {
        let mut members = self.members();
        for (la, m) in members.iter_mut() {
            if m.phase() != Phase::Active || m.worker.is_some() {
                continue;
            }
            let Some(sub) = m.subscriber().cloned() else {
                continue;
            };
            tracing::info!(subscriber = %la, url = %sub.url, cursor = m.state.cursor.load(Relaxed), "delivering");
            let d = Arc::new(self.delivery(sub, m.state.clone()));
            m.worker = Some(delivery::spawn(
                d,
                WorkerContext {
                    store: self.store.clone(),
                    cursor_writes: self.cursor_writes.clone(),
                    metrics: self.metrics.clone(),
                },
            ));
        }
    }

    /// A [`Delivery`] for `sub` with its live state.
    pub(super) fn delivery(&self, sub: Subscriber, state: Arc<SubscriberState>) -> Delivery {
        Delivery::new(
            sub,
            state,
            self.config.clone(),
            self.own_hsa_id.clone(),
            self.clients.clone(),
            self.metrics.clone(),
        )
    }
}
