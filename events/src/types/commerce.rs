//! The commerce saga's events: orders and their coordination (`orders`), the holds asked of a
//! product's partition (`inventory`), the payment worker's queue (`payments`) and saved payment
//! methods (`users`). Re-exported from [`crate::types`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Hold;
use crate::ids::{Id, Money};

// ---------- orders (key: the order's user id): the saga's coordinator ----------
//
// Everything that changes an order is written to the order's partition of `orders`, so the
// order's state is a fold of that partition in offset order: placement, the per-product hold
// answers, payment outcomes, cancels, status changes, refunds and the deadline clock.

/// Most units of one product in one order (and in one cart line).
pub const MAX_UNITS: u32 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OrderLine {
    pub product_id: Id,
    pub quantity: u32,
    /// The catalog price when the order was placed (captured, never re-read).
    pub unit_price: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderPlaced {
    pub order_id: Id,
    pub user_id: Id,
    pub lines: Vec<OrderLine>,
    pub address_id: Id,
    /// Client-chosen key; a retried placement with the same key is the same order.
    pub idempotency_key: String,
    /// Payment method token (never a card number). Empty: the order waits, reserved, for
    /// `order.payment_submitted` until its deadline.
    #[serde(default)]
    pub payment_token: String,
    /// Placed from the cart: the pipeline clears the cart (a `cart.cleared` on `carts`).
    #[serde(default)]
    pub from_cart: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderCancelled {
    pub order_id: Id,
    pub user_id: Id,
    #[serde(default)]
    pub reason: String,
}

/// The states an order goes through (what its owner sees).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum OrderStatus {
    /// Placed; its holds are being decided.
    Pending,
    /// Every line held; waiting for the payment.
    Reserved,
    /// Paid (the decision `order.confirmed`).
    Paid,
    Shipped,
    Delivered,
    Rejected,
    Cancelled,
    Expired,
    /// Paid, then refunded in full.
    Refunded,
}

impl OrderStatus {
    /// Every state, in the order an order can go through them.
    pub const ALL: [OrderStatus; 9] = [
        OrderStatus::Pending,
        OrderStatus::Reserved,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Rejected,
        OrderStatus::Cancelled,
        OrderStatus::Expired,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Reserved => "reserved",
            OrderStatus::Paid => "paid",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Refunded => "refunded",
        }
    }

    /// Whether the order may still be cancelled (before shipping).
    pub fn cancellable(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Reserved | OrderStatus::Paid)
    }

    /// Whether the order holds stock that is neither released nor shipped.
    pub fn open(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Reserved)
    }
}

/// An admin's status change: `shipped` (from paid) or `delivered` (from shipped); other
/// statuses are the saga's to decide and are refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderStatusChanged {
    pub order_id: Id,
    pub user_id: Id,
    pub status: OrderStatus,
}

/// A product partition's answer to a hold request, written to the order's partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldDecided {
    pub order_id: Id,
    pub user_id: Id,
    pub product_id: Id,
    pub granted: bool,
    /// Where the units are held (granted only), one entry per warehouse.
    #[serde(default)]
    pub holds: Vec<Hold>,
    /// Units available (on hand minus held, all warehouses) when decided.
    pub available: i64,
}

/// The pipeline's clock for quiet partitions: written when the wall clock passed an unpaid
/// order's deadline. The expiry itself is decided by log time (this record's time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentDeadline {
    pub order_id: Id,
    pub user_id: Id,
    pub deadline: i64,
}

/// A payment method given to a reserved order that was placed without one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentSubmitted {
    pub order_id: Id,
    pub user_id: Id,
    pub token: String,
}

/// A refund asked for (by the owner or an admin); the saga bounds it by what was captured.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequested {
    pub order_id: Id,
    pub user_id: Id,
    pub refund_id: Id,
    pub amount: Money,
    #[serde(default)]
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeSucceeded {
    pub order_id: Id,
    pub user_id: Id,
    pub payment_id: Id,
    pub amount: Money,
    pub authorization_code: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeFailed {
    pub order_id: Id,
    pub user_id: Id,
    /// The gateway's code: `card_declined`, `insufficient_funds`, ...
    pub reason: String,
    /// True when the gateway failed transiently (the worker retries those itself; a failure
    /// written here is final for the order).
    pub retryable: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRefunded {
    pub order_id: Id,
    pub user_id: Id,
    pub refund_id: Id,
    pub payment_id: Id,
    pub amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundFailed {
    pub order_id: Id,
    pub user_id: Id,
    pub refund_id: Id,
    pub reason: String,
}

// ---------- inventory: the saga's messages to a product's partition (key: product id) ----------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequested {
    pub order_id: Id,
    pub user_id: Id,
    pub product_id: Id,
    /// Every line of the order naming this product, summed.
    pub quantity: u32,
}

/// Releases (restocks) the order's hold on the product, if it is still held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldReleased {
    pub order_id: Id,
    pub product_id: Id,
    pub reason: String,
}

/// The order shipped: its held units leave the stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldCommitted {
    pub order_id: Id,
    pub product_id: Id,
}

// ---------- payments: the payment worker's queue (key: order id) ----------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequested {
    pub order_id: Id,
    pub user_id: Id,
    pub amount: Money,
    pub token: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundApproved {
    pub order_id: Id,
    pub user_id: Id,
    pub refund_id: Id,
    pub payment_id: Id,
    pub amount: Money,
}

// ---------- users: payment methods (key: user id) ----------

/// A card the gateway tokenized. Only the token, the last four digits, the brand and the
/// expiry are kept; the number never reaches the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentMethodTokenized {
    pub user_id: Id,
    pub token: String,
    /// Last four digits only.
    pub last4: String,
    #[serde(default)]
    pub card_brand: String,
    #[serde(default)]
    pub exp_month: u8,
    #[serde(default)]
    pub exp_year: u16,
}
