//! The payload of every event type, grouped by the topic it lives on.
//! Field names are the wire names; every struct rejects unknown fields so a typo in a producer
//! is a dead-lettered event, not silently dropped data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{Id, Money};

// Orders, the saga's messages, payments and payment methods.
mod commerce;
pub use commerce::*;

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
