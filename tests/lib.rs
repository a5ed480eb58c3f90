//! Helpers for the end-to-end tests in `tests/`: find the built `ei-server` binary,
//! start it as a process on a free loopback port with a temp data dir, talk to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `ei-server` binary built beside this test (cargo builds it for
/// `cargo test --workspace`, since ei-server has integration tests).
pub fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join(format!("ei-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p ei-server` or `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A running `ei-server` process.
pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    pub stderr: mpsc::Receiver<String>,
}

impl ServerProcess {
    /// Starts the binary on `127.0.0.1:0` with `data_dir` and extra flags; waits for
    /// its "listening" log line to learn the port.
    pub fn start(data_dir: &Path, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_with_env(data_dir, extra, &[])
    }

    /// [`ServerProcess::start`] with extra environment variables.
    pub fn start_with_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let mut child = Command::new(server_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(["--hsa-id", "5565594230", "--log-format", "text"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ei-server");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let base = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("ei-server did not log its address");
            if let (true, Some(i)) = (line.contains("ei-server listening"), line.find(" addr=")) {
                let addr = line[i + 6..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .trim_end_matches(',');
                break format!("http://{addr}");
            }
        };
        ServerProcess {
            child,
            base,
            stderr: rx,
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.sigterm();
        self.child.wait().unwrap().code()
    }

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(status.success(), "kill -TERM {pid}: {status}");
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait(&mut self) -> Option<i32> {
        self.child.wait().unwrap().code()
    }

    /// The stderr lines up to and including the first that contains `needle`
    /// (waits up to 60 s for it).
    pub fn wait_for_log(&self, needle: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self
                .stderr
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("no log line with {needle:?} ({e}): {lines:#?}"));
            let found = line.contains(needle);
            lines.push(line);
            if found {
                return lines;
            }
        }
    }

    /// All stderr lines logged so far.
    pub fn drain_log(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An Update envelope with `n` posts for `resident`, categories `cat-0..n`.
pub fn update_body(resident: &str, n: usize, mrc: &str) -> String {
    let mut txs = String::new();
    for i in 0..n {
        txs.push_str(&format!(
            "<u:engagementTransaction><c:deleteFlag>false</c:deleteFlag><c:engagement>\
             <c:registeredResidentIdentification>{resident}</c:registeredResidentIdentification>\
             <c:serviceDomain>riv:clinicalprocess:activityprescription:actoutcome</c:serviceDomain>\
             <c:categorization>cat-{i}</c:categorization><c:logicalAddress>SE2321000016-15CQ</c:logicalAddress>\
             <c:businessObjectInstanceIdentifier>NA</c:businessObjectInstanceIdentifier>\
             <c:clinicalProcessInterestId>NA</c:clinicalProcessInterestId><c:mostRecentContent>{mrc}</c:mostRecentContent>\
             <c:sourceSystem>SE2321000016-15CQ</c:sourceSystem><c:dataController>SE2321000016-A12B</c:dataController>\
             </c:engagement></u:engagementTransaction>"
        ));
    }
    format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:a=\"urn:riv:itintegration:registry:1\" \
         xmlns:u=\"urn:riv:itintegration:engagementindex:UpdateResponder:1\" xmlns:c=\"urn:riv:itintegration:engagementindex:1\">\
         <s:Header><a:LogicalAddress>5565594230</a:LogicalAddress></s:Header><s:Body><u:Update>{txs}</u:Update></s:Body></s:Envelope>"
    )
}

/// A FindContent envelope for `resident` in the domain [`update_body`] uses.
pub fn find_body(resident: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:f=\"urn:riv:itintegration:engagementindex:FindContentResponder:1\">\
         <s:Body><f:FindContent><f:registeredResidentIdentification>{resident}</f:registeredResidentIdentification>\
         <f:serviceDomain>riv:clinicalprocess:activityprescription:actoutcome</f:serviceDomain></f:FindContent></s:Body></s:Envelope>"
    )
}

#[path = "pg.rs"]
pub mod pg;
