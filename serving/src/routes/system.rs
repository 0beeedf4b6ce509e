//! Health, fallbacks and the span every request is traced in.

use std::any::Any;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use tracing::Span;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    /// Which event log backend this process uses.
    log: &'static str,
    /// Epoch ms below which the views are complete.
    view_frontier: u64,
}

/// Liveness
#[utoipa::path(get, path = "/healthz", tag = "system", responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health { status: "ok", log: state.log.backend(), view_frontier: state.views.progress.frontier() })
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    status: &'static str,
    view_frontier: u64,
}

/// Readiness
///
/// As opposed to `/healthz` (liveness): `503 not_ready` (with how many records of the log as
/// of start the views still miss, per source topic) until the views have caught up after
/// start or replay, then `200` for good.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    responses(
        (status = 200, description = "The views have caught up with the log", body = Ready),
        (status = 503, description = "`not_ready`, with `behind`", body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state.check_ready().map_err(ApiError::NotReady)?;
    Ok(Json(Ready { status: "ready", view_frontier: state.views.progress.frontier() }))
}

/// The serialized OpenAPI document, made once when the router is built.
#[derive(Clone)]
pub struct Document(pub Arc<Bytes>);

/// This document
///
/// OpenAPI 3.1, generated from the handlers.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object))
)]
pub async fn openapi(Extension(Document(json)): Extension<Document>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], Bytes::clone(&json)).into_response()
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
