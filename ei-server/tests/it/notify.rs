//! Notifications to real subscriber servers on loopback: filters, order, only effective
//! changes, a subscriber down then back (another unaffected), dead letters and replay,
//! ResultCode=ERROR, and subscribers from the registry with its cache file.

use crate::common::*;
use ei_server::config::{Config, FilterConfig, RegistryConfig, SubscriberConfig};
use ei_server::model::Field;

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";

fn subscriber(la: &str, url: &str, filters: Vec<FilterConfig>) -> SubscriberConfig {
    SubscriberConfig {
        logical_address: la.into(),
        url: Some(url.into()),
        filters,
    }
}

fn fast(c: &mut Config) {
    c.notifications.retry_delay_ms = 20;
    c.notifications.max_backoff_ms = 100;
    c.notifications.rate_per_second = 1000;
    c.notifications.admin_listen = "127.0.0.1:0".parse().unwrap();
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
async fn filters_order_and_only_effective_changes() {
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
async fn changes_to_one_key_arrive_in_order() {
    let r = Recorder::start(Mode::Ok).await;
    let url = r.url.clone();
    let s = start(move |c| {
        fast(c);
        c.notifications.subscribers = vec![subscriber("SE1", &url, vec![])];
    })
    .await;
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
async fn a_down_subscriber_catches_up_and_holds_back_nobody() {
    let down = Recorder::start(Mode::Fault).await;
    let up = Recorder::start(Mode::Ok).await;
    let (d, u) = (down.url.clone(), up.url.clone());
    let s = start(move |c| {
        fast(c);
        c.notifications.max_attempts = 1000;
        c.notifications.subscribers = vec![
            subscriber("SE-DOWN", &d, vec![]),
            subscriber("SE-UP", &u, vec![]),
        ];
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
    assert!(down.delivered().is_empty());
    assert!(down.call_count() >= 2, "it was retried");
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
async fn dead_letters_after_the_last_attempt_and_replay() {
    let r = Recorder::start(Mode::Fault).await;
    let url = r.url.clone();
    let s = start(move |c| {
        fast(c);
        c.notifications.max_attempts = 3;
        c.notifications.subscribers = vec![subscriber("SE1", &url, vec![])];
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
async fn result_code_error_is_not_retried_and_admin_token_is_enforced() {
    let r = Recorder::start(Mode::ResultError).await;
    let url = r.url.clone();
    let s = start(move |c| {
        fast(c);
        c.notifications.admin_token = Some("sesame".into());
        c.notifications.subscribers = vec![subscriber("SE1", &url, vec![])];
    })
    .await;
    let c = reqwest::Client::new();
    update(&c, &s, &[("191212121212", "voo", None)], false).await;
    let list = settled(&c, &s, Some("sesame")).await;
    assert_eq!(r.call_count(), 1, "ResultCode=ERROR is not retried");
    assert_eq!(list[0]["retried"], 0, "{list}");
    let admin = admin(&c, &s).await;
    assert_eq!(
        c.get(format!("{admin}/admin/subscribers"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let list: serde_json::Value = c
        .get(format!("{admin}/admin/subscribers"))
        .bearer_auth("sesame")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["dead_letter_batches"], 0);
    assert!(list[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("no thanks"));
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
    let setup = {
        let (reg_url, pn) = (reg_url.clone(), r.url.clone());
        move |c: &mut Config| {
            fast(c);
            c.notifications.default_url = Some(pn);
            c.notifications.registry = Some(RegistryConfig {
                url: reg_url,
                ..RegistryConfig::default()
            });
        }
    };
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
