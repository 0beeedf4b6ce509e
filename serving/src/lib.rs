//! The HTTP layer of shopflow: writes become events on the log (answered `202` with a
//! consistency token), reads answer from the materialized views (waiting, bounded, for a
//! token when given one, and always saying how far behind the log they are).
//!
//! ```ignore
//! let app = Application::build(config, log, views).await?;
//! println!("listening on {}", app.local_addr());
//! app.run_until_stopped(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! ```

mod app;
pub mod auth;
mod config;
pub mod error;
mod extract;
pub mod lag;
pub mod metrics;
mod routes;
mod state;
pub mod token;
mod write;

pub use app::{Application, ServingError};
pub use config::{parse_duration, ServingConfig};
pub use error::ApiError;
pub use routes::router;
pub use state::AppState;
pub use token::ConsistencyToken;
pub use write::Accepted;
