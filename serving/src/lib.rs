//! The HTTP layer of shopflow: writes become events on the log (answered `202` with a
//! consistency token), reads answer from the materialized views (waiting, bounded, for a
//! token when given one, and always saying how far behind the log they are).
//!
//! ```ignore
//! let models = Arc::new(ModelSlot::new()); // the model watcher promotes into it
//! let app = Application::build(config, log, views).await?.with_models(models);
//! println!("listening on {}", app.local_addr());
//! app.run_until_stopped(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! ```
//!
//! # Consistency tokens
//! A write answers `202 {"id","event_id","consistency_token"}` and the header
//! `X-Consistency-Token`. The token is `topic:partition:offset`, comma-separated when a write
//! touched several partitions (`catalog:3:1042`). A read passes it back in the header
//! `X-Consistency-Token` or the query `?consistency_token=` and may bound its wait with
//! `X-Consistency-Wait-Ms` / `?wait_ms=` (never more than `read_wait_max`). A malformed token
//! is `400 invalid_consistency_token`. If the views do not pass the token in time the answer
//! is **`503 consistency_timeout` with `Retry-After: 1`**: the view is behind, not broken, and
//! the same read is likely to succeed shortly (504 would blame an upstream gateway).
//!
//! # Lag headers (every view read, errors included)
//! `X-View-Frontier` (epoch ms below which the views are complete), `X-View-Lag-Ms`
//! (now − frontier), `X-View-Lag-Records` (Σ over source partitions of end offset − covered
//! offset; end offsets from a background poll, absent until the first poll succeeded).
//!
//! # Recommendations
//! `GET /api/v1/recommend/user/{id}`, `/recommend/similar/{id}`, `/recommend/trending?category=`
//! (all `?limit=` 1..=100, default 10) answer from the model in the [`ModelSlot`] given to
//! [`Application::with_models`], filtered and filled from the trending view; see
//! `routes/recommend.rs` for the rules. Without a slot (or with an empty one) they answer from
//! trending alone.
//!
//! # OpenAPI
//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document, generated from the handlers'
//! `#[utoipa::path]` annotations (see `openapi.rs` and the route table in `routes/mod.rs`).
//!
//! # Errors
//! Body: `{"error":{"code":"...","message":"...","field":"..."}}` (`field` for validation).
//! See [`ApiError::code`] and [`ApiError::status`] for the full table.

mod app;
pub mod auth;
mod config;
pub mod error;
mod extract;
mod hex;
pub mod live;
pub mod gateway;
pub mod idempotency;
pub mod lag;
pub mod metrics;
pub mod openapi;
mod routes;
mod state;
pub mod token;
pub mod recommender;
pub mod recorder;
pub mod vault;
mod write;

pub use app::{Application, ServingError};
pub use config::{parse_duration, AuthConfig, CommerceConfig, GatewayConfig, ServingConfig};
pub use error::ApiError;
pub use routes::{document, router};
pub use state::{AppState, SharedState};
pub use token::ConsistencyToken;
pub use write::Accepted;
pub use recommender::{ModelSlot, Recommender};
pub use vault::{Card, CardVault, TokenizedCard, VaultError};
