//! What an operator sees of the notifier: each subscriber's status for
//! `GET /admin/subscribers` and the Prometheus lines for `/metrics` (per subscriber:
//! pending entries, lag, parked/absent state, dead letters, counters; overall: delivery
//! latency, gaps, suspect registry answers, the notifier's fsyncs). Both read memory
//! only: nothing here touches the store.

use super::member::{Member, Phase};
use super::record::Gap;
use super::Notifier;
use crate::config::FilterConfig;
use crate::metrics::LabelValue;
use crate::store::unix_ms;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

/// A subscriber as the admin endpoint lists it.
#[derive(Debug, Serialize)]
pub struct SubscriberStatus {
    pub logical_address: String,
    pub url: Option<String>,
    pub filters: Vec<FilterConfig>,
    pub source: Option<super::subscriber::Source>,
    pub state: Phase,
    /// RFC 3339, when absent.
    pub absent_since: Option<String>,
    pub parked: Option<ParkedStatus>,
    pub gaps: Vec<GapStatus>,
    pub cursor: u64,
    /// Outbox entries from the cursor to the head.
    pub pending: u64,
    /// Age of the oldest undelivered change.
    pub lag_seconds: f64,
    pub dead_letter_batches: u64,
    pub dead_letter_transactions: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub resync: Option<ResyncStatus>,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ParkedStatus {
    pub since: String,
    pub reason: String,
}

/// Outbox sequence numbers `from..to` the subscriber was not told of.
#[derive(Debug, Serialize)]
pub struct GapStatus {
    pub from: u64,
    pub to: Option<u64>,
    pub absent_since: Option<String>,
    pub dropped_at: String,
}

#[derive(Debug, Serialize)]
pub struct ResyncStatus {
    /// Outbox position delivery continues from afterwards.
    pub from: u64,
    pub sent: u64,
}

/// Unix seconds as RFC 3339 (UTC).
fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

fn status_of(la: &str, m: &Member, head: u64, now_ms: u64) -> SubscriberStatus {
    let st = &m.state;
    let sub = m.subscriber();
    let cursor = st.cursor.load(Relaxed);
    let phase = m.phase();
    SubscriberStatus {
        logical_address: la.to_owned(),
        url: sub.map(|s| s.url.clone()),
        filters: sub.map(|s| s.filters.clone()).unwrap_or_default(),
        source: sub.map(|s| s.source),
        state: phase,
        absent_since: m.record.absent_since.map(rfc3339),
        parked: m.record.parked.as_ref().map(|p| ParkedStatus {
            since: rfc3339(p.since),
            reason: p.reason.clone(),
        }),
        gaps: m.record.gaps.iter().map(gap_status).collect(),
        cursor,
        pending: match phase {
            Phase::Dropped => 0,
            _ => head.saturating_sub(cursor),
        },
        lag_seconds: match phase {
            Phase::Dropped => 0.0,
            _ => st.lag_seconds(head, now_ms),
        },
        dead_letter_batches: st.dead_letter_batches.load(Relaxed),
        dead_letter_transactions: st.dead_letter_transactions.load(Relaxed),
        delivered: st.delivered.load(Relaxed),
        retried: st.retried.load(Relaxed),
        dead_lettered: st.dead_lettered.load(Relaxed),
        resync: m.resyncing.map(|from| ResyncStatus {
            from,
            sent: st.resync_sent.load(Relaxed),
        }),
        last_error: st.last_error(),
    }
}

fn gap_status(g: &Gap) -> GapStatus {
    GapStatus {
        from: g.from,
        to: g.to,
        absent_since: g.absent_since.map(rfc3339),
        dropped_at: rfc3339(g.dropped_at),
    }
}

impl Notifier {
    /// Every subscriber the notifier knows (dropped ones too, with their gaps).
    pub fn status(&self) -> Vec<SubscriberStatus> {
        let head = *self.store.outbox_commits().borrow();
        let now_ms = unix_ms();
        self.members()
            .iter()
            .map(|(la, m)| status_of(la, m, head, now_ms))
            .collect()
    }

    /// Prometheus lines for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let status: Vec<SubscriberStatus> = self
            .status()
            .into_iter()
            .filter(|s| s.state != Phase::Dropped)
            .collect();
        type Value = fn(&SubscriberStatus) -> f64;
        let per_subscriber: [(&str, &str, &str, Value); 9] = [
            ("ei_notify_pending", "gauge", "Outbox entries from the subscriber's cursor to the head.", |s| s.pending as f64),
            ("ei_notify_lag_seconds", "gauge", "Age of the subscriber's oldest undelivered change.", |s| s.lag_seconds),
            ("ei_notify_parked", "gauge", "1 while the subscriber is parked (over its outbox budget; needs a resync).", |s| f64::from(u8::from(matches!(s.state, Phase::Parked | Phase::Resyncing)))),
            ("ei_notify_absent", "gauge", "1 while the subscriber is missing from the subscriber set (backlog kept for the grace period).", |s| f64::from(u8::from(s.absent_since.is_some()))),
            ("ei_notify_dead_letter_transactions", "gauge", "Transactions in the subscriber's dead letters now.", |s| s.dead_letter_transactions as f64),
            ("ei_notify_delivered_total", "counter", "Transactions delivered, per subscriber.", |s| s.delivered as f64),
            ("ei_notify_retried_total", "counter", "Retried calls, per subscriber.", |s| s.retried as f64),
            ("ei_notify_dead_lettered_total", "counter", "Transactions moved to dead letters (out of attempts or refused), per subscriber.", |s| s.dead_lettered as f64),
            ("ei_notify_resync_sent_total", "counter", "Posts sent by the subscriber's last resync.", |s| s.resync.as_ref().map_or(0.0, |r| r.sent as f64)),
        ];
        for (name, kind, help, value) in per_subscriber {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &status {
                let _ = writeln!(
                    out,
                    "{name}{{subscriber=\"{}\"}} {}",
                    LabelValue(&s.logical_address),
                    value(s)
                );
            }
        }
        out.push_str("# HELP ei_notify_delivery_seconds Latency of successful ProcessNotification calls.\n# TYPE ei_notify_delivery_seconds histogram\n");
        self.metrics
            .latency
            .render(&mut out, "ei_notify_delivery_seconds", "");
        let m = &self.metrics;
        for (name, help, v) in [
            (
                "ei_notify_gaps_total",
                "Subscribers whose backlog was dropped after the grace period.",
                &m.gaps,
            ),
            (
                "ei_notify_registry_suspect_answers_total",
                "Registry answers not obeyed because they dropped too many subscribers at once.",
                &m.suspect_answers,
            ),
            (
                "ei_notify_store_syncs_total",
                "Synced store writes made by the notifier (cursors, dead letters, records).",
                &m.syncs,
            ),
            (
                "ei_notify_upkeep_rounds_total",
                "Finished rounds of the notifier's upkeep (cursor writes, parking, clean-up).",
                &m.upkeep_rounds,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_readable() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
