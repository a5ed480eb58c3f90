//! HTTPS on the service listener: mTLS (who may connect, the HSA-id a client
//! certificate names) and SIGHUP reload, with certificates rcgen makes per run and a
//! raw rustls client, so the tests see exactly which certificate the server presents.

use crate::common::*;
use crate::pki::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

async fn https(f: &Files, client_ca: bool) -> Harness {
    let (cert, key, ca) = (f.cert.clone(), f.key.clone(), f.client_ca.clone());
    start(move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_client_ca = client_ca.then_some(ca);
    })
    .await
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Connects trusting `ca`, presenting `client` if given.
async fn connect(s: &Harness, ca: &Ca, client: Option<&Leaf>) -> std::io::Result<Tls> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => builder.with_client_auth_cert(c.der(), c.key()).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(s.addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The certificate the server presented on `tls`.
fn presented(tls: &Tls) -> Vec<u8> {
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One keep-alive GET on `tls`; the response head and body as text (what arrived
/// before the server's alert or close when it refuses).
async fn get(tls: &mut Tls, path: &str) -> std::io::Result<String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    tls.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tls.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if len.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The server's `ei_connections_closed_total{reason="tls_handshake"}`, read over a
/// connection `client` may make.
async fn tls_failures(s: &Harness, ca: &Ca, client: Option<&Leaf>) -> u64 {
    let mut tls = connect(s, ca, client).await.unwrap();
    let text = get(&mut tls, "/metrics").await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("ei_connections_closed_total{reason=\"tls_handshake\"} "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

/// Whether a request on a connection made with `client` is answered.
async fn answered(s: &Harness, ca: &Ca, client: Option<&Leaf>) -> bool {
    let Ok(mut tls) = connect(s, ca, client).await else {
        return false;
    };
    get(&mut tls, "/health")
        .await
        .is_ok_and(|t| t.starts_with("HTTP/1.1 200"))
}

#[test]
fn the_caller_is_the_serial_number_else_the_common_name() {
    let ca = new_ca("test CA");
    let both = client_cert(&ca, "some system", Some("SE2321000016-ABCD"));
    let cn = client_cert(&ca, "SE2321000016-CN", None);
    assert_eq!(
        ei_server::tls::caller_hsa_id(both.cert.der()).as_deref(),
        Some("SE2321000016-ABCD")
    );
    assert_eq!(
        ei_server::tls::caller_hsa_id(cn.cert.der()).as_deref(),
        Some("SE2321000016-CN")
    );
}

#[tokio::test]
async fn mtls_admits_certificates_of_the_client_ca_and_refuses_the_rest() {
    let ca = new_ca("client CA");
    let other = new_ca("another CA");
    let f = files(&ca, &server_cert(&ca, "ei"));
    let s = https(&f, true).await;
    assert!(s.base.starts_with("https://"), "{}", s.base);
    let good = client_cert(&ca, "c", Some("SE2321000016-GOOD"));
    let stranger = client_cert(&other, "c", Some("SE2321000016-GOOD"));

    assert!(answered(&s, &ca, Some(&good)).await);
    let before = tls_failures(&s, &ca, Some(&good)).await;
    assert!(
        !answered(&s, &ca, Some(&stranger)).await,
        "a certificate of another CA"
    );
    assert!(!answered(&s, &ca, None).await, "no certificate");
    // Both counted by the server (the refusal lands after the client's side of
    // the TLS 1.3 handshake, so wait on the counter).
    for _ in 0..600 {
        if tls_failures(&s, &ca, Some(&good)).await >= before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tls_failures(&s, &ca, Some(&good)).await, before + 2);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_client_ca_no_certificate_is_asked_for() {
    let ca = new_ca("server CA");
    let f = files(&ca, &server_cert(&ca, "ei"));
    let s = https(&f, false).await;
    assert!(answered(&s, &ca, None).await);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn sighup_serves_the_new_certificate_and_open_connections_survive() {
    let ca = new_ca("server CA");
    let first = server_cert(&ca, "first");
    let f = files(&ca, &first);
    let s = https(&f, false).await;
    // Served: the SIGHUP handler is installed before the listener serves.
    let mut open = connect(&s, &ca, None).await.unwrap();
    assert!(get(&mut open, "/health")
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert_eq!(presented(&open), first.cert.der().to_vec());

    let second = server_cert(&ca, "second");
    second.write(&f.cert, &f.key);
    sighup_self();
    let mut served = Vec::new();
    for _ in 0..600 {
        let tls = connect(&s, &ca, None).await.unwrap();
        served = presented(&tls);
        if served == second.cert.der().to_vec() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served, second.cert.der().to_vec(), "the new certificate");
    // The connection opened before the reload still works, with its certificate.
    assert!(get(&mut open, "/health")
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    assert_eq!(presented(&open), first.cert.der().to_vec());

    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_key_file_stops_the_start_naming_the_file() {
    let ca = new_ca("server CA");
    let f = files(&ca, &server_cert(&ca, "ei"));
    std::fs::remove_file(&f.key).unwrap();
    let mut config = test_config(|_| {});
    config.tls_cert = Some(f.cert.clone());
    config.tls_key = Some(f.key.clone());
    let s = Harness::start(config, Default::default()).await.unwrap();
    let err = s.stop().await.unwrap_err().to_string();
    assert!(err.contains("server.key"), "{err}");
}
