//! Telling systemd (a `Type=notify` unit) where the server is in its life:
//! `READY=1` once the store is open and every listener is bound, `STOPPING=1` when
//! the drain starts, `STATUS=` lines for `systemctl status`, and `WATCHDOG=1` pings
//! when the unit sets `WatchdogSec=`. Each message is one datagram to the socket
//! `NOTIFY_SOCKET` names (a path, or `@name` in the abstract namespace). Without
//! that variable every call does nothing, so tests and other supervisors are
//! unaffected.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` (newline-separated `KEY=value` assignments) to the supervisor.
/// `Ok(false)` when no supervisor listens (`NOTIFY_SOCKET` unset).
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = std::path::PathBuf::from(socket);
    let sock = UnixDatagram::unbound()?;
    let name = socket.as_os_str().as_encoded_bytes();
    if let Some(abstract_name) = name.strip_prefix(b"@") {
        send_abstract(&sock, abstract_name, state)?;
    } else {
        sock.send_to(state.as_bytes(), &socket)?;
    }
    Ok(true)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(sock: &UnixDatagram, name: &[u8], state: &str) -> std::io::Result<()> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(state.as_bytes(), &addr).map(|_| ())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &str) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract NOTIFY_SOCKET names exist only on Linux",
    ))
}

/// [`notify`], logging a failure instead of returning it: a supervisor that cannot
/// be told is the supervisor's problem (systemd then times the start out), not a
/// reason to stop serving.
pub fn tell(state: &str) {
    match notify(state) {
        Ok(true) => tracing::debug!(state, "told the supervisor"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, state, "cannot notify the supervisor (NOTIFY_SOCKET)"),
    }
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, when it is set for this
/// process (`WATCHDOG_PID` absent or ours).
pub fn watchdog_interval() -> Option<Duration> {
    interval_for(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn interval_for(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok()?;
    if pid.is_some_and(|p| p.parse::<u32>().ok() != Some(me)) {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog forever at [`watchdog_interval`] (returns at once without
/// one). Runs on the runtime, so a stalled runtime stops the pings and systemd
/// restarts the service.
pub async fn watchdog() {
    let Some(every) = watchdog_interval() else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        tell("WATCHDOG=1");
    }
}

#[cfg(test)]
mod tests {
    // `notify` itself reads the process environment, which unit tests share; it is
    // tested against the built binary with a real socket (tests/tests/supervision.rs).
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout_and_only_for_this_process() {
        let half = Some(Duration::from_secs(15));
        assert_eq!(interval_for(Some("30000000"), None, 7), half);
        assert_eq!(interval_for(Some("30000000"), Some("7"), 7), half);
        assert_eq!(
            interval_for(Some("30000000"), Some("8"), 7),
            None,
            "another pid's"
        );
        assert_eq!(interval_for(Some("0"), None, 7), None, "disabled");
        assert_eq!(interval_for(Some("soon"), None, 7), None);
        assert_eq!(interval_for(None, None, 7), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_names_are_sent_to_the_abstract_namespace() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ei-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&addr).unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        send_abstract(&sender, name.as_bytes(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
