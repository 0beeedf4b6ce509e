//! Commerce test helpers: view rows as the saga's jobs would write them, and a small reader
//! of Server-Sent Events over reqwest.

use std::time::Duration;

use shopflow_events::types::{OrderLine, OrderStatus};
use shopflow_events::{Id, Money};
use shopflow_views::{OrderRow, PaymentRow, StatusChange, ViewUpdate, Views};

/// An order of `user` for `lines` (product, units, unit price in EUR minor units), its
/// history running through `statuses`.
pub fn order_row(order: &str, user: &str, lines: &[(&str, u32, i64)], statuses: &[OrderStatus]) -> OrderRow {
    let lines: Vec<OrderLine> = lines
        .iter()
        .map(|(product, quantity, price)| OrderLine { product_id: Id::from(*product), quantity: *quantity, unit_price: Money::new(*price, "EUR") })
        .collect();
    let total = lines.iter().map(|l| l.unit_price.amount_minor * i64::from(l.quantity)).sum();
    let history: Vec<StatusChange> = statuses
        .iter()
        .enumerate()
        .map(|(i, status)| StatusChange { status: *status, at: 1_000 + i as i64, reason: String::new() })
        .collect();
    let status = history.last().map_or(OrderStatus::Pending, |c| c.status);
    let paid = matches!(status, OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered);
    OrderRow {
        order_id: order.into(),
        user_id: user.into(),
        status,
        reason: String::new(),
        lines,
        total: Money::new(total, "EUR"),
        address_id: "addr-1".into(),
        payment_token: "tok_visa".into(),
        holds: Vec::new(),
        history,
        placed_at: 1_000,
        updated_at: 1_000,
        expires_at: None,
        paid_minor: if paid { total } else { 0 },
        refunded_minor: 0,
    }
}

pub fn put_order(views: &Views, row: OrderRow) {
    views.apply([ViewUpdate::Order { key: row.order_id.clone(), row: Some(row) }]);
}

/// The succeeded payment of `order` (captured in full), with `refunded` minor units refunded.
pub fn payment_row(order: &OrderRow, refunded: i64) -> PaymentRow {
    PaymentRow {
        order_id: order.order_id.clone(),
        user_id: order.user_id.clone(),
        payment_id: Some("pay-1".into()),
        status: "succeeded".into(),
        amount: order.total.clone(),
        captured_minor: order.total.amount_minor,
        refunded_minor: refunded,
        failure_reason: String::new(),
        authorization_code: "auth-1".into(),
        refunds: Vec::new(),
        updated_at: 1_000,
    }
}

pub fn put_payment(views: &Views, row: PaymentRow) {
    views.apply([ViewUpdate::Payment { key: row.order_id.clone(), row: Some(row) }]);
}

/// One Server-Sent Event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("event data is JSON")
    }
}

/// Reads events off a `text/event-stream` response, skipping keep-alive comments.
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(content_type.starts_with("text/event-stream"), "not an event stream: {content_type}");
        Self { response, buffer: String::new() }
    }

    /// The next event, or `None` if none came within `within` (or the stream ended).
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("id:") {
                        event.id = Some(value.trim_start().to_owned());
                    } else if let Some(value) = line.strip_prefix("event:") {
                        event.event = Some(value.trim_start().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.strip_prefix(' ').unwrap_or(value).to_owned());
                    }
                }
                if !data.is_empty() {
                    event.data = data.join("\n");
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.ok()?.ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
