//! The store's contract, one suite run on both backends: on a real RocksDB in a
//! temp dir and on a fresh PostgreSQL database (`EI_TEST_PG`; skipped with a
//! message when unset). Writes, reads, counts, persistence, group commit, faults,
//! statistics and the write lock. The tests run on a multi-threaded runtime and make
//! the store's blocking calls through [`blocking`], as the server does.

use super::*;
use crate::apply::ChangeKind;
use crate::model::{Field, RawEngagement, RawTransaction};
use crate::rules::{validate_notification, validate_update, RulesConfig};

pub(super) const OWN: &str = "ei-hsa-id";

fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::new(OWN), Arc::new(Metrics::default())).unwrap()
}

/// Where a test's store lives: a temp dir, or a fresh PostgreSQL database (with a
/// temp dir as the server's data directory).
pub(super) enum Place {
    Rocks(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Pg(crate::harness::TestDatabase, tempfile::TempDir),
}

impl Place {
    pub(super) fn rocks() -> Place {
        Place::Rocks(tempfile::tempdir().unwrap())
    }

    #[cfg(feature = "postgres")]
    pub(super) fn postgres(label: &str) -> Option<Place> {
        let db = crate::harness::TestDatabase::create(label)?;
        Some(Place::Pg(db, tempfile::tempdir().unwrap()))
    }

    /// Opens (or reopens) the store here.
    pub(super) fn open_with(&self, options: StoreOptions) -> Store {
        let metrics = Arc::new(Metrics::default());
        match self {
            Place::Rocks(dir) => Store::open(dir.path(), options, metrics).unwrap(),
            #[cfg(feature = "postgres")]
            Place::Pg(db, dir) => {
                Store::open_postgres(db.url(), dir.path(), options, metrics).unwrap()
            }
        }
    }

    pub(super) fn open(&self) -> Store {
        self.open_with(StoreOptions::new(OWN))
    }
}

/// Runs a blocking store call off the async executor's thread.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

pub(super) fn find(store: &Store, q: &FindQuery) -> Vec<Engagement> {
    blocking(|| store.find(q)).unwrap()
}

/// The suite's tests, each once per backend: `on_rocksdb::NAME`, `on_postgres::NAME`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod on_rocksdb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Place::rocks()).await
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(place) = super::Place::postgres(stringify!($name)) {
                        super::$name(place).await
                    }
                }
            )*
        }
    };
}

on_both!(
    write_find_and_reopen,
    identical_resend_changes_nothing,
    notification_owner_change_keeps_count,
    requests_queued_behind_a_commit_share_the_next_one,
    a_failed_group_commit_fails_every_request_and_writes_nothing,
    fault_points_and_their_lifetime,
    writes_after_close_fail_cleanly,
    stats_equal_the_model_after_random_writes,
    write_lock_refuses_writes_after_the_queue_and_is_stored,
    outbox_cursors_and_dead_letters,
    audit_records_are_written_with_the_posts,
    requests_in_one_group_see_each_others_writes,
);

pub(super) fn ts(s: &str) -> Timestamp {
    Timestamp::try_from(s).unwrap()
}

pub(super) fn tx(resident: &str, cat: &str, mrc: Option<&str>, delete: bool) -> RawTransaction {
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

pub(super) fn update(txs: Vec<RawTransaction>) -> Vec<Transaction> {
    validate_update(&RulesConfig::new(OWN, "p"), Some(OWN), txs).unwrap()
}

pub(super) fn query(resident: &str, cat: Option<&str>) -> FindQuery {
    FindQuery {
        registered_resident_identification: resident.into(),
        service_domain: "riv:d".into(),
        categorization: cat.map(Into::into),
        filters: vec![],
        most_recent_content: None,
    }
}

async fn write_find_and_reopen(place: Place) {
    let store = place.open();
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
    let found = find(&store, &query("191212121212", None));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].key.categorization(), "a");
    assert_eq!(found[0].creation_time, Some(ts("20261122100000")));
    assert_eq!(find(&store, &query("191212121212", Some("b"))).len(), 1);
    assert_eq!(
        find(&store, &query("19121212121", None)).len(),
        0,
        "no prefix bleed"
    );
    store.close();
    drop(store);

    let store = place.open();
    assert_eq!(store.engagement_count(), 3, "count survives reopen");
    assert_eq!(find(&store, &query("191212121212", None)).len(), 2);
    let del = update(vec![tx("191212121212", "a", None, true)]);
    let changes = store
        .write(WriteOperation::Update, del, ts("20261122110000"))
        .await
        .unwrap();
    assert_eq!(changes[0].kind, ChangeKind::Deleted);
    assert_eq!(store.engagement_count(), 2);
    store.close();
}

async fn identical_resend_changes_nothing(place: Place) {
    let store = place.open();
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
    let e = &find(&store, &query("1", None))[0];
    assert_eq!(
        (e.creation_time, e.update_time),
        (Some(ts("20261122100000")), None)
    );
    store.close();
}

async fn notification_owner_change_keeps_count(place: Place) {
    let store = place.open();
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
    let found = find(&store, &query("1", None));
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
async fn requests_queued_behind_a_commit_share_the_next_one(place: Place) {
    let store = Arc::new(place.open());
    for r in queue_behind_a_held_group(&store, 64).await {
        assert_eq!(r.await.unwrap().len(), 2);
    }
    let commits = store
        .metrics()
        .group_commits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(commits, 2, "1 group for request 0, 1 for the 63 behind it");
    assert_eq!(store.engagement_count(), 128);
    assert_eq!(find(&store, &query("shared", None)).len(), 64);
    store.close();
}

/// Guards the failure path of a group commit: every request of the failed groups gets
/// the error, nothing of them is written (posts, count, outbox, metrics), and the
/// same requests succeed once the fault is cleared.
async fn a_failed_group_commit_fails_every_request_and_writes_nothing(place: Place) {
    let mut opts = StoreOptions::new(OWN);
    opts.outbox = true;
    let store = Arc::new(place.open_with(opts));
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
    assert!(find(&store, &query("shared", None)).is_empty());
    assert_eq!(*store.outbox_commits().borrow(), head);
    assert!(blocking(|| store.read_outbox(head, 100))
        .unwrap()
        .is_empty());
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
    assert_eq!(blocking(|| store.read_outbox(head, 100)).unwrap().len(), 16);
    store.close();
    drop(store);
    let store = place.open();
    assert_eq!(store.engagement_count(), 17, "the stored count is exact");
    assert_eq!(find(&store, &query("shared", None)).len(), 8);
    store.close();
}

/// A sync fault needs a sync: with the WAL sync off (benchmarks) it never fires, a
/// write fault does; `UntilCleared` fails until cleared.
async fn fault_points_and_their_lifetime(place: Place) {
    let mut opts = StoreOptions::new(OWN);
    opts.sync = false;
    let store = place.open_with(opts);
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

async fn writes_after_close_fail_cleanly(place: Place) {
    let store = place.open();
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

async fn stats_equal_the_model_after_random_writes(place: Place) {
    let store = place.open();
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
    let store = place.open();
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

async fn write_lock_refuses_writes_after_the_queue_and_is_stored(place: Place) {
    let store = place.open();
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
    let store = place.open();
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

/// The notifier's side of the store: outbox entries written with the posts and read
/// in order, cursors, dead letters with their ids, subscriber records, the posts a
/// resync walks, and the outbox's clean-up.
async fn outbox_cursors_and_dead_letters(place: Place) {
    let mut opts = StoreOptions::new(OWN);
    opts.outbox = true;
    let store = place.open_with(opts.clone());
    let txs = update(vec![tx("1", "a", None, false), tx("2", "a", None, false)]);
    store
        .write(WriteOperation::Update, txs, ts("20261122100000"))
        .await
        .unwrap();
    assert_eq!(*store.outbox_commits().borrow(), 2);
    let entries = blocking(|| store.read_outbox(0, 10)).unwrap();
    let seqs: Vec<u64> = entries.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [0, 1]);
    assert_eq!(
        entries[0]
            .1
            .engagement
            .key
            .registered_resident_identification(),
        "1"
    );
    assert_eq!(entries[0].1.action, crate::model::Action::Save);

    blocking(|| {
        store.write_cursors(&[("sub".into(), 1)]).unwrap();
        assert_eq!(store.cursor("sub").unwrap(), Some(1));
        assert_eq!(store.cursor("other").unwrap(), None);
        assert_eq!(store.cursors().unwrap(), [("sub".to_owned(), 1)]);
        let letter = |error: &str| DeadLetter {
            id: 0,
            error: error.into(),
            entries: vec![entries[0].1.clone()],
        };
        assert_eq!(
            store.advance_cursor("sub", 2, &[letter("first")]).unwrap(),
            [0]
        );
        assert_eq!(store.cursor("sub").unwrap(), Some(2));
        assert_eq!(
            store.add_dead_letters("sub", &[letter("second")]).unwrap(),
            [1]
        );
        let dead = store.dead_letters("sub").unwrap();
        assert_eq!(dead.len(), 2);
        assert_eq!((dead[0].id, dead[0].error.as_str()), (0, "first"));
        assert_eq!(dead[1].entries, [entries[0].1.clone()]);
        assert_eq!(
            store.replace_dead_letter("sub", 0, &[]).unwrap(),
            Vec::<u64>::new()
        );
        let ids: Vec<u64> = store
            .dead_letters("sub")
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(ids, [1]);
        store.remove_dead_letter("sub", 1).unwrap();
        assert!(store.dead_letters("sub").unwrap().is_empty());

        store.put_subscriber_record("sub", b"{}", Some(5)).unwrap();
        assert_eq!(store.cursor("sub").unwrap(), Some(5));
        assert_eq!(
            store.subscriber_records().unwrap(),
            [("sub".to_owned(), b"{}".to_vec())]
        );
        store.drop_cursor("sub", b"{\"dropped\":true}").unwrap();
        assert_eq!(store.cursor("sub").unwrap(), None);
        assert_eq!(
            store.subscriber_records().unwrap()[0].1,
            b"{\"dropped\":true}"
        );

        let key = &entries[1].1.engagement.key;
        assert_eq!(store.post(key).unwrap().unwrap().key, *key);
        let (first, last) = store.posts_after(None, 1).unwrap();
        assert_eq!(first.len(), 1);
        let (rest, _) = store.posts_after(last.as_deref(), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert_ne!(rest[0].key, first[0].key);

        store.collect_outbox(1).unwrap();
        let left: Vec<u64> = store
            .read_outbox(0, 10)
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(left, [1]);
    });
    store.close();
    drop(store);
    let store = place.open_with(opts);
    assert_eq!(
        *store.outbox_commits().borrow(),
        2,
        "the head survives a reopen"
    );
    store.close();
}

/// Access records of a write are stored with its posts; records appended later and
/// the retention's purge work alike on both backends.
async fn audit_records_are_written_with_the_posts(place: Place) {
    let store = place.open();
    let access = audit::Access {
        time_ms: 2_000,
        caller: "caller-1".into(),
        correlation_id: "corr-1".into(),
    };
    store
        .write_audited(
            WriteOperation::Update,
            update(vec![tx("1", "a", None, false)]),
            ts("20261122100000"),
            Some(access.clone()),
        )
        .await
        .unwrap();
    blocking(|| {
        let found = store.audit("1", 0, u64::MAX, 10).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].caller.as_str(), found[0].posts), ("caller-1", 1));
        assert_eq!(found[0].operation, "Update");
        let older = access.record("FindContent", "1", "riv:d".into(), 3);
        let older = audit::AuditRecord {
            time_ms: 1_000,
            ..older
        };
        store.append_audit(&[older]).unwrap();
        let found = store.audit("1", 0, 5_000, 10).unwrap();
        let times: Vec<u64> = found.iter().map(|r| r.time_ms).collect();
        assert_eq!(times, [2_000, 1_000], "newest first");
        assert!(store.audit("2", 0, 5_000, 10).unwrap().is_empty());
        assert_eq!(store.audit("1", 1_500, 5_000, 10).unwrap().len(), 1);
        assert_eq!(store.purge_audit(1_500).unwrap(), 1);
        assert_eq!(store.audit("1", 0, 5_000, 10).unwrap().len(), 1);
    });
    store.close();
}

/// Guards the group's view: requests committed together on one key see each other's
/// writes in arrival order (insert, change, delete, insert again), as if committed
/// one by one; the count and the stored post are the last request's.
async fn requests_in_one_group_see_each_others_writes(place: Place) {
    let store = Arc::new(place.open());
    let hold = store.faults().hold_writer();
    let steps = [
        (Some("20200101000000"), false),
        (Some("20210101000000"), false),
        (None, true),
        (Some("20220101000000"), false),
    ];
    let mut pending = Vec::new();
    for (i, (mrc, delete)) in steps.into_iter().enumerate() {
        let store = store.clone();
        let mut p: Pending = Box::pin(async move {
            let txs = update(vec![tx("same", "a", mrc, delete)]);
            store
                .write(WriteOperation::Update, txs, ts("20261122100000"))
                .await
        });
        poll_once(&mut p).await;
        if i == 0 {
            assert!(hold.wait_until_held(std::time::Duration::from_secs(30)));
        }
        pending.push(p);
    }
    assert_eq!(store.queue_depth(), 3, "three queued behind the first");
    hold.release();
    let mut kinds = Vec::new();
    for p in pending {
        kinds.extend(p.await.unwrap().into_iter().map(|c| c.kind));
    }
    assert_eq!(
        kinds,
        [
            ChangeKind::Inserted,
            ChangeKind::ContentChanged,
            ChangeKind::Deleted,
            ChangeKind::Inserted
        ]
    );
    assert_eq!(store.engagement_count(), 1);
    let found = find(&store, &query("same", None));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].most_recent_content, Some(ts("20220101000000")));
    store.close();
}

/// A lookup from memory ([`Store::find_cached`]) answers what a blocking one does when
/// every block it needs is in the memtables or the block cache, and declines (never
/// reads a file) when one is not: here right after a reopen, before anything read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lookup_from_memory_declines_what_is_not_cached() {
    let place = Place::rocks();
    let cached = |store: &Store, q: &FindQuery| {
        let mut seen = Vec::new();
        let n = store
            .find_cached(q, usize::MAX, |p| seen.push(p.to_engagement()))
            .unwrap();
        n.map(|n| {
            assert_eq!(n, seen.len());
            seen
        })
    };
    let store = place.open();
    let txs = update(vec![
        tx("191212121212", "a", Some("20200101000000"), false),
        tx("191212121212", "b", None, false),
        tx("191212121213", "a", None, false),
    ]);
    store
        .write(WriteOperation::Update, txs, ts("20261122100000"))
        .await
        .unwrap();
    let q = query("191212121212", None);
    let in_memtable = cached(&store, &q).expect("fresh writes are in the memtable");
    assert_eq!(in_memtable.len(), 2);
    assert_eq!(in_memtable, find(&store, &q));
    store.close();
    drop(store);

    // Reopened, the posts are in a table file whose blocks nothing has read yet.
    let store = place.open();
    assert_eq!(cached(&store, &q), None, "a block on disk is not read");
    let from_disk = find(&store, &q);
    assert_eq!(from_disk, in_memtable);
    assert_eq!(
        cached(&store, &q),
        Some(from_disk),
        "the blocking read cached the blocks"
    );
    assert_eq!(
        cached(&store, &query("191212121214", None)),
        Some(vec![]),
        "nobody's posts, from the cached blocks"
    );
    // A scan longer than its limit declines too (then runs on a blocking thread).
    let limited = |max| store.find_cached(&q, max, |_| ()).unwrap();
    assert_eq!(limited(2), Some(2));
    assert_eq!(limited(1), None, "the limit counts stored posts scanned");
    store.close();
}
