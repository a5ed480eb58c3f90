//! The built binary under a `Type=notify` supervisor: a real unix datagram socket in
//! `NOTIFY_SOCKET` receives `READY=1` only once the server answers, `WATCHDOG=1`
//! pings when `WATCHDOG_USEC` asks for them, and `STOPPING=1` on SIGTERM.

use ei_e2e::ServerProcess;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The next datagram, as text (panics after a minute: the server never told).
fn next(sock: &UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

/// The next datagram that is not a watchdog ping.
fn next_state(sock: &UnixDatagram) -> String {
    loop {
        let m = next(sock);
        if m != "WATCHDOG=1" {
            return m;
        }
    }
}

#[tokio::test]
async fn ready_after_listening_watchdog_pings_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let data = dir.path().join("data");
    let mut server = ServerProcess::start_with_env(
        &data,
        &[],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            // 200 ms: a ping every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let ready = next_state(&sock);
    assert!(ready.starts_with("READY=1\n"), "{ready:?}");
    assert!(ready.contains("STATUS=serving on 127.0.0.1:"), "{ready:?}");
    // READY came after the bind: the server answers right away.
    let c = reqwest::Client::new();
    let r = c
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(next(&sock), "WATCHDOG=1", "pings while serving");

    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let stopping = next_state(&sock);
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping:?}");
    assert_eq!(server.child.wait().unwrap().code(), Some(0));
}
