//! The Rust rows of the typed tables (migrations/0001_tables.sql). The `clickhouse` crate
//! checks each struct against the table's `DESCRIBE` before the first insert (validation on),
//! so a column whose type drifts from its field fails loudly instead of writing garbage.
//! Timestamps are milliseconds (`DateTime64(3)` is an `Int64` on the wire) and money is in
//! minor units (`Decimal(18, 2)` is an `Int64` scaled by 100).

use clickhouse::Row;
use serde::{Deserialize, Serialize};

/// Where a row came from in the log: the sink's exactly-once bookkeeping.
pub trait Positioned {
    fn position(&self) -> (&str, u32, u64);
}

macro_rules! table_row {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Row, Serialize, Deserialize)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            pub log_topic: String,
            pub log_partition: u32,
            pub log_offset: u64,
        }

        impl Positioned for $name {
            fn position(&self) -> (&str, u32, u64) {
                (&self.log_topic, self.log_partition, self.log_offset)
            }
        }
    };
}

table_row!(
    /// Every event, verbatim: the raw table.
    EventRow {
        #[serde(with = "clickhouse::serde::uuid")]
        id: uuid::Uuid,
        ts: i64,
        r#type: String,
        key: String,
        payload: String,
    }
);

table_row!(ProductRow {
    ts: i64,
    kind: String,
    product_id: String,
    name: Option<String>,
    category_id: Option<String>,
    brand_id: Option<String>,
    price: Option<i64>,
    currency: String,
});

table_row!(StockMoveRow { ts: i64, kind: String, product_id: String, warehouse_id: String, delta: i64, reason: String });

table_row!(UserRow { ts: i64, kind: String, user_id: String, email_hash: String, role: String, session_id: String, country: String, city: String });

table_row!(CartEventRow { ts: i64, kind: String, user_id: String, product_id: String, quantity: u32 });

table_row!(OrderRow {
    ts: i64,
    kind: String,
    order_id: String,
    user_id: String,
    status: String,
    lines: u16,
    items: u32,
    total: i64,
    currency: String,
    reason: String,
});

table_row!(OrderLineRow {
    ts: i64,
    order_id: String,
    user_id: String,
    line: u16,
    product_id: String,
    quantity: u32,
    unit_price: i64,
    currency: String,
});

table_row!(PaymentRow {
    ts: i64,
    kind: String,
    order_id: String,
    user_id: String,
    payment_id: String,
    amount: i64,
    currency: String,
    token: String,
    last4: String,
    card_brand: String,
    reason: String,
    retryable: u8,
});

table_row!(ProductViewRow { ts: i64, user_id: String, product_id: String });

table_row!(SearchRow { ts: i64, user_id: String, query: String, hits: u32 });

table_row!(RecommendationClickRow { ts: i64, user_id: String, product_id: String, source: String });

table_row!(DecisionRow {
    ts: i64,
    kind: String,
    order_id: String,
    product_id: String,
    warehouse_id: String,
    holds: u16,
    quantity: i64,
    available: i64,
    reason: String,
});

/// One row of the `dashboards` table the /dashboard page reads.
#[derive(Clone, Debug, Row, Serialize, Deserialize)]
pub struct DashboardRow {
    pub dashboard: String,
    pub name: String,
    pub title: String,
    pub query: String,
}

/// One ranked row of a snapshot of the pipeline's top-sellers view.
#[derive(Clone, Debug, PartialEq, Row, Serialize, Deserialize)]
pub struct TopSellerSnapshotRow {
    pub snapshot_at: i64,
    pub rank: u32,
    pub product_id: String,
    pub category_id: String,
    pub units: i64,
}
