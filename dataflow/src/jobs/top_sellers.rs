//! Top sellers (seed 003, query 2): units sold per product, with the product's category so a
//! ranking per category is a filter. Units are those of paid orders, with cancellations and
//! full refunds taken back (the `sold` base collection the order saga feeds), over all time
//! and over the sliding windows of the last hour and day (`sold_hour`, `sold_day`: a sale
//! leaves them when its event time falls out of the window).
//!
//! Its row type and key are in `shopflow-views` (`TopSellerRow`), registered by one line there
//! per ranking.

use differential_dataflow::lattice::Lattice;
use differential_dataflow::VecCollection;
use shopflow_events::Id;
use timely::progress::Timestamp;

use super::{left_join, BaseCollections};
use crate::views::TopSellerRow;

/// The all-time, last-hour and last-day rankings.
pub struct TopSellers<'scope, T: Timestamp + Lattice> {
    pub all: VecCollection<'scope, T, TopSellerRow>,
    pub hour: VecCollection<'scope, T, TopSellerRow>,
    pub day: VecCollection<'scope, T, TopSellerRow>,
}

pub fn build<'scope, T: Timestamp + Lattice>(inputs: &BaseCollections<'scope, T>) -> TopSellers<'scope, T> {
    let categories = inputs.products.clone().map(|(id, p)| (id, p.category_id));
    TopSellers {
        all: ranked(inputs.sold.clone(), categories.clone()),
        hour: ranked(inputs.sold_hour.clone(), categories.clone()),
        day: ranked(inputs.sold_day.clone(), categories),
    }
}

/// Units per product (the differences of `sold`), joined with its category.
fn ranked<'scope, T: Timestamp + Lattice>(
    sold: VecCollection<'scope, T, Id>,
    categories: VecCollection<'scope, T, (Id, Id)>,
) -> VecCollection<'scope, T, TopSellerRow> {
    let units = sold.count().filter(|(_, units)| *units > 0);
    left_join(units, categories).map(|(product_id, (units, category_id))| TopSellerRow { product_id, category_id, units: units as i64 })
}
