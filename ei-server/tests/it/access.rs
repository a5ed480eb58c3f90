//! Who may call what, over real HTTPS with client certificates (rcgen): the mTLS
//! matrix (an allowed HSA-id, one not on the list, another CA's certificate, no
//! certificate, the platform header from the platform and from someone else), the
//! `[access]` lists per service and per source system, the refusal as a fault counted
//! under `forbidden`, and the access log naming the certificate's HSA-id.

use crate::common::*;
use crate::pki::*;
use ei_server::access::AccessConfig;
use std::collections::BTreeMap;

const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";
const CONSUMER: &str = "x-rivta-original-serviceconsumer-hsaid";
const RESIDENT: &str = "191212121212";
/// The sourceSystem `update_body` writes.
const SOURCE: &str = "SE2321000016-15CQ";

/// One CA for the server and the clients, and the server's files.
struct Pki {
    ca: Ca,
    files: Files,
}

fn pki() -> Pki {
    let ca = new_ca("SITHS-like test CA");
    let files = files(&ca, &server_cert(&ca, "ei"));
    Pki { ca, files }
}

/// The access table of these tests: a reader, two producers with a source system
/// each, a peer index for ProcessNotification and the platform.
fn access() -> AccessConfig {
    let list = |ids: &[&str]| Some(ids.iter().map(|s| s.to_string()).collect());
    AccessConfig {
        platform: vec!["SE-PLATFORM".into()],
        update: list(&["SE-WRITER", "SE-OTHER-WRITER"]),
        process_notification: list(&["SE-PEER"]),
        find_content: list(&["SE-READER", "SE-WRITER"]),
        update_sources: Some(BTreeMap::from([
            ("SE-WRITER".into(), vec![SOURCE.into()]),
            ("SE-OTHER-WRITER".into(), vec!["SE-OTHER-SOURCE".into()]),
            ("SE-PEER".into(), vec!["*".into()]),
        ])),
    }
}

/// The server on HTTPS with client certificates of `p.ca` required, and `access`.
async fn serve(p: &Pki, access: AccessConfig) -> Harness {
    let f = &p.files;
    let (cert, key, ca) = (f.cert.clone(), f.key.clone(), f.client_ca.clone());
    start(move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_client_ca = Some(ca);
        c.access = access;
    })
    .await
}

/// A client trusting `ca` that presents `leaf` (if any).
fn client(ca: &Ca, leaf: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap()]);
    if let Some(l) = leaf {
        let pem = format!("{}\n{}", l.cert.pem(), l.key.serialize_pem());
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// A client whose certificate names `hsa_id` in its subject serialNumber.
fn as_caller(p: &Pki, hsa_id: &str) -> reqwest::Client {
    client(&p.ca, Some(&client_cert(&p.ca, "a system", Some(hsa_id))))
}

/// POSTs `body` to `path` with a correlation id and `headers`; `Err` when the
/// connection is refused (the TLS handshake fails).
async fn call(
    c: &reqwest::Client,
    s: &Harness,
    path: &str,
    body: String,
    headers: &[(&str, &str)],
) -> Result<Answer, reqwest::Error> {
    let mut req = c
        .post(s.url(path))
        .header("content-type", "text/xml; charset=UTF-8")
        .header("x-skltp-correlation-id", "c-access")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await?;
    Ok(Answer {
        status: resp.status().as_u16(),
        content_type: String::new(),
        body: resp.text().await?,
    })
}

/// The refusal every forbidden call gets.
fn forbidden(caller: &str, service: &str) -> (String, String) {
    (
        "soap:Client".into(),
        format!("EI000: A technical error has occurred, error message: Caller {caller} is not authorized to call {service}"),
    )
}

/// `ei_requests_total{service, outcome}` as the server's own metrics count it.
fn counted(s: &Harness, service: &str, outcome: &str) -> u64 {
    let text = s.metrics().render(&[]);
    let line = format!("ei_requests_total{{service=\"{service}\",outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |n| n.parse().unwrap())
}

fn one_post() -> String {
    update_body("5565594230", &[(RESIDENT, "voo", None)], false)
}

#[tokio::test]
async fn the_mtls_matrix_decides_who_may_look_up() {
    let p = pki();
    let s = serve(&p, access()).await;
    let find = || find_body(RESIDENT, DOMAIN, "");
    let writer = as_caller(&p, "SE-WRITER");
    let a = call(&writer, &s, UPDATE, one_post(), &[]).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);

    // On the list: answered.
    let a = call(&as_caller(&p, "SE-READER"), &s, FIND, find(), &[])
        .await
        .unwrap();
    assert_eq!(
        (a.status, engagements(&a.body).len()),
        (200, 1),
        "{}",
        a.body
    );
    // A valid certificate whose HSA-id is not on the list: a fault naming both.
    let a = call(&as_caller(&p, "SE-STRANGER"), &s, FIND, find(), &[])
        .await
        .unwrap();
    assert_eq!(a.status, 500);
    assert_eq!(fault(&a), forbidden("SE-STRANGER", "FindContent"));
    // The HSA-id on the list, but in a certificate of another CA; no certificate:
    // no connection at all.
    let other = new_ca("another CA");
    let forged = client_cert(&other, "a system", Some("SE-READER"));
    let c = client(&p.ca, Some(&forged));
    assert!(call(&c, &s, FIND, find(), &[]).await.is_err(), "another CA");
    let c = client(&p.ca, None);
    assert!(
        call(&c, &s, FIND, find(), &[]).await.is_err(),
        "no certificate"
    );
    // The platform names the original consumer, who is then the caller: allowed
    // for a reader, refused for someone else (though the platform's own certificate
    // is valid).
    let platform = as_caller(&p, "SE-PLATFORM");
    let a = call(&platform, &s, FIND, find(), &[(CONSUMER, "SE-READER")])
        .await
        .unwrap();
    assert_eq!(
        (a.status, engagements(&a.body).len()),
        (200, 1),
        "{}",
        a.body
    );
    let a = call(&platform, &s, FIND, find(), &[(CONSUMER, "SE-NOBODY")])
        .await
        .unwrap();
    assert_eq!(fault(&a), forbidden("SE-NOBODY", "FindContent"));
    // From anyone else the header is ignored: the certificate's HSA-id decides.
    let a = call(
        &as_caller(&p, "SE-STRANGER"),
        &s,
        FIND,
        find(),
        &[(CONSUMER, "SE-READER")],
    )
    .await
    .unwrap();
    assert_eq!(fault(&a), forbidden("SE-STRANGER", "FindContent"));

    assert_eq!(counted(&s, "FindContent", "forbidden"), 3);
    assert_eq!(counted(&s, "FindContent", "OK"), 2);
    let status = get_json(&as_caller(&p, "SE-READER"), &s.url("/status")).await;
    assert_eq!(
        status["config"]["access"]["find_content"],
        serde_json::json!(["SE-READER", "SE-WRITER"])
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn each_service_has_its_own_list() {
    let p = pki();
    let s = serve(&p, access()).await;
    let reader = as_caller(&p, "SE-READER");
    let a = call(&reader, &s, UPDATE, one_post(), &[]).await.unwrap();
    assert_eq!(fault(&a), forbidden("SE-READER", "Update"));
    assert_eq!(s.store().engagement_count(), 0, "nothing written");

    let notification = |owner: &str| {
        update_body("x", &[(RESIDENT, "upp", Some("20200101000000"))], false)
            .replace("Update", "ProcessNotification")
            .replace(
                "</c:dataController>",
                &format!("</c:dataController><c:owner>{owner}</c:owner>"),
            )
    };
    let writer = as_caller(&p, "SE-WRITER");
    let a = call(&writer, &s, NOTIFY, notification("SE-IDX"), &[])
        .await
        .unwrap();
    assert_eq!(fault(&a), forbidden("SE-WRITER", "ProcessNotification"));
    assert_eq!(s.store().engagement_count(), 0, "nothing written");
    // The peer index may, with any source system (`*`).
    let peer = as_caller(&p, "SE-PEER");
    let a = call(&peer, &s, NOTIFY, notification("SE-IDX"), &[])
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(s.store().engagement_count(), 1);
    // The writer may look up (it is on find_content too).
    let a = call(&writer, &s, FIND, find_body(RESIDENT, DOMAIN, ""), &[])
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);

    assert_eq!(counted(&s, "Update", "forbidden"), 1);
    assert_eq!(counted(&s, "ProcessNotification", "forbidden"), 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_producer_cannot_write_or_delete_another_producers_posts() {
    let p = pki();
    let s = serve(&p, access()).await;
    let writer = as_caller(&p, "SE-WRITER");
    let other = as_caller(&p, "SE-OTHER-WRITER");
    let a = call(&writer, &s, UPDATE, one_post(), &[]).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let before = s.store().engagement_count();
    assert_eq!(before, 1);

    // The other producer deletes the writer's post: refused, the post stays.
    let delete = update_body("5565594230", &[(RESIDENT, "voo", None)], true);
    let a = call(&other, &s, UPDATE, delete, &[]).await.unwrap();
    assert_eq!(a.status, 500);
    assert_eq!(
        fault(&a),
        (
            "soap:Client".into(),
            format!("EI000: A technical error has occurred, error message: Caller SE-OTHER-WRITER is not authorized to write posts of sourceSystem {SOURCE} through Update")
        )
    );
    // A request mixing its own source system with another's: all or nothing.
    let tag = |source: &str| format!("<c:sourceSystem>{source}</c:sourceSystem>");
    let mixed = update_body(
        "5565594230",
        &[(RESIDENT, "own", None), (RESIDENT, "theirs", None)],
        false,
    )
    .replacen(&tag(SOURCE), &tag("SE-OTHER-SOURCE"), 1);
    let a = call(&other, &s, UPDATE, mixed, &[]).await.unwrap();
    assert!(
        fault(&a).1.contains("sourceSystem SE2321000016-15CQ"),
        "{}",
        a.body
    );
    assert_eq!(s.store().engagement_count(), before, "nothing written");
    // Through the platform, the original consumer's list applies.
    let platform = as_caller(&p, "SE-PLATFORM");
    let delete = update_body("5565594230", &[(RESIDENT, "voo", None)], true);
    let a = call(
        &platform,
        &s,
        UPDATE,
        delete,
        &[(CONSUMER, "SE-OTHER-WRITER")],
    )
    .await
    .unwrap();
    assert!(
        fault(&a)
            .1
            .contains("Caller SE-OTHER-WRITER is not authorized to write posts of sourceSystem"),
        "{}",
        a.body
    );
    assert_eq!(s.store().engagement_count(), before, "nothing deleted");
    // Its own source system is fine.
    let mine = update_body("5565594230", &[(RESIDENT, "own", None)], false)
        .replace(&tag(SOURCE), &tag("SE-OTHER-SOURCE"));
    let a = call(&other, &s, UPDATE, mine, &[]).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(s.store().engagement_count(), before + 1);
    // The writer's post is still served.
    let a = call(&writer, &s, FIND, find_body(RESIDENT, DOMAIN, ""), &[])
        .await
        .unwrap();
    assert_eq!(engagements(&a.body).len(), 2);

    assert_eq!(counted(&s, "Update", "forbidden"), 3);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_access_log_names_the_certificates_hsa_id_not_what_the_headers_claim() {
    let p = pki();
    // No allow lists: anyone with a certificate of the CA may call; the platform may
    // name the original consumer.
    let s = serve(
        &p,
        AccessConfig {
            platform: vec!["SE-PLATFORM".into()],
            ..AccessConfig::default()
        },
    )
    .await;
    let reader = as_caller(&p, "SE-READER");
    let a = call(&reader, &s, UPDATE, one_post(), &[]).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let lying = [(CONSUMER, "SE-LIAR"), ("x-vp-sender-id", "SE-LIAR")];
    let a = call(&reader, &s, FIND, find_body(RESIDENT, DOMAIN, ""), &lying)
        .await
        .unwrap();
    assert_eq!(engagements(&a.body).len(), 1);
    let platform = as_caller(&p, "SE-PLATFORM");
    let forwarded = [(CONSUMER, "SE-CONSUMER")];
    let a = call(
        &platform,
        &s,
        FIND,
        find_body(RESIDENT, DOMAIN, ""),
        &forwarded,
    )
    .await
    .unwrap();
    assert_eq!(engagements(&a.body).len(), 1);

    let status = get_json(&reader, &s.url("/status")).await;
    let admin = format!("http://{}", status["admin_listen"].as_str().unwrap());
    let url = format!("{admin}/admin/audit?resident={RESIDENT}");
    let plain = reqwest::Client::new();
    let mut records = Vec::new();
    // FindContent's record is written by the background appender: wait for it.
    for _ in 0..500 {
        let v = get_json(&plain, &url).await;
        records = v["records"].as_array().unwrap().clone();
        if records.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let who: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap(),
                r["caller"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("FindContent", "SE-CONSUMER"),
            ("FindContent", "SE-READER"),
            ("Update", "SE-READER")
        ],
        "newest first: the certificate's HSA-id, or the consumer the platform names"
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn sighup_puts_the_files_new_access_table_in_force() {
    let p = pki();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ei.toml");
    let table = |ids: &str| format!("[access]\nfind_content = [{ids}]\n");
    std::fs::write(&file, table("\"SE-READER\"")).unwrap();
    let f = &p.files;
    let (cert, key, ca, path) = (
        f.cert.clone(),
        f.key.clone(),
        f.client_ca.clone(),
        file.clone(),
    );
    let s = start(move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_client_ca = Some(ca);
        c.access = ei_server::config::Config::from_file(&path).unwrap().access;
        c.config_file = Some(path);
    })
    .await;
    let newcomer = as_caller(&p, "SE-NEW");
    let find = || find_body(RESIDENT, DOMAIN, "");
    let a = call(&newcomer, &s, FIND, find(), &[]).await.unwrap();
    assert_eq!(fault(&a), forbidden("SE-NEW", "FindContent"));

    std::fs::write(&file, table("\"SE-READER\", \"SE-NEW\"")).unwrap();
    sighup_self();
    let mut status = 0;
    for _ in 0..600 {
        status = call(&newcomer, &s, FIND, find(), &[]).await.unwrap().status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200, "the new table is in force without a restart");
    s.stop().await.unwrap();
}
