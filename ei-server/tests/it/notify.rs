//! Notifications to real subscriber servers on loopback: filters, order, only effective
//! changes, a subscriber down then back (another unaffected), dead letters and replay
//! (current state of the keys), ResultCode=ERROR isolated into dead letters, subscribers
//! from the registry with its cache file, absent subscribers and suspect answers, the
//! grace period, parking and resync, lag, no idle fsync, HTTPS with a client
//! certificate, no redirects.

use crate::common::*;
use ei_server::config::{Config, FilterConfig, RegistryConfig, SubscriberConfig};
use ei_server::model::Field;

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";

fn subscriber(la: &str, url: &str, filters: Vec<FilterConfig>) -> SubscriberConfig {
    SubscriberConfig::new(la, Some(url.into()), filters)
}

fn fast(c: &mut Config) {
    c.notifications.retry_delay_ms = 20;
    c.notifications.max_backoff_ms = 100;
    c.notifications.rate_per_second = 1000;
    c.admin_listen = "127.0.0.1:0".parse().unwrap();
}

/// A server (fast retries, admin listener on) notifying one subscriber "SE1" that
/// answers as `mode`; `adjust` changes the rest of the configuration.
async fn one_subscriber(
    mode: Mode,
    adjust: impl FnOnce(&mut Config) + Send + 'static,
) -> (Recorder, Harness) {
    let r = Recorder::start(mode).await;
    let url = r.url.clone();
    let s = start(move |c| {
        fast(c);
        adjust(c);
        c.notifications.subscribers = vec![subscriber("SE1", &url, vec![])];
    })
    .await;
    (r, s)
}

/// A server notifying "SE-DOWN" (answers with a fault) and "SE-UP" (answers OK).
async fn down_and_up(
    adjust: impl FnOnce(&mut Config) + Send + 'static,
) -> (Recorder, Recorder, Harness) {
    let down = Recorder::start(Mode::Fault).await;
    let up = Recorder::start(Mode::Ok).await;
    let (d, u) = (down.url.clone(), up.url.clone());
    let s = start(move |c| {
        fast(c);
        adjust(c);
        c.notifications.subscribers = vec![
            subscriber("SE-DOWN", &d, vec![]),
            subscriber("SE-UP", &u, vec![]),
        ];
    })
    .await;
    (down, up, s)
}

/// Configuration taking the subscribers from the registry at `registry`, each
/// notified at `default_url` (fast retries, admin listener on).
fn from_registry(
    registry: &str,
    default_url: &str,
) -> impl Fn(&mut Config) + Clone + Send + 'static {
    let (registry, default_url) = (registry.to_owned(), default_url.to_owned());
    move |c: &mut Config| {
        fast(c);
        c.notifications.default_url = Some(default_url.clone());
        c.notifications.registry = Some(RegistryConfig {
            url: registry.clone(),
            ..RegistryConfig::default()
        });
    }
}

async fn admin(c: &reqwest::Client, s: &Harness) -> String {
    let status: serde_json::Value = get_json(c, &s.url("/status")).await;
    format!(
        "http://{}",
        status["admin_listen"]
            .as_str()
            .expect("admin listener runs")
    )
}

/// Waits (up to 20 s) until the server says every subscriber's cursor has reached the
/// outbox head (`pending` 0 on the admin endpoint): what was written has been sent (or
/// dead-lettered) and nothing more will be. Returns the subscriber list.
async fn settled(c: &reqwest::Client, s: &Harness, token: Option<&str>) -> serde_json::Value {
    let url = format!("{}/admin/subscribers", admin(c, s).await);
    let mut list = serde_json::Value::Null;
    for _ in 0..400 {
        let mut req = c.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        list = req.send().await.unwrap().json().await.unwrap();
        let subscribers = list.as_array().expect("a subscriber list");
        if subscribers.iter().all(|e| e["pending"] == 0) {
            return list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the subscribers did not catch up: {list}");
}

fn keys(txs: &[ei_server::model::RawTransaction]) -> Vec<(String, Option<String>, Option<String>)> {
    txs.iter()
        .map(|t| {
            let e = &t.engagement;
            (
                e.get(Field::Categorization).unwrap().to_owned(),
                e.get(Field::MostRecentContent).map(str::to_owned),
                t.delete_flag.clone(),
            )
        })
        .collect()
}

#[tokio::test]
pub(crate) async fn filters_order_and_only_effective_changes() {
    let all = Recorder::start(Mode::Ok).await;
    let voo = Recorder::start(Mode::Ok).await;
    let filtered = vec![FilterConfig {
        service_domain: DOMAIN.to_uppercase(),
        categorizations: vec!["VOO".into()],
    }];
    let (a, v) = (all.url.clone(), voo.url.clone());
    let s = start(move |c| {
        fast(c);
        c.notifications.subscribers = vec![
            subscriber("SE-ALL", &a, vec![]),
            subscriber("SE-VOO", &v, filtered),
        ];
    })
    .await;
    let c = reqwest::Client::new();
    update(
        &c,
        &s,
        &[
            ("191212121212", "voo", Some("20200101000000")),
            ("191212121212", "upp", None),
        ],
        false,
    )
    .await;
    all.wait_until("first inserts", |r| r.delivered().len() == 2)
        .await;
    update(
        &c,
        &s,
        &[("191212121212", "voo", Some("20200101000000"))],
        false,
    )
    .await; // identical: not notified
    update(
        &c,
        &s,
        &[("191212121212", "voo", Some("20210101000000"))],
        false,
    )
    .await;
    update(&c, &s, &[("191212121212", "upp", None)], true).await;
    settled(&c, &s, None).await;
    let got = keys(&all.delivered());
    assert_eq!(
        got,
        vec![
            (
                "voo".into(),
                Some("20200101000000".into()),
                Some("false".into())
            ),
            ("upp".into(), None, Some("false".into())),
            (
                "voo".into(),
                Some("20210101000000".into()),
                Some("false".into())
            ),
            ("upp".into(), None, Some("true".into())),
        ],
        "every effective change once, in order; the identical re-send is not notified"
    );
    assert_eq!(
        keys(&voo.delivered()),
        vec![
            (
                "voo".into(),
                Some("20200101000000".into()),
                Some("false".into())
            ),
            (
                "voo".into(),
                Some("20210101000000".into()),
                Some("false".into())
            )
        ],
        "case-insensitive domain + categorization filter"
    );
    let call = all.calls.lock().unwrap()[0].clone();
    assert_eq!(call.logical_address.as_deref(), Some("SE-ALL"));
    let header = |n: &str| {
        call.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("x-vp-sender-id").as_deref(), Some("5565594230"));
    assert!(header("x-skltp-correlation-id").is_some());
    assert!(header("x-vp-instance-id").is_some());
    let e = &call.transactions[0].engagement;
    assert_eq!(e.get(Field::Owner), Some("5565594230"), "owner filled in");
    assert!(e.get(Field::CreationTime).is_some());
    assert_eq!(
        e.get(Field::UpdateTime),
        e.get(Field::CreationTime),
        "updateTime = creationTime for a new post"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn changes_to_one_key_arrive_in_order() {
    let (r, s) = one_subscriber(Mode::Ok, |_| {}).await;
    let c = reqwest::Client::new();
    let values: Vec<String> = (1..=30).map(|i| format!("202001{:02}000000", i)).collect();
    for v in &values {
        update(&c, &s, &[("191212121212", "voo", Some(v.as_str()))], false).await;
    }
    let last = values.last().cloned();
    r.wait_until("the last value", |r| {
        r.delivered().last().and_then(|t| {
            t.engagement
                .get(Field::MostRecentContent)
                .map(str::to_owned)
        }) == last
    })
    .await;
    let seen: Vec<String> = r
        .delivered()
        .iter()
        .map(|t| {
            t.engagement
                .get(Field::MostRecentContent)
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "out of order: {seen:?}"
    );
    for call in r.calls.lock().unwrap().iter() {
        assert_eq!(
            call.transactions.len(),
            1,
            "a key appears once per call (coalesced)"
        );
    }
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn a_down_subscriber_catches_up_and_holds_back_nobody() {
    let (down, up, s) = down_and_up(|c| {
        c.notifications.max_attempts = 1000;
    })
    .await;
    let c = reqwest::Client::new();
    for i in 0..20 {
        let cat = format!("c{i}");
        update(&c, &s, &[("191212121212", cat.as_str(), None)], false).await;
    }
    up.wait_until("the healthy subscriber got everything", |r| {
        r.delivered().len() == 20
    })
    .await;
    down.wait_until("a retry", |r| r.call_count() >= 2).await;
    assert!(down.delivered().is_empty());
    let admin = admin(&c, &s).await;
    let list: serde_json::Value = get_json(&c, &format!("{admin}/admin/subscribers")).await;
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["logical_address"] == "SE-DOWN")
        .unwrap()
        .clone();
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap()
            .contains("subscriber down"),
        "{entry}"
    );
    assert!(entry["pending"].as_u64().unwrap() > 0);

    down.set_mode(Mode::Ok);
    down.wait_until("the recovered subscriber caught up", |r| {
        r.delivered().len() >= 20
    })
    .await;
    let mut cats: Vec<String> = down
        .delivered()
        .iter()
        .map(|t| t.engagement.get(Field::Categorization).unwrap().to_owned())
        .collect();
    cats.sort();
    cats.dedup();
    assert_eq!(cats.len(), 20, "nothing missing");
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn dead_letters_after_the_last_attempt_and_replay() {
    let (r, s) = one_subscriber(Mode::Fault, |c| {
        c.notifications.max_attempts = 3;
    })
    .await;
    let c = reqwest::Client::new();
    update(
        &c,
        &s,
        &[("191212121212", "voo", None), ("191212121212", "upp", None)],
        false,
    )
    .await;
    let admin = admin(&c, &s).await;
    let mut entry = serde_json::Value::Null;
    for _ in 0..200 {
        let list: serde_json::Value = get_json(&c, &format!("{admin}/admin/subscribers")).await;
        entry = list[0].clone();
        if entry["dead_letter_transactions"] == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(entry["dead_letter_transactions"], 2, "{entry}");
    assert_eq!(r.call_count(), 3, "exactly max_attempts calls");

    r.set_mode(Mode::Ok);
    let replay: serde_json::Value = c
        .post(format!("{admin}/admin/subscribers/SE1/dead-letters/replay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay["delivered_batches"], 1, "{replay}");
    assert_eq!(r.delivered().len(), 2);
    let list: serde_json::Value = get_json(&c, &format!("{admin}/admin/subscribers")).await;
    assert_eq!(list[0]["dead_letter_batches"], 0);
    let unknown = c
        .post(format!(
            "{admin}/admin/subscribers/nobody/dead-letters/replay"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let metrics = get_text(&c, &s.url("/metrics")).await;
    assert!(
        metrics.contains("ei_notify_dead_lettered_total{subscriber=\"SE1\"} 2"),
        "{metrics}"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn result_code_error_becomes_a_dead_letter_not_retried_and_admin_token_is_enforced(
) {
    let (r, s) = one_subscriber(Mode::ResultError, |c| {
        c.notifications.admin_token = Some("sesame".into());
    })
    .await;
    let c = reqwest::Client::new();
    update(&c, &s, &[("191212121212", "voo", None)], false).await;
    let admin = admin(&c, &s).await;
    assert_eq!(
        c.get(format!("{admin}/admin/subscribers"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let mut entry = serde_json::Value::Null;
    for _ in 0..400 {
        let list: serde_json::Value = c
            .get(format!("{admin}/admin/subscribers"))
            .bearer_auth("sesame")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        entry = list[0].clone();
        if entry["dead_letter_transactions"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(entry["dead_letter_batches"], 1, "{entry}");
    assert_eq!(r.call_count(), 1, "ResultCode=ERROR is not retried");
    assert!(entry["last_error"].as_str().unwrap().contains("no thanks"));
    s.stop().await.unwrap();
}

/// A registry answering GetLogicalAddresseesByServiceContract with one subscriber, or
/// a fault when `down`.
async fn registry(down: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/reg", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/reg",
        axum::routing::post(move |body: String| {
            let down = down.clone();
            async move {
                assert!(body.contains("ProcessNotificationResponder:1"), "asks for the ProcessNotification namespace");
                if down.load(std::sync::atomic::Ordering::Relaxed) {
                    return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down".to_owned());
                }
                (axum::http::StatusCode::OK, format!(
                    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
                     <r:GetLogicalAddresseesByServiceContractResponse xmlns:r=\"urn:riv:infrastructure:itintegration:registry:GetLogicalAddresseesByServiceContractResponder:2\">\
                     <r:logicalAddressRecord><r:logicalAddress>SE-REG</r:logicalAddress>\
                     <r:filter><r:serviceDomain>{DOMAIN}</r:serviceDomain><r:categorization>voo</r:categorization></r:filter>\
                     </r:logicalAddressRecord></r:GetLogicalAddresseesByServiceContractResponse></s:Body></s:Envelope>"
                ))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn subscribers_from_the_registry_with_cache_fallback() {
    let r = Recorder::start(Mode::Ok).await;
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reg_url = registry(down.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let setup = from_registry(&reg_url, &r.url);
    let s = start_in(dir.path().to_owned(), setup.clone()).await;
    let c = reqwest::Client::new();
    update(
        &c,
        &s,
        &[("191212121212", "voo", None), ("191212121212", "upp", None)],
        false,
    )
    .await;
    r.wait_until("the registry's subscriber got its change", |r| {
        !r.delivered().is_empty()
    })
    .await;
    assert_eq!(
        r.calls.lock().unwrap()[0].logical_address.as_deref(),
        Some("SE-REG")
    );
    assert_eq!(
        keys(&r.delivered()),
        vec![("voo".into(), None, Some("false".into()))],
        "the registry's filter applies"
    );
    assert!(dir.path().join("subscribers-cache.json").exists());

    down.store(true, std::sync::atomic::Ordering::Relaxed);
    let admin = admin(&c, &s).await;
    let refresh = c
        .post(format!("{admin}/admin/subscribers/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        refresh.status(),
        502,
        "refresh reports the registry failure"
    );
    let list: serde_json::Value = get_json(&c, &format!("{admin}/admin/subscribers")).await;
    assert_eq!(
        list[0]["logical_address"], "SE-REG",
        "the cached subscriber is kept"
    );
    s.stop().await.unwrap();

    // Restart with the registry still down: the cache file provides the subscriber.
    let s = start_in(dir.path().to_owned(), setup).await;
    update(
        &c,
        &s,
        &[("191212121212", "voo", Some("20240101000000"))],
        false,
    )
    .await;
    r.wait_until("delivery from the cached subscriber list", |r| {
        r.delivered().len() >= 2
    })
    .await;
    s.stop().await.unwrap();
}

/// The admin entry of subscriber `la`.
async fn status_of(c: &reqwest::Client, admin: &str, la: &str) -> serde_json::Value {
    let list: serde_json::Value = get_json(c, &format!("{admin}/admin/subscribers")).await;
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e["logical_address"] == la)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Waits (up to 20 s) until subscriber `la`'s admin entry satisfies `cond`.
async fn wait_status(
    c: &reqwest::Client,
    admin: &str,
    la: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut entry = serde_json::Value::Null;
    for _ in 0..400 {
        entry = status_of(c, admin, la).await;
        if cond(&entry) {
            return entry;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {entry}");
}

/// A sample value from `/metrics` (the line starting with `series `).
async fn metric(c: &reqwest::Client, s: &Harness, series: &str) -> f64 {
    let text = get_text(c, &s.url("/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// Waits until the notifier's upkeep has finished `rounds` more rounds.
async fn upkeep_rounds(c: &reqwest::Client, s: &Harness, rounds: f64) {
    let start = metric(c, s, "ei_notify_upkeep_rounds_total").await;
    for _ in 0..400 {
        if metric(c, s, "ei_notify_upkeep_rounds_total").await >= start + rounds {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the upkeep does not run");
}

/// The final state a subscriber holds: key (categorization) → mostRecentContent, from
/// the OK-answered calls in order (a delete removes the key).
fn final_state(r: &Recorder) -> std::collections::BTreeMap<String, Option<String>> {
    let mut state = std::collections::BTreeMap::new();
    for t in r.delivered() {
        let e = &t.engagement;
        let cat = e.get(Field::Categorization).unwrap().to_owned();
        if t.delete_flag.as_deref() == Some("true") {
            state.remove(&cat);
        } else {
            state.insert(cat, e.get(Field::MostRecentContent).map(str::to_owned));
        }
    }
    state
}

#[tokio::test]
pub(crate) async fn an_idle_index_does_no_fsync_and_cursor_writes_are_batched() {
    let (r, s) = one_subscriber(Mode::Ok, |_| {}).await;
    let c = reqwest::Client::new();
    for i in 0..20 {
        let cat = format!("c{i}");
        update(&c, &s, &[("191212121212", cat.as_str(), None)], false).await;
    }
    r.wait_until("every change", |r| r.delivered().len() == 20)
        .await;
    // A round or two after the last delivery the cursor is written; then nothing
    // changes.
    upkeep_rounds(&c, &s, 3.0).await;
    let syncs = metric(&c, &s, "ei_notify_store_syncs_total").await;
    assert!(
        syncs < 20.0,
        "cursor advances are batched: {syncs} synced writes for 20 deliveries"
    );
    upkeep_rounds(&c, &s, 3.0).await;
    assert_eq!(
        metric(&c, &s, "ei_notify_store_syncs_total").await,
        syncs,
        "an idle index does no fsync"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn refused_transactions_are_isolated_into_dead_letters_and_the_rest_delivered() {
    let (r, s) = one_subscriber(Mode::RefuseBad, |_| {}).await;
    let c = reqwest::Client::new();
    let cats: Vec<String> = (0..10)
        .map(|i| match i {
            3 | 7 => format!("bad{i}"),
            _ => format!("good{i}"),
        })
        .collect();
    let posts: Vec<(&str, &str, Option<&str>)> = cats
        .iter()
        .map(|c| ("191212121212", c.as_str(), None))
        .collect();
    update(&c, &s, &posts, false).await;
    let admin = admin(&c, &s).await;
    let entry = wait_status(&c, &admin, "SE1", "two dead letters", |e| {
        e["dead_letter_transactions"] == 2
    })
    .await;
    assert_eq!(
        entry["dead_letter_batches"], 2,
        "one per refused transaction"
    );
    assert_eq!(entry["dead_lettered"], 2);
    let mut delivered: Vec<String> = r
        .delivered()
        .iter()
        .map(|t| t.engagement.get(Field::Categorization).unwrap().to_owned())
        .collect();
    delivered.sort();
    assert_eq!(
        delivered,
        vec!["good0", "good1", "good2", "good4", "good5", "good6", "good8", "good9"],
        "every accepted transaction delivered once"
    );
    // The refused ones are replayable; refused again, they stay (isolated).
    let replay: serde_json::Value = c
        .post(format!("{admin}/admin/subscribers/SE1/dead-letters/replay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay["failed_batches"], 2, "{replay}");
    assert!(replay["last_error"].as_str().unwrap().contains("bad post"));
    let entry = status_of(&c, &admin, "SE1").await;
    assert_eq!(entry["dead_letter_transactions"], 2, "{entry}");
    assert_eq!(
        metric(
            &c,
            &s,
            "ei_notify_dead_letter_transactions{subscriber=\"SE1\"}"
        )
        .await,
        2.0
    );
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn replay_sends_the_current_state_of_the_keys() {
    let (r, s) = one_subscriber(Mode::Fault, |c| {
        c.notifications.max_attempts = 1;
    })
    .await;
    let c = reqwest::Client::new();
    let admin = admin(&c, &s).await;
    let steps: [(&str, Option<&str>, bool); 4] = [
        ("k", Some("20200101000000"), false),
        ("k", Some("20210101000000"), false),
        ("gone", Some("20200101000000"), false),
        ("gone", None, true),
    ];
    for (i, (cat, mrc, delete)) in steps.iter().enumerate() {
        update(&c, &s, &[("191212121212", cat, *mrc)], *delete).await;
        wait_status(&c, &admin, "SE1", "a dead letter per change", |e| {
            e["dead_letter_batches"] == i as u64 + 1
        })
        .await;
    }
    r.set_mode(Mode::Ok);
    let replay: serde_json::Value = c
        .post(format!("{admin}/admin/subscribers/SE1/dead-letters/replay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay["delivered_batches"], 4, "{replay}");
    for t in r.delivered() {
        let e = &t.engagement;
        match e.get(Field::Categorization).unwrap() {
            "k" => assert_eq!(
                e.get(Field::MostRecentContent),
                Some("20210101000000"),
                "never the old copy"
            ),
            _ => assert_eq!(
                t.delete_flag.as_deref(),
                Some("true"),
                "a key deleted since is sent as a delete"
            ),
        }
    }
    assert_eq!(final_state(&r).len(), 1);
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn an_over_budget_subscriber_is_parked_and_a_resync_brings_it_back() {
    let (down, up, s) = down_and_up(|c| {
        c.notifications.max_attempts = 100_000;
        c.notifications.max_backlog_entries = 5;
    })
    .await;
    let c = reqwest::Client::new();
    let admin = admin(&c, &s).await;
    for i in 0..10 {
        let (cat, mrc) = (format!("c{i}"), format!("2020010{}000000", 1 + i % 9));
        update(&c, &s, &[("191212121212", &cat, Some(&mrc))], false).await;
    }
    update(&c, &s, &[("191212121212", "c0", None)], true).await;
    let entry = wait_status(&c, &admin, "SE-DOWN", "parked", |e| e["state"] == "parked").await;
    assert!(
        entry["parked"]["reason"]
            .as_str()
            .unwrap()
            .contains("budget 5"),
        "{entry}"
    );
    assert_eq!(
        metric(&c, &s, "ei_notify_parked{subscriber=\"SE-DOWN\"}").await,
        1.0
    );
    up.wait_until("the other subscriber is unaffected", |r| {
        let state = final_state(r);
        state.len() == 9 && !state.contains_key("c0")
    })
    .await;

    down.set_mode(Mode::Ok);
    let resync = c
        .post(format!("{admin}/admin/subscribers/SE-DOWN/resync"))
        .send()
        .await
        .unwrap();
    assert_eq!(resync.status(), 202);
    wait_status(&c, &admin, "SE-DOWN", "active again", |e| {
        e["state"] == "active"
    })
    .await;
    assert_eq!(
        final_state(&down),
        final_state(&up),
        "the resync sent the index's current state"
    );
    update(&c, &s, &[("191212121212", "after", None)], false).await;
    down.wait_until("delivery continues from the head", |r| {
        final_state(r).contains_key("after")
    })
    .await;
    assert_eq!(
        metric(&c, &s, "ei_notify_parked{subscriber=\"SE-DOWN\"}").await,
        0.0
    );
    let unknown = c
        .post(format!("{admin}/admin/subscribers/nobody/resync"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn lag_is_alertable_per_subscriber() {
    let (r, s) = one_subscriber(Mode::Fault, |c| {
        c.notifications.max_attempts = 100_000;
    })
    .await;
    let c = reqwest::Client::new();
    let admin = admin(&c, &s).await;
    assert_eq!(
        metric(&c, &s, "ei_notify_lag_seconds{subscriber=\"SE1\"}").await,
        0.0
    );
    update(&c, &s, &[("191212121212", "voo", None)], false).await;
    r.wait_until("a failed call", |r| r.call_count() >= 2).await;
    let entry = wait_status(&c, &admin, "SE1", "lag", |e| {
        e["lag_seconds"].as_f64().unwrap() > 0.0
    })
    .await;
    assert_eq!(entry["state"], "active");
    assert!(metric(&c, &s, "ei_notify_lag_seconds{subscriber=\"SE1\"}").await > 0.0);
    r.set_mode(Mode::Ok);
    wait_status(&c, &admin, "SE1", "caught up", |e| {
        e["lag_seconds"].as_f64().unwrap() == 0.0
    })
    .await;
    s.stop().await.unwrap();
}

/// A registry stub whose answer the test sets: `Some(addresses)` or `None` = down.
#[derive(Clone)]
struct Registry {
    url: String,
    answer: std::sync::Arc<std::sync::Mutex<Option<Vec<&'static str>>>>,
}

impl Registry {
    async fn start(answer: Option<Vec<&'static str>>) -> Registry {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Registry {
            url: format!("http://{}/reg", listener.local_addr().unwrap()),
            answer: std::sync::Arc::new(std::sync::Mutex::new(answer)),
        };
        let me = r.clone();
        let app = axum::Router::new().route(
            "/reg",
            axum::routing::post(move || {
                let me = me.clone();
                async move {
                    let Some(list) = me.answer.lock().unwrap().clone() else {
                        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down".to_owned());
                    };
                    let records: String = list
                        .iter()
                        .map(|la| format!("<r:logicalAddressRecord><r:logicalAddress>{la}</r:logicalAddress></r:logicalAddressRecord>"))
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
        r
    }

    fn set(&self, answer: Option<Vec<&'static str>>) {
        *self.answer.lock().unwrap() = answer;
    }
}

async fn refresh(c: &reqwest::Client, admin: &str, force: bool) -> u16 {
    c.post(format!("{admin}/admin/subscribers/refresh?force={force}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_absent_subscriber_keeps_its_backlog_and_suspect_answers_are_not_obeyed() {
    let r = Recorder::start(Mode::Ok).await;
    let reg = Registry::start(Some(vec!["SE-REG"])).await;
    let dir = tempfile::tempdir().unwrap();
    let setup = from_registry(&reg.url, &r.url);
    let s = start_in(dir.path().to_owned(), setup.clone()).await;
    let c = reqwest::Client::new();
    let admin = admin(&c, &s).await;
    update(&c, &s, &[("191212121212", "a", None)], false).await;
    r.wait_until("first change", |r| r.delivered().len() == 1)
        .await;

    // An empty answer drops 100 % of the registry's subscribers: suspect, not obeyed.
    reg.set(Some(vec![]));
    assert_eq!(refresh(&c, &admin, false).await, 409);
    assert_eq!(status_of(&c, &admin, "SE-REG").await["state"], "active");
    assert_eq!(
        metric(&c, &s, "ei_notify_registry_suspect_answers_total").await,
        1.0
    );

    // Forced: the subscriber is absent, its backlog kept.
    assert_eq!(refresh(&c, &admin, true).await, 200);
    let entry = status_of(&c, &admin, "SE-REG").await;
    assert_eq!(entry["state"], "absent", "{entry}");
    assert!(entry["absent_since"].as_str().unwrap().ends_with('Z'));
    for cat in ["b", "c", "d"] {
        update(&c, &s, &[("191212121212", cat, None)], false).await;
    }
    upkeep_rounds(&c, &s, 3.0).await;
    assert_eq!(r.delivered().len(), 1, "nothing delivered while absent");
    assert_eq!(
        metric(&c, &s, "ei_notify_absent{subscriber=\"SE-REG\"}").await,
        1.0
    );
    assert_eq!(status_of(&c, &admin, "SE-REG").await["pending"], 3);

    // Back within the grace period: every change it missed, in order.
    reg.set(Some(vec!["SE-REG"]));
    assert_eq!(refresh(&c, &admin, false).await, 200);
    r.wait_until("the missed changes", |r| r.delivered().len() == 4)
        .await;
    let cats: Vec<String> = r
        .delivered()
        .iter()
        .map(|t| t.engagement.get(Field::Categorization).unwrap().to_owned())
        .collect();
    assert_eq!(cats, vec!["a", "b", "c", "d"]);
    s.stop().await.unwrap();

    // Registry down at a start with no cache file: the subscriber the store knows is
    // kept, with its stored definition.
    std::fs::remove_file(dir.path().join("subscribers-cache.json")).unwrap();
    reg.set(None);
    let s = start_in(dir.path().to_owned(), setup).await;
    update(&c, &s, &[("191212121212", "e", None)], false).await;
    r.wait_until("delivery with the registry down", |r| {
        r.delivered().len() == 5
    })
    .await;
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn after_the_grace_period_the_drop_is_explicit() {
    let r = Recorder::start(Mode::Ok).await;
    let reg = Registry::start(Some(vec!["SE-REG"])).await;
    let (reg_url, pn) = (reg.url.clone(), r.url.clone());
    let s = start(move |c| {
        fast(c);
        c.notifications.absent_grace_seconds = 0;
        c.notifications.default_url = Some(pn);
        c.notifications.registry = Some(RegistryConfig {
            url: reg_url,
            ..RegistryConfig::default()
        });
    })
    .await;
    let c = reqwest::Client::new();
    let admin = admin(&c, &s).await;
    update(&c, &s, &[("191212121212", "a", None)], false).await;
    r.wait_until("first change", |r| r.delivered().len() == 1)
        .await;
    reg.set(Some(vec![]));
    assert_eq!(refresh(&c, &admin, true).await, 200);
    update(&c, &s, &[("191212121212", "missed", None)], false).await;
    let entry = wait_status(&c, &admin, "SE-REG", "dropped", |e| e["state"] == "dropped").await;
    let from = entry["gaps"][0]["from"].as_u64().unwrap();
    assert_eq!(entry["gaps"][0]["to"], serde_json::Value::Null);
    assert_eq!(metric(&c, &s, "ei_notify_gaps_total").await, 1.0);

    reg.set(Some(vec!["SE-REG"]));
    assert_eq!(refresh(&c, &admin, false).await, 200);
    let entry = status_of(&c, &admin, "SE-REG").await;
    assert_eq!(entry["state"], "active");
    let to = entry["gaps"][0]["to"].as_u64().expect("the gap is closed");
    assert!(to > from, "the gap covers the missed change: {entry}");
    update(&c, &s, &[("191212121212", "later", None)], false).await;
    r.wait_until("changes after the return", |r| {
        final_state(r).contains_key("later")
    })
    .await;
    assert!(!final_state(&r).contains_key("missed"));
    s.stop().await.unwrap();
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made for this
/// run, written as PEM files into `dir`.
struct Pki {
    ca: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
    server: tokio_rustls::rustls::ServerConfig,
}

fn pki(dir: &std::path::Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client_cert = CertificateParams::new(vec!["SE-TLS".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let p = Pki {
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        server: {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.add(ca_cert.der().clone()).unwrap();
            let verifier = tokio_rustls::rustls::server::WebPkiClientVerifier::builder(
                std::sync::Arc::new(roots),
            )
            .build()
            .unwrap();
            tokio_rustls::rustls::ServerConfig::builder()
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    vec![CertificateDer::from(server_cert.der().to_vec())],
                    PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
                )
                .unwrap()
        },
    };
    std::fs::write(&p.ca, ca_cert.pem()).unwrap();
    std::fs::write(&p.client_cert, client_cert.pem()).unwrap();
    std::fs::write(&p.client_key, client_key.serialize_pem()).unwrap();
    p
}

/// Terminates TLS (client certificate required) on 127.0.0.1 and forwards each request
/// to `upstream` (a recorder's URL); returns the `https://` URL of the same path.
async fn tls_front(server: tokio_rustls::rustls::ServerConfig, upstream: String) -> String {
    use http_body_util::BodyExt;
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}/pn");
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let upstream = upstream.clone();
                        async move {
                            let headers = req.headers().clone();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let resp = reqwest::Client::new()
                                .post(upstream)
                                .headers(headers)
                                .body(body)
                                .send()
                                .await
                                .unwrap();
                            let status = resp.status().as_u16();
                            let bytes = resp.bytes().await.unwrap();
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test]
pub(crate) async fn https_delivery_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let r = Recorder::start(Mode::Ok).await;
    let url = tls_front(pki.server.clone(), r.url.clone()).await;
    let (ca, cert, key) = (
        pki.ca.clone(),
        pki.client_cert.clone(),
        pki.client_key.clone(),
    );
    let u = url.clone();
    let s = start(move |c| {
        fast(c);
        c.notifications.max_attempts = 1;
        // The default CA bundle for all; the client certificate only for SE-TLS.
        c.notifications.tls_ca = Some(ca);
        let mut with_cert = subscriber("SE-TLS", &u, vec![]);
        with_cert.tls_cert = Some(cert);
        with_cert.tls_key = Some(key);
        c.notifications.subscribers = vec![with_cert, subscriber("SE-NOCERT", &u, vec![])];
    })
    .await;
    let c = reqwest::Client::new();
    update(&c, &s, &[("191212121212", "voo", None)], false).await;
    r.wait_until("delivery over HTTPS", |r| r.delivered().len() == 1)
        .await;
    assert_eq!(
        r.calls.lock().unwrap()[0].logical_address.as_deref(),
        Some("SE-TLS")
    );
    let admin = admin(&c, &s).await;
    let entry = wait_status(&c, &admin, "SE-NOCERT", "refused handshake", |e| {
        e["dead_letter_transactions"] == 1
    })
    .await;
    assert!(
        entry["last_error"].as_str().unwrap().contains("transport"),
        "{entry}"
    );
    assert_eq!(r.call_count(), 1, "no certificate, no call");
    s.stop().await.unwrap();
}

#[tokio::test]
pub(crate) async fn a_redirect_is_not_followed() {
    let r = Recorder::start(Mode::Ok).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = format!("http://{}/pn", listener.local_addr().unwrap());
    let target = r.url.clone();
    let app = axum::Router::new().route(
        "/pn",
        axum::routing::post(move || {
            let target = target.clone();
            async move { axum::response::Redirect::temporary(&target) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let s = start(move |c| {
        fast(c);
        c.notifications.max_attempts = 2;
        c.notifications.subscribers = vec![subscriber("SE1", &redirect, vec![])];
    })
    .await;
    let c = reqwest::Client::new();
    update(&c, &s, &[("191212121212", "voo", None)], false).await;
    let admin = admin(&c, &s).await;
    let entry = wait_status(&c, &admin, "SE1", "a dead letter", |e| {
        e["dead_letter_transactions"] == 1
    })
    .await;
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap()
            .contains("redirect not followed"),
        "{entry}"
    );
    assert_eq!(r.call_count(), 0, "the redirect target was never called");
    s.stop().await.unwrap();
}
