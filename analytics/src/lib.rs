//! Analytics: the ClickHouse sink (every event and its typed rows, exactly once), the schema
//! migrations, the analysts' dashboards and `shopflow analytics report`.
//!
//! - [`sink`]: [`ClickHouseSink`] reads every event topic as consumer group
//!   `analytics.group` and writes batches through the `clickhouse` crate with schema
//!   validation on; the exactly-once mechanism is described there.
//! - [`migrations`]: versioned DDL (`migrations/*.sql`), applied at start and by
//!   `shopflow analytics migrate`.
//! - [`dashboards`]: the SQL files under `dashboards/` (also loaded by ClickHouse's /dashboard
//!   page from the `dashboards` table) and [`report`] that runs them and draws PNGs.
//! - [`snapshots`]: the pipeline's top-sellers view, snapshotted into `top_seller_snapshots`
//!   at fixed times, once per time.
//! - `adapter/chdb_http.py`: ClickHouse's HTTP interface over chDB, for tests and `up`.

mod config;
pub mod dashboards;
mod error;
pub mod migrations;
pub mod report;
pub mod rows;
pub mod sink;
pub mod snapshots;

pub use config::{AnalyticsSettings, Compression, Secret};
pub use error::AnalyticsError;
pub use sink::service::{client, ClickHouseService};
pub use sink::{Acked, ClickHouseSink, Progress};
