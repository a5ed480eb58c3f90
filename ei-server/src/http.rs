//! HTTP: the three SOAP endpoints, their WSDL and XSDs, and the operations endpoints
//! (`/health` = `/livez`, `/ready` = `/readyz`, `/status`, `/metrics`). Handlers are thin: read the body
//! within the limit, hand it to [`Service`], write the reply.

mod conn;

pub use conn::{serve, ConnStats, Limits};

use crate::codec::Operation;
use crate::config::Config;
use crate::rules::{self, echo};
use crate::service::{Reply, Service};
use crate::wsdl;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

pub const CORRELATION_HEADER: &str = "x-skltp-correlation-id";
pub const CONSUMER_HEADER: &str = "x-rivta-original-serviceconsumer-hsaid";
/// The platform's sender header (the calling system's HSA-id).
pub const SENDER_HEADER: &str = "x-vp-sender-id";
const XML: &str = "text/xml; charset=UTF-8";

/// What the handlers share.
pub struct AppState {
    pub service: Arc<Service>,
    pub config: Config,
    pub started: Instant,
    /// True while the store is open and requests are served.
    pub ready: AtomicBool,
    /// Notification delivery, when subscribers are configured.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    /// Where the admin listener is bound, when it runs.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// The service listener's connection counters.
    pub connections: Arc<ConnStats>,
}

/// All routes of the server.
pub fn router(state: Arc<AppState>) -> Router {
    let mut r = Router::new();
    for op in Operation::ALL {
        r = r.route(
            wsdl::endpoint_path(op),
            get(move |q: RawQuery, h: HeaderMap| async move { wsdl_handler(op, q, h) })
                .post(move |s: State<Arc<AppState>>, req: Request| soap_handler(op, s, req)),
        );
    }
    r.route("/skltp-ei/schemas/{*path}", get(schema_handler))
        .route("/health", get(|| async { "OK" }))
        .route("/livez", get(|| async { "OK" }))
        .route("/ready", get(ready_handler))
        .route("/readyz", get(ready_handler))
        .route("/status", get(status_handler))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn soap_handler(op: Operation, State(state): State<Arc<AppState>>, req: Request) -> Response {
    let (correlation_id, consumer, sender) = {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            header(CORRELATION_HEADER),
            header(CONSUMER_HEADER),
            header(SENDER_HEADER),
        )
    };
    let certificate = req.extensions().get::<crate::tls::Caller>();
    let who = crate::access::identify(
        &state.service.access().platform,
        crate::access::Presented {
            client_certificates: state.config.tls_client_ca.is_some() && certificate.is_some(),
            certificate: certificate.and_then(|c| c.hsa_id.as_deref()),
            original_consumer: consumer.as_deref(),
            sender: sender.as_deref(),
        },
    );
    let via = match &who {
        crate::access::Identity::Verified { via: Some(p), .. } => p.as_str(),
        _ => "-",
    };
    let span = tracing::info_span!(
        "request",
        service = op.name(),
        correlation_id = %echo(correlation_id.as_deref().unwrap_or("-")),
        consumer = %echo(consumer.as_deref().unwrap_or("-")),
        caller = %echo(who.name()),
        via = %echo(via),
    );
    async move {
        // The header fault comes first, before (and without) reading the body; then
        // whether this caller may call this service at all.
        if let Err(e) = rules::check_correlation_id(correlation_id.as_deref()) {
            return soap_response(state.service.refuse(op, e));
        }
        if let Err(forbidden) = state.service.authorize(op, &who) {
            return soap_response(forbidden);
        }
        let _admitted = match state.service.admit(op) {
            Ok(permit) => permit,
            Err(busy) => return soap_response(busy),
        };
        let limit = state.config.max_body_bytes;
        let timeout = std::time::Duration::from_millis(state.config.body_read_timeout_ms);
        let body = tokio::time::timeout(timeout, axum::body::to_bytes(req.into_body(), limit));
        let reply = match body.await {
            Ok(Ok(body)) => {
                Service::call_shared(&state.service, op, correlation_id.as_deref(), &who, body)
                    .await
            }
            Ok(Err(e)) => too_large_or_unreadable(&state, op, limit, &e),
            Err(_) => state.service.refuse(
                op,
                rules::EiError::Technical(format!(
                    "the request body was not received within {} ms",
                    timeout.as_millis()
                )),
            ),
        };
        soap_response(reply)
    }
    .instrument(span)
    .await
}

/// A body over the limit (or one the connection failed to deliver) gets an EI000
/// fault; the header check still comes first.
fn too_large_or_unreadable(
    state: &AppState,
    op: Operation,
    limit: usize,
    e: &axum::Error,
) -> Reply {
    let too_large = std::error::Error::source(e)
        .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        || e.to_string().contains("length limit");
    let message = if too_large {
        format!("the request body is larger than the limit of {limit} bytes")
    } else {
        format!("the request body could not be read: {e}")
    };
    state
        .service
        .refuse(op, crate::rules::EiError::Technical(message))
}

fn soap_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(XML))],
        reply.body,
    )
        .into_response()
}

fn wsdl_handler(op: Operation, RawQuery(q): RawQuery, headers: HeaderMap) -> Response {
    let wants_wsdl = q
        .as_deref()
        .is_some_and(|q| q.split('&').any(|p| p.eq_ignore_ascii_case("wsdl")));
    if !wants_wsdl {
        let text = format!(
            "POST {} requests here as SOAP 1.1; GET {}?wsdl for the WSDL.\n",
            op.name(),
            wsdl::endpoint_path(op)
        );
        return (StatusCode::BAD_REQUEST, text).into_response();
    }
    let body = wsdl::wsdl(op, &base_url(&headers));
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(XML))],
        body,
    )
        .into_response()
}

/// The server's URL as the client reached it: the Host header when it is a valid
/// host (name, IPv4 or bracketed IPv6, optional port), else `localhost`;
/// X-Forwarded-Proto when it is `http` or `https`. Nothing else reaches the WSDL.
fn base_url(headers: &HeaderMap) -> String {
    let get = |h| headers.get(h).and_then(|v: &HeaderValue| v.to_str().ok());
    let host = get(header::HOST)
        .filter(|h| valid_host(h))
        .unwrap_or("localhost");
    let proto = match get(header::HeaderName::from_static("x-forwarded-proto")) {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{proto}://{host}")
}

/// `host[:port]` as RFC 3986 allows it in an authority, without user info: a
/// registered name or IPv4 address of letters, digits, `-` and `.`, or an IPv6
/// literal in brackets; the port 1–5 digits.
fn valid_host(h: &str) -> bool {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.starts_with('[') || host.ends_with(']') => (host, Some(port)),
        _ => (h, None),
    };
    let port_ok =
        port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = match host.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            (1..=253).contains(&host.len())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        }
    };
    port_ok && host_ok
}

async fn schema_handler(Path(path): Path<String>) -> Response {
    match wsdl::schema(&path) {
        Some(text) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(XML))],
            text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no schema {path}\n")).into_response(),
    }
}

/// What `/ready`, `/readyz` and the `ei_ready` gauge report: one answer for all three.
async fn ready_handler(State(state): State<Arc<AppState>>) -> Response {
    let problems = not_ready_because(&state).await;
    if problems.is_empty() {
        (StatusCode::OK, "READY").into_response()
    } else {
        let text = format!("NOT READY: {}\n", problems.join("; "));
        (StatusCode::SERVICE_UNAVAILABLE, text).into_response()
    }
}

/// Why the index is not ready: shutting down, or the store cannot take writes (writer
/// stopped, last group commit failed, free disk under the floor). Empty when ready.
async fn not_ready_because(state: &AppState) -> Vec<String> {
    let health = state.service.store().health().clone();
    let mut problems = tokio::task::spawn_blocking(move || health.problems())
        .await
        .unwrap_or_else(|e| vec![format!("health check failed: {e}")]);
    if !state.ready.load(Ordering::Relaxed) {
        problems.insert(0, "shutting down".to_owned());
    }
    problems
}

async fn status_handler(State(state): State<Arc<AppState>>) -> Response {
    let store = state.service.store().clone();
    let (count, size) =
        tokio::task::spawn_blocking(move || (store.engagement_count(), store.size_on_disk()))
            .await
            .unwrap_or((0, 0));
    let c = &state.config;
    let problems = not_ready_because(&state).await;
    let health = state.service.store().health();
    let json = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": state.started.elapsed().as_secs(),
        "ready": problems.is_empty(),
        "not_ready_because": problems,
        "store_recoveries": health.recoveries(),
        "free_disk_bytes": health.free_bytes(),
        "engagements": count,
        "store_bytes": size,
        "admin_listen": state.admin_addr.map(|a| a.to_string()),
        "write_lock": crate::ops_admin::write_lock_json(state.service.store().write_lock()),
        "subscribers": state.notifier.as_ref().map(|n| n.subscriber_count()),
        "config": {
            "listen": c.listen.to_string(),
            "data_dir": c.data_dir,
            "store": c.store_kind().map(|k| k.display()).unwrap_or_default(),
            "hsa_id": c.hsa_id,
            "alternative_hsa_id": c.alternative_hsa_id,
            "platform_hsa_id": c.platform_hsa_id,
            "reserved_hsa_ids": c.rules().reserved_hsa_ids,
            "check_logical_address": c.check_logical_address,
            "error_mode": c.error_mode,
            "max_body_bytes": c.max_body_bytes,
            "wal_sync": c.wal_sync,
            "max_group_requests": c.max_group_requests,
            "access": *state.service.access(),
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

async fn metrics_handler(State(state): State<Arc<AppState>>) -> Response {
    let store = state.service.store().clone();
    let data_dir = state.config.data_dir.clone();
    let (gauges, scraped) = tokio::task::spawn_blocking(move || {
        let mut scraped = String::with_capacity(8192);
        crate::scrape::render(&mut scraped, &store, &data_dir);
        let gauges = (
            store.engagement_count(),
            store.size_on_disk(),
            store
                .property("rocksdb.estimate-live-data-size")
                .unwrap_or(0),
        );
        (gauges, scraped)
    })
    .await
    .unwrap_or_default();
    let mut text = state.service.store().metrics().render(&[
        ("ei_engagements", "Posts in the index.", gauges.0 as f64),
        (
            "ei_store_bytes",
            "Bytes of the data directory on disk (PostgreSQL: the index's tables and indexes).",
            gauges.1 as f64,
        ),
        (
            "ei_store_live_data_bytes",
            "RocksDB's estimate of live data.",
            gauges.2 as f64,
        ),
        (
            "ei_write_lock",
            "1 while the write lock (maintenance mode) refuses writes, else 0.",
            f64::from(u8::from(state.service.store().is_write_locked())),
        ),
        (
            "ei_uptime_seconds",
            "Seconds since start.",
            state.started.elapsed().as_secs_f64(),
        ),
        (
            "ei_ready",
            "1 while the store is open and requests are served (what /readyz answers).",
            f64::from(u8::from(not_ready_because(&state).await.is_empty())),
        ),
        (
            "ei_store_recoveries",
            "Times the store was reopened after a failed write (PostgreSQL: reachable again after a failure).",
            state.service.store().health().recoveries() as f64,
        ),
    ]);
    text.push_str(&state.connections.render());
    if let Some(n) = &state.notifier {
        text.push_str(&n.render_metrics());
    }
    text.push_str(&scraped);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        Body::from(text),
    )
        .into_response()
}
