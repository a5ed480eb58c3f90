//! HTTPS with a client certificate (the platform's mutual TLS): a TLS proxy in front of
//! the real index demands a certificate from the test CA. A profile with `tls_cert`,
//! `tls_key` and `tls_ca` loads through it; one without a client certificate is turned
//! away at the handshake. The certificates are test fixtures in `tests/tls/`.

use crate::common::*;
use ei_loader::clock::SystemClock;
use ei_loader::run::{Outcome, RunError};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls")
}

fn server_config() -> ServerConfig {
    let dir = tls_dir();
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap()
}

/// Terminates mutual TLS on 127.0.0.1 and forwards each request to `upstream`.
async fn start_tls_proxy(upstream: String) -> String {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| forward(req, upstream.clone()));
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}

async fn forward(
    req: hyper::Request<Incoming>,
    upstream: String,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let url = format!("{upstream}{}", req.uri().path());
    let cid = req
        .headers()
        .get("x-skltp-correlation-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let resp = reqwest::Client::new()
        .post(url)
        .header("x-skltp-correlation-id", cid)
        .header("content-type", "text/xml; charset=UTF-8")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    Ok(hyper::Response::builder()
        .status(status)
        .header("content-type", "text/xml; charset=UTF-8")
        .body(Full::new(bytes))
        .unwrap())
}

/// An environment file whose `test` profile reaches `base` with the given TLS keys.
fn tls_env(dir: &Path, base: &str, client_cert: bool) -> PathBuf {
    let tls = tls_dir();
    let cert = if client_cert {
        format!(
            "tls_cert = {:?}\ntls_key = {:?}\n",
            tls.join("client.pem"),
            tls.join("client.key")
        )
    } else {
        String::new()
    };
    let p = dir.join("tls.toml");
    std::fs::write(&p, format!("[env.test]\nurl = \"{base}\"\nlogical_address = \"{INDEX_HSA_ID}\"\n{cert}tls_ca = {:?}\n", tls.join("ca.pem"))).unwrap();
    p
}

async fn tls_plan(dir: &Path, env: &Path, input: &Path) -> (PathBuf, ei_loader::plan::Plan) {
    let out = dir.join("tls-plan.toml");
    let args = [
        "--config",
        env.to_str().unwrap(),
        "plan",
        input.to_str().unwrap(),
        "--env",
        "test",
        "--start",
        "2000-01-01",
        "--name",
        "TLS",
        "--pause-ms",
        "0",
        "--batch-size",
        "10",
        "--max-attempts",
        "1",
        "-o",
        out.to_str().unwrap(),
    ];
    assert_eq!(cli(&args).await, 0);
    (out.clone(), ei_loader::plan::load(&out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_over_mutual_tls_with_the_profiles_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let proxy = start_tls_proxy(server.base.clone()).await;
    let input = write_csv(dir.path(), "load.csv", (0..25).map(row));
    let env = tls_env(dir.path(), &proxy, true);
    let (plan_path, plan) = tls_plan(dir.path(), &env, &input).await;
    assert_eq!(
        plan.target.tls.cert.as_deref(),
        Some(tls_dir().join("client.pem").as_path())
    );

    let summary = run_now(&plan_path, &plan).await;
    assert_eq!((summary.outcome, summary.loaded), (Outcome::Completed, 25));
    assert_eq!(count(&server.base).await, 25);
    let env_arg = env.to_str().unwrap();
    assert_eq!(
        cli(&[
            "--config",
            env_arg,
            "probe",
            &proxy,
            "--env",
            "test",
            "--known",
            &resident(3)
        ])
        .await,
        0
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_certificate_the_handshake_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_index(&dir.path().join("data"), |_| {}).await;
    let proxy = start_tls_proxy(server.base.clone()).await;
    let input = write_csv(dir.path(), "load.csv", (0..5).map(row));
    let env = tls_env(dir.path(), &proxy, false);
    let (plan_path, plan) = tls_plan(dir.path(), &env, &input).await;

    let err = run_on(&plan_path, &plan, Arc::new(SystemClock), true)
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::GaveUp { attempts: 1, .. }), "{err}");
    assert_eq!(count(&server.base).await, 0);
    server.stop().await.unwrap();
}
