use serde::{Deserialize, Serialize};
use shopflow_events::{Id, Money};

/// A product with its category, brand and supplier joined (seed 003, query 1) and its total
/// stock over all warehouses. Names are `None` while the referenced entity is unknown.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
}

/// Units of one product in one warehouse.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StockRow {
    pub product_id: Id,
    pub warehouse_id: Id,
    pub warehouse_name: Option<String>,
    pub quantity: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// One upsert to a view: the new row for a key, or `None` when the key left the view.
/// This is also the changelog record format (`view` selects the topic).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "view", rename_all = "snake_case")]
pub enum ViewUpdate {
    Product { key: Id, row: Option<ProductRow> },
    Stock { key: (Id, Id), row: Option<StockRow> },
    Warehouse { key: Id, row: Option<WarehouseRow> },
    Interaction { key: (Id, Id), row: Option<InteractionRow> },
    Purchase { key: (Id, Id), row: Option<PurchaseRow> },
    Trending { key: Id, row: Option<TrendingRow> },
}

impl ViewUpdate {
    pub fn view_name(&self) -> &'static str {
        match self {
            ViewUpdate::Product { .. } => "products",
            ViewUpdate::Stock { .. } => "stock",
            ViewUpdate::Warehouse { .. } => "warehouses",
            ViewUpdate::Interaction { .. } => "interactions",
            ViewUpdate::Purchase { .. } => "purchases",
            ViewUpdate::Trending { .. } => "trending",
        }
    }

    /// The compaction key in the changelog topic.
    pub fn key_bytes(&self) -> Vec<u8> {
        match self {
            ViewUpdate::Product { key, .. } | ViewUpdate::Warehouse { key, .. } | ViewUpdate::Trending { key, .. } => {
                key.as_str().as_bytes().to_vec()
            }
            ViewUpdate::Stock { key: (a, b), .. }
            | ViewUpdate::Interaction { key: (a, b), .. }
            | ViewUpdate::Purchase { key: (a, b), .. } => format!("{a}/{b}").into_bytes(),
        }
    }
}
