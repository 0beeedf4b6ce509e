//! Net revenue per UTC day, category and currency: the order saga adds paid orders' lines on
//! the day of payment and takes refunds back on the day of the refund (per product); here the
//! product's category is joined and the amounts summed.

use differential_dataflow::lattice::Lattice;
use differential_dataflow::VecCollection;
use timely::progress::Timestamp;

use super::{left_join, BaseCollections};
use crate::views::RevenueRow;

pub fn build<'scope, T: Timestamp + Lattice>(inputs: &BaseCollections<'scope, T>) -> VecCollection<'scope, T, RevenueRow> {
    let categories = inputs.products.clone().map(|(id, p)| (id, p.category_id));
    let by_product = inputs.revenue.clone().map(|(product, day, currency)| (product, (day, currency)));
    left_join(by_product, categories)
        .map(|(_, ((day, currency), category))| (day, category, currency))
        .count()
        .filter(|(_, amount)| *amount != 0)
        .map(|((day, category_id, currency), amount)| RevenueRow {
            day,
            category_id,
            currency: currency.to_string(),
            amount_minor: amount as i64,
        })
}
