//! The route table: one place that says which path and method go where, and which routes
//! are reads (lag headers). Who may call a route is the extractor its handler takes
//! (`Admin`, `User`; see `crate::auth`).

mod auth;
mod catalog;
mod interactions;
pub mod products;
mod recommend;
mod stock;
mod system;
mod top_sellers;
mod users;
mod warehouses;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::header::AUTHORIZATION;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post, MethodRouter};
use tower::ServiceBuilder;
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::state::AppState;

/// The whole HTTP API, ready to serve.
pub fn router(state: AppState) -> Router {
    // Reads say how far behind the log the view is, on success and on error alike.
    let read = |route: MethodRouter<AppState>| route.layer(from_fn_with_state(state.clone(), crate::lag::view_headers));

    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/metrics", get(crate::metrics::render))
        .route("/api/v1/products", read(get(products::list)).post(products::create))
        .route(
            "/api/v1/products/{id}",
            read(get(products::get)).patch(products::update).delete(products::delete),
        )
        .route("/api/v1/products/{id}/stock", read(get(stock::of_product)))
        .route("/api/v1/categories", post(catalog::upsert_category))
        .route("/api/v1/brands", post(catalog::upsert_brand))
        .route("/api/v1/suppliers", post(catalog::upsert_supplier))
        .route("/api/v1/warehouses", read(get(warehouses::list)).post(warehouses::create))
        .route("/api/v1/warehouses/{id}", read(get(warehouses::get)))
        .route("/api/v1/stock/receipts", post(stock::receive))
        .route("/api/v1/stock/adjustments", post(stock::adjust))
        .route("/api/v1/interactions", post(interactions::record))
        .route("/api/v1/recommend/user/{id}", read(get(recommend::for_user)))
        .route("/api/v1/recommend/similar/{id}", read(get(recommend::similar)))
        .route("/api/v1/recommend/trending", read(get(recommend::trending)))
        .route("/api/v1/top-sellers", read(get(top_sellers::list)))
        .route("/api/v1/auth/register", post(auth::register))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/users/me", read(get(users::me)))
        .route("/api/v1/users/{id}", read(get(users::get)).put(users::update))
        .route("/api/v1/users/{id}/addresses", read(get(users::addresses)).post(users::add_address))
        // After the routes: it replaces the 405 handler of every route defined so far.
        .method_not_allowed_fallback(system::method_not_allowed)
        .fallback(system::not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // Inside authentication: a signed-in request is also limited by its user.
        .layer(from_fn_with_state(state.clone(), crate::gateway::limit))
        .layer(from_fn_with_state(state.clone(), crate::auth::authenticate))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(crate::gateway::timed_out))
                .timeout(state.config.gateway.request_timeout),
        )
        .layer(from_fn(crate::metrics::track))
        .layer(tower::util::option_layer(crate::gateway::cors(&state.config.gateway)))
        .layer(CatchPanicLayer::custom(system::panicked))
        // One line per request at info: method, path, status, latency and the user id (when
        // signed in), in the request's span. Never headers, query strings or bodies.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(system::span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        // Outermost, so nothing below can print the admin token, whatever its log level.
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
        .with_state(state)
}
