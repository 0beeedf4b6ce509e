//! The payment side of the order saga, outside the deterministic dataflow.
//!
//! - [`gateway`]: a simulated card processor in test mode (Stripe-like test cards and
//!   tokens) over HTTP, idempotent by key across restarts (a durable JSON Lines ledger), and
//!   its typed client [`GatewayClient`].
//! - [`worker`]: the payment worker. Consumes `payment.charge_requested` and
//!   `payment.refund_approved` from `payments`, calls the gateway, appends the outcome to
//!   `orders` and only then commits its consumer group's offsets.
//! - [`notifier`]: mails (to an outbox file) the order decisions people are told about,
//!   exactly once per decision event id.
//!
//! Exactly-once without transactions: the gateway is idempotent by key (the order id for a
//! charge, the refund id for a refund), and an outcome's event id is derived from its
//! request's event id ([`outcome_event_id`]), so a worker that re-runs a request after a
//! crash charges nothing new and appends an event the pipeline drops as a duplicate.

pub mod backoff;
pub mod config;
mod consume;
mod error;
pub mod gateway;
mod jsonl;
pub mod notifier;
pub mod worker;

pub use config::{GatewayConfig, NotifierConfig, PaymentsSettings, WorkerConfig};
pub use error::PaymentsError;
pub use gateway::client::{GatewayClient, GatewayError};
pub use gateway::ledger::{read_ledger, LedgerListing};
pub use gateway::{Gateway, GatewayStats, RunningGateway};
pub use notifier::{run_notifier, Mail, Notifier, NotifierProgress};
pub use worker::{outcome_event_id, run_worker, PaymentWorker, WorkerProgress};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
