//! PostgreSQL-only tests (the shared contract suite is `store/tests.rs`): URL
//! handling, the outbox's commit order with two servers on one database, the schema
//! version check, RocksDB-only operations refusing, and a lost connection.

use super::*;
use crate::metrics::Metrics;
use crate::operation::WriteOperation;
use crate::store::tests::{blocking, find, query, ts, tx, update, OWN};
use crate::store::{Store, StoreOptions};
use std::sync::Arc;

/// A fresh database and a data directory; `None` (skip) without `EI_TEST_PG`.
fn place(label: &str) -> Option<(crate::harness::TestDatabase, tempfile::TempDir)> {
    Some((
        crate::harness::TestDatabase::create(label)?,
        tempfile::tempdir().unwrap(),
    ))
}

fn open(url: &str, dir: &std::path::Path, outbox: bool) -> Store {
    let mut opts = StoreOptions::new(OWN);
    opts.outbox = outbox;
    Store::open_postgres(url, dir, opts, Arc::new(Metrics::default())).unwrap()
}

/// Runs `sql` on `url` on a thread of its own; the rows' first column as text.
fn sql(url: &str, sql: &str) -> Vec<String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let mut c = parse_url(&url).unwrap().connect(postgres::NoTls).unwrap();
        c.simple_query(&sql)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).unwrap_or("").to_owned()),
                _ => None,
            })
            .collect()
    })
    .join()
    .unwrap()
}

/// Polls `cond` (the database's own state) until it holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..6000 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("waited a minute for {what}");
}

/// Guards the outbox's commit order, the property the notifier's cursors rely on.
/// Server A takes outbox number 0 and holds its transaction open; server B's write
/// on the same database must wait for the counter row instead of taking number 1
/// and committing first (a plain sequence would let it, and a reader that had
/// passed 1 would never see 0). While A holds, a reader sees nothing; after A
/// commits, B gets 1; a reader moving a cursor as the notifier does sees 0 and then
/// 1, in the order they were committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_numbers_follow_commit_order_across_servers() {
    let Some((db, dir)) = place("commit_order") else {
        return;
    };
    let a = Arc::new(open(db.url(), dir.path(), true));
    let b = Arc::new(open(db.url(), dir.path(), true));
    let hold = a.faults().hold_writer_before_commit();
    let first = tokio::spawn({
        let a = a.clone();
        async move {
            let txs = update(vec![tx("a", "c", None, false)]);
            a.write(WriteOperation::Update, txs, ts("20261122100000"))
                .await
        }
    });
    assert!(blocking(
        || hold.wait_until_held(std::time::Duration::from_secs(60))
    ));
    let second = tokio::spawn({
        let b = b.clone();
        async move {
            let txs = update(vec![tx("b", "c", None, false)]);
            b.write(WriteOperation::Update, txs, ts("20261122100001"))
                .await
        }
    });
    let url = db.url().to_owned();
    blocking(|| {
        wait_until("server B's writer to wait for the counter row", || {
            sql(
                &url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query LIKE '%FROM ei_meta%FOR UPDATE%'",
            ) == ["1"]
        })
    });
    assert!(
        blocking(|| b.read_outbox(0, 10)).unwrap().is_empty(),
        "nothing is visible while A's transaction is open"
    );
    hold.release();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();

    let mut cursor = 0;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        for (seq, e) in blocking(|| b.read_outbox(cursor, 10)).unwrap() {
            assert_eq!(seq, cursor, "no gap, nothing skipped");
            cursor = seq + 1;
            seen.push(
                e.engagement
                    .key
                    .registered_resident_identification()
                    .to_owned(),
            );
        }
    }
    assert_eq!(seen, ["a", "b"], "numbers in commit order");
    assert_eq!(*b.outbox_commits().borrow(), 2);
    assert_eq!(b.engagement_count(), 2, "B's transaction read A's count");
    blocking(|| {
        wait_until("A's idle check to see B's post and statistics", || {
            a.engagement_count() == 2 && a.stats() == b.stats()
        })
    });
    let by_source: Vec<(String, u64)> = a
        .stats()
        .of(crate::store::stats::StatsField::SourceSystem)
        .map(|(v, n)| (v.to_owned(), n))
        .collect();
    assert_eq!(by_source, [("ss".to_owned(), 2)]);
    a.close();
    b.close();
}

/// A database a newer build has migrated is refused at open, naming both versions.
#[test]
fn refuses_a_newer_schema() {
    let Some((db, dir)) = place("newer_schema") else {
        return;
    };
    open(db.url(), dir.path(), false).close();
    let versions = sql(
        db.url(),
        "SELECT version FROM ei_schema_migrations ORDER BY 1",
    );
    assert_eq!(versions, ["1"], "the migration table records version 1");
    sql(
        db.url(),
        "INSERT INTO ei_schema_migrations (version, description) VALUES (99, 'future')",
    );
    let err = Store::open_postgres(
        db.url(),
        dir.path(),
        StoreOptions::new(OWN),
        Arc::new(Metrics::default()),
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, StoreError::PgSchemaVersion { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

/// Backup is RocksDB's; on PostgreSQL it refuses and says what to use instead.
#[test]
fn rocksdb_only_operations_refuse_clearly() {
    let Some((db, dir)) = place("rocksdb_only") else {
        return;
    };
    let store = open(db.url(), dir.path(), false);
    assert!(store.is_postgres());
    let err = store.backup(&dir.path().join("backup")).unwrap_err();
    assert!(err.to_string().contains("RocksDB store only"), "{err}");
    assert!(!dir.path().join("backup").exists(), "nothing was created");
    assert!(store.size_on_disk() > 0, "the tables' size");
    store.close();
}

/// When the server's connections are cut (a primary that went away), a write fails
/// with an error (answered EI000, never OK) or succeeds on a new connection; the
/// next writes succeed; exactly the acknowledged posts are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_fails_cleanly_and_the_store_reconnects() {
    let Some((db, dir)) = place("lost_connection") else {
        return;
    };
    let store = open(db.url(), dir.path(), false);
    let write = |r: &'static str| {
        let txs = update(vec![tx(r, "c", None, false)]);
        store.write(WriteOperation::Update, txs, ts("20261122100000"))
    };
    write("1").await.unwrap();
    let terminated = sql(
        db.url(),
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    assert_eq!(terminated, ["1"], "the writer's connection");
    let mut acknowledged = vec!["1"];
    match write("2").await {
        Ok(_) => acknowledged.push("2"),
        Err(e) => {
            assert!(matches!(*e, StoreError::Postgres(_)), "{e}");
            assert!(store.health().commit_failing());
        }
    }
    write("3").await.unwrap();
    acknowledged.push("3");
    assert!(!store.health().commit_failing(), "healthy again");
    assert_eq!(store.engagement_count(), acknowledged.len() as u64);
    for r in ["1", "2", "3"] {
        let stored = !find(&store, &query(r, None)).is_empty();
        assert_eq!(stored, acknowledged.contains(&r), "resident {r}");
    }
    store.close();
}

/// After a failover every idle pooled read connection still leads to the old server.
/// A read that finds its connection gone drops the idle ones and reads again on a new
/// connection: the reader gets its answer, not one fault per pooled connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_on_a_cut_pooled_connection_is_answered_from_a_new_one() {
    let Some((db, dir)) = place("cut_reads") else {
        return;
    };
    let store = open(db.url(), dir.path(), false);
    let txs = update(vec![tx("1", "c", None, false)]);
    store
        .write(WriteOperation::Update, txs, ts("20261122100000"))
        .await
        .unwrap();
    assert_eq!(find(&store, &query("1", None)).len(), 1);
    let terminated = sql(
        db.url(),
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    let terminated: u32 = terminated[0].parse().unwrap();
    assert!(
        terminated >= 2,
        "the writer's and the pooled reader's: {terminated}"
    );
    let found = blocking(|| store.find(&query("1", None)));
    assert_eq!(found.map(|p| p.len()).map_err(|e| e.to_string()), Ok(1));
    assert_eq!(find(&store, &query("2", None)).len(), 0);
    store.close();
}

mod url {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgresql://ei:secret@db1,db2/ei?target_session_attrs=read-write"),
            "postgresql://ei:***@db1,db2/ei?target_session_attrs=read-write"
        );
        assert_eq!(
            redact("host=/run/pg user=ei password=secret dbname=ei"),
            "host=/run/pg user=ei password=*** dbname=ei"
        );
        assert_eq!(redact("postgresql://ei@db/ei"), "postgresql://ei@db/ei");
    }

    #[test]
    fn urls_with_several_hosts_parse() {
        let c = parse_url("postgresql://ei@h1:5432,h2:5433/ei?target_session_attrs=read-write")
            .unwrap();
        assert_eq!(c.get_hosts().len(), 2);
        assert!(parse_url("postgresql://ei@h1/ei?sslmode=bogus").is_err());
        let socket = parse_url("postgresql://postgres@/postgres?host=/tmp/pg").unwrap();
        assert_eq!(socket.get_dbname(), Some("postgres"));
        assert_eq!(socket.get_hosts().len(), 1);
    }
}

/// The read pool plans a statement once, for any parameters; a lookup's plan is an
/// index range scan even when made on an empty table (it is kept as the table grows).
#[test]
fn pooled_reads_plan_an_index_scan_on_an_empty_table() {
    let Some((db, dir)) = place("reader_plans") else {
        return;
    };
    let store = open(db.url(), dir.path(), false);
    let pg = store.pg().expect("on PostgreSQL");
    let plan = pg
        .pool
        .read(|c| {
            c.client.batch_execute(
                "PREPARE lookup(text, bytea, bytea) AS SELECT key, times FROM ei_engagements \
                 WHERE resident = $1 AND key >= $2 AND key < $3 ORDER BY key",
            )?;
            let mode: String = c.client.query_one("SHOW plan_cache_mode", &[])?.get(0);
            let rows = c.client.query(
                "EXPLAIN EXECUTE lookup('191212121212', '\\x00', '\\xff')",
                &[],
            )?;
            c.client.batch_execute("DEALLOCATE lookup")?;
            let mut lines = vec![mode];
            lines.extend(rows.iter().map(|r| r.get::<_, String>(0)));
            Ok(lines)
        })
        .unwrap()
        .join("\n");
    assert!(plan.starts_with("force_generic_plan\n"), "{plan}");
    assert!(plan.contains("Index"), "{plan}");
    assert!(!plan.contains("Seq Scan"), "{plan}");
    store.close();
}
