//! The admin endpoints, on their own listener (loopback by default; a bearer token
//! when configured):
//! - `GET /admin/subscribers`: each subscriber with its state (active, absent since T,
//!   parked, resyncing, dropped with its gaps), pending entries, lag, dead-letter
//!   counts, delivered/retried counts and the last error;
//! - `POST /admin/subscribers/{logical address}/dead-letters/replay`;
//! - `GET /admin/subscribers/{logical address}/dead-letters`: each with its error
//!   and transactions; `DELETE` drops them;
//! - `POST /admin/subscribers/{logical address}/resync`: send the index's current
//!   state, then continue from the head (brings a parked subscriber back);
//! - `POST /admin/subscribers/refresh[?force=true]`: ask the registry again (`force`
//!   obeys an answer that drops many subscribers at once).

use super::operations::OperationError;
use super::refresh::RefreshError;
use super::Notifier;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

#[derive(Clone)]
struct AdminState {
    notifier: Arc<Notifier>,
}

/// The notification admin routes (the bearer check is [`crate::admin`]'s).
pub fn router(notifier: Arc<Notifier>) -> Router {
    let state = AdminState { notifier };
    Router::new()
        .route("/admin/subscribers", get(list))
        .route("/admin/subscribers/refresh", post(refresh))
        .route("/admin/subscribers/{la}/dead-letters/replay", post(replay))
        .route(
            "/admin/subscribers/{la}/dead-letters",
            get(list_letters).delete(drop_letters),
        )
        .route("/admin/subscribers/{la}/resync", post(resync))
        .with_state(state)
}

async fn list(State(s): State<AdminState>) -> Response {
    Json(s.notifier.status()).into_response()
}

#[derive(serde::Deserialize)]
struct RefreshParams {
    #[serde(default)]
    force: bool,
}

async fn refresh(State(s): State<AdminState>, Query(p): Query<RefreshParams>) -> Response {
    match s.notifier.refresh(p.force).await {
        Ok(n) => Json(serde_json::json!({ "subscribers": n })).into_response(),
        Err(e @ RefreshError::Registry(_)) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({ "error": e.to_string(), "used": "cache" })),
        )
            .into_response(),
        Err(e @ RefreshError::Suspect { .. }) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({ "error": e.to_string(), "used": "previous set" })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// An operation's error as a status and a JSON body (the address is JSON-escaped).
fn failed(e: OperationError) -> Response {
    let status = match &e {
        OperationError::NotFound(_) => StatusCode::NOT_FOUND,
        OperationError::Conflict(..) => StatusCode::CONFLICT,
        OperationError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

async fn replay(State(s): State<AdminState>, Path(la): Path<String>) -> Response {
    match s.notifier.replay(&la).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => failed(e),
    }
}

async fn list_letters(State(s): State<AdminState>, Path(la): Path<String>) -> Response {
    match s.notifier.dead_letters(&la).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => failed(e),
    }
}

async fn drop_letters(State(s): State<AdminState>, Path(la): Path<String>) -> Response {
    match s.notifier.drop_dead_letters(&la).await {
        Ok(n) => Json(serde_json::json!({ "dropped_batches": n })).into_response(),
        Err(e) => failed(e),
    }
}

async fn resync(State(s): State<AdminState>, Path(la): Path<String>) -> Response {
    match s.notifier.resync(&la).await {
        Ok(from) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({ "resync_from": from })),
        )
            .into_response(),
        Err(e) => failed(e),
    }
}
