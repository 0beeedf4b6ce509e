//! The gateway in front of every route (seed 004's API gateway): client address, rate limits
//! (GCRA, by the `governor` crate), login throttling, the request timeout and CORS.
//!
//! - **Rate limits**: every request counts against its client IP; a signed-in request also
//!   against its user. Over the limit: `429 rate_limited` with `Retry-After`.
//! - **Credential endpoints** (register, login, refresh) have a stricter per-IP limit, and
//!   failed logins are throttled per account and per IP ([`LoginThrottle`]): after a burst of
//!   failures, further attempts on that account (or from that IP) are refused with 429 until
//!   the limiter has replenished, whether or not the password would be right.
//! - The limiters live in this process: with N replicas behind a balancer the effective limit
//!   is up to N times the configured one. The failure throttle still bounds guessing to a few
//!   attempts per minute per account and replica.

pub mod limits;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::duration;
use crate::error::ApiError;
use crate::state::AppState;
pub use limits::{Limiters, LoginThrottle, RateConfig};

/// Rate limits, throttling, timeout and CORS.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Off: no rate limit at all (benchmarks; never in production).
    pub rate_limits: bool,
    /// Every request, by client IP.
    pub per_ip: RateConfig,
    /// Signed-in requests, by user.
    pub per_user: RateConfig,
    /// Register, login and refresh, by client IP.
    pub credentials_per_ip: RateConfig,
    /// Failed logins, by account (e-mail).
    pub login_failures_per_account: RateConfig,
    /// Failed logins, by client IP.
    pub login_failures_per_ip: RateConfig,
    /// Longest a request may take before `503 request_timeout`. Above `write_timeout` and
    /// `read_wait_max`, so their own, more precise answers come first.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Origins allowed by CORS (`*` for any); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Take the client IP from the first `X-Forwarded-For` address (only behind a proxy that
    /// sets it; otherwise clients could pick their own rate-limit key).
    pub trust_forwarded_for: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            rate_limits: true,
            per_ip: RateConfig::new(2_000, Duration::from_millis(1)),
            per_user: RateConfig::new(1_000, Duration::from_millis(2)),
            credentials_per_ip: RateConfig::new(20, Duration::from_secs(3)),
            login_failures_per_account: RateConfig::new(5, Duration::from_secs(60)),
            login_failures_per_ip: RateConfig::new(20, Duration::from_secs(15)),
            request_timeout: Duration::from_secs(30),
            cors_origins: Vec::new(),
            trust_forwarded_for: false,
        }
    }
}

/// The client's address, as the gateway decided it (in the request's extensions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Middleware, before authentication: decides the client IP and applies the per-IP limit, so
/// requests with bad tokens are counted too (they cost a signature check each).
pub async fn limit_ip(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let ip = client_ip(&request, state.config.gateway.trust_forwarded_for);
    request.extensions_mut().insert(ClientIp(ip));
    if let Err(e) = state.limiters.admit_ip(ip) {
        return e.into_response();
    }
    next.run(request).await
}

/// Middleware, after authentication: applies the per-user limit to signed-in requests.
pub async fn limit_user(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(caller) = request.extensions().get::<crate::auth::Caller>() {
        if let Err(e) = state.limiters.admit_user(&caller.user_id) {
            return e.into_response();
        }
    }
    next.run(request).await
}

fn client_ip(request: &Request, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse().ok());
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(addr)| addr.ip())
}

/// The request timeout's answer (tower's `Elapsed` becomes our error shape).
pub async fn timed_out(_: tower::BoxError) -> ApiError {
    ApiError::RequestTimeout
}

/// CORS from configuration; `None` when no origin is configured.
pub fn cors(config: &GatewayConfig) -> Option<CorsLayer> {
    if config.cors_origins.is_empty() {
        return None;
    }
    let origins = if config.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(config.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let header = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                header("idempotency-key"),
                header("x-consistency-token"),
                header("x-consistency-wait-ms"),
            ])
            .expose_headers([
                header("x-consistency-token"),
                header("x-view-frontier"),
                header("x-view-lag-ms"),
                header("x-view-lag-records"),
                axum::http::header::RETRY_AFTER,
            ])
            .max_age(Duration::from_secs(600)),
    )
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ClientIp>().copied().unwrap_or(ClientIp(IpAddr::from([0, 0, 0, 0]))))
    }
}
