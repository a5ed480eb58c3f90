//! The built binary as a process: acknowledged writes survive `kill -9`; SIGTERM
//! drains and exits 0; `--help` explains the flags.

use ei_e2e::{find_body, server_binary, update_body, ServerProcess};
use ei_server::codec::{parse_reply, Reply};

async fn post(c: &reqwest::Client, url: String, body: String, corr: &str) -> (u16, String) {
    let r = c
        .post(url)
        .header("x-skltp-correlation-id", corr)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn count(body: &str) -> usize {
    match parse_reply(body.as_bytes()).unwrap() {
        Reply::Engagements(e) => e.len(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]);
    let c = reqwest::Client::new();
    let residents: Vec<String> = (0..40).map(|i| format!("1912121200{i:02}")).collect();
    // Concurrent writers so acknowledgements come from group commits.
    let mut tasks = Vec::new();
    for r in residents.clone() {
        let (c, url) = (
            c.clone(),
            format!("{}/skltp-ei/update-service/v1", server.base),
        );
        tasks.push(tokio::spawn(async move {
            post(
                &c,
                url,
                update_body(&r, 25, "20240101120000"),
                &format!("dur-{r}"),
            )
            .await
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    server.kill9();

    let server = ServerProcess::start(dir.path(), &[]);
    for r in &residents {
        let (status, body) = post(
            &c,
            format!("{}/skltp-ei/find-content-service/v1", server.base),
            find_body(r),
            "check",
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(count(&body), 25, "resident {r} lost posts after kill -9");
    }
    let status: serde_json::Value = c
        .get(format!("{}/status", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["engagements"], 1000);
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly_with_correlation_ids_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]);
    let c = reqwest::Client::new();
    let (status, _) = post(
        &c,
        format!("{}/skltp-ei/update-service/v1", server.base),
        update_body("191212121212", 3, "20240101120000"),
        "corr-xyz-42",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(server.terminate(), Some(0));
    let log = server.drain_log().join("\n");
    assert!(log.contains("correlation_id=corr-xyz-42"), "{log}");
    assert!(log.contains("store closed"), "{log}");

    let server = ServerProcess::start(dir.path(), &[]);
    let (_, body) = post(
        &c,
        format!("{}/skltp-ei/find-content-service/v1", server.base),
        find_body("191212121212"),
        "c",
    )
    .await;
    assert_eq!(count(&body), 3);
}

#[test]
fn help_explains_every_flag_and_bad_config_exits_1() {
    let out = std::process::Command::new(server_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config",
        "--listen",
        "--data-dir",
        "--hsa-id",
        "--alternative-hsa-id",
        "--platform-hsa-id",
        "--reserved-hsa-ids",
        "--check-logical-address",
        "--error-mode",
        "--max-body-bytes",
        "--log-format",
        "--wal-sync",
        "--max-group-requests",
        "--block-cache-mb",
        "EI_DATA_DIR",
        "Exit codes",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "listen = 12\n").unwrap();
    let out = std::process::Command::new(server_binary())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.toml") && err.contains("listen"), "{err}");
}
