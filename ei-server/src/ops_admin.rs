//! The operations admin endpoints of the data (on the admin listener, beside the
//! notification endpoints; loopback by default, a bearer token when configured):
//! - `GET /admin/write-lock`, `POST /admin/write-lock/enable`,
//!   `POST /admin/write-lock/disable`: maintenance mode (writes refused, reads served);
//! - `POST /admin/backup?to=DIR`: an online, consistent, incremental backup into
//!   `DIR` (absolute, on the server's machine); answers posts, bytes and seconds;
//! - `GET /admin/stats`: posts per sourceSystem, dataController and serviceDomain.
//!
//! Handlers are thin: they call the store and answer JSON.

use crate::store::backup::BackupError;
use crate::store::stats::StatsField;
use crate::store::{Store, WriteLock};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

#[derive(Clone)]
struct OpsState {
    store: Arc<Store>,
}

/// The data's admin routes (the bearer check is [`crate::admin`]'s).
pub fn router(store: Arc<Store>) -> Router {
    let state = OpsState { store };
    Router::new()
        .route("/admin/write-lock", get(write_lock))
        .route("/admin/write-lock/enable", post(enable))
        .route("/admin/write-lock/disable", post(disable))
        .route("/admin/backup", post(backup))
        .route("/admin/stats", get(stats))
        .with_state(state)
}

/// The write lock as JSON: `{"enabled": bool, "since": RFC 3339 UTC or null}`.
pub fn write_lock_json(l: WriteLock) -> serde_json::Value {
    let since = (l.since_unix > 0)
        .then(|| time::OffsetDateTime::from_unix_timestamp(l.since_unix as i64).ok())
        .flatten()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    serde_json::json!({ "enabled": l.enabled, "since": since })
}

async fn write_lock(State(s): State<OpsState>) -> Response {
    Json(write_lock_json(s.store.write_lock())).into_response()
}

async fn enable(State(s): State<OpsState>) -> Response {
    switch(&s.store, true).await
}

async fn disable(State(s): State<OpsState>) -> Response {
    switch(&s.store, false).await
}

async fn switch(store: &Store, enabled: bool) -> Response {
    match store.set_write_lock(enabled).await {
        Ok(l) => Json(write_lock_json(l)).into_response(),
        Err(e) => failed("switching the write lock", &*e),
    }
}

#[derive(serde::Deserialize)]
struct BackupQuery {
    to: Option<std::path::PathBuf>,
}

async fn backup(State(s): State<OpsState>, Query(q): Query<BackupQuery>) -> Response {
    let Some(to) = q.to.filter(|p| p.is_absolute()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": "give the backup directory as ?to=DIR, an absolute path" })),
        )
            .into_response();
    };
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || store.backup(&to)).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(BackupError::Busy)) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "error": "a backup is already running" })),
        )
            .into_response(),
        Ok(Err(e)) => failed("the backup", &e),
        Err(e) => failed("the backup task", &e),
    }
}

async fn stats(State(s): State<OpsState>) -> Response {
    let stats = s.store.stats();
    let mut json = serde_json::Map::new();
    json.insert("posts".into(), s.store.engagement_count().into());
    for f in StatsField::ALL {
        let by: serde_json::Map<String, serde_json::Value> =
            stats.of(f).map(|(v, n)| (v.to_owned(), n.into())).collect();
        json.insert(f.name().into(), by.into());
    }
    Json(serde_json::Value::Object(json)).into_response()
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what} failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(serde_json::json!({ "error": format!("{what} failed: {e}") })),
    )
        .into_response()
}
