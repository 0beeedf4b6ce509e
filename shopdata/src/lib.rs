//! Shop data for the demo, the benchmarks and the tests, from one place: the same event
//! types, the same product vocabulary, the same way of turning events into log records.
//!
//! - [`demo`]: the small, named shop `shopflow up` loads on first start, with shoppers;
//!   [`demo_orders`]: their orders, in every state an order can be in.
//! - [`workload`]: the benchmarks' catalog and Zipf-distributed stock movements.
//! - [`activity`]: weeks of timestamped shopper activity (views, searches, carts, orders,
//!   payments, stock moves) over the demo catalog, for the analytics dashboards.
//! - [`scenario`]: a deterministic stream that exercises every upsert path, for tests.

pub mod activity;
pub mod demo;
pub mod demo_orders;
pub mod scenario;
pub mod workload;

use shopflow_events::Envelope;
use shopflow_ingest::OutRecord;

pub use workload::Workload;

/// The log record of an event: its topic, keyed by its partition key.
pub fn record(envelope: &Envelope) -> OutRecord {
    OutRecord::of(envelope)
}

/// The log records of events, in order.
pub fn records(events: &[Envelope]) -> Vec<OutRecord> {
    events.iter().map(record).collect()
}

/// Words products are named and described with.
pub mod vocabulary {
    pub const NOUNS: [&str; 12] =
        ["Kettle", "Lamp", "Speaker", "Notebook", "Tent", "Chair", "Mug", "Headphones", "Backpack", "Planter", "Desk", "Novel"];
    pub const ADJECTIVES: [&str; 8] = ["Classic", "Compact", "Deluxe", "Eco", "Pro", "Smart", "Travel", "Vintage"];

    /// Name and description of product number `i`: every (adjective, noun) pair in turn.
    pub fn product_text(i: usize) -> (String, String) {
        let noun = NOUNS[i % NOUNS.len()];
        let adjective = ADJECTIVES[(i / NOUNS.len()) % ADJECTIVES.len()];
        (format!("{adjective} {noun}"), format!("A {} {} for everyday use.", adjective.to_lowercase(), noun.to_lowercase()))
    }
}
