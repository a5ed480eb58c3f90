//! Property test: random Update / ProcessNotification / FindContent sequences run
//! through the real rules, apply logic and store, and through a simple in-memory
//! model written from the contract text; both must give the same results. Run on
//! both backends: RocksDB in a temp dir, and PostgreSQL (a fresh database per case
//! on `EI_TEST_PG`'s server; skipped with a message when it is unset).

use ei_server::harness::TestDatabase;
use ei_server::metrics::Metrics;
use ei_server::model::{Engagement, Field, FindQuery, RawEngagement, RawTransaction, Timestamp};
use ei_server::operation::WriteOperation;
use ei_server::rules::{validate_notification, validate_update, RulesConfig};
use ei_server::store::{Store, StoreOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

const OWN: &str = "ei-hsa-id";

/// A post in the model: key parts in key order → (mrc, creation, update).
type Key = [String; 9];
type Post = (Option<u64>, Option<u64>, Option<u64>);

#[derive(Default)]
struct Model {
    posts: BTreeMap<Key, Post>,
}

#[derive(Clone, Debug)]
struct Tx {
    delete: bool,
    resident: u8,
    domain: u8,
    category: u8,
    source: u8,
    /// 0 = this index; only used by ProcessNotification.
    owner: u8,
    mrc: Option<u64>,
    creation: Option<u64>,
    update: Option<u64>,
}

#[derive(Clone, Debug)]
enum Op {
    Update(Vec<Tx>),
    Notify(Vec<Tx>),
    Find {
        resident: u8,
        domain: u8,
        category: Option<u8>,
        source: Option<u8>,
        mrc: Option<u64>,
    },
}

fn owner_name(o: u8) -> String {
    if o == 0 {
        OWN.to_owned()
    } else {
        format!("other-{o}")
    }
}

fn key(t: &Tx, owner: &str) -> Key {
    [
        format!("19121212000{}", t.resident),
        format!("riv:domain:{}", t.domain),
        format!("cat-{}", t.category),
        "la".into(),
        "NA".into(),
        "NA".into(),
        format!("src-{}", t.source),
        "dc".into(),
        owner.into(),
    ]
}

fn ts_text(n: u64) -> String {
    format!("{n:014}")
}

fn raw(t: &Tx, with_owner: bool) -> RawTransaction {
    let k = key(t, &owner_name(t.owner));
    let mut e = RawEngagement::default();
    for (f, v) in Field::KEY.iter().zip(k.iter()) {
        if *f != Field::Owner || with_owner {
            e.set(*f, v.clone());
        }
    }
    for (f, v) in [
        (Field::MostRecentContent, t.mrc),
        (Field::CreationTime, t.creation),
        (Field::UpdateTime, t.update),
    ] {
        if let Some(v) = v {
            e.set(f, ts_text(v));
        }
    }
    RawTransaction {
        delete_flag: Some(t.delete.to_string()),
        engagement: e,
    }
}

impl Model {
    /// Contract §2: owner stamped; insert sets creationTime; a change of
    /// mostRecentContent sets updateTime; identical posts change nothing.
    fn update(&mut self, txs: &[Tx], now: u64) -> usize {
        let mut changes = 0;
        for t in txs {
            let k = key(t, OWN);
            if t.delete {
                changes += usize::from(self.posts.remove(&k).is_some());
                continue;
            }
            match self.posts.get_mut(&k) {
                None => {
                    self.posts.insert(k, (t.mrc, Some(now), None));
                    changes += 1;
                }
                Some(p) if p.0 != t.mrc => {
                    *p = (t.mrc, p.1, Some(now));
                    changes += 1;
                }
                Some(_) => {}
            }
        }
        changes
    }

    /// Contract §4: own posts dropped; times as given, else Update's rules; a post of
    /// this index with the same key is replaced by the incoming one.
    fn notify(&mut self, txs: &[Tx], now: u64) {
        for t in txs.iter().filter(|t| t.owner != 0) {
            let k = key(t, &owner_name(t.owner));
            if t.delete {
                self.posts.remove(&k);
                continue;
            }
            let own = key(t, OWN);
            let base = match self.posts.get(&k) {
                Some(p) => Some(*p),
                None => self.posts.remove(&own),
            };
            let creation = t.creation.or(base.and_then(|b| b.1)).or(Some(now));
            let update = match (t.update, base) {
                (Some(u), _) => Some(u),
                (None, None) => None,
                (None, Some(b)) if b.0 != t.mrc || b.1 != creation => Some(now),
                (None, Some(b)) => b.2,
            };
            self.posts.insert(k, (t.mrc, creation, update));
        }
    }

    fn find(
        &self,
        resident: u8,
        domain: u8,
        category: Option<u8>,
        source: Option<u8>,
        mrc: Option<u64>,
    ) -> Vec<(Key, Post)> {
        self.posts
            .iter()
            .filter(|(k, p)| {
                k[0] == format!("19121212000{resident}")
                    && k[1] == format!("riv:domain:{domain}")
                    && category.is_none_or(|c| k[2] == format!("cat-{c}"))
                    && source.is_none_or(|s| k[6] == format!("src-{s}"))
                    && mrc.is_none_or(|m| p.0.is_some_and(|v| v >= m))
            })
            .map(|(k, p)| (k.clone(), *p))
            .collect()
    }
}

fn timestamp() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(20200101000000u64),
        Just(20210615123000),
        Just(20221231235959)
    ]
}

fn tx() -> impl Strategy<Value = Tx> {
    (
        (any::<bool>(), 0u8..2, 0u8..2, 0u8..3, 0u8..2, 0u8..3),
        (
            proptest::option::of(timestamp()),
            proptest::option::of(timestamp()),
            proptest::option::of(timestamp()),
        ),
    )
        .prop_map(
            |((delete, resident, domain, category, source, owner), (mrc, creation, update))| Tx {
                delete: delete && resident == 0,
                resident,
                domain,
                category,
                source,
                owner,
                mrc,
                creation,
                update,
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => proptest::collection::vec(tx(), 1..6).prop_map(Op::Update),
        2 => proptest::collection::vec(tx(), 1..6).prop_map(Op::Notify),
        3 => (0u8..2, 0u8..2, proptest::option::of(0u8..3), proptest::option::of(0u8..2), proptest::option::of(timestamp()))
            .prop_map(|(resident, domain, category, source, mrc)| Op::Find { resident, domain, category, source, mrc }),
    ]
}

fn as_model(e: &Engagement) -> (Key, Post) {
    let k: Key = e.key.parts().clone();
    let t = |t: Option<Timestamp>| t.map(Timestamp::as_u64);
    (
        k,
        (
            t(e.most_recent_content),
            t(e.creation_time),
            t(e.update_time),
        ),
    )
}

/// Distinct keys within one request (duplicates are EI002; tested separately).
fn has_duplicate_keys(txs: &[Tx], update: bool) -> bool {
    let mut seen = std::collections::HashSet::new();
    txs.iter().any(|t| {
        let owner = if update {
            OWN.to_owned()
        } else {
            owner_name(t.owner)
        };
        !seen.insert(key(t, &owner))
    })
}

/// Which backend a case runs on.
#[derive(Clone, Copy)]
enum Backend {
    RocksDb,
    Postgres,
}

/// A store for one case, with what must live as long as it.
fn open(backend: Backend) -> (Store, tempfile::TempDir, Option<TestDatabase>) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    match backend {
        Backend::RocksDb => {
            let store = Store::open(dir.path(), StoreOptions::new(OWN), metrics).unwrap();
            (store, dir, None)
        }
        Backend::Postgres => {
            let db = TestDatabase::create("model").expect("checked by the caller");
            let store = Store::open_postgres(db.url(), dir.path(), StoreOptions::new(OWN), metrics)
                .unwrap();
            (store, dir, Some(db))
        }
    }
}

fn run(ops: Vec<Op>, backend: Backend) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (store, _dir, _db) = open(backend);
    let cfg = RulesConfig::new(OWN, "platform");
    let mut model = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        let now = 20261122100000 + step as u64;
        let now_ts = Timestamp::from_u64(now).unwrap();
        match op {
            Op::Update(txs) => {
                let raws = txs.iter().map(|t| raw(t, false)).collect();
                let result = validate_update(&cfg, Some(OWN), raws);
                if has_duplicate_keys(&txs, true) {
                    prop_assert_eq!(result.unwrap_err().wire().code, Some("EI002"));
                    continue;
                }
                let valid = result.unwrap();
                let changes = rt
                    .block_on(store.write(WriteOperation::Update, valid, now_ts))
                    .unwrap();
                prop_assert_eq!(changes.len(), model.update(&txs, now));
            }
            Op::Notify(txs) => {
                let raws = txs.iter().map(|t| raw(t, true)).collect();
                let result = validate_notification(&cfg, raws);
                if has_duplicate_keys(&txs, false) {
                    prop_assert_eq!(result.unwrap_err().wire().code, Some("EI002"));
                    continue;
                }
                let valid = result.unwrap();
                if !valid.is_empty() {
                    rt.block_on(store.write(WriteOperation::ProcessNotification, valid, now_ts))
                        .unwrap();
                }
                model.notify(&txs, now);
            }
            Op::Find {
                resident,
                domain,
                category,
                source,
                mrc,
            } => {
                let q = FindQuery {
                    registered_resident_identification: format!("19121212000{resident}"),
                    service_domain: format!("riv:domain:{domain}"),
                    categorization: category.map(|c| format!("cat-{c}")),
                    filters: source
                        .map(|s| (Field::SourceSystem, format!("src-{s}")))
                        .into_iter()
                        .collect(),
                    most_recent_content: mrc.map(|m| Timestamp::from_u64(m).unwrap()),
                };
                let got: Vec<_> = store.find(&q).unwrap().iter().map(as_model).collect();
                prop_assert_eq!(got, model.find(resident, domain, category, source, mrc));
            }
        }
        prop_assert_eq!(store.engagement_count(), model.posts.len() as u64);
    }
    store.close();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn store_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops, Backend::RocksDb)?;
    }

    #[test]
    fn postgres_store_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        if cfg!(feature = "postgres") && std::env::var_os("EI_TEST_PG").is_some_and(|v| !v.is_empty()) {
            run(ops, Backend::Postgres)?;
        } else {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| eprintln!("skipped on PostgreSQL (model): EI_TEST_PG is not set or no `postgres` feature"));
        }
    }
}
