//! The notifier's upkeep, once a second, all store work on blocking threads:
//! 1. write the cursors that moved, in one synced batch (none moved: no write, so an
//!    idle index does no fsync);
//! 2. park subscribers over their outbox budget (`max_backlog_entries`,
//!    `max_backlog_age_seconds`): position kept, clean-up no longer waits for them;
//! 3. drop the backlog of subscribers absent longer than `absent_grace_seconds`,
//!    explicitly: logged, counted, recorded as a gap;
//! 4. delete outbox entries below every written cursor that holds the clean-up back
//!    (only when that position moved);
//! 5. ask the registry again when its TTL has run out.

use super::member::{Phase, SubscriberState};
use super::record::{now_secs, Gap, Parked, Record};
use super::{blocking, Notifier};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Time between rounds.
const ROUND: Duration = Duration::from_secs(1);

/// The upkeep loop; ends when the notifier is gone or stopping.
pub async fn run(me: Weak<Notifier>) {
    let mut stop = match me.upgrade() {
        Some(n) => n.stop.subscribe(),
        None => return,
    };
    let mut last_refresh = tokio::time::Instant::now();
    let mut collected_below = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ROUND) => {}
            _ = stop.changed() => return,
        }
        let Some(n) = me.upgrade() else { return };
        write_cursors(&n).await;
        park_over_budget(&n).await;
        drop_after_grace(&n).await;
        note_idle_lag(&n).await;
        collect(&n, &mut collected_below).await;
        let ttl = n
            .config
            .registry
            .as_ref()
            .map(|r| Duration::from_secs(r.ttl_seconds));
        if ttl.is_some_and(|t| last_refresh.elapsed() >= t) {
            last_refresh = tokio::time::Instant::now();
            if let Err(e) = n.refresh(false).await {
                tracing::warn!(error = %e, "scheduled subscriber refresh");
            }
        }
        n.metrics.upkeep_rounds.fetch_add(1, Relaxed);
    }
}

/// Writes every cursor that moved since it was last written, in one synced batch.
pub async fn write_cursors(n: &Notifier) {
    let states: Vec<(String, Arc<SubscriberState>)> = n
        .members()
        .iter()
        .filter(|(_, m)| m.known && m.resyncing.is_none())
        .map(|(la, m)| (la.clone(), m.state.clone()))
        .collect();
    let lock = n.cursor_writes.clone();
    let written = blocking::run(&n.store, move |s| {
        let _serial = lock.lock().unwrap_or_else(|p| p.into_inner());
        let moved: Vec<(String, u64, &Arc<SubscriberState>)> = states
            .iter()
            .map(|(la, st)| (la.clone(), st.cursor.load(Relaxed), st))
            .filter(|(_, c, st)| *c != st.persisted.load(Relaxed))
            .collect();
        if moved.is_empty() {
            return Ok(false);
        }
        let cursors: Vec<(String, u64)> = moved.iter().map(|(la, c, _)| (la.clone(), *c)).collect();
        s.write_cursors(&cursors)?;
        for (_, c, st) in moved {
            st.persisted.store(c, Relaxed);
        }
        Ok(true)
    })
    .await;
    match written {
        Ok(true) => {
            n.metrics.syncs.fetch_add(1, Relaxed);
        }
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "writing subscriber cursors failed"),
    }
}

/// Parks active or absent subscribers over their budget.
async fn park_over_budget(n: &Notifier) {
    let c = &n.config;
    if c.max_backlog_entries == 0 && c.max_backlog_age_seconds == 0 {
        return;
    }
    let head = *n.store.outbox_commits().borrow();
    let (now_ms, now) = (crate::store::unix_ms(), now_secs());
    let mut parked = Vec::new();
    let mut stops = Vec::new();
    for (la, m) in n.members().iter_mut() {
        if !matches!(m.phase(), Phase::Active | Phase::Absent) {
            continue;
        }
        let held = head.saturating_sub(m.state.cursor.load(Relaxed));
        let lag = m.state.lag_seconds(head, now_ms);
        let reason = if c.max_backlog_entries > 0 && held > c.max_backlog_entries {
            format!(
                "{held} outbox entries held back (budget {})",
                c.max_backlog_entries
            )
        } else if c.max_backlog_age_seconds > 0 && lag > c.max_backlog_age_seconds as f64 {
            format!(
                "oldest undelivered change {lag:.0} s old (budget {} s)",
                c.max_backlog_age_seconds
            )
        } else {
            continue;
        };
        tracing::warn!(subscriber = %la, %reason, "parked: over its outbox budget; clean-up no longer waits for it; POST /admin/subscribers/{la}/resync brings it back");
        m.record.parked = Some(Parked { since: now, reason });
        stops.extend(m.worker.take());
        parked.push((la.clone(), m.record.clone()));
    }
    for w in stops {
        w.stop().await;
    }
    save_records(n, parked).await;
}

/// Drops the backlog of subscribers absent longer than the grace period.
async fn drop_after_grace(n: &Notifier) {
    let now = now_secs();
    let head = *n.store.outbox_commits().borrow();
    let grace = n.config.absent_grace_seconds;
    let mut dropped = Vec::new();
    for (la, m) in n.members().iter_mut() {
        let Some(since) = m.record.absent_since.filter(|_| m.known) else {
            continue;
        };
        if since.saturating_add(grace) > now {
            continue;
        }
        let from = m.state.persisted.load(Relaxed);
        tracing::warn!(subscriber = %la, from, head, absent_since = since, "absent longer than the grace period: its backlog is dropped; if it comes back it starts at the head (the gap is in its status)");
        m.record.add_gap(Gap {
            from,
            to: None,
            absent_since: Some(since),
            dropped_at: now,
        });
        m.record.parked = None;
        m.known = false;
        n.metrics.gaps.fetch_add(1, Relaxed);
        dropped.push((la.clone(), m.record.clone()));
    }
    if dropped.is_empty() {
        return;
    }
    let count = dropped.len() as u64;
    let done = blocking::run(&n.store, move |s| {
        for (la, record) in &dropped {
            s.drop_cursor(la, &record.encode())?;
        }
        Ok(())
    })
    .await;
    n.metrics.syncs.fetch_add(count, Relaxed);
    if let Err(e) = done {
        tracing::error!(error = %e, "forgetting dropped subscribers' cursors failed");
    }
}

/// Stores records (synced).
pub(super) async fn save_records(n: &Notifier, records: Vec<(String, Record)>) {
    if records.is_empty() {
        return;
    }
    let count = records.len() as u64;
    let done = blocking::run(&n.store, move |s| {
        for (la, record) in &records {
            s.put_subscriber_record(la, &record.encode(), None)?;
        }
        Ok(())
    })
    .await;
    n.metrics.syncs.fetch_add(count, Relaxed);
    if let Err(e) = done {
        tracing::error!(error = %e, "storing subscriber records failed");
    }
}

/// Keeps the lag of members without a worker (absent, parked) current: the commit time
/// of the first change at their cursor.
async fn note_idle_lag(n: &Notifier) {
    let head = *n.store.outbox_commits().borrow();
    let idle: Vec<(u64, Arc<SubscriberState>)> = n
        .members()
        .values()
        .filter(|m| m.known && m.worker.is_none() && m.resyncing.is_none())
        .map(|m| (m.state.cursor.load(Relaxed), m.state.clone()))
        .filter(|(c, st)| *c < head && st.oldest_pending_ms.load(Relaxed) == 0)
        .collect();
    if idle.is_empty() {
        return;
    }
    let done = blocking::run(&n.store, move |s| {
        for (cursor, st) in idle {
            if let Some((_, e)) = s.read_outbox(cursor, 1)?.into_iter().next() {
                st.oldest_pending_ms.store(e.committed_ms, Relaxed);
            }
        }
        Ok(())
    })
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "reading the outbox for lag failed");
    }
}

/// Deletes outbox entries every holding member has passed (written cursors only).
async fn collect(n: &Notifier, collected_below: &mut u64) {
    let head = *n.store.outbox_commits().borrow();
    let below = n
        .members()
        .values()
        .filter_map(|m| m.holds_back())
        .min()
        .unwrap_or(head);
    if below <= *collected_below {
        return;
    }
    match blocking::run(&n.store, move |s| s.collect_outbox(below)).await {
        Ok(()) => *collected_below = below,
        Err(e) => tracing::warn!(error = %e, "outbox clean-up failed"),
    }
}
