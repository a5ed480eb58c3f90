//! The admin listener (`admin_listen`, loopback by default): the one place that
//! assembles its routes (the data's operations from [`crate::ops_admin`], the access
//! log's `GET /admin/audit` (below), and the notification routes from
//! [`crate::notify::admin`] when delivery runs) and applies
//! its access rule to all of them: a bearer token compared in constant time, so
//! response timing tells a caller nothing about how much of a guess was right.
//! Whether a token is required is the configuration's rule: always when the
//! listener is not on loopback.

use crate::notify::Notifier;
use crate::store::Store;
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The admin listener's task: ends when the stop signal is seen and calls drained.
pub type AdminTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Every admin route, behind the bearer check when `token` is set (unknown paths
/// too, so an unauthenticated caller learns nothing about which routes exist).
pub fn router(store: Arc<Store>, notifier: Option<Arc<Notifier>>, token: Option<String>) -> Router {
    let mut app = crate::ops_admin::router(store.clone()).merge(audit_router(store));
    if let Some(notifier) = notifier {
        app = app.merge(crate::notify::admin::router(notifier));
    }
    let token: Option<Arc<str>> = token.filter(|t| !t.is_empty()).map(Into::into);
    app.layer(middleware::from_fn_with_state(token, authorize))
}

/// Binds `addr` and serves `app` until `stop` turns true.
pub async fn start(
    addr: SocketAddr,
    app: Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, AdminTask)> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(admin_addr = %addr, "admin listener");
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
    Ok((addr, task))
}

async fn authorize(State(token): State<Option<Arc<str>>>, req: Request, next: Next) -> Response {
    if let Some(token) = &token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if !bearer_ok(given, token) {
            return (StatusCode::UNAUTHORIZED, "admin token required\n").into_response();
        }
    }
    next.run(req).await
}

/// Records one `GET /admin/audit` answers when no `limit` is given, and at most.
const AUDIT_LIMIT: usize = 1000;
const AUDIT_LIMIT_MAX: usize = 10_000;

fn audit_router(store: Arc<Store>) -> Router {
    Router::new()
        .route("/admin/audit", get(audit))
        .with_state(store)
}

#[derive(serde::Deserialize)]
struct AuditParams {
    resident: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

/// `GET /admin/audit?resident=R[&from=T][&to=T][&limit=N]`: `R`'s access records
/// with `from <= time < to` (RFC 3339 or Unix milliseconds), newest first, at most
/// `limit` (default 1000, at most 10000); `truncated` says whether more matched.
async fn audit(State(store): State<Arc<Store>>, Query(p): Query<AuditParams>) -> Response {
    let bad = |why: String| (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
    let Some(resident) = p.resident.filter(|r| !r.is_empty()) else {
        return bad("resident=... is required".into());
    };
    let from = match p.from.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(0),
        Err(e) => return bad(format!("from: {e}")),
    };
    let to = match p.to.as_deref().map(parse_time).transpose() {
        Ok(t) => t.unwrap_or(u64::MAX),
        Err(e) => return bad(format!("to: {e}")),
    };
    let limit = p.limit.unwrap_or(AUDIT_LIMIT);
    if limit == 0 || limit > AUDIT_LIMIT_MAX {
        return bad(format!("limit: between 1 and {AUDIT_LIMIT_MAX}"));
    }
    let found = tokio::task::spawn_blocking({
        let resident = resident.clone();
        move || store.audit(&resident, from, to, limit + 1)
    })
    .await;
    let mut records = match found {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the access log failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response();
        }
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    let truncated = records.len() > limit;
    records.truncate(limit);
    let records: Vec<_> = records
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "time": rfc3339_ms(r.time_ms),
                "caller": r.caller,
                "correlation_id": r.correlation_id,
                "operation": r.operation,
                "service_domain": r.service_domain,
                "posts": r.posts,
            })
        })
        .collect();
    Json(serde_json::json!({
        "resident": resident,
        "records": records,
        "truncated": truncated,
    }))
    .into_response()
}

/// Unix milliseconds from RFC 3339 or a plain number of milliseconds.
fn parse_time(s: &str) -> Result<u64, String> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("not RFC 3339 nor Unix milliseconds: {e}"))?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| "before 1970".to_owned())
}

fn rfc3339_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Whether an `Authorization` header value carries `Bearer <token>`. Runs in time
/// that depends only on the lengths, not on where the first difference is.
pub fn bearer_ok(given: Option<&str>, token: &str) -> bool {
    let Some(given) = given.and_then(|g| g.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xFF);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_ok;

    #[test]
    fn only_the_exact_token_passes() {
        assert!(bearer_ok(Some("Bearer s3cret"), "s3cret"));
        for wrong in [
            None,
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret!"),
            Some("Bearer S3cret"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            assert!(!bearer_ok(wrong, "s3cret"), "{wrong:?}");
        }
    }
}
