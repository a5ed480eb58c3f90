//! Notifications under chaos, against the built binary: a real subscriber server and a
//! registry stub misbehave the way they do in production while posts change:
//! 1. normal delivery;
//! 2. the registry answers an empty list for a while (suspect: not obeyed);
//! 3. the subscriber is down, and the index is killed with `kill -9` meanwhile;
//! 4. the registry is down at a start with no cache file (second `kill -9`);
//! 5. the subscriber answers ResultCode=ERROR for some transactions for a while.
//!
//! Then: every transaction the subscriber refused alone is a dead letter, and after a
//! replay of the dead letters the subscriber's state equals the index's for its filter,
//! key by key. The figures are printed (run with `--nocapture` to see them).

use ei_e2e::ServerProcess;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RESIDENT: &str = "191212121212";
const WANTED: &str = "riv:clinicalprocess:healthcond:description";
const OTHER: &str = "riv:clinicalprocess:activityprescription:actoutcome";
const KEYS: usize = 60;

/// Categorization → mostRecentContent: a subscriber's or the index's posts in `WANTED`.
type State = BTreeMap<String, String>;

/// The subscriber: applies each call answered OK, in order.
#[derive(Clone, Default)]
struct Subscriber {
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
    /// While set, a call holding a post whose categorization is in this set is answered
    /// ResultCode=ERROR.
    refuse: Arc<Mutex<BTreeSet<String>>>,
    /// Transactions refused alone, as (categorization, mostRecentContent or "delete").
    refused_alone: Arc<Mutex<BTreeSet<(String, String)>>>,
    calls: Arc<Mutex<u64>>,
    /// Transactions applied (in calls answered OK).
    applied: Arc<Mutex<u64>>,
}

impl Subscriber {
    fn answer(&self, body: &[u8]) -> (u16, String) {
        use ei_server::codec::{self, Request, ResultCode, WriteOperation};
        use ei_server::model::Field;
        if self.down.load(Relaxed) {
            return (503, "down".into());
        }
        *self.calls.lock().unwrap() += 1;
        let Ok(Request::Write { transactions, .. }) = codec::parse_request(body) else {
            return (400, "unreadable".into());
        };
        let txs: Vec<(String, String)> = transactions
            .iter()
            .map(|t| {
                let e = &t.engagement;
                assert_eq!(
                    e.get(Field::ServiceDomain),
                    Some(WANTED),
                    "the filter holds"
                );
                let value = match t.delete_flag.as_deref() {
                    Some("true") => "delete".to_owned(),
                    _ => e.get(Field::MostRecentContent).unwrap_or("").to_owned(),
                };
                (e.get(Field::Categorization).unwrap().to_owned(), value)
            })
            .collect();
        let refused = {
            let refuse = self.refuse.lock().unwrap();
            txs.iter().any(|(cat, _)| refuse.contains(cat))
        };
        let mut out = String::new();
        if refused {
            if txs.len() == 1 {
                self.refused_alone.lock().unwrap().insert(txs[0].clone());
            }
            codec::write_result(
                &mut out,
                WriteOperation::ProcessNotification,
                ResultCode::Error,
                Some("refused by the chaos subscriber"),
            );
            return (200, out);
        }
        let mut state = self.state.lock().unwrap();
        *self.applied.lock().unwrap() += txs.len() as u64;
        for (cat, value) in txs {
            match value.as_str() {
                "delete" => state.remove(&cat),
                _ => state.insert(cat, value),
            };
        }
        codec::write_result(
            &mut out,
            WriteOperation::ProcessNotification,
            ResultCode::Ok,
            None,
        );
        (200, out)
    }

    async fn serve(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/pn", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/pn",
            axum::routing::post(move |body: axum::body::Bytes| {
                let me = self.clone();
                async move {
                    let (status, text) = me.answer(&body);
                    (axum::http::StatusCode::from_u16(status).unwrap(), text)
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

/// The registry stub: `Some(list)` or down.
#[derive(Clone)]
struct Registry(Arc<Mutex<Option<Vec<&'static str>>>>);

impl Registry {
    async fn serve(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/reg", listener.local_addr().unwrap());
        let app = axum::Router::new().route(
            "/reg",
            axum::routing::post(move || {
                let me = self.clone();
                async move {
                    let Some(list) = me.0.lock().unwrap().clone() else {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new());
                    };
                    let records: String = list
                        .iter()
                        .map(|la| format!("<r:logicalAddressRecord><r:logicalAddress>{la}</r:logicalAddress><r:filter><r:serviceDomain>{WANTED}</r:serviceDomain></r:filter></r:logicalAddressRecord>"))
                        .collect();
                    (axum::http::StatusCode::OK, format!(
                        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
                         <r:GetLogicalAddresseesByServiceContractResponse xmlns:r=\"urn:riv:infrastructure:itintegration:registry:GetLogicalAddresseesByServiceContractResponder:2\">\
                         {records}</r:GetLogicalAddresseesByServiceContractResponse></s:Body></s:Envelope>"
                    ))
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn set(&self, answer: Option<Vec<&'static str>>) {
        *self.0.lock().unwrap() = answer;
    }
}

/// The chaos: posts changing in a deterministic pseudo-random way.
struct Changes {
    seed: u64,
    step: u64,
    touched: BTreeSet<String>,
}

impl Changes {
    fn next(&mut self) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.seed >> 33
    }

    /// One Update body of 1..=8 transactions on distinct keys, a fifth of them deletes,
    /// some in a domain the subscriber does not want.
    fn body(&mut self) -> String {
        let n = 1 + self.next() as usize % 8;
        let mut cats = BTreeSet::new();
        let mut txs = String::new();
        while cats.len() < n {
            let cat = format!("cat-{}", self.next() as usize % KEYS);
            if !cats.insert(cat.clone()) {
                continue;
            }
            self.step += 1;
            let delete = matches!(self.next() % 5, 0);
            let domain = if matches!(self.next() % 6, 0) {
                OTHER
            } else {
                WANTED
            };
            if domain == WANTED {
                self.touched.insert(cat.clone());
            }
            let s = self.step;
            let mrc = format!(
                "2024{:02}{:02}{:02}{:02}{:02}",
                1 + s / 28 % 12,
                1 + s % 28,
                s / 3600 % 24,
                s / 60 % 60,
                s % 60
            );
            txs.push_str(&format!(
                "<u:engagementTransaction><c:deleteFlag>{delete}</c:deleteFlag><c:engagement>\
                 <c:registeredResidentIdentification>{RESIDENT}</c:registeredResidentIdentification>\
                 <c:serviceDomain>{domain}</c:serviceDomain><c:categorization>{cat}</c:categorization>\
                 <c:logicalAddress>SE2321000016-15CQ</c:logicalAddress>\
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

    /// Sends `requests` Updates, each answered OK.
    async fn send(&mut self, c: &reqwest::Client, server: &ServerProcess, requests: usize) {
        for _ in 0..requests {
            let r = c
                .post(format!("{}/skltp-ei/update-service/v1", server.base))
                .header("x-skltp-correlation-id", "chaos")
                .body(self.body())
                .send()
                .await
                .unwrap();
            let status = r.status();
            assert_eq!(status, 200, "{}", r.text().await.unwrap());
        }
    }
}

async fn json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

async fn admin(c: &reqwest::Client, server: &ServerProcess) -> String {
    let status = json(c, &format!("{}/status", server.base)).await;
    format!("http://{}", status["admin_listen"].as_str().unwrap())
}

async fn subscriber_status(c: &reqwest::Client, admin: &str) -> serde_json::Value {
    json(c, &format!("{admin}/admin/subscribers")).await[0].clone()
}

/// Waits (up to 20 s) until the subscriber's admin entry satisfies `cond`.
async fn wait(
    c: &reqwest::Client,
    admin: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut e = serde_json::Value::Null;
    for _ in 0..400 {
        e = subscriber_status(c, admin).await;
        if cond(&e) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {e}");
}

/// The index's posts in `WANTED` (FindContent).
async fn index_state(c: &reqwest::Client, server: &ServerProcess) -> State {
    use ei_server::model::Field;
    let body = format!(
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:f=\"urn:riv:itintegration:engagementindex:FindContentResponder:1\">\
         <s:Body><f:FindContent><f:registeredResidentIdentification>{RESIDENT}</f:registeredResidentIdentification>\
         <f:serviceDomain>{WANTED}</f:serviceDomain></f:FindContent></s:Body></s:Envelope>"
    );
    let text = c
        .post(format!("{}/skltp-ei/find-content-service/v1", server.base))
        .header("x-skltp-correlation-id", "chaos-find")
        .body(body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    match ei_server::codec::parse_reply(text.as_bytes()).unwrap() {
        ei_server::codec::Reply::Engagements(list) => list
            .iter()
            .map(|e| {
                (
                    e.get(Field::Categorization).unwrap().to_owned(),
                    e.get(Field::MostRecentContent).unwrap_or("").to_owned(),
                )
            })
            .collect(),
        other => panic!("not a FindContent reply: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_survive_chaos() {
    let sub = Subscriber::default();
    let pn = sub.clone().serve().await;
    let registry = Registry(Arc::new(Mutex::new(Some(vec!["SE-CHAOS"]))));
    let reg_url = registry.clone().serve().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ei.toml");
    std::fs::write(
        &config,
        format!(
            "[notifications]\ndefault_url = \"{pn}\"\nretry_delay_ms = 20\nmax_backoff_ms = 200\n\
             max_attempts = 100000\nrate_per_second = 1000\nbatch_size = 50\nadmin_listen = \"127.0.0.1:0\"\n\
             [notifications.registry]\nurl = \"{reg_url}\"\nttl_seconds = 1\n"
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let c = reqwest::Client::new();
    let mut changes = Changes {
        seed: 20261201,
        step: 0,
        touched: BTreeSet::new(),
    };

    // 1. Normal.
    let mut server = ServerProcess::start(&data, &["--config", cfg]);
    let mut admin_url = admin(&c, &server).await;
    changes.send(&c, &server, 15).await;
    wait(&c, &admin_url, "normal delivery", |e| e["pending"] == 0).await;

    // 2. The registry answers an empty list for a while (at least two refreshes).
    registry.set(Some(vec![]));
    let suspect = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("ei_notify_registry_suspect_answers_total "))
            .map(|v| v.parse::<f64>().unwrap())
            .unwrap_or(0.0)
    };
    for _ in 0..200 {
        changes.send(&c, &server, 1).await;
        let metrics = c
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if suspect(&metrics) >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    registry.set(Some(vec!["SE-CHAOS"]));
    assert_eq!(subscriber_status(&c, &admin_url).await["state"], "active");

    // 3. Subscriber down; kill -9 of the index meanwhile.
    sub.down.store(true, Relaxed);
    changes.send(&c, &server, 10).await;
    server.kill9();
    server = ServerProcess::start(&data, &["--config", cfg]);
    admin_url = admin(&c, &server).await;
    changes.send(&c, &server, 10).await;
    sub.down.store(false, Relaxed);
    wait(&c, &admin_url, "catching up after the outage", |e| {
        e["pending"] == 0
    })
    .await;

    // 4. Registry down at a start with no cache file (second kill -9).
    registry.set(None);
    changes.send(&c, &server, 5).await;
    server.kill9();
    std::fs::remove_file(data.join("subscribers-cache.json")).unwrap();
    server = ServerProcess::start(&data, &["--config", cfg]);
    admin_url = admin(&c, &server).await;
    changes.send(&c, &server, 10).await;
    wait(&c, &admin_url, "delivery with the registry down", |e| {
        e["pending"] == 0 && e["state"] == "active"
    })
    .await;
    registry.set(Some(vec!["SE-CHAOS"]));

    // 5. ResultCode=ERROR for some keys for a while.
    *sub.refuse.lock().unwrap() = (0..KEYS).step_by(7).map(|i| format!("cat-{i}")).collect();
    changes.send(&c, &server, 20).await;
    wait(&c, &admin_url, "refusals isolated", |e| e["pending"] == 0).await;
    sub.refuse.lock().unwrap().clear();
    changes.send(&c, &server, 10).await;
    let before_replay = wait(&c, &admin_url, "the end", |e| e["pending"] == 0).await;

    // Every transaction refused alone is a dead letter, and nothing else is.
    let letters = json(
        &c,
        &format!("{admin_url}/admin/subscribers/SE-CHAOS/dead-letters"),
    )
    .await;
    let dead: BTreeSet<(String, String)> = letters
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["transactions"].as_array().unwrap().clone())
        .map(|t| {
            let e = &t["engagement"];
            let value = match t["deleteFlag"].as_bool().unwrap() {
                true => "delete".to_owned(),
                false => e["mostRecentContent"].as_str().unwrap_or("").to_owned(),
            };
            (e["categorization"].as_str().unwrap().to_owned(), value)
        })
        .collect();
    let refused = sub.refused_alone.lock().unwrap().clone();
    assert!(!refused.is_empty(), "the chaos refused something");
    assert_eq!(dead, refused, "every refused transaction is a dead letter");

    // After the replay (current state of the keys) the subscriber equals the index.
    let replay = c
        .post(format!(
            "{admin_url}/admin/subscribers/SE-CHAOS/dead-letters/replay"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    let index = index_state(&c, &server).await;
    let held = sub.state.lock().unwrap().clone();
    for cat in changes.touched.iter() {
        assert_eq!(held.get(cat), index.get(cat), "key {cat}");
    }
    assert_eq!(
        held, index,
        "the subscriber's state equals the index's, key by key"
    );
    let after = subscriber_status(&c, &admin_url).await;
    assert_eq!(after["dead_letter_transactions"], 0, "{after}");
    println!(
        "chaos figures: {} Update transactions, {} keys changed in the subscribed domain, \
         {} transactions delivered (applied by the subscriber, replay included), {} \
         dead-lettered (refused alone), {} subscriber calls, {} pending before the replay",
        changes.step,
        changes.touched.len(),
        sub.applied.lock().unwrap(),
        dead.len(),
        sub.calls.lock().unwrap(),
        before_replay["pending"]
    );
}
