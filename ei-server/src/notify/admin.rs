//! The admin endpoints, on their own listener (loopback by default; a bearer token
//! when configured):
//! - `GET /admin/subscribers`: each subscriber with pending and dead-letter counts,
//!   delivered/retried counts and the last error;
//! - `POST /admin/subscribers/{logical address}/dead-letters/replay`;
//! - `DELETE /admin/subscribers/{logical address}/dead-letters`;
//! - `POST /admin/subscribers/refresh`: ask the registry again.

use super::Notifier;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use std::sync::Arc;

#[derive(Clone)]
struct AdminState {
    notifier: Arc<Notifier>,
    token: Option<Arc<str>>,
}

/// The admin routes.
pub fn router(notifier: Arc<Notifier>, token: Option<String>) -> Router {
    let state = AdminState {
        notifier,
        token: token.map(Into::into),
    };
    Router::new()
        .route("/admin/subscribers", get(list))
        .route("/admin/subscribers/refresh", post(refresh))
        .route("/admin/subscribers/{la}/dead-letters/replay", post(replay))
        .route("/admin/subscribers/{la}/dead-letters", delete(drop_letters))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

async fn authorize(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(&format!("Bearer {token}")) {
            return (StatusCode::UNAUTHORIZED, "admin token required\n").into_response();
        }
    }
    next.run(req).await
}

async fn list(State(s): State<AdminState>) -> Response {
    Json(s.notifier.status()).into_response()
}

async fn refresh(State(s): State<AdminState>) -> Response {
    match s.notifier.refresh().await {
        Ok(n) => Json(serde_json::json!({ "subscribers": n })).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({ "error": e.to_string(), "used": "cache file" })),
        )
            .into_response(),
    }
}

async fn replay(State(s): State<AdminState>, Path(la): Path<String>) -> Response {
    match s.notifier.replay(&la).await {
        Some(report) => Json(report).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no subscriber {la}\n")).into_response(),
    }
}

async fn drop_letters(State(s): State<AdminState>, Path(la): Path<String>) -> Response {
    match s.notifier.drop_dead_letters(&la) {
        Ok(n) => Json(serde_json::json!({ "dropped_batches": n })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
