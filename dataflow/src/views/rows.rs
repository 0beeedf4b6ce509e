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

/// One upsert to a view: the new row for a key, or `None` when the key left the view.
/// This is also the changelog record format (`view` selects the topic).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "view", rename_all = "snake_case")]
pub enum ViewUpdate {
    Product { key: Id, row: Option<ProductRow> },
    Stock { key: (Id, Id), row: Option<StockRow> },
    Warehouse { key: Id, row: Option<WarehouseRow> },
}

impl ViewUpdate {
    pub fn view_name(&self) -> &'static str {
        match self {
            ViewUpdate::Product { .. } => "products",
            ViewUpdate::Stock { .. } => "stock",
            ViewUpdate::Warehouse { .. } => "warehouses",
        }
    }

    /// The compaction key in the changelog topic.
    pub fn key_bytes(&self) -> Vec<u8> {
        match self {
            ViewUpdate::Product { key, .. } | ViewUpdate::Warehouse { key, .. } => key.as_str().as_bytes().to_vec(),
            ViewUpdate::Stock { key: (p, w), .. } => format!("{p}/{w}").into_bytes(),
        }
    }
}
