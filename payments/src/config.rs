//! Typed configuration (`[payments.gateway]`, `[payments.worker]`, `[payments.notifier]`),
//! every field with a default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::backoff::Backoff;

/// Where a standalone gateway listens when nothing is configured (the worker's default URL
/// points here).
pub const DEFAULT_GATEWAY_PORT: u16 = 8087;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PaymentsSettings {
    pub gateway: GatewayConfig,
    pub worker: WorkerConfig,
    pub notifier: NotifierConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GatewayConfig {
    /// Listen address; port 0 binds any free port ([`crate::RunningGateway::url`] says which).
    pub listen: SocketAddr,
    /// Where the ledger (`ledger.jsonl`) lives.
    pub data_dir: PathBuf,
    /// Simulated processing time of a charge or refund: half before the outcome is recorded,
    /// half after (so a client can die after the charge is made and before it hears of it).
    pub latency_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_GATEWAY_PORT)),
            data_dir: PathBuf::from("data/gateway"),
            latency_ms: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// The gateway's base URL.
    pub gateway_url: String,
    /// Consumer group on `payments`.
    pub group: String,
    /// Bound of one gateway request.
    pub request_timeout_ms: u64,
    /// Requests in flight at once. Outcomes are still appended and committed in log order.
    /// 128: at 2,000 orders/s over HTTP, 32 left charges queueing ~125 ms for a slot (the
    /// gateway's answers wait for its ledger's fsync, shared with the log's); 128 cut that hop
    /// to 40–70 ms (docs/benchmarks/2026-12-07-commerce-session11.md).
    pub concurrency: usize,
    /// Most records read (and outcomes appended) at once.
    pub poll_max: usize,
    /// Retries of a transiently failing request: first delay, cap, and attempts with growing
    /// delays; past them the request is retried at the cap until the gateway answers (an
    /// unanswered charge may have been made, so it is never declared failed).
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub retry_attempts: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            gateway_url: format!("http://127.0.0.1:{DEFAULT_GATEWAY_PORT}"),
            group: "payments-worker".into(),
            request_timeout_ms: 10_000,
            concurrency: 128,
            poll_max: 256,
            retry_initial_ms: 100,
            retry_max_ms: 5_000,
            retry_attempts: 8,
        }
    }
}

impl WorkerConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(self.retry_initial_ms), Duration::from_millis(self.retry_max_ms), self.retry_attempts)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct NotifierConfig {
    /// Consumer group on `decisions`.
    pub group: String,
    /// The outbox: one JSON line per e-mail sent.
    pub outbox: PathBuf,
    /// Most decisions read (and mailed) per fsync and commit.
    pub poll_max: usize,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self { group: "notifier".into(), outbox: PathBuf::from("data/outbox.jsonl"), poll_max: 512 }
    }
}
