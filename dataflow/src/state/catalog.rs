//! The catalog's share of a partition: products and the names of categories, brands and
//! suppliers, as upserts; and reviews, folded into their product's rating.
//!
//! Reviews are keyed by product, so a product's reviews and the product share a partition and
//! fold in log order. Each review id counts once: a review posted again under its id (a
//! retry with a new event id, or an edit) replaces its stars instead of adding a review. The
//! stars of every review are kept per product (not only the sums), which is what makes that
//! possible, and lets a product created after its first reviews start with them.

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
    /// Event time of the `product.created` that made it (kept by later creates and updates).
    pub created_at: i64,
    /// Total stars and number of its reviews.
    pub rating_sum: u64,
    pub rating_count: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogState {
    pub(crate) products: HashMap<Id, ProductBase>,
    pub(crate) categories: HashMap<Id, String>,
    pub(crate) brands: HashMap<Id, String>,
    pub(crate) suppliers: HashMap<Id, String>,
    /// Product id → review id → stars.
    pub(crate) reviews: HashMap<Id, HashMap<Id, u8>>,
}

impl CatalogState {
    /// Total stars and count of a product's reviews so far.
    fn rating(&self, product: &Id) -> (u64, u32) {
        self.reviews.get(product).map_or((0, 0), |stars| {
            (stars.values().map(|s| u64::from(*s)).sum(), u32::try_from(stars.len()).unwrap_or(u32::MAX))
        })
    }
}

impl StatePart for CatalogState {
    const SECTION: &'static str = "catalog";
    /// 2: products carry created_at and their rating; reviews are kept.
    const VERSION: u32 = 2;

    fn apply(&mut self, _: &Fold, envelope: &Envelope, out: &mut Changes) {
        match &envelope.event {
            Event::ProductCreated(e) => {
                let (rating_sum, rating_count) = self.rating(&e.product_id);
                // Created again while it exists (a re-import): still as old as the first time.
                let created_at = self.products.get(&e.product_id).map_or(envelope.ts, |p| p.created_at);
                let base = ProductBase {
                    name: e.name.clone(),
                    description: e.description.clone(),
                    price: e.price.clone(),
                    sku: e.sku.clone(),
                    category_id: e.category_id.clone(),
                    brand_id: e.brand_id.clone(),
                    supplier_id: e.supplier_id.clone(),
                    created_at,
                    rating_sum,
                    rating_count,
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
            Event::ReviewPosted(e) => {
                let stars = self.reviews.entry(e.product_id.clone()).or_default();
                let before = stars.insert(e.review_id.clone(), e.rating);
                if before == Some(e.rating) {
                    return;
                }
                // Reviews of a product not (or no longer) in the catalog are kept for when it is.
                if let Some(current) = self.products.get(&e.product_id) {
                    let mut next = current.clone();
                    next.rating_sum = next.rating_sum - before.map_or(0, u64::from) + u64::from(e.rating);
                    next.rating_count += u32::from(before.is_none());
                    upsert(&mut self.products, e.product_id.clone(), Some(next), &mut out.products);
                }
            }
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

#[cfg(test)]
mod tests {
    use shopflow_events::types::{ProductCreated, ProductDeleted, ProductUpdated, ReviewPosted};

    use super::*;
    use crate::jobs::weights::InteractionWeights;

    const W: InteractionWeights = InteractionWeights { view: 1, recommendation_click: 2, cart_add: 3, purchase: 5 };

    fn at(ts: i64, event: Event) -> Envelope {
        Envelope { ts, ..Envelope::new(event) }
    }

    fn created(id: &str) -> Event {
        Event::ProductCreated(ProductCreated {
            product_id: id.into(),
            name: "Kettle".into(),
            description: String::new(),
            price: Money::new(100, "EUR"),
            sku: String::new(),
            category_id: "c".into(),
            brand_id: "b".into(),
            supplier_id: "s".into(),
        })
    }

    fn review(product: &str, review: &str, rating: u8) -> Event {
        Event::ReviewPosted(ReviewPosted { review_id: review.into(), product_id: product.into(), user_id: "u".into(), rating, text: String::new() })
    }

    fn fold(state: &mut CatalogState, events: impl IntoIterator<Item = Envelope>) -> Changes {
        let mut out = Changes::default();
        for envelope in events {
            state.apply(&Fold::new(&W), &envelope, &mut out);
        }
        out
    }

    fn product(state: &CatalogState, id: &str) -> ProductBase {
        state.products[&Id::from(id)].clone()
    }

    #[test]
    fn reviews_fold_into_the_rating_each_review_id_once() {
        let mut state = CatalogState::default();
        fold(&mut state, [at(1_000, created("p")), at(2_000, review("p", "r1", 5)), at(3_000, review("p", "r2", 2))]);
        assert_eq!((product(&state, "p").rating_sum, product(&state, "p").rating_count), (7, 2));

        let out = fold(&mut state, [at(4_000, review("p", "r2", 2))]);
        assert!(out.products.is_empty(), "the same review again changes nothing");
        let out = fold(&mut state, [at(5_000, review("p", "r2", 4))]);
        assert_eq!((product(&state, "p").rating_sum, product(&state, "p").rating_count), (9, 2), "an edit replaces its stars");
        assert_eq!(out.products.iter().map(|(_, diff)| *diff).collect::<Vec<_>>(), [-1, 1], "one retraction, one insertion");
        assert_eq!(product(&state, "p").created_at, 1_000, "reviews keep the creation time");
    }

    #[test]
    fn created_at_is_the_first_creations_time_and_reviews_wait_for_their_product() {
        let mut state = CatalogState::default();
        fold(&mut state, [at(1_000, review("later", "r1", 3)), at(2_000, created("later"))]);
        let later = product(&state, "later");
        assert_eq!((later.created_at, later.rating_sum, later.rating_count), (2_000, 3, 1), "created with the review it already had");

        let rename = Event::ProductUpdated(ProductUpdated { product_id: "later".into(), name: Some("Teapot".into()), ..Default::default() });
        fold(&mut state, [at(3_000, rename), at(4_000, created("later"))]);
        assert_eq!(product(&state, "later").created_at, 2_000, "updates and a repeated create keep it");

        fold(&mut state, [at(5_000, Event::ProductDeleted(ProductDeleted { product_id: "later".into() })), at(6_000, created("later"))]);
        let again = product(&state, "later");
        assert_eq!((again.created_at, again.rating_count), (6_000, 1), "created anew after a delete, with its reviews");
    }
}
