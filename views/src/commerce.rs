//! The commerce views' rows: carts, orders (with lines, holds and status history), a user's
//! orders, payments and refunds, payment methods, stock available, the latest orders joined
//! with the catalog and revenue. Each is registered by one line in `lib.rs`.

use serde::{Deserialize, Serialize};
use shopflow_events::types::{Hold, OrderLine, OrderStatus};
use shopflow_events::{Id, Money};

use super::registry::ViewRowType;

/// One line of a user's cart: units only. Prices and availability are read from the catalog
/// and stock views when the cart is shown, so a cart always shows today's price.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct CartRow {
    pub user_id: Id,
    pub product_id: Id,
    pub quantity: u32,
    /// Event time of the line's last change.
    pub updated_at: i64,
}

impl ViewRowType for CartRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        (self.user_id.clone(), self.product_id.clone())
    }
}

/// One step of an order's life.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct StatusChange {
    pub status: OrderStatus,
    /// Event time of the record that decided it.
    pub at: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// Where one product of an order stands in its product's partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OrderHold {
    pub product_id: Id,
    /// Units of every line naming the product, summed.
    pub quantity: u32,
    /// `requested`, `held`, `refused`, `released` or `committed` (shipped).
    pub state: String,
    /// Where the units are held (once held).
    pub warehouses: Vec<Hold>,
}

/// An order as its owner and admins see it (seed 003 `orders` + `order_items`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct OrderRow {
    pub order_id: Id,
    pub user_id: Id,
    pub status: OrderStatus,
    /// Why it was rejected, cancelled or expired (`out_of_stock:<product>`, `card_declined`...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub address_id: Id,
    /// The payment method's token (never a card number); empty until one is given.
    pub payment_token: String,
    pub holds: Vec<OrderHold>,
    pub history: Vec<StatusChange>,
    /// Event time of placement, and of the last change.
    pub placed_at: i64,
    pub updated_at: i64,
    /// When an unpaid order expires (log time); `None` once paid or decided.
    pub expires_at: Option<i64>,
    /// Captured by the payment, and refunded so far (minor units of `total.currency`).
    pub paid_minor: i64,
    pub refunded_minor: i64,
}

impl ViewRowType for OrderRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.order_id.clone()
    }
}

impl From<Box<OrderRow>> for OrderRow {
    fn from(boxed: Box<OrderRow>) -> Self {
        *boxed
    }
}

/// An entry of a user's order list: enough to list and sort (newest first) without the
/// whole order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct UserOrderRow {
    pub user_id: Id,
    pub order_id: Id,
    pub status: OrderStatus,
    pub total: Money,
    pub placed_at: i64,
    pub updated_at: i64,
}

impl ViewRowType for UserOrderRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        (self.user_id.clone(), self.order_id.clone())
    }
}

/// A refund of a payment.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RefundEntry {
    pub refund_id: Id,
    pub amount: Money,
    /// `pending`, `completed`, `failed` or `refused` (more than what is left to refund).
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub at: i64,
}

/// The payment of one order (seed 004 `payments`): its charge and its refunds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PaymentRow {
    pub order_id: Id,
    pub user_id: Id,
    /// The gateway's id of the charge, once it succeeded.
    pub payment_id: Option<Id>,
    /// `pending` (charge requested), `succeeded`, `failed`, `partially_refunded`, `refunded`.
    pub status: String,
    pub amount: Money,
    pub captured_minor: i64,
    pub refunded_minor: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_reason: String,
    pub authorization_code: String,
    pub refunds: Vec<RefundEntry>,
    pub updated_at: i64,
}

impl ViewRowType for PaymentRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.order_id.clone()
    }
}

impl From<Box<PaymentRow>> for PaymentRow {
    fn from(boxed: Box<PaymentRow>) -> Self {
        *boxed
    }
}

/// A user's tokenized card (seed 004 `payment_methods`): token, last four digits, brand and
/// expiry. Never the number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PaymentMethodRow {
    pub user_id: Id,
    pub token: String,
    pub last4: String,
    pub card_brand: String,
    pub exp_month: u8,
    pub exp_year: u16,
    pub created_at: i64,
}

impl ViewRowType for PaymentMethodRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        // Tokens are ids in practice (`tok_...`); one that is not is stored under a digest.
        let token = Id::new(self.token.as_str()).unwrap_or_else(|_| Id::from(crate::token_key(&self.token).as_str()));
        (self.user_id.clone(), token)
    }
}

/// Stock of one product in one warehouse with what orders hold of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct StockAvailableRow {
    pub product_id: Id,
    pub warehouse_id: Id,
    pub on_hand: i64,
    pub held: i64,
    /// On hand minus held: what a new order can get. Never negative.
    pub available: i64,
}

impl ViewRowType for StockAvailableRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        (self.product_id.clone(), self.warehouse_id.clone())
    }
}

/// One line of one of the latest 100 orders, joined with the product, its brand, category and
/// supplier, and the user (seed 003 query 3).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LatestOrderRow {
    pub order_id: Id,
    pub product_id: Id,
    pub placed_at: i64,
    pub status: OrderStatus,
    pub quantity: u32,
    pub unit_price: Money,
    pub user_id: Id,
    pub user_name: Option<String>,
    pub user_email: Option<String>,
    pub product_name: Option<String>,
    pub brand_name: Option<String>,
    pub category_name: Option<String>,
    pub supplier_name: Option<String>,
}

impl ViewRowType for LatestOrderRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        (self.order_id.clone(), self.product_id.clone())
    }
}

/// Net revenue of one UTC day, category and currency: paid orders' lines, minus refunds
/// (shared out over an order's lines in proportion to their totals) on the refund's day.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RevenueRow {
    /// `YYYY-MM-DD`.
    pub day: Id,
    /// `None` while the product is not in the catalog.
    pub category_id: Option<Id>,
    pub currency: String,
    pub amount_minor: i64,
}

impl ViewRowType for RevenueRow {
    type Key = (Id, Id, Id);
    fn key(&self) -> (Id, Id, Id) {
        let category = self.category_id.clone().unwrap_or_else(|| Id::from("-"));
        (self.day.clone(), category, Id::from(self.currency.as_str()))
    }
}

/// The UTC day (`YYYY-MM-DD`) of an event time in milliseconds.
pub fn utc_day(ms: i64) -> Id {
    let (y, m, d) = shopflow_events::utc_date(ms);
    Id::from(format!("{y:04}-{m:02}-{d:02}").as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_days_are_civil_dates() {
        assert_eq!(utc_day(0).as_str(), "1970-01-01");
        assert_eq!(utc_day(1_765_065_600_000).as_str(), "2025-12-07");
        assert_eq!(utc_day(1_765_065_599_999).as_str(), "2025-12-06");
        assert_eq!(utc_day(951_782_400_000).as_str(), "2000-02-29");
    }
}
