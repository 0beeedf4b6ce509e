use serde::{Deserialize, Serialize};
use shopflow_events::{Id, Money};

use super::registry::ViewRowType;

/// A product with its category, brand and supplier joined (seed 003, query 1) and its total
/// stock over all warehouses. Names are `None` while the referenced entity is unknown.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ProductRow {
    pub product_id: Id,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub sku: String,
    pub category_id: Id,
    pub category_name: Option<String>,
    pub brand_id: Id,
    pub brand_name: Option<String>,
    pub supplier_id: Id,
    pub supplier_name: Option<String>,
    pub stock: i64,
    /// Event time of its `product.created`, milliseconds since the Unix epoch ("newest first").
    /// Defaulted: changelog records written before the column existed still decode.
    #[serde(default)]
    pub created_at: i64,
    /// The mean of its reviews' stars (1 to 5, to two decimals); `None` before the first review.
    #[serde(default)]
    pub rating_avg: Option<Stars>,
    /// How many reviews it has (each review id counted once).
    #[serde(default)]
    pub rating_count: u32,
}

/// A mean of star ratings, rounded to hundredths. A number in JSON; ordered, compared and
/// hashed by value, which rows need (the dataflow sorts and hashes them) and `f64` is not.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Stars(f64);

impl Stars {
    /// The mean of `count` ratings adding up to `sum`; `None` without any.
    pub fn mean(sum: u64, count: u32) -> Option<Self> {
        (count > 0).then(|| Stars((sum as f64 / f64::from(count) * 100.0).round() / 100.0))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl PartialEq for Stars {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0).is_eq()
    }
}

impl Eq for Stars {}

impl PartialOrd for Stars {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Stars {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl std::hash::Hash for Stars {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

/// Units of one product in one warehouse.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct StockRow {
    pub product_id: Id,
    pub warehouse_id: Id,
    pub warehouse_name: Option<String>,
    pub quantity: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct WarehouseRow {
    pub warehouse_id: Id,
    pub name: String,
    pub location: String,
}

/// How strongly a user has interacted with a product: the weighted sum of their views,
/// recommendation clicks, cart additions and purchases (weights per kind are configured in
/// the pipeline). The rows of one user form their row of the interaction matrix.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InteractionRow {
    pub user_id: Id,
    pub product_id: Id,
    pub weight: i64,
}

/// Units of a product a user has ordered (for "already bought" filtering).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PurchaseRow {
    pub user_id: Id,
    pub product_id: Id,
    pub quantity: i64,
}

/// A product's weighted interactions within the sliding trending window (event time), with
/// its category for per-category trending.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TrendingRow {
    pub product_id: Id,
    pub category_id: Option<Id>,
    pub score: i64,
}

/// The first accepted write under an idempotency key, as the pipeline saw it land: how any
/// replica answers a repeat of the request with the first answer (same ids, same token), and
/// tells a different request reusing the key (another fingerprint).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestRow {
    pub event_id: uuid::Uuid,
    /// The request fingerprint carried by the envelope (`Envelope::request`).
    pub fingerprint: String,
    /// Where the first record landed: the consistency token of the first answer.
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// Event time of the first record; the pipeline forgets the key after the retention.
    pub ts: i64,
}

impl ViewRowType for ProductRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.product_id.clone()
    }
}

#[cfg(test)]
impl ProductRow {
    /// A product with only its id and name set, for tests.
    pub(crate) fn sample(id: &str, name: &str) -> Self {
        ProductRow {
            product_id: id.into(),
            name: name.into(),
            description: String::new(),
            price: Money::new(1, "EUR"),
            sku: String::new(),
            category_id: "c".into(),
            category_name: None,
            brand_id: "b".into(),
            brand_name: None,
            supplier_id: "s".into(),
            supplier_name: None,
            stock: 0,
            created_at: 0,
            rating_avg: None,
            rating_count: 0,
        }
    }
}

impl From<Box<ProductRow>> for ProductRow {
    fn from(boxed: Box<ProductRow>) -> Self {
        *boxed
    }
}

impl ViewRowType for StockRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        (self.product_id.clone(), self.warehouse_id.clone())
    }
}

impl ViewRowType for WarehouseRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.warehouse_id.clone()
    }
}

impl ViewRowType for InteractionRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        (self.user_id.clone(), self.product_id.clone())
    }
}

impl ViewRowType for PurchaseRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        (self.user_id.clone(), self.product_id.clone())
    }
}

impl ViewRowType for TrendingRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.product_id.clone()
    }
}

impl ViewRowType for RequestRow {
    type Key = uuid::Uuid;
    fn key(&self) -> uuid::Uuid {
        self.event_id
    }
}

/// Units sold of one product (seed 003, query 2), with its category for per-category ranking.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct TopSellerRow {
    pub product_id: Id,
    /// `None` while the product is not (or no longer) in the catalog.
    pub category_id: Option<Id>,
    pub units: i64,
}

impl ViewRowType for TopSellerRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.product_id.clone()
    }
}


/// An account (seed 003 `users`). The password hash is here because logging in checks it on
/// whichever replica the request reaches; no route ever returns it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountRow {
    pub user_id: Id,
    /// Normalised (trimmed, lower-case).
    pub email: String,
    pub name: String,
    pub phone: String,
    pub role: shopflow_events::types::Role,
    pub password_hash: String,
    /// The registration that won the e-mail: a replica whose registration is not this one
    /// answers 409.
    pub registered_event: uuid::Uuid,
    /// Milliseconds since the Unix epoch (event time).
    pub created_at: i64,
    pub updated_at: i64,
}

impl ViewRowType for AccountRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.user_id.clone()
    }
}

/// A postal address of an account (seed 003 `addresses`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AddressRow {
    pub user_id: Id,
    pub address_id: Id,
    pub street: String,
    pub city: String,
    pub state: String,
    pub country: String,
    pub zip: String,
    pub is_default: bool,
    pub created_at: i64,
}

impl ViewRowType for AddressRow {
    type Key = (Id, Id);
    fn key(&self) -> (Id, Id) {
        (self.user_id.clone(), self.address_id.clone())
    }
}

/// A login session and its current refresh token (seed 003 `auth_session`; a revoked one is
/// seed 003's `blocked_auth`). Access tokens name their session, so every replica refuses
/// them once this row says revoked, from memory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SessionRow {
    pub session_id: Id,
    pub user_id: Id,
    /// Hex SHA-256 of the refresh token that may be used next; never the token.
    pub refresh_hash: String,
    /// When the session started (login), and when its current refresh token was issued.
    pub started_at: i64,
    pub issued_at: i64,
    /// When the current refresh token expires.
    pub expires_at: i64,
    pub client_ip: String,
    /// `refresh` (the kind of the token this row holds the digest of).
    pub token_type: String,
    /// Rotations so far.
    pub rotations: u32,
    /// Why the session was revoked (`logout`, `refresh_reuse`); `None` while it is live.
    pub revoked: Option<String>,
}

impl ViewRowType for SessionRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.session_id.clone()
    }
}

/// A search synonym set (admins' `search.synonyms_set`, last one wins): groups of words a
/// shopper may use for one another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SynonymsRow {
    pub set_id: Id,
    pub groups: Vec<Vec<String>>,
}

impl ViewRowType for SynonymsRow {
    type Key = Id;
    fn key(&self) -> Id {
        self.set_id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_are_a_rounded_mean_and_a_plain_number_in_json() {
        assert_eq!(Stars::mean(0, 0), None);
        assert_eq!(Stars::mean(14, 3).map(Stars::get), Some(4.67));
        assert!(Stars::mean(5, 1) > Stars::mean(9, 2), "ordered by value");
        let row = ProductRow { rating_avg: Stars::mean(9, 2), rating_count: 2, ..ProductRow::sample("p", "n") };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!((json["rating_avg"].as_f64(), json["rating_count"].as_u64()), (Some(4.5), Some(2)));
        // A row written before the columns existed still decodes.
        let mut old = json.clone();
        for column in ["created_at", "rating_avg", "rating_count"] {
            old.as_object_mut().unwrap().remove(column);
        }
        let decoded: ProductRow = serde_json::from_value(old).unwrap();
        assert_eq!((decoded.rating_avg, decoded.rating_count, decoded.created_at), (None, 0, 0));
    }
}
