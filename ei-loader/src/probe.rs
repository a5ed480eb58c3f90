//! `probe`: the connectivity test (förbindelseprov) the platform asks for before go-live:
//! one FindContent for a resident the index knows (at least one post expected) and one
//! for a resident it does not (none expected), each timed.

use crate::client::EiClient;
use ei_server::model::{Field, RawEngagement};
use serde::Serialize;
use std::time::{Duration, Instant};

/// One timed lookup.
#[derive(Clone, Debug, Serialize)]
pub struct Lookup {
    pub resident: String,
    pub expected: &'static str,
    pub found: Option<usize>,
    pub millis: f64,
    pub ok: bool,
    pub error: Option<String>,
}

/// Both lookups.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub known: Lookup,
    pub unknown: Lookup,
}

impl ProbeReport {
    pub fn ok(&self) -> bool {
        self.known.ok && self.unknown.ok
    }
}

/// Runs the two lookups against `client`'s FindContent endpoint.
pub async fn probe(client: &EiClient, domain: &str, known: &str, unknown: &str) -> ProbeReport {
    ProbeReport {
        known: lookup(client, domain, known, true).await,
        unknown: lookup(client, domain, unknown, false).await,
    }
}

async fn lookup(client: &EiClient, domain: &str, resident: &str, expect_posts: bool) -> Lookup {
    let mut q = RawEngagement::default();
    q.set(Field::RegisteredResidentIdentification, resident);
    q.set(Field::ServiceDomain, domain);
    let started = Instant::now();
    let result = client
        .find_content(&q, &format!("ei-loader-probe-{resident}"))
        .await;
    let millis = ms(started.elapsed());
    let expected = if expect_posts {
        "at least one post"
    } else {
        "no posts"
    };
    match result {
        Ok(found) => Lookup {
            resident: resident.to_owned(),
            expected,
            found: Some(found.len()),
            millis,
            ok: found.is_empty() != expect_posts,
            error: None,
        },
        Err(e) => Lookup {
            resident: resident.to_owned(),
            expected,
            found: None,
            millis,
            ok: false,
            error: Some(e.to_string()),
        },
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
