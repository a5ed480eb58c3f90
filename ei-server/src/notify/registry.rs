//! Subscribers from the registry: GetLogicalAddresseesByServiceContract v2, asked for
//! the ProcessNotification namespace with the platform headers. Each good answer is
//! written to a local cache file; when the registry cannot be reached the cache file
//! is used instead ([`super::refresh`] decides). The answer is read with a size cap.

use crate::codec::client::{classify_logical_addressees, Outcome, SoapCall};
use crate::codec::NOTIFICATION_NS;
use crate::config::{FilterConfig, RegistryConfig, SubscriberConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Why the registry gave no subscribers.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry call failed: {0}")]
    Call(String),
    #[error("registry answer unreadable: {0}")]
    Answer(String),
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    fetched_at_unix: u64,
    subscribers: Vec<SubscriberConfig>,
}

/// Asks the registry which logical addresses subscribe to ProcessNotification.
pub async fn fetch(
    client: &reqwest::Client,
    cfg: &RegistryConfig,
    own_hsa_id: &str,
    vp_instance_id: &str,
) -> Result<Vec<SubscriberConfig>, RegistryError> {
    let call = SoapCall::logical_addressees(
        &cfg.url,
        &cfg.logical_address,
        own_hsa_id,
        NOTIFICATION_NS,
        format!("ei-registry-{}", crate::clock::now()),
    )
    .sender(own_hsa_id, vp_instance_id);
    let (status, body) = super::call::send(
        client,
        call,
        Duration::from_secs(30),
        cfg.max_response_bytes,
    )
    .await
    .map_err(RegistryError::Call)?;
    let records = match classify_logical_addressees(status, &body) {
        Outcome::Ok(records) => records,
        o @ (Outcome::Status { .. } | Outcome::Fault { .. }) => {
            return Err(RegistryError::Call(o.to_string()))
        }
        other => return Err(RegistryError::Answer(other.to_string())),
    };
    Ok(records
        .into_iter()
        .map(|r| {
            let filters = r
                .filters
                .into_iter()
                .map(|(service_domain, categorizations)| FilterConfig {
                    service_domain,
                    categorizations,
                })
                .collect();
            SubscriberConfig::new(&r.logical_address, None, filters)
        })
        .collect())
}

/// Writes the cache file (atomically: temp file, then rename).
pub fn save_cache(path: &Path, subscribers: &[SubscriberConfig]) -> std::io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let text = serde_json::to_string_pretty(&CacheFile {
        fetched_at_unix: now,
        subscribers: subscribers.to_vec(),
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

/// Reads the cache file, if there is a readable one.
pub fn load_cache(path: &Path) -> Option<Vec<SubscriberConfig>> {
    let text = std::fs::read_to_string(path).ok()?;
    match serde_json::from_str::<CacheFile>(&text) {
        Ok(c) => Some(c.subscribers),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable subscriber cache");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_round_trip_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        assert!(load_cache(&path).is_none());
        let subs = vec![SubscriberConfig::new("SE1", None, vec![])];
        save_cache(&path, &subs).unwrap();
        assert_eq!(load_cache(&path).unwrap(), subs);
        std::fs::write(&path, "{").unwrap();
        assert!(load_cache(&path).is_none());
    }
}
