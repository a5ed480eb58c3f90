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

#[tokio::test]
async fn concurrent_writes_are_group_committed_and_none_lost() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let txs = update(vec![
                tx(&format!("r{i}"), "a", None, false),
                tx("shared", &format!("c{i}"), None, false),
            ]);
            store
                .write(WriteOperation::Update, txs, ts("20261122100000"))
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().len(), 2);
    }
    assert_eq!(store.engagement_count(), 128);
    assert_eq!(store.find(&query("shared", None)).unwrap().len(), 64);
    let commits = store
        .metrics()
        .group_commits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=64).contains(&commits),
        "{commits} group commits for 64 requests"
    );
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
        let meta = store.db.cf_handle(schema::CF_META).unwrap();
        store
            .db
            .put_cf(meta, schema::META_SCHEMA_VERSION, 99u32.to_be_bytes())
            .unwrap();
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
    let meta = store.db.cf_handle(schema::CF_META).unwrap();
    store
        .db
        .delete_cf(meta, schema::META_STATS_VERSION)
        .unwrap();
    store
        .db
        .delete_cf(meta, schema::stats_key("sourceSystem", "ss"))
        .unwrap();
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
