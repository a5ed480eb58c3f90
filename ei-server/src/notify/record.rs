//! The persisted part of what the notifier knows of a subscriber (`meta` key
//! `subscriber/{la}`, see [`crate::store::schema`]): its last definition, since when
//! it is absent, whether it is parked, and the gaps it was told of. JSON, so an
//! operator can read it and later fields can be added with defaults.

use super::subscriber::Subscriber;
use serde::{Deserialize, Serialize};

/// Most gaps kept per subscriber (the oldest are forgotten).
const MAX_GAPS: usize = 20;

/// One subscriber's record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// The last definition it was delivered with: used when the registry is down at a
    /// start with no cache file, so nobody known is dropped.
    pub subscriber: Option<Subscriber>,
    /// Unix seconds since it is missing from the subscriber set.
    pub absent_since: Option<u64>,
    /// Set while it is parked: clean-up no longer waits for it; a resync brings it back.
    pub parked: Option<Parked>,
    /// Outbox ranges it will never get, newest last.
    pub gaps: Vec<Gap>,
}

/// Why and since when a subscriber is parked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parked {
    /// Unix seconds.
    pub since: u64,
    pub reason: String,
}

/// Changes a subscriber was not told of: outbox sequence numbers `from..to` (`to`
/// is set when it comes back and starts again at the head).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from: u64,
    pub to: Option<u64>,
    /// Unix seconds: absent since, and dropped at (after the grace period).
    pub absent_since: Option<u64>,
    pub dropped_at: u64,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record serialises")
    }

    /// Reads a stored record; an unreadable one is logged and read as empty (it holds
    /// no delivery state: the cursor is stored apart).
    pub fn decode(la: &str, bytes: &[u8]) -> Record {
        serde_json::from_slice(bytes).unwrap_or_else(|e| {
            tracing::warn!(subscriber = %la, error = %e, "unreadable subscriber record; starting from an empty one");
            Record::default()
        })
    }

    /// Adds a gap, keeping the newest [`MAX_GAPS`].
    pub fn add_gap(&mut self, gap: Gap) {
        self.gaps.push(gap);
        let excess = self.gaps.len().saturating_sub(MAX_GAPS);
        self.gaps.drain(..excess);
    }

    /// Closes the open gap (if any) at `to`, where delivery starts again.
    pub fn close_gap(&mut self, to: u64) {
        if let Some(g) = self.gaps.last_mut().filter(|g| g.to.is_none()) {
            g.to = Some(to);
        }
    }
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    crate::store::unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let mut r = Record {
            absent_since: Some(5),
            ..Record::default()
        };
        for i in 0..25 {
            r.add_gap(Gap {
                from: i,
                to: None,
                absent_since: None,
                dropped_at: 9,
            });
        }
        assert_eq!(r.gaps.len(), MAX_GAPS);
        assert_eq!(r.gaps[0].from, 5, "the oldest are forgotten");
        r.close_gap(100);
        assert_eq!(r.gaps.last().unwrap().to, Some(100));
        assert_eq!(Record::decode("SE1", &r.encode()), r);
        assert_eq!(Record::decode("SE1", b"{"), Record::default());
        assert_eq!(
            Record::decode("SE1", b"{\"absent_since\":3,\"later_field\":1}").absent_since,
            Some(3),
            "fields added later are ignored"
        );
    }
}
