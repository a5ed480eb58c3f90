//! SIGTERM with a slow client connected: the binary still finishes its drain within
//! the configured deadline (dropping the slow connection) and exits 0.

use ei_e2e::ServerProcess;
use std::io::Write;
use std::time::Duration;

#[test]
fn sigterm_finishes_within_its_deadline_with_a_slow_client_connected() {
    let dir = tempfile::tempdir().unwrap();
    // Long header and body timeouts, so only the drain deadline can end the slow client.
    let mut server = ServerProcess::start(
        dir.path(),
        &[
            "--header-read-timeout-ms",
            "600000",
            "--body-read-timeout-ms",
            "600000",
            "--drain-timeout-ms",
            "500",
        ],
    );
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    let head = "POST /skltp-ei/update-service/v1 HTTP/1.1\r\nhost: x\r\nx-skltp-correlation-id: slow\r\ncontent-length: 100000\r\n\r\n<";
    slow.write_all(head.as_bytes()).unwrap();
    // Keep trickling on a thread while the server is told to stop.
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..12_000 {
            if writer.write_all(b" ").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(sent.unwrap().success());
    // Not a timing assertion: a server that ignored its deadline would wait for the
    // 10-minute header/body timeouts; two minutes tells the two apart on any machine.
    let mut code = None;
    for _ in 0..1200 {
        if let Some(status) = server.child.try_wait().unwrap() {
            code = Some(status.code());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        code,
        Some(Some(0)),
        "ei-server did not exit 0 after SIGTERM"
    );
    let log = server.stderr.iter().collect::<Vec<_>>().join("\n");
    assert!(
        log.contains("drain deadline passed") && log.contains("connections=1"),
        "{log}"
    );
    assert!(trickle.join().unwrap(), "the slow connection was closed");
}
