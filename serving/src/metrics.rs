//! Prometheus metrics: request count and latency per route, method and status, and
//! recommendation answers by source, rendered at
//! `GET /metrics`. The recorder is process-global (that is how the `metrics` facade works), so
//! it is installed once and shared by every `Application` in the process; other crates'
//! `metrics::` calls show up on the same page.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS_TOTAL: &str = "http_requests_total";
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Recommendation answers by `endpoint` (user, similar, trending) and `source` (model,
/// trending, model+trending): how often the model actually answers vs. the fallback.
pub const RECOMMENDATIONS_TOTAL: &str = "recommendation_responses_total";

/// Per search with `phase`: `queued` (from the request handing it to a blocking thread until one
/// runs it) and `searched` (the index's own work: query, collectors, documents, snippets). With
/// the route's request duration it tells the index from the HTTP path.
pub const SEARCH_DURATION: &str = "search_duration_seconds";

/// Latency buckets from 1 ms to 10 s: reads are sub-millisecond, token waits take up to
/// `read_wait_max`.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A search takes 0.3–3 ms in the benchmark; its tail is what these resolve.
const SEARCH_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use. `None` if some
/// other recorder was installed first (then `/metrics` says so instead of lying with zeros).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.to_owned()), BUCKETS)
                .expect("bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(SEARCH_DURATION.to_owned()), SEARCH_BUCKETS)
                .expect("bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "could not install the prometheus recorder, /metrics is disabled");
                    None
                }
            }
        })
        .as_ref()
}

/// Drains histogram buffers now and then so memory stays bounded between scrapes.
pub async fn run_upkeep(interval: Duration) {
    let Some(handle) = handle() else { return };
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        handle.run_upkeep();
    }
}

/// Middleware: counts and times every request. The route label is the matched route
/// template (`/api/v1/products/{id}`), never the raw path, so label cardinality stays bounded.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!(REQUESTS_TOTAL, &labels).increment(1);
    metrics::histogram!(REQUEST_DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

/// Prometheus metrics
///
/// The Prometheus text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses(
        (status = 200, description = "Metrics", body = String, content_type = "text/plain"),
        (status = 500, description = "`internal_error`: no metrics recorder could be installed", body = crate::error::ErrorBody),
    )
)]
pub async fn render() -> Response {
    match handle() {
        Some(handle) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
        }
        None => crate::error::ApiError::Internal.into_response(),
    }
}
