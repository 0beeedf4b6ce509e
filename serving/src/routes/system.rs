//! Health, fallbacks and the span every request is traced in.

use std::any::Any;

use axum::extract::{Request, State};
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::Span;

use crate::error::ApiError;
use crate::state::AppState;

pub async fn healthz(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "log": state.log.backend(),
        "view_frontier": state.views.progress.frontier(),
    }))
}

/// Readiness, as opposed to `/healthz` (liveness): `503 not_ready` (with how many records of
/// the log as of start the views still miss, per source topic) until the views have caught up
/// after start or replay, then `200` for good.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    state.check_ready().map_err(ApiError::NotReady)?;
    Ok(Json(json!({
        "status": "ready",
        "view_frontier": state.views.progress.frontier(),
    })))
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::RouteNotFound(format!("{method} {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A panic in a handler is a bug; the client still gets the JSON error shape, never a reset.
pub fn panicked(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::Internal.into_response()
}

/// Method and path only: headers (Authorization) and the query string stay out of traces.
/// `user_id` is filled in by authentication when the request is signed in.
pub fn span(request: &Request) -> Span {
    tracing::info_span!("http request", method = %request.method(), path = %request.uri().path(), user_id = tracing::field::Empty)
}
