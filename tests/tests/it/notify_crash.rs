//! `kill -9` of the server between the write and the delivery: after the restart the
//! notification is delivered (the outbox is in the same synced batch as the posts).

use ei_e2e::{update_body, ServerProcess};
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_survives_kill_9_before_delivery() {
    // A port with nobody listening yet: the subscriber is "down" during the write.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ei.toml");
    std::fs::write(
        &config,
        format!(
            "[notifications]\nretry_delay_ms = 50\nmax_backoff_ms = 200\nmax_attempts = 100000\nadmin_listen = \"127.0.0.1:0\"\n\
             [[notifications.subscribers]]\nlogical_address = \"SE1\"\nurl = \"http://127.0.0.1:{port}/pn\"\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let cfg = config.to_str().unwrap();
    let mut server = ServerProcess::start(&data, &["--config", cfg]);
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/skltp-ei/update-service/v1", server.base))
        .header("x-skltp-correlation-id", "crash")
        .body(update_body("191212121212", 5, "20240101120000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.kill9();

    // The subscriber comes up; then the server restarts on the same data.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let rec = received.clone();
    let app = axum::Router::new().route(
        "/pn",
        axum::routing::post(move |body: String| {
            let rec = rec.clone();
            async move {
                rec.lock().unwrap().push(body);
                let mut out = String::new();
                ei_server::codec::write_result(
                    &mut out,
                    ei_server::operation::WriteOperation::ProcessNotification,
                    ei_server::codec::ResultCode::Ok,
                    None,
                );
                out
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let _server = ServerProcess::start(&data, &["--config", cfg]);

    let mut categories = Vec::new();
    for _ in 0..400 {
        categories = received
            .lock()
            .unwrap()
            .iter()
            .flat_map(
                |b| match ei_server::codec::parse_request(b.as_bytes()).unwrap() {
                    ei_server::codec::Request::Write { transactions, .. } => transactions,
                    _ => vec![],
                },
            )
            .map(|t| {
                t.engagement
                    .get(ei_server::model::Field::Categorization)
                    .unwrap()
                    .to_owned()
            })
            .collect::<Vec<_>>();
        if categories.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    categories.sort();
    categories.dedup();
    assert_eq!(
        categories,
        (0..5).map(|i| format!("cat-{i}")).collect::<Vec<_>>()
    );
}
