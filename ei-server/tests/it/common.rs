//! Shared helpers: the test configuration for the in-process server
//! ([`ei_server::harness`]), request builders from the platform's sample bodies, and a
//! recording subscriber.
#![allow(dead_code)]

use ei_server::config::Config;
pub use ei_server::harness::Harness;
use ei_server::harness::{DataDir, Options, TestDatabase};
use std::cell::RefCell;
use std::path::PathBuf;

pub const SAMPLE_1: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/samples/Update_1_OK.xml"
));
pub const SAMPLE_1000: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/samples/Update_1000_OK.xml"
));
pub const SAMPLE_FIND: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/samples/FindContent_OK.xml"
));

/// The configuration the tests start from: the national HSA-id (so the samples
/// route), then `adjust`.
pub fn test_config(adjust: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config {
        hsa_id: "5565594230".into(),
        ..Config::default()
    };
    adjust(&mut config);
    config
}

/// The server in-process on a fresh temporary directory (and, inside
/// [`on_postgres`], on a fresh PostgreSQL database).
pub async fn start(adjust: impl FnOnce(&mut Config)) -> Harness {
    let mut config = test_config(adjust);
    postgres_if_asked(&mut config);
    Harness::start(config, Options::default()).await.unwrap()
}

thread_local! {
    /// Inside [`on_postgres`]: the test's label and the databases [`start`] created
    /// for it, dropped when the test has returned.
    static ON_POSTGRES: RefCell<Option<(String, Vec<TestDatabase>)>> = const { RefCell::new(None) };
}

/// Runs `test` (a `#[tokio::test]` function of this crate, which builds its runtime
/// on this thread) with every server it starts through [`start`] on a fresh database
/// of `EI_TEST_PG`'s server instead of RocksDB: the same test, the other backend.
/// Skips with a message when `EI_TEST_PG` is unset.
pub fn on_postgres(label: &str, test: fn()) {
    if std::env::var_os("EI_TEST_PG").is_none_or(|v| v.is_empty()) {
        eprintln!("skipped on PostgreSQL ({label}): EI_TEST_PG is not set");
        return;
    }
    ON_POSTGRES.with(|on| *on.borrow_mut() = Some((label.to_owned(), Vec::new())));
    test();
    // The servers have stopped; their databases go (also if the test panicked: then
    // with the thread's locals).
    let (_, databases) = ON_POSTGRES.with(|on| on.borrow_mut().take()).unwrap();
    assert!(
        !databases.is_empty(),
        "{label} started no server through common::start, so ran on nothing new"
    );
    drop(databases);
}

/// Inside [`on_postgres`]: points `config` at a fresh database.
fn postgres_if_asked(config: &mut Config) {
    ON_POSTGRES.with(|on| {
        if let Some((label, databases)) = on.borrow_mut().as_mut() {
            let db = TestDatabase::create(label).expect("on_postgres checked EI_TEST_PG");
            config.store = db.url().to_owned();
            databases.push(db);
        }
    });
}

/// The server in-process on `data_dir` (kept after the stop).
pub async fn start_in(data_dir: PathBuf, adjust: impl FnOnce(&mut Config)) -> Harness {
    let mut config = test_config(adjust);
    config.data_dir = data_dir;
    let options = Options {
        data_dir: DataDir::Config,
        ..Options::default()
    };
    Harness::start(config, options).await.unwrap()
}

pub const UPDATE: &str = "/skltp-ei/update-service/v1";
pub const NOTIFY: &str = "/skltp-ei/notification-service/v1";
pub const FIND: &str = "/skltp-ei/find-content-service/v1";

/// A sample body with its `${citizenIdN}` placeholders filled in.
pub fn fill(sample: &str, prefix: &str) -> String {
    (1..=4).fold(sample.to_owned(), |s, i| {
        s.replace(&format!("${{citizenId{i}}}"), &format!("{prefix}{i:04}"))
    })
}

pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: String,
    correlation: Option<&str>,
) -> Answer {
    let mut req = client
        .post(url)
        .header("content-type", "text/xml; charset=UTF-8")
        .body(body);
    if let Some(c) = correlation {
        req = req.header("x-skltp-correlation-id", c);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: resp.text().await.unwrap(),
    }
}

/// An Update envelope for hand-made transactions (each `(resident, category, mrc)`).
pub fn update_body(
    logical_address: &str,
    posts: &[(&str, &str, Option<&str>)],
    delete: bool,
) -> String {
    let mut txs = String::new();
    for (resident, cat, mrc) in posts {
        let mrc = mrc
            .map(|m| format!("<c:mostRecentContent>{m}</c:mostRecentContent>"))
            .unwrap_or_default();
        txs.push_str(&format!(
            "<u:engagementTransaction><c:deleteFlag>{delete}</c:deleteFlag><c:engagement>\
             <c:registeredResidentIdentification>{resident}</c:registeredResidentIdentification>\
             <c:serviceDomain>riv:clinicalprocess:healthcond:description</c:serviceDomain>\
             <c:categorization>{cat}</c:categorization><c:logicalAddress>SE2321000016-15CQ</c:logicalAddress>\
             <c:businessObjectInstanceIdentifier>NA</c:businessObjectInstanceIdentifier>\
             <c:clinicalProcessInterestId>NA</c:clinicalProcessInterestId>{mrc}\
             <c:sourceSystem>SE2321000016-15CQ</c:sourceSystem><c:dataController>SE2321000016-A12B</c:dataController>\
             </c:engagement></u:engagementTransaction>"
        ));
    }
    format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:a=\"urn:riv:itintegration:registry:1\" \
         xmlns:u=\"urn:riv:itintegration:engagementindex:UpdateResponder:1\" xmlns:c=\"urn:riv:itintegration:engagementindex:1\">\
         <s:Header><a:LogicalAddress>{logical_address}</a:LogicalAddress></s:Header><s:Body><u:Update>{txs}</u:Update></s:Body></s:Envelope>"
    )
}

/// A FindContent envelope.
pub fn find_body(resident: &str, domain: &str, extra: &str) -> String {
    format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:f=\"urn:riv:itintegration:engagementindex:FindContentResponder:1\">\
         <s:Body><f:FindContent><f:registeredResidentIdentification>{resident}</f:registeredResidentIdentification>\
         <f:serviceDomain>{domain}</f:serviceDomain>{extra}</f:FindContent></s:Body></s:Envelope>"
    )
}

/// The engagements of a FindContent reply.
pub fn engagements(body: &str) -> Vec<ei_server::model::RawEngagement> {
    match ei_server::codec::parse_reply(body.as_bytes()).unwrap() {
        ei_server::codec::Reply::Engagements(e) => e,
        other => panic!("not a FindContent reply: {other:?}"),
    }
}

/// The fault string of a fault reply.
pub fn fault(a: &Answer) -> (String, String) {
    assert_eq!(a.status, 500, "faults are HTTP 500: {}", a.body);
    match ei_server::codec::parse_reply(a.body.as_bytes()).unwrap() {
        ei_server::codec::Reply::Fault { code, message } => (code, message),
        other => panic!("not a fault: {other:?}"),
    }
}

/// What a test subscriber answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ok,
    /// HTTP 500 with a SOAP fault.
    Fault,
    /// HTTP 200 with ResultCode=ERROR.
    ResultError,
    /// ResultCode=ERROR ("bad post") for a call holding any post whose categorization
    /// starts with "bad"; OK otherwise.
    RefuseBad,
}

/// A ProcessNotification subscriber on loopback that records what it receives.
#[derive(Clone)]
pub struct Recorder {
    pub url: String,
    pub calls: std::sync::Arc<std::sync::Mutex<Vec<RecordedCall>>>,
    pub mode: std::sync::Arc<std::sync::Mutex<Mode>>,
}

#[derive(Clone, Debug)]
pub struct RecordedCall {
    pub logical_address: Option<String>,
    pub headers: Vec<(String, String)>,
    pub transactions: Vec<ei_server::model::RawTransaction>,
    pub mode: Mode,
}

impl Recorder {
    pub async fn start(mode: Mode) -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Recorder::serve(listener, mode)
    }

    pub fn serve(listener: tokio::net::TcpListener, mode: Mode) -> Recorder {
        let url = format!("http://{}/pn", listener.local_addr().unwrap());
        let r = Recorder {
            url,
            calls: Default::default(),
            mode: std::sync::Arc::new(std::sync::Mutex::new(mode)),
        };
        let me = r.clone();
        let app = axum::Router::new().route(
            "/pn",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let me = me.clone();
                    async move { me.handle(headers, body) }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    fn handle(
        &self,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, String) {
        use ei_server::codec::{self, Request, ResultCode, WriteOperation};
        let mode = *self.mode.lock().unwrap();
        let Ok(Request::Write {
            logical_address,
            transactions,
            ..
        }) = codec::parse_request(&body)
        else {
            return (axum::http::StatusCode::BAD_REQUEST, "unreadable".into());
        };
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let refused_bad = mode == Mode::RefuseBad
            && transactions.iter().any(|t| {
                t.engagement
                    .get(ei_server::model::Field::Categorization)
                    .is_some_and(|c| c.starts_with("bad"))
            });
        let mode = match (mode, refused_bad) {
            (Mode::RefuseBad, true) => Mode::ResultError,
            (Mode::RefuseBad, false) => Mode::Ok,
            (m, _) => m,
        };
        self.calls.lock().unwrap().push(RecordedCall {
            logical_address,
            headers,
            transactions,
            mode,
        });
        let mut out = String::new();
        match mode {
            Mode::Ok => codec::write_result(
                &mut out,
                WriteOperation::ProcessNotification,
                ResultCode::Ok,
                None,
            ),
            Mode::ResultError => codec::write_result(
                &mut out,
                WriteOperation::ProcessNotification,
                ResultCode::Error,
                Some(if refused_bad { "bad post" } else { "no thanks" }),
            ),
            Mode::RefuseBad => unreachable!("resolved above"),
            Mode::Fault => {
                codec::write_fault(&mut out, "soap:Server", "subscriber down");
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, out);
            }
        }
        (axum::http::StatusCode::OK, out)
    }

    pub fn set_mode(&self, m: Mode) {
        *self.mode.lock().unwrap() = m;
    }

    /// Every transaction received in calls answered OK, in arrival order.
    pub fn delivered(&self) -> Vec<ei_server::model::RawTransaction> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.mode == Mode::Ok)
            .flat_map(|c| c.transactions.clone())
            .collect()
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// Waits (up to 20 s) until `cond` holds.
    pub async fn wait_until(&self, what: &str, cond: impl Fn(&Recorder) -> bool) {
        for _ in 0..400 {
            if cond(self) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "timed out waiting for {what}; calls: {:?}",
            self.calls.lock().unwrap().len()
        );
    }
}

/// GET a text body.
pub async fn get_text(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// GET a JSON body.
pub async fn get_json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// Sends SIGHUP to this test process, where the in-process server reloads on it.
pub fn sighup_self() {
    let pid = std::process::id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
}

/// An Update of hand-made posts to the server (LogicalAddress 5565594230); asserts it
/// was answered OK.
pub async fn update(
    c: &reqwest::Client,
    s: &Harness,
    posts: &[(&str, &str, Option<&str>)],
    delete: bool,
) {
    let a = post(
        c,
        &s.url(UPDATE),
        update_body("5565594230", posts, delete),
        Some("n"),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
}
