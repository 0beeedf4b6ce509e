//! The payload of every event type, grouped by the topic it lives on.
//! Field names are the wire names; every struct rejects unknown fields so a typo in a producer
//! is a dead-lettered event, not silently dropped data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{Id, Money};

// ---------- catalog (key: product id, or the category/brand/supplier id) ----------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductCreated {
    pub product_id: Id,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub price: Money,
    /// Stock keeping unit / identification code (seed 003 `identification`).
    #[serde(default)]
    pub sku: String,
    pub category_id: Id,
    pub brand_id: Id,
    pub supplier_id: Id,
}

/// A partial update: absent fields keep their value. Applied in log order per product.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdated {
    pub product_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier_id: Option<Id>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductDeleted {
    pub product_id: Id,
}

/// Categories, brands and suppliers are small named entities with the same shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamedEntityUpserted {
    pub id: Id,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewPosted {
    pub review_id: Id,
    pub product_id: Id,
    pub user_id: Id,
    /// 1 to 5 stars.
    pub rating: u8,
    #[serde(default)]
    pub text: String,
}

/// Search synonyms set by an admin: the whole set replaces the previous one. Each group is
/// words a shopper may use for one another (`["sofa", "couch"]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SynonymsSet {
    /// Which set (the key): `default` is the one search uses.
    pub set_id: Id,
    pub groups: Vec<Vec<String>>,
}

// ---------- inventory (key: product id; warehouse events: warehouse id) ----------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarehouseCreated {
    pub warehouse_id: Id,
    pub name: String,
    #[serde(default)]
    pub location: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockReceived {
    pub product_id: Id,
    pub warehouse_id: Id,
    /// Units received, > 0.
    pub quantity: u32,
}

/// A correction (count, damage, loss): `delta` units, never zero. An adjustment that would
/// take the level below zero is rejected by the pipeline and recorded in `decisions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjusted {
    pub product_id: Id,
    pub warehouse_id: Id,
    pub delta: i64,
    #[serde(default)]
    pub reason: String,
}

// ---------- users (key: user id) ----------

/// What an account may do. Customers act on their own profile, carts, orders and payments;
/// admins also write the catalog, stock and order status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum Role {
    #[default]
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
}

/// An account. The user id is derived from the e-mail ([`crate::user_id_for_email`]), so
/// every registration of one e-mail lands in one partition, where the first in log order wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    pub user_id: Id,
    pub email: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub phone: String,
    /// PHC string of an argon2id hash; a plain password never enters the log.
    pub password_hash: String,
    #[serde(default)]
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdated {
    pub user_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// Granted by `shopflow admin create` (an operator with access to the log), never over HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChanged {
    pub user_id: Id,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressAdded {
    pub address_id: Id,
    pub user_id: Id,
    pub street: String,
    pub city: String,
    #[serde(default)]
    pub state: String,
    pub country: String,
    #[serde(default)]
    pub zip: String,
    /// The address orders use unless told otherwise; setting it unsets the previous default.
    #[serde(default)]
    pub is_default: bool,
}

/// A login: a new session (a family of refresh tokens). Only the SHA-256 of the refresh
/// token is in the log; the token itself goes to the client alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionStarted {
    pub user_id: Id,
    pub session_id: Id,
    /// Hex SHA-256 of the refresh token.
    pub refresh_hash: String,
    /// Milliseconds since the Unix epoch.
    pub issued_at: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub client_ip: String,
}

/// A refresh: the presented token is to be replaced by a new one. Decided by the pipeline in
/// log order: the current token rotates; an already-rotated one is reuse, and revokes the
/// whole session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRefreshed {
    pub user_id: Id,
    pub session_id: Id,
    pub presented_hash: String,
    pub refresh_hash: String,
    pub issued_at: i64,
    pub expires_at: i64,
    #[serde(default)]
    pub client_ip: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionRevoked {
    pub user_id: Id,
    pub session_id: Id,
    /// `logout`, `refresh_reuse`, ...
    #[serde(default)]
    pub reason: String,
}

// ---------- carts (key: user id) ----------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartItemChanged {
    pub user_id: Id,
    pub product_id: Id,
    /// Units added or removed, > 0.
    pub quantity: u32,
}

/// Sets a cart line to `quantity` units; 0 removes the line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartQuantitySet {
    pub user_id: Id,
    pub product_id: Id,
    pub quantity: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CartCleared {
    pub user_id: Id,
}

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

// ---------- interactions (key: user id) ----------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductViewed {
    pub user_id: Id,
    pub product_id: Id,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchPerformed {
    pub user_id: Id,
    pub query: String,
    #[serde(default)]
    pub results: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendationClicked {
    pub user_id: Id,
    pub product_id: Id,
    #[serde(default)]
    pub source: String,
}

// ---------- decisions (key: order id, or product id for stock decisions) ----------
//
// What people and analytics are told; the saga itself never reads this topic.

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Hold {
    pub product_id: Id,
    pub warehouse_id: Id,
    pub quantity: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationAccepted {
    pub order_id: Id,
    #[serde(default)]
    pub user_id: Id,
    pub holds: Vec<Hold>,
}

/// An order's outcome, for its owner (the notifier's e-mails) and analytics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderDecision {
    pub order_id: Id,
    #[serde(default)]
    pub user_id: Id,
    #[serde(default)]
    pub reason: String,
    /// The amount concerned (captured, refunded), where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

/// A stock adjustment the pipeline refused (it would have taken the level below zero, or
/// below the units held for orders).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustmentRejected {
    pub event_id: uuid::Uuid,
    pub product_id: Id,
    pub warehouse_id: Id,
    pub delta: i64,
    pub available: i64,
}
