/// Errors of the analytics crate. `ClickHouse` and `Log` are worth retrying (the sink does,
/// with backoff); the others are not.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("log: {0}")]
    Log(#[from] shopflow_ingest::LogError),
    #[error("migration {version} ({name}) failed: {message}")]
    Migration { version: u32, name: &'static str, message: String },
    #[error("dashboard {name}: {message}")]
    Dashboard { name: String, message: String },
    #[error("chart {path}: {message}")]
    Chart { path: String, message: String },
    #[error("the sink stopped: {0}")]
    Stopped(String),
}

impl AnalyticsError {
    /// Whether waiting and trying again may help (ClickHouse down or slow, broker away).
    pub fn is_transient(&self) -> bool {
        matches!(self, AnalyticsError::ClickHouse(_) | AnalyticsError::Log(shopflow_ingest::LogError::Unavailable(_)))
    }
}
