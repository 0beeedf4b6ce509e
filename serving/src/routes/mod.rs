//! The route table: one place that says which path and method go where, and which routes
//! are reads (lag headers). Who may call a route is the extractor its handler takes
//! (`Admin`, `User`; see `crate::auth`).

mod auth;
mod cart;
mod catalog;
mod interactions;
mod live;
mod orders;
mod payments;
pub mod products;
mod recommend;
mod search;
mod stats;
mod stock;
mod system;
mod top_sellers;
mod users;
mod warehouses;

use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::header::AUTHORIZATION;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::{Extension, Router};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::openapi;
use crate::state::AppState;

/// The route table. Every route is registered here once, with `routes!(handler, ...)`:
/// the handler's `#[utoipa::path]` gives both the axum route (path and method) and its entry
/// in the OpenAPI document, so the two cannot drift. One `routes!` per path and kind: a path
/// with reads and writes gets two registrations (axum and the document merge them), so
/// that `read(...)` wraps exactly the read handlers.
fn table(state: &AppState) -> OpenApiRouter<AppState> {
    // Reads say how far behind the log the view is, on success and on error alike; the same
    // wrapper documents those headers on every response of the operations it wraps.
    let read = |routes: UtoipaMethodRouter<AppState>| {
        let (schemas, mut paths, method_router) = routes;
        openapi::add_lag_headers(&mut paths);
        (schemas, paths, method_router)
            .layer(from_fn_with_state(state.clone(), crate::lag::view_headers))
    };

    let mut table = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(crate::metrics::render))
        .routes(routes!(system::openapi))
        .routes(read(routes!(products::list)))
        // Static segments win over `{id}`, so these are not product ids.
        .routes(read(routes!(search::search)))
        .routes(read(routes!(search::suggest)))
        .routes(read(routes!(search::get_synonyms)))
        .routes(routes!(search::put_synonyms))
        .routes(routes!(products::create))
        .routes(read(routes!(products::get)))
        .routes(routes!(products::update, products::delete))
        .routes(read(routes!(stock::of_product)))
        .routes(routes!(catalog::upsert_category))
        .routes(routes!(catalog::upsert_brand))
        .routes(routes!(catalog::upsert_supplier))
        .routes(read(routes!(warehouses::list)))
        .routes(routes!(warehouses::create))
        .routes(read(routes!(warehouses::get)))
        .routes(routes!(stock::receive))
        .routes(routes!(stock::adjust))
        .routes(routes!(interactions::record))
        .routes(read(routes!(recommend::for_user)))
        .routes(read(routes!(recommend::similar)))
        .routes(read(routes!(recommend::trending)))
        .routes(read(routes!(top_sellers::list)))
        .routes(routes!(live::top_sellers))
        .routes(read(routes!(stats::revenue)))
        .routes(read(routes!(cart::get)))
        .routes(routes!(cart::clear))
        .routes(routes!(cart::add))
        .routes(routes!(cart::set_item, cart::remove_item))
        .routes(read(routes!(cart::of_user)))
        .routes(routes!(orders::place))
        // Static segments win over `{id}`, so `latest` and `user` are not order ids.
        .routes(read(routes!(orders::latest)))
        .routes(read(routes!(orders::of_user)))
        .routes(read(routes!(orders::get)))
        .routes(routes!(orders::cancel))
        .routes(routes!(orders::set_status))
        .routes(routes!(live::order_events))
        .routes(read(routes!(payments::methods)))
        .routes(routes!(payments::add_method))
        .routes(routes!(payments::process))
        .routes(routes!(payments::refund))
        .routes(read(routes!(payments::of_order)))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(read(routes!(users::me)))
        .routes(read(routes!(users::get)))
        .routes(routes!(users::update))
        .routes(read(routes!(users::addresses)))
        .routes(routes!(users::add_address));
    openapi::add_gateway_responses(table.get_openapi_mut());
    openapi::close_variants(table.get_openapi_mut(), "Interaction");
    table
}

/// The whole HTTP API, ready to serve.
pub fn router(state: AppState) -> Router {
    let (router, document) = table(&state).split_for_parts();
    // Serialized once: the document does not change while the process runs.
    let json = document.to_json().expect("the OpenAPI document serializes");
    router
        .layer(Extension(system::Document(Arc::new(json.into()))))
        // After the routes: it replaces the 405 handler of every route defined so far.
        .method_not_allowed_fallback(system::method_not_allowed)
        .fallback(system::not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // Per IP before authentication (requests with bad tokens count too), per user after it.
        .layer(from_fn_with_state(state.clone(), crate::gateway::limit_user))
        .layer(from_fn_with_state(state.clone(), crate::auth::authenticate))
        .layer(from_fn_with_state(state.clone(), crate::gateway::limit_ip))
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

/// The OpenAPI document of [`router`] (the one served at `/api/v1/openapi.json`), for tools
/// and tests that want it without a running server.
pub fn document(state: &AppState) -> OpenApi {
    table(state).into_openapi()
}
