//! Shared helpers: short-run settings against the embedded server, and a stub server
//! on loopback that answers as a test needs.
#![allow(dead_code)]

use capacity::file;
use capacity::run::Settings;
use capacity::target::TargetSpec;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio::time::Instant;

/// Two source systems, all three contracts, one grundladdning; rates low enough for
/// a debug build on two cores and high enough that every row has calls in 1 s.
pub const PLAN: &str = r#"
[[flow]]
source_system = "Journal A"
hsa_id = "SE2321000016-15CQ"
contract = "Update"
normal_per_hour = 36000
max_per_hour = 72000
posts_per_call = 5

[[flow]]
source_system = "Journal A"
hsa_id = "SE2321000016-15CQ"
contract = "FindContent"
normal_per_hour = 14400
max_per_hour = 28800

[[flow]]
source_system = "Other index"
hsa_id = "SE-EI2"
contract = "ProcessNotification"
normal_per_hour = 7200
max_per_hour = 14400
posts_per_call = 2

[[grundladdning]]
source_system = "Journal A"
hsa_id = "SE2321000016-15CQ"
posts = 100000
concurrent_calls = 2
posts_per_call = 500
pause_ms = 300
"#;

/// Short-run settings for `plan` against the embedded server.
pub fn settings(plan: &str) -> Settings {
    Settings {
        plan: file::parse(plan).unwrap(),
        target: TargetSpec::Embedded,
        index_hsa_id: "5565594230".into(),
        phase: Duration::from_secs(1),
        grundladdning: Duration::from_secs(2),
        bound: Duration::from_secs(1),
        seed: None,
        residents: 1000,
        max_factor: 5.0,
        max_in_flight: 64,
        timeout: Duration::from_secs(10),
        drain: Duration::from_secs(5),
        settle: Duration::ZERO,
    }
}

/// How the [`Stub`] answers.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    /// Holds every request until `n` have arrived, then answers (all held and later
    /// ones at once) with an empty FindContent reply: no answer before the n-th call
    /// was sent, whatever the clock does.
    AfterArrivals(usize),
    /// HTTP 500 with a SOAP fault, at once.
    Fault,
}

/// An HTTP server on `127.0.0.1:0` that answers every POST as `answer` says, and
/// records when each request arrived.
pub struct Stub {
    pub base: String,
    pub arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Stub {
    pub async fn start(answer: Answer) -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (arrived, _) = watch::channel(0usize);
        let arrived = Arc::new(arrived);
        let recorded = arrivals.clone();
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(conn, answer, arrived.clone(), recorded.clone()));
            }
        });
        Stub { base, arrivals }
    }
}

async fn serve(
    conn: tokio::net::TcpStream,
    answer: Answer,
    arrived: Arc<watch::Sender<usize>>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
) {
    let (status, reply) = match answer {
        Answer::AfterArrivals(_) => {
            let mut out = String::new();
            ei_server::codec::write_find_content_response(&mut out, []);
            ("200 OK", out)
        }
        Answer::Fault => {
            let mut out = String::new();
            ei_server::codec::write_fault(&mut out, "soap:Server", "stub fault");
            ("500 Internal Server Error", out)
        }
    };
    let mut conn = BufReader::new(conn);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if conn.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        arrivals.lock().unwrap().push(Instant::now());
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await.unwrap();
        arrived.send_modify(|n| *n += 1);
        if let Answer::AfterArrivals(n) = answer {
            let mut seen = arrived.subscribe();
            let _ = seen.wait_for(|a| *a >= n).await;
        }
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/xml; charset=UTF-8\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        let out = conn.get_mut();
        if out.write_all(head.as_bytes()).await.is_err()
            || out.write_all(reply.as_bytes()).await.is_err()
        {
            return;
        }
    }
}
