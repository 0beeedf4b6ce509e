//! The catalog's share of a partition: products and the names of categories, brands and
//! suppliers, as upserts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use shopflow_events::{Envelope, Event, Id, Money};

use super::fold::{rows, upsert};
use super::{Fold, StatePart};
use crate::base::Changes;

/// A product's own columns, before the catalog job joins in names and stock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductBase {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub sku: String,
    pub category_id: Id,
    pub brand_id: Id,
    pub supplier_id: Id,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogState {
    pub(crate) products: HashMap<Id, ProductBase>,
    pub(crate) categories: HashMap<Id, String>,
    pub(crate) brands: HashMap<Id, String>,
    pub(crate) suppliers: HashMap<Id, String>,
}

impl StatePart for CatalogState {
    const SECTION: &'static str = "catalog";
    const VERSION: u32 = 1;

    fn apply(&mut self, _: &Fold, envelope: &Envelope, out: &mut Changes) {
        match &envelope.event {
            Event::ProductCreated(e) => {
                let base = ProductBase {
                    name: e.name.clone(),
                    description: e.description.clone(),
                    price: e.price.clone(),
                    sku: e.sku.clone(),
                    category_id: e.category_id.clone(),
                    brand_id: e.brand_id.clone(),
                    supplier_id: e.supplier_id.clone(),
                };
                upsert(&mut self.products, e.product_id.clone(), Some(base), &mut out.products);
            }
            Event::ProductUpdated(e) => {
                // An update of a product that does not exist (deleted, or never created) has
                // nothing to update; creating it from a partial record would invent columns.
                if let Some(current) = self.products.get(&e.product_id) {
                    let mut next = current.clone();
                    if let Some(v) = &e.name { next.name = v.clone(); }
                    if let Some(v) = &e.description { next.description = v.clone(); }
                    if let Some(v) = &e.price { next.price = v.clone(); }
                    if let Some(v) = &e.sku { next.sku = v.clone(); }
                    if let Some(v) = &e.category_id { next.category_id = v.clone(); }
                    if let Some(v) = &e.brand_id { next.brand_id = v.clone(); }
                    if let Some(v) = &e.supplier_id { next.supplier_id = v.clone(); }
                    upsert(&mut self.products, e.product_id.clone(), Some(next), &mut out.products);
                }
            }
            Event::ProductDeleted(e) => upsert(&mut self.products, e.product_id.clone(), None, &mut out.products),
            Event::CategoryUpserted(e) => upsert(&mut self.categories, e.id.clone(), Some(e.name.clone()), &mut out.categories),
            Event::BrandUpserted(e) => upsert(&mut self.brands, e.id.clone(), Some(e.name.clone()), &mut out.brands),
            Event::SupplierUpserted(e) => upsert(&mut self.suppliers, e.id.clone(), Some(e.name.clone()), &mut out.suppliers),
            _ => {}
        }
    }

    fn insertions(&self, out: &mut Changes) {
        out.products.extend(rows(&self.products));
        out.categories.extend(rows(&self.categories));
        out.brands.extend(rows(&self.brands));
        out.suppliers.extend(rows(&self.suppliers));
    }
}
