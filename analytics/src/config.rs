//! `[analytics]` in the configuration: where ClickHouse is and how the sink batches.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// A secret that never prints (`Debug` and `Display` say `***`).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How requests to ClickHouse are compressed. The chDB adapter takes uncompressed bodies only;
/// a real server is faster with lz4.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Lz4,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct AnalyticsSettings {
    /// ClickHouse's HTTP address. Unset: `up --analytics` starts the chDB adapter itself.
    pub url: Option<String>,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub compression: Compression,
    /// The sink's consumer group on the log.
    pub group: String,
    /// A batch is sent when it holds this many rows (over every table) ...
    pub batch_max_rows: usize,
    /// ... or about this many bytes ...
    pub batch_max_bytes: usize,
    /// ... or its first record waited this long.
    pub batch_max_wait_ms: u64,
    /// Records read from the log but not yet acknowledged by ClickHouse, at most: the reader
    /// stops reading (back-pressure on the consumer) rather than buffering more while
    /// ClickHouse is down or slow.
    pub max_pending_records: usize,
    /// Records the reader asks the log for at once.
    pub poll_max: usize,
    /// Backoff between retries of a batch: doubles from `retry_initial_ms` up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// Key of the keyed hash (HMAC-SHA256) that stands in for e-mail addresses, so analysts can
    /// count distinct users without seeing an address. Change it per deployment.
    pub email_hash_key: Secret,
    /// Port of the chDB adapter that `up --analytics` starts when `url` is unset.
    pub adapter_port: u16,
    /// How often the top-sellers view is snapshotted into `top_seller_snapshots` (seconds),
    /// and how many of the best products each snapshot keeps.
    pub top_seller_snapshot_secs: u64,
    pub top_seller_snapshot_rows: usize,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            url: None,
            database: "shopflow".into(),
            user: None,
            password: None,
            compression: Compression::None,
            group: "analytics".into(),
            batch_max_rows: 50_000,
            batch_max_bytes: 16 << 20,
            batch_max_wait_ms: 250,
            max_pending_records: 200_000,
            poll_max: 5_000,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            email_hash_key: Secret::new("shopflow-development-key"),
            adapter_port: 8123,
            top_seller_snapshot_secs: 60,
            top_seller_snapshot_rows: 100,
        }
    }
}

impl AnalyticsSettings {
    pub fn batch_max_wait(&self) -> Duration {
        Duration::from_millis(self.batch_max_wait_ms)
    }
}
