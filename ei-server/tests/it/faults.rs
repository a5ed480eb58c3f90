//! The store failing under the running server, through the store's fault seam
//! ([`ei_server::store::Faults`]): the client gets a server fault (EI000, soap:Server,
//! HTTP 500) whose text does not leak the cause, nothing of the failed request is
//! applied (the count stays exact, nothing is readable), reads go on, and the index
//! works again once the fault is cleared.

use crate::common::*;
use ei_server::store::{Fault, Times};

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";

async fn found(c: &reqwest::Client, s: &Harness, resident: &str) -> usize {
    let a = post(c, &s.url(FIND), find_body(resident, DOMAIN, ""), Some("f")).await;
    assert_eq!(a.status, 200, "reads go on: {}", a.body);
    engagements(&a.body).len()
}

fn two_posts() -> String {
    update_body(
        "5565594230",
        &[("191212121212", "upp", None), ("191212121213", "voo", None)],
        false,
    )
}

/// `ei_requests_total` of Update with `outcome`, from `/metrics`.
async fn updates_counted(c: &reqwest::Client, s: &Harness, outcome: &str) -> u64 {
    let text = get_text(c, &s.url("/metrics")).await;
    let line = format!("ei_requests_total{{service=\"Update\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_failed_write_or_sync_is_a_server_fault_and_applies_nothing() {
    for point in [Fault::Write, Fault::Sync] {
        let s = start(|_| {}).await;
        let c = reqwest::Client::new();
        update(&c, &s, &[("191212121212", "voo", None)], false).await;
        s.store().faults().fail(point, Times::Next(1));

        let a = post(&c, &s.url(UPDATE), two_posts(), Some("fault-1")).await;
        let (code, message) = fault(&a);
        assert_eq!(code, "soap:Server", "{point:?}");
        assert_eq!(
            message,
            "EI000: A technical error has occurred, error message: the index could not \
             complete the request; it was not applied",
            "{point:?}: a generic text, the cause only in the log"
        );
        assert_eq!(s.store().faults().injected(), 1);
        assert_eq!(s.store().engagement_count(), 1, "{point:?}: count exact");
        assert_eq!(found(&c, &s, "191212121212").await, 1, "{point:?}");
        assert_eq!(found(&c, &s, "191212121213").await, 0, "{point:?}");
        assert_eq!(updates_counted(&c, &s, "EI000").await, 1);

        // Cleared (a `Next(1)` fault clears itself): the same request now applies.
        let a = post(&c, &s.url(UPDATE), two_posts(), Some("fault-2")).await;
        assert_eq!(a.status, 200, "{point:?}: {}", a.body);
        assert_eq!(s.store().engagement_count(), 3);
        assert_eq!(found(&c, &s, "191212121212").await, 2);
        assert_eq!(found(&c, &s, "191212121213").await, 1);
        s.stop().await.unwrap();
    }
}

/// RocksDB's background error after a failed sync: every write fails until the store
/// is resumed (here: the fault cleared); the index keeps answering reads and comes
/// back with an exact count, also across a restart.
#[tokio::test]
async fn a_lasting_fault_fails_every_write_until_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in(dir.path().to_owned(), |_| {}).await;
    let c = reqwest::Client::new();
    update(&c, &s, &[("191212121212", "voo", None)], false).await;
    s.store().faults().fail(Fault::Sync, Times::UntilCleared);
    for i in 0..3 {
        let body = update_body(
            "5565594230",
            &[(&format!("19121212990{i}"), "a", None)],
            false,
        );
        let a = post(&c, &s.url(UPDATE), body, Some("down")).await;
        assert_eq!(fault(&a).0, "soap:Server", "{}", a.body);
    }
    assert_eq!(found(&c, &s, "191212121212").await, 1);
    assert_eq!(s.store().faults().injected(), 3);
    s.store().faults().clear();
    update(&c, &s, &[("191212121213", "voo", None)], false).await;
    assert_eq!(s.store().engagement_count(), 2);
    s.stop().await.unwrap();

    let s = start_in(dir.path().to_owned(), |_| {}).await;
    assert_eq!(s.store().engagement_count(), 2, "the stored count is exact");
    for (resident, n) in [
        ("191212121212", 1),
        ("191212121213", 1),
        ("191212129900", 0),
    ] {
        assert_eq!(found(&c, &s, resident).await, n, "{resident}");
    }
    s.stop().await.unwrap();
}
