//! The latest 100 orders (seed 003, query 3), one row per order line, joined with the
//! product (its brand, category and supplier names, from the catalog view) and the user.
//!
//! Each orders partition offers only its own newest 100 (`recent_orders`), so the global
//! top-100 is a small reduce over at most 100 × partitions candidates, not over every order
//! ever placed.

use differential_dataflow::lattice::Lattice;
use differential_dataflow::VecCollection;
use timely::progress::Timestamp;

use super::{left_join, BaseCollections};
use crate::state::LATEST_KEPT;
use crate::views::{LatestOrderRow, ProductRow};

pub fn build<'scope, T: Timestamp + Lattice>(
    inputs: &BaseCollections<'scope, T>,
    catalog: VecCollection<'scope, T, ProductRow>,
) -> VecCollection<'scope, T, LatestOrderRow> {
    // Newest first: the reduce sees values in ascending order.
    let newest = inputs
        .recent_orders
        .clone()
        .map(|(id, row)| ((), (-row.placed_at, id, row)))
        .reduce(|_, input, output| {
            for (candidate, _) in input.iter().take(LATEST_KEPT) {
                output.push(((*candidate).clone(), 1));
            }
        })
        .map(|(_, (_, _, row))| row);
    // One row per (order, product): lines naming one product are summed (at the first line's
    // price, which the order captured for all of them).
    let lines = newest.flat_map(|row| {
        let mut per_product: std::collections::BTreeMap<shopflow_events::Id, shopflow_events::types::OrderLine> = Default::default();
        for line in &row.lines {
            per_product.entry(line.product_id.clone()).and_modify(|l| l.quantity += line.quantity).or_insert_with(|| line.clone());
        }
        per_product
            .into_values()
            .map(move |line| (line.product_id.clone(), (row.order_id.clone(), row.placed_at, row.status, row.user_id.clone(), line)))
    });
    let products = catalog.map(|p| (p.product_id.clone(), (p.name, p.brand_name, p.category_name, p.supplier_name)));
    let with_product = left_join(lines, products).map(|(product_id, ((order, placed_at, status, user, line), product))| {
        (user, (order, product_id, placed_at, status, line, product))
    });
    let users = inputs.accounts.clone().map(|(id, a)| (id, (a.name, a.email)));
    left_join(with_product, users).map(|(user_id, ((order_id, product_id, placed_at, status, line, product), user))| {
        let (product_name, brand_name, category_name, supplier_name) = match product {
            Some((name, brand, category, supplier)) => (Some(name), brand, category, supplier),
            None => (None, None, None, None),
        };
        LatestOrderRow {
            order_id,
            product_id,
            placed_at,
            status,
            quantity: line.quantity,
            unit_price: line.unit_price,
            user_id,
            user_name: user.as_ref().map(|(name, _)| name.clone()),
            user_email: user.map(|(_, email)| email),
            product_name,
            brand_name,
            category_name,
            supplier_name,
        }
    })
}
