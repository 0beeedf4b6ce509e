//! The dataflow jobs. Each is `build(inputs) -> outputs` over differential collections, so a
//! job can be tested on its own with `capture` and composed in the pipeline.

pub mod catalog;
pub mod interactions;
pub mod latest_orders;
pub mod revenue;
pub mod stock;
pub mod stock_available;
pub mod top_sellers;
pub mod weights;

use differential_dataflow::VecCollection;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::{ExchangeData, Hashable};
use timely::progress::Timestamp;


/// The epoch: milliseconds since the Unix epoch when the worker sealed it.
pub type Epoch = u64;

pub use crate::base::BaseCollections;

use crate::views::ViewRow;

/// Every view's output as one stream of rows for publication: the list of jobs, one
/// `.concat` per view.
pub fn views<'scope, T: Timestamp + Lattice>(base: &BaseCollections<'scope, T>) -> VecCollection<'scope, T, ViewRow> {
    let matrix = interactions::build(base);
    let catalog = catalog::build(base);
    let top_sellers = top_sellers::build(base);
    catalog
        .clone()
        .map(|row| ViewRow::Product(Box::new(row)))
        .concat(stock::build(base).map(ViewRow::Stock))
        .concat(base.warehouses.clone().map(|(_, w)| ViewRow::Warehouse(w)))
        .concat(matrix.interactions.map(ViewRow::Interaction))
        .concat(matrix.purchases.map(ViewRow::Purchase))
        .concat(matrix.trending.map(ViewRow::Trending))
        .concat(top_sellers.all.map(ViewRow::TopSeller))
        .concat(top_sellers.hour.map(ViewRow::TopSellerHour))
        .concat(top_sellers.day.map(ViewRow::TopSellerDay))
        .concat(base.requests.clone().map(|(_, row)| ViewRow::Request(row)))
        .concat(base.accounts.clone().map(|(_, row)| ViewRow::Account(row)))
        .concat(base.addresses.clone().map(|(_, row)| ViewRow::Address(row)))
        .concat(base.sessions.clone().map(|(_, row)| ViewRow::Session(row)))
        .concat(base.synonyms.clone().map(|(_, row)| ViewRow::Synonyms(row)))
        .concat(base.carts.clone().map(|(_, row)| ViewRow::Cart(row)))
        .concat(base.orders.clone().map(|(_, row)| ViewRow::UserOrder(user_order(&row))))
        .concat(base.orders.clone().map(|(_, row)| ViewRow::Order(Box::new(row))))
        .concat(base.payments.clone().map(|(_, row)| ViewRow::Payment(Box::new(row))))
        .concat(base.payment_methods.clone().map(|(_, row)| ViewRow::PaymentMethod(row)))
        .concat(stock_available::build(base).map(ViewRow::StockAvailable))
        .concat(latest_orders::build(base, catalog).map(ViewRow::LatestOrder))
        .concat(revenue::build(base).map(ViewRow::Revenue))
}

/// An order's entry in its user's list.
fn user_order(row: &crate::views::OrderRow) -> crate::views::UserOrderRow {
    crate::views::UserOrderRow {
        user_id: row.user_id.clone(),
        order_id: row.order_id.clone(),
        status: row.status,
        total: row.total.clone(),
        placed_at: row.placed_at,
        updated_at: row.updated_at,
    }
}

/// Left outer join with a right side that has at most one value per key (an upserted
/// entity): every left record appears once, with `None` where the key has no match.
pub fn left_join<'scope, T, K, V, W>(
    left: VecCollection<'scope, T, (K, V)>,
    right: VecCollection<'scope, T, (K, W)>,
) -> VecCollection<'scope, T, (K, (V, Option<W>))>
where
    T: Timestamp + Lattice,
    K: ExchangeData + Hashable,
    V: ExchangeData,
    W: ExchangeData,
{
    // The left side is arranged once and used both to find matches and to find the records
    // without one: left minus those that have a match.
    let left = left.arrange_by_key();
    let keys = right.clone().map(|(k, _)| k).distinct().map(|k| (k, ())).arrange_by_key();
    let right = right.arrange_by_key();
    let matched = left.clone().join_core(right, |k, v, w| Some((k.clone(), (v.clone(), Some(w.clone())))));
    let with_match = left.clone().join_core(keys, |k, v, _| Some((k.clone(), v.clone())));
    let unmatched = left.as_collection(|k, v| (k.clone(), v.clone())).concat(with_match.negate()).map(|(k, v)| (k, (v, None)));
    matched.concat(unmatched)
}
