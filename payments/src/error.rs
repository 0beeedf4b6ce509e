use std::path::PathBuf;

use shopflow_ingest::LogError;

/// Errors that stop a gateway, worker or notifier. What a single request or record does
/// wrong is logged and skipped, never one of these.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    /// A durable file (ledger, outbox) holds a line that is not what we wrote.
    #[error("{path} line {line} is corrupt: {reason}")]
    Corrupt { path: PathBuf, line: usize, reason: String },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("stopped: {0}")]
    Stopped(String),
}
