//! The PostgreSQL schema, declared once, and its versioned migrations.
//!
//! # Tables
//! | table | primary key | what |
//! |---|---|---|
//! | `ei_engagements` | `(resident, key)` | one row per post: `resident` text, `key` bytea = [`encode_key_tail`] of the other eight key fields, `times` bytea = [`encode_value`] (the three timestamps, at most 19 bytes) |
//! | `ei_meta` | `id` (always 1) | the one counter row: `engagement_count` (exact number of posts), `next_seq` (the next outbox sequence number), `write_lock` + `write_lock_since` (Unix s) |
//! | `ei_stats` | `(field, value)` | posts per sourceSystem / dataController / serviceDomain value |
//! | `ei_outbox` | `seq` | one notifiable change, [`encode_outbox`] |
//! | `ei_cursors` | `subscriber` | a subscriber's next sequence number to deliver |
//! | `ei_subscribers` | `subscriber` | the notifier's record of a subscriber (JSON bytes, `notify::record`) |
//! | `ei_dead_letters` | `(subscriber, id)` | an undeliverable batch, [`encode_dead_letter`] |
//! | `ei_audit` | `(resident, time_ms, seq)` | one access record (JSON) |
//! | `ei_schema_migrations` | `version` | the migrations applied, with when |
//!
//! The byte encodings are RocksDB's ([`crate::store::schema`]), so both backends
//! share one codec: the key tail keeps byte order = field order, so FindContent is
//! `WHERE resident = $1 AND key >= $prefix AND key < $upper` on the primary key, and
//! a post costs one heap row plus one index entry.
//!
//! # Transactions
//! Every group commit is one transaction that starts by locking the `ei_meta` row
//! (`SELECT … FOR UPDATE`) and holds it until COMMIT. That makes the writers (of
//! this and of any other ei-server on the same database) take turns: each group's
//! read-modify-write of posts is race-free, `engagement_count` stays exact, and
//! outbox sequence numbers are handed out in commit order (the number a
//! transaction takes is only visible to the next one after it committed). A reader
//! that has read up to `seq` N therefore never later finds a committed entry below
//! N: the property the notifier's cursors rely on, which a plain `SEQUENCE` lacks.
//!
//! # Distribution (Citus, YugabyteDB; not tested here)
//! `ei_engagements` and `ei_audit` are distributed by `resident`: both primary keys
//! start with it and every hot-path statement (FindContent, the writer's reads,
//! upserts and deletes) names the resident. The small tables (`ei_meta`,
//! `ei_stats`, `ei_outbox`, `ei_cursors`, `ei_subscribers`, `ei_dead_letters`,
//! `ei_schema_migrations`) stay on the coordinator (Citus: reference or local
//! tables; YugabyteDB: ordinary tables). Nothing relies on LISTEN/NOTIFY and no
//! statement needs a PostgreSQL newer than 12. README "PostgreSQL" gives the
//! statements.
//!
//! [`encode_key_tail`]: crate::store::schema::encode_key_tail
//! [`encode_value`]: crate::store::schema::encode_value
//! [`encode_outbox`]: crate::store::schema::encode_outbox
//! [`encode_dead_letter`]: crate::store::schema::encode_dead_letter

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = 1;

/// The migrations in order: version, what it does, the statements. Applied at start
/// in one transaction each; never edited once released (add a new version).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "posts, counter row, statistics, outbox, cursors, subscribers, dead letters, audit",
    "
CREATE TABLE ei_engagements (
    resident text NOT NULL,
    key bytea NOT NULL,
    times bytea NOT NULL,
    PRIMARY KEY (resident, key)
);
CREATE TABLE ei_meta (
    id smallint PRIMARY KEY CHECK (id = 1),
    engagement_count bigint NOT NULL,
    next_seq bigint NOT NULL,
    write_lock boolean NOT NULL,
    write_lock_since bigint NOT NULL
);
INSERT INTO ei_meta VALUES (1, 0, 0, false, 0);
CREATE TABLE ei_stats (
    field text NOT NULL,
    value text NOT NULL,
    posts bigint NOT NULL,
    PRIMARY KEY (field, value)
);
CREATE TABLE ei_outbox (
    seq bigint PRIMARY KEY,
    entry bytea NOT NULL
);
CREATE TABLE ei_cursors (
    subscriber text PRIMARY KEY,
    next_seq bigint NOT NULL
);
CREATE TABLE ei_subscribers (
    subscriber text PRIMARY KEY,
    record bytea NOT NULL
);
CREATE TABLE ei_dead_letters (
    subscriber text NOT NULL,
    id bigint NOT NULL,
    letter bytea NOT NULL,
    PRIMARY KEY (subscriber, id)
);
CREATE TABLE ei_audit (
    resident text NOT NULL,
    time_ms bigint NOT NULL,
    seq bigserial,
    record text NOT NULL,
    PRIMARY KEY (resident, time_ms, seq)
);
CREATE INDEX ei_audit_by_time ON ei_audit (time_ms);
",
)];

/// The migration table (created before anything else).
pub const MIGRATION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS ei_schema_migrations (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Serialises concurrent starts of several servers on one database while they
/// migrate (a transaction-scoped advisory lock; its number is arbitrary).
pub const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(7365020241)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_up_to_the_version() {
        for (i, (v, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i32 + 1);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(SCHEMA_VERSION));
    }
}
