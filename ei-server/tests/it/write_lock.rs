//! The operations kit over HTTP: the write lock (maintenance mode) on the admin
//! listener, kept across a restart.

use crate::common::*;

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";

/// The admin listener's base URL, as `/status` reports it.
async fn admin_base(c: &reqwest::Client, s: &Harness) -> String {
    let status = get_json(c, &s.url("/status")).await;
    format!("http://{}", status["admin_listen"].as_str().unwrap())
}

async fn admin_post(c: &reqwest::Client, url: &str) -> serde_json::Value {
    let resp = c.post(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn notification(resident: &str) -> String {
    update_body("x", &[(resident, "voo", Some("20200101000000"))], false)
        .replace("Update", "ProcessNotification")
        .replace("UpdateResponder", "ProcessNotificationResponder")
        .replace(
            "</c:dataController>",
            "</c:dataController><c:owner>other-index</c:owner>",
        )
}

#[tokio::test]
async fn write_lock_survives_a_restart_refuses_writes_and_serves_reads() {
    let dir = tempfile::tempdir().unwrap();
    let c = reqwest::Client::new();
    let s = start_in(dir.path().to_owned(), |_| {}).await;
    update(
        &c,
        &s,
        &[("191212121212", "voo", Some("20200101000000"))],
        false,
    )
    .await;
    let admin = admin_base(&c, &s).await;
    let off = get_json(&c, &format!("{admin}/admin/write-lock")).await;
    assert_eq!(off["enabled"], false);
    let on = admin_post(&c, &format!("{admin}/admin/write-lock/enable")).await;
    assert_eq!(on["enabled"], true);
    assert!(on["since"].as_str().unwrap().ends_with('Z'), "{on}");
    s.stop().await.unwrap();

    let s = start_in(dir.path().to_owned(), |_| {}).await;
    let admin = admin_base(&c, &s).await;
    assert_eq!(
        get_json(&c, &format!("{admin}/admin/write-lock")).await,
        on,
        "the lock and its time survive the restart"
    );
    assert_eq!(
        get_json(&c, &s.url("/status")).await["write_lock"]["enabled"],
        true
    );
    assert!(get_text(&c, &s.url("/metrics"))
        .await
        .contains("\nei_write_lock 1\n"));

    let refused = [
        (
            UPDATE,
            update_body("5565594230", &[("191212121213", "voo", None)], false),
        ),
        (NOTIFY, notification("191212121214")),
    ];
    for (path, body) in refused {
        let a = post(&c, &s.url(path), body, Some("locked")).await;
        let (code, text) = fault(&a);
        assert_eq!(code, "soap:Server", "{path}: retryable, the index's side");
        assert!(
            text.starts_with("EI000") && text.contains("index in maintenance"),
            "{path}: {text}"
        );
    }
    let found = post(
        &c,
        &s.url(FIND),
        find_body("191212121212", DOMAIN, ""),
        Some("read"),
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(engagements(&found.body).len(), 1, "reads go on");
    for r in ["191212121213", "191212121214"] {
        let a = post(&c, &s.url(FIND), find_body(r, DOMAIN, ""), Some("r")).await;
        assert!(engagements(&a.body).is_empty(), "{r} was not written");
    }

    let off = admin_post(&c, &format!("{admin}/admin/write-lock/disable")).await;
    assert_eq!(off["enabled"], false);
    update(&c, &s, &[("191212121213", "voo", None)], false).await;
    let a = post(&c, &s.url(NOTIFY), notification("191212121214"), Some("n")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(get_json(&c, &s.url("/status")).await["engagements"], 3);
    assert!(get_text(&c, &s.url("/metrics"))
        .await
        .contains("\nei_write_lock 0\n"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn admin_token_guards_the_write_lock() {
    let s = start(|c| c.notifications.admin_token = Some("t0ken".into())).await;
    let c = reqwest::Client::new();
    let admin = admin_base(&c, &s).await;
    let url = format!("{admin}/admin/write-lock/enable");
    assert_eq!(c.post(&url).send().await.unwrap().status(), 401);
    let resp = c.post(&url).bearer_auth("t0ken").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    s.stop().await.unwrap();
}
