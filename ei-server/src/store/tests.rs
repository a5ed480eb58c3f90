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
