//! The store on a real RocksDB in a temp dir: writes, reads, counts, persistence.

use super::*;
use crate::apply::ChangeKind;
use crate::model::{Field, RawEngagement, RawTransaction};
use crate::rules::{validate_notification, validate_update, RulesConfig};

const OWN: &str = "ei-hsa-id";

fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::new(OWN), Arc::new(Metrics::default())).unwrap()
}

fn ts(s: &str) -> Timestamp {
    Timestamp::try_from(s).unwrap()
}

fn tx(resident: &str, cat: &str, mrc: Option<&str>, delete: bool) -> RawTransaction {
    let mut e = RawEngagement::default();
    for (f, v) in [
        (Field::RegisteredResidentIdentification, resident),
        (Field::ServiceDomain, "riv:d"),
        (Field::Categorization, cat),
        (Field::LogicalAddress, "la"),
        (Field::BusinessObjectInstanceIdentifier, "NA"),
        (Field::ClinicalProcessInterestId, "NA"),
        (Field::SourceSystem, "ss"),
        (Field::DataController, "dc"),
    ] {
        e.set(f, v);
    }
    if let Some(m) = mrc {
        e.set(Field::MostRecentContent, m);
    }
    RawTransaction {
        delete_flag: Some(delete.to_string()),
        engagement: e,
    }
}

fn update(txs: Vec<RawTransaction>) -> Vec<Transaction> {
    validate_update(&RulesConfig::new(OWN, "p"), Some(OWN), txs).unwrap()
}

fn query(resident: &str, cat: Option<&str>) -> FindQuery {
    FindQuery {
        registered_resident_identification: resident.into(),
        service_domain: "riv:d".into(),
        categorization: cat.map(Into::into),
        filters: vec![],
        most_recent_content: None,
    }
}

#[tokio::test]
async fn write_find_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let txs = update(vec![
        tx("191212121212", "a", Some("20200101000000"), false),
        tx("191212121212", "b", None, false),
        tx("191212121213", "a", None, false),
    ]);
    let changes = store
        .write(WriteOperation::Update, txs, ts("20261122100000"))
        .await
        .unwrap();
    assert_eq!(changes.len(), 3);
    assert_eq!(store.engagement_count(), 3);
    let found = store.find(&query("191212121212", None)).unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].key.categorization(), "a");
    assert_eq!(found[0].creation_time, Some(ts("20261122100000")));
    assert_eq!(
        store.find(&query("191212121212", Some("b"))).unwrap().len(),
        1
    );
    assert_eq!(
        store.find(&query("19121212121", None)).unwrap().len(),
        0,
        "no prefix bleed"
    );
    store.close();
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.engagement_count(), 3, "count survives reopen");
    assert_eq!(store.find(&query("191212121212", None)).unwrap().len(), 2);
    let del = update(vec![tx("191212121212", "a", None, true)]);
    let changes = store
        .write(WriteOperation::Update, del, ts("20261122110000"))
        .await
        .unwrap();
    assert_eq!(changes[0].kind, ChangeKind::Deleted);
    assert_eq!(store.engagement_count(), 2);
    store.close();
}

#[tokio::test]
async fn identical_resend_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let t = || update(vec![tx("1", "a", Some("20200101000000"), false)]);
    store
        .write(WriteOperation::Update, t(), ts("20261122100000"))
        .await
        .unwrap();
    let again = store
        .write(WriteOperation::Update, t(), ts("20261122110000"))
        .await
        .unwrap();
    assert!(again.is_empty());
    let e = &store.find(&query("1", None)).unwrap()[0];
    assert_eq!(
        (e.creation_time, e.update_time),
        (Some(ts("20261122100000")), None)
    );
    store.close();
}

#[tokio::test]
async fn notification_owner_change_keeps_count() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .write(
            WriteOperation::Update,
            update(vec![tx("1", "a", None, false)]),
            ts("20261122100000"),
        )
        .await
        .unwrap();
    let mut moved = tx("1", "a", None, false);
    moved.engagement.set(Field::Owner, "other");
    let txs = validate_notification(&RulesConfig::new(OWN, "p"), vec![moved]).unwrap();
    let changes = store
        .write(
            WriteOperation::ProcessNotification,
            txs,
            ts("20261122110000"),
        )
        .await
        .unwrap();
    assert!(matches!(changes[0].kind, ChangeKind::OwnerChanged { .. }));
    assert_eq!(store.engagement_count(), 1);
    let found = store.find(&query("1", None)).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key.owner(), "other");
    store.close();
}

/// Polls a future once (so a `Store::write` has queued its request) and keeps it.
async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) {
    std::future::poll_fn(|cx| {
        assert!(
            std::pin::Pin::new(&mut *f).poll(cx).is_pending(),
            "answered while the writer is held"
        );
        std::task::Poll::Ready(())
    })
    .await
}

type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<Change>, Arc<StoreError>>> + Send>,
>;

/// Request `i`: a post of its own resident and one category of a shared resident.
fn request(store: &Arc<Store>, i: usize) -> Pending {
    let store = store.clone();
    Box::pin(async move {
        let txs = update(vec![
            tx(&format!("r{i}"), "a", None, false),
            tx("shared", &format!("c{i}"), None, false),
        ]);
        store
            .write(WriteOperation::Update, txs, ts("20261122100000"))
            .await
    })
}

/// Holds the writer on request 0's group, then queues requests `1..n` behind it:
/// returns them all, not yet answered, with the hold released.
async fn queue_behind_a_held_group(store: &Arc<Store>, n: usize) -> Vec<Pending> {
    let hold = store.faults().hold_writer();
    let mut first = request(store, 0);
    poll_once(&mut first).await;
    assert!(
        hold.wait_until_held(std::time::Duration::from_secs(30)),
        "the writer took request 0"
    );
    let mut all = vec![first];
    for i in 1..n {
        let mut r = request(store, i);
        poll_once(&mut r).await;
        all.push(r);
    }
    assert_eq!(store.queue_depth(), n as u64 - 1, "queued behind the group");
    hold.release();
    all
}

/// Guards group commit: the requests that queue while the writer is busy are written
/// together, as one batch (one fsync), and none is lost. Request 0 is taken alone;
/// the 63 queued behind it make exactly one more group.
#[tokio::test]
async fn requests_queued_behind_a_commit_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    for r in queue_behind_a_held_group(&store, 64).await {
        assert_eq!(r.await.unwrap().len(), 2);
    }
    let commits = store
        .metrics()
        .group_commits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(commits, 2, "1 group for request 0, 1 for the 63 behind it");
    assert_eq!(store.engagement_count(), 128);
    assert_eq!(store.find(&query("shared", None)).unwrap().len(), 64);
    store.close();
}

/// Guards the failure path of a group commit: every request of the failed groups gets
/// the error, nothing of them is written (posts, count, outbox, metrics), and the
/// same requests succeed once the fault is cleared.
#[tokio::test]
async fn a_failed_group_commit_fails_every_request_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(OWN);
    opts.outbox = true;
    let store = Arc::new(Store::open(dir.path(), opts, Arc::new(Metrics::default())).unwrap());
    store
        .write(
            WriteOperation::Update,
            update(vec![tx("before", "a", None, false)]),
            ts("20261122090000"),
        )
        .await
        .unwrap();
    let head = *store.outbox_commits().borrow();
    store.faults().fail(Fault::Sync, Times::Next(2));
    for r in queue_behind_a_held_group(&store, 8).await {
        let err = r.await.unwrap_err();
        assert!(matches!(*err, StoreError::Injected(Fault::Sync)), "{err}");
    }
    assert_eq!(store.faults().injected(), 2, "both groups failed");
    assert_eq!(store.engagement_count(), 1);
    assert!(store.find(&query("shared", None)).unwrap().is_empty());
    assert_eq!(*store.outbox_commits().borrow(), head);
    assert!(store.read_outbox(head, 100).unwrap().is_empty());
    let m = store.metrics();
    assert_eq!(
        m.group_commits.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(m.inserted.load(std::sync::atomic::Ordering::Relaxed), 1);

    for i in 0..8 {
        assert_eq!(request(&store, i).await.unwrap().len(), 2, "request {i}");
    }
    assert_eq!(store.engagement_count(), 17);
    assert_eq!(store.read_outbox(head, 100).unwrap().len(), 16);
    store.close();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.engagement_count(), 17, "the stored count is exact");
    assert_eq!(store.find(&query("shared", None)).unwrap().len(), 8);
    store.close();
}

/// A sync fault needs a sync: with the WAL sync off (benchmarks) it never fires, a
/// write fault does; `UntilCleared` fails until cleared.
#[tokio::test]
async fn fault_points_and_their_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(OWN);
    opts.sync = false;
    let store = Store::open(dir.path(), opts, Arc::new(Metrics::default())).unwrap();
    let write = |r: &str| {
        store.write(
            WriteOperation::Update,
            update(vec![tx(r, "a", None, false)]),
            ts("20261122100000"),
        )
    };
    store.faults().fail(Fault::Sync, Times::UntilCleared);
    write("1").await.unwrap();
    store.faults().fail(Fault::Write, Times::UntilCleared);
    for r in ["2", "3", "4"] {
        assert!(write(r).await.is_err());
    }
    assert_eq!(store.faults().injected(), 3);
    store.faults().clear();
    write("5").await.unwrap();
    assert_eq!(store.engagement_count(), 2);
    store.close();
}

#[tokio::test]
async fn writes_after_close_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.close();
    let err = store
        .write(
            WriteOperation::Update,
            update(vec![tx("1", "a", None, false)]),
            ts("20261122100000"),
        )
        .await;
    assert!(matches!(err.unwrap_err().as_ref(), StoreError::Closed));
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let db = store.db().unwrap();
        db.put_cf(
            db.cf().meta,
            schema::META_SCHEMA_VERSION,
            99u32.to_be_bytes(),
        )
        .unwrap();
        drop(db);
        store.close();
    }
    let err = Store::open(
        dir.path(),
        StoreOptions::new(OWN),
        Arc::new(Metrics::default()),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

/// The model: the posts as a map, driven by the same pure `apply` the writer uses.
#[derive(Default)]
struct Model(std::collections::BTreeMap<crate::model::EngagementKey, Engagement>);

impl crate::apply::View for Model {
    type Error = std::convert::Infallible;
    fn get(
        &mut self,
        key: &crate::model::EngagementKey,
    ) -> Result<Option<Engagement>, Self::Error> {
        Ok(self.0.get(key).cloned())
    }
    fn set(&mut self, key: &crate::model::EngagementKey, value: Option<&Engagement>) {
        match value {
            Some(e) => self.0.insert(key.clone(), e.clone()),
            None => self.0.remove(key),
        };
    }
}

impl Model {
    fn stats(&self) -> stats::PostStats {
        let mut s = stats::PostStats::default();
        for k in self.0.keys() {
            s.add(k.parts(), 1);
        }
        s
    }
}

/// A random post over few values, so keys repeat and counters rise and fall.
fn random_tx(rng: &mut u64, owner: Option<&str>) -> RawTransaction {
    let mut next = |n: u64| {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        *rng % n
    };
    let mut t = tx(
        &format!("19121212{:04}", next(6)),
        &format!("c{}", next(2)),
        None,
        next(4) == 0,
    );
    t.engagement
        .set(Field::ServiceDomain, format!("riv:d{}", next(3)));
    t.engagement
        .set(Field::SourceSystem, format!("ss{}", next(4)));
    t.engagement
        .set(Field::DataController, format!("dc{}", next(3)));
    if let Some(o) = owner {
        t.engagement.set(Field::Owner, o);
    }
    t
}

#[tokio::test]
async fn stats_equal_the_model_after_random_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let rules = RulesConfig::new(OWN, "p");
    let (mut model, mut rng) = (Model::default(), 0x9E37_79B9_7F4A_7C15u64);
    for round in 0..200u64 {
        let now = ts("20261122100000");
        let (service, txs) = if round % 3 == 2 {
            // Owner changes away from this index, and posts of other indexes.
            let owner = ["other", "third"][(round % 2) as usize];
            let raw: Vec<_> = (0..4).map(|_| random_tx(&mut rng, Some(owner))).collect();
            match validate_notification(&rules, raw) {
                Ok(v) => (WriteOperation::ProcessNotification, v),
                Err(_) => continue, // a repeated key in the request (EI002)
            }
        } else {
            let raw: Vec<_> = (0..5).map(|_| random_tx(&mut rng, None)).collect();
            match validate_update(&rules, Some(OWN), raw) {
                Ok(v) => (WriteOperation::Update, v),
                Err(_) => continue,
            }
        };
        crate::apply::apply(service, OWN, &txs, now, &mut model).unwrap();
        store.write(service, txs, now).await.unwrap();
    }
    assert!(
        model.0.len() > 20,
        "the random writes left {} posts",
        model.0.len()
    );
    assert_eq!(store.engagement_count(), model.0.len() as u64);
    assert_eq!(store.stats(), model.stats());
    let sum: u64 = store
        .stats()
        .of(stats::StatsField::SourceSystem)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(sum, model.0.len() as u64);
    store.close();
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.stats(), model.stats(), "the counters are stored");
    store.close();
}

#[tokio::test]
async fn stats_of_an_older_directory_are_counted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let txs = update(vec![tx("1", "a", None, false), tx("2", "a", None, false)]);
    store
        .write(WriteOperation::Update, txs, ts("20261122100000"))
        .await
        .unwrap();
    // As a directory written before the counters existed.
    let db = store.db().unwrap();
    let meta = db.cf().meta;
    db.delete_cf(meta, schema::META_STATS_VERSION).unwrap();
    db.delete_cf(meta, schema::stats_key("sourceSystem", "ss"))
        .unwrap();
    drop(db);
    store.close();
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store
            .stats()
            .of(stats::StatsField::SourceSystem)
            .collect::<Vec<_>>(),
        [("ss", 2)]
    );
    store.close();
}

#[tokio::test]
async fn write_lock_refuses_writes_after_the_queue_and_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    assert!(!store.write_lock().enabled);
    let l = store.set_write_lock(true).await.unwrap();
    assert!(l.enabled && l.since_unix > 0);
    let again = store.set_write_lock(true).await.unwrap();
    assert_eq!(again, l, "switching on twice keeps the first time");
    let err = store
        .write(
            WriteOperation::Update,
            update(vec![tx("1", "a", None, false)]),
            ts("20261122100000"),
        )
        .await
        .unwrap_err();
    assert!(matches!(*err, StoreError::WriteLocked));
    assert_eq!(store.engagement_count(), 0);
    store.close();
    drop(store);
    let store = open(dir.path());
    assert!(store.is_write_locked(), "the lock survives a reopen");
    assert!(!store.set_write_lock(false).await.unwrap().enabled);
    store
        .write(
            WriteOperation::Update,
            update(vec![tx("1", "a", None, false)]),
            ts("20261122100000"),
        )
        .await
        .unwrap();
    assert_eq!(store.engagement_count(), 1);
    store.close();
}
