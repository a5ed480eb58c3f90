//! Reads first (`--write-nice`): in the server's own process, the threads that do
//! write work (the write runtime `ei-write`, the store's writer, the access log's
//! appender) run niced and the request path does not; writes and lookups still work.

use ei_e2e::{find_body, update_body, ServerProcess};

/// (thread name, nice) of every thread of process `pid`.
fn threads(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (open, close) = (stat.find('(').unwrap(), stat.rfind(')').unwrap());
        // After ") " comes field 3 (state); nice is field 19.
        let nice = stat[close + 2..].split_whitespace().nth(16).unwrap();
        out.push((stat[open + 1..close].to_owned(), nice.parse().unwrap()));
    }
    out
}

fn nice_of(all: &[(String, i32)], name: &str) -> Vec<i32> {
    all.iter()
        .filter(|(n, _)| n.starts_with(name))
        .map(|(_, v)| *v)
        .collect()
}

async fn write_and_find(server: &ServerProcess, resident: &str) {
    let c = reqwest::Client::new();
    let update = c
        .post(format!("{}/skltp-ei/update-service/v1", server.base))
        .header("x-skltp-correlation-id", "rf-u")
        .body(update_body(resident, 3, "20240101120000"))
        .send()
        .await
        .unwrap();
    assert_eq!(update.status(), 200, "{}", update.text().await.unwrap());
    let find = c
        .post(format!("{}/skltp-ei/find-content-service/v1", server.base))
        .header("x-skltp-correlation-id", "rf-f")
        .body(find_body(resident))
        .send()
        .await
        .unwrap();
    assert_eq!(find.status(), 200);
    let text = find.text().await.unwrap();
    assert_eq!(text.matches("<ns2:engagement>").count(), 3, "{text}");
}

#[tokio::test]
async fn write_work_runs_niced_and_lookups_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--write-nice", "6"]);
    write_and_find(&server, "191212121212").await;
    let all = threads(server.child.id());
    let base = ei_server::priority::current_nice();
    let want = (base + 6).min(19);
    let writes = nice_of(&all, "ei-write");
    assert!(!writes.is_empty(), "no ei-write threads: {all:?}");
    assert!(writes.iter().all(|&n| n == want), "{all:?}");
    assert_eq!(nice_of(&all, "ei-store-writer"), vec![want], "{all:?}");
    assert_eq!(nice_of(&all, "ei-audit"), vec![want], "access log: {all:?}");
    let workers = nice_of(&all, "tokio-rt-worker");
    assert!(!workers.is_empty(), "{all:?}");
    assert!(workers.iter().all(|&n| n == base), "request path: {all:?}");
    // (RocksDB's compaction threads lower themselves to nice 19 when they next run
    // a compaction, which this small test never triggers.)
}

#[tokio::test]
async fn write_nice_zero_keeps_every_thread_at_the_servers_priority() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--write-nice", "0"]);
    write_and_find(&server, "191212121213").await;
    let all = threads(server.child.id());
    let base = ei_server::priority::current_nice();
    assert!(all.iter().all(|(_, n)| *n == base), "{all:?}");
}
