//! The built binary as a process: acknowledged writes survive `kill -9`; SIGTERM
//! drains the requests in flight and exits 0; `--help` explains every flag.

use clap::CommandFactory;
use ei_e2e::{find_body, server_binary, update_body, ServerProcess};
use ei_server::codec::{parse_reply, Reply};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

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

/// Guards the drain: requests the server is reading when SIGTERM arrives are answered
/// OK and are durable. Each request announces `Expect: 100-continue` and sends its
/// body only after the server's `100 Continue`, which hyper sends once the handler
/// reads the body: so the requests are in the handler, in flight, when the signal
/// comes, and their bodies follow only after the server has logged that it drains.
#[test]
fn sigterm_drains_requests_in_flight_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let residents: Vec<String> = (0..4).map(|i| format!("1912121299{i:02}")).collect();
    let bodies: Vec<String> = residents
        .iter()
        .map(|r| update_body(r, 50, "20240101120000"))
        .collect();
    let mut in_flight = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let mut conn = TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            conn,
            "POST /skltp-ei/update-service/v1 HTTP/1.1\r\nhost: {addr}\r\n\
             x-skltp-correlation-id: drain-{i}\r\ncontent-type: text/xml; charset=UTF-8\r\n\
             content-length: {}\r\nexpect: 100-continue\r\n\r\n",
            body.len()
        )
        .unwrap();
        let head = read_head(&mut conn);
        assert!(head.starts_with("HTTP/1.1 100"), "{head}");
        in_flight.push(conn);
    }
    server.sigterm();
    let mut log = server.wait_for_log("draining in-flight requests");
    for (conn, body) in in_flight.iter_mut().zip(&bodies) {
        conn.write_all(body.as_bytes()).unwrap();
        let head = read_head(conn);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let reply = read_body(conn, &head);
        assert!(reply.contains(">OK</"), "{reply}");
    }
    assert_eq!(server.wait(), Some(0));
    log.extend(server.drain_log());
    let log = log.join("\n");
    for i in 0..bodies.len() {
        assert!(log.contains(&format!("correlation_id=drain-{i}")), "{log}");
    }
    assert!(log.contains("store closed"), "{log}");

    let server = ServerProcess::start(dir.path(), &[]);
    let addr = server.base.trim_start_matches("http://");
    for r in &residents {
        let mut conn = TcpStream::connect(addr).unwrap();
        let body = find_body(r);
        write!(
            conn,
            "POST /skltp-ei/find-content-service/v1 HTTP/1.1\r\nhost: {addr}\r\n\
             x-skltp-correlation-id: check\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let head = read_head(&mut conn);
        let reply = read_body(&mut conn, &head);
        assert_eq!(
            count(&reply),
            50,
            "resident {r}: a drained request was lost"
        );
    }
}

/// Reads an HTTP/1.1 response head (status line and headers).
fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = conn.read(&mut byte).unwrap();
        assert_eq!(
            n,
            1,
            "connection closed after {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads the body a response head announces with `content-length`.
fn read_body(conn: &mut TcpStream, head: &str) -> String {
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0; length];
    conn.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn help_explains_every_flag_and_bad_config_exits_1() {
    let out = std::process::Command::new(server_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // Every argument clap knows, not a hand list: a flag added later is covered too.
    let command = ei_server::config::Args::command();
    let mut flags = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        let flag = format!("--{long}");
        assert!(
            arg.get_help()
                .is_some_and(|h| !h.to_string().trim().is_empty()),
            "{flag} has no help text"
        );
        assert!(help.contains(&flag), "--help lacks {flag}:\n{help}");
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy();
            assert!(help.contains(&*env), "--help lacks {env} ({flag}):\n{help}");
        }
        flags.push(flag);
    }
    for expected in ["--data-dir", "--admin-listen", "--admin-token"] {
        assert!(
            flags.iter().any(|f| f == expected),
            "{expected} not in {flags:?}"
        );
    }
    assert!(help.contains("Exit codes"), "{help}");
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
