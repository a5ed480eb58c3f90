//! The access log: `GET /admin/audit?resident=` answers who looked up and who
//! changed a resident's posts, newest first, across a restart; retention deletes old
//! records; `audit = false` records nothing.

use crate::common::*;
use ei_server::store::audit::AuditRecord;

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";

async fn admin_base(c: &reqwest::Client, s: &Harness) -> String {
    let status = get_json(c, &s.url("/status")).await;
    format!("http://{}", status["admin_listen"].as_str().unwrap())
}

/// POSTs `body` to `path` with the correlation id and the given extra headers.
async fn call(
    c: &reqwest::Client,
    s: &Harness,
    path: &str,
    body: String,
    correlation: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut req = c
        .post(s.url(path))
        .header("content-type", "text/xml; charset=UTF-8")
        .header("x-skltp-correlation-id", correlation)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The access log of `resident`, waiting (on the log itself) until it holds `n`
/// records: FindContent's are written by the background appender.
async fn audit_of(c: &reqwest::Client, admin: &str, resident: &str, n: usize) -> serde_json::Value {
    let url = format!("{admin}/admin/audit?resident={resident}");
    for _ in 0..500 {
        let v = get_json(c, &url).await;
        if v["records"].as_array().unwrap().len() >= n {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the access log of {resident} never held {n} records");
}

fn summary(v: &serde_json::Value) -> Vec<(String, String, String, String, u64)> {
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap().to_owned(),
                r["caller"].as_str().unwrap().to_owned(),
                r["correlation_id"].as_str().unwrap().to_owned(),
                r["service_domain"].as_str().unwrap().to_owned(),
                r["posts"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_audit_answers_who_looked_up_and_who_changed_a_resident_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let s = start_in(dir.path().to_owned(), |_| {}).await;
    let admin = admin_base(&c, &s).await;
    let (r1, r2) = ("191212121212", "194107086995");
    let two = [
        (r1, "voo", Some("20200101000000")),
        (r1, "vko", Some("20200101000000")),
    ];
    let consumer = "x-rivta-original-serviceconsumer-hsaid";
    call(
        &c,
        &s,
        UPDATE,
        update_body("5565594230", &two, false),
        "c-update",
        &[(consumer, "SE-WRITER"), ("x-vp-sender-id", "SE-PLATFORM")],
    )
    .await;
    call(
        &c,
        &s,
        UPDATE,
        update_body("5565594230", &[(r2, "voo", None)], false),
        "c-other",
        &[],
    )
    .await;
    let found = call(
        &c,
        &s,
        FIND,
        find_body(r1, DOMAIN, ""),
        "c-find",
        &[("x-vp-sender-id", "SE-READER")],
    )
    .await;
    assert_eq!(engagements(&found).len(), 2);
    // Wait for the lookup's record, so the delete below is newer.
    audit_of(&c, &admin, r1, 2).await;
    call(
        &c,
        &s,
        UPDATE,
        update_body("5565594230", &two[..1], true),
        "c-delete",
        &[],
    )
    .await;

    let expected = vec![
        (
            "Update".into(),
            "anonymous".into(),
            "c-delete".into(),
            DOMAIN.into(),
            1,
        ),
        (
            "FindContent".into(),
            "SE-READER".into(),
            "c-find".into(),
            DOMAIN.into(),
            2,
        ),
        (
            "Update".into(),
            "SE-WRITER".into(),
            "c-update".into(),
            DOMAIN.into(),
            2,
        ),
    ];
    let log = audit_of(&c, &admin, r1, 3).await;
    assert_eq!(summary(&log), expected, "{log}");
    assert_eq!(log["truncated"], false);
    let other = audit_of(&c, &admin, r2, 1).await;
    assert_eq!(summary(&other)[0].2, "c-other");
    assert_eq!(other["records"].as_array().unwrap().len(), 1);

    // limit, and a time range that leaves the newest record out.
    let newest = get_json(&c, &format!("{admin}/admin/audit?resident={r1}&limit=1")).await;
    assert_eq!(summary(&newest), expected[..1].to_vec());
    assert_eq!(newest["truncated"], true);
    let before = newest["records"][0]["time"]
        .as_str()
        .unwrap()
        .replace('+', "%2B");
    let older = get_json(
        &c,
        &format!("{admin}/admin/audit?resident={r1}&to={before}"),
    )
    .await;
    assert_eq!(summary(&older), expected[1..].to_vec(), "{older}");
    let resp = c.get(format!("{admin}/admin/audit")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .get(format!("{admin}/admin/audit?resident={r1}&from=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    s.stop().await.unwrap();
    let s = start_in(dir.path().to_owned(), |_| {}).await;
    let admin = admin_base(&c, &s).await;
    let log = audit_of(&c, &admin, r1, 3).await;
    assert_eq!(summary(&log), expected, "the log survives a restart");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn retention_deletes_records_older_than_its_days() {
    let c = reqwest::Client::new();
    let s = start(|_| {}).await;
    let admin = admin_base(&c, &s).await;
    let day_ms = 86_400_000u64;
    let now = 1_800_000_000_000u64;
    let record = move |age_days: u64, cid: &str| AuditRecord {
        time_ms: now - age_days * day_ms,
        caller: "SE1".into(),
        correlation_id: cid.into(),
        operation: "FindContent".into(),
        resident: "191212121212".into(),
        service_domain: DOMAIN.into(),
        posts: 0,
    };
    let store = s.store().clone();
    let deleted = tokio::task::spawn_blocking(move || {
        store
            .append_audit(&[
                record(800, "old"),
                record(731, "older than 730"),
                record(10, "new"),
            ])
            .unwrap();
        ei_server::audit::purge(&store, 730, now)
    })
    .await
    .unwrap();
    assert_eq!(deleted, 2);
    let log = get_json(&c, &format!("{admin}/admin/audit?resident=191212121212")).await;
    let cids: Vec<_> = summary(&log).into_iter().map(|r| r.2).collect();
    assert_eq!(cids, ["new"]);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn with_audit_off_nothing_is_recorded() {
    let c = reqwest::Client::new();
    let s = start(|c| c.audit = false).await;
    let admin = admin_base(&c, &s).await;
    update(&c, &s, &[("191212121212", "voo", None)], false).await;
    // Update's records would be in the batch of its posts: none there now.
    let log = get_json(&c, &format!("{admin}/admin/audit?resident=191212121212")).await;
    assert_eq!(log["records"].as_array().unwrap().len(), 0, "{log}");
    assert!(get_text(&c, &s.url("/metrics"))
        .await
        .contains("ei_audit_dropped_total 0"));
    s.stop().await.unwrap();
}
