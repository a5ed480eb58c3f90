//! The admin listener (`admin_listen`, loopback by default): the one place that
//! assembles its routes (the data's operations from [`crate::ops_admin`], and the
//! notification routes from [`crate::notify::admin`] when delivery runs) and applies
//! its access rule to all of them: a bearer token compared in constant time, so
//! response timing tells a caller nothing about how much of a guess was right.
//! Whether a token is required is the configuration's rule: always when the
//! listener is not on loopback.

use crate::notify::Notifier;
use crate::store::Store;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The admin listener's task: ends when the stop signal is seen and calls drained.
pub type AdminTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// Every admin route, behind the bearer check when `token` is set (unknown paths
/// too, so an unauthenticated caller learns nothing about which routes exist).
pub fn router(store: Arc<Store>, notifier: Option<Arc<Notifier>>, token: Option<String>) -> Router {
    let mut app = crate::ops_admin::router(store);
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
