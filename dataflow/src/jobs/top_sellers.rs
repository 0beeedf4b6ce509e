//! Top sellers (seed 003, query 2): units sold per product, with the product's category so a
//! ranking per category is a filter. Units are those of placed orders with cancellations
//! subtracted (the `purchases` base collection); when the order saga lands, confirmation and
//! refunds refine which units count.
//!
//! Its row type and key are in `shopflow-views` (`TopSellerRow`), registered by one line there.

use differential_dataflow::lattice::Lattice;
use differential_dataflow::VecCollection;
use timely::progress::Timestamp;

use super::{left_join, BaseCollections};
use crate::views::TopSellerRow;

pub fn build<'scope, T: Timestamp + Lattice>(inputs: &BaseCollections<'scope, T>) -> VecCollection<'scope, T, TopSellerRow> {
    let units = inputs.purchases.clone().map(|(_, product)| product).count().filter(|(_, units)| *units > 0);
    let categories = inputs.products.clone().map(|(id, p)| (id, p.category_id));
    left_join(units, categories).map(|(product_id, (units, category_id))| TopSellerRow {
        product_id,
        category_id,
        units: units as i64,
    })
}
