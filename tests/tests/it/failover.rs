//! PostgreSQL failover end to end: a primary with a synchronous standby, the built
//! ei-server on a multi-host URL (`target_session_attrs=read-write`), writers
//! running, `kill -9` of the primary's postmaster, the standby promoted: every
//! acknowledged post is on the new primary (so no OK was given for a post that is
//! missing), every refused write is the retryable EI000 server fault, and writes go
//! on after the failover. Prints what it saw: posts acknowledged, found after the
//! failover, and the failover time (kill → first OK of a request sent after it).

use ei_e2e::pg::{self, Cluster};
use ei_e2e::{find_body, update_body, ServerProcess};
use ei_server::codec::client::{classify_find_content, classify_write, Outcome};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 4;
const POSTS_PER_UPDATE: usize = 5;
const UPDATE: &str = "/skltp-ei/update-service/v1";
const FIND: &str = "/skltp-ei/find-content-service/v1";

/// A primary whose every commit waits until `standby1` has flushed it, and that
/// standby streaming from it.
fn primary_with_sync_standby() -> (Cluster, Cluster) {
    let primary = Cluster::init();
    primary.start(&[("synchronous_commit", "on")]);
    primary.psql("postgres", "create database ei");
    let standby = Cluster::standby_of(&primary, "standby1");
    standby.start(&[]);
    // Set after the base backup, so that the standby's copy of the configuration does
    // not wait for a standby of its own once promoted (as Patroni's synchronous mode
    // turns it off when no replica is left).
    primary.psql(
        "postgres",
        "alter system set synchronous_standby_names = 'standby1'",
    );
    primary.psql("postgres", "select pg_reload_conf()");
    pg::wait_until("standby1 to be the synchronous standby", || {
        primary.psql(
            "postgres",
            "select count(*) from pg_stat_replication \
             where application_name = 'standby1' and sync_state = 'sync' and state = 'streaming'",
        ) == "1"
    });
    (primary, standby)
}

/// A socket directory as a URL's host: `/` percent-encoded.
fn encode(dir: &std::path::Path) -> String {
    dir.to_str().unwrap().replace('/', "%2F")
}

/// What the writers saw.
#[derive(Default)]
struct Seen {
    /// Residents whose Update was answered OK, each with `POSTS_PER_UPDATE` posts.
    acked: Vec<String>,
    /// Residents whose Update was refused (the post may or may not be stored).
    refused: Vec<String>,
    /// Refusals that were not an EI000 `soap:Server` fault.
    wrong_refusals: Vec<String>,
    /// When each OK'd request was sent and answered.
    ok_times: Vec<(Instant, Instant)>,
}

/// One writer: Updates of new residents (writer `w`, sequence `i`), one at a time,
/// until `stop`; every answer recorded.
async fn writer(
    w: usize,
    base: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    oks: Arc<AtomicUsize>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut i = 0u32;
    while !stop.load(SeqCst) {
        let resident = format!("19{w:02}{i:08}");
        i += 1;
        let sent = Instant::now();
        let reply = client
            .post(format!("{base}{UPDATE}"))
            .header("x-skltp-correlation-id", format!("failover-{resident}"))
            .body(update_body(&resident, POSTS_PER_UPDATE, "20240101120000"))
            .send()
            .await;
        let outcome = match reply {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.bytes().await.unwrap_or_default();
                classify_write(status, &body)
            }
            Err(e) => Outcome::Unreadable {
                reason: format!("no reply from ei-server: {e}"),
            },
        };
        let refused = {
            let mut s = seen.lock().unwrap();
            match outcome {
                Outcome::Ok(_) => {
                    s.acked.push(resident);
                    s.ok_times.push((sent, Instant::now()));
                    oks.fetch_add(1, SeqCst);
                    false
                }
                other => {
                    if !(other.is_server_fault() && other.ei_code() == Some("EI000")) {
                        s.wrong_refusals.push(format!("{resident}: {other}"));
                    }
                    s.refused.push(resident);
                    true
                }
            }
        };
        if refused {
            // Like a loader's retry pause; keeps the outage from being a busy loop.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The posts FindContent returns for `resident`. The store reads again on a new
/// connection when a pooled one still leads to the killed primary, so an EI000 here is
/// not expected; one is still retried (a reader's retry) and counted in `read_faults`,
/// which the test prints.
async fn posts_of(
    client: &reqwest::Client,
    base: &str,
    resident: &str,
    read_faults: &mut usize,
) -> usize {
    loop {
        let r = client
            .post(format!("{base}{FIND}"))
            .header("x-skltp-correlation-id", format!("check-{resident}"))
            .body(find_body(resident))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        match classify_find_content(status, &r.bytes().await.unwrap()) {
            Outcome::Ok(posts) => return posts.len(),
            other if other.ei_code() == Some("EI000") && *read_faults < 100 => {
                *read_faults += 1;
            }
            other => panic!("FindContent {resident} after the failover: {other}"),
        }
    }
}

/// Waits (on the writers' own count, polling) until `n` more OKs than `from`.
async fn wait_for_oks(oks: &AtomicUsize, from: usize, n: usize, what: &str) {
    let end = Instant::now() + Duration::from_secs(180);
    while oks.load(SeqCst) < from + n {
        assert!(Instant::now() < end, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_posts_survive_primary_kill_9_and_promotion() {
    if !pg::enabled("acknowledged_posts_survive_primary_kill_9_and_promotion") {
        return;
    }
    let (primary, standby) = tokio::task::spawn_blocking(primary_with_sync_standby)
        .await
        .unwrap();
    // Socket directories go percent-encoded in the host list (`host=/a,/b` in the
    // query would be read as one path by the Rust client).
    let url = format!(
        "postgresql://postgres@{},{}/ei?target_session_attrs=read-write",
        encode(primary.socket_dir()),
        encode(standby.socket_dir())
    );
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--store", &url]);

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let oks = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                w,
                server.base.clone(),
                stop.clone(),
                seen.clone(),
                oks.clone(),
            ))
        })
        .collect();
    wait_for_oks(&oks, 0, 200, "200 OKs before the failover").await;

    let killed = Instant::now();
    let promoted_standby = tokio::task::spawn_blocking(move || {
        primary.kill9_postmaster();
        standby.promote();
        (primary, standby)
    });
    let (primary, standby) = promoted_standby.await.unwrap();
    let promoted = Instant::now();
    // Writes go on: 100 more OKs for requests after the promotion.
    let after_promotion = oks.load(SeqCst);
    wait_for_oks(&oks, after_promotion, 100, "100 OKs after the promotion").await;
    stop.store(true, SeqCst);
    for w in writers {
        w.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.wrong_refusals.is_empty(),
        "refusals other than the EI000 server fault: {:#?}",
        seen.wrong_refusals
    );
    let first_ok_after_kill = seen
        .ok_times
        .iter()
        .filter(|(sent, _)| *sent >= killed)
        .map(|(_, answered)| *answered)
        .min()
        .expect("an OK for a request sent after the kill");
    assert!(
        seen.ok_times.iter().any(|(sent, _)| *sent >= promoted),
        "no write sent after the promotion succeeded"
    );

    // Every acknowledged post is on the new primary, read back through ei-server.
    let client = reqwest::Client::new();
    let mut found = 0;
    let mut read_faults = 0;
    let mut missing = Vec::new();
    for resident in &seen.acked {
        let n = posts_of(&client, &server.base, resident, &mut read_faults).await;
        found += n;
        if n != POSTS_PER_UPDATE {
            missing.push(format!("{resident}: {n} of {POSTS_PER_UPDATE}"));
        }
    }
    let mut refused_but_stored = 0;
    for resident in &seen.refused {
        refused_but_stored += posts_of(&client, &server.base, resident, &mut read_faults).await;
    }
    let acked = seen.acked.len() * POSTS_PER_UPDATE;
    eprintln!(
        "failover: {acked} posts acknowledged ({} Updates by {WRITERS} writers), {found} found on the \
         promoted standby; {} Updates refused (EI000), of which {refused_but_stored} posts were stored \
         anyway; failover time (kill -9 → first OK of a request sent after it) {:.2} s, of which \
         kill + promotion {:.2} s; {read_faults} FindContent EI000 faults (retried) after the failover",
        seen.acked.len(),
        seen.refused.len(),
        (first_ok_after_kill - killed).as_secs_f64(),
        (promoted - killed).as_secs_f64(),
    );
    assert!(
        missing.is_empty(),
        "acknowledged but missing after the failover: {missing:#?}"
    );
    // The same through SQL on the new primary: its posts are exactly those of the
    // acknowledged Updates plus those of refused ones that committed anyway.
    assert_eq!(standby.psql("ei", "select pg_is_in_recovery()"), "f");
    let rows: usize = standby
        .psql("ei", "select count(*) from ei_engagements")
        .parse()
        .unwrap();
    assert_eq!(rows, found + refused_but_stored, "posts on the new primary");
    drop(primary);
}
